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
//! One driver task owns the stream; the two halves talk to it through bounded channels, so
//! backpressure reaches HTTP/2 flow control. When the stream ends without an `End` (status
//! `UNAVAILABLE`, a reset, a dropped connection), the driver opens a new stream (tonic's channel
//! reconnects the HTTP/2 connection if need be) up to [`MAX_RECONNECTS`] times (backoff
//! 100 ms·2^k, ±50 % jitter) with `after = <last seq>`; the gateway replays exactly the frames
//! after it, and frames already seen are skipped by sequence number, so the stream arrives in
//! order, each frame once. The other way, after each hello the driver resends the frames the
//! gateway had not accepted yet (`seq > in_seq`), and then an end of input or close it had asked
//! for (both idempotent on the gateway). Statuses after which retrying cannot help
//! (`NOT_FOUND`, `OUT_OF_RANGE`, `ABORTED`, `UNAUTHENTICATED`, …) end the stream with an error.
//! Every reconnect counts in [`TransportMetrics`].
//!
//! A frame larger than the gateway's limit (`max_frame_bytes` in the hello; until then this
//! transport's own) is refused by [`FrameSender::send`] with [`Error::FrameTooLarge`]; one the
//! gateway refuses anyway (`Refused`) arrives as a per-frame `Err` on the receiving half. The
//! session goes on in both cases.
//!
//! `grpcs://` (HTTP/2 over TLS, ALPN `h2`) needs the `tls` cargo feature: tonic's channel runs
//! over a tokio-rustls connection with the SDK's rustls config (`transport::tls`:
//! webpki roots plus `CONDUIT_TLS_CA`). Without the feature it is an [`Error::InvalidOptions`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use claude_conduit_proto::ConduitClient;
use claude_conduit_proto::v1::{self, client_message, server_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

use super::relay::{Event, backoff, transport_error};
use super::{Connection, ConnectionInfo, FrameSender, Termination, Transport, TransportMetrics};
use crate::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::error::{Error, Result};

pub use super::relay::{ACK_EVERY, MAX_RECONNECTS};
/// How long a fresh stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the gateway may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive: ping this often, give up on the connection after the timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room above the frame limit for the protobuf envelope.
const MESSAGE_MARGIN: usize = 1 << 20;
/// Messages buffered toward the gateway on one stream.
const OUT_BUFFER: usize = 64;

type Client = ConduitClient<Channel>;

/// A session on a conduit gateway's gRPC service, as an SDK [`Transport`].
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::remote::{Remote, SessionRequest};
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
    endpoint: String,
    session_id: String,
    token: String,
    max_frame: usize,
    /// A channel already connected (by [`GrpcTransport::open_session`]), reused.
    channel: Option<Channel>,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret.
        f.debug_struct("GrpcTransport")
            .field("endpoint", &self.endpoint)
            .field("session_id", &self.session_id)
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

/// A status from the gateway as an SDK error.
fn status_error(context: &'static str, s: &Status) -> Error {
    match s.code() {
        Code::InvalidArgument => Error::InvalidOptions(s.message().to_owned()),
        // A transport failure's status says only "transport error": add its causes.
        code => match std::error::Error::source(s) {
            Some(cause) => transport_error(
                context,
                format!("{code:?}: {}: {}", s.message(), error_chain(cause)),
            ),
            None => transport_error(context, format!("{code:?}: {}", s.message())),
        },
    }
}

/// `http://host:port` for `http://`, `grpc://` or a bare `host:port`; `https://host:port` for
/// `https://` or `grpcs://` (with the `tls` feature).
fn http_endpoint(endpoint: &str) -> Result<String> {
    let (rest, tls) = match endpoint.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, false),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("grpc") => (rest, false),
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("grpcs") =>
        {
            if !cfg!(feature = "tls") {
                return Err(Error::InvalidOptions(format!(
                    "{scheme}:// needs the `tls` cargo feature of claude-conduit (this build has \
                     none)"
                )));
            }
            (rest, true)
        }
        Some((scheme, _)) => {
            return Err(Error::InvalidOptions(format!(
                "gRPC endpoint must be grpc[s]://host:port or http[s]://host:port, not {scheme}://"
            )));
        }
        None => (endpoint, false),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        return Err(Error::InvalidOptions(format!(
            "gRPC endpoint needs host:port and no path: `{endpoint}`"
        )));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{authority}"))
}

