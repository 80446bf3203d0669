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
//! Sequencing, acks, resends and reconnects are the relay core's (`transport::relay`); this
//! module only encodes and decodes, over one pooled [`reqwest::Client`] (connect timeout, user
//! agent `claude-conduit/<version>`). A connection is the event stream plus a **poster** task
//! that sends our side as requests, in order: client frames numbered 1, 2, 3, … (what is queued
//! goes in one body, up to 1 MiB; a larger frame goes alone, uncopied), acks (coalesced), end of
//! input and close. A reply's `in_seq` confirms frames; a failed request is retried per the
//! [`ReconnectPolicy`]. The event parser splits lines off the
//! read buffer without copying and scans the buffer once. A stream silent for 60 s (the gateway
//! pings every 20 s) counts as dropped; the driver then resumes with `Last-Event-ID`.
//!
//! A frame larger than the gateway's limit (`max_frame_bytes` in the hello) is refused by
//! [`FrameSender::send`](super::FrameSender::send) with [`Error::FrameTooLarge`]; one the gateway refuses anyway (a `413`)
//! arrives as a per-frame `Err` on the receiving half. The session goes on in both cases.
//!
//! [`FrameSender::close`](super::FrameSender::close) deletes the session on the gateway (which closes the CLI gracefully,
//! with the gateway's own grace period); the receiving half then ends with the CLI's
//! termination from the `end` event. `https://` needs the `tls` cargo feature (rustls with the
//! SDK's config, see `transport::tls`); without it, it is an [`Error::FeatureDisabled`].

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::relay::wire;
use super::relay::{
    Failure, Incoming, Outgoing, ReconnectPolicy, Wire, WireConn, http_error, http_failure,
    refusal_error,
};
use super::{Connection, GatewayTransport, Transport};
use crate::error::{Error, GatewayErrorKind, Result};
use crate::remote::{Remote, SessionRequest};

pub use super::relay::{ACK_EVERY, MAX_RECONNECTS};

/// The header that numbers the first frame of a `POST …/frames` body.
pub const SEQ_HEADER: &str = wire::SEQ_HEADER;
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
/// use claude_conduit::transport::GatewayTransport;
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
    remote: Remote,
    session_id: String,
    max_frame: usize,
    client: Option<reqwest::Client>,
}

super::relay::gateway_transport!(HttpTransport, client: None);

/// Whether `authority` (`host[:port]`) names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The HTTP client of a transport. For a plain `http://` gateway the sessions of a process share
/// one client, and so its connection pool (one client for gateways on this machine, one for the
/// others): the POSTs of many quiet sessions go over a few kept-alive connections instead of one
/// idle connection per session on each side. The shared client belongs to one tokio runtime (its
/// connections are tasks there): a transport used from another runtime replaces it, so a client
/// never outlives the runtime it is used on. An `https://` gateway gets a client of its own (its
/// TLS config can change with `CONDUIT_TLS_CA`).
fn build_client(remote: &Remote) -> Result<reqwest::Client> {
    type Slot = Option<(tokio::runtime::Id, reqwest::Client)>;
    static PLAIN: std::sync::Mutex<[Slot; 2]> = std::sync::Mutex::new([None, None]);
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(h) if !remote.is_tls() => h.id(),
        _ => return new_client(remote),
    };
    let slot = usize::from(is_loopback(remote.authority()));
    let mut plain = PLAIN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((id, c)) = &plain[slot]
        && *id == runtime
    {
        return Ok(c.clone());
    }
    let client = new_client(remote)?;
    plain[slot] = Some((runtime, client.clone()));
    Ok(client)
}

/// A new HTTP client. Proxies from the environment (`HTTP_PROXY`, …) apply, except to a gateway
/// on this machine. With the `tls` feature, `https://` uses the SDK's rustls config
/// ([`super::tls::default_client_config`]).
fn new_client(remote: &Remote) -> Result<reqwest::Client> {
    let builder = if is_loopback(remote.authority()) {
        reqwest::Client::builder().no_proxy()
    } else {
        reqwest::Client::builder()
    };
    #[cfg(feature = "tls")]
    let builder = builder.tls_backend_preconfigured(reqwest_tls_config(remote.is_tls())?);
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
        .map_err(|e| {
            Error::gateway_caused(GatewayErrorKind::Other, None, "building the HTTP client", e)
        })
}

