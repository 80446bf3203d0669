//! The log line of a failed authentication: a warning naming the front (never the token), at
//! most one a second, with the number of failures not logged since the previous line, so that an
//! outsider's flood of bad requests costs a counter increment each, not a log write.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Second (since the first call) of the last line written; `u64::MAX` before the first.
static LAST: AtomicU64 = AtomicU64::new(u64::MAX);
/// Failures not logged since the last line.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Record a request that presented no valid bearer token on `front` (`http`, `grpc`).
pub(crate) fn auth_failed(front: &'static str) {
    crate::metrics::auth_failed(front);
    static START: OnceLock<Instant> = OnceLock::new();
    let now = START.get_or_init(Instant::now).elapsed().as_secs();
    let last = LAST.load(Ordering::Relaxed);
    let due = last == u64::MAX || now > last;
    if due
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let not_logged = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            front,
            not_logged,
            "authentication failed: missing or invalid bearer token"
        );
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}
