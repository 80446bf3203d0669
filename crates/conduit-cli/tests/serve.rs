//! `conduit serve`, run as a user would: tokens from the environment, /health, 401, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn get(addr: &str, path: &str, token: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn serve_needs_tokens_answers_health_and_stops_on_sigterm() {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("CONDUIT_TOKENS")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tokens"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CONDUIT_TOKENS", "sekrit-1,sekrit-2")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listening line")
        .to_owned();
    assert!(!line.contains("sekrit"), "a token was printed: {line}");
    assert_eq!(get(&addr, "/health", None), 200);
    assert_eq!(get(&addr, "/v1/sessions", None), 401);
    assert_eq!(get(&addr, "/v1/sessions", Some("nope")), 401);
    assert_eq!(get(&addr, "/v1/sessions", Some("sekrit-2")), 200);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(!rest.contains("sekrit"), "a token was logged: {rest}");
}

/// A fresh directory under cargo's scratch space for integration tests.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn serve_reads_listen_and_tokens_from_a_config_file() {
    let dir = scratch("config");
    std::fs::write(dir.join("tokens.txt"), "# tokens\nfile-sekrit\n").unwrap();
    // A relative token_file is relative to the config file's directory.
    std::fs::write(
        dir.join("gateway.toml"),
        "listen = \"127.0.0.1:0\"\ntoken_file = \"tokens.txt\"\ngrace_secs = 5\n\n\
         [policy]\npermission_modes = [\"plan\"]\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--config"])
        .arg(dir.join("gateway.toml"))
        .env_remove("CONDUIT_TOKENS")
        .env_remove("CONDUIT_LISTEN")
        .env_remove("CONDUIT_TOKEN_FILE")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listening line")
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    assert!(line.contains("permission modes: plan"), "{line}");
    assert!(!line.contains("sekrit"), "a token was printed: {line}");
    assert_eq!(get(&addr, "/health", None), 200);
    assert_eq!(get(&addr, "/v1/sessions", Some("file-sekrit")), 200);
    assert_eq!(get(&addr, "/v1/sessions", Some("other")), 401);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_an_unknown_config_key_clearly() {
    let dir = scratch("unknown-key");
    let file = dir.join("gateway.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_port = 8992\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--config"])
        .arg(&file)
        .env("CONDUIT_TOKENS", "t")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.toml"), "{err}");
    assert!(err.contains("unknown field `listen_port`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
