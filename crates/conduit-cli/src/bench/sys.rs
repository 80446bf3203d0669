//! What the bench reads from the operating system about its own process: CPU time
//! (`getrusage(RUSAGE_SELF)`) and the resident-set high-water mark (`VmHWM`), plus the medians the
//! report is made of.

use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike;

/// User + system CPU time of this whole process so far (every thread: the bench thread, tokio's
/// workers, the blocking pool). Never the CLI's: a child is counted only once reaped, and only in
/// `RUSAGE_CHILDREN`.
pub fn cpu_time() -> Result<Duration> {
    let u = getrusage(UsageWho::RUSAGE_SELF).context("getrusage(RUSAGE_SELF)")?;
    let micros = u.user_time().num_microseconds() + u.system_time().num_microseconds();
    Ok(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

/// Reset the kernel's resident-set high-water mark of this process to its current RSS
/// (`echo 5 > /proc/self/clear_refs`, Linux 4.0+). Returns false where that is not possible;
/// `VmHWM` then keeps counting from the start of the process.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// This process's resident-set high-water mark in KiB (`VmHWM` of `/proc/self/status`), or
/// `None` where the file does not exist.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::<f64>::new()), 0.0);
    }

    #[test]
    fn cpu_time_moves_forward() -> Result<()> {
        let a = cpu_time()?;
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(cpu_time()? >= a);
        Ok(())
    }

    #[test]
    fn peak_rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_kb().is_some_and(|kb| kb > 0));
        }
    }
}
