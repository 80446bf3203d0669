//! A client of the conduit gateway's gRPC service (`proto/conduit.proto`, tonic): frames over one
//! bidirectional `Stream` call per session, with resume after a dropped stream.
//!
//! ```text
//! Client ─► GrpcTransport ══HTTP/2══► gateway ══► SubprocessTransport ══► claude
//! ```
//!
//! Same guarantees as the WebSocket transport (`transport::websocket`), same protocol in
//! protobuf clothes (see the `claude-conduit-proto` crate): every call carries `authorization:
//! Bearer <token>`; a `Stream` starts with `Attach{session_id, after}`; the gateway answers
//! `Hello{session, in_seq, max_frame_bytes}`, then sends CLI frames as `Frame{seq, data}` and
//! `End{code, signal, stderr_tail}` when the CLI exits. This transport numbers its own frames (1, 2, 3, … across
//! reconnects), acks with `Ack{seq}` every [`ACK_EVERY`] frames, and keeps the frames it sent
//! until the gateway acks them (`InAck{seq}`, and `in_seq` in every hello).
//!
//! Sequencing, acks, resends and reconnects are the relay core's (`transport::relay`): this
//! module only encodes and decodes. When the stream ends without an `End` (status
//! `UNAVAILABLE`, a reset, a dropped connection) the driver opens a new stream (tonic's channel
//! reconnects the HTTP/2 connection if need be) per its
//! [`ReconnectPolicy`] with `after = <last seq>`, and resends
//! what the gateway had not accepted, then an end of input or close asked for before. Statuses
//! after which retrying cannot help (`NOT_FOUND`, `OUT_OF_RANGE`, `ABORTED`, `UNAUTHENTICATED`,
//! …) end the stream with an [`Error::Gateway`].
//!
//! A frame larger than the gateway's limit (`max_frame_bytes` in the hello; until then this
//! transport's own) is refused by [`FrameSender::send`](super::FrameSender::send) with [`Error::FrameTooLarge`]; one the
//! gateway refuses anyway (`Refused`) arrives as a per-frame `Err` on the receiving half. The
//! session goes on in both cases.
//!
//! The plain `grpc://` sessions of a process share HTTP/2 connections, up to
//! [`SESSIONS_PER_CONNECTION`] on each (see `channel`): a gateway keeps one connection per 32
//! sessions of a client, not one per session. Flow-control windows are fixed, the connection's
//! as large as all its streams', so a session whose reader has stopped never holds up the
//! others on its connection.
//!
//! `grpcs://` (HTTP/2 over TLS, ALPN `h2`) needs the `tls` cargo feature: tonic's channel runs
//! over a tokio-rustls connection with the SDK's rustls config (`transport::tls`:
//! webpki roots plus `CONDUIT_TLS_CA`). Without the feature it is an [`Error::FeatureDisabled`].

use std::sync::Arc;
use std::time::Duration;

