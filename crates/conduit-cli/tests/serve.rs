//! `conduit serve`, run as a user would: tokens from the environment, /health, 401, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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

/// The first line `conduit serve` prints (`listening on http://ADDR …`) and the address in it.
fn listening(stderr: &mut impl BufRead) -> (String, String) {
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listening line")
        .to_owned();
    (line, addr)
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
        .env(
            "CONDUIT_TOKENS",
            "sekrit-1-0123456789abcdef,sekrit-2-0123456789abcdef",
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (line, addr) = listening(&mut stderr);
    assert!(!line.contains("sekrit"), "a token was printed: {line}");
    assert_eq!(get(&addr, "/health", None), 200);
    assert_eq!(get(&addr, "/v1/sessions", None), 401);
    assert_eq!(get(&addr, "/v1/sessions", Some("nope")), 401);
    assert_eq!(
        get(&addr, "/v1/sessions", Some("sekrit-2-0123456789abcdef")),
        200
    );
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
    std::fs::write(
        dir.join("tokens.txt"),
        "# tokens\nfile-sekrit-0123456789abcdef\n",
    )
    .unwrap();
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
    let (line, addr) = listening(&mut stderr);
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    assert!(line.contains("permission modes: plan"), "{line}");
    assert!(!line.contains("sekrit"), "a token was printed: {line}");
    assert_eq!(get(&addr, "/health", None), 200);
    assert_eq!(
        get(&addr, "/v1/sessions", Some("file-sekrit-0123456789abcdef")),
        200
    );
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
        .env("CONDUIT_TOKENS", "t-0123456789abcdef")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.toml"), "{err}");
    assert!(err.contains("unknown field `listen_port`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST /v1/sessions` (body `{}`) with `token`: the status and the reply body.
fn create_session(addr: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /v1/sessions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        out.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned()),
    )
}

/// The attack of issue 9 (item 1) on the command itself: `CONDUIT_TOKENS` in the gateway's
/// environment, a `--cli` wrapper that records the session's environment and directory.
#[test]
fn a_session_of_conduit_serve_sees_no_token_and_not_the_gateways_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("env");
    let wrapper = dir.join("record-cli.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nenv > '{d}/session.env.tmp'\npwd -P > '{d}/session.cwd'\n\
             mv '{d}/session.env.tmp' '{d}/session.env'\nexec '{c}' mock-claude \"$@\"\n",
            d = dir.display(),
            c = env!("CARGO_BIN_EXE_conduit")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tokens = "env-sekrit-1-0123456789abcdef,env-sekrit-2-0123456789abcdef";
    let mut child = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cli"])
        .arg(&wrapper)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("CONDUIT_TOKENS", tokens)
        .env("CONDUIT_FRAME_RATE", "1000")
        .env_remove("CONDUIT_TOKEN_FILE")
        .env_remove("CONDUIT_CONFIG")
        .current_dir(&dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (_, addr) = listening(&mut stderr);
    let (status, body) = create_session(&addr, "env-sekrit-2-0123456789abcdef");
    assert_eq!(status, 201, "{body}");
    let env_file = dir.join("session.env");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !env_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let env = std::fs::read_to_string(&env_file).expect("the wrapper recorded the environment");
    assert!(
        !env.contains("sekrit"),
        "a token reached the session: {env}"
    );
    assert!(
        !env.lines().any(|l| l.starts_with("CONDUIT_")),
        "a CONDUIT_* variable reached the session: {env}"
    );
    let cwd = std::fs::read_to_string(dir.join("session.cwd")).unwrap();
    let cwd = std::path::Path::new(cwd.trim());
    assert_ne!(cwd, dir.canonicalize().unwrap());
    assert!(
        cwd.starts_with(dir.join("state/work").canonicalize().unwrap()),
        "{}",
        cwd.display()
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(!rest.contains("sekrit"), "a token was logged: {rest}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_short_tokens_and_warns_about_clear_text_beyond_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CONDUIT_TOKENS", "short-sekrit")
        .env_remove("CONDUIT_TOKEN_FILE")
        .env_remove("CONDUIT_CONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 bytes"), "{err}");
    assert!(!err.contains("short-sekrit"), "{err}");
    // 192.0.2.1 (TEST-NET-1) is not this host's: the bind fails after the warning, so nothing
    // ever listens beyond loopback.
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "192.0.2.1:0"])
        .env("CONDUIT_TOKENS", "long-enough-sekrit-0123456789")
        .env_remove("CONDUIT_TOKEN_FILE")
        .env_remove("CONDUIT_CONFIG")
        .env_remove("CONDUIT_TLS_CERT")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("WARNING").count(), 1, "{err}");
    assert!(err.contains("without TLS"), "{err}");
}