fn message_limit(max_frame: usize) -> usize {
    max_frame.saturating_add(MESSAGE_MARGIN)
}

impl GrpcTransport {
    /// The session `session_id` on the gateway at `endpoint` (`grpc://host:port` or
    /// `http://host:port`; `grpcs://` or `https://` with the `tls` feature), with `token`.
    pub fn new(
        endpoint: impl Into<String>,
        session_id: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            session_id: session_id.into(),
            token: token.into(),
            max_frame: DEFAULT_MAX_FRAME_BYTES,
            channel: None,
        }
    }

    /// The per-frame size limit (default 256 MiB, like the SDK's).
    pub fn max_frame_bytes(mut self, limit: usize) -> Self {
        self.max_frame = limit;
        self
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Create a session on `remote` for `request` (`CreateSession`) and return the transport for
    /// it (which reuses the HTTP/2 connection).
    pub async fn open_session(
        remote: &crate::remote::Remote,
        request: &crate::remote::SessionRequest,
    ) -> Result<Self> {
        if !remote.prefix().is_empty() {
            return Err(Error::InvalidOptions(format!(
                "a gRPC gateway URL has no path (got `{}`)",
                remote.prefix()
            )));
        }
        let scheme = if remote.scheme().is_tls() {
            "grpcs"
        } else {
            "grpc"
        };
        let endpoint = http_endpoint(&format!("{scheme}://{}", remote.authority()))?;
        let channel = connect_channel(&endpoint).await?;
        let info = create(channel.clone(), remote.token(), request).await?;
        Ok(Self {
            channel: Some(channel),
            ..Self::new(endpoint, info.id, remote.token())
        })
    }

    /// Create a session (`CreateSession`) on the gateway at `endpoint`; returns its id.
    pub async fn create_session(
        endpoint: &str,
        token: &str,
        request: &crate::remote::SessionRequest,
    ) -> Result<String> {
        let channel = connect_channel(&http_endpoint(endpoint)?).await?;
        Ok(create(channel, token, request).await?.id)
    }

    async fn client(&self) -> Result<Client> {
        let channel = match &self.channel {
            Some(c) => c.clone(),
            None => connect_channel(&http_endpoint(&self.endpoint)?).await?,
        };
        let limit = message_limit(self.max_frame);
        Ok(ConduitClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit))
    }
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
        .http2_adaptive_window(true);
    #[cfg(feature = "tls")]
    if endpoint.starts_with("https://") {
        let mut config = (*super::tls::default_client_config()?).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = TlsConnector {
            config: Arc::new(config),
        };
        return ep.connect_with_connector(connector).await.map_err(|e| {
            transport_error("connecting to the gateway (gRPC over TLS)", error_chain(&e))
        });
    }
    ep.connect()
        .await
        .map_err(|e| transport_error("connecting to the gateway (gRPC)", error_chain(&e)))
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
    request
}

async fn create(
    channel: Channel,
    token: &str,
    request: &crate::remote::SessionRequest,
) -> Result<v1::SessionInfo> {
    let message = v1::CreateSessionRequest {
        args: request.args.clone(),
        cwd: request.cwd.clone(),
    };
    ConduitClient::new(channel)
        .create_session(authorized(message, &bearer(token)?))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| status_error("CreateSession", &s))
}

/// What the sending half asks the driver to do.
#[derive(Debug)]
enum Out {
    Frame(Bytes),
    EndInput,
    Close,
}

impl Transport for GrpcTransport {
    type Sender = GrpcSender;
    type Receiver = GrpcReceiver;

