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
//! [`ReconnectPolicy`](super::relay::ReconnectPolicy) with `?after=<last seq>` (frames seen
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
//! [`WebSocketTransport::create_session`] speaks a minimal HTTP/1.1 by hand (one request,
//! `Connection: close`) to avoid an HTTP client dependency.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
use super::{Connection, Transport};
use crate::error::{Error, GatewayErrorKind, GatewayStatus, Result};

pub use super::relay::{ACK_EVERY, MAX_RECONNECTS};

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
    super::relay::gateway_transport_accessors!(base_url);

    /// Create a session on `remote` for `request` and return the transport for it.
    pub async fn open_session(
        remote: &crate::remote::Remote,
        request: &crate::remote::SessionRequest,
    ) -> Result<Self> {
        if remote.scheme().is_tls() && !cfg!(feature = "tls") {
            return Err(Error::FeatureDisabled("tls"));
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
        // W3C trace context: the session's spans on the gateway join the caller's trace.
        let trace = crate::telemetry::traceparent()
            .map(|tp| format!("traceparent: {tp}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST {prefix}/v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             {trace}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
                return Err(Error::FeatureDisabled("tls"));
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
        if status == 0 {
            // Not HTTP at all: typically a TLS server answering a plain-text request.
            return Err(Error::gateway(
                GatewayErrorKind::Protocol,
                None,
                format!(
                    "creating a session: the reply ({} bytes) has no HTTP status line",
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
                "POST /v1/sessions: chunked replies are not supported",
            ));
        }
        if status != 201 && status != 200 {
            return Err(http_error("creating a session", status, body.as_bytes()));
        }
        let v: Value = serde_json::from_str(body).map_err(|e| Error::decode(body.as_bytes(), e))?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::decode(body.as_bytes(), "no `id` in the reply"))
    }

    async fn open(&self, after: u64) -> Result<Socket, Failure> {
        let (tls, plain) = match self.base_url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") => {
                (true, format!("http://{rest}"))
            }
            _ => (false, self.base_url.clone()),
        };
        let (host, prefix) = split_base(&plain).map_err(Failure::Fatal)?;
        let scheme = if tls { "wss" } else { "ws" };
        let url = format!(
            "{scheme}://{host}{prefix}/v1/sessions/{}/stream?after={after}",
            self.session_id
        );
        let mut request = url.into_client_request().map_err(|e| {
            Failure::Fatal(Error::InvalidOptions(format!("WebSocket request: {e}")))
        })?;
        let auth = format!("Bearer {}", self.token).parse().map_err(|_| {
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
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let connected = if tls {
            #[cfg(feature = "tls")]
            {
                let connector = tokio_tungstenite::Connector::Rustls(
                    super::tls::default_client_config().map_err(Failure::Fatal)?,
                );
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
                return Err(Failure::Fatal(Error::FeatureDisabled("tls")));
            }
        } else {
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await
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
        WebSocketTransport::open(self, after).await
    }
}

impl WireConn for Socket {
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
        let description = format!("websocket {} session {}", self.base_url, self.session_id);
        let max_frame = self.max_frame;
        super::relay::connect(self, max_frame, ReconnectPolicy::default(), description).await
    }
}

/// Sending half of a [`WebSocketTransport`].
pub type WebSocketSender = super::relay::GatewaySender;

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