/// The rustls config reqwest gets (it has no crypto provider of its own): the SDK's, with ALPN
/// `http/1.1`. A plain `http://` gateway does not depend on `CONDUIT_TLS_CA` being readable.
#[cfg(feature = "tls")]
fn reqwest_tls_config(tls: bool) -> Result<rustls::ClientConfig> {
    let config = match super::tls::default_client_config() {
        Ok(c) => c,
        Err(e) if tls => return Err(e),
        Err(_) => super::tls::client_config(None)?,
    };
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The request with the current span's `traceparent` (W3C trace context), if any.
fn with_trace(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match crate::telemetry::traceparent() {
        Some(tp) => req.header(crate::telemetry::TRACEPARENT_HEADER, tp),
        None => req,
    }
}

fn bearer(token: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::InvalidOptions("the token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

impl HttpTransport {
    /// `GET /health` with `client`.
    async fn health_with(client: &reqwest::Client, remote: &Remote) -> Result<()> {
        let context = "checking the gateway's health";
        let health = client
            .get(format!("{}/health", remote.http_url()))
            .send()
            .await
            .map_err(|e| unreachable(context, e))?;
        if health.status() != StatusCode::OK {
            let status = health.status().as_u16();
            let body = health.bytes().await.unwrap_or_default();
            return Err(http_error(context, status, &body));
        }
        Ok(())
    }

    /// `POST /v1/sessions` with `client`.
    async fn create_with(
        client: &reqwest::Client,
        remote: &Remote,
        request: &SessionRequest,
    ) -> Result<String> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidOptions(format!("session request: {e}")))?;
        let resp = with_trace(client.post(format!("{}/v1/sessions", remote.http_url())))
            .header(AUTHORIZATION, bearer(remote.token())?)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable("creating a session", e))?;
        let status = resp.status();
        let reply = resp
            .bytes()
            .await
            .map_err(|e| unreachable("reading the POST /v1/sessions reply", e))?;
        if !status.is_success() {
            return Err(http_error("creating a session", status.as_u16(), &reply));
        }
        let v: Value = serde_json::from_slice(&reply).map_err(|e| Error::decode(&reply, e))?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::decode(&reply, "no `id` in the reply"))
    }

    async fn create_impl(remote: &Remote, request: &SessionRequest) -> Result<String> {
        Self::create_with(&build_client(remote)?, remote, request).await
    }

    async fn health_impl(remote: &Remote) -> Result<()> {
        Self::health_with(&build_client(remote)?, remote).await
    }

    /// Check the gateway's health, create the session, and keep the HTTP client (its pooled
    /// connections) for the session's requests.
    async fn open_impl(remote: &Remote, request: &SessionRequest) -> Result<Self> {
        let client = build_client(remote)?;
        Self::health_with(&client, remote).await?;
        let id = Self::create_with(&client, remote, request).await?;
        Ok(Self {
            client: Some(client),
            ..<Self as GatewayTransport>::new(remote, id)
        })
    }
}

/// The gateway could not be reached (or the connection broke): the error as the source.
fn unreachable(context: &'static str, e: reqwest::Error) -> Error {
    Error::gateway_caused(GatewayErrorKind::Unavailable, None, context, e)
}

/// What every request of a session needs.
struct Shared {
    client: reqwest::Client,
    /// `{base}/v1/sessions/{id}`.
    session_url: String,
    auth: HeaderValue,
    /// The receive limit (frame bytes).
    max_frame: usize,
}

impl Shared {
    fn url(&self, tail: &str) -> String {
        format!("{}{tail}", self.session_url)
    }

