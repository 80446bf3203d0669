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
//! The sequencing, acks, resends and reconnects are the relay core's (`transport::relay`): this
//! module only encodes and decodes. After a dropped socket the driver reconnects per its
//! [`ReconnectPolicy`] with `?after=<last seq>` (frames seen
//! before are skipped), resends the frames the gateway has not confirmed and an end of input or
//! close asked for before; close codes and handshake statuses after which retrying cannot help
//! (4400, 4404, 4409, 4410, 1009; 401, 404) end the stream with an [`Error::Gateway`]. It stops
//! reconnecting as soon as nobody reads the receiving half.
//!
//! A frame larger than the gateway's limit (`max_frame_bytes` in the hello; until then this
//! transport's own) is refused by [`FrameSender::send`](super::FrameSender::send) with
//! [`Error::FrameTooLarge`]; one the gateway refuses anyway arrives as a per-frame `Err` on the
//! receiving half. The session goes on in both cases.
//!
//! Creating a session and the health check
//! ([`GatewayTransport::create_session`],
//! [`GatewayTransport::health`]) speak a minimal HTTP/1.1 by
//! hand (one request, `Connection: close`) to avoid an HTTP client dependency.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::relay::wire::{self, ClientControl, ServerText, True};
use super::relay::{
    Failure, Incoming, Outgoing, ReconnectPolicy, Wire, WireConn, close_error, http_error,
    http_failure, refusal_error,
};
use super::{Connection, GatewayTransport, Transport};
use crate::error::{Error, GatewayErrorKind, GatewayStatus, Result};
use crate::remote::{Remote, SessionRequest};

pub use super::relay::{ACK_EVERY, MAX_RECONNECTS};

type Socket = WebSocketStream<MaybeTlsStream<BufReader<TcpStream>>>;

/// Bytes read from the socket per system call at most (the buffer in front of tungstenite's).
const READ_CHUNK: usize = 64 * 1024;
/// tungstenite's own read buffer (allocated up front; it grows for large messages).
const WS_READ_BUFFER: usize = 8 * 1024;

/// A session on a conduit gateway, as an SDK [`Transport`].
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::remote::{Remote, SessionRequest};
/// use claude_conduit::transport::GatewayTransport;
/// use claude_conduit::transport::websocket::WebSocketTransport;
/// use claude_conduit::{Client, Options};
/// let remote = Remote::parse("ws://127.0.0.1:8992", "secret")?;
/// let id = WebSocketTransport::create_session(&remote, &SessionRequest::default()).await?;
/// let client = Client::connect_with(WebSocketTransport::new(&remote, id), Options::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebSocketTransport {
    remote: Remote,
    session_id: String,
    max_frame: usize,
}

super::relay::gateway_transport!(WebSocketTransport);

