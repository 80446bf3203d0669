//! The HTTP and WebSocket front of the gateway (axum).
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /health` | no | `{"status":"ok"}` |
//! | `GET /metrics` | bearer (none with `metrics_public`) | Prometheus text exposition ([`crate::metrics`]); 404 with metrics off |
//! | `POST /v1/sessions` | bearer | body: [`SessionRequest`] (`{}` for defaults) → 201 [`SessionInfo`](crate::SessionInfo) |
//! | `GET /v1/sessions` | bearer | the caller's sessions |
//! | `GET /v1/sessions/{id}` | bearer | one session, 404 if unknown or another token's |
//! | `DELETE /v1/sessions/{id}` | bearer | close the CLI (waits until it is gone), 204 |
//! | `GET /v1/sessions/{id}/stream[?after=N]` | bearer | WebSocket, see [`crate::front`] |
//! | `POST /v1/sessions/{id}/frames`, `GET …/events`, `POST …/ack`, `POST …/end_input` | bearer | plain HTTP + server-sent events, see [`crate::http`] |
//!
//! Every error answer has the body `{"error":{"kind":…,"message":…}}` (docs/WIRE.md). gRPC is
//! served on its own listener ([`crate::grpc`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use claude_conduit::transport::relay::wire::kind;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::GatewayError;
use crate::auth::TokenId;
use crate::config::GatewayConfig;
use crate::front::{AppState, error, gateway_error_kind, no_session};
use crate::session::{SessionManager, SessionRequest};

/// How far over the frame limit a WebSocket message may be (the 8-byte sequence number, and
/// room for a typed `frame_too_large` refusal of a slightly larger frame).
pub const WS_MARGIN: usize = 64 * 1024;

/// Close code: a message over the size limit (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = claude_conduit::transport::relay::wire::close::TOO_BIG;

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
        if let Some(t) = crate::metrics::install(self.manager.config()) {
            crate::metrics::start(t);
        }
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
    routes(manager, true)
}

/// `conduit worker --metrics-listen`: serve `GET /health` and `GET /metrics` of this process
/// (a worker's sessions, its `conduit_worker_*` metrics) on `listener` until `shutdown`:
/// behind `manager`'s bearer tokens unless `metrics_public`, with the gateway listener's
/// connection limits (header timeout, connection cap). Installs the recorder like the gateway
/// (collector + Prometheus, the configured alert rules) when called, before the returned
/// future runs; with metrics off, `/metrics` is 404.
pub fn serve_metrics(
    manager: SessionManager,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let app = routes(manager.clone(), false);
    if let Some(t) = crate::metrics::install(manager.config()) {
        crate::metrics::start(t);
    }
    async move {
        let config = manager.config();
        let cap = crate::serving::ConnectionCap::new(config.max_connections);
        let limits = crate::serving::Limits::of(config, crate::serving::Front::Http);
        let listener = crate::tls::GatewayListener::new(listener, None);
        crate::serving::serve(listener, app, limits, cap, shutdown).await;
    }
}

/// The routes over `manager`: `/health` and `/metrics`, and with `sessions` the session
/// routes and fronts.
fn routes(manager: SessionManager, sessions: bool) -> Router {
    let config = manager.config();
    let telemetry = crate::metrics::install(config);
    let public_metrics = telemetry.is_some() && config.metrics.public;
    let private_metrics = telemetry.is_some() && !config.metrics.public;
    let state = AppState {
        tokens: Arc::new(config.tokens.clone()),
        manager,
        telemetry,
    };
    let mut api = Router::new();
    if sessions {
        api = api
            .route("/v1/sessions", get(list_sessions).post(create_session))
            .route("/v1/sessions/{id}", get(get_session).delete(delete_session))
            .route("/v1/sessions/{id}/stream", get(crate::front::ws::stream))
            .merge(crate::front::http::routes());
    }
    if private_metrics {
        api = api.route("/metrics", get(crate::metrics::exposition));
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let mut open = Router::new().route("/health", get(|| async { Json(json!({"status": "ok"})) }));
    if public_metrics {
        open = open.route("/metrics", get(crate::metrics::exposition));
    }
    open.merge(api)
        .layer(middleware::map_response(crate::front::json_errors))
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
                [(header::WWW_AUTHENTICATE, "Bearer")],
                error(
                    StatusCode::UNAUTHORIZED,
                    kind::UNAUTHORIZED,
                    "missing or invalid bearer token",
                ),
            )
                .into_response()
        }
    }
}

async fn create_session(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    headers: axum::http::HeaderMap,
    body: Option<Json<SessionRequest>>,
) -> Response {
    use tracing::Instrument;
    let request = body.map(|Json(r)| r).unwrap_or_default();
    let tp = headers.get(claude_conduit::telemetry::TRACEPARENT_HEADER);
    let span = crate::metrics::request_span("gateway.create_session", tp.map(|v| v.as_bytes()));
    match state.manager.create(owner, &request).instrument(span).await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(e) => {
            let (status, kind) = gateway_error_kind(&e);
            error(status, kind, e)
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
        None => no_session(),
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
        no_session()
    }
}
