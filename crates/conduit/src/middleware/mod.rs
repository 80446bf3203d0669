//! Middleware: a query passes through a stack of tower [`Layer`]s.
//!
//! The innermost service, [`QueryService`], runs a query (over the subprocess or, with
//! [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport), over any network
//! transport: the same session API underneath). It is a
//! `tower::Service<QueryRequest, Response = Query, Error = Error>` whose future resolves when the
//! **first message** has arrived (or the query failed before any message): a start failure is
//! the future's `Err`, and everything after the first message, errors included, is in the
//! stream. That makes "failed before anything streamed" (safe to retry) a type-level fact.
//!
//! Layers see three things:
//!
//! * **before** the query: the [`QueryRequest`] (prompt and options) on its way in, outermost
//!   layer first;
//! * **each message** on its way out, innermost layer first (the reverse order of the stack);
//! * **errors**: a start failure or an error item of the stream; a layer may recover with a
//!   replacement message or let the error continue outward.
//!
//! Write your own with [`Interceptor`] + [`InterceptLayer`], or any tower `Layer` over
//! `Service<QueryRequest, Response = Query, Error = Error>`. Shipped layers:
//!
//! | layer | what |
//! |---|---|
//! | [`TimeoutLayer`] | whole-query deadline and idle gap; wraps the message stream |
//! | [`RetryLayer`] (tower's, with [`RetryPolicy`]) | retries a query that failed before any message streamed, with exponential backoff |
//! | [`ConcurrencyLimitLayer`] | at most N queries at once, each holding its slot until its stream ends |
//! | [`RateLimitLayer`] (tower's) | at most N query starts per period |
//! | [`RedactLayer`] | regex-defined secrets replaced in every frame before the transport, the audit and any sink see it |
//! | [`AuditLayer`] | every frame both ways, control frames included, as JSON Lines to a file, to `tracing`, or to a callback |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> claude_conduit::Result<()> {
//! use std::time::Duration;
//! use claude_conduit::middleware::{ConcurrencyLimitLayer, QueryRequest, QueryService, RetryLayer, RetryPolicy, TimeoutLayer};
//! use claude_conduit::transport::{MemoryTransport, memory::ScriptedCli};
//! use claude_conduit::Options;
//! use futures::StreamExt;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let service = ServiceBuilder::new()
//!     .layer(ConcurrencyLimitLayer::new(4))
//!     .layer(RetryLayer::new(RetryPolicy::new(2)))
//!     .layer(TimeoutLayer::new().total(Duration::from_secs(600)).idle(Duration::from_secs(120)))
//!     // QueryService::new() runs the real CLI; here an in-process scripted one.
//!     .service(QueryService::with_transport(|| {
//!         let (transport, cli) = MemoryTransport::pair(16);
//!         ScriptedCli::default().spawn(cli);
//!         transport
//!     }));
//! let mut stream = service.oneshot(QueryRequest::new("hi", Options::default())).await?;
//! let mut text = String::new();
//! while let Some(msg) = stream.next().await {
//!     if let Some(a) = msg?.as_assistant() {
//!         text.push_str(&a.text());
//!     }
//! }
//! assert_eq!(text, "echo: hi");
//! # Ok(()) }
//! ```

mod audit;
mod layers;
mod redact;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::future::BoxFuture;
use tower::{Layer, Service};

pub use audit::{AuditLayer, AuditSink};
pub use layers::{ConcurrencyLimit, ConcurrencyLimitLayer, RetryPolicy, Timeout, TimeoutLayer};
pub use redact::{RedactLayer, Redactor};
/// tower's rate limit: at most `n` query starts per `period` (`RateLimitLayer::new(n, period)`).
/// Not `Clone`: put it outside layers that clone their inner service (retry, concurrency).
pub use tower::limit::RateLimitLayer;
/// tower's retry layer; give it a [`RetryPolicy`].
pub use tower::retry::RetryLayer;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::options::Options;
use crate::session::{Prompt, Query};
use crate::transport::Transport;

/// A query service behind a box: what a type-erased [`QueryLayer`] wraps and returns.
pub type BoxQueryService = tower::util::BoxCloneSyncService<QueryRequest, Query, Error>;

/// Any query layer behind a box (`QueryLayer::new(layer)` for a layer whose service is
/// `Clone + Send + Sync`): what a plugin contributes
/// ([`Plugin::query_layer`](crate::plugin::Plugin::query_layer)), stacked per query by
/// `PluginManager::layer`.
pub type QueryLayer =
    tower::util::BoxCloneSyncServiceLayer<BoxQueryService, QueryRequest, Query, Error>;

/// What goes into the stack: the prompt and the options of one query.
#[derive(Debug)]
pub struct QueryRequest {
    /// The prompt (one message or a stream of them).
    pub prompt: Prompt,
    /// The session's options.
    pub options: Options,
}

impl QueryRequest {
    /// A request for `prompt` with `options`.
    pub fn new(prompt: impl Into<Prompt>, options: Options) -> Self {
        QueryRequest {
            prompt: prompt.into(),
            options,
        }
    }

    /// A copy, for a retry; `None` for a streamed prompt (it cannot be replayed).
    pub fn try_clone(&self) -> Option<Self> {
        match &self.prompt {
            Prompt::Message(m) => Some(QueryRequest {
                prompt: Prompt::Message(m.clone()),
                options: self.options.clone(),
            }),
            Prompt::Stream(_) => None,
        }
    }
}

type Start = dyn Fn(Prompt, Options) -> Query + Send + Sync;

/// The innermost service: runs the query. Its future resolves with the stream once the first
/// message has arrived, or fails when the query failed before any message.
#[derive(Clone)]
pub struct QueryService {
    start: Arc<Start>,
}

