//! Serving a listener: one hyper-util [`auto::Builder`] connection per accepted socket, with the
//! gateway's limits on slow and idle clients and on the number of connections.
//!
//! Both listeners (HTTP/WebSocket with axum, gRPC with tonic) are served here, so both get:
//!
//! * **a cap on connections** ([`ConnectionCap`], `max_connections` for the whole gateway,
//!   WebSockets included: the permit travels with an upgraded connection). Over it a connection
//!   is answered and closed at once: `503 {"error":"too many connections …"}` on HTTP,
//!   `RESOURCE_EXHAUSTED` on gRPC;
//! * **a first-request timeout**: a connection must complete its first request's headers within
//!   `header_timeout` (HTTP) or start its first call within `grpc_first_bytes_timeout` (gRPC), or it
//!   is closed;
//! * **a header-read timeout** on HTTP/1 between requests: once the next request's first byte
//!   came, its headers must be complete within `header_timeout`;
//! * **a keep-alive idle timeout** (`keepalive_idle`, distinct from the sessions' `idle_secs`):
//!   a connection with no request in flight for that long is closed. A request is in flight until
//!   its response body is done, so an SSE stream or a gRPC stream, however quiet, keeps its
//!   connection; an upgraded WebSocket leaves this accounting altogether (it has its own
//!   ping/pong);
//! * on HTTP/2, keep-alive pings (`ping_interval`, `ping_timeout`) and, on gRPC, a cap on
//!   concurrent streams per connection.
//!
//! The checks run on a tick per connection (a quarter of the shortest timeout, between 50 ms and
//! 1 s), so a timeout fires up to one tick late.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection refused over the cap may take to get its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// Refusals answered at once; beyond it, connections over the cap are just closed.
const MAX_REFUSALS: usize = 64;

/// Which front a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// axum: HTTP/1.1 (and h2c), WebSocket upgrades, SSE.
    Http,
    /// tonic: HTTP/2 only.
    Grpc,
}

/// The per-connection limits of one listener.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) front: Front,
    pub(crate) header_timeout: Duration,
    pub(crate) first_request: Duration,
    pub(crate) keepalive_idle: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) max_streams: u32,
}

impl Limits {
    /// The limits of `front` from the gateway's configuration.
    pub(crate) fn of(config: &crate::GatewayConfig, front: Front) -> Self {
        Self {
            front,
            header_timeout: config.header_timeout,
            first_request: match front {
                Front::Http => config.header_timeout,
                Front::Grpc => config.grpc_first_bytes_timeout,
            },
            keepalive_idle: config.keepalive_idle,
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            max_streams: config.grpc_max_streams,
        }
    }

    fn tick(&self) -> Duration {
        self.header_timeout
            .min(self.first_request)
            .min(self.keepalive_idle)
            .div_f64(4.0)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        // Header-read and idle timeouts are ours (`ConnState`): hyper's own header timeout would
        // also close keep-alive connections between requests.
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(64 * 1024);
        b.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.ping_interval)
            .keep_alive_timeout(self.ping_timeout)
            .adaptive_window(true)
            .max_concurrent_streams(self.max_streams);
        match self.front {
            Front::Http => b,
            Front::Grpc => b.http2_only(),
        }
    }
}

/// The gateway-wide cap on open connections (both listeners, upgraded WebSockets included).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionCap {
    open: Arc<Semaphore>,
    max: usize,
    refusing: Arc<Semaphore>,
    last_warning: Arc<AtomicU64>,
}

impl ConnectionCap {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            open: Arc::new(Semaphore::new(max)),
            max,
            refusing: Arc::new(Semaphore::new(MAX_REFUSALS)),
            last_warning: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Log the refusal at most once a minute.
    fn warn(&self) {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 60)
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max = self.max,
                "connection limit reached: refusing new connections (max_connections)"
            );
        }
    }
}