/// The connection of a one-request HTTP/1.1 exchange, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP/1.1 request to the gateway (`Connection: close`), by hand to avoid an HTTP client
/// dependency; the status and the body. `auth`: with the bearer token.
async fn http1(
    remote: &Remote,
    request_line: &str,
    auth: bool,
    body: &[u8],
    context: &'static str,
) -> Result<(u16, String)> {
    let host = remote.authority();
    let mut head = format!("{request_line} HTTP/1.1\r\nHost: {host}\r\n");
    if auth {
        head.push_str(&format!("Authorization: {}\r\n", remote.authorization()));
    }
    // W3C trace context: the session's spans on the gateway join the caller's trace.
    if let Some(tp) = crate::telemetry::traceparent() {
        head.push_str(&format!(
            "{}: {tp}\r\n",
            crate::telemetry::TRACEPARENT_HEADER
        ));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let unreachable = |e| Error::gateway_caused(GatewayErrorKind::Unavailable, None, context, e);
    let tcp = TcpStream::connect(host).await.map_err(unreachable)?;
    let mut stream: Box<dyn Io> = if remote.is_tls() {
        #[cfg(feature = "tls")]
        {
            Box::new(super::tls::connect(host, tcp).await?)
        }
        #[cfg(not(feature = "tls"))]
        {
            drop(tcp);
            return Err(Error::FeatureDisabled("tls"));
        }
    } else {
        Box::new(tcp)
    };
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.map_err(unreachable)?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response).await {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the reply is complete all the same
        // (`Connection: close`, and the body is checked by the caller).
        Err(e)
            if remote.is_tls()
                && e.kind() == std::io::ErrorKind::UnexpectedEof
                && !response.is_empty() => {}
        Err(e) => return Err(unreachable(e)),
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status == 0 {
        // Not HTTP at all: typically a TLS server answering a plain-text request.
        return Err(Error::gateway(
            GatewayErrorKind::Protocol,
            None,
            format!(
                "{context}: the reply ({} bytes) has no HTTP status line",
                response.len()
            ),
        ));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(Error::gateway(
            GatewayErrorKind::Protocol,
            Some(GatewayStatus::Http(status)),
            format!("{context}: chunked replies are not supported"),
        ));
    }
    Ok((status, body.to_owned()))
}

impl WebSocketTransport {
    async fn create_impl(remote: &Remote, request: &SessionRequest) -> Result<String> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::InvalidOptions(format!("session request: {e}")))?;
        let line = format!("POST {}/v1/sessions", remote.prefix());
        let (status, body) = http1(remote, &line, true, &body, "creating a session").await?;
        if status != 201 && status != 200 {
            return Err(http_error("creating a session", status, body.as_bytes()));
        }
        let v: Value =
            serde_json::from_str(&body).map_err(|e| Error::decode(body.as_bytes(), e))?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::decode(body.as_bytes(), "no `id` in the reply"))
    }

    async fn health_impl(remote: &Remote) -> Result<()> {
        let line = format!("GET {}/health", remote.prefix());
        let context = "checking the gateway's health";
        match http1(remote, &line, false, b"", context).await? {
            (200, _) => Ok(()),
            (status, body) => Err(http_error(context, status, body.as_bytes())),
        }
    }

    async fn open_impl(remote: &Remote, request: &SessionRequest) -> Result<Self> {
        let id = Self::create_impl(remote, request).await?;
        Ok(<Self as GatewayTransport>::new(remote, id))
    }

    async fn connect_socket(&self, after: u64) -> Result<Socket, Failure> {
        let url = format!(
            "{}/v1/sessions/{}/stream?after={after}",
            self.remote.ws_url(),
            self.session_id
        );
        let mut request = url.into_client_request().map_err(|e| {
            Failure::Fatal(Error::InvalidOptions(format!("WebSocket request: {e}")))
        })?;
        let auth = self.remote.authorization().parse().map_err(|_| {
            Failure::Fatal(Error::InvalidOptions(
                "the token is not a valid header value".into(),
            ))
        })?;
        request.headers_mut().insert("authorization", auth);
        if let Some(tp) = crate::telemetry::traceparent().and_then(|t| t.parse().ok()) {
            request
                .headers_mut()
                .insert(crate::telemetry::TRACEPARENT_HEADER, tp);
        }
        let limit = self.max_frame.saturating_add(wire::ENVELOPE_MARGIN);
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        // The socket is read through a buffer of its own: tungstenite reads into the room left
        // in its buffer, which the frames it handed out still share, so without one a busy
        // stream is read a few hundred bytes per system call.
        let unreachable = |e| {
            Failure::Transient(Error::gateway_caused(
                GatewayErrorKind::Unavailable,
                None,
                "connecting the WebSocket",
                e,
            ))
        };
        let tcp = TcpStream::connect(self.remote.authority())
            .await
            .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        let tcp = BufReader::with_capacity(READ_CHUNK, tcp);
        let connected = if self.remote.is_tls() {
            #[cfg(feature = "tls")]
            {
                let connector = tokio_tungstenite::Connector::Rustls(
                    super::tls::default_client_config().map_err(Failure::Fatal)?,
                );
                tokio_tungstenite::client_async_tls_with_config(
                    request,
                    tcp,
                    Some(config),
                    Some(connector),
                )
                .await
            }
            #[cfg(not(feature = "tls"))]
            {
                return Err(Failure::Fatal(Error::FeatureDisabled("tls")));
            }
        } else {
            tokio_tungstenite::client_async_with_config(
                request,
                MaybeTlsStream::Plain(tcp),
                Some(config),
            )
            .await
        };
        match connected {
            Ok((socket, _response)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response.body().as_deref().unwrap_or_default();
                Err(http_failure(
                    "opening the WebSocket",
                    response.status().as_u16(),
                    body,
                ))
            }
            Err(e) => Err(Failure::Transient(Error::gateway_caused(
                GatewayErrorKind::Unavailable,
                None,
                "connecting the WebSocket",
                e,
            ))),
        }
    }
}

