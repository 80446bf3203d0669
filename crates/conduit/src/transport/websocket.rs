//! A client of the conduit gateway (`conduit serve`): frames over one WebSocket per session, with
//! resume after a dropped connection.
//!
//! ```text
//! Client ─► WebSocketTransport ══ws══► gateway ══► SubprocessTransport ══► claude
//! ```
//!
//! Wire format (see the `claude-conduit-gateway` crate docs): the gateway first sends
//! `{"hello":{"session","in_seq","max_frame_bytes"}}`, then each CLI frame as a binary message
//! `seq (u64, big-endian) ++ frame`, and `{"end":{code,signal,stderr_tail}}` as text when the CLI
//! exits. This transport numbers its own frames the same way (`seq ++ frame`, 1, 2, 3, … across
//! reconnects), acks with `{"ack":N}` every [`ACK_EVERY`] frames, and keeps the frames it sent
//! until the gateway acks them (`{"in_ack":N}`, and `in_seq` in every hello).
//!
//! One driver task owns the socket (handle/driver split); the two halves talk to it through
//! bounded channels, so backpressure reaches the socket. When the socket drops without an `end`,
//! the driver reconnects up to [`MAX_RECONNECTS`] times (backoff 100 ms·2^k, ±50 % jitter) with
//! `?after=<last seq>`; the gateway replays exactly the frames after it, and frames already seen
//! are skipped by sequence number, so the stream arrives in order, each frame once. The other way,
//! after each hello the driver resends the frames the gateway had not accepted yet (`seq >
//! in_seq`); the gateway skips any it already has. Every reconnect counts in
//! [`TransportMetrics`].
//!
//! A frame larger than the gateway's limit (`max_frame_bytes` in the hello; until then this
//! transport's own) is refused by [`FrameSender::send`] with [`Error::FrameTooLarge`]; one the
//! gateway refuses anyway arrives as a per-frame `Err` on the receiving half. The session goes on
//! in both cases.
//!
//! [`WebSocketTransport::create_session`] speaks a minimal HTTP/1.1 by hand (one request,
//! `Connection: close`) to avoid an HTTP client dependency.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::relay::{Event, backoff, transport_error};
use super::{Connection, ConnectionInfo, FrameSender, Termination, Transport, TransportMetrics};
use crate::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::error::{Error, Result};

pub use super::relay::{ACK_EVERY, MAX_RECONNECTS};
/// How long a fresh socket may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Close codes after which reconnecting cannot help.
const FATAL_CLOSE_CODES: [u16; 4] = [4400, 4404, 4409, 4410];

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A session on a conduit gateway, as an SDK [`Transport`].
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::transport::websocket::WebSocketTransport;
/// use claude_conduit::{Client, Options};
/// let url = "http://127.0.0.1:8992";
/// let id = WebSocketTransport::create_session(url, "secret", &serde_json::json!({})).await?;
/// let client = Client::connect_with(WebSocketTransport::new(url, id, "secret"), Options::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebSocketTransport {
    base_url: String,
    session_id: String,
    token: String,
    max_frame: usize,
}

impl std::fmt::Debug for WebSocketTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret.
        f.debug_struct("WebSocketTransport")
            .field("base_url", &self.base_url)
            .field("session_id", &self.session_id)
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

/// `host:port` and path prefix of a `http://` or `ws://` base URL.
fn split_base(base_url: &str) -> Result<(String, String)> {
    let rest = base_url
        .strip_prefix("http://")
        .or_else(|| base_url.strip_prefix("ws://"))
        .ok_or_else(|| {
            Error::InvalidOptions(format!(
                "gateway URL must start with http:// or ws:// (https:// and wss:// with the `tls` feature): {base_url}"
            ))
        })?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(Error::InvalidOptions(format!(
            "gateway URL has no host: {base_url}"
        )));
    }
    let path = path.trim_end_matches('/');
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    Ok((host.to_owned(), prefix))
}

