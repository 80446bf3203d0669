//! A client of the conduit gateway over plain HTTP: client frames go out as `POST`s, the CLI's
//! frames come back as server-sent events (cargo feature `http`). For networks and proxies where
//! a WebSocket cannot be held.
//!
//! ```text
//! Client ─► HttpTransport ══POST frames / GET events══► gateway ══► SubprocessTransport ══► claude
//! ```
//!
//! Wire (see the `claude-conduit-gateway` crate, module `http`):
//!
//! * `GET /v1/sessions/{id}/events` (with `Last-Event-ID: N` on a resume) answers
//!   `text/event-stream`: an `event: hello` with `{"session","in_seq","max_frame_bytes"}`, then
//!   each CLI frame as an event whose `id` is its sequence number, and `event: end` with
//!   `{code,signal,stderr_tail}` when the CLI exits. `: ping` comments keep it alive.
//! * `POST /v1/sessions/{id}/ack` with `{"ack":N}` every [`ACK_EVERY`] frames: the gateway's
//!   replay ring holds frames until they are acked and stops reading the CLI when it is full.
//! * `POST /v1/sessions/{id}/frames`: JSON lines, `Conduit-Seq` numbering the first; the reply
//!   says `in_seq`, the highest client frame the session has.
//! * `POST /v1/sessions/{id}/end_input` and `DELETE /v1/sessions/{id}` (close).
//!
//! Three tasks share one pooled [`reqwest::Client`] (connect timeout, user agent
//! `claude-conduit/<version>`):
//!
//! * the **reader** owns the event stream. It parses events as bytes arrive (a line is split off
//!   the read buffer without copying, and the buffer is scanned once), skips frames it has seen
//!   (`seq <= last`), and when the stream drops without an `end` reconnects up to
//!   [`MAX_RECONNECTS`] times (backoff 100 ms·2^k, ±50 % jitter) with `Last-Event-ID` set to the
//!   last frame seen: the gateway replays what came after it, so frames arrive in order, each
//!   once. Reconnects count in [`TransportMetrics`]. A stream silent for 60 s (the gateway pings
//!   every 20 s) counts as dropped.
//! * the **acker** posts the newest sequence number to ack, coalescing.
//! * the **writer** numbers client frames 1, 2, 3, … and posts what is queued in one body (up to
//!   1 MiB; a larger frame goes alone, uncopied). It keeps frames until a reply's `in_seq` (or a
//!   hello's) covers them; a failed `POST` is retried with backoff from the first unconfirmed
//!   frame, and the gateway skips the ones it already has.
//!
//! A frame larger than the gateway's limit (`max_frame_bytes` in the hello) is refused by
//! [`FrameSender::send`] with [`Error::FrameTooLarge`]; one the gateway refuses anyway (a `413`)
//! arrives as a per-frame `Err` on the receiving half. The session goes on in both cases.
//!
//! [`FrameSender::close`] deletes the session on the gateway (which closes the CLI gracefully,
//! with the gateway's own grace period); the receiving half then ends with the CLI's
//! termination from the `end` event. `https://` needs the `tls` cargo feature (rustls with the
//! SDK's config, see `transport::tls`); without it, it is an [`Error::InvalidOptions`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::relay::{Event, backoff, transport_error};
use super::{Connection, ConnectionInfo, FrameSender, Termination, Transport, TransportMetrics};
use crate::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::error::{Error, Result};

pub use super::relay::{ACK_EVERY, MAX_RECONNECTS};

/// A transport error that keeps `e` as its source (so the cause chain — connection refused, a
/// TLS alert, … — reaches the user, not only reqwest's top line).
fn with_source(context: &'static str, e: reqwest::Error) -> Error {
    Error::transport(context, std::io::Error::other(e))
}

