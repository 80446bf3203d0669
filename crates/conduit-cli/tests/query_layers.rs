//! `conduit query --audit FILE --redact REGEX --timeout SECS --retries N`: the SDK's middleware
//! layers behind the command, with the fast mock CLI (`conduit mock-claude`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("layers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A mock CLI that logs each start and fails (exit 3, nothing on stdout) for the first `fail`.
fn mock(dir: &std::path::Path, fail: usize) -> std::path::PathBuf {
    let path = dir.join("mock-claude.sh");
    let starts = dir.join("starts");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho x >> '{s}'\nif [ \"$(wc -l < '{s}')\" -le {fail} ]; then exit 3; fi\n\
             exec '{CONDUIT}' mock-claude \"$@\"\n",
            s = starts.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn starts(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("starts")).map_or(0, |s| s.lines().count())
}

#[test]
fn audit_file_gets_every_frame_both_ways_with_secrets_redacted() {
    let dir = scratch("audit");
    let audit = dir.join("audit.jsonl");
    let out = Command::new(CONDUIT)
        .args(["query", "my token is tok-12345-SECRET and ghp_abcdef"])
        .arg("--cli")
        .arg(mock(&dir, 0))
        .arg("--audit")
        .arg(&audit)
        .args(["--redact", r"tok-\d+-[A-Z]+", "--redact", "ghp_[a-z]+"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains("SECRET") && !text.contains("ghp_"), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let user = lines
        .iter()
        .find(|l| l["dir"] == "sdk->cli" && l["frame"]["type"] == "user")
        .expect("the prompt is audited");
    assert_eq!(
        user["frame"]["message"]["content"],
        "my token is [REDACTED] and [REDACTED]"
    );
    for (dir, ty) in [
        ("sdk->cli", "control_request"),
        ("cli->sdk", "control_response"),
        ("cli->sdk", "result"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l["dir"] == dir && l["frame"]["type"] == ty),
            "{dir} {ty}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| l["ts"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
}

#[test]
fn retries_restart_a_cli_that_failed_at_start() {
    let dir = scratch("retries");
    let out = Command::new(CONDUIT)
        .args(["query", "hi", "--retries", "2"])
        .arg("--cli")
        .arg(mock(&dir, 2))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(starts(&dir), 3);
    // Without retries the first failure is the end (exit 4).
    let dir = scratch("no-retries");
    let out = Command::new(CONDUIT)
        .args(["query", "hi"])
        .arg("--cli")
        .arg(mock(&dir, 1))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(starts(&dir), 1);
}

#[test]
fn timeout_stops_a_hanging_query_with_exit_code_4() {
    let dir = scratch("timeout");
    let out = Command::new(CONDUIT)
        .args(["query", "hi", "--timeout", "1"])
        .arg("--cli")
        .arg(mock(&dir, 0))
        .env("MOCK_CLAUDE_HANG", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not finish within"));
}
