//! Shared by the `conduit` binary's tests: scratch directories, the mock CLI as an executable,
//! and a running `conduit serve` (its addresses read from its first stderr line).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

pub const CONDUIT: &str = env!("CARGO_BIN_EXE_conduit");

/// A fresh directory under cargo's scratch space, named after the test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An executable that runs `conduit mock-claude` (the fast mock CLI).
pub fn mock_script(dir: &Path) -> PathBuf {
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

/// A `conduit serve` child process, stopped with SIGTERM when dropped.
pub struct Serve {
    pub child: Child,
    /// The rest of its stderr, after the listening line.
    pub stderr: Option<BufReader<ChildStderr>>,
    /// The first stderr line.
    pub line: String,
    /// `host:port` of HTTP/WebSocket.
    pub http: String,
    /// `host:port` of gRPC, when it serves gRPC.
    pub grpc: Option<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Read stderr lines until one contains `needle` (or stderr ends); returns the lines read.
    /// Bounded by the child's lifetime: stop it to end the read.
    pub fn read_until(&mut self, needle: &str) -> String {
        let mut seen = String::new();
        let Some(stderr) = self.stderr.as_mut() else {
            return seen;
        };
        let mut line = String::new();
        loop {
            line.clear();
            match stderr.read_line(&mut line) {
                Ok(0) | Err(_) => return seen,
                Ok(_) => {
                    seen.push_str(&line);
                    if line.contains(needle) {
                        return seen;
                    }
                }
            }
        }
    }

    /// Stop it (SIGTERM) and return the rest of its stderr.
    pub fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut rest = String::new();
        if let Some(mut s) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut rest);
        }
        rest
    }
}

/// Start `conduit serve` on free loopback ports with the mock CLI, the token `sekrit-token-0123456789abcdef` in
/// `dir/tokens`, and `extra` arguments; `env` is set on top of the inherited environment.
pub fn serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    std::fs::write(dir.join("tokens"), "sekrit-token-0123456789abcdef\n").unwrap();
    let mut cmd = Command::new(CONDUIT);
    cmd.args([
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
    .args(extra)
    .env_remove("CONDUIT_TOKENS")
    .env_remove("RUST_LOG")
    .env_remove("CONDUIT_LOG")
    .env("MOCK_CLAUDE_MESSAGES", "3")
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn conduit serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let after = |marker: &str| {
        line.split(marker)
            .nth(1)
            .and_then(|r| r.split([' ', ',', '(']).next())
            .map(str::to_owned)
    };
    let http = after("://").unwrap_or_else(|| panic!("no address in {line}"));
    let grpc = after("grpc on ");
    Serve {
        child,
        stderr: Some(stderr),
        line,
        http,
        grpc,
    }
}

/// `conduit query --output json … PROMPT` through a gateway, with the token file `token`.
pub fn query_via(dir: &Path, url: &str, token: &Path, extra: &[&str]) -> Output {
    Command::new(CONDUIT)
        .args(["query", "--output", "json", "--via", url])
        .arg("--token-file")
        .arg(token)
        .args(extra)
        .arg("hello through the gateway")
        .env("MOCK_CLAUDE_MESSAGES", "3")
        .env_remove("CONDUIT_TOKEN")
        .current_dir(dir)
        .output()
        .expect("run conduit query")
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
