//! Turning rounds into figures: a small table per workload, or one JSON object (`--json`).
//!
//! Every figure is the median over the measured rounds of one side; a ratio is the ratio of the
//! two sides' medians. Peak RSS is the largest over the SDK's rounds.

use serde_json::json;

use super::sys::median;
use super::{FirehoseArgs, PingpongArgs, Sample, StartupArgs, Target};

/// Firehose targets: of the floor's msgs/s for small frames, of its MB/s for >= 1 MB frames.
const FIREHOSE_MSGS_TARGET: f64 = 0.45;
const FIREHOSE_MB_TARGET: f64 = 0.6;
/// Frames at least this large are judged on MB/s.
const LARGE_FRAME: u64 = 1_000_000;
/// Peak RSS target, for the 100k x 200 B firehose.
const RSS_TARGET_KB: u64 = 16_000;
const PINGPONG_TIME_TARGET: f64 = 1.5;
const PINGPONG_CPU_TARGET: f64 = 2.0;
const STARTUP_TARGET_US: f64 = 1000.0;

fn secs(s: &Sample) -> f64 {
    s.elapsed.as_secs_f64().max(1e-9)
}

fn round_to(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn peak(samples: &[Sample]) -> Option<u64> {
    samples.iter().filter_map(|s| s.peak_rss_kb).max()
}

/// `met` / `MISSED by X`.
fn verdict(ok: bool, by: String) -> String {
    if ok {
        "met".into()
    } else {
        format!("MISSED by {by}")
    }
}

/// 1234567.8 -> "1,234,568".
fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Rates {
    msgs: f64,
    mb: f64,
    ms: f64,
    cpu_ms: f64,
}

fn rates(samples: &[Sample]) -> Rates {
    Rates {
        msgs: median(samples.iter().map(|s| s.items as f64 / secs(s))),
        mb: median(samples.iter().map(|s| s.bytes as f64 / secs(s) / 1e6)),
        ms: median(samples.iter().map(|s| s.elapsed.as_secs_f64() * 1e3)),
        cpu_ms: median(samples.iter().map(|s| s.cpu.as_secs_f64() * 1e3)),
    }
}

pub fn firehose(a: &FirehoseArgs, target: &Target, floor: &[Sample], sdk: &[Sample]) {
    let (f, s) = (rates(floor), rates(sdk));
    let large = a.bytes >= LARGE_FRAME;
    // With equal counts on both sides (checked per round) the two ratios differ only by noise;
    // the reported one is the one the target is set on.
    let ratio = if large { s.mb / f.mb } else { s.msgs / f.msgs };
    let target_ratio = if large {
        FIREHOSE_MB_TARGET
    } else {
        FIREHOSE_MSGS_TARGET
    };
    let rss = peak(sdk);
    if a.common.json {
        println!(
            "{}",
            json!({
                "workload": "firehose",
                "messages": a.messages,
                "bytes": a.bytes,
                "msgs_per_s": s.msgs.round(),
                "mb_per_s": round_to(s.mb, 1),
                "floor_msgs_per_s": f.msgs.round(),
                "floor_mb_per_s": round_to(f.mb, 1),
                "ratio": round_to(ratio, 3),
                "peak_rss_kb": rss,
            })
        );
        return;
    }
    let per_round = sdk.first().map(|x| (x.items, x.bytes)).unwrap_or_default();
    println!(
        "firehose: 1 user message -> {} assistant frames x {} B text ({} messages, {:.1} MB per \
         round)",
        a.messages,
        a.bytes,
        per_round.0,
        per_round.1 as f64 / 1e6
    );
    header(&a.common, target, floor.len());
    println!(
        "  {:<6} {:>12} {:>10} {:>12} {:>14}",
        "side", "msgs/s", "MB/s", "ms/round", "CPU ms/round"
    );
    for (name, r) in [("floor", &f), ("sdk", &s)] {
        println!(
            "  {:<6} {:>12} {:>10.1} {:>12.2} {:>14.2}",
            name,
            thousands(r.msgs),
            r.mb,
            r.ms,
            r.cpu_ms
        );
    }
    println!(
        "  sdk/floor {}: {:.3} (target >= {}: {})",
        if large { "MB/s" } else { "msgs/s" },
        ratio,
        target_ratio,
        verdict(
            ratio >= target_ratio,
            format!("{:.3}", target_ratio - ratio)
        )
    );
    print_rss(rss, a.messages == 100_000 && a.bytes == 200);
}

pub fn pingpong(a: &PingpongArgs, target: &Target, floor: &[Sample], sdk: &[Sample]) {
    let k = a.turns as f64;
    let us = |v: &[Sample]| median(v.iter().map(|s| s.elapsed.as_secs_f64() * 1e6 / k));
    let cpu = |v: &[Sample]| median(v.iter().map(|s| s.cpu.as_secs_f64() * 1e6 / k));
    let (f_us, s_us, f_cpu, s_cpu) = (us(floor), us(sdk), cpu(floor), cpu(sdk));
    let ratio = s_us / f_us.max(1e-9);
    let cpu_ratio = s_cpu / f_cpu.max(1e-9);
    let rss = peak(sdk);
    if a.common.json {
        println!(
            "{}",
            json!({
                "workload": "pingpong",
                "turns": a.turns,
                "us_per_turn": round_to(s_us, 2),
                "floor_us_per_turn": round_to(f_us, 2),
                "ratio": round_to(ratio, 3),
                "cpu_us_per_turn": round_to(s_cpu, 2),
                "floor_cpu_us_per_turn": round_to(f_cpu, 2),
                "peak_rss_kb": rss,
            })
        );
        return;
    }
    let per_turn = sdk.first().map_or(0, |x| x.items / a.turns.max(1));
    println!(
        "pingpong: {} turns on one session, 1 assistant frame x {} B text per turn ({} messages \
         per turn)",
        a.turns, a.bytes, per_turn
    );
    header(&a.common, target, floor.len());
    println!("  {:<6} {:>12} {:>14}", "side", "us/turn", "CPU us/turn");
    for (name, t, c) in [("floor", f_us, f_cpu), ("sdk", s_us, s_cpu)] {
        println!("  {name:<6} {t:>12.2} {c:>14.2}");
    }
    println!(
        "  sdk/floor time: {:.3}x (target <= {}x: {})",
        ratio,
        PINGPONG_TIME_TARGET,
        verdict(
            ratio <= PINGPONG_TIME_TARGET,
            format!("{:.3}x", ratio - PINGPONG_TIME_TARGET)
        )
    );
    println!(
        "  sdk/floor CPU:  {:.3}x (target <= {}x: {})",
        cpu_ratio,
        PINGPONG_CPU_TARGET,
        verdict(
            cpu_ratio <= PINGPONG_CPU_TARGET,
            format!("{:.3}x", cpu_ratio - PINGPONG_CPU_TARGET)
        )
    );
    print_rss(rss, false);
}

pub fn startup(a: &StartupArgs, target: &Target, floor: &[Sample], sdk: &[Sample]) {
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    let f_total = median(floor.iter().map(|s| us(s.elapsed)));
    let s_total = median(sdk.iter().map(|s| us(s.elapsed)));
    let f_spawn = median(floor.iter().map(|s| us(s.spawn)));
    let s_spawn = median(sdk.iter().map(|s| us(s.spawn)));
    // The overhead: median of the per-round differences (rounds alternate, so each pair saw
    // the machine in about the same state).
    let overhead = median(
        floor
            .iter()
            .zip(sdk)
            .map(|(f, s)| us(s.elapsed) - us(f.elapsed)),
    );
    if a.common.json {
        println!(
            "{}",
            json!({
                "workload": "startup",
                "rounds": floor.len(),
                "us": round_to(s_total, 1),
                "floor_us": round_to(f_total, 1),
                "overhead_us": round_to(overhead, 1),
                "spawn_us": round_to(s_spawn, 1),
                "floor_spawn_us": round_to(f_spawn, 1),
            })
        );
        return;
    }
    println!("startup: spawn + initialize request + its reply");
    header(&a.common, target, floor.len());
    println!(
        "  {:<6} {:>12} {:>12} {:>16}",
        "side", "total us", "spawn us", "initialize us"
    );
    for (name, t, sp) in [("floor", f_total, f_spawn), ("sdk", s_total, s_spawn)] {
        println!("  {name:<6} {t:>12.1} {sp:>12.1} {:>16.1}", t - sp);
    }
    println!(
        "  SDK overhead (median of per-round differences): {:.1} us (target <= {} us: {})",
        overhead,
        STARTUP_TARGET_US,
        verdict(
            overhead <= STARTUP_TARGET_US,
            format!("{:.1} us", overhead - STARTUP_TARGET_US)
        )
    );
}

fn header(common: &super::Common, target: &Target, rounds: usize) {
    println!(
        "  cli: {}; {} rounds per side after {} warm-up, medians; SDK on tokio {}",
        target.describe(),
        rounds,
        common.warmup,
        common.runtime.name()
    );
}

fn print_rss(rss: Option<u64>, has_target: bool) {
    let Some(kb) = rss else {
        println!("  peak RSS: unknown (no /proc/self/status)");
        return;
    };
    let tail = if has_target {
        format!(
            " (target <= {} MB: {})",
            RSS_TARGET_KB / 1000,
            verdict(
                kb <= RSS_TARGET_KB,
                format!("{} kB", kb.saturating_sub(RSS_TARGET_KB))
            )
        )
    } else {
        String::new()
    };
    println!("  peak RSS of the bench process, SDK rounds: {kb} kB{tail}");
}
