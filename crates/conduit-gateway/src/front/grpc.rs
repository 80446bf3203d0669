//! The gRPC front of the gateway (tonic): the `conduit.v1.Conduit` service of
//! `proto/conduit.proto`, over the same [`SessionManager`] as the HTTP/WebSocket front.
//!
//! Enabled with [`GatewayConfig::grpc_listen`](crate::GatewayConfig::grpc_listen): the gateway
//! then serves gRPC (HTTP/2) on that second address next to axum, and shuts it down with it.
//! With [`GatewayConfig::tls`](crate::GatewayConfig::tls) the gRPC listener is TLS too (clients
//! use `grpcs://`): the same certificate and key, ALPN `h2`, handshakes as on the HTTP listener
//! (see [`crate::tls`]); a plain `grpc://` client is disconnected.
//!
//! | call | what |
//! |---|---|
//! | `CreateSession(CreateSessionRequest{args, cwd})` | start a CLI → `SessionInfo` |
//! | `ListSessions` | the caller's sessions |
//! | `GetSession(SessionId)` | one session; `NOT_FOUND` if unknown or another token's |
//! | `CloseSession(SessionId)` | close the CLI and wait until it is gone |
//! | `Stream(stream ClientMessage) → stream ServerMessage` | the session's frames, both ways |
//!
//! Next to it the listener serves the gRPC ecosystem's services, so that `grpcurl`, load
//! balancers and Kubernetes probes work:
//!
//! | service | auth | what |
//! |---|---|---|
//! | `grpc.health.v1.Health/Check` | **none** (probes carry no token) | `SERVING` for `""` and `conduit.v1.Conduit`; `NOT_SERVING` once shutdown begins |
//! | `grpc.health.v1.Health/Watch` | token (a stream held open) | the same, pushed; ends at shutdown after `NOT_SERVING` |
//! | `grpc.reflection.v1.ServerReflection`, `grpc.reflection.v1alpha.ServerReflection` | token | the services and `proto/conduit.proto`'s descriptors |
//!
//! Every other call needs the metadata `authorization: Bearer <token>` (checked with
//! [`Tokens::check`], constant time), else `UNAUTHENTICATED`. Gateway errors map to status codes:
//! too many sessions → `RESOURCE_EXHAUSTED`, refused options → `INVALID_ARGUMENT`, shutting down →
//! `UNAVAILABLE`.
//!
//! # `Stream`
//!
//! The session id and the resume point travel in the **first client message**, `Attach
//! {session_id, after}` (not in metadata). The semantics are those of the WebSocket front:
//!
//! * the gateway answers `Hello{session, in_seq, max_frame_bytes}`, replays the CLI frames with
//!   `seq > after` as `Frame{seq, data}`, then streams live;
//! * client frames are `Frame{seq, data}`, numbered 1, 2, 3, … by the client across reconnects
//!   (`seq` 0: unnumbered); frames already accepted are skipped, and the gateway acks with
//!   `InAck{seq}` every [`ACK_EVERY`] frames (and `in_seq` in every hello);
//! * the client acks CLI frames with `Ack{seq}`; `EndInput` ends the CLI's stdin, `Close` closes
//!   the CLI gracefully;
//! * a client frame over the limit gets `Refused{kind: "frame_too_large", limit, size, seq,
//!   message}` and the session lives on;
//! * a client frame that is not one JSON object gets `Refused{kind: "bad_frame", …}`, never
//!   reaches the CLI, and the session lives on;
//! * when the CLI exits the gateway sends `End{code, signal, stderr_tail}` and ends the stream
//!   with status OK.
//!
//! Other ends are statuses: `NOT_FOUND` (unknown session), `OUT_OF_RANGE` (`after` older than
//! the replay ring holds), `INVALID_ARGUMENT` (`after` ahead of the stream, or no `Attach`
//! first), `FAILED_PRECONDITION` (a client frame number skipped ahead), `ABORTED` (a newer
//! stream took the session over), `UNAVAILABLE` (dropped by the gateway, e.g.
//! [`SessionManager::kick`], or the gateway shutting down: resume with `after`),
//! `INVALID_ARGUMENT` / `RESOURCE_EXHAUSTED` (a client message that does not decode, or is over
//! the frame limit plus 1 MiB: the session lives on, resume with `after`). Dead peers are found by HTTP/2 keepalive
//! pings (the configured ping interval and timeout).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use claude_conduit_proto::v1::{self, client_message, server_message};
use claude_conduit_proto::{Conduit, ConduitServer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::GatewayError;
use crate::auth::{TokenId, Tokens};
use crate::session::{
    ACK_EVERY, AttachError, Attached, EndInfo, Input, InputError, Outbound, Session,
    SessionManager, SessionRequest,
};
use claude_conduit::transport::relay::wire::ENVELOPE_MARGIN;

/// Frames sent per look at the ring.
const BATCH: usize = 64;
/// Batches of messages buffered toward one client (each at most [`BATCH`] frames; beyond them,
/// HTTP/2 flow control holds the writer).
const OUT_BATCHES: usize = 2;
/// How long a new stream may take to send its `Attach`.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for gRPC connections to close after every CLI is gone.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The `conduit.v1.Conduit` service over a [`SessionManager`].
#[derive(Debug, Clone)]
pub struct ConduitService {
    manager: SessionManager,
    tokens: Arc<Tokens>,
}

impl ConduitService {
    /// The service for `manager` (its configured tokens authenticate the calls).
    pub fn new(manager: SessionManager) -> Self {
        Self {
            tokens: Arc::new(manager.config().tokens.clone()),
            manager,
        }
    }

    /// The tonic server for this service, with message size limits from the gateway's frame
    /// limit (plus room for the envelope).
    pub fn into_server(self) -> ConduitServer<Self> {
        let limit = self
            .manager
            .config()
            .max_frame_bytes()
            .saturating_add(ENVELOPE_MARGIN);
        ConduitServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    /// The caller's token, from `authorization: Bearer <token>`.
    fn owner(&self, metadata: &MetadataMap) -> Result<TokenId, Status> {
        let header = metadata.get("authorization").map(|v| v.as_bytes());
        self.tokens.check(header).ok_or_else(|| {
            crate::auth_log::auth_failed("grpc");
            Status::unauthenticated("missing or invalid bearer token")
        })
    }
}

/// A [`GatewayError`] as a gRPC status.
fn status(e: &GatewayError) -> Status {
    let message = e.to_string();
    match e {
        GatewayError::TooManySessions { .. } => Status::resource_exhausted(message),
        GatewayError::InvalidOptions(_) => Status::invalid_argument(message),
        GatewayError::ShuttingDown => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

fn session_info(i: crate::SessionInfo) -> v1::SessionInfo {
    v1::SessionInfo {
        id: i.id,
        pid: i.pid,
        created_unix_ms: i.created_unix_ms,
        attached: i.attached,
        last_seq: i.last_seq,
        acked: i.acked,
        oldest_seq: i.oldest_seq,
        ended: i.ended,
        exit_code: i.exit_code,
    }
}

fn message(msg: server_message::Msg) -> Result<v1::ServerMessage, Status> {
    Ok(v1::ServerMessage { msg: Some(msg) })
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[tonic::async_trait]
impl Conduit for ConduitService {
    async fn create_session(
        &self,
        request: Request<v1::CreateSessionRequest>,
    ) -> Result<Response<v1::SessionInfo>, Status> {
        use tracing::Instrument;
        let owner = self.owner(request.metadata())?;
        let tp = request
            .metadata()
            .get(claude_conduit::telemetry::TRACEPARENT_HEADER);
        let span = crate::metrics::request_span("gateway.create_session", tp.map(|v| v.as_bytes()));
        let v1::CreateSessionRequest { args, cwd } = request.into_inner();
        let mut session_request = SessionRequest::with_args(args);
        if let Some(cwd) = cwd {
            session_request = session_request.cwd(cwd);
        }
        match self
            .manager
            .create(owner, &session_request)
            .instrument(span)
            .await
        {
            Ok(info) => Ok(Response::new(session_info(info))),
            Err(e) => Err(status(&e)),
        }
    }

    async fn list_sessions(
        &self,
        request: Request<v1::ListSessionsRequest>,
    ) -> Result<Response<v1::ListSessionsResponse>, Status> {
        let owner = self.owner(request.metadata())?;
        let sessions = self
            .manager
            .list(owner)
            .into_iter()
            .map(session_info)
            .collect();
        Ok(Response::new(v1::ListSessionsResponse { sessions }))
    }

    async fn get_session(
        &self,
        request: Request<v1::SessionId>,
    ) -> Result<Response<v1::SessionInfo>, Status> {
        let owner = self.owner(request.metadata())?;
        match self.manager.get(owner, &request.get_ref().id) {
            Some(s) => Ok(Response::new(session_info(s.info()))),
            None => Err(Status::not_found("no such session")),
        }
    }

    async fn close_session(
        &self,
        request: Request<v1::SessionId>,
    ) -> Result<Response<v1::CloseSessionResponse>, Status> {
        let owner = self.owner(request.metadata())?;
        if self.manager.delete(owner, &request.get_ref().id).await {
            Ok(Response::new(v1::CloseSessionResponse {}))
        } else {
            Err(Status::not_found("no such session"))
        }
    }

    type StreamStream = Outgoing;

    async fn stream(
        &self,
        request: Request<Streaming<v1::ClientMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let owner = self.owner(request.metadata())?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(ATTACH_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no `attach` message in time"))??;
        let Some(v1::ClientMessage {
            msg: Some(client_message::Msg::Attach(attach)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message of a stream must be `attach`",
            ));
        };
        let session = self
            .manager
            .get(owner, &attach.session_id)
            .ok_or_else(|| Status::not_found("no such session"))?;
        let attached = session.attach(attach.after).map_err(|e| match e {
            AttachError::TooOld { after, oldest } => Status::out_of_range(format!(
                "replay too old: after={after}, oldest kept seq={oldest}"
            )),
            AttachError::Ahead { after, last } => {
                Status::invalid_argument(format!("bad resume: after={after} but last seq={last}"))
            }
        })?;
        tracing::debug!(session = %session.id(), after = attach.after, in_seq = attached.in_seq,
            "gRPC client attached");
        let (tx, rx) = mpsc::channel(OUT_BATCHES);
        tokio::spawn(connection(
            session,
            inbound,
            OutTx(tx),
            attached,
            attach.after,
        ));
        Ok(Response::new(Outgoing {
            rx,
            batch: Vec::new().into_iter(),
        }))
    }
}

type Item = Result<v1::ServerMessage, Status>;

/// The messages of a `Stream` call toward the client: the connection task hands them over a
/// batch at a time (one channel send and one wake-up of the HTTP/2 writer per look at the ring,
/// not per frame), tonic takes them one by one.
pub struct Outgoing {
    rx: mpsc::Receiver<Vec<Item>>,
    batch: std::vec::IntoIter<Item>,
}

impl futures::Stream for Outgoing {
    type Item = Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Item>> {
        loop {
            if let Some(m) = self.batch.next() {
                return std::task::Poll::Ready(Some(m));
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(batch) => self.batch = batch.into_iter(),
                None => return std::task::Poll::Ready(None),
            }
        }
    }
}

/// The connection task's end of [`Outgoing`].
struct OutTx(mpsc::Sender<Vec<Item>>);

impl OutTx {
    async fn send(&self, item: Item) -> Result<(), ()> {
        self.send_all(vec![item]).await
    }

    async fn send_all(&self, items: Vec<Item>) -> Result<(), ()> {
        self.0.send(items).await.map_err(|_| ())
    }

    async fn closed(&self) {
        self.0.closed().await;
    }
}

/// How the client's half of a stream ended.
#[derive(Debug)]
enum ReaderEnd {
    /// The client finished sending (half-close); it may still be reading.
    HalfClosed,
    /// The stream broke, the CLI is gone, or the client broke the protocol.
    Broken,
    /// A client message could not be taken (undecodable, too large): end the stream with this
    /// status; the session lives on and can be resumed.
    Refused(Status),
}

/// The status for a client message tonic could not read: `INVALID_ARGUMENT` for one that does
/// not decode, `RESOURCE_EXHAUSTED` for one over the message limit; `None` when the stream
/// itself broke (nobody to tell).
///
/// Classified by code, never by the text: tonic's decoder reports its own refusals without a
/// source (`OUT_OF_RANGE` for a message over its limit, `RESOURCE_EXHAUSTED` for one over the
/// decompression limit, `INTERNAL` for bytes that do not decode), while a broken stream's status
/// carries the transport error that broke it.
fn unreadable(s: &Status) -> Option<Status> {
    if std::error::Error::source(s).is_some() {
        return None;
    }
    let message = s.message();
    match s.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            Some(Status::resource_exhausted(format!(
                "a client message over the limit (frame limit plus {ENVELOPE_MARGIN} bytes): \
                 {message}"
            )))
        }
        tonic::Code::Internal => Some(Status::invalid_argument(format!(
            "a client message that does not decode: {message}"
        ))),
        _ => None,
    }
}

/// Client messages to the session; refusals go to the writer through `notices`.
async fn read_client(
    session: Arc<Session>,
    mut inbound: Streaming<v1::ClientMessage>,
    notices: mpsc::Sender<InputError>,
) -> ReaderEnd {
    let counters = crate::metrics::FrontCounters::new("grpc");
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return ReaderEnd::HalfClosed,
            Err(s) => return unreadable(&s).map_or(ReaderEnd::Broken, ReaderEnd::Refused),
        };
        let result = match msg.msg {
            Some(client_message::Msg::Frame(f)) => {
                let seq = (f.seq != 0).then_some(f.seq);
                counters.received(&session.live, f.data.len());
                session.to_cli(Input::Frame { seq, frame: f.data }).await
            }
            Some(client_message::Msg::Ack(a)) => {
                session.ack(a.seq);
                Ok(())
            }
            Some(client_message::Msg::EndInput(_)) => session.to_cli(Input::EndInput).await,
            Some(client_message::Msg::Close(_)) => {
                session.request_close();
                Ok(())
            }
            // A second attach, or a message this gateway does not know: nothing to do.
            Some(client_message::Msg::Attach(_)) | None => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(InputError::Closed) => return ReaderEnd::Broken,
            Err(e) if e.is_per_frame() => {
                if notices.send(e).await.is_err() {
                    return ReaderEnd::Broken;
                }
            }
            Err(e) => {
                let _ = notices.send(e).await;
                return ReaderEnd::Broken;
            }
        }
    }
}

/// One attached stream: hello, replay after `after`, then live; client messages the other way.
async fn connection(
    session: Arc<Session>,
    inbound: Streaming<v1::ClientMessage>,
    tx: OutTx,
    attached: Attached,
    after: u64,
) {
    let generation = attached.generation;
    let hello = server_message::Msg::Hello(v1::Hello {
        session: session.id().to_owned(),
        in_seq: attached.in_seq,
        max_frame_bytes: u64_of(session.max_frame_bytes()),
    });
    if tx.send(message(hello)).await.is_err() {
        session.detach(generation);
        return;
    }
    let (notice_tx, mut notices) = mpsc::channel::<InputError>(8);
    // The reader runs on its own task, so a writer held by a slow client never stops the
    // client's frames and acks from reaching the session.
    let mut reader = tokio::spawn(read_client(session.clone(), inbound, notice_tx));
    let mut reader_done = false;
    let mut events = session.subscribe();
    let mut cursor = after;
    let mut in_acked = attached.in_seq;
    let counters = crate::metrics::FrontCounters::new("grpc");
    loop {
        events.borrow_and_update();
        let in_seq = session.in_seq();
        if in_seq >= in_acked + ACK_EVERY {
            let ack = server_message::Msg::InAck(v1::InAck { seq: in_seq });
            if tx.send(message(ack)).await.is_err() {
                break;
            }
            in_acked = in_seq;
        }
        let outbound = session.poll_outbound_with(generation, cursor, BATCH, |frames| {
            frames
                .map(|(seq, data)| {
                    let data = data.clone();
                    message(server_message::Msg::Frame(v1::Frame { seq: *seq, data }))
                })
                .collect()
        });
        match outbound {
            Outbound::Frames(taken) => {
                counters.sent(&session.live, &taken);
                cursor = taken.last;
                if tx.send_all(taken.out).await.is_err() {
                    break;
                }
                continue;
            }
            Outbound::End(end) => {
                let _ = tx.send(message(end_message(end))).await;
                break;
            }
            Outbound::Lost(lost) => {
                let e = claude_conduit::Error::SessionLost {
                    session_id: lost.session,
                    worker: lost.worker,
                };
                let _ = tx.send(Err(Status::data_loss(e.to_string()))).await;
                break;
            }
            Outbound::ShuttingDown => {
                let _ = tx
                    .send(Err(Status::unavailable("the gateway is shutting down")))
                    .await;
                break;
            }
            Outbound::Replaced => {
                let _ = tx
                    .send(Err(Status::aborted("replaced by a newer connection")))
                    .await;
                break;
            }
            Outbound::Dropped => {
                let _ = tx
                    .send(Err(Status::unavailable(
                        "disconnected by the gateway: resume with `after`",
                    )))
                    .await;
                break;
            }
            Outbound::Wait => {}
        }
        tokio::select! {
            // Refusals first: the reader sends one before it ends on a gap.
            biased;
            Some(refused) = notices.recv() => {
                if let InputError::Gap { expected, got } = refused {
                    let reason = format!("frame {got} arrived but {expected} was expected");
                    let _ = tx.send(Err(Status::failed_precondition(reason))).await;
                    break;
                }
                if tx.send(message(refusal(&refused))).await.is_err() {
                    break;
                }
            }
            r = &mut reader, if !reader_done => {
                reader_done = true;
                match r {
                    Ok(ReaderEnd::HalfClosed) => {}
                    Ok(ReaderEnd::Refused(status)) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                    _ => break,
                }
            }
            r = events.changed() => if r.is_err() { break },
            () = tx.closed() => break,
        }
    }
    reader.abort();
    session.detach(generation);
    tracing::debug!(session = %session.id(), cursor, "gRPC client detached");
}

fn end_message(end: EndInfo) -> server_message::Msg {
    server_message::Msg::End(v1::End {
        code: end.code,
        signal: end.signal,
        stderr_tail: end.stderr_tail,
    })
}

/// The message that tells a client its frame was refused.
fn refusal(e: &InputError) -> server_message::Msg {
    let info = e.info();
    server_message::Msg::Refused(v1::Refused {
        kind: info.kind,
        limit: info.limit.unwrap_or(0),
        size: info.size.unwrap_or(0),
        seq: info.seq.unwrap_or(0),
        message: info.message,
    })
}

/// Bind the gRPC listener; returns it with the address actually bound.
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| GatewayError::Bind { addr, source })?;
    Ok((listener, local))
}

