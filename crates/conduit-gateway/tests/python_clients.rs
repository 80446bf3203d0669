//! Clients written from docs/WIRE.md alone, in Python with each wire's usual library
//! (`tests/python/`: `websockets`, `httpx` with the event stream read by hand, `grpcio` with
//! stubs generated from `proto/conduit.proto` at run time), against the real gateway with
//! `mock-claude` on 127.0.0.1. Each creates a session, sends a frame that is not a JSON object
//! (seq 1) and a user message (seq 2), reads the turn acking every 16 frames through a replay
//! ring of 64 (it stalls without acks), cuts the connection mid-turn, resumes after the last
//! frame it saw, and checks that no frame was lost or repeated, that the bad frame was refused
//! with `bad_frame` and took its number (`in_seq` 2 in the second hello), and that the CLI
//! exited 0 after the end of input.
//!
//! The pinned packages come from `scripts/python-venv.sh` (which `scripts/test.sh` runs first).
//! If that script fails (no Python, no network for the first install), these tests say so and
//! skip; they never skip silently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

mod support;
use support::*;

const MESSAGES: usize = 200;
const DROP_AT: u64 = 40;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python, or why there is none.
fn python() -> &'static Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new(repo().join("scripts/python-venv.sh"))
            .output()
            .map_err(|e| format!("cannot run scripts/python-venv.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/python-venv.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(PathBuf::from(path))
    })
}

/// Run `tests/python/<client>` against a fresh gateway; its one-line JSON summary.
async fn run(client: &str) -> Option<Value> {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED {client}: {why}");
            return None;
        }
    };
    let gw = start(
        config(&[
            ("MOCK_CLAUDE_MESSAGES", &MESSAGES.to_string()),
            ("MOCK_CLAUDE_DELAY_MS", "1"),
        ])
        .replay_frames(64),
    )
    .await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let mut cmd = tokio::process::Command::new(python);
    cmd.current_dir(&dir)
        .arg(dir.join(client))
        .args(["--http", &gw.url()])
        .args(["--grpc", &gw.grpc().to_string()])
        .args(["--token", TOKEN])
        .args(["--messages", &MESSAGES.to_string()])
        .args(["--drop-at", &DROP_AT.to_string()])
        .arg("--proto")
        .arg(repo().join("proto/conduit.proto"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let out = tokio::time::timeout(T, cmd.output())
        .await
        .expect("the client finishes in time")
        .expect("run the client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{client}: {}\n{stderr}", out.status);
    let summary: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    // The gateway's side agrees: every frame was acked (the resume counts as an ack) and the
    // CLI exited 0.
    let sessions = gw.manager.list(claude_conduit_gateway::auth::TokenId(0));
    if let [info] = &sessions[..] {
        assert!(info.ended && info.exit_code == Some(0), "{info:?}");
        assert_eq!(info.last_seq, MESSAGES as u64 + 2, "{info:?}");
    }
    gw.shutdown().await;
    Some(summary)
}

fn assert_scenario(s: &Value) {
    let frames = MESSAGES as u64 + 2; // system init, the assistants, the result
    assert_eq!(s["frames"], frames, "{s}");
    assert_eq!(s["last_seq"], frames, "{s}");
    assert_eq!(s["assistants"], MESSAGES, "{s}");
    assert_eq!(s["refusal"], "bad_frame", "{s}");
    assert_eq!(s["resumed_in_seq"], 2, "{s}");
    assert_eq!(s["end_code"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websockets_client_written_from_the_docs() {
    if let Some(s) = run("ws_client.py").await {
        assert_scenario(&s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httpx_client_written_from_the_docs() {
    if let Some(s) = run("http_client.py").await {
        assert_scenario(&s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_written_from_the_docs() {
    if let Some(s) = run("grpc_client.py").await {
        assert_scenario(&s);
    }
}
