//! Telemetry: metrics through the [`metrics`] facade, a collector with bounded history,
//! percentiles and alerts, the Prometheus exposition, and OpenTelemetry export of `tracing`
//! spans.
//!
//! # Metrics
//!
//! Every layer records through the `metrics` facade. Until a recorder is installed the handles
//! are no-ops (a branch on an empty `Option`), so an application that does not want metrics
//! pays nothing. Install one recorder per process with [`Telemetry::builder`]:
//!
//! * [`MetricsCollector`] (feature `collector`): snapshots on an interval into a bounded
//!   history, p50/p95/p99 of every histogram, [alert rules](AlertRule) with async callbacks and
//!   an [`Event::Alert`](crate::events::Event::Alert) on attached event buses;
//! * the Prometheus text exposition (feature `prometheus`), rendered by
//!   [`Telemetry::render_prometheus`] (the gateway serves it at `GET /metrics`).
//!
//! Hot paths count **per batch**: a transport adds the frames and bytes of one read (or one
//! write batch) with one atomic add per counter, never one per frame.
//!
//! Label cardinality is bounded: no session id, token or path is ever a label. The labels are
//! small closed sets (`wire`, `direction`, `front`, `outcome`, `kind`) except `tool`, which is
//! bounded by [`tool_label`]: the first [`MAX_TOOL_LABELS`] distinct tool names of the process
//! keep their name, later ones are counted as `other`; the event bus's `owner` the same way
//! ([`owner_label`]); and a worker's `worker` (its name: one value per worker process).
//!
//! The metric names, types and labels are listed in `docs/OBSERVABILITY.md` and in [`names`].

mod handles;
pub mod names;
pub mod process;

#[cfg(feature = "collector")]
mod alert;
#[cfg(feature = "collector")]
mod collector;
#[cfg(feature = "collector")]
mod install;
#[cfg(feature = "otel")]
pub mod otel;

pub use handles::{
    CallbackKind, MAX_TOOL_LABELS, SessionCounters, TransportCounters, callback, owner_label,
    permission_decision, tool_call, tool_label,
};
pub(crate) use handles::{HandlerCounters, HandlerOutcome};

#[cfg(feature = "collector")]
pub use alert::{AlertEvent, AlertRule, AlertState, Comparison, Stat};
#[cfg(feature = "collector")]
pub use collector::{
    CollectorConfig, CollectorRecorder, HistogramSummary, MetricId, MetricValue, MetricsCollector,
    Snapshot,
};
#[cfg(feature = "collector")]
pub use install::{InstallError, Telemetry, TelemetryBuilder};

/// The HTTP header (and gRPC metadata key) of W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The `traceparent` of the current `tracing` span (feature `otel`; `None` without it, or
/// outside a sampled trace). The network transports send it with every request that opens or
/// reopens a session, so the gateway's spans join the caller's trace.
pub fn traceparent() -> Option<String> {
    #[cfg(feature = "otel")]
    {
        otel::traceparent_of(&tracing::Span::current())
    }
    #[cfg(not(feature = "otel"))]
    {
        None
    }
}

#[cfg(all(test, feature = "collector"))]
mod tests;
