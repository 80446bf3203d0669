//! `conduit query --via URL`: the same query through a running `conduit serve` (mock CLI behind
//! it), over WebSocket, server-sent events and gRPC, with the same output as a local run; and
//! what a user sees when it goes wrong (refused options, wrong token, nothing listening).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{CONDUIT, mock_script, query_via, scratch, serve, text};

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
    let dir = scratch("via-all");
    let gw = serve(&dir, &[], &[]);
    let mock = mock_script(&dir);
    let local = Command::new(CONDUIT)
        .args(["query", "--output", "json", "--cli"])
        .arg(&mock)
        .arg("hello through the gateway")
        .env("MOCK_CLAUDE_MESSAGES", "3")
        .current_dir(&dir)
        .output()
        .unwrap();
    let (local, err) = text(&local);
    assert!(local.contains("\"result\""), "{local}{err}");
    let token = dir.join("tokens");
    for url in [
        format!("ws://{}", gw.http),
        format!("http://{}", gw.http),
        format!("grpc://{}", gw.grpc.clone().unwrap()),
    ] {
        let out = query_via(&dir, &url, &token, &[]);
        let (stdout, err) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{url}: {err}");
        assert_eq!(shape(&stdout), shape(&local), "{url}");
    }
    // A wrong token is a clear failure, not a hang.
    std::fs::write(dir.join("wrong"), "nope\n").unwrap();
    let url = format!("ws://{}", gw.http);
    let out = query_via(&dir, &url, &dir.join("wrong"), &[]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains(&url), "the URL is named: {err}");
    assert!(!err.contains("nope"), "the token was printed: {err}");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_policy_refusal_is_exit_2_with_the_gateways_reason_on_every_transport() {
    let dir = scratch("via-refused");
    let gw = serve(&dir, &[], &[]);
    let token = dir.join("tokens");
    for url in [
        format!("ws://{}", gw.http),
        format!("http://{}", gw.http),
        format!("grpc://{}", gw.grpc.clone().unwrap()),
    ] {
        // bypassPermissions is refused by the default policy.
        let out = query_via(
            &dir,
            &url,
            &token,
            &["--permission-mode", "bypassPermissions"],
        );
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("gateway refused the options: "))
            .unwrap_or_else(|| panic!("{url}: {err}"));
        assert!(line.contains("bypassPermissions"), "{url}: {line}");
        assert!(
            !line.contains("status 400") && !line.contains("{\""),
            "{url}: no raw body: {line}"
        );
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_listening_names_the_url_and_the_cause() {
    let dir = scratch("via-refused-conn");
    std::fs::write(dir.join("tokens"), "t\n").unwrap();
    let token = dir.join("tokens");
    // Port 1 on loopback: nothing listens there (connection refused).
    for url in [
        "http://127.0.0.1:1",
        "ws://127.0.0.1:1",
        "grpc://127.0.0.1:1",
    ] {
        let out = query_via(&dir, url, &token, &[]);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(4), "{url}: {err}");
        assert!(err.contains(url), "{url}: the URL is named: {err}");
        assert!(
            err.to_ascii_lowercase().contains("connection refused"),
            "{url}: the cause is kept: {err}"
        );
        assert!(
            err.matches("tcp connect error").count() <= 1,
            "{url}: said once: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_file_problems_name_the_file() {
    let dir = scratch("via-token-file");
    let url = "ws://127.0.0.1:1";
    let missing = dir.join("missing-tokens");
    let out = query_via(&dir, url, &missing, &[]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot read the token file {}", missing.display())),
        "{err}"
    );
    let empty = dir.join("comments-only");
    std::fs::write(&empty, "# a comment\n\n   \n").unwrap();
    let out = query_via(&dir, url, &empty, &[]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the token file {} holds no token",
            empty.display()
        )),
        "{err}"
    );
    // No token at all: a usage error before any connection.
    let out = Command::new(CONDUIT)
        .args(["query", "--via", url, "hi"])
        .env_remove("CONDUIT_TOKEN")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--via needs a token"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_via_values_are_usage_errors() {
    for (args, expected) in [
        (
            vec!["query", "--via", "carrier-pigeon", "hi"],
            "transport URL needs a scheme",
        ),
        (
            vec!["query", "--via", "ftp://h:1", "hi"],
            "unknown transport scheme `ftp`",
        ),
        (
            vec!["bench", "pingpong", "--via", "carrier-pigeon"],
            "expected ws, http or grpc",
        ),
        (
            vec!["bench", "sessions", "--via", "carrier-pigeon"],
            "carrier-pigeon",
        ),
    ] {
        let out = Command::new(CONDUIT).args(&args).output().unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
