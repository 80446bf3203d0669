//! `conduit query --stats`: the session's metrics as a short table.

use claude_conduit::telemetry::{Snapshot, names};

/// The table, one metric per line (labels of per-kind metrics on the same line).
pub fn table(s: &Snapshot) -> String {
    let mut out = String::from("\n-- stats --\n");
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<18} {v}\n"));
    let n = |name: &str, labels: &[(&str, &str)]| s.sum(name, labels).unwrap_or(0.0);
    line("turns", format!("{}", n(names::TURNS, &[])));
    if let Some(h) = s.histogram(names::TURN_LATENCY, &[]) {
        line(
            "turn latency",
            format!(
                "p50 {:.3}s  p95 {:.3}s  p99 {:.3}s  max {:.3}s",
                h.p50, h.p95, h.p99, h.max
            ),
        );
    }
    if let Some(h) = s.histogram(names::FIRST_MESSAGE, &[]) {
        line(
            "first message",
            format!("p50 {:.3}s  p95 {:.3}s", h.p50, h.p95),
        );
    }
    let per = |name: &str, label: &str| -> String {
        let parts: Vec<String> = s
            .series(name)
            .filter_map(|(id, v)| {
                let l = id.labels.iter().find(|(k, _)| k == label)?;
                Some(format!("{} {}", l.1, v.as_f64()))
            })
            .collect();
        if parts.is_empty() {
            "0".into()
        } else {
            parts.join(", ")
        }
    };
    line("tool calls", per(names::TOOL_CALLS, "tool"));
    line("permissions", per(names::PERMISSION_DECISIONS, "outcome"));
    line(
        "frames in/out",
        format!(
            "{} / {}",
            n(names::TRANSPORT_FRAMES, &[("direction", "in")]),
            n(names::TRANSPORT_FRAMES, &[("direction", "out")])
        ),
    );
    line(
        "bytes in/out",
        format!(
            "{} / {}",
            n(names::TRANSPORT_BYTES, &[("direction", "in")]),
            n(names::TRANSPORT_BYTES, &[("direction", "out")])
        ),
    );
    line("tokens", per(names::TOKENS, "kind"));
    let cost = s.histogram(names::TURN_COST, &[]).map_or(0.0, |h| h.sum);
    line("cost", format!("${cost:.6}"));
    out
}
