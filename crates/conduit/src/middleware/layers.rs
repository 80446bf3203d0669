//! Timeout, retry policy and concurrency limit.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::QueryRequest;
use crate::error::{Error, Result};
use crate::session::Query;

/// Bounds a query in time: the whole query (`total`, from the call to the end of the stream)
/// and the gap between two messages (`idle`, and until the first one). The deadline wraps the
/// message stream, not only the call that starts it: when it passes, the stream yields
/// [`Error::Timeout`] (whole query) or [`Error::Idle`] (gap), ends, and the session is ended.
///
/// ```
/// use std::time::Duration;
/// use claude_conduit::middleware::{QueryService, TimeoutLayer};
/// use tower::ServiceBuilder;
///
/// let service = ServiceBuilder::new()
///     .layer(TimeoutLayer::new().total(Duration::from_secs(300)).idle(Duration::from_secs(60)))
///     .service(QueryService::new());
/// # let _ = service;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutLayer {
    total: Option<Duration>,
    idle: Option<Duration>,
}

impl TimeoutLayer {
    /// No limits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limit the whole query.
    pub fn total(mut self, after: Duration) -> Self {
        self.total = Some(after);
        self
    }

    /// Limit the wait for each message.
    pub fn idle(mut self, after: Duration) -> Self {
        self.idle = Some(after);
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            limits: *self,
        }
    }
}

/// The service [`TimeoutLayer`] makes.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limits: TimeoutLayer,
}

impl TimeoutLayer {
    /// The instant the next item must arrive by, and the error if it does not.
    fn next_deadline(&self, end: Option<Instant>) -> Option<(Instant, Error)> {
        let idle = self
            .idle
            .map(|d| (Instant::now() + d, Error::Idle { after: d }));
        let total = end
            .zip(self.total)
            .map(|(at, d)| (at, Error::Timeout { after: d }));
        match (idle, total) {
            (Some(i), Some(t)) => Some(if i.0 < t.0 { i } else { t }),
            (i, t) => i.or(t),
        }
    }
}

impl<S> Service<QueryRequest> for Timeout<S>
where
    S: Service<QueryRequest, Response = Query, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Query;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Query>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: QueryRequest) -> Self::Future {
        let limits = self.limits;
        let end = limits.total.map(|d| Instant::now() + d);
        let started = self.inner.call(req);
        Box::pin(async move {
            let stream = match limits.next_deadline(end) {
                None => return started.await,
                Some((at, error)) => match tokio::time::timeout_at(at, started).await {
                    Ok(r) => r?,
                    Err(_) => return Err(error),
                },
            };
            let bounded = futures::stream::unfold(Some(stream), move |state| async move {
                let mut stream = state?;
                let next = match limits.next_deadline(end) {
                    None => stream.next().await,
                    Some((at, error)) => match tokio::time::timeout_at(at, stream.next()).await {
                        Ok(next) => next,
                        // Dropping the stream ends the session.
                        Err(_) => return Some((Err(error), None)),
                    },
                };
                next.map(|item| (item, Some(stream)))
            });
            Ok(Query::from_stream(bounded))
        })
    }
}

/// Which start failures [`RetryPolicy`] retries, and how often, with exponential backoff
/// (`base`, `2 × base`, `4 × base`, … capped at 30 s). For tower's [`RetryLayer`](tower::retry::RetryLayer).
///
/// Only a query that failed **before any message streamed** is retried ([`QueryService`](super::QueryService)'s
/// future fails only then; errors after the first message are items of the stream, which a
/// retry layer never sees), so a retry never repeats a side effect of the model's turn. Retried:
/// the CLI exited or could not be spawned, the transport failed, the session closed, a control
/// request (`initialize`) timed out. Not retried: invalid options, no CLI found, refusals, and
/// a streamed prompt (it cannot be replayed).
///
/// ```
/// use std::time::Duration;
/// use claude_conduit::middleware::{QueryService, RetryLayer, RetryPolicy};
/// use tower::ServiceBuilder;
///
/// let service = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryPolicy::new(3).base_delay(Duration::from_millis(200))))
///     .service(QueryService::new());
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    retries: usize,
    base: Duration,
    attempt: u32,
}

impl RetryPolicy {
    /// Up to `retries` retries, starting 100 ms apart.
    pub fn new(retries: usize) -> Self {
        RetryPolicy {
            retries,
            base: Duration::from_millis(100),
            attempt: 0,
        }
    }

    /// The first delay.
    pub fn base_delay(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Whether a start failure is worth another try.
    pub fn is_retryable(error: &Error) -> bool {
        matches!(
            error,
            Error::ProcessExited { .. }
                | Error::Spawn { .. }
                | Error::Transport { .. }
                | Error::Closed
                | Error::ControlTimeout { .. }
        )
    }
}

impl tower::retry::Policy<QueryRequest, Query, Error> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut QueryRequest,
        result: &mut Result<Query>,
    ) -> Option<Self::Future> {
        match result {
            Err(e) if self.retries > 0 && Self::is_retryable(e) => {
                self.retries -= 1;
                let delay = self
                    .base
                    .saturating_mul(1u32 << self.attempt.min(16))
                    .min(Duration::from_secs(30));
                self.attempt += 1;
                tracing::info!(error = %e, ?delay, "query failed before streaming; retrying");
                Some(tokio::time::sleep(delay))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &QueryRequest) -> Option<QueryRequest> {
        req.try_clone()
    }
}

/// At most `n` queries at once. A query holds its slot from the call until its stream ends or
/// is dropped (tower's `ConcurrencyLimit` releases it when the call's future resolves, which
/// for a query is its first message; hence this one). Waiting callers queue fairly.
///
/// ```
/// use claude_conduit::middleware::{ConcurrencyLimitLayer, QueryService};
/// use tower::ServiceBuilder;
///
/// let service = ServiceBuilder::new()
///     .layer(ConcurrencyLimitLayer::new(2))
///     .service(QueryService::new());
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    slots: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// `n` queries at once (at least 1).
    pub fn new(n: usize) -> Self {
        ConcurrencyLimitLayer {
            slots: Arc::new(Semaphore::new(n.max(1))),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;
    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit {
            inner,
            slots: self.slots.clone(),
        }
    }
}

/// The service [`ConcurrencyLimitLayer`] makes.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

impl<S> Service<QueryRequest> for ConcurrencyLimit<S>
where
    S: Service<QueryRequest, Response = Query, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Query;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Query>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        // Readiness is the slot, taken in the call's future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: QueryRequest) -> Self::Future {
        let slots = self.slots.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let slot = slots.acquire_owned().await.map_err(|_| Error::Closed)?;
            let stream = inner.oneshot(req).await?;
            Ok(Query::from_stream(stream.map(move |item| {
                let _held = &slot;
                item
            })))
        })
    }
}
