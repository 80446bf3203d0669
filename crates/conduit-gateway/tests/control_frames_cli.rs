//! Control frames past the option policy, with the REAL pinned `claude` CLI (FakeModel) behind
//! the gateway, and a `--cli` wrapper that records the CLI's stdin: what the pinned CLI does
//! with `apply_flag_settings` and `set_permission_mode`, and that the gateway's policy keeps
//! them from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use claude_conduit::options::PermissionMode;
use claude_conduit::permission::{PermissionDecision, PermissionRequest};
use claude_conduit::{Client, Error, Options};
use claude_conduit_gateway::GatewayConfig;
use claude_conduit_gateway::policy::Policy;
use claude_conduit_testkit::{CliEnv, FakeModel, Turn};
use futures::StreamExt;
use serde_json::json;

mod support;
use support::*;

/// A FakeModel that asks for one Bash call (which writes `pwned.txt`), the pinned CLI's scratch
/// environment, and a gateway (with `policy`) that runs that CLI through the recording wrapper.
struct Setup {
    _model: FakeModel,
    env: CliEnv,
    dir: tempfile::TempDir,
    gw: Running,
}

async fn setup(policy: Policy) -> Setup {
    let model = FakeModel::builder()
        .turn(Turn::tool_use(
            "Bash",
            json!({"command": "echo pwned > pwned.txt", "description": "write a file"}),
        ))
        .turn(Turn::text("done"))
        .start()
        .await
        .expect("fake model");
    let cli = tokio::task::spawn_blocking(claude_conduit_testkit::ensure_pinned_cli)
        .await
        .expect("join")
        .expect("the pinned claude CLI (scripts/install-cli.sh)");
    let env = model.cli_env_with(cli).expect("cli env");
    let dir = tempfile::tempdir().unwrap();
    let wrapper = recording_cli(dir.path(), &env.cli_path());
    let mut template = Options::builder()
        .cli_path(wrapper)
        .cwd(env.cwd())
        .envs(env.envs());
    for k in env.vars_to_remove() {
        template = template.env_remove(k);
    }
    let config = GatewayConfig::new()
        .listen(loopback())
        .token(TOKEN)
        .options(template.build())
        .policy(policy)
        .close_grace(Duration::from_secs(2));
    let gw = start(config).await;
    Setup {
        _model: model,
        env,
        dir,
        gw,
    }
}

/// A client of the gateway whose permission callback counts its calls and denies.
async fn client(s: &Setup, asked: Arc<AtomicUsize>) -> Client {
    let options = Options::builder()
        .transport(s.gw.url().replace("http://", "ws://"), TOKEN)
        .initialize_timeout(Duration::from_secs(60))
        .can_use_tool(move |_req: PermissionRequest| {
            asked.fetch_add(1, Ordering::SeqCst);
            futures::future::ready(PermissionDecision::deny("not this time"))
        })
        .build();
    Client::connect(options)
        .await
        .expect("connect through the gateway")
}

/// Run the scripted turn (one Bash call, then text) to its result.
async fn run_turn(client: &Client) {
    client.send("write the file").await.expect("send");
    let items: Vec<_> = tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
        .await
        .expect("the turn ended in time");
    assert!(
        items
            .last()
            .and_then(|m| m.as_ref().ok())
            .and_then(|m| m.as_result())
            .is_some(),
        "{items:?}"
    );
}

fn settings_allow_bash() -> serde_json::Value {
    json!({"permissions": {"allow": ["Bash"]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_flag_settings_is_refused_and_the_tool_still_asks() {
    let s = setup(Policy::default()).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let client = client(&s, asked.clone()).await;
    let err = client
        .apply_flag_settings(settings_allow_bash())
        .await
        .unwrap_err();
    match &err {
        Error::ControlError { message, .. } => {
            assert!(
                message.contains("gateway policy") && message.contains("--settings"),
                "{message}"
            );
        }
        other => panic!("expected the gateway's refusal, got {other:?}"),
    }
    // The session goes on, and Bash still needs the client's permission.
    run_turn(&client).await;
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert!(!s.env.cwd().join("pwned.txt").exists());
    client.disconnect().await.expect("disconnect");
    let log = stdin_log(s.dir.path());
    assert!(
        log.contains("\"initialize\""),
        "the wrapper recorded: {log}"
    );
    assert!(
        !log.contains("apply_flag_settings"),
        "reached the CLI: {log}"
    );
    s.gw.shutdown().await;
}

/// What the refusal prevents: with `settings` allowed, the pinned CLI honours
/// `apply_flag_settings` and the Bash call runs without asking the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_settings_allowed_the_pinned_cli_honours_apply_flag_settings() {
    let s = setup(Policy::default().allow_flag("settings")).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let client = client(&s, asked.clone()).await;
    client
        .apply_flag_settings(settings_allow_bash())
        .await
        .expect("passed to the CLI and accepted");
    run_turn(&client).await;
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert!(s.env.cwd().join("pwned.txt").exists());
    client.disconnect().await.expect("disconnect");
    assert!(stdin_log(s.dir.path()).contains("apply_flag_settings"));
    s.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_permission_mode_follows_the_permission_mode_policy() {
    let policy =
        Policy::default().permission_modes([PermissionMode::Default, PermissionMode::Plan]);
    let s = setup(policy).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let client = client(&s, asked.clone()).await;
    // A mode the pinned CLI accepts, but this gateway's policy does not.
    for mode in [
        PermissionMode::AcceptEdits,
        PermissionMode::BypassPermissions,
    ] {
        let err = client.set_permission_mode(mode).await.unwrap_err();
        match &err {
            Error::ControlError { message, .. } => assert!(
                message.contains("gateway policy") && message.contains("--permission-mode"),
                "{message}"
            ),
            other => panic!("expected the gateway's refusal, got {other:?}"),
        }
    }
    // An allowed one reaches the CLI, which honours it.
    client
        .set_permission_mode(PermissionMode::Plan)
        .await
        .expect("plan is allowed");
    client
        .set_permission_mode(PermissionMode::Default)
        .await
        .expect("default is allowed");
    run_turn(&client).await;
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    client.disconnect().await.expect("disconnect");
    let log = stdin_log(s.dir.path());
    assert!(log.contains("\"mode\":\"plan\""), "{log}");
    assert!(!log.contains("acceptEdits"), "reached the CLI: {log}");
    assert!(!log.contains("bypassPermissions"), "reached the CLI: {log}");
    s.gw.shutdown().await;
}