use claude_conduit_proto::ConduitClient;
use claude_conduit_proto::v1::{self, client_message, server_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

use super::relay::wire::Hello;
use super::relay::{Failure, Incoming, Outgoing, ReconnectPolicy, Wire, WireConn};
use super::{Connection, GatewayTransport, Termination, Transport};
use crate::error::{Error, GatewayErrorKind, GatewayStatus, Result};
use crate::remote::{Remote, SessionRequest};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub use super::relay::{ACK_EVERY, MAX_RECONNECTS};
/// How long connecting to the gateway may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive: ping this often, give up on the connection after the timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP/2 flow-control window of one call: how much the gateway may send on it before this
/// side reads.
const STREAM_WINDOW: u32 = 2 << 20;
/// The largest HTTP/2 frame this side takes (`SETTINGS_MAX_FRAME_SIZE`).
const MAX_FRAME_SIZE: u32 = 256 << 10;
/// The calls one connection may carry at once (the gateway's smallest `grpc_max_streams`).
const CALLS_PER_CONNECTION: u32 = 48;
/// Messages buffered toward the gateway on one stream.
const OUT_BUFFER: usize = 64;

type Client = ConduitClient<Channel>;

/// A session on a conduit gateway's gRPC service, as an SDK [`Transport`].
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::remote::{Remote, SessionRequest};
/// use claude_conduit::transport::GatewayTransport;
/// use claude_conduit::transport::grpc::GrpcTransport;
/// use claude_conduit::{Client, Options};
/// let remote = Remote::parse("grpc://127.0.0.1:8993", "secret")?;
/// let transport = GrpcTransport::open_session(&remote, &SessionRequest::default()).await?;
/// let client = Client::connect_with(transport, Options::default()).await?;
/// # Ok(()) }
/// ```
///
/// Or simply `Options::builder().transport("grpc://127.0.0.1:8993", "secret")` and
/// [`Client::connect`](crate::Client::connect).
#[derive(Clone)]
pub struct GrpcTransport {
    remote: Remote,
    session_id: String,
    max_frame: usize,
    /// A channel already connected (by [`GatewayTransport::open_session`]), reused.
    channel: Option<Leased>,
}

super::relay::gateway_transport!(GrpcTransport, channel: None);

/// The kind of a gateway status.
fn status_kind(code: Code) -> GatewayErrorKind {
    match code {
        Code::Unauthenticated | Code::PermissionDenied => GatewayErrorKind::Unauthorized,
        Code::NotFound => GatewayErrorKind::NotFound,
        Code::OutOfRange => GatewayErrorKind::ReplayTooOld,
        Code::FailedPrecondition => GatewayErrorKind::BadResume,
        Code::Aborted => GatewayErrorKind::Replaced,
        Code::InvalidArgument => GatewayErrorKind::InvalidRequest,
        Code::ResourceExhausted => GatewayErrorKind::TooManySessions,
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => {
            GatewayErrorKind::Unavailable
        }
        _ => GatewayErrorKind::Other,
    }
}

/// A status from the gateway as an SDK error (the status, with its causes, as the source).
fn status_error(context: &'static str, s: Status) -> Error {
    // `CreateSession` answers the operator's policy refusals with `INVALID_ARGUMENT`.
    let kind = if s.code() == Code::InvalidArgument && context == "CreateSession" {
        GatewayErrorKind::Refused
    } else {
        status_kind(s.code())
    };
    let mut message = format!("{context}: {}", s.message());
    // A transport failure's status says only "transport error": name its causes, and it is the
    // connection that failed.
    let kind = match std::error::Error::source(&s) {
        Some(cause) => {
            message.push_str(": ");
            message.push_str(&error_chain(cause));
            // Only a client-side failure has a source (statuses from the gateway have none).
            GatewayErrorKind::Unavailable
        }
        None => kind,
    };
    Error::gateway_caused(kind, Some(GatewayStatus::Grpc(s.code() as i32)), message, s)
}

fn message_limit(max_frame: usize) -> usize {
    max_frame.saturating_add(super::relay::wire::ENVELOPE_MARGIN)
}

impl GrpcTransport {
    async fn create_impl(remote: &Remote, request: &SessionRequest) -> Result<String> {
        let leased = channel(&remote.grpc_endpoint()).await?;
        Ok(create(leased.channel, remote.token(), request).await?.id)
    }

    /// `grpc.health.v1.Health/Check` for the whole server (service `""`), without a token.
    async fn health_impl(remote: &Remote) -> Result<()> {
        let leased = channel(&remote.grpc_endpoint()).await?;
        let reply = HealthClient::new(leased.channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| status_error("Health/Check", s))?
            .into_inner();
        if reply.status() == ServingStatus::Serving {
            Ok(())
        } else {
            Err(Error::gateway(
                GatewayErrorKind::Unavailable,
                None,
                format!("the gateway's health is {}", reply.status().as_str_name()),
            ))
        }
    }

    /// Create the session (`CreateSession`) and keep the HTTP/2 connection for its stream.
    async fn open_impl(remote: &Remote, request: &SessionRequest) -> Result<Self> {
        let leased = channel(&remote.grpc_endpoint()).await?;
        let info = create(leased.channel.clone(), remote.token(), request).await?;
        Ok(Self {
            channel: Some(leased),
            ..<Self as GatewayTransport>::new(remote, info.id)
        })
    }

    /// The client of the session's stream calls, and the share of the pooled connection they go
    /// over (held as long as the session's connection lives).
    async fn client(&self) -> Result<(Client, Leased)> {
        let leased = match &self.channel {
            Some(c) => c.clone(),
            None => channel(&self.remote.grpc_endpoint()).await?,
        };
        let limit = message_limit(self.max_frame);
        let client = ConduitClient::new(leased.channel.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        Ok((client, leased))
    }
}

/// Sessions of a process multiplexed over one pooled HTTP/2 connection. A gateway allows more
/// calls per connection than that (`grpc_max_streams`: 64 by default, never under 48), which
/// leaves room for unary calls beside the sessions' streams.
pub const SESSIONS_PER_CONNECTION: usize = 32;

/// A channel, and for a pooled one the session's share of it.
#[derive(Clone)]
struct Leased {
    channel: Channel,
    _lease: Option<Arc<Lease>>,
}

/// A pooled connection: a channel to `endpoint` made on the runtime `runtime`, connected once
/// by whichever session needs it first, and the number of sessions using it.
struct Slot {
    id: u64,
    runtime: tokio::runtime::Id,
    endpoint: String,
    channel: Arc<tokio::sync::OnceCell<Channel>>,
    sessions: usize,
}

/// The pooled connections of the process.
static POOL: std::sync::Mutex<Vec<Slot>> = std::sync::Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<Slot>> {
    POOL.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A session's share of the pooled connection `slot`. When the last session of a connection
/// lets go, the connection leaves the pool, unless it is the only one to its endpoint (then it
/// stays, idle, for the next session; the gateway closes it after its keep-alive idle time and
/// the channel reconnects when it is used again).
struct Lease {
    slot: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut pool = pool();
        let Some(i) = pool.iter().position(|s| s.id == self.slot) else {
            return;
        };
        pool[i].sessions = pool[i].sessions.saturating_sub(1);
        let s = &pool[i];
        let others = pool
            .iter()
            .any(|o| o.id != s.id && o.runtime == s.runtime && o.endpoint == s.endpoint);
        if s.sessions == 0 && others {
            pool.swap_remove(i);
        }
    }
}

/// A channel to `endpoint`. For a plain `http://` endpoint the sessions of a process share
/// connections, [`SESSIONS_PER_CONNECTION`] on each: a gateway then keeps one HTTP/2 connection
/// (its buffers, its HPACK tables, its keep-alive pings) per 32 sessions of a client instead of
/// one per session. A pooled channel belongs to the tokio runtime it was made on (its connection
/// is a task there); another runtime gets channels of its own, and an unused channel of another
/// runtime (which may be gone) is let go. `https://` endpoints get a channel each (their TLS
/// config can change with `CONDUIT_TLS_CA`).
async fn channel(endpoint: &str) -> Result<Leased> {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(h) if endpoint.starts_with("http://") => h.id(),
        _ => {
            return Ok(Leased {
                channel: connect_channel(endpoint).await?,
                _lease: None,
            });
        }
    };
    let (cell, lease) = {
        let mut pool = pool();
        pool.retain(|s| s.sessions > 0 || s.runtime == runtime);
        let found = pool.iter_mut().find(|s| {
            s.runtime == runtime && s.endpoint == endpoint && s.sessions < SESSIONS_PER_CONNECTION
        });
        let slot = match found {
            Some(s) => s,
            None => {
                pool.push(Slot {
                    id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    runtime,
                    endpoint: endpoint.to_owned(),
                    channel: Arc::new(tokio::sync::OnceCell::new()),
                    sessions: 0,
                });
                let last = pool.len() - 1;
                &mut pool[last]
            }
        };
        slot.sessions += 1;
        (slot.channel.clone(), Arc::new(Lease { slot: slot.id }))
    };
    // The first session connects; the others of the slot wait for it (and, if it fails, the
    // next one tries again). A failure gives the share back (the lease drops).
    let channel = cell
        .get_or_try_init(|| connect_channel(endpoint))
        .await?
        .clone();
    Ok(Leased {
        channel,
        _lease: Some(lease),
    })
}

/// An HTTP/2 channel to `endpoint` (`http://host:port`, or `https://host:port`: over TLS),
/// connected now.
async fn connect_channel(endpoint: &str) -> Result<Channel> {
    let ep = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| Error::InvalidOptions(format!("gRPC endpoint `{endpoint}`: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("claude-conduit/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| Error::InvalidOptions(format!("user agent: {e}")))?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        // Fixed flow-control windows, the connection's as large as the stream windows of all the
        // calls it may carry: a session whose reader has stopped fills its own stream window and
        // never the connection's, so the other sessions on a pooled connection go on.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(STREAM_WINDOW.saturating_mul(CALLS_PER_CONNECTION))
        // DATA frames up to 256 KiB from the gateway (HTTP/2's default 16 KiB would split each
        // batch the gateway's writer yields, `claude_conduit_proto::YIELD_BYTES`).
        .max_frame_size(MAX_FRAME_SIZE);
    #[cfg(feature = "tls")]
    if endpoint.starts_with("https://") {
        let mut config = (*super::tls::default_client_config()?).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = TlsConnector {
            config: Arc::new(config),
        };
        return ep
            .connect_with_connector(connector)
            .await
            .map_err(|e| unreachable("connecting to the gateway (gRPC over TLS)", e));
    }
    ep.connect()
        .await
        .map_err(|e| unreachable("connecting to the gateway (gRPC)", e))
}

/// The gateway could not be reached: the causes in the message, the error as the source.
fn unreachable(context: &str, e: tonic::transport::Error) -> Error {
    let message = format!("{context}: {}", error_chain(&e));
    Error::gateway_caused(GatewayErrorKind::Unavailable, None, message, e)
}

/// tonic's connector for `grpcs://`: TCP to the URI's authority (port 443 if none), then TLS
/// with the SDK's rustls config (ALPN `h2`), verifying the host name.
#[cfg(feature = "tls")]
#[derive(Clone)]
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

#[cfg(feature = "tls")]
type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

#[cfg(feature = "tls")]
impl tonic::codegen::Service<tonic::transport::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::transport::Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let authority = uri.authority().ok_or_else(|| {
                Error::InvalidOptions(format!("gRPC endpoint `{uri}` has no host"))
            })?;
            let addr = match authority.port_u16() {
                Some(_) => authority.as_str().to_owned(),
                None => format!("{}:443", authority.as_str()),
            };
            let name = super::tls::server_name(authority.as_str())?;
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .map_err(|e| Error::transport("connecting to the gateway (gRPC)", e))?;
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| Error::transport("TLS handshake with the gateway (gRPC)", e))?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// An error with its sources, for messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        // Wrappers often repeat their cause's text ("tcp connect error" twice): once is enough.
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// `authorization: Bearer <token>`, marked sensitive (never logged by tonic/hyper).
fn bearer(token: &str) -> Result<AsciiMetadataValue> {
    let mut v: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Error::InvalidOptions("the token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn authorized<T>(message: T, bearer: &AsciiMetadataValue) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    if let Some(tp) = crate::telemetry::traceparent().and_then(|t| t.parse().ok()) {
        request
            .metadata_mut()
            .insert(crate::telemetry::TRACEPARENT_HEADER, tp);
    }
    request
}

async fn create(
    channel: Channel,
    token: &str,
    request: &SessionRequest,
) -> Result<v1::SessionInfo> {
    let message = v1::CreateSessionRequest {
        args: request.args.clone(),
        cwd: request.cwd.clone(),
    };
    ConduitClient::new(channel)
        .create_session(authorized(message, &bearer(token)?))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| status_error("CreateSession", s))
}