/// The TLS acceptor for gRPC when the gateway has TLS configured: the listener's certificate and
/// key ([`crate::tls::server_config`]) with ALPN `h2`.
fn tls_acceptor(config: &crate::GatewayConfig) -> Result<Option<TlsAcceptor>, GatewayError> {
    let Some((cert, key)) = config.tls_files() else {
        return Ok(None);
    };
    let mut server = (*crate::tls::server_config(cert, key)?).clone();
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Serve the gRPC service over `manager` on `listener` until `shutdown` completes; then stop
/// accepting, and wait for the open streams to end (they end when their sessions do). Over TLS
/// when the manager's config has [`GatewayConfig::tls`](crate::GatewayConfig::tls).
///
/// Calls pass the [gate](crate::grpc_gate) first (token, unary size limit); connections get the
/// limits of [`crate::serving`] (first call in time, idle keep-alive, pings, streams per
/// connection), counted in their own connection cap (`max_connections`).
pub async fn serve(
    listener: TcpListener,
    manager: SessionManager,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    let cap = crate::serving::ConnectionCap::new(manager.config().max_connections);
    serve_capped(listener, manager, cap, shutdown).await
}

/// [`serve`] with a connection cap shared with the HTTP listener.
pub(crate) async fn serve_capped(
    listener: TcpListener,
    manager: SessionManager,
    cap: crate::serving::ConnectionCap,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    let config = manager.config();
    let tls = tls_acceptor(config)?;
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, tls = tls.is_some(), "gateway gRPC listening");
    let limits = crate::serving::Limits::of(config, crate::serving::Front::Grpc);
    let tokens = Arc::new(config.tokens.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ConduitServer<ConduitService>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(claude_conduit_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error = |e: tonic_reflection::server::Error| {
        GatewayError::Serve(std::io::Error::other(format!("gRPC reflection: {e}")))
    };
    let routes = tonic::service::Routes::new(ConduitService::new(manager.clone()).into_server())
        .add_service(health_service)
        .add_service(reflection().build_v1().map_err(reflection_error)?)
        .add_service(reflection().build_v1alpha().map_err(reflection_error)?);
    let gate = crate::grpc_gate::GrpcGate::new(tokens, routes);
    let listener = crate::tls::GatewayListener::new(listener, tls);
    let shutdown = async move {
        shutdown.await;
        not_serving(health).await;
    };
    crate::serving::serve(listener, gate, limits, cap, shutdown).await;
    Ok(())
}

/// Shutdown begins: health says `NOT_SERVING` (to checks and to every `Watch`), then the
/// statuses are dropped so that `Watch` streams end and do not hold the listener open.
async fn not_serving(mut health: tonic_health::server::HealthReporter) {
    let service = <ConduitServer<ConduitService> as tonic::server::NamedService>::NAME;
    for name in ["", service] {
        health
            .set_service_status(name, tonic_health::ServingStatus::NotServing)
            .await;
    }
    // Let the watchers take the change before their channels close.
    tokio::task::yield_now().await;
    for name in ["", service] {
        health.clear_service_status(name).await;
    }
}

/// The gRPC server running next to axum (see [`Gateway::run`](crate::Gateway::run)).
pub(crate) struct Running {
    /// Dropping (or sending on) this stops accepting.
    pub(crate) stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), GatewayError>>>,
}

/// Start serving on `listener`, if there is one.
pub(crate) fn spawn(
    listener: Option<TcpListener>,
    manager: SessionManager,
    cap: crate::serving::ConnectionCap,
) -> Running {
    let Some(listener) = listener else {
        return Running {
            stop: None,
            task: None,
        };
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_capped(listener, manager, cap, async move {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task: Some(task),
    }
}

impl Running {
    /// Wait (bounded) for the gRPC server to finish after its stop signal.
    pub(crate) async fn finish(mut self) -> Result<(), GatewayError> {
        drop(self.stop.take());
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_WAIT, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(GatewayError::Serve(std::io::Error::other(e))),
            Err(_) => {
                tracing::warn!("gRPC connections did not close in time: dropping them");
                task.abort();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_messages_are_classified_by_code_and_source_not_text() {
        // tonic's own refusals (no source), whatever their wording.
        let over = unreadable(&Status::out_of_range("anything at all")).expect("refused");
        assert_eq!(over.code(), tonic::Code::ResourceExhausted);
        let zipped = unreadable(&Status::resource_exhausted("x")).expect("refused");
        assert_eq!(zipped.code(), tonic::Code::ResourceExhausted);
        let garbage = unreadable(&Status::internal("too large, decode")).expect("refused");
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument);
        // A broken stream carries its cause: nobody to tell, even if the text says "decode".
        let broken = Status::from_error(Box::new(std::io::Error::other("decode too large")));
        assert!(std::error::Error::source(&broken).is_some());
        assert!(unreadable(&broken).is_none());
        assert!(unreadable(&Status::cancelled("decode")).is_none());
    }
}