    async fn connect(self) -> Result<Connection<GrpcSender, GrpcReceiver>> {
        let started = Instant::now();
        let client = self.client().await?;
        let metrics = Arc::new(TransportMetrics::default());
        let (out_tx, out_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let limit = Arc::new(AtomicUsize::new(self.max_frame));
        let info = ConnectionInfo {
            description: format!("grpc {} session {}", self.endpoint, self.session_id),
            ..ConnectionInfo::default()
        };
        let mut driver = Driver {
            bearer: bearer(&self.token)?,
            session_id: self.session_id,
            client,
            metrics: metrics.clone(),
            out: out_rx,
            events: ev_tx,
            last_seq: 0,
            acked: 0,
            out_seq: 0,
            unacked: VecDeque::new(),
            limit: limit.clone(),
            input_ended: false,
            close_requested: false,
        };
        let stream = driver
            .open()
            .await
            .map_err(|s| status_error("opening the gRPC session stream", &s))?;
        metrics.set_connect_time(started.elapsed());
        tokio::spawn(driver.run(stream));
        Ok(Connection {
            sender: GrpcSender {
                tx: Some(out_tx),
                metrics: metrics.clone(),
                limit,
            },
            receiver: super::relay::GatewayReceiver::new(ev_rx),
            metrics,
            info,
        })
    }
}

/// Why one stream's life ended.
enum StreamEnd {
    /// The session ended or the transport is no longer used: stop.
    Done,
    /// The stream dropped: open another.
    Dropped(String),
    /// Reconnecting cannot help.
    Fatal(Error),
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

fn status_end(s: &Status) -> StreamEnd {
    if is_fatal(s.code()) {
        StreamEnd::Fatal(transport_error(
            "the gateway ended the session stream",
            format!("{:?}: {}", s.code(), s.message()),
        ))
    } else {
        StreamEnd::Dropped(format!("{:?}: {}", s.code(), s.message()))
    }
}

/// One open `Stream` call.
struct Stream {
    tx: mpsc::Sender<v1::ClientMessage>,
    rx: Streaming<v1::ServerMessage>,
}

struct Driver {
    session_id: String,
    bearer: AsciiMetadataValue,
    client: Client,
    metrics: Arc<TransportMetrics>,
    out: mpsc::Receiver<Out>,
    events: mpsc::Sender<Event>,
    /// The newest gateway frame seen.
    last_seq: u64,
    /// The newest gateway frame acked.
    acked: u64,
    /// The newest sequence number given to one of our frames.
    out_seq: u64,
    /// Our frames the gateway has not acknowledged yet, oldest first.
    unacked: VecDeque<(u64, Bytes)>,
    /// The frame-size limit the sending half enforces (the gateway's, once it said).
    limit: Arc<AtomicUsize>,
    /// End of input was asked for (resent after a reconnect; idempotent on the gateway).
    input_ended: bool,
    /// A close was asked for (resent after a reconnect; idempotent on the gateway).
    close_requested: bool,
}

fn client_message(msg: client_message::Msg) -> v1::ClientMessage {
    v1::ClientMessage { msg: Some(msg) }
}

fn numbered(seq: u64, data: Bytes) -> v1::ClientMessage {
    client_message(client_message::Msg::Frame(v1::Frame { seq, data }))
}

/// A permit to send on the stream, then the next thing the sending half wants sent.
async fn next_out<'a>(
    tx: &'a mpsc::Sender<v1::ClientMessage>,
    out: &mut mpsc::Receiver<Out>,
) -> Option<(mpsc::Permit<'a, v1::ClientMessage>, Option<Out>)> {
    let permit = tx.reserve().await.ok()?;
    Some((permit, out.recv().await))
}

impl Driver {
    /// Open a `Stream` call that resumes after `last_seq`.
    async fn open(&mut self) -> std::result::Result<Stream, Status> {
        let (tx, rx) = mpsc::channel(OUT_BUFFER);
        let attach = client_message(client_message::Msg::Attach(v1::Attach {
            session_id: self.session_id.clone(),
            after: self.last_seq,
        }));
        tx.try_send(attach)
            .map_err(|_| Status::internal("a fresh channel is full"))?;
        let request = authorized(ReceiverStream::new(rx), &self.bearer);
        let response = self.client.stream(request).await?;
        Ok(Stream {
            tx,
            rx: response.into_inner(),
        })
    }

    async fn run(mut self, mut stream: Stream) {
        loop {
            let reason = match self.pump(&mut stream).await {
                StreamEnd::Done => return,
                StreamEnd::Fatal(e) => {
                    self.metrics.error();
                    let _ = self.events.send(Event::Failed(e)).await;
                    return;
                }
                StreamEnd::Dropped(reason) => reason,
            };
            tracing::debug!(reason = %reason, last_seq = self.last_seq, "gateway stream dropped");
            match self.reconnect().await {
                Ok(s) => stream = s,
                Err(e) => {
                    self.metrics.error();
                    let _ = self.events.send(Event::Failed(e)).await;
                    return;
                }
            }
        }
    }

