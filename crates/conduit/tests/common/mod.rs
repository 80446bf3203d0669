//! Shared helpers for integration tests (the real-CLI harness is `claude_conduit_suite`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// True if any live process has `needle` in its command line.
pub fn process_with_cmdline(needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok()).any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                let s = String::from_utf8_lossy(&c).replace('\0', " ");
                s.contains(needle) && !s.contains("cargo") && !s.contains("process_with_cmdline")
            })
            .unwrap_or(false)
    })
}

/// True while any process is in process group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), None).is_ok()
}