impl Transport for GrpcTransport {
    type Sender = GrpcSender;
    type Receiver = GrpcReceiver;

    async fn connect(self) -> Result<Connection<GrpcSender, GrpcReceiver>> {
        let (client, leased) = self.client().await?;
        let wire = GrpcWire {
            bearer: bearer(self.remote.token())?,
            client,
            session_id: self.session_id.clone(),
            _leased: leased,
        };
        let description = format!(
            "grpc {} session {}",
            self.remote.grpc_endpoint(),
            self.session_id
        );
        super::relay::connect(
            wire,
            self.max_frame,
            ReconnectPolicy::default(),
            description,
        )
        .await
    }
}

/// Statuses after which a new stream cannot help.
fn is_fatal(code: Code) -> bool {
    matches!(
        code,
        Code::NotFound
            | Code::OutOfRange
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Unimplemented
            | Code::ResourceExhausted
    )
}

fn status_failure(s: Status) -> Failure {
    if s.code() == Code::DataLoss
        && let Some(lost) = super::relay::wire::Lost::from_message(s.message())
    {
        return Failure::Fatal(lost.into_error());
    }
    let fatal = is_fatal(s.code());
    let e = status_error("the gateway ended the session stream", s);
    if fatal {
        Failure::Fatal(e)
    } else {
        Failure::Transient(e)
    }
}

