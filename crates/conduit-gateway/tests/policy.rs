//! The session-options policy through the real gateway (127.0.0.1, port 0, `mock-claude`):
//! refusals are HTTP 400 naming the flag, SDK clients see them as errors, and an allowed cwd
//! reaches the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use claude_conduit::{Client, Options};
use claude_conduit_gateway::GatewayConfig;
use claude_conduit_gateway::policy::Policy;
use futures::StreamExt;
use serde_json::{Value, json};

mod support;
use support::*;

fn config(policy: Policy) -> GatewayConfig {
    support::config(&[]).policy(policy)
}

/// `POST /v1/sessions` with `body`: status and JSON reply.
async fn create(addr: SocketAddr, body: &Value) -> (u16, Value) {
    post_session(addr, TOKEN, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_400_naming_the_flag() {
    let root = tempfile::tempdir().unwrap();
    let gw = start(config(Policy::default())).await;
    for (body, needle) in [
        (json!({"args": ["--settings={}"]}), "--settings"),
        (
            json!({"args": ["--permission-mode=bypassPermissions"]}),
            "bypassPermissions",
        ),
        (
            json!({"args": ["--dangerously-skip-permissions"]}),
            "--dangerously-skip-permissions",
        ),
        (
            json!({"args": [r#"--mcp-config={"mcpServers":{"x":{"type":"stdio","command":"sh"}}}"#]}),
            "--mcp-config",
        ),
        (
            json!({"args": ["--permission-prompt-tool=mcp__evil"]}),
            "--permission-prompt-tool",
        ),
        (json!({"cwd": root.path().to_str().unwrap()}), "cwd"),
    ] {
        let (status, reply) = create(gw.addr, &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["kind"], "refused", "{body}: {reply}");
        let msg = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // Allowed flags start a session.
    let (status, reply) = create(
        gw.addr,
        &json!({"args": ["--model=m", "--permission-mode=plan", "--include-partial-messages"]}),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_client_sees_the_refusal_and_an_allowed_cwd_reaches_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let gw = start(config(Policy::default().cwd_root(root.path()))).await;
    let url = format!("ws://{}", gw.addr);

    let refused = Options::builder()
        .transport(&url, TOKEN)
        .extra_arg("plugin-dir", Some("/tmp".into()))
        .build();
    let Err(e) = tokio::time::timeout(T, Client::connect(refused))
        .await
        .expect("in time")
    else {
        panic!("refused");
    };
    assert!(e.to_string().contains("--plugin-dir"), "{e}");

    let outside_cwd = Options::builder()
        .transport(&url, TOKEN)
        .cwd(outside.path())
        .build();
    let Err(e) = tokio::time::timeout(T, Client::connect(outside_cwd))
        .await
        .expect("in time")
    else {
        panic!("refused");
    };
    assert!(e.to_string().contains("outside"), "{e}");

    let options = Options::builder()
        .transport(&url, TOKEN)
        .cwd(&project)
        .build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("connect");
    client.send("where are you").await.expect("send");
    let items: Vec<_> = tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
        .await
        .expect("turn in time");
    let init_cwd = items
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .find_map(|m| {
            m.as_system()
                .and_then(|s| s.as_init())
                .map(|i| i.cwd.clone())
        })
        .expect("system/init");
    assert_eq!(
        PathBuf::from(init_cwd),
        std::fs::canonicalize(&project).unwrap()
    );
    tokio::time::timeout(T, client.disconnect())
        .await
        .expect("in time")
        .expect("disconnect");
    gw.shutdown().await;
}
