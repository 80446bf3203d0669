//! docs/GATEWAY.md's self-signed certificate recipe, run as written (the `openssl req` block is
//! read from the document), then used: `conduit serve` over TLS and `conduit query --via wss://`
//! trusting it through `CONDUIT_TLS_CA`; and the hints a user gets without the CA, or with a
//! plain-text URL aimed at the TLS port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{query_via, scratch, serve, text};

/// The `openssl req …` command of GATEWAY.md's TLS section, joined into one shell line.
fn documented_openssl_command() -> String {
    let doc = include_str!("../../../docs/GATEWAY.md");
    let start = doc
        .find("\nopenssl req ")
        .expect("GATEWAY.md has an `openssl req` recipe");
    let block = &doc[start + 1..];
    let end = block.find("\n```").expect("the recipe's code block ends");
    block[..end].replace("\\\n", " ")
}

#[test]
fn the_documented_openssl_recipe_gives_a_certificate_the_client_accepts() {
    let dir = scratch("tls-recipe");
    let command = documented_openssl_command();
    assert!(command.contains("CA:FALSE"), "{command}");
    let made = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(&dir)
        .output()
        .expect("run openssl (needed by this test, as by the documented recipe)");
    assert!(made.status.success(), "{command}: {}", text(&made).1);
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let gw = serve(&dir, &["--tls-cert", &cert, "--tls-key", &key], &[]);
    assert!(gw.line.contains("https://"), "{}", gw.line);
    let token = dir.join("tokens");
    let wss = format!("wss://{}", gw.http);

    let trusted = Command::new(support::CONDUIT)
        .args(["query", "--output", "json", "--via", &wss, "--token-file"])
        .arg(&token)
        .arg("hello over TLS")
        .env("CONDUIT_TLS_CA", dir.join("cert.pem"))
        .env_remove("CONDUIT_TOKEN")
        .output()
        .unwrap();
    let (stdout, err) = text(&trusted);
    assert_eq!(trusted.status.code(), Some(0), "{err}");
    assert!(stdout.contains("\"result\""), "{stdout}");

    // Without the CA: not trusted, and the user is told what to set.
    let untrusted = Command::new(support::CONDUIT)
        .args(["query", "--via", &wss, "--token-file"])
        .arg(&token)
        .arg("hello over TLS")
        .env_remove("CONDUIT_TLS_CA")
        .env_remove("CONDUIT_TOKEN")
        .output()
        .unwrap();
    let (_, err) = text(&untrusted);
    assert_eq!(untrusted.status.code(), Some(4), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("hint: ") && err.contains("CONDUIT_TLS_CA"),
        "{err}"
    );

    // A plain ws:// URL aimed at the TLS port: a hint to use wss://.
    let plain = query_via(&dir, &format!("ws://{}", gw.http), &token, &[]);
    let (_, err) = text(&plain);
    assert_eq!(plain.status.code(), Some(4), "{err}");
    assert!(err.contains("use wss://"), "{err}");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