    /// `POST …/frames` with the frames of `body` numbered from `first`.
    async fn post_frames(&self, first: u64, body: Bytes) -> Result<PostReply, Failure> {
        let resp = self
            .client
            .post(self.url("/frames"))
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(wire::SEQ_HEADER, first.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Transient(unreachable("posting frames", e)))?;
        let status = resp.status();
        let reply = resp
            .bytes()
            .await
            .map_err(|e| Failure::Transient(unreachable("reading the POST …/frames reply", e)))?;
        let parsed: FramesReply = serde_json::from_slice(&reply).unwrap_or_default();
        Ok(match status {
            StatusCode::OK => PostReply::Accepted {
                in_seq: parsed.in_seq,
            },
            _ if parsed.error.as_ref().is_some_and(|e| {
                [
                    wire::kind::FRAME_TOO_LARGE,
                    wire::kind::BAD_FRAME,
                    wire::kind::POLICY,
                ]
                .contains(&e.kind.as_str())
            }) =>
            {
                PostReply::Refused {
                    in_seq: parsed.in_seq,
                    error: refusal_error(parsed.error.unwrap_or_default()),
                }
            }
            // Frames were lost on the way (a resumed connection raced an older one): resend
            // after the next hello.
            StatusCode::CONFLICT => {
                return Err(Failure::Transient(http_error(
                    "posting frames",
                    status.as_u16(),
                    &reply,
                )));
            }
            s => return Err(http_failure("posting frames", s.as_u16(), &reply)),
        })
    }

    /// A request that should answer 2xx (or 404/410 once the session is gone).
    async fn simple(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<String>,
        context: &'static str,
    ) -> Result<(), Failure> {
        let mut req = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(unreachable(context, e)))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(());
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(http_failure(context, status.as_u16(), &body))
    }
}

/// The reply to a `POST …/frames`.
#[derive(Debug, Default, serde::Deserialize)]
struct FramesReply {
    #[serde(default)]
    in_seq: u64,
    #[serde(default)]
    error: Option<wire::ErrorInfo>,
}

/// What the gateway said to a `POST …/frames`.
enum PostReply {
    Accepted {
        in_seq: u64,
    },
    /// One frame refused (too large, not a JSON object); the others were taken.
    Refused {
        in_seq: u64,
        error: Error,
    },
}

/// The HTTP wire of one session.
struct HttpWire {
    shared: Arc<Shared>,
    policy: ReconnectPolicy,
}

/// One open event stream, and the poster task that sends our side with requests.
struct HttpConn {
    events: EventStream,
    poster: mpsc::Sender<Post>,
    replies: mpsc::Receiver<Result<Incoming, Failure>>,
}

/// What the poster is asked to send.
enum Post {
    Out(Outgoing),
    /// Close the session (`DELETE`), then answer.
    Close(oneshot::Sender<()>),
}

impl Wire for HttpWire {
    type Conn = HttpConn;

