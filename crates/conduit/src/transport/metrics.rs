//! Counters every transport keeps.
//!
//! Each connection counts in its own atomics (read with [`TransportMetrics::snapshot`]). The
//! process-wide `conduit_transport_*` metrics (the `metrics` facade, see
//! [`crate::telemetry`]) get the differences once per batch: the session's reader calls
//! [`TransportMetrics::publish`] after each read, so the facade costs one atomic add per
//! counter and batch, never one per frame, and nothing when no recorder is installed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::telemetry::TransportCounters;

/// Per-connection counters, shared by the two halves (lock-free).
#[derive(Debug, Default)]
pub struct TransportMetrics {
    connect_nanos: AtomicU64,
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    /// The facade's counters (labelled with the wire) and what they have been given so far.
    published: OnceLock<Published>,
}

#[derive(Debug)]
struct Published {
    counters: TransportCounters,
    /// frames/bytes in, frames/bytes out, errors, reconnects already added to the counters.
    so_far: [AtomicU64; 6],
}

/// The `wire` label of a transport type (a short, closed set).
pub(crate) fn wire_label(type_name: &str) -> &'static str {
    let t = type_name.rsplit("::").next().unwrap_or(type_name);
    match t {
        _ if t.starts_with("Subprocess") => "subprocess",
        _ if t.starts_with("Memory") => "memory",
        _ if t.starts_with("WebSocket") => "ws",
        _ if t.starts_with("Http") => "http",
        _ if t.starts_with("Grpc") => "grpc",
        _ if t.starts_with("Redis") => "redis",
        _ => "other",
    }
}

/// A point-in-time copy of [`TransportMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Time `connect()` took.
    pub connect_time: Duration,
    /// Frames sent.
    pub frames_sent: u64,
    /// Bytes sent, newlines included.
    pub bytes_sent: u64,
    /// Frames received (over-limit frames included).
    pub frames_received: u64,
    /// Bytes received, newlines included (skipped over-limit frames count their size).
    pub bytes_received: u64,
    /// Errors seen (per-frame and transport).
    pub errors: u64,
    /// Reconnects (network transports).
    pub reconnects: u64,
}

impl TransportMetrics {
    /// Record the connect time.
    pub fn set_connect_time(&self, d: Duration) {
        self.connect_nanos
            .store(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
    /// Count one frame sent of `len` bytes (without the newline).
    #[inline]
    pub fn frame_sent(&self, len: usize) {
        self.frames_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(len as u64 + 1, Relaxed);
    }
    /// Count one frame received of `len` bytes (without the newline).
    #[inline]
    pub fn frame_received(&self, len: usize) {
        self.frames_received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(len as u64 + 1, Relaxed);
    }
    /// Count one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }
    /// Count one reconnect.
    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }
    /// Name this connection's `wire` for the process-wide metrics and record its connect time
    /// there (once; later calls do nothing).
    pub fn publish_as(&self, wire: &'static str) {
        let mut first = false;
        let p = self.published.get_or_init(|| {
            first = true;
            Published {
                counters: TransportCounters::new(wire),
                so_far: Default::default(),
            }
        });
        if first {
            p.counters
                .connected(Duration::from_nanos(self.connect_nanos.load(Relaxed)));
        }
    }

    /// Add what was counted since the last call to the process-wide metrics (after
    /// [`publish_as`](Self::publish_as); before it, nothing). Call it once per batch.
    pub fn publish(&self) {
        let Some(p) = self.published.get() else {
            return;
        };
        let now = [
            &self.frames_received,
            &self.bytes_received,
            &self.frames_sent,
            &self.bytes_sent,
            &self.errors,
            &self.reconnects,
        ]
        .map(|a| a.load(Relaxed));
        let mut delta = [0u64; 6];
        for ((d, n), seen) in delta.iter_mut().zip(now).zip(&p.so_far) {
            // One reader publishes: load + store is enough (a racing second caller could only
            // count a difference twice, never lose one).
            let before = seen.load(Relaxed);
            if n > before {
                *d = n - before;
                seen.store(n, Relaxed);
            }
        }
        if delta[0] | delta[1] != 0 {
            p.counters.received(delta[0], delta[1]);
        }
        if delta[2] | delta[3] != 0 {
            p.counters.sent(delta[2], delta[3]);
        }
        for _ in 0..delta[4] {
            p.counters.error();
        }
        for _ in 0..delta[5] {
            p.counters.reconnect();
        }
    }

    /// Read all counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connect_time: Duration::from_nanos(self.connect_nanos.load(Relaxed)),
            frames_sent: self.frames_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            frames_received: self.frames_received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            errors: self.errors.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
        }
    }
}
