//! Resident memory and CPU time of this process and of its child processes (the CLIs it
//! runs), read from `/proc` (Linux; elsewhere [`sample`] returns `None`).

/// Resource use of one process or of a group of them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Usage {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU time (user + system), seconds.
    pub cpu_seconds: f64,
}

/// This process and its direct children.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ProcessSample {
    /// This process.
    pub this: Usage,
    /// Its live direct children, summed (no per-pid series: pids are unbounded).
    pub children: Usage,
    /// How many direct children are alive.
    pub child_count: u64,
}

/// `/proc/<pid>/stat` reports CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100
/// for user space.
const USER_HZ: f64 = 100.0;

fn usage_of(pid: &str) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Usage {
        rss_bytes: rss_kb * 1024,
        cpu_seconds: (ticks(11) + ticks(12)) as f64 / USER_HZ,
    })
}

/// Read this process's and its children's resource use.
pub fn sample() -> Option<ProcessSample> {
    let this = usage_of("self")?;
    let mut out = ProcessSample {
        this,
        ..ProcessSample::default()
    };
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children.split_whitespace() {
            if let Some(u) = usage_of(pid) {
                out.children.rss_bytes += u.rss_bytes;
                out.children.cpu_seconds += u.cpu_seconds;
                out.child_count += 1;
            }
        }
    }
    Some(out)
}

/// Sample and set the `conduit_process_*` gauges.
pub fn record() {
    use super::names;
    let Some(s) = sample() else { return };
    metrics::gauge!(names::PROCESS_RSS, "process" => "self").set(s.this.rss_bytes as f64);
    metrics::gauge!(names::PROCESS_CPU, "process" => "self").set(s.this.cpu_seconds);
    metrics::gauge!(names::PROCESS_RSS, "process" => "children").set(s.children.rss_bytes as f64);
    metrics::gauge!(names::PROCESS_CPU, "process" => "children").set(s.children.cpu_seconds);
    metrics::gauge!(names::PROCESS_CHILDREN).set(s.child_count as f64);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn this_process_has_memory_and_a_child_is_seen() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let s = super::sample().unwrap();
        assert!(s.this.rss_bytes > 1024 * 1024, "{s:?}");
        assert!(s.child_count >= 1, "{s:?}");
        assert!(s.children.rss_bytes > 0, "{s:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
