//! OpenTelemetry export of the `tracing` spans (feature `otel`): OTLP over HTTP/protobuf or
//! gRPC, configured from the standard `OTEL_*` variables, an in-memory [`SpanStore`] of the
//! last traces, and W3C trace context (`traceparent`) in and out.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let otel = claude_conduit::telemetry::otel::Otel::from_env("my-app")?;
//! tracing_subscriber::registry().with(otel.layer()).init();
//! // … spans of the SDK (and yours) go to OTEL_EXPORTER_OTLP_ENDPOINT …
//! otel.shutdown(); // flush before exit
//! # Ok(()) }
//! ```
//!
//! Variables read: `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (no
//! exporter without one), `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, default, or `grpc`),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, and `OTEL_TRACES_EXPORTER=none` to turn export off.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanId, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Traces the [`SpanStore`] keeps by default.
pub const DEFAULT_STORED_TRACES: usize = 500;

/// Why OpenTelemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The OTLP exporter could not be built (a bad endpoint, protocol or header).
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// The exporter's thread could not start.
    #[error("OTLP exporter thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A tracer provider exporting over OTLP (when configured) and into a [`SpanStore`].
#[derive(Debug, Clone)]
pub struct Otel {
    provider: SdkTracerProvider,
    store: SpanStore,
    exporting: bool,
}

impl Otel {
    /// Set up from the `OTEL_*` variables; `default_service` is the `service.name` unless
    /// `OTEL_SERVICE_NAME` says otherwise. Without an endpoint the spans only go to the store.
    pub fn from_env(default_service: &str) -> Result<Self, OtelError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let off = var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none");
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let export = !off && endpoint.is_some();
        Self::build(default_service, export, DEFAULT_STORED_TRACES)
    }

    /// Spans only to a store of `traces` traces (no export): for tests and dashboards.
    pub fn store_only(service: &str, traces: usize) -> Result<Self, OtelError> {
        Self::build(service, false, traces)
    }

    fn build(default_service: &str, export: bool, traces: usize) -> Result<Self, OtelError> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| default_service.to_owned());
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(service);
        let store = SpanStore::new(traces);
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_simple_exporter(store.clone());
        if export {
            builder = builder.with_batch_exporter(OnItsOwnRuntime::start()?);
        }
        Ok(Self {
            provider: builder.build(),
            store,
            exporting: export,
        })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans of this provider.
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("claude-conduit"))
    }

    /// The in-memory store of the last traces.
    pub fn store(&self) -> &SpanStore {
        &self.store
    }

    /// Whether spans are exported over OTLP (an endpoint was configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Export what is buffered now.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!("OpenTelemetry flush: {e}");
        }
    }

    /// Flush and stop exporting (call before the process exits).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!("OpenTelemetry shutdown: {e}");
        }
    }
}

/// The OTLP exporter (reqwest or tonic, both tokio-based) on a thread with its own runtime, so
/// that the SDK's batch processor (a plain thread) can drive it whatever runtime the
/// application has, or none.
#[derive(Debug)]
struct OnItsOwnRuntime {
    tx: std::sync::mpsc::Sender<ToExporter>,
}

/// What the exporter's thread is asked to do.
#[derive(Debug)]
enum ToExporter {
    Export(
        Vec<SpanData>,
        futures::channel::oneshot::Sender<OTelSdkResult>,
    ),
    Resource(opentelemetry_sdk::Resource),
}

impl OnItsOwnRuntime {
    fn start() -> Result<Self, OtelError> {
        // With `tls`, reqwest is built with rustls but no crypto provider: the process's default
        // must be set before a client is built (ring, as everywhere in the SDK; a provider
        // installed earlier by the application stays).
        #[cfg(feature = "tls")]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut exporter = runtime
            .block_on(async { opentelemetry_otlp::SpanExporter::builder().build() })
            .map_err(|e| OtelError::Exporter(e.to_string()))?;
        let (tx, rx) = std::sync::mpsc::channel::<ToExporter>();
        std::thread::Builder::new()
            .name("conduit-otlp".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        ToExporter::Export(batch, done) => {
                            let result = runtime.block_on(exporter.export(batch));
                            let _ = done.send(result);
                        }
                        ToExporter::Resource(r) => exporter.set_resource(&r),
                    }
                }
                let _ = exporter.shutdown();
            })?;
        Ok(Self { tx })
    }
}

impl SpanExporter for OnItsOwnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let (done, result) = futures::channel::oneshot::channel();
        self.tx
            .send(ToExporter::Export(batch, done))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        result.await.map_err(|_| OTelSdkError::AlreadyShutdown)?
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        let _ = self.tx.send(ToExporter::Resource(resource.clone()));
    }
}

/// One finished span as the [`SpanStore`] keeps it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredSpan {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id (`None` for a root).
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub name: String,
    /// Its attributes, as text.
    pub attributes: Vec<(String, String)>,
    /// When it started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
}

/// The last N traces (default [`DEFAULT_STORED_TRACES`]) of this process's finished spans,
/// oldest dropped first: for the dashboard and for tests.
#[derive(Debug, Clone)]
pub struct SpanStore {
    inner: Arc<Mutex<StoreInner>>,
}

#[derive(Debug)]
struct StoreInner {
    capacity: usize,
    order: VecDeque<String>,
    traces: HashMap<String, Vec<StoredSpan>>,
}

impl SpanStore {
    /// An empty store of at most `traces` traces.
    pub fn new(traces: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(StoreInner {
                capacity: traces.max(1),
                order: VecDeque::new(),
                traces: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The trace ids held, oldest first.
    pub fn trace_ids(&self) -> Vec<String> {
        self.lock().order.iter().cloned().collect()
    }

    /// The spans of one trace, in the order they finished.
    pub fn trace(&self, trace_id: &str) -> Vec<StoredSpan> {
        self.lock()
            .traces
            .get(trace_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every span held.
    pub fn spans(&self) -> Vec<StoredSpan> {
        let st = self.lock();
        st.order
            .iter()
            .filter_map(|t| st.traces.get(t))
            .flatten()
            .cloned()
            .collect()
    }

    fn add(&self, span: StoredSpan) {
        let mut st = self.lock();
        if !st.traces.contains_key(&span.trace_id) {
            st.order.push_back(span.trace_id.clone());
            while st.order.len() > st.capacity {
                if let Some(old) = st.order.pop_front() {
                    st.traces.remove(&old);
                }
            }
        }
        st.traces
            .entry(span.trace_id.clone())
            .or_default()
            .push(span);
    }
}

impl SpanExporter for SpanStore {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        for s in batch {
            let parent =
                (s.parent_span_id != SpanId::INVALID).then(|| s.parent_span_id.to_string());
            self.add(StoredSpan {
                trace_id: s.span_context.trace_id().to_string(),
                span_id: s.span_context.span_id().to_string(),
                parent_span_id: parent,
                name: s.name.into_owned(),
                attributes: s
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                    .collect(),
                start: s.start_time,
                duration: s.end_time.duration_since(s.start_time).unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// The `traceparent` of `span` (W3C trace context), when it belongs to a sampled trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Make the remote span named by `traceparent` the parent of `span`. False when the value is
/// not a valid `traceparent` (then `span` keeps its own parent).
pub fn set_parent(span: &tracing::Span, traceparent: &str) -> bool {
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    let cx = TraceContextPropagator::new().extract(&carrier);
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}
