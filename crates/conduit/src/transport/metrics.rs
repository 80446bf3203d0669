//! Counters every transport keeps.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
