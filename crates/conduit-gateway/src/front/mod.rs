//! The gateway's fronts: one encoder per wire over the same sessions
//! ([`SessionManager`]), each attaching to a session, sending its hello,
//! replaying and streaming [`Outbound`](crate::session::Outbound) events, and passing client
//! frames and acks to the session. The wire types are the SDK's (`claude_conduit::transport::
//! relay::wire`), so gateway and clients cannot drift; docs/WIRE.md describes each wire.
//!
//! * [`ws`]: WebSocket (`GET /v1/sessions/{id}/stream`);
//! * [`http`]: `POST …/frames` and server-sent events (`GET …/events`);
//! * [`grpc`]: the `conduit.v1.Conduit` service (tonic), on its own listener.

pub mod grpc;
pub mod http;
pub(crate) mod ws;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use claude_conduit::transport::relay::wire::{ErrorBody, ErrorInfo, kind};

use crate::GatewayError;
use crate::auth::Tokens;
use crate::session::SessionManager;

/// What every HTTP handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) manager: SessionManager,
    pub(crate) tokens: Arc<Tokens>,
    /// The process's metrics (`None`: metrics off, `/metrics` answers 404).
    pub(crate) telemetry: Option<&'static claude_conduit::telemetry::Telemetry>,
}

/// `{"error":{…}}` with `status`: the one error body of every route.
pub(crate) fn error_response(status: StatusCode, error: ErrorInfo) -> Response {
    (status, Json(ErrorBody { error })).into_response()
}

/// `{"error":{"kind","message"}}` with `status`.
pub(crate) fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response {
    error_response(status, ErrorInfo::new(kind, message))
}

/// 404: no such session (or another token's).
pub(crate) fn no_session() -> Response {
    error(StatusCode::NOT_FOUND, kind::NOT_FOUND, "no such session")
}

/// The status and wire kind of a gateway error.
pub(crate) fn gateway_error_kind(e: &GatewayError) -> (StatusCode, &'static str) {
    match e {
        GatewayError::TooManySessions { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, kind::TOO_MANY_SESSIONS)
        }
        GatewayError::InvalidOptions(_) => (StatusCode::BAD_REQUEST, kind::REFUSED),
        GatewayError::ShuttingDown | GatewayError::Redis(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, kind::UNAVAILABLE)
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, kind::INTERNAL),
    }
}

/// The wire kind for an error status with no body of ours (axum's rejections: 400 bad query
/// string, 405, 413, 415, 422, unknown routes).
fn kind_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => kind::UNAUTHORIZED,
        404 => kind::NOT_FOUND,
        413 | 415 | 422 => kind::BAD_BODY,
        503 => kind::UNAVAILABLE,
        500..=599 => kind::INTERNAL,
        _ => kind::BAD_REQUEST,
    }
}

/// Rewrite error answers that are not JSON (axum's plain-text rejections) into the one error
/// body, keeping their text as the message.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        t => t.to_owned(),
    };
    let body = ErrorBody {
        error: ErrorInfo::new(kind_for_status(status), message),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}