impl std::fmt::Debug for QueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryService").finish_non_exhaustive()
    }
}

impl Default for QueryService {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryService {
    /// Queries as [`query`](crate::query) runs them (subprocess, or the gateway the options
    /// name).
    pub fn new() -> Self {
        // `query` takes `impl Into<Prompt>`: it is no function pointer of this type.
        #[allow(clippy::redundant_closure)]
        QueryService {
            start: Arc::new(|prompt, options| crate::query(prompt, options)),
        }
    }

    /// Queries over a transport `make` gives for each query.
    pub fn with_transport<T: Transport>(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        QueryService {
            start: Arc::new(move |prompt, options| {
                crate::query_with_transport(prompt, options, make())
            }),
        }
    }
}

impl Service<QueryRequest> for QueryService {
    type Response = Query;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Query>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: QueryRequest) -> Self::Future {
        let mut query = (self.start)(req.prompt, req.options);
        Box::pin(async move {
            match query.next().await {
                None => Ok(Query::from_stream(futures::stream::empty())),
                Some(Err(e)) => Err(e),
                Some(Ok(first)) => Ok(Query::from_stream(
                    futures::stream::once(async move { Ok(first) }).chain(query),
                )),
            }
        })
    }
}

/// The three points a layer acts at; every method has a pass-through default.
///
/// ```
/// use claude_conduit::middleware::{Interceptor, InterceptLayer, QueryRequest};
/// use claude_conduit::{Error, Message, Result};
///
/// struct Tag;
/// impl Interceptor for Tag {
///     fn before(&self, mut req: QueryRequest) -> Result<QueryRequest> {
///         req.options = req.options.to_builder().max_turns(3).build();
///         Ok(req)
///     }
///     fn on_error(&self, error: Error) -> Result<Message> {
///         tracing::warn!(%error, "query failed");
///         Err(error)
///     }
/// }
/// let layer = InterceptLayer::new(Tag);
/// # let _ = layer;
/// ```
pub trait Interceptor: Send + Sync + 'static {
    /// Rewrite the request on its way in (outermost layer first). An error here goes outward
    /// without reaching the inner layers.
    fn before(&self, request: QueryRequest) -> Result<QueryRequest> {
        Ok(request)
    }

    /// Each message on its way out (innermost layer first).
    fn after(&self, message: Message) -> Message {
        message
    }

    /// An error from inside (a start failure, or an error item of the stream): return a
    /// replacement message to recover, or the error to pass it outward. A replaced start
    /// failure becomes a stream of that one message.
    fn on_error(&self, error: Error) -> Result<Message> {
        Err(error)
    }
}

/// A tower layer running an [`Interceptor`].
#[derive(Debug)]
pub struct InterceptLayer<I> {
    interceptor: Arc<I>,
}

impl<I> Clone for InterceptLayer<I> {
    fn clone(&self) -> Self {
        InterceptLayer {
            interceptor: self.interceptor.clone(),
        }
    }
}

impl<I: Interceptor> InterceptLayer<I> {
    /// A layer running `interceptor`.
    pub fn new(interceptor: I) -> Self {
        InterceptLayer {
            interceptor: Arc::new(interceptor),
        }
    }
}

impl<S, I> Layer<S> for InterceptLayer<I> {
    type Service = Intercept<S, I>;
    fn layer(&self, inner: S) -> Self::Service {
        Intercept {
            inner,
            interceptor: self.interceptor.clone(),
        }
    }
}

/// The service [`InterceptLayer`] makes.
#[derive(Debug)]
pub struct Intercept<S, I> {
    inner: S,
    interceptor: Arc<I>,
}

impl<S: Clone, I> Clone for Intercept<S, I> {
    fn clone(&self) -> Self {
        Intercept {
            inner: self.inner.clone(),
            interceptor: self.interceptor.clone(),
        }
    }
}

impl<S, I> Service<QueryRequest> for Intercept<S, I>
where
    S: Service<QueryRequest, Response = Query, Error = Error>,
    S::Future: Send + 'static,
    I: Interceptor,
{
    type Response = Query;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Query>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: QueryRequest) -> Self::Future {
        let interceptor = self.interceptor.clone();
        let req = match interceptor.before(req) {
            Ok(req) => req,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let started = self.inner.call(req);
        Box::pin(async move {
            match started.await {
                Ok(stream) => Ok(Query::from_stream(stream.map(move |item| match item {
                    Ok(m) => Ok(interceptor.after(m)),
                    Err(e) => interceptor.on_error(e),
                }))),
                Err(e) => interceptor
                    .on_error(e)
                    .map(|m| Query::from_stream(futures::stream::once(async move { Ok(m) }))),
            }
        })
    }
}

/// An [`Interceptor`] that only changes each query's options (what the frame-level layers,
/// audit and redaction, do).
///
/// ```
/// use claude_conduit::middleware::{InterceptLayer, MapOptions};
///
/// let layer = InterceptLayer::new(MapOptions::new(|o| o.to_builder().max_turns(3).build()));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct MapOptions(Arc<dyn Fn(Options) -> Options + Send + Sync>);

impl MapOptions {
    /// Change the options with `f`.
    pub fn new(f: impl Fn(Options) -> Options + Send + Sync + 'static) -> Self {
        MapOptions(Arc::new(f))
    }
}

impl std::fmt::Debug for MapOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MapOptions(..)")
    }
}

impl Interceptor for MapOptions {
    fn before(&self, mut request: QueryRequest) -> Result<QueryRequest> {
        request.options = (self.0)(request.options);
        Ok(request)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
