//! The HTTP and WebSocket front of the gateway (axum).
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /health` | no | `{"status":"ok"}` |
//! | `POST /v1/sessions` | bearer | body: [`SessionRequest`] (`{}` for defaults) → 201 [`SessionInfo`](crate::SessionInfo) |
//! | `GET /v1/sessions` | bearer | the caller's sessions |
//! | `GET /v1/sessions/{id}` | bearer | one session, 404 if unknown or another token's |
//! | `DELETE /v1/sessions/{id}` | bearer | close the CLI (waits until it is gone), 204 |
//! | `GET /v1/sessions/{id}/stream[?after=N]` | bearer | WebSocket, see the crate docs |
//! | `POST /v1/sessions/{id}/frames`, `GET …/events`, `POST …/ack`, `POST …/end_input` | bearer | plain HTTP + server-sent events, see [`crate::http`] |
//!
//! gRPC is served on its own listener ([`crate::grpc`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::auth::{TokenId, Tokens};
use crate::config::GatewayConfig;
use crate::session::ACK_EVERY;
use crate::session::{
    AttachError, EndInfo, Input, InputError, Outbound, Session, SessionManager, SessionRequest,
};
use crate::{CLOSE_BAD_RESUME, CLOSE_REPLACED, CLOSE_REPLAY_TOO_OLD, GatewayError};

/// The WebSocket read chunk per connection.
const WS_READ_BUFFER: usize = 8 * 1024;

/// Frames sent per look at the ring.
const BATCH: usize = 64;

/// How far over the frame limit a WebSocket message may be (the 8-byte sequence number, and
/// room for a typed `frame_too_large` refusal of a slightly larger frame).
pub const WS_MARGIN: usize = 64 * 1024;

/// Close code: a message over the size limit (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) manager: SessionManager,
    tokens: Arc<Tokens>,
}

/// A bound, not yet serving gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Plain TCP, or TLS when configured (see [`crate::tls`]).
    listener: crate::tls::GatewayListener,
    addr: SocketAddr,
    manager: SessionManager,
    /// The gRPC listener and its address, when configured.
    grpc: Option<(TcpListener, SocketAddr)>,
}

impl Gateway {
    /// Bind the listener and start the session manager.
    pub async fn bind(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        let listen = config.listen;
        let tls = match &config.tls {
            Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
            None => None,
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            addr: listen,
            source,
        })?;
        if config.tokens.is_empty() {
            tracing::warn!("no tokens configured: every authenticated route will answer 401");
        }
        let grpc = match config.grpc_listen {
            Some(a) => Some(crate::grpc::bind(a).await?),
            None => None,
        };
        Ok(Self {
            listener: crate::tls::GatewayListener::new(listener, tls),
            addr,
            manager: SessionManager::new(config),
            grpc,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the gRPC service is bound to, when configured.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|(_, a)| *a)
    }

    /// The session manager (for embedding and tests).
    pub fn manager(&self) -> SessionManager {
        self.manager.clone()
    }

    /// Serve until `shutdown` completes; then close every CLI and stop.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let manager = self.manager.clone();
        let app = router(self.manager.clone());
        let config = self.manager.config();
        let cap = crate::serving::ConnectionCap::new(config.max_connections);
        let limits = crate::serving::Limits::of(config, crate::serving::Front::Http);
        let mut grpc =
            crate::grpc::spawn(self.grpc.map(|(l, _)| l), self.manager.clone(), cap.clone());
        let stop_grpc = grpc.stop.take();
        tracing::info!(addr = %self.addr, "gateway listening");
        let shutdown = async move {
            shutdown.await;
            drop(stop_grpc);
            tracing::info!("gateway shutting down: closing every CLI");
            manager.shutdown().await;
        };
        crate::serving::serve(self.listener, app, limits, cap, shutdown).await;
        grpc.finish().await
    }
}

/// Bind and serve in a background task; returns the bound address and the task.
pub async fn serve(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<Result<(), GatewayError>>), GatewayError> {
    let gateway = Gateway::bind(config).await?;
    let addr = gateway.local_addr();
    Ok((addr, tokio::spawn(gateway.run(shutdown))))
}

/// The gateway's routes over `manager`.
pub fn router(manager: SessionManager) -> Router {
    let state = AppState {
        tokens: Arc::new(manager.config().tokens.clone()),
        manager,
    };
    let api = Router::new()
        .route("/v1/sessions", get(list_sessions).post(create_session))
        .route("/v1/sessions/{id}", get(get_session).delete(delete_session))
        .route("/v1/sessions/{id}/stream", get(stream))
        .merge(crate::http::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(api)
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state.tokens.check(header) {
        Some(id) => {
            req.extensions_mut().insert(id);
            next.run(req).await
        }
        None => {
            crate::auth_log::auth_failed("http");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "missing or invalid bearer token"})),
            )
                .into_response()
        }
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

async fn create_session(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    body: Option<Json<SessionRequest>>,
) -> Response {
    let request = body.map(|Json(r)| r).unwrap_or_default();
    match state.manager.create(owner, &request).await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(e) => {
            let status = match &e {
                GatewayError::TooManySessions { .. } => StatusCode::TOO_MANY_REQUESTS,
                GatewayError::InvalidOptions(_) => StatusCode::BAD_REQUEST,
                GatewayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e)
        }
    }
}

async fn list_sessions(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
) -> Response {
    Json(json!({"sessions": state.manager.list(owner)})).into_response()
}

async fn get_session(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
) -> Response {
    match state.manager.get(owner, &id) {
        Some(s) => Json(s.info()).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such session"),
    }
}

async fn delete_session(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
) -> Response {
    if state.manager.delete(owner, &id).await {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such session")
    }
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    after: Option<u64>,
}

async fn stream(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(session) = state.manager.get(owner, &id) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let config = state.manager.config();
    // The WebSocket limits follow the frame limit: a message larger than it plus a small margin
    // is refused from its frame header, before any of it is read (close 1009). Within the margin
    // a slightly larger frame gets a typed error and the connection lives on.
    let limit = config.max_frame_bytes().saturating_add(WS_MARGIN);
    let (interval, timeout) = (config.ping_interval, config.ping_timeout);
    // A small read chunk (tungstenite's default is 128 KiB, allocated and zero-filled per
    // connection): an idle session costs little, and large client frames still pass (the buffer
    // grows while they do). The write side keeps its default: it is not allocated up front.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| {
            client_connection(session, socket, q.after.unwrap_or(0), interval, timeout)
        })
}

fn close_message(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One attached client: replay after `after`, then live; client frames and acks the other way.
async fn client_connection(
    session: Arc<Session>,
    socket: WebSocket,
    after: u64,
    ping_interval: Duration,
    ping_timeout: Duration,
) {
    let (mut tx, mut rx) = socket.split();
    let attached = match session.attach(after) {
        Ok(a) => a,
        Err(e) => {
            let (code, reason) = match e {
                AttachError::TooOld { after, oldest } => (
                    CLOSE_REPLAY_TOO_OLD,
                    format!("replay too old: after={after}, oldest kept seq={oldest}"),
                ),
                AttachError::Ahead { after, last } => (
                    CLOSE_BAD_RESUME,
                    format!("bad resume: after={after} but last seq={last}"),
                ),
            };
            let _ = tx.send(close_message(code, reason)).await;
            return;
        }
    };
    let generation = attached.generation;
    tracing::debug!(session = %session.id(), after, in_seq = attached.in_seq, "client attached");
    let hello = json!({"hello": {
        "session": session.id(),
        "in_seq": attached.in_seq,
        "max_frame_bytes": session.max_frame_bytes(),
    }});
    if tx
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        session.detach(generation);
        return;
    }
    let mut in_acked = attached.in_seq;
    let started = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));

    // Reader: client frames to the CLI, acks to the ring; refusals go to the writer loop below.
    let (notice_tx, mut notices) = tokio::sync::mpsc::channel::<InputError>(8);
    let reader = {
        let session = session.clone();
        let heard = heard.clone();
        async move {
            while let Some(msg) = rx.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    // Over the size limit: refused from the frame header, before its payload.
                    Err(e) => return too_big(e),
                };
                heard.store(elapsed_ms(started), Ordering::Relaxed);
                let result = match msg {
                    Message::Binary(b) => match numbered(b) {
                        Some((seq, frame)) => {
                            session
                                .to_cli(Input::Frame {
                                    seq: Some(seq),
                                    frame,
                                })
                                .await
                        }
                        None => Err(InputError::Gap {
                            expected: session.in_seq() + 1,
                            got: 0,
                        }),
                    },
                    Message::Text(text) => handle_text(&session, text.as_str()).await,
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => Ok(()),
                };
                match result {
                    Ok(()) => {}
                    Err(InputError::Closed) => break,
                    Err(e @ (InputError::TooLarge { .. } | InputError::Policy { .. })) => {
                        if notice_tx.send(e).await.is_err() {
                            break;
                        }
                    }
                    Err(e @ InputError::Gap { .. }) => {
                        let _ = notice_tx.send(e).await;
                        break;
                    }
                }
            }
            None
        }
    };
    let mut reader = std::pin::pin!(reader);
    // Why the reader stopped, when the client sent a message over the size limit.
    let mut oversize: Option<String> = None;

    let mut events = session.subscribe();
    let mut cursor = after;
    let mut ping = tokio::time::interval(ping_interval);
    ping.reset();
    let mut reader_done = false;
    loop {
        events.borrow_and_update();
        let in_seq = session.in_seq();
        if in_seq >= in_acked + ACK_EVERY {
            let ack = json!({"in_ack": in_seq}).to_string();
            if tx.send(Message::Text(ack.into())).await.is_err() {
                break;
            }
            in_acked = in_seq;
        }
        match session.poll_outbound(generation, cursor, BATCH) {
            Outbound::Frames(frames) => {
                // Queue the batch, then flush once: one write for many small frames.
                let mut failed = false;
                for (seq, frame) in frames {
                    let mut buf = BytesMut::with_capacity(8 + frame.len());
                    buf.put_u64(seq);
                    buf.put_slice(&frame);
                    if tx.feed(Message::Binary(buf.freeze())).await.is_err() {
                        failed = true;
                        break;
                    }
                    cursor = seq;
                }
                if failed || tx.flush().await.is_err() {
                    break;
                }
                // Let the reader run between batches (acks free ring space).
                if !reader_done {
                    tokio::select! {
                        biased;
                        r = &mut reader => (reader_done, oversize) = (true, r),
                        () = std::future::ready(()) => {}
                    }
                }
                if reader_done {
                    break;
                }
                continue;
            }
            Outbound::End(end) => {
                let _ = tx.send(Message::Text(end_message(&end).into())).await;
                let _ = tx.send(close_message(1000, "session ended".into())).await;
                break;
            }
            Outbound::Replaced => {
                let _ = tx
                    .send(close_message(
                        CLOSE_REPLACED,
                        "replaced by a newer connection".into(),
                    ))
                    .await;
                break;
            }
            Outbound::Dropped => break,
            Outbound::Wait => {}
        }
        if reader_done {
            break;
        }
        tokio::select! {
            r = &mut reader => (reader_done, oversize) = (true, r),
            r = events.changed() => if r.is_err() { break },
            Some(refused) = notices.recv() => {
                if let InputError::Gap { expected, got } = refused {
                    let reason = format!("frame {got} arrived but {expected} was expected");
                    let _ = tx.send(close_message(CLOSE_BAD_RESUME, reason)).await;
                    break;
                }
                if tx.send(Message::Text(refusal(&refused).into())).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                let silent = elapsed_ms(started).saturating_sub(heard.load(Ordering::Relaxed));
                if silent > u64::try_from((ping_interval + ping_timeout).as_millis()).unwrap_or(u64::MAX) {
                    tracing::debug!(session = %session.id(), "client missed its pong: dropping");
                    break;
                }
                if tx.send(Message::Ping(Bytes::from_static(b"conduit"))).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(reason) = oversize {
        let _ = tx.send(close_message(CLOSE_TOO_BIG, reason)).await;
    }
    // The reader may have stopped on a refusal the loop did not get to: say why before going.
    if let Ok(InputError::Gap { expected, got }) = notices.try_recv() {
        let reason = format!("frame {got} arrived but {expected} was expected");
        let _ = tx.send(close_message(CLOSE_BAD_RESUME, reason)).await;
    }
    session.detach(generation);
    tracing::debug!(session = %session.id(), cursor, "client detached");
}

/// The close reason for a read error that is a message over the size limit (else `None`: the
/// connection just broke).
fn too_big(e: axum::Error) -> Option<String> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(c)) => Some(format!(
            "message too big: {c} (the gateway's frame limit, from the hello, plus {WS_MARGIN} bytes)"
        )),
        _ => None,
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn end_message(end: &EndInfo) -> String {
    json!({"end": end}).to_string()
}

/// A binary client message: 8-byte big-endian sequence number, then the frame.
fn numbered(b: Bytes) -> Option<(u64, Bytes)> {
    let head: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(head), b.slice(8..)))
}

/// The text message that tells a client its frame was refused.
pub(crate) fn refusal(e: &InputError) -> String {
    match e {
        InputError::TooLarge { limit, size, seq } => json!({"error": {
            "kind": "frame_too_large", "limit": limit, "size": size, "seq": seq,
            "message": e.to_string(),
        }}),
        InputError::Policy { seq, .. } => json!({"error": {
            "kind": "policy", "seq": seq, "message": e.to_string(),
        }}),
        other => json!({"error": {"kind": "refused", "message": other.to_string()}}),
    }
    .to_string()
}

/// A text message: `{"ack":N}`, `{"end_input":true}`, `{"close":true}`, or an unnumbered frame.
async fn handle_text(session: &Session, text: &str) -> Result<(), InputError> {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text)
        && map.len() == 1
    {
        if let Some(n) = map.get("ack").and_then(Value::as_u64) {
            session.ack(n);
            return Ok(());
        }
        if map.get("end_input") == Some(&Value::Bool(true)) {
            return session.to_cli(Input::EndInput).await;
        }
        if map.get("close") == Some(&Value::Bool(true)) {
            session.request_close();
            return Ok(());
        }
    }
    let frame = Bytes::copy_from_slice(text.as_bytes());
    session.to_cli(Input::Frame { seq: None, frame }).await
}
