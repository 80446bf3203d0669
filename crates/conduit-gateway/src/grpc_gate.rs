//! The gate in front of the gRPC service: authentication and the unary size limit, before tonic
//! reads a byte of the request body.
//!
//! tonic decodes a unary request whole before the service method runs, and its decode limit is
//! per service (the frame limit, for `Stream`). So [`GrpcGate`]:
//!
//! * checks `authorization: Bearer <token>` from the request headers first: without a valid
//!   token the call is answered `UNAUTHENTICATED` at once and its body is never read (HTTP/2 flow
//!   control then holds the client to its window);
//! * for unary calls (everything but `Stream`), reads the 5-byte gRPC message prefix as it comes
//!   and refuses a message over [`UNARY_LIMIT`] with `RESOURCE_EXHAUSTED` before buffering it;
//!   the body is read only up to that limit;
//! * passes `Stream` calls through: their messages keep the frame limit (tonic's decode limit);
//! * serves one call without a token: `grpc.health.v1.Health/Check`, as load balancers and
//!   Kubernetes probes expect (a unary call answered from memory, its body read only up to
//!   [`OPEN_LIMIT`]). `Health/Watch` (a stream held open) and server reflection (the service's
//!   description) need the token like every other call.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tower_service::Service;

use crate::auth::Tokens;

/// The largest message of a unary call (`CreateSession`, `ListSessions`, `GetSession`,
/// `CloseSession`), in bytes.
pub const UNARY_LIMIT: usize = 1 << 20;

/// The path of the streaming call, whose messages keep the frame limit.
const STREAM_PATH: &str = "/conduit.v1.Conduit/Stream";

/// The one call served without a token.
const OPEN_PATH: &str = "/grpc.health.v1.Health/Check";

/// The largest message of the open call (a `HealthCheckRequest` names one service), in bytes.
pub const OPEN_LIMIT: usize = 1024;

/// Authentication and the unary size limit in front of the tonic routes.
#[derive(Clone)]
pub(crate) struct GrpcGate {
    tokens: Arc<Tokens>,
    routes: Routes,
}

impl GrpcGate {
    pub(crate) fn new(tokens: Arc<Tokens>, routes: Routes) -> Self {
        Self { tokens, routes }
    }
}

fn answer(status: Status) -> Response<Body> {
    status.into_http::<Body>()
}

impl Service<Request<Incoming>> for GrpcGate {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The routes are made ready in `call`, for the clone that serves the request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let authorized = self
            .tokens
            .check(
                req.headers()
                    .get(http::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )
            .is_some();
        let open = req.uri().path() == OPEN_PATH;
        let mut routes = self.routes.clone();
        Box::pin(async move {
            if !authorized && !open {
                return Ok(answer(Status::unauthenticated(
                    "missing or invalid bearer token",
                )));
            }
            let req = if authorized && req.uri().path() == STREAM_PATH {
                req.map(Body::new)
            } else {
                let limit = if authorized { UNARY_LIMIT } else { OPEN_LIMIT };
                match bounded(req, limit).await {
                    Ok(r) => r,
                    Err(status) => return Ok(answer(status)),
                }
            };
            std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut routes, cx))
                .await?;
            routes.call(req).await
        })
    }
}

/// A unary request with its body read, refused as soon as its message prefix (or its size) goes
/// over `limit` ([`UNARY_LIMIT`], or [`OPEN_LIMIT`] without a token).
async fn bounded(req: Request<Incoming>, limit: usize) -> Result<Request<Body>, Status> {
    let (parts, mut body) = req.into_parts();
    let mut buf = BytesMut::new();
    let too_large = |size: usize| {
        Status::resource_exhausted(format!(
            "a {size}-byte message is over this gateway's limit of {limit} bytes for this call"
        ))
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::cancelled(format!("request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // Trailers: nothing to keep.
        };
        buf.extend_from_slice(&data);
        if let Some(prefix) = buf.get(1..5) {
            let mut len = [0u8; 4];
            len.copy_from_slice(prefix);
            let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
            if len > limit {
                return Err(too_large(len));
            }
        }
        if buf.len() > limit + 5 {
            return Err(too_large(buf.len() - 5));
        }
    }
    let body = http_body_util::Full::new(Bytes::from(buf));
    Ok(Request::from_parts(parts, Body::new(body)))
}