    async fn open(&self, after: u64) -> Result<HttpConn, Failure> {
        let shared = &self.shared;
        let mut req = with_trace(shared.client.get(shared.url("/events")))
            .header(AUTHORIZATION, shared.auth.clone())
            .header(ACCEPT, "text/event-stream");
        if after > 0 {
            req = req.header("last-event-id", after.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(unreachable("opening the event stream", e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(http_failure(
                "opening the event stream",
                status.as_u16(),
                &body,
            ));
        }
        let (poster, posts) = mpsc::channel(MAX_BATCH_FRAMES);
        let (replies_tx, replies) = mpsc::channel(16);
        tokio::spawn(
            Poster {
                shared: shared.clone(),
                policy: self.policy,
                posts,
                replies: replies_tx,
                held: None,
            }
            .run(),
        );
        Ok(HttpConn {
            events: EventStream {
                response: resp,
                parser: SseParser::new(shared.max_frame.saturating_add(LINE_SLACK)),
            },
            poster,
            replies,
        })
    }
}

impl WireConn for HttpConn {
    async fn recv(&mut self) -> Result<Incoming, Failure> {
        loop {
            let event = tokio::select! {
                ev = self.events.next() => ev?,
                Some(reply) = self.replies.recv() => return reply,
            };
            let Some(event) = event else {
                return Err(Failure::Transient(Error::gateway(
                    GatewayErrorKind::Unavailable,
                    None,
                    "the event stream ended without an end",
                )));
            };
            if let Some(incoming) = decode_event(event)? {
                return Ok(incoming);
            }
        }
    }

    async fn send(&mut self, out: Outgoing) -> Result<(), Failure> {
        let closed = || {
            Failure::Transient(Error::gateway(
                GatewayErrorKind::Unavailable,
                None,
                "the request poster stopped",
            ))
        };
        if let Outgoing::Close = out {
            // Wait until the gateway answered the DELETE (after the frames queued before).
            let (tx, rx) = oneshot::channel();
            self.poster
                .send(Post::Close(tx))
                .await
                .map_err(|_| closed())?;
            return rx.await.map_err(|_| closed());
        }
        self.poster.send(Post::Out(out)).await.map_err(|_| closed())
    }
}

/// One server-sent event as a message; `None` for events to ignore.
fn decode_event(event: SseEvent) -> Result<Option<Incoming>, Failure> {
    let protocol = |m: String| Failure::Fatal(Error::gateway(GatewayErrorKind::Protocol, None, m));
    Ok(Some(match event.name.as_deref() {
        None | Some("message") => {
            let Some(seq) = event.id else {
                return Err(protocol(
                    "a frame event without a numeric id (its sequence number)".into(),
                ));
            };
            Incoming::Frame(seq, event.data)
        }
        Some("hello") => {
            let hello: wire::Hello = serde_json::from_slice(&event.data)
                .map_err(|e| protocol(format!("a bad hello: {e}")))?;
            Incoming::Hello(hello)
        }
        Some("end") => {
            let end: wire::End = serde_json::from_slice(&event.data).unwrap_or_default();
            Incoming::End(end.into())
        }
        Some("lost") => {
            let lost: wire::Lost = serde_json::from_slice(&event.data)
                .map_err(|e| protocol(format!("a bad `lost` event: {e}")))?;
            return Err(Failure::Fatal(lost.into_error()));
        }
        Some("error") => {
            let info: wire::ErrorInfo = serde_json::from_slice(&event.data)
                .unwrap_or_else(|_| wire::ErrorInfo::new(wire::kind::INTERNAL, "no reason given"));
            let kind = GatewayErrorKind::from_wire(&info.kind);
            let e = Error::gateway(
                kind,
                None,
                format!("the gateway ended the event stream: {}", info.message),
            );
            return Err(if info.kind == wire::kind::UNAVAILABLE {
                Failure::Transient(e)
            } else {
                Failure::Fatal(e)
            });
        }
        Some(_) => return Ok(None), // Unknown events: newer gateways may send more.
    }))
}

/// The poster task of one connection: sends our frames (batched), acks (coalesced), end of
/// input and close as requests, in order, and hands the replies to the connection. It ends with
/// the connection (when its queue closes).
struct Poster {
    shared: Arc<Shared>,
    policy: ReconnectPolicy,
    posts: mpsc::Receiver<Post>,
    replies: mpsc::Sender<Result<Incoming, Failure>>,
    /// A request taken while batching, handled next.
    held: Option<Post>,
}

impl Poster {
    async fn run(mut self) {
        loop {
            let post = match self.held.take() {
                Some(p) => p,
                None => match self.posts.recv().await {
                    Some(p) => p,
                    None => return,
                },
            };
            let result = match post {
                Post::Out(Outgoing::Frame(seq, frame)) => self.frames(seq, frame).await,
                Post::Out(Outgoing::Ack(n)) => {
                    let n = self.coalesce_acks(n);
                    let body = Some(format!("{{\"ack\":{n}}}"));
                    self.retrying("acking frames", reqwest::Method::POST, "/ack", body)
                        .await
                }
                Post::Out(Outgoing::EndInput) => {
                    self.retrying(
                        "ending the input",
                        reqwest::Method::POST,
                        "/end_input",
                        None,
                    )
                    .await
                }
                Post::Out(Outgoing::Close) => Ok(()),
                Post::Close(done) => {
                    let r = self
                        .retrying("closing the session", reqwest::Method::DELETE, "", None)
                        .await;
                    let _ = done.send(());
                    r
                }
            };
            if let Err(f) = result {
                let _ = self.replies.send(Err(f)).await;
                return;
            }
        }
    }

    /// The newest of the acks queued right now.
    fn coalesce_acks(&mut self, mut n: u64) -> u64 {
        while let Ok(p) = self.posts.try_recv() {
            match p {
                Post::Out(Outgoing::Ack(m)) => n = n.max(m),
                other => {
                    self.held = Some(other);
                    break;
                }
            }
        }
        n
    }

    /// Post `first` and the frames queued behind it (up to a batch), retrying failures.
    async fn frames(&mut self, first: u64, frame: Bytes) -> Result<(), Failure> {
        let mut frames = vec![frame];
        let mut bytes = frames[0].len() + 1;
        while bytes < MAX_BATCH_BYTES && frames.len() < MAX_BATCH_FRAMES {
            match self.posts.try_recv() {
                Ok(Post::Out(Outgoing::Frame(seq, f))) if seq == first + frames.len() as u64 => {
                    bytes += f.len() + 1;
                    frames.push(f);
                }
                Ok(other) => {
                    self.held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut first = first;
        while !frames.is_empty() {
            let body = if frames.len() == 1 {
                frames[0].clone()
            } else {
                let mut body = BytesMut::with_capacity(bytes);
                for f in &frames {
                    body.put_slice(f);
                    body.put_u8(b'\n');
                }
                body.freeze()
            };
            let reply = self
                .with_retries(|shared| {
                    let body = body.clone();
                    async move { shared.post_frames(first, body).await }
                })
                .await?;
            let in_seq = match reply {
                PostReply::Accepted { in_seq } => {
                    frames.clear();
                    in_seq
                }
                PostReply::Refused { in_seq, error } => {
                    let _ = self.replies.send(Ok(Incoming::Refused(error))).await;
                    // The frames after the refused one were not taken: post them again.
                    let taken = in_seq
                        .saturating_sub(first - 1)
                        .clamp(1, frames.len() as u64);
                    frames.drain(..taken as usize);
                    first = in_seq + 1;
                    bytes = frames.iter().map(|f| f.len() + 1).sum();
                    in_seq
                }
            };
            let _ = self.replies.send(Ok(Incoming::InAck(in_seq))).await;
        }
        Ok(())
    }

    async fn retrying(
        &self,
        context: &'static str,
        method: reqwest::Method,
        tail: &'static str,
        body: Option<String>,
    ) -> Result<(), Failure> {
        self.with_retries(|shared| {
            let (method, body) = (method.clone(), body.clone());
            async move { shared.simple(method, shared.url(tail), body, context).await }
        })
        .await
    }

    /// Run a request, retrying transient failures per the policy (while the connection lives).
    async fn with_retries<T, F, Fut>(&self, request: F) -> Result<T, Failure>
    where
        F: Fn(Arc<Shared>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut attempt = 0;
        loop {
            match request(self.shared.clone()).await {
                Err(Failure::Transient(e))
                    if attempt < self.policy.attempts && !self.replies.is_closed() =>
                {
                    tracing::debug!(error = %e, "a request to the gateway failed: retrying");
                    tokio::time::sleep(self.policy.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl Transport for HttpTransport {
    type Sender = HttpSender;
    type Receiver = HttpReceiver;

    async fn connect(self) -> Result<Connection<HttpSender, HttpReceiver>> {
        let base = self.remote.http_url();
        let client = match &self.client {
            Some(c) => c.clone(),
            None => build_client(&self.remote)?,
        };
        let shared = Arc::new(Shared {
            client,
            session_url: format!("{base}/v1/sessions/{}", self.session_id),
            auth: bearer(self.remote.token())?,
            max_frame: self.max_frame,
        });
        let policy = ReconnectPolicy::default();
        let description = format!("http {} session {}", base, self.session_id);
        let wire = HttpWire { shared, policy };
        super::relay::connect(wire, self.max_frame, policy, description).await
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    /// `event:` (`None`: the default, `message`).
    name: Option<String>,
    /// `id:`, when it is a number (every frame's is; any other id is kept as `None`).
    id: Option<u64>,
    /// The `data:` lines joined with `\n`.
    data: Bytes,
}

/// An open event stream: the response body and the parser over it.
struct EventStream {
    response: reqwest::Response,
    parser: SseParser,
}

impl EventStream {
    /// The next event; `Ok(None)` at the end of the body. Cancel-safe.
    async fn next(&mut self) -> Result<Option<SseEvent>, Failure> {
        loop {
            if let Some(ev) = self.parser.next_event().map_err(Failure::Fatal)? {
                return Ok(Some(ev));
            }
            let dropped = |m: String| {
                Failure::Transient(Error::gateway(GatewayErrorKind::Unavailable, None, m))
            };
            match tokio::time::timeout(STREAM_IDLE_TIMEOUT, self.response.chunk()).await {
                Err(_) => {
                    return Err(dropped(format!(
                        "the event stream was silent for {STREAM_IDLE_TIMEOUT:?}"
                    )));
                }
                Ok(Err(e)) => return Err(dropped(format!("the event stream dropped: {e}"))),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(chunk))) => self.parser.push(chunk),
            }
        }
    }
}

/// An incremental `text/event-stream` parser: pieces of the body in, events out.
///
/// Lines end with `\r\n`, `\n` or `\r`. A piece is parsed in place: a `data:` value is a slice
/// of the piece (no copy, one reference), and the other lines are only looked at. Only a line
/// that a piece leaves unfinished is copied (into `carry`, completed from the next pieces), so
/// a busy stream copies a few hundred bytes per piece, not the piece; a 10 MB event that
/// arrives in small pieces is still read in linear time (each piece is searched once). An
/// event with one `data:` line (every frame the gateway sends) keeps that line's bytes as they
/// are.
#[derive(Debug)]
struct SseParser {
    /// The unparsed rest of the last piece.
    piece: Bytes,
    /// The start of a line that the pieces so far did not finish (never a whole line).
    carry: BytesMut,
    /// The longest line accepted.
    max_line: usize,
    /// The last line ended with a `\r` at the end of a piece: drop a `\n` that follows.
    skip_lf: bool,
    name: Option<String>,
    id: Option<u64>,
    data: Option<Bytes>,
    /// Set when `data` has several lines and is being joined here.
    joined: Option<BytesMut>,
}

/// Where a complete line is: at the start of the piece, or (finished) in the carry.
#[derive(Clone, Copy)]
enum LineAt {
    /// `piece[..end]`, followed by a terminator of `terminator` bytes.
    Piece { end: usize, terminator: usize },
    /// The whole carry (its terminator is consumed already).
    Carry,
}

/// What a line says.
enum Field {
    Data {
        value_start: usize,
    },
    Event(String),
    Id(Option<u64>),
    /// A blank line: the end of an event.
    Dispatch,
    /// A comment, `retry`, an `id` with a NUL, or an unknown field.
    Ignored,
}

impl Field {
    fn of(line: &[u8]) -> Self {
        if line.is_empty() {
            return Field::Dispatch;
        }
        // `field: value`, `field:value` or a lone `field`; a comment (keep-alive) is a line with
        // an empty field, ignored like an unknown one.
        let (field_end, value_start) = match memchr::memchr(b':', line) {
            Some(i) => (i, i + if line.get(i + 1) == Some(&b' ') { 2 } else { 1 }),
            None => (line.len(), line.len()),
        };
        let value = &line[value_start..];
        match &line[..field_end] {
            b"data" => Field::Data { value_start },
            b"event" => Field::Event(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => Field::Id(parse_id(value)),
            _ => Field::Ignored,
        }
    }
}

impl SseParser {
    fn new(max_line: usize) -> Self {
        Self {
            piece: Bytes::new(),
            carry: BytesMut::new(),
            max_line,
            skip_lf: false,
            name: None,
            id: None,
            data: None,
            joined: None,
        }
    }

    /// The next piece of the body. The one before must have been parsed to the end
    /// (`next_event` gave `None`).
    fn push(&mut self, piece: Bytes) {
        debug_assert!(
            self.piece.is_empty(),
            "a piece pushed before the last was parsed"
        );
        self.piece = piece;
    }

    /// The next complete line: where it is. Without one, the rest of the piece goes to the
    /// carry (and too long a line there is an error).
    fn find_line(&mut self) -> Result<Option<LineAt>> {
        if self.skip_lf {
            // The `\r` that ended the previous line may be half of a `\r\n`.
            match self.piece.first() {
                None => return Ok(None),
                Some(b'\n') => self.piece.advance(1),
                Some(_) => {}
            }
            self.skip_lf = false;
        }
        let Some(at) = memchr::memchr2(b'\n', b'\r', &self.piece) else {
            if !self.piece.is_empty() {
                self.carry.extend_from_slice(&self.piece);
                self.piece = Bytes::new();
            }
            if self.carry.len() > self.max_line {
                return Err(Error::gateway(
                    GatewayErrorKind::Protocol,
                    None,
                    format!(
                        "reading the event stream: an event line over {} bytes",
                        self.max_line
                    ),
                ));
            }
            return Ok(None);
        };
        let terminator = match (self.piece[at], self.piece.get(at + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', None) => {
                // A `\n` may follow in the next piece.
                self.skip_lf = true;
                1
            }
            _ => 1,
        };
        if self.carry.is_empty() {
            return Ok(Some(LineAt::Piece {
                end: at,
                terminator,
            }));
        }
        // The end of the carried line.
        self.carry.extend_from_slice(&self.piece[..at]);
        self.piece.advance(at + terminator);
        Ok(Some(LineAt::Carry))
    }

    /// The next complete event, if the pieces so far hold one.
    fn next_event(&mut self) -> Result<Option<SseEvent>> {
        while let Some(at) = self.find_line()? {
            let line = match at {
                LineAt::Piece { end, .. } => &self.piece[..end],
                LineAt::Carry => &self.carry[..],
            };
            let field = Field::of(line);
            // The value of a `data` line, split off without a copy; any other line is dropped.
            let data = match (at, &field) {
                (LineAt::Piece { end, terminator }, Field::Data { value_start }) => {
                    let value = self.piece.slice(*value_start..end);
                    self.piece.advance(end + terminator);
                    Some(value)
                }
                (LineAt::Piece { end, terminator }, _) => {
                    self.piece.advance(end + terminator);
                    None
                }
                (LineAt::Carry, Field::Data { value_start }) => {
                    self.carry.advance(*value_start);
                    Some(self.carry.split().freeze())
                }
                (LineAt::Carry, _) => {
                    self.carry.clear();
                    None
                }
            };
            match field {
                Field::Data { .. } => self.add_data(data.unwrap_or_default()),
                Field::Event(name) => self.name = Some(name),
                Field::Id(id) => self.id = id,
                Field::Dispatch => {
                    if let Some(ev) = self.dispatch() {
                        return Ok(Some(ev));
                    }
                }
                Field::Ignored => {}
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

/// An `id:` value as a sequence number: ASCII digits only (what the gateway sends), else `None`.
fn parse_id(value: &[u8]) -> Option<u64> {
    if !value.iter().all(u8::is_ascii_digit) {
        return None; // `str::parse` would take a leading `+`.
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Sending half of an [`HttpTransport`].
pub type HttpSender = super::relay::GatewaySender;

/// Receiving half of an [`HttpTransport`].
pub type HttpReceiver = super::relay::GatewayReceiver;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gateways_bypass_proxies() {
        for b in ["127.0.0.1:8992", "localhost:1", "[::1]:8992", "127.0.0.2"] {
            assert!(is_loopback(b), "{b}");
        }
        for b in ["example.com:8992", "10.0.0.1:1", "[2001:db8::1]:1"] {
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
            id: id.and_then(|i| i.parse().ok()),
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
                p.push(Bytes::copy_from_slice(piece));
                got.extend(events(&mut p));
            }
            assert_eq!(got, want, "pieces of {step}");
        }
    }

    #[test]
    fn several_data_lines_join_with_newlines_and_empty_events_are_dropped() {
        let mut p = SseParser::new(1024);
        p.push(Bytes::from_static(
            b"data: a\ndata\ndata: b\n\nevent: x\n\nretry: 5\nid: 9\ndata: c\n\n",
        ));
        assert_eq!(
            events(&mut p),
            vec![ev(None, None, "a\n\nb"), ev(None, Some("9"), "c")]
        );
    }

    #[test]
    fn ids_are_sequence_numbers_or_nothing() {
        assert_eq!(parse_id(b"0"), Some(0));
        assert_eq!(parse_id(b"007"), Some(7));
        assert_eq!(parse_id(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"18446744073709551616", b"-1", b"1a", b" 1", b"x"] {
            assert_eq!(parse_id(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let mut p = SseParser::new(1024);
        p.push(Bytes::from_static(
            b"id: x\ndata: {}\n\n:comment\nid:12\ndata\n\n",
        ));
        let got = events(&mut p);
        assert_eq!(got, vec![ev(None, None, "{}"), ev(None, Some("12"), "")]);
        assert!(
            decode_event(got[0].clone()).is_err(),
            "a frame needs a numeric id"
        );
    }

    #[test]
    fn a_large_frame_arrives_whole() {
        let mut p = SseParser::new(1 << 20);
        let frame = vec![b'x'; 100_000];
        let mut wire = b"id: 1\ndata: ".to_vec();
        wire.extend_from_slice(&frame);
        wire.extend_from_slice(b"\n\n");
        p.push(Bytes::from(wire));
        let got = events(&mut p);
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].data[..], &frame[..]);
    }

    #[test]
    fn frames_are_slices_of_their_piece_and_only_an_unfinished_line_is_copied() {
        let mut wire = Vec::new();
        for seq in 1..=50 {
            wire.extend_from_slice(format!("id: {seq}\ndata: {{\"n\":{seq}}}\n\n").as_bytes());
        }
        let piece = Bytes::from(wire);
        // Cut in the middle of the last frame's data line.
        let cut = piece.len() - 5;
        let range = piece.as_ptr() as usize..piece.as_ptr() as usize + cut;
        let mut p = SseParser::new(1 << 16);
        p.push(piece.slice(..cut));
        let got = events(&mut p);
        assert_eq!(got.len(), 49);
        assert!(
            got.iter()
                .all(|ev| range.contains(&(ev.data.as_ptr() as usize)))
        );
        assert_eq!(
            p.carry.len(),
            "data: {\"n\":50".len() - 2,
            "the unfinished line is carried"
        );
        p.push(piece.slice(cut..));
        assert_eq!(events(&mut p), vec![ev(None, Some("50"), "{\"n\":50}")]);
        // A frame longer than any piece arrives whole.
        let frame = "x".repeat(10_000);
        let wire = Bytes::from(format!("id: 51\ndata: {frame}\n\n"));
        let mut got = Vec::new();
        for i in (0..wire.len()).step_by(999) {
            p.push(wire.slice(i..(i + 999).min(wire.len())));
            got.extend(events(&mut p));
        }
        assert_eq!(got, vec![ev(None, Some("51"), &frame)]);
    }

    #[test]
    fn an_overlong_line_is_an_error() {
        let mut p = SseParser::new(8);
        p.push(Bytes::from_static(b"data: 0123456789"));
        assert!(p.next_event().is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let remote = Remote::parse("http://h:1", "s3cr3t-token").unwrap();
        let t = HttpTransport::new(&remote, "id");
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