/// The gRPC wire of one session: `Stream` calls on a shared channel.
struct GrpcWire {
    bearer: AsciiMetadataValue,
    client: Client,
    session_id: String,
    /// The session's share of a pooled connection.
    _leased: Leased,
}

/// One open `Stream` call.
struct GrpcConn {
    tx: mpsc::Sender<v1::ClientMessage>,
    rx: Streaming<v1::ServerMessage>,
}

fn client_message(msg: client_message::Msg) -> v1::ClientMessage {
    v1::ClientMessage { msg: Some(msg) }
}

impl Wire for GrpcWire {
    type Conn = GrpcConn;

    async fn open(&self, after: u64) -> Result<GrpcConn, Failure> {
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        let attach = client_message(client_message::Msg::Attach(v1::Attach {
            session_id: self.session_id.clone(),
            after,
        }));
        if tx.try_send(attach).is_err() {
            return Err(Failure::Fatal(Error::Closed));
        }
        let request = authorized(ReceiverStream::new(rx), &self.bearer);
        let response = self
            .client
            .clone()
            .stream(request)
            .await
            .map_err(status_failure)?;
        Ok(GrpcConn {
            tx,
            rx: response.into_inner(),
        })
    }
}

impl WireConn for GrpcConn {
    /// tonic decodes each message's `data` as a slice of its decode buffer, which starts small
    /// (`LeanCodec`) and is allocated again as a stream goes on.
    const REPACK: bool = true;

