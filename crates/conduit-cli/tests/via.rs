//! `conduit query --via URL`: the same query through a running `conduit serve` (mock CLI behind
//! it), over WebSocket, server-sent events and gRPC, with the same output as a local run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("via-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An executable that runs `conduit mock-claude` (the fast mock CLI).
fn mock_script(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("mock-claude.sh");
    std::fs::write(
        &path,
        // The knob is in the script: the gateway gives its CLIs an allowlisted environment.
        format!("#!/bin/sh\nMOCK_CLAUDE_MESSAGES=3 exec '{CONDUIT}' mock-claude \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

struct Serve {
    child: Child,
    http: String,
    grpc: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn serve(dir: &std::path::Path) -> Serve {
    std::fs::write(dir.join("tokens"), "via-sekrit-0123456789abcdef\n").unwrap();
    let mut child = Command::new(CONDUIT)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .arg("--cli")
        .arg(mock_script(dir))
        .env_remove("CONDUIT_TOKENS")
        .env("MOCK_CLAUDE_MESSAGES", "3")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn conduit serve");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let after = |marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|r| r.split([' ', ',', '(']).next())
            .unwrap_or_else(|| panic!("no `{marker}` in {line}"))
            .to_owned()
    };
    let (http, grpc) = (after("http://"), after("grpc on "));
    Serve { child, http, grpc }
}

fn query(dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(CONDUIT)
        .args(["query", "--output", "json"])
        .args(extra)
        .arg("hello through the gateway")
        .env("MOCK_CLAUDE_MESSAGES", "3")
        .env_remove("CONDUIT_TOKEN")
        .current_dir(dir)
        .output()
        .expect("run conduit query");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The frame types of JSON-lines output, minus the per-run fields.
fn shape(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON lines");
            format!("{}/{}", v["type"], v["subtype"])
        })
        .collect()
}

#[test]
fn query_via_a_gateway_matches_a_local_run_on_every_transport() {
    let dir = scratch("all");
    let gw = serve(&dir);
    let mock = mock_script(&dir);
    let (code, local, err) = query(&dir, &["--cli", mock.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(local.contains("\"result\""), "{local}");
    let token = dir.join("tokens");
    let token = token.to_str().unwrap();
    for url in [
        format!("ws://{}", gw.http),
        format!("http://{}", gw.http),
        format!("grpc://{}", gw.grpc),
    ] {
        let (code, out, err) = query(&dir, &["--via", &url, "--token-file", token]);
        assert_eq!(code, 0, "{url}: {err}");
        assert_eq!(shape(&out), shape(&local), "{url}");
    }
    // A wrong token is a clear failure, not a hang.
    std::fs::write(dir.join("wrong"), "nope\n").unwrap();
    let wrong = dir.join("wrong");
    let url = format!("ws://{}", gw.http);
    let (code, _, err) = query(
        &dir,
        &["--via", &url, "--token-file", wrong.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("nope"), "the token was printed: {err}");
    // No token at all: a usage error before any connection.
    let (code, _, err) = query(&dir, &["--via", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("token"), "{err}");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