impl Wire for WebSocketTransport {
    type Conn = Socket;

    async fn open(&self, after: u64) -> Result<Socket, Failure> {
        self.connect_socket(after).await
    }
}

impl WireConn for Socket {
    /// tungstenite hands out each message as a slice of an 8 KiB read buffer (a new one every
    /// dozen frames), which the thread that drops the message would otherwise free.
    const REPACK: bool = true;

    async fn recv(&mut self) -> Result<Incoming, Failure> {
        loop {
            let message = match self.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(dropped(e)),
                None => {
                    return Err(Failure::Transient(Error::gateway(
                        GatewayErrorKind::Unavailable,
                        None,
                        "the WebSocket ended without an end",
                    )));
                }
            };
            return match message {
                Message::Binary(b) => match wire::split_numbered(b) {
                    Some((seq, frame)) => Ok(Incoming::Frame(seq, frame)),
                    None => Err(protocol(
                        "a binary message shorter than its sequence number",
                    )),
                },
                Message::Text(t) => match serde_json::from_str::<ServerText>(t.as_str()) {
                    Ok(ServerText::Hello(h)) => Ok(Incoming::Hello(h)),
                    Ok(ServerText::InAck(n)) => Ok(Incoming::InAck(n)),
                    Ok(ServerText::Error(info)) => Ok(Incoming::Refused(refusal_error(info))),
                    Ok(ServerText::End(end)) => Ok(Incoming::End(end.into())),
                    Err(e) => Err(protocol(format!("unknown gateway message: {e}"))),
                },
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    Err(close_error(code, &reason))
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
        }
    }

    async fn send(&mut self, out: Outgoing) -> Result<(), Failure> {
        let message = match out {
            Outgoing::Frame(seq, frame) => Message::Binary(wire::numbered(seq, &frame)),
            Outgoing::Ack(n) => Message::Text(ClientControl::Ack(n).to_json().into()),
            Outgoing::EndInput => Message::Text(ClientControl::EndInput(True).to_json().into()),
            Outgoing::Close => Message::Text(ClientControl::Close(True).to_json().into()),
        };
        SinkExt::send(self, message).await.map_err(dropped)
    }

    async fn finish(mut self) {
        let _ = self.close(None).await;
    }
}

fn dropped(e: tokio_tungstenite::tungstenite::Error) -> Failure {
    Failure::Transient(Error::gateway_caused(
        GatewayErrorKind::Unavailable,
        None,
        "the WebSocket dropped",
        e,
    ))
}

fn protocol(message: impl std::fmt::Display) -> Failure {
    Failure::Fatal(Error::gateway(GatewayErrorKind::Protocol, None, message))
}

impl Transport for WebSocketTransport {
    type Sender = WebSocketSender;
    type Receiver = WebSocketReceiver;

    async fn connect(self) -> Result<Connection<WebSocketSender, WebSocketReceiver>> {
        let description = format!(
            "websocket {} session {}",
            self.remote.ws_url(),
            self.session_id
        );
        let max_frame = self.max_frame;
        super::relay::connect(self, max_frame, ReconnectPolicy::default(), description).await
    }
}

/// Sending half of a [`WebSocketTransport`].
pub type WebSocketSender = super::relay::GatewaySender;

/// Receiving half of a [`WebSocketTransport`].
pub type WebSocketReceiver = super::relay::GatewayReceiver;