    async fn reconnect(&mut self) -> Result<Stream> {
        let mut last = String::new();
        for attempt in 0..MAX_RECONNECTS {
            tokio::select! {
                () = tokio::time::sleep(backoff(attempt)) => {}
                () = self.events.closed() => return Err(Error::Closed),
            }
            match self.open().await {
                Ok(stream) => {
                    self.metrics.reconnect();
                    self.acked = self.last_seq;
                    return Ok(stream);
                }
                Err(s) if is_fatal(s.code()) => {
                    return Err(status_error("resuming the gRPC session stream", &s));
                }
                Err(s) => last = format!("{:?}: {}", s.code(), s.message()),
            }
        }
        Err(transport_error(
            "reconnecting to the gateway (gRPC)",
            format!("gave up after {MAX_RECONNECTS} attempts: {last}"),
        ))
    }

    /// Move messages on one stream until it ends.
    async fn pump(&mut self, stream: &mut Stream) -> StreamEnd {
        // The gateway speaks first: its hello says which of our frames it has.
        match tokio::time::timeout(HELLO_TIMEOUT, stream.rx.message()).await {
            Ok(Ok(Some(v1::ServerMessage {
                msg: Some(server_message::Msg::Hello(hello)),
            }))) => {
                if let Some(end) = self.on_hello(stream, &hello).await {
                    return end;
                }
            }
            Ok(Ok(Some(other))) => {
                return StreamEnd::Fatal(transport_error(
                    "reading the gateway stream",
                    format!("expected a hello, got {other:?}"),
                ));
            }
            Ok(Ok(None)) => return StreamEnd::Dropped("end of stream before the hello".into()),
            Ok(Err(s)) => return status_end(&s),
            Err(_) => return StreamEnd::Dropped("no hello from the gateway in time".into()),
        }
        let mut out_open = true;
        loop {
            let want_ack = self.last_seq - self.acked >= ACK_EVERY;
            tokio::select! {
                msg = stream.rx.message() => match msg {
                    Ok(Some(m)) => {
                        if let Some(end) = self.on_message(stream, m).await {
                            return end;
                        }
                    }
                    Ok(None) => return StreamEnd::Dropped("stream ended without an end".into()),
                    Err(s) => return status_end(&s),
                },
                permit = stream.tx.reserve(), if want_ack => match permit {
                    Ok(permit) => {
                        permit.send(client_message(client_message::Msg::Ack(v1::Ack {
                            seq: self.last_seq,
                        })));
                        self.acked = self.last_seq;
                    }
                    Err(_) => return StreamEnd::Dropped("request stream closed".into()),
                },
                next = next_out(&stream.tx, &mut self.out), if out_open => {
                    let Some((permit, out)) = next else {
                        return StreamEnd::Dropped("request stream closed".into());
                    };
                    match out {
                        Some(Out::Frame(f)) => {
                            // Kept until acked: resent after a reconnect if need be.
                            self.out_seq += 1;
                            self.unacked.push_back((self.out_seq, f.clone()));
                            permit.send(numbered(self.out_seq, f));
                        }
                        Some(Out::EndInput) => {
                            self.input_ended = true;
                            permit.send(client_message(client_message::Msg::EndInput(
                                v1::EndInput {},
                            )));
                        }
                        Some(Out::Close) => {
                            self.close_requested = true;
                            permit.send(client_message(client_message::Msg::Close(v1::Close {})));
                        }
                        None => out_open = false,
                    }
                }
                () = self.events.closed() => {
                    // Nobody reads any more: leave (dropping the call cancels it); the gateway
                    // keeps the session for its grace period.
                    return StreamEnd::Done;
                }
            }
        }
    }

    /// Take in a hello: the gateway's limit, which of our frames it has; resend the rest.
    async fn on_hello(&mut self, stream: &Stream, hello: &v1::Hello) -> Option<StreamEnd> {
        if let Ok(limit) = usize::try_from(hello.max_frame_bytes)
            && limit > 0
        {
            self.limit.store(limit, Ordering::Relaxed);
        }
        self.forget_through(hello.in_seq);
        let mut resend: Vec<v1::ClientMessage> = self
            .unacked
            .iter()
            .map(|(seq, f)| numbered(*seq, f.clone()))
            .collect();
        if self.input_ended {
            resend.push(client_message(client_message::Msg::EndInput(
                v1::EndInput {},
            )));
        }
        if self.close_requested {
            resend.push(client_message(client_message::Msg::Close(v1::Close {})));
        }
        for msg in resend {
            if stream.tx.send(msg).await.is_err() {
                return Some(StreamEnd::Dropped("request stream closed".into()));
            }
        }
        None
    }