    async fn recv(&mut self) -> Result<Incoming, Failure> {
        loop {
            let msg = match self.rx.message().await {
                Ok(Some(v1::ServerMessage { msg: Some(m) })) => m,
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(Failure::Transient(Error::gateway(
                        GatewayErrorKind::Unavailable,
                        None,
                        "the gRPC stream ended without an end",
                    )));
                }
                Err(s) => return Err(status_failure(s)),
            };
            return Ok(match msg {
                server_message::Msg::Hello(h) => Incoming::Hello(Hello {
                    in_seq: h.in_seq,
                    max_frame_bytes: h.max_frame_bytes,
                    session: h.session,
                }),
                server_message::Msg::Frame(f) => Incoming::Frame(f.seq, f.data),
                server_message::Msg::InAck(a) => Incoming::InAck(a.seq),
                server_message::Msg::Refused(r) => {
                    Incoming::Refused(super::relay::refusal_error(super::relay::wire::ErrorInfo {
                        limit: Some(r.limit),
                        size: Some(r.size),
                        ..super::relay::wire::ErrorInfo::new(&r.kind, r.message)
                    }))
                }
                server_message::Msg::End(end) => Incoming::End(Termination {
                    code: end.code,
                    signal: end.signal,
                    stderr_tail: end.stderr_tail,
                }),
            });
        }
    }

    async fn send(&mut self, out: Outgoing) -> Result<(), Failure> {
        let msg = match out {
            Outgoing::Frame(seq, data) => client_message::Msg::Frame(v1::Frame { seq, data }),
            Outgoing::Ack(seq) => client_message::Msg::Ack(v1::Ack { seq }),
            Outgoing::EndInput => client_message::Msg::EndInput(v1::EndInput {}),
            Outgoing::Close => client_message::Msg::Close(v1::Close {}),
        };
        self.tx.send(client_message(msg)).await.map_err(|_| {
            Failure::Transient(Error::gateway(
                GatewayErrorKind::Unavailable,
                None,
                "the gRPC request stream closed",
            ))
        })
    }
}

/// Sending half of a [`GrpcTransport`].
pub type GrpcSender = super::relay::GatewaySender;

/// Receiving half of a [`GrpcTransport`].
pub type GrpcReceiver = super::relay::GatewayReceiver;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let remote = Remote::parse("grpc://h:1", "s3cr3t-token").unwrap();
        let t = GrpcTransport::new(&remote, "s");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        let b = bearer("s3cr3t-token").unwrap();
        assert!(!format!("{b:?}").contains("s3cr3t"));
    }

    #[test]
    fn fatal_statuses() {
        assert!(is_fatal(Code::NotFound));
        assert!(is_fatal(Code::Aborted));
        assert!(!is_fatal(Code::Unavailable));
        assert!(!is_fatal(Code::Unknown));
        assert!(!is_fatal(Code::Cancelled));
    }
}