/// The header that numbers the first frame of a `POST …/frames` body.
pub const SEQ_HEADER: &str = "conduit-seq";
/// How long a fresh event stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the event stream may stay silent (the gateway pings every 20 s by default).
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connect timeout of every request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of queued frames sent in one `POST` (a larger frame goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Frames sent in one `POST`.
const MAX_BATCH_FRAMES: usize = 256;
/// What an event line may hold beyond the frame (`data: `, slack).
const LINE_SLACK: usize = 1024;
/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("claude-conduit/", env!("CARGO_PKG_VERSION"));

/// A session on a conduit gateway over plain HTTP, as an SDK [`Transport`].
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::remote::{Remote, SessionRequest};
/// use claude_conduit::transport::http::HttpTransport;
/// use claude_conduit::{Client, Options};
/// let remote = Remote::parse("http://127.0.0.1:8992", "secret")?;
/// let transport = HttpTransport::open_session(&remote, &SessionRequest::default()).await?;
/// let client = Client::connect_with(transport, Options::default()).await?;
/// # Ok(()) }
/// ```
///
/// Most code uses `Options::builder().transport("http://host:port", token)` and
/// [`Client::connect`](crate::Client::connect) instead.
#[derive(Clone)]
pub struct HttpTransport {
    base_url: String,
    session_id: String,
    token: String,
    max_frame: usize,
    client: Option<reqwest::Client>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret.
        f.debug_struct("HttpTransport")
            .field("base_url", &self.base_url)
            .field("session_id", &self.session_id)
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

/// Whether `base` (`http://host[:port]…`) names this machine.
fn is_loopback(base: &str) -> bool {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The one HTTP client of a transport. Proxies from the environment (`HTTP_PROXY`, …) apply,
/// except to a gateway on this machine. With the `tls` feature, `https://` uses the SDK's rustls
/// config ([`super::tls::default_client_config`]).
fn build_client(base: &str) -> Result<reqwest::Client> {
    let builder = if is_loopback(base) {
        reqwest::Client::builder().no_proxy()
    } else {
        reqwest::Client::builder()
    };
    #[cfg(feature = "tls")]
    let builder = builder.tls_backend_preconfigured(reqwest_tls_config(base)?);
    builder
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
        .tcp_nodelay(true)
        // A peer that vanished without a reset is found by the OS within about a minute.
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_keepalive_interval(Duration::from_secs(10))
        .tcp_keepalive_retries(3)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| transport_error("building the HTTP client", e))
}

/// The rustls config reqwest gets (it has no crypto provider of its own): the SDK's, with ALPN
/// `http/1.1`. A plain `http://` gateway does not depend on `CONDUIT_TLS_CA` being readable.
#[cfg(feature = "tls")]
fn reqwest_tls_config(base: &str) -> Result<rustls::ClientConfig> {
    let config = match super::tls::default_client_config() {
        Ok(c) => c,
        Err(e) if is_https(base) => return Err(e),
        Err(_) => super::tls::client_config(None)?,
    };
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(feature = "tls")]
fn is_https(base: &str) -> bool {
    base.split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("https"))
}

/// `base_url` without a trailing `/`, checked to be `http://host[:port][/prefix]` (or
/// `https://…` with the `tls` feature).
fn check_base(base_url: &str) -> Result<String> {
    let base = base_url.trim_end_matches('/');
    let Some((scheme, rest)) = base.split_once("://") else {
        return Err(Error::InvalidOptions(format!(
            "gateway URL needs a scheme: `{base_url}`"
        )));
    };
    if !cfg!(feature = "tls") && scheme.eq_ignore_ascii_case("https") {
        return Err(Error::InvalidOptions(
            "https:// needs the `tls` cargo feature of claude-conduit (this build has none)".into(),
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Error::InvalidOptions(format!(
            "gateway URL must start with http:// or https://: `{base_url}`"
        )));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::InvalidOptions(format!(
            "gateway URL has no host: `{base_url}`"
        )));
    }
    Ok(base.to_owned())
}

fn bearer(token: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::InvalidOptions("the token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The body of a reply, for error messages (bounded).
async fn reply_text(resp: reqwest::Response) -> String {
    match resp.bytes().await {
        Ok(b) => crate::error::excerpt(&b, 512),
        Err(_) => String::new(),
    }
}

impl HttpTransport {
    /// The session `session_id` on the gateway at `base_url` (`http://host:port[/prefix]`), with
    /// `token`.
    pub fn new(
        base_url: impl Into<String>,
        session_id: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            session_id: session_id.into(),
            token: token.into(),
            max_frame: DEFAULT_MAX_FRAME_BYTES,
            client: None,
        }
    }

    /// The per-frame size limit for frames received (default 256 MiB, like the SDK's).
    pub fn max_frame_bytes(mut self, limit: usize) -> Self {
        self.max_frame = limit;
        self
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Check the gateway's health (`GET /health`), create a session on `remote` for `request`
    /// (`POST /v1/sessions`) and return the transport for it; [`Transport::connect`] then opens
    /// the event stream.
    pub async fn open_session(
        remote: &crate::remote::Remote,
        request: &crate::remote::SessionRequest,
    ) -> Result<Self> {
        let base = check_base(&remote.http_base())?;
        let client = build_client(&base)?;
        let health = client
            .get(format!("{base}/health"))
            .send()
            .await
            .map_err(|e| with_source("checking the gateway's health", e))?;
        if health.status() != StatusCode::OK {
            let status = health.status();
            return Err(transport_error(
                "checking the gateway's health",
                format!("GET /health: status {status}: {}", reply_text(health).await),
            ));
        }
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidOptions(format!("session request: {e}")))?;
        let resp = client
            .post(format!("{base}/v1/sessions"))
            .header(AUTHORIZATION, bearer(remote.token())?)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| with_source("creating a session", e))?;
        let status = resp.status();
        let reply = resp
            .bytes()
            .await
            .map_err(|e| with_source("reading the POST /v1/sessions reply", e))?;
        if !status.is_success() {
            return Err(transport_error(
                "creating a session",
                format!(
                    "POST /v1/sessions: status {status}: {}",
                    crate::error::excerpt(&reply, 512)
                ),
            ));
        }
        let v: Value = serde_json::from_slice(&reply).map_err(|e| Error::decode(&reply, e))?;
        let id = v["id"]
            .as_str()
            .ok_or_else(|| Error::decode(&reply, "no `id` in the reply"))?;
        let mut t = Self::new(base, id, remote.token());
        t.client = Some(client);
        Ok(t)
    }
}

/// What every task needs to make requests.
struct Shared {
    client: reqwest::Client,
    /// `{base}/v1/sessions/{id}`.
    session_url: String,
    auth: HeaderValue,
    /// The receive limit (frame bytes).
    max_frame: usize,
}

/// The session's `hello`.
#[derive(Debug, Clone, Copy)]
struct Hello {
    in_seq: u64,
    max_frame_bytes: Option<usize>,
}

/// Why opening an event stream failed.
enum OpenError {
    /// Worth another try (connection refused, 5xx, dropped before the hello).
    Transient(Error),
    /// Retrying cannot help (unknown session, too old a resume, bad token).
    Fatal(Error),
}

impl OpenError {
    fn into_error(self) -> Error {
        match self {
            Self::Transient(e) | Self::Fatal(e) => e,
        }
    }
}

impl Shared {
    fn url(&self, tail: &str) -> String {
        format!("{}{tail}", self.session_url)
    }

    /// `GET …/events` resuming after `after`, read up to its hello.
    async fn open_stream(
        &self,
        after: u64,
    ) -> std::result::Result<(EventStream, Hello), OpenError> {
        let mut req = self
            .client
            .get(self.url("/events"))
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "text/event-stream");
        if after > 0 {
            req = req.header("last-event-id", after.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| OpenError::Transient(with_source("opening the event stream", e)))?;
        let status = resp.status();
        if !status.is_success() {
            let e = transport_error(
                "opening the event stream",
                format!("status {status}: {}", reply_text(resp).await),
            );
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(if transient {
                OpenError::Transient(e)
            } else {
                OpenError::Fatal(e)
            });
        }
        let mut stream = EventStream {
            response: resp,
            parser: SseParser::new(self.max_frame.saturating_add(LINE_SLACK)),
        };
        let first = tokio::time::timeout(HELLO_TIMEOUT, stream.next())
            .await
            .map_err(|_| {
                OpenError::Transient(transport_error(
                    "opening the event stream",
                    "no hello from the gateway in time",
                ))
            })?;
        let event = match first {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                return Err(OpenError::Transient(transport_error(
                    "opening the event stream",
                    "the stream ended before the hello",
                )));
            }
            Err(StreamError::Dropped(why)) => {
                return Err(OpenError::Transient(transport_error(
                    "opening the event stream",
                    why,
                )));
            }
            Err(StreamError::Fatal(e)) => return Err(OpenError::Fatal(e)),
        };
        if event.name.as_deref() != Some("hello") {
            return Err(OpenError::Fatal(transport_error(
                "opening the event stream",
                format!("expected a hello, got event {:?}", event.name),
            )));
        }
        let v: Value = serde_json::from_slice(&event.data)
            .map_err(|e| OpenError::Fatal(Error::decode(&event.data, e)))?;
        let hello = Hello {
            in_seq: v["in_seq"].as_u64().unwrap_or(0),
            max_frame_bytes: v["max_frame_bytes"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok()),
        };
        Ok((stream, hello))
    }

    /// `POST …/frames` with `frames` numbered from `first`.
    async fn post_frames(&self, first: u64, body: Bytes) -> std::result::Result<PostReply, Error> {
        let resp = self
            .client
            .post(self.url("/frames"))
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(SEQ_HEADER, first.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| with_source("posting frames", e))?;
        let status = resp.status();
        let reply = resp
            .bytes()
            .await
            .map_err(|e| with_source("reading the POST …/frames reply", e))?;
        let v: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        let in_seq = v["in_seq"].as_u64();
        Ok(match status {
            StatusCode::OK => PostReply::Accepted {
                in_seq: in_seq.unwrap_or(0),
            },
            StatusCode::PAYLOAD_TOO_LARGE if v["error"]["kind"] == "frame_too_large" => {
                PostReply::TooLarge {
                    in_seq: in_seq.unwrap_or(0),
                    limit: json_usize(&v["error"]["limit"]),
                    size: json_usize(&v["error"]["size"]),
                }
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => PostReply::Gone,
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                return Err(transport_error(
                    "posting frames",
                    format!("status {s}: {}", crate::error::excerpt(&reply, 512)),
                ));
            }
            s => PostReply::Refused(transport_error(
                "the gateway refused frames",
                format!("status {s}: {}", crate::error::excerpt(&reply, 512)),
            )),
        })
    }

    /// A bodyless request that should answer 2xx (or 404/410 once the session is gone).
    async fn simple(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<String>,
        context: &'static str,
    ) -> std::result::Result<(), Error> {
        let mut req = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| with_source(context, e))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(());
        }
        Err(transport_error(
            context,
            format!("status {status}: {}", reply_text(resp).await),
        ))
    }
}

