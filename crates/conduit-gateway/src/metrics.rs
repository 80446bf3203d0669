//! The gateway's metrics (names in [`claude_conduit::telemetry::names`], list in
//! `docs/OBSERVABILITY.md`): the recorder it installs, `GET /metrics`, and the small handles
//! the session manager and the fronts update — once per batch of frames, never per frame on
//! the CLI → client path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use claude_conduit::telemetry::{CollectorConfig, Telemetry, names};
use metrics::{Counter, counter, gauge, histogram};

use crate::config::GatewayConfig;
use crate::front::AppState;

/// Install the process's recorder (collector + Prometheus) unless metrics are off or the
/// process installed one already; add the configured alert rules and start the snapshots.
/// `None` when metrics are off or another recorder is installed (then `/metrics` is absent).
pub(crate) fn install(config: &GatewayConfig) -> Option<&'static Telemetry> {
    if !config.metrics.enabled {
        return None;
    }
    let collector = CollectorConfig::default().interval(config.metrics.interval);
    match Telemetry::builder()
        .collector(collector)
        .prometheus()
        .install()
    {
        Ok(t) => {
            if let Some(c) = t.collector() {
                for rule in &config.metrics.alerts {
                    c.add_rule(rule.clone());
                }
            }
            Some(t)
        }
        Err(e) => {
            tracing::warn!("metrics off: {e}");
            None
        }
    }
}

/// Start the collector's snapshots (alerts are evaluated at each one). Once per process.
pub(crate) fn start(telemetry: &'static Telemetry) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    if let Some(c) = telemetry.collector() {
        STARTED.call_once(|| {
            if let Err(e) = c.spawn_thread() {
                tracing::warn!("metric snapshots and alerts off: {e}");
            }
        });
    }
}

/// `GET /metrics`: the Prometheus text exposition (version 0.0.4).
pub(crate) async fn exposition(State(state): State<AppState>) -> Response {
    match state.telemetry.and_then(Telemetry::render_prometheus) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A span for one request, child of the caller's span when the request carries a valid W3C
/// `traceparent` (feature `otel`; without it the value is ignored).
pub(crate) fn request_span(name: &'static str, traceparent: Option<&[u8]>) -> tracing::Span {
    let span = tracing::info_span!("gateway.request", otel.name = name);
    #[cfg(feature = "otel")]
    if let Some(tp) = traceparent.and_then(|v| std::str::from_utf8(v).ok()) {
        claude_conduit::telemetry::otel::set_parent(&span, tp);
    }
    #[cfg(not(feature = "otel"))]
    let _ = traceparent;
    span
}

/// One connection's counters, labelled with its front (`ws`, `http`, `grpc`), plus the
/// session's own totals for its end-of-session log line.
pub(crate) struct FrontCounters {
    frames_out: Counter,
    bytes_out: Counter,
    frames_in: Counter,
    bytes_in: Counter,
}

impl FrontCounters {
    pub(crate) fn new(front: &'static str) -> Self {
        Self {
            frames_out: counter!(names::GATEWAY_FRAMES, "direction" => "out", "front" => front),
            bytes_out: counter!(names::GATEWAY_BYTES, "direction" => "out", "front" => front),
            frames_in: counter!(names::GATEWAY_FRAMES, "direction" => "in", "front" => front),
            bytes_in: counter!(names::GATEWAY_BYTES, "direction" => "in", "front" => front),
        }
    }
    /// A batch of CLI frames sent to the client.
    pub(crate) fn sent<F>(&self, live: &LiveSession, taken: &crate::session::Taken<F>) {
        let (n, bytes) = (taken.frames as u64, taken.bytes as u64);
        self.frames_out.increment(n);
        self.bytes_out.increment(bytes);
        live.frames_out.fetch_add(n, Relaxed);
        live.bytes_out.fetch_add(bytes, Relaxed);
    }
    /// One client frame passed to the session.
    pub(crate) fn received(&self, live: &LiveSession, len: usize) {
        self.frames_in.increment(1);
        self.bytes_in.increment(len as u64);
        live.frames_in.fetch_add(1, Relaxed);
        live.bytes_in.fetch_add(len as u64, Relaxed);
    }
}

/// A client frame refused (`frame_too_large`, `policy`, `bad_frame`, `gap`, …).
pub(crate) fn refused(kind: &'static str) {
    counter!(names::GATEWAY_REFUSALS, "kind" => kind).increment(1);
}

/// A request without a valid token.
pub(crate) fn auth_failed(front: &'static str) {
    counter!(names::GATEWAY_AUTH_FAILURES, "front" => front).increment(1);
}

/// A session's life in figures: counted in the gauge while it exists, logged once when it goes.
#[derive(Debug)]
pub(crate) struct LiveSession {
    id: String,
    started: Instant,
    pub(crate) turns: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
}

impl LiveSession {
    pub(crate) fn new(id: String) -> Self {
        counter!(names::GATEWAY_SESSIONS_CREATED).increment(1);
        gauge!(names::GATEWAY_SESSIONS).increment(1.0);
        Self {
            id,
            started: Instant::now(),
            turns: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        }
    }
    /// A `result` frame went by.
    pub(crate) fn turn(&self) {
        self.turns.fetch_add(1, Relaxed);
        counter!(names::GATEWAY_TURNS).increment(1);
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        gauge!(names::GATEWAY_SESSIONS).decrement(1.0);
        counter!(names::GATEWAY_SESSIONS_ENDED).increment(1);
        histogram!(names::GATEWAY_SESSION_DURATION).record(secs);
        tracing::info!(
            session = %self.id,
            duration_secs = secs,
            turns = self.turns.load(Relaxed),
            frames_out = self.frames_out.load(Relaxed),
            bytes_out = self.bytes_out.load(Relaxed),
            frames_in = self.frames_in.load(Relaxed),
            bytes_in = self.bytes_in.load(Relaxed),
            "session ended"
        );
    }
}