/// Serve `service` on `listener` until `shutdown` completes; then stop accepting, shut every
/// connection down gracefully and wait for them.
pub(crate) async fn serve<L, S, B>(
    mut listener: L,
    service: S,
    limits: Limits,
    cap: ConnectionCap,
    shutdown: impl Future<Output = ()>,
) where
    L: axum::serve::Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let limits = Arc::new(limits);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (io, _) = listener.accept() => {
                match cap.open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(connection(
                            io,
                            service.clone(),
                            limits.clone(),
                            permit,
                            stopped.clone(),
                        ));
                    }
                    Err(_) => {
                        cap.warn();
                        if let Ok(slot) = cap.refusing.clone().try_acquire_owned() {
                            tokio::spawn(refuse(io, limits.front, cap.max, slot));
                        }
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// One connection, until it ends, breaks a limit, or the listener shuts down.
async fn connection<I, S, B>(
    io: I,
    service: S,
    limits: Arc<Limits>,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let state = Arc::new(ConnState::new());
    let io = Watched {
        io,
        state: state.clone(),
        _permit: permit,
    };
    let service = TowerToHyperService::new(Tracked {
        inner: service,
        state: state.clone(),
    });
    let builder = limits.builder();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut tick = tokio::time::interval(limits.tick());
    tick.reset();
    let mut stopping = false;
    if *stop.borrow_and_update() {
        conn.as_mut().graceful_shutdown();
        stopping = true;
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tick.tick() => if let Some(why) = state.expired(&limits, Instant::now()) {
                tracing::debug!(why, "closing a connection");
                return;
            },
            r = stop.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answer a connection over the cap with a clear refusal, then close it.
async fn refuse<I>(io: I, front: Front, max: usize, _slot: OwnedSemaphorePermit)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let message = format!("too many connections (the gateway's limit is {max}): try again later");
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
        let message = message.clone();
        async move {
            let response = match front {
                Front::Http => Response::builder()
                    .status(http::StatusCode::SERVICE_UNAVAILABLE)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::CONNECTION, "close")
                    .header(http::header::RETRY_AFTER, "1")
                    .body(http_body_util::Full::new(Bytes::from(
                        serde_json::json!({ "error": message }).to_string(),
                    )))
                    .unwrap_or_default(),
                Front::Grpc => tonic::Status::resource_exhausted(message)
                    .into_http::<http_body_util::Full<Bytes>>(),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(false);
    if front == Front::Grpc {
        builder = builder.http2_only();
    }
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(REFUSAL_TIME, conn).await;
}

/// What a connection is doing, for its timeouts.
#[derive(Debug)]
struct ConnState {
    inner: Mutex<Conn>,
}

#[derive(Debug)]
struct Conn {
    opened: Instant,
    /// Requests whose response is not done yet.
    in_flight: usize,
    /// Requests so far.
    requests: u64,
    /// When the last request ended (or the connection opened).
    idle_since: Instant,
    /// When bytes of the next request started to come (HTTP/1, nothing in flight).
    head_since: Option<Instant>,
    /// The connection speaks HTTP/2 (bytes between requests are pings, not a request head).
    h2: bool,
}

impl ConnState {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            inner: Mutex::new(Conn {
                opened: now,
                in_flight: 0,
                requests: 0,
                idle_since: now,
                head_since: None,
                h2: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes came in.
    fn read(&self) {
        let mut c = self.lock();
        if c.in_flight == 0 && c.head_since.is_none() {
            c.head_since = Some(Instant::now());
        }
    }

    /// Why the connection should be closed at `now`, if it should.
    fn expired(&self, limits: &Limits, now: Instant) -> Option<&'static str> {
        let c = self.lock();
        if c.in_flight > 0 {
            return None;
        }
        if c.requests == 0 {
            return (now.duration_since(c.opened) > limits.first_request)
                .then_some("no request in time");
        }
        if !c.h2
            && let Some(t) = c.head_since
        {
            return (now.duration_since(t) > limits.header_timeout)
                .then_some("request headers too slow");
        }
        (now.duration_since(c.idle_since) > limits.keepalive_idle).then_some("idle keep-alive")
    }
}

/// A request in flight: from its headers until its response body is done (or dropped).
#[derive(Debug)]
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>, h2: bool) -> Self {
        {
            let mut c = state.lock();
            c.in_flight += 1;
            c.requests += 1;
            c.head_since = None;
            c.h2 = h2;
        }
        Self(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut c = self.0.lock();
        c.in_flight = c.in_flight.saturating_sub(1);
        if c.in_flight == 0 {
            c.idle_since = Instant::now();
            c.head_since = None;
        }
    }
}

/// The service, counting requests in flight.
#[derive(Debug, Clone)]
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(self.state.clone(), req.version() == Version::HTTP_2);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is done.
#[derive(Debug)]
struct TrackedBody<B> {
    body: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket: notes incoming bytes and holds the connection's permit (which an
/// upgraded WebSocket takes along).
struct Watched<I> {
    io: I,
    state: Arc<ConnState>,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.read();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            front: Front::Http,
            header_timeout: Duration::from_secs(10),
            first_request: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(10),
            max_streams: 64,
        }
    }

    #[test]
    fn timeouts_follow_what_the_connection_does() {
        let l = limits();
        let s = Arc::new(ConnState::new());
        let t0 = s.lock().opened;
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // No request yet: the first-request timeout.
        assert_eq!(s.expired(&l, at(9)), None);
        assert_eq!(s.expired(&l, at(11)), Some("no request in time"));
        // A request in flight (an SSE stream) is never timed out.
        let req = InFlight::start(s.clone(), false);
        assert_eq!(s.expired(&l, at(1000)), None);
        drop(req);
        let t1 = s.lock().idle_since;
        // Idle between requests: the keep-alive timeout, not the header one.
        assert_eq!(s.expired(&l, t1 + Duration::from_secs(30)), None);
        assert_eq!(
            s.expired(&l, t1 + Duration::from_secs(61)),
            Some("idle keep-alive")
        );
        // Part of the next request's head: the header timeout.
        s.read();
        let t2 = s.lock().head_since.unwrap();
        assert_eq!(
            s.expired(&l, t2 + Duration::from_secs(11)),
            Some("request headers too slow")
        );
        // On HTTP/2 bytes between calls are pings: only the idle timeout counts.
        let h2 = Arc::new(ConnState::new());
        drop(InFlight::start(h2.clone(), true));
        h2.read();
        let t3 = h2.lock().idle_since;
        assert_eq!(h2.expired(&l, t3 + Duration::from_secs(30)), None);
        assert!(h2.expired(&l, t3 + Duration::from_secs(61)).is_some());
    }
}