/// What the gateway said to a `POST …/frames`.
enum PostReply {
    Accepted {
        in_seq: u64,
    },
    TooLarge {
        in_seq: u64,
        limit: usize,
        size: usize,
    },
    /// The session (or its CLI) is gone.
    Gone,
    /// A refusal that retrying cannot fix (a gap, a bad token).
    Refused(Error),
}

fn json_usize(v: &Value) -> usize {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// What the sending half asks the writer to do.
#[derive(Debug)]
enum Out {
    Frame(Bytes),
    EndInput,
    /// Delete the session; the writer answers when done.
    Close(oneshot::Sender<()>),
}

impl Transport for HttpTransport {
    type Sender = HttpSender;
    type Receiver = HttpReceiver;

    async fn connect(self) -> Result<Connection<HttpSender, HttpReceiver>> {
        let started = Instant::now();
        let base = check_base(&self.base_url)?;
        let client = match &self.client {
            Some(c) => c.clone(),
            None => build_client(&base)?,
        };
        let shared = Arc::new(Shared {
            client,
            session_url: format!("{base}/v1/sessions/{}", self.session_id),
            auth: bearer(&self.token)?,
            max_frame: self.max_frame,
        });
        let (stream, hello) = shared.open_stream(0).await.map_err(OpenError::into_error)?;
        let metrics = Arc::new(TransportMetrics::default());
        metrics.set_connect_time(started.elapsed());
        let limit = Arc::new(AtomicUsize::new(
            hello.max_frame_bytes.unwrap_or(self.max_frame),
        ));
        let (out_tx, out_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let (ack_tx, ack_rx) = watch::channel(0u64);
        let (in_seq_tx, in_seq_rx) = watch::channel(hello.in_seq);
        tokio::spawn(ack_task(shared.clone(), ack_rx));
        tokio::spawn(
            Writer {
                shared: shared.clone(),
                out: out_rx,
                events: ev_tx.clone(),
                in_seq: in_seq_rx,
                out_seq: 0,
                unacked: VecDeque::new(),
                held: None,
            }
            .run(),
        );
        tokio::spawn(
            Reader {
                shared,
                metrics: metrics.clone(),
                events: ev_tx,
                last_seq: 0,
                acked: 0,
                ack: ack_tx,
                in_seq: in_seq_tx,
                limit: limit.clone(),
            }
            .run(stream),
        );
        Ok(Connection {
            sender: HttpSender {
                tx: Some(out_tx),
                input_ended: false,
                metrics: metrics.clone(),
                limit,
            },
            receiver: super::relay::GatewayReceiver::new(ev_rx),
            metrics,
            info: ConnectionInfo {
                description: format!("http {} session {}", base, self.session_id),
                ..ConnectionInfo::default()
            },
        })
    }
}

/// Why one event stream's life ended.
enum StreamEnd {
    /// The session ended or nobody reads any more: stop.
    Done,
    /// The stream dropped: reconnect.
    Dropped(String),
    /// Reconnecting cannot help.
    Fatal(Error),
}

/// The reader task: the event stream, resumes, acks.
struct Reader {
    shared: Arc<Shared>,
    metrics: Arc<TransportMetrics>,
    events: mpsc::Sender<Event>,
    /// The newest gateway frame seen.
    last_seq: u64,
    /// The newest sequence number handed to the acker (or implied by a resume).
    acked: u64,
    ack: watch::Sender<u64>,
    /// Each hello's `in_seq`, for the writer.
    in_seq: watch::Sender<u64>,
    /// The frame-size limit the sending half enforces.
    limit: Arc<AtomicUsize>,
}

impl Reader {
    async fn run(mut self, mut stream: EventStream) {
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
            tracing::debug!(reason = %reason, last_seq = self.last_seq, "gateway event stream dropped");
            drop(stream);
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

    async fn reconnect(&mut self) -> Result<EventStream> {
        let mut last = String::new();
        for attempt in 0..MAX_RECONNECTS {
            tokio::time::sleep(backoff(attempt)).await;
            if self.events.is_closed() {
                return Err(Error::Closed);
            }
            match self.shared.open_stream(self.last_seq).await {
                Ok((stream, hello)) => {
                    self.metrics.reconnect();
                    // The resume counts as an ack of everything up to `last_seq`.
                    self.acked = self.last_seq;
                    self.on_hello(hello);
                    return Ok(stream);
                }
                Err(OpenError::Fatal(e)) => return Err(e),
                Err(OpenError::Transient(e)) => last = e.to_string(),
            }
        }
        Err(transport_error(
            "reconnecting to the gateway",
            format!("gave up after {MAX_RECONNECTS} attempts: {last}"),
        ))
    }

    fn on_hello(&self, hello: Hello) {
        if let Some(limit) = hello.max_frame_bytes {
            self.limit.store(limit, Ordering::Relaxed);
        }
        self.in_seq.send_replace(hello.in_seq);
    }

    async fn pump(&mut self, stream: &mut EventStream) -> StreamEnd {
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = self.events.closed() => return StreamEnd::Done,
            };
            let event = match next {
                Ok(Some(ev)) => ev,
                Ok(None) => return StreamEnd::Dropped("the stream ended without an end".into()),
                Err(StreamError::Dropped(why)) => return StreamEnd::Dropped(why),
                Err(StreamError::Fatal(e)) => return StreamEnd::Fatal(e),
            };
            if let Some(end) = self.on_event(event).await {
                return end;
            }
        }
    }

    /// One event. `Some` ends this stream.
    async fn on_event(&mut self, event: SseEvent) -> Option<StreamEnd> {
        match event.name.as_deref() {
            None | Some("message") => {}
            Some("end") => {
                let v: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
                let t = Termination {
                    code: v["code"].as_i64().and_then(|c| i32::try_from(c).ok()),
                    signal: v["signal"].as_i64().and_then(|c| i32::try_from(c).ok()),
                    stderr_tail: v["stderr_tail"].as_str().unwrap_or_default().to_owned(),
                };
                let _ = self.events.send(Event::End(t)).await;
                return Some(StreamEnd::Done);
            }
            Some("error") => {
                let v: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
                let message = v["message"].as_str().unwrap_or("no reason given");
                return Some(StreamEnd::Fatal(transport_error(
                    "the gateway ended the event stream",
                    format!("{}: {message}", v["kind"].as_str().unwrap_or("error")),
                )));
            }
            Some("hello") => {
                // Only the first event of a stream is a hello; tolerate a repeat.
                return None;
            }
            Some(_) => return None, // Unknown events: newer gateways may send more.
        }
        let Some(seq) = event.id.as_deref().and_then(|id| id.parse::<u64>().ok()) else {
            return Some(StreamEnd::Fatal(transport_error(
                "reading the event stream",
                format!("a frame event without a sequence number: id {:?}", event.id),
            )));
        };
        if seq <= self.last_seq {
            return None; // Seen before a reconnect.
        }
        if seq != self.last_seq + 1 {
            return Some(StreamEnd::Fatal(transport_error(
                "reading the event stream",
                format!("gap in sequence numbers: {seq} after {}", self.last_seq),
            )));
        }
        self.metrics.frame_received(event.data.len());
        if self.events.send(Event::Frame(event.data)).await.is_err() {
            return Some(StreamEnd::Done);
        }
        self.last_seq = seq;
        if self.last_seq - self.acked >= ACK_EVERY {
            self.ack.send_replace(self.last_seq);
            self.acked = self.last_seq;
        }
        None
    }
}

/// Post the newest sequence number to ack (coalescing); retry a failed ack a few times.
async fn ack_task(shared: Arc<Shared>, mut ack: watch::Receiver<u64>) {
    let url = shared.url("/ack");
    let mut sent = 0u64;
    let mut failures = 0u32;
    loop {
        if failures == 0 && ack.changed().await.is_err() {
            return;
        }
        let n = *ack.borrow_and_update();
        if n <= sent {
            failures = 0;
            continue;
        }
        let body = format!("{{\"ack\":{n}}}");
        match shared
            .simple(
                reqwest::Method::POST,
                url.clone(),
                Some(body),
                "acking frames",
            )
            .await
        {
            Ok(()) => {
                sent = n;
                failures = 0;
            }
            Err(e) => {
                tracing::debug!(error = %e, "ack failed");
                failures += 1;
                if failures > MAX_RECONNECTS {
                    failures = 0; // Give up on this one; the next ack (or a resume) covers it.
                } else {
                    tokio::select! {
                        () = tokio::time::sleep(backoff(failures - 1)) => {}
                        r = ack.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    }
}

/// The writer task: numbers client frames and posts them.
struct Writer {
    shared: Arc<Shared>,
    out: mpsc::Receiver<Out>,
    events: mpsc::Sender<Event>,
    in_seq: watch::Receiver<u64>,
    /// The newest sequence number given to one of our frames.
    out_seq: u64,
    /// Our frames the gateway has not confirmed yet, oldest first.
    unacked: VecDeque<(u64, Bytes)>,
    /// A message taken while batching, handled next.
    held: Option<Out>,
}

/// Why the writer stops.
enum WriterStop {
    /// The session is gone: frames can no longer be delivered.
    Gone,
    Failed(Error),
}

impl Writer {
    async fn run(mut self) {
        loop {
            let msg = match self.held.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = self.out.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                    r = self.in_seq.changed() => {
                        if r.is_err() {
                            // The reader is gone; keep serving the sending half.
                            match self.out.recv().await {
                                Some(m) => m,
                                None => return,
                            }
                        } else {
                            let n = *self.in_seq.borrow_and_update();
                            self.forget_through(n);
                            continue;
                        }
                    }
                },
            };
            let result = match msg {
                Out::Frame(frame) => {
                    self.number(frame);
                    self.batch();
                    self.flush().await
                }
                Out::EndInput => {
                    self.retrying(|s| {
                        let url = s.url("/end_input");
                        async move {
                            s.simple(reqwest::Method::POST, url, None, "ending the input")
                                .await
                        }
                    })
                    .await
                }
                Out::Close(done) => {
                    let result = self
                        .retrying(|s| {
                            let url = s.session_url.clone();
                            async move {
                                s.simple(reqwest::Method::DELETE, url, None, "closing the session")
                                    .await
                            }
                        })
                        .await;
                    let _ = done.send(());
                    if let Err(WriterStop::Failed(e)) = result {
                        tracing::debug!(error = %e, "closing the session failed");
                    }
                    return;
                }
            };
            match result {
                Ok(()) => {}
                Err(WriterStop::Gone) => return,
                Err(WriterStop::Failed(e)) => {
                    let _ = self.events.send(Event::Failed(e)).await;
                    return;
                }
            }
        }
    }

    fn number(&mut self, frame: Bytes) {
        self.out_seq += 1;
        self.unacked.push_back((self.out_seq, frame));
    }

    /// Take what else is queued (frames only) into the batch.
    fn batch(&mut self) {
        let mut bytes: usize = self.unacked.iter().map(|(_, f)| f.len() + 1).sum();
        while bytes < MAX_BATCH_BYTES && self.unacked.len() < MAX_BATCH_FRAMES {
            match self.out.try_recv() {
                Ok(Out::Frame(f)) => {
                    bytes += f.len() + 1;
                    self.number(f);
                }
                Ok(other) => {
                    self.held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    fn forget_through(&mut self, seq: u64) {
        while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
            self.unacked.pop_front();
        }
    }

    /// The body for the frames at the front: one frame alone (uncopied) or several joined.
    fn next_body(&self) -> Option<(u64, Bytes)> {
        let (first, frame) = self.unacked.front()?;
        if frame.len() >= MAX_BATCH_BYTES || self.unacked.len() == 1 {
            return Some((*first, frame.clone()));
        }
        let mut body = BytesMut::new();
        for (_, f) in self.unacked.iter().take(MAX_BATCH_FRAMES) {
            if !body.is_empty() && body.len() + f.len() >= MAX_BATCH_BYTES {
                break;
            }
            body.put_slice(f);
            body.put_u8(b'\n');
        }
        Some((*first, body.freeze()))
    }

    /// Post every unconfirmed frame; retry failures with backoff.
    async fn flush(&mut self) -> std::result::Result<(), WriterStop> {
        let mut failures = 0u32;
        loop {
            let confirmed = *self.in_seq.borrow_and_update();
            self.forget_through(confirmed);
            let Some((first, body)) = self.next_body() else {
                return Ok(());
            };
            match self.shared.post_frames(first, body).await {
                Ok(PostReply::Accepted { in_seq }) => {
                    failures = 0;
                    self.forget_through(in_seq);
                }
                Ok(PostReply::TooLarge {
                    in_seq,
                    limit,
                    size,
                }) => {
                    failures = 0;
                    self.forget_through(in_seq);
                    let refused = Error::FrameTooLarge { limit, size };
                    if self.events.send(Event::Refused(refused)).await.is_err() {
                        return Err(WriterStop::Gone);
                    }
                }
                Ok(PostReply::Gone) => {
                    self.unacked.clear();
                    return Err(WriterStop::Gone);
                }
                Ok(PostReply::Refused(e)) => return Err(WriterStop::Failed(e)),
                Err(e) => {
                    failures += 1;
                    if failures > MAX_RECONNECTS {
                        return Err(WriterStop::Failed(transport_error(
                            "posting frames",
                            format!("gave up after {MAX_RECONNECTS} retries: {e}"),
                        )));
                    }
                    tracing::debug!(error = %e, first, "posting frames failed: retrying");
                    tokio::time::sleep(backoff(failures - 1)).await;
                }
            }
        }
    }

    /// Run a request, retrying failures with backoff.
    async fn retrying<F, Fut>(&self, request: F) -> std::result::Result<(), WriterStop>
    where
        F: Fn(Arc<Shared>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Error>>,
    {
        let mut failures = 0u32;
        loop {
            match request(self.shared.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    failures += 1;
                    if failures > MAX_RECONNECTS {
                        return Err(WriterStop::Failed(e));
                    }
                    tokio::time::sleep(backoff(failures - 1)).await;
                }
            }
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    /// `event:` (`None`: the default, `message`).
    name: Option<String>,
    /// `id:`.
    id: Option<String>,
    /// The `data:` lines joined with `\n`.
    data: Bytes,
}

/// Why reading the event stream stopped.
enum StreamError {
    Dropped(String),
    Fatal(Error),
}

/// An open event stream: the response body and the parser over it.
struct EventStream {
    response: reqwest::Response,
    parser: SseParser,
}

impl EventStream {
    /// The next event; `Ok(None)` at the end of the body.
    async fn next(&mut self) -> std::result::Result<Option<SseEvent>, StreamError> {
        loop {
            if let Some(ev) = self.parser.next_event().map_err(StreamError::Fatal)? {
                return Ok(Some(ev));
            }
            match tokio::time::timeout(STREAM_IDLE_TIMEOUT, self.response.chunk()).await {
                Err(_) => {
                    return Err(StreamError::Dropped(format!(
                        "the event stream was silent for {STREAM_IDLE_TIMEOUT:?}"
                    )));
                }
                Ok(Err(e)) => return Err(StreamError::Dropped(e.to_string())),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(chunk))) => self.parser.push(&chunk),
            }
        }
    }
}

/// An incremental `text/event-stream` parser: bytes in, events out.
///
/// Lines end with `\r\n`, `\n` or `\r`. A line is split off the buffer as [`Bytes`] without a
/// copy, and the buffer is scanned once (the parser remembers how far it looked), so a 10 MB
/// event that arrives in small pieces costs linear time. An event with one `data:` line (every
/// frame the gateway sends) keeps that line's bytes as they are.
#[derive(Debug)]
struct SseParser {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a line end.
    scanned: usize,
    /// The longest line accepted.
    max_line: usize,
    /// The last line ended with a `\r` at the end of the buffer: drop a `\n` that follows.
    skip_lf: bool,
    name: Option<String>,
    id: Option<String>,
    data: Option<Bytes>,
    /// Set when `data` has several lines and is being joined here.
    joined: Option<BytesMut>,
}

impl SseParser {
    fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max_line,
            skip_lf: false,
            name: None,
            id: None,
            data: None,
            joined: None,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line, without its terminator.
    fn next_line(&mut self) -> Result<Option<Bytes>> {
        if self.skip_lf && !self.buf.is_empty() {
            // The `\r` that ended the previous line was half of a `\r\n`.
            if self.buf[0] == b'\n' {
                self.buf.advance(1);
            }
            self.skip_lf = false;
        }
        let Some(at) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.max_line {
                return Err(transport_error(
                    "reading the event stream",
                    format!("an event line over {} bytes", self.max_line),
                ));
            }
            return Ok(None);
        };
        let end = self.scanned + at;
        let terminator = match (self.buf[end], self.buf.get(end + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', None) => {
                // A `\n` may follow in the next piece.
                self.skip_lf = true;
                1
            }
            _ => 1,
        };
        let line = self.buf.split_to(end).freeze();
        self.buf.advance(terminator);
        self.scanned = 0;
        Ok(Some(line))
    }

    /// The next complete event, if the buffer holds one.
    fn next_event(&mut self) -> Result<Option<SseEvent>> {
        while let Some(line) = self.next_line()? {
            if line.is_empty() {
                if let Some(ev) = self.dispatch() {
                    return Ok(Some(ev));
                }
                continue;
            }
            if line[0] == b':' {
                continue; // A comment (keep-alive).
            }
            let (field, value) = match memchr::memchr(b':', &line) {
                Some(i) => {
                    let skip = if line.get(i + 1) == Some(&b' ') { 2 } else { 1 };
                    (line.slice(..i), line.slice(i + skip..))
                }
                None => (line.clone(), Bytes::new()),
            };
            match &field[..] {
                b"data" => self.add_data(value),
                b"event" => self.name = Some(String::from_utf8_lossy(&value).into_owned()),
                b"id" if !value.contains(&0) => {
                    self.id = Some(String::from_utf8_lossy(&value).into_owned());
                }
                _ => {} // `retry` and unknown fields.
            }
        }
        Ok(None)
    }

    fn add_data(&mut self, value: Bytes) {
        if let Some(j) = self.joined.as_mut() {
            j.put_u8(b'\n');
            j.put_slice(&value);
        } else if let Some(first) = self.data.take() {
            let mut j = BytesMut::with_capacity(first.len() + 1 + value.len());
            j.put_slice(&first);
            j.put_u8(b'\n');
            j.put_slice(&value);
            self.joined = Some(j);
        } else {
            self.data = Some(value);
        }
    }

    /// A blank line: the event so far, if it has data (else it is dropped, per the spec).
    fn dispatch(&mut self) -> Option<SseEvent> {
        let name = self.name.take();
        let id = self.id.take();
        let data = match self.joined.take() {
            Some(j) => j.freeze(),
            None => self.data.take()?,
        };
        Some(SseEvent { name, id, data })
    }
}

/// Sending half of an [`HttpTransport`].
#[derive(Debug)]
pub struct HttpSender {
    tx: Option<mpsc::Sender<Out>>,
    input_ended: bool,
    metrics: Arc<TransportMetrics>,
    limit: Arc<AtomicUsize>,
}

impl FrameSender for HttpSender {
    async fn send(&mut self, frame: Bytes) -> Result<()> {
        let tx = match &self.tx {
            Some(tx) if !self.input_ended => tx,
            _ => return Err(Error::Closed),
        };
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
        if !self.input_ended {
            self.input_ended = true;
            if let Some(tx) = &self.tx {
                let _ = tx.send(Out::EndInput).await;
            }
        }
        Ok(())
    }

    /// Delete the session on the gateway (after the frames queued before): the gateway closes
    /// the CLI with its own grace period, and the receiving half then ends with the CLI's
    /// termination. Waits until the gateway has answered, at most `grace` + 10 s.
    async fn close(mut self, grace: Duration) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(Out::Close(done_tx)).await.is_ok() {
                let _ = tokio::time::timeout(grace + Duration::from_secs(10), done_rx).await;
            }
        }
        Ok(())
    }
}

/// Receiving half of an [`HttpTransport`].
pub type HttpReceiver = super::relay::GatewayReceiver;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gateways_bypass_proxies() {
        for b in [
            "http://127.0.0.1:8992",
            "http://localhost:1/gw",
            "http://[::1]:8992",
            "http://127.0.0.2",
        ] {
            assert!(is_loopback(b), "{b}");
        }
        for b in [
            "http://example.com:8992",
            "http://10.0.0.1:1",
            "http://[2001:db8::1]:1",
        ] {
            assert!(!is_loopback(b), "{b}");
        }
    }

    fn events(parser: &mut SseParser) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(ev) = parser.next_event().unwrap() {
            out.push(ev);
        }
        out
    }

    fn ev(name: Option<&str>, id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            name: name.map(str::to_owned),
            id: id.map(str::to_owned),
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn parses_the_gateway_stream_in_any_split() {
        let stream = b"event: hello\ndata: {\"in_seq\":0}\n\n: ping\n\nid: 1\ndata: {\"a\":1}\n\n\
                       id: 2\r\ndata:{}\r\n\r\nevent: end\rdata: {\"code\":0}\r\r";
        let want = vec![
            ev(Some("hello"), None, "{\"in_seq\":0}"),
            ev(None, Some("1"), "{\"a\":1}"),
            ev(None, Some("2"), "{}"),
            ev(Some("end"), None, "{\"code\":0}"),
        ];
        for step in [1, 2, 3, 7, stream.len()] {
            let mut p = SseParser::new(1024);
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                p.push(piece);
                got.extend(events(&mut p));
            }
            assert_eq!(got, want, "pieces of {step}");
        }
    }

    #[test]
    fn several_data_lines_join_with_newlines_and_empty_events_are_dropped() {
        let mut p = SseParser::new(1024);
        p.push(b"data: a\ndata\ndata: b\n\nevent: x\n\nretry: 5\nid: 9\ndata: c\n\n");
        assert_eq!(
            events(&mut p),
            vec![ev(None, None, "a\n\nb"), ev(None, Some("9"), "c")]
        );
    }

    #[test]
    fn a_large_frame_arrives_whole() {
        let mut p = SseParser::new(1 << 20);
        let frame = vec![b'x'; 100_000];
        let mut wire = b"id: 1\ndata: ".to_vec();
        wire.extend_from_slice(&frame);
        wire.extend_from_slice(b"\n\n");
        p.push(&wire);
        let got = events(&mut p);
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].data[..], &frame[..]);
    }

    #[test]
    fn an_overlong_line_is_an_error() {
        let mut p = SseParser::new(8);
        p.push(b"data: 0123456789");
        assert!(p.next_event().is_err());
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            check_base("http://127.0.0.1:1/").ok().as_deref(),
            Some("http://127.0.0.1:1")
        );
        if cfg!(feature = "tls") {
            assert_eq!(
                check_base("https://h:1/p/").ok().as_deref(),
                Some("https://h:1/p")
            );
        } else {
            assert!(matches!(
                check_base("https://h:1"),
                Err(Error::InvalidOptions(_))
            ));
        }
        assert!(check_base("ws://h:1").is_err());
        assert!(check_base("http://").is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let t = HttpTransport::new("http://h:1", "id", "s3cr3t-token");
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