    /// One gateway message after the hello. `Some` ends this stream.
    async fn on_message(&mut self, stream: &Stream, m: v1::ServerMessage) -> Option<StreamEnd> {
        match m.msg? {
            server_message::Msg::Frame(f) => self.on_frame(f).await,
            server_message::Msg::InAck(a) => {
                self.forget_through(a.seq);
                None
            }
            server_message::Msg::Hello(h) => self.on_hello(stream, &h).await,
            server_message::Msg::Refused(r) => {
                let refused = if r.kind == "frame_too_large" {
                    Error::FrameTooLarge {
                        limit: usize::try_from(r.limit).unwrap_or(usize::MAX),
                        size: usize::try_from(r.size).unwrap_or(usize::MAX),
                    }
                } else {
                    transport_error("the gateway refused a frame", r.message)
                };
                self.metrics.error();
                if self.events.send(Event::Refused(refused)).await.is_err() {
                    return Some(StreamEnd::Done);
                }
                None
            }
            server_message::Msg::End(end) => {
                let t = Termination {
                    code: end.code,
                    signal: end.signal,
                    stderr_tail: end.stderr_tail,
                };
                let _ = self.events.send(Event::End(t)).await;
                Some(StreamEnd::Done)
            }
        }
    }

    async fn on_frame(&mut self, f: v1::Frame) -> Option<StreamEnd> {
        if f.seq <= self.last_seq {
            return None; // Seen before a reconnect.
        }
        if f.seq != self.last_seq + 1 {
            return Some(StreamEnd::Fatal(transport_error(
                "reading the gateway stream",
                format!("gap in sequence numbers: {} after {}", f.seq, self.last_seq),
            )));
        }
        self.metrics.frame_received(f.data.len());
        if self.events.send(Event::Frame(f.data)).await.is_err() {
            return Some(StreamEnd::Done);
        }
        self.last_seq = f.seq;
        None
    }

    /// Drop our frames up to `seq`: the gateway has them.
    fn forget_through(&mut self, seq: u64) {
        while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
            self.unacked.pop_front();
        }
    }
}

/// Sending half of a [`GrpcTransport`].
#[derive(Debug)]
pub struct GrpcSender {
    tx: Option<mpsc::Sender<Out>>,
    metrics: Arc<TransportMetrics>,
    limit: Arc<AtomicUsize>,
}

impl FrameSender for GrpcSender {
    async fn send(&mut self, frame: Bytes) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let len = frame.len();
        let limit = self.limit.load(Ordering::Relaxed);
        if len > limit {
            return Err(Error::FrameTooLarge { limit, size: len });
        }
        tx.send(Out::Frame(frame))
            .await
            .map_err(|_| Error::Closed)?;
        self.metrics.frame_sent(len);
        Ok(())
    }

    async fn end_input(&mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Out::EndInput).await;
        }
        Ok(())
    }

    /// Ask the gateway to close the CLI gracefully (end input, wait, signal); the receiving half
    /// then ends with the CLI's termination.
    async fn close(mut self, _grace: Duration) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Out::Close).await;
        }
        Ok(())
    }
}

/// Receiving half of a [`GrpcTransport`].
pub type GrpcReceiver = super::relay::GatewayReceiver;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            http_endpoint("grpc://127.0.0.1:1").ok().as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(
            http_endpoint("http://h:2/").ok().as_deref(),
            Some("http://h:2")
        );
        assert_eq!(http_endpoint("h:3").ok().as_deref(), Some("http://h:3"));
        for tls in ["grpcs://h:4", "https://h:4/"] {
            if cfg!(feature = "tls") {
                assert_eq!(http_endpoint(tls).ok().as_deref(), Some("https://h:4"));
            } else {
                assert!(
                    matches!(http_endpoint(tls), Err(Error::InvalidOptions(_))),
                    "{tls}"
                );
            }
        }
        for bad in ["grpc://", "grpc://h:1/x", "ws://h:1"] {
            assert!(http_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let t = GrpcTransport::new("grpc://h:1", "s", "s3cr3t-token");
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