#[test]
fn serve_token_file_problems_name_the_file() {
    let dir = scratch("token-file");
    let missing = dir.join("no-such-tokens");
    let comments = dir.join("comments-only");
    std::fs::write(&comments, "# tokens go here\n\n").unwrap();
    for (file, expected) in [
        (
            &missing,
            format!("cannot read the token file {}: ", missing.display()),
        ),
        (
            &comments,
            format!("the token file {} holds no token", comments.display()),
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(file)
            .env_remove("CONDUIT_TOKENS")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(err.contains(&expected), "{err}");
        assert!(!err.contains("config file"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The gateway's log at the default level: sessions created and ended, authentication failures;
/// no token, no colour codes (stderr is a pipe here).
#[test]
fn serve_logs_sessions_and_auth_failures_at_the_default_level() {
    let dir = scratch("logs");
    let mut gw = support::serve(&dir, &[], &[]);
    assert_eq!(get(&gw.http, "/v1/sessions", Some("wrong-guess")), 401);
    let auth = gw.read_until("authentication failed");
    assert!(auth.contains("authentication failed"), "{auth}");
    let url = format!("ws://{}", gw.http);
    let out = support::query_via(&dir, &url, &dir.join("tokens"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out).1);
    let created = gw.read_until("session created");
    assert!(created.contains("session created"), "{created}");
    let ended = gw.read_until("CLI ended");
    assert!(ended.contains("CLI ended"), "{ended}");
    let first = gw.line.clone();
    let rest = gw.stop();
    let all = format!("{first}{auth}{created}{ended}{rest}");
    assert!(
        !all.contains("sekrit-token-0123456789abcdef"),
        "a token was logged: {all}"
    );
    assert!(
        !all.contains("wrong-guess"),
        "a presented token was logged: {all}"
    );
    assert!(!all.contains('\u{1b}'), "colour codes on a pipe: {all:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--log-level` over `RUST_LOG` over `CONDUIT_LOG`: the session lines are `info`.
#[test]
fn serve_log_filter_precedence() {
    let dir = scratch("log-precedence");
    // (flag, RUST_LOG, CONDUIT_LOG, are info lines shown?)
    let cases = [
        (None, Some("error"), None, false),
        (Some("info"), Some("error"), None, true),
        (None, Some("info"), Some("error"), true),
        (None, None, Some("error"), false),
    ];
    for (flag, rust_log, conduit_log, shown) in cases {
        let mut extra = Vec::new();
        if let Some(f) = flag {
            extra.extend(["--log-level", f]);
        }
        let mut env = Vec::new();
        if let Some(v) = rust_log {
            env.push(("RUST_LOG", v));
        }
        if let Some(v) = conduit_log {
            env.push(("CONDUIT_LOG", v));
        }
        let gw = support::serve(&dir, &extra, &env);
        let url = format!("ws://{}", gw.http);
        let out = support::query_via(&dir, &url, &dir.join("tokens"), &[]);
        assert_eq!(out.status.code(), Some(0));
        let log = gw.stop();
        assert_eq!(
            log.contains("session created"),
            shown,
            "{flag:?} {rust_log:?} {conduit_log:?}: {log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