impl WebSocketTransport {
    /// The session `session_id` on the gateway at `base_url` (`http://host:port`), with `token`.
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
        }
    }

    /// The per-frame size limit (default 256 MiB, like the SDK's).
    pub fn max_frame_bytes(mut self, limit: usize) -> Self {
        self.max_frame = limit;
        self
    }

    /// Create a session on `remote` for `request` and return the transport for it.
    pub async fn open_session(
        remote: &crate::remote::Remote,
        request: &crate::remote::SessionRequest,
    ) -> Result<Self> {
        if remote.scheme().is_tls() && !cfg!(feature = "tls") {
            return Err(Error::InvalidOptions(
                "wss:// needs the `tls` cargo feature of claude-conduit".into(),
            ));
        }
        // `https://host:port[/prefix]` for wss://: `open` then speaks wss.
        let base = remote.http_base();
        let body = serde_json::to_value(request)
            .map_err(|e| Error::InvalidOptions(format!("session request: {e}")))?;
        let id = Self::create_session(&base, remote.token(), &body).await?;
        Ok(Self::new(base, id, remote.token()))
    }

    /// Create a session (`POST /v1/sessions` with `options` as the body); returns its id.
    /// `base_url` is `http://` or `ws://`, or with the `tls` feature `https://` or `wss://`
    /// (trusting the roots of `transport::tls::default_client_config`).
    pub async fn create_session(base_url: &str, token: &str, options: &Value) -> Result<String> {
        /// The connection, plain or TLS.
        trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
        impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
        let (tls, plain) = match base_url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") => {
                (true, format!("http://{rest}"))
            }
            _ => (false, base_url.to_owned()),
        };
        let (host, prefix) = split_base(&plain)?;
        let body = options.to_string();
        let request = format!(
            "POST {prefix}/v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let tcp = TcpStream::connect(&host)
            .await
            .map_err(|e| Error::transport("connecting to the gateway", e))?;
        let mut stream: Box<dyn Io> = if tls {
            #[cfg(feature = "tls")]
            {
                Box::new(super::tls::connect(&host, tcp).await?)
            }
            #[cfg(not(feature = "tls"))]
            {
                drop(tcp);
                return Err(Error::InvalidOptions(
                    "https:// needs the `tls` cargo feature of claude-conduit".into(),
                ));
            }
        } else {
            Box::new(tcp)
        };
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| Error::transport("sending POST /v1/sessions", e))?;
        let mut response = Vec::new();
        match stream.read_to_end(&mut response).await {
            Ok(_) => {}
            // A TLS peer that closes without close_notify: the reply is complete all the same
            // (`Connection: close`, and the body is checked below).
            Err(e)
                if tls && e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
            }
            Err(e) => return Err(Error::transport("reading the POST /v1/sessions reply", e)),
        }
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Err(transport_error(
                "POST /v1/sessions",
                "chunked replies are not supported",
            ));
        }
        if status != 201 && status != 200 {
            return Err(transport_error(
                "POST /v1/sessions",
                format!("status {status}: {}", body.trim()),
            ));
        }
        let v: Value = serde_json::from_str(body).map_err(|e| Error::decode(body.as_bytes(), e))?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::decode(body.as_bytes(), "no `id` in the reply"))
    }

    async fn open(&self, after: u64) -> Result<Socket> {
        let (tls, plain) = match self.base_url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") => {
                (true, format!("http://{rest}"))
            }
            _ => (false, self.base_url.clone()),
        };
        let (host, prefix) = split_base(&plain)?;
        let scheme = if tls { "wss" } else { "ws" };
        let url = format!(
            "{scheme}://{host}{prefix}/v1/sessions/{}/stream?after={after}",
            self.session_id
        );
        let mut request = url
            .into_client_request()
            .map_err(|e| transport_error("building the WebSocket request", e))?;
        let auth = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| Error::InvalidOptions("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", auth);
        let limit = self.max_frame.saturating_add(64);
        let config = WebSocketConfig::default()
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let connected = if tls {
            #[cfg(feature = "tls")]
            {
                let connector =
                    tokio_tungstenite::Connector::Rustls(super::tls::default_client_config()?);
                tokio_tungstenite::connect_async_tls_with_config(
                    request,
                    Some(config),
                    true,
                    Some(connector),
                )
                .await
            }
            #[cfg(not(feature = "tls"))]
            {
                return Err(Error::InvalidOptions(
                    "wss:// needs the `tls` cargo feature of claude-conduit".into(),
                ));
            }
        } else {
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await
        };
        let (socket, _response) = connected
            .map_err(|e| Error::transport("connecting the WebSocket", std::io::Error::other(e)))?;
        Ok(socket)
    }
}

/// What the sending half asks the driver to do.
#[derive(Debug)]
enum Out {
    Frame(Bytes),
    Text(&'static str),
}

impl Transport for WebSocketTransport {
    type Sender = WebSocketSender;
    type Receiver = WebSocketReceiver;

    async fn connect(self) -> Result<Connection<WebSocketSender, WebSocketReceiver>> {
        let started = Instant::now();
        let socket = self.open(0).await?;
        let metrics = Arc::new(TransportMetrics::default());
        metrics.set_connect_time(started.elapsed());
        let (out_tx, out_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let limit = Arc::new(AtomicUsize::new(self.max_frame));
        let info = ConnectionInfo {
            description: format!("websocket {} session {}", self.base_url, self.session_id),
            ..ConnectionInfo::default()
        };
        tokio::spawn(
            Driver {
                transport: self,
                metrics: metrics.clone(),
                out: out_rx,
                events: ev_tx,
                last_seq: 0,
                acked: 0,
                out_seq: 0,
                unacked: VecDeque::new(),
                limit: limit.clone(),
            }
            .run(socket),
        );
        Ok(Connection {
            sender: WebSocketSender {
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

/// Why one socket's life ended.
enum SocketEnd {
    /// The session ended or the transport is no longer used: stop.
    Done,
    /// The socket dropped: reconnect.
    Dropped(String),
    /// Reconnecting cannot help.
    Fatal(Error),
}

struct Driver {
    transport: WebSocketTransport,
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
}

/// `seq ++ frame`, as the gateway expects numbered client frames.
fn numbered(seq: u64, frame: &[u8]) -> Message {
    let mut buf = Vec::with_capacity(8 + frame.len());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(frame);
    Message::Binary(buf.into())
}

impl Driver {
    async fn run(mut self, mut socket: Socket) {
        let mut pending: Option<Message> = None;
        loop {
            let why = self.pump(&mut socket, &mut pending).await;
            let reason = match why {
                SocketEnd::Done => return,
                SocketEnd::Fatal(e) => {
                    self.metrics.error();
                    let _ = self.events.send(Event::Failed(e)).await;
                    return;
                }
                SocketEnd::Dropped(reason) => reason,
            };
            tracing::debug!(reason = %reason, last_seq = self.last_seq, "gateway socket dropped");
            match self.reconnect().await {
                Ok(s) => socket = s,
                Err(e) => {
                    self.metrics.error();
                    let _ = self.events.send(Event::Failed(e)).await;
                    return;
                }
            }
        }
    }

    async fn reconnect(&mut self) -> Result<Socket> {
        let mut last = String::new();
        for attempt in 0..MAX_RECONNECTS {
            tokio::time::sleep(backoff(attempt)).await;
            match self.transport.open(self.last_seq).await {
                Ok(socket) => {
                    self.metrics.reconnect();
                    self.acked = self.last_seq;
                    return Ok(socket);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(transport_error(
            "reconnecting to the gateway",
            format!("gave up after {MAX_RECONNECTS} attempts: {last}"),
        ))
    }

    /// Move messages on one socket until it ends.
    async fn pump(&mut self, socket: &mut Socket, pending: &mut Option<Message>) -> SocketEnd {
        // The gateway speaks first: its hello says which of our frames it has.
        match tokio::time::timeout(HELLO_TIMEOUT, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Some(end) = self.on_text(socket, t.as_str()).await {
                    return end;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => return close_end(frame),
            Ok(Some(Ok(other))) => {
                return SocketEnd::Fatal(transport_error(
                    "reading the gateway stream",
                    format!("expected a hello, got {other:?}"),
                ));
            }
            Ok(Some(Err(e))) => return SocketEnd::Dropped(e.to_string()),
            Ok(None) => return SocketEnd::Dropped("end of stream before the hello".into()),
            Err(_) => return SocketEnd::Dropped("no hello from the gateway in time".into()),
        }
        if let Some(msg) = pending.take()
            && let Err(e) = socket.send(msg.clone()).await
        {
            *pending = Some(msg);
            return SocketEnd::Dropped(e.to_string());
        }
        let mut out_open = true;
        loop {
            tokio::select! {
                msg = socket.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        if let Some(end) = self.on_frame(socket, b).await {
                            return end;
                        }
                    }
                    Some(Ok(Message::Text(t))) => {
                        if let Some(end) = self.on_text(socket, t.as_str()).await {
                            return end;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return close_end(frame),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return SocketEnd::Dropped(e.to_string()),
                    None => return SocketEnd::Dropped("end of stream".into()),
                },
                out = self.out.recv(), if out_open => {
                    let msg = match out {
                        Some(Out::Frame(f)) => {
                            // Kept until acked: resent after a reconnect if need be.
                            self.out_seq += 1;
                            let msg = numbered(self.out_seq, &f);
                            self.unacked.push_back((self.out_seq, f));
                            if let Err(e) = socket.send(msg).await {
                                return SocketEnd::Dropped(e.to_string());
                            }
                            continue;
                        }
                        Some(Out::Text(t)) => Message::Text(t.into()),
                        None => {
                            out_open = false;
                            continue;
                        }
                    };
                    if let Err(e) = socket.send(msg.clone()).await {
                        *pending = Some(msg);
                        return SocketEnd::Dropped(e.to_string());
                    }
                }
                () = self.events.closed() => {
                    // Nobody reads any more: leave; the gateway keeps the session for its grace.
                    let _ = socket.close(None).await;
                    return SocketEnd::Done;
                }
            }
        }
    }

    async fn on_frame(&mut self, socket: &mut Socket, b: Bytes) -> Option<SocketEnd> {
        if b.len() < 8 {
            return Some(SocketEnd::Fatal(transport_error(
                "reading the gateway stream",
                "binary message shorter than its sequence number",
            )));
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&b[..8]);
        let seq = u64::from_be_bytes(seq_bytes);
        if seq <= self.last_seq {
            return None; // Seen before a reconnect.
        }
        if seq != self.last_seq + 1 {
            return Some(SocketEnd::Fatal(transport_error(
                "reading the gateway stream",
                format!("gap in sequence numbers: {} after {}", seq, self.last_seq),
            )));
        }
        let frame = b.slice(8..);
        self.metrics.frame_received(frame.len());
        if self.events.send(Event::Frame(frame)).await.is_err() {
            return Some(SocketEnd::Done);
        }
        self.last_seq = seq;
        if self.last_seq - self.acked >= ACK_EVERY {
            let ack = json!({"ack": self.last_seq}).to_string();
            if let Err(e) = socket.send(Message::Text(ack.into())).await {
                return Some(SocketEnd::Dropped(e.to_string()));
            }
            self.acked = self.last_seq;
        }
        None
    }

    /// Drop our frames up to `seq`: the gateway has them.
    fn forget_through(&mut self, seq: u64) {
        while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
            self.unacked.pop_front();
        }
    }

    /// A text message from the gateway: hello, in_ack, error or end. `Some` ends this socket.
    async fn on_text(&mut self, socket: &mut Socket, text: &str) -> Option<SocketEnd> {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Some(SocketEnd::Fatal(Error::decode(text.as_bytes(), e))),
        };
        if let Some(hello) = v.get("hello") {
            if let Some(limit) = hello["max_frame_bytes"]
                .as_u64()
                .and_then(|l| usize::try_from(l).ok())
            {
                self.limit.store(limit, Ordering::Relaxed);
            }
            let in_seq = hello["in_seq"].as_u64().unwrap_or(0);
            self.forget_through(in_seq);
            for (seq, frame) in &self.unacked {
                if let Err(e) = socket.send(numbered(*seq, frame)).await {
                    return Some(SocketEnd::Dropped(e.to_string()));
                }
            }
            return None;
        }
        if let Some(n) = v.get("in_ack").and_then(Value::as_u64) {
            self.forget_through(n);
            return None;
        }
        if let Some(err) = v.get("error") {
            let refused = if err["kind"] == "frame_too_large" {
                Error::FrameTooLarge {
                    limit: json_usize(&err["limit"]),
                    size: json_usize(&err["size"]),
                }
            } else {
                transport_error(
                    "the gateway refused a frame",
                    err["message"].as_str().unwrap_or("no reason given"),
                )
            };
            self.metrics.error();
            if self.events.send(Event::Refused(refused)).await.is_err() {
                return Some(SocketEnd::Done);
            }
            return None;
        }
        let Some(end) = v.get("end") else {
            return Some(SocketEnd::Fatal(Error::decode(
                text.as_bytes(),
                "unknown gateway message",
            )));
        };
        let t = Termination {
            code: end["code"].as_i64().and_then(|c| i32::try_from(c).ok()),
            signal: end["signal"].as_i64().and_then(|c| i32::try_from(c).ok()),
            stderr_tail: end["stderr_tail"].as_str().unwrap_or_default().to_owned(),
        };
        let _ = socket.close(None).await;
        let _ = self.events.send(Event::End(t)).await;
        Some(SocketEnd::Done)
    }
}

fn json_usize(v: &Value) -> usize {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// How a close frame from the gateway ends the socket.
fn close_end(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> SocketEnd {
    let (code, reason) = frame
        .map(|f| (u16::from(f.code), f.reason.to_string()))
        .unwrap_or((1005, String::new()));
    if FATAL_CLOSE_CODES.contains(&code) {
        return SocketEnd::Fatal(transport_error(
            "gateway closed the session stream",
            format!("close code {code}: {reason}"),
        ));
    }
    SocketEnd::Dropped(format!("closed without an end ({code} {reason})"))
}

/// Sending half of a [`WebSocketTransport`].
#[derive(Debug)]
pub struct WebSocketSender {
    tx: Option<mpsc::Sender<Out>>,
    metrics: Arc<TransportMetrics>,
    limit: Arc<AtomicUsize>,
}

impl FrameSender for WebSocketSender {
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
            let _ = tx.send(Out::Text(r#"{"end_input":true}"#)).await;
        }
        Ok(())
    }

    /// Ask the gateway to close the CLI gracefully (end input, wait, signal); the receiving half
    /// then ends with the CLI's termination.
    async fn close(mut self, _grace: Duration) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Out::Text(r#"{"close":true}"#)).await;
        }
        Ok(())
    }
}

/// Receiving half of a [`WebSocketTransport`].
pub type WebSocketReceiver = super::relay::GatewayReceiver;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            split_base("http://127.0.0.1:1/").ok(),
            Some(("127.0.0.1:1".to_owned(), String::new()))
        );
        assert_eq!(
            split_base("ws://h:2/gw/").ok(),
            Some(("h:2".to_owned(), "/gw".to_owned()))
        );
        assert!(split_base("https://h").is_err());
        assert!(split_base("http://").is_err());
    }
}
