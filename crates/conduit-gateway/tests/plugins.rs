//! Gateway plugins as a policy token holders cannot get past, with the REAL pinned `claude` CLI
//! (FakeModel scripts a Bash `touch`) behind a recording `--cli` wrapper: a client's own
//! `initialize` using `gw_` ids is refused, a re-initialize without hooks does not drop the
//! gateway's, a client that sends no initialize still gets the gateway's hooks; and gateway-side
//! protocol extensions (issue 12) on both directions, with mock-claude.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use claude_conduit::extension::{Action, Extensions, FrameFilter};
use claude_conduit::hooks::{HookEvent, HookInput, HookMatcher, HookOutput};
use claude_conduit::plugin::PluginManager;
use claude_conduit::{Client, Error, Options};
use claude_conduit_gateway::GatewayConfig;
use claude_conduit_testkit::{CliEnv, FakeModel, Turn};
use futures::StreamExt;
use serde_json::json;

mod support;
use support::*;

struct Setup {
    model: FakeModel,
    _env: CliEnv,
    dir: tempfile::TempDir,
    gw: Running,
    target: std::path::PathBuf,
}

/// FakeModel asks for one Bash `touch`; the gateway runs a Rhai plugin that denies it.
async fn setup() -> Setup {
    setup_with(
        "fn pre_tool_use(input) { if input.tool_input.command.contains(\"touch\") { \
         return #{ decision: \"deny\", reason: \"site policy: no touching\" }; } }",
    )
    .await
}

/// FakeModel asks for one Bash `touch`; the gateway runs the Rhai plugin `script`.
async fn setup_with(script: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("touched.txt");
    let model = FakeModel::builder()
        .turn(Turn::tool_use(
            "Bash",
            json!({"command": format!("touch '{}'", target.display()), "description": "d"}),
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
    let plugins = dir.path().join("plugins/policy");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(
        plugins.join("plugin.toml"),
        "name = \"policy\"\nversion = \"1.0.0\"\nruntime = \"rhai\"\nentry = \"main.rhai\"\n",
    )
    .unwrap();
    std::fs::write(plugins.join("main.rhai"), script).unwrap();
    let manager = PluginManager::new();
    let problems = manager.load_dir(&dir.path().join("plugins")).await;
    assert!(problems.is_empty(), "{problems:?}");
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
        .plugins(manager)
        .close_grace(Duration::from_secs(2))
        .state_dir(state_dir());
    let gw = start(config).await;
    Setup {
        model,
        _env: env,
        dir,
        gw,
        target,
    }
}

/// A client that allows every tool itself (only the gateway's plugin stands in the way), with a
/// PreToolUse hook of its own that counts its calls.
fn client_options(
    s: &Setup,
    hook_calls: Arc<AtomicUsize>,
) -> claude_conduit::options::OptionsBuilder {
    Options::builder()
        .transport(s.gw.url().replace("http://", "ws://"), TOKEN)
        .initialize_timeout(Duration::from_secs(60))
        .can_use_tool(|_req| {
            futures::future::ready(claude_conduit::permission::PermissionDecision::allow())
        })
        .hook(
            HookEvent::PreToolUse,
            HookMatcher::all().callback(move |_: HookInput, _| {
                let calls = hook_calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    HookOutput::allow_tool("the client says yes")
                }
            }),
        )
}

async fn run_turn(client: &Client) {
    client.send("touch the file").await.expect("send");
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

fn model_was_told(s: &Setup) -> String {
    let reqs = s.model.message_requests();
    let last = reqs.last().expect("requests");
    let id = last
        .messages()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_result")
        .map(|b| b["tool_use_id"].as_str().unwrap_or_default().to_owned())
        .expect("a tool_result");
    last.tool_result_text(&id).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_plugin_denies_beside_the_clients_own_allowing_hook() {
    let s = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let client = Client::connect(client_options(&s, calls.clone()).build())
        .await
        .expect("connect");
    run_turn(&client).await;
    assert!(
        !s.target.exists(),
        "the gateway's plugin must stop the tool"
    );
    assert!(model_was_told(&s).contains("site policy: no touching"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the client's hook ran too");
    client.disconnect().await.expect("disconnect");
    let log = stdin_log(s.dir.path());
    assert!(
        log.contains("\"gw_0\"") && log.contains("\"hook_0\""),
        "{log}"
    );
    s.gw.shutdown().await;
}

/// A remote client with `extensions` sends a `{"type":"probe"}` frame (its user message `PROBE`,
/// rewritten) and then a turn; the client and what the turn delivered.
async fn probe_then_turn(
    gw: &Running,
    extensions: Extensions,
) -> (Client, Vec<claude_conduit::Result<claude_conduit::Message>>) {
    let options = Options::builder()
        .transport(gw.url().replace("http://", "ws://"), TOKEN)
        .extensions(extensions)
        .frame_filter(Arc::new(Rewrite(|t| {
            if t.contains("PROBE") {
                r#"{"type":"probe"}"#.to_owned()
            } else {
                t.to_owned()
            }
        })))
        .build();
    let client = Client::connect(options).await.expect("connect");
    client.send("PROBE").await.expect("send the probe");
    client.send("hello").await.expect("send");
    let items: Vec<_> = tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
        .await
        .expect("in time");
    (client, items)
}

/// Rewrites every outbound frame with `f`.
struct Rewrite(fn(&str) -> String);
impl FrameFilter for Rewrite {
    fn outbound(&self, frame: Bytes) -> Bytes {
        let text = String::from_utf8_lossy(&frame).into_owned();
        Bytes::from((self.0)(&text))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_initialize_using_gateway_callback_ids_is_refused() {
    let s = setup().await;
    // The client names its own hook `gw_0`, hoping the CLI's calls for the gateway's matcher
    // come to it.
    let options = client_options(&s, Arc::new(AtomicUsize::new(0)))
        .frame_filter(Arc::new(Rewrite(|t| t.replace("\"hook_0\"", "\"gw_0\""))))
        .build();
    let err = Client::connect(options).await.unwrap_err();
    match &err {
        Error::ControlError { message, .. } => {
            assert!(
                message.contains("`gw_0`") && message.contains("gateway"),
                "{message}"
            )
        }
        other => panic!("expected the gateway's refusal, got {other:?}"),
    }
    assert!(!stdin_log(s.dir.path()).contains("\"gw_0\""));
    s.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reinitialize_without_hooks_keeps_the_gateway_hooks() {
    let s = setup().await;
    let client = Client::connect(client_options(&s, Arc::new(AtomicUsize::new(0))).build())
        .await
        .expect("connect");
    client
        .control("initialize", json!({"hooks": null}))
        .await
        .expect("a second initialize is answered");
    run_turn(&client).await;
    assert!(!s.target.exists());
    assert!(model_was_told(&s).contains("site policy"));
    client.disconnect().await.expect("disconnect");
    let log = stdin_log(s.dir.path());
    let inits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"subtype\":\"initialize\""))
        .collect();
    assert_eq!(inits.len(), 2, "{log}");
    assert!(inits.iter().all(|l| l.contains("\"gw_0\"")), "{inits:?}");
    s.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_no_initialize_still_gets_the_gateway_hooks() {
    let s = setup().await;
    // The client's initialize becomes an `interrupt` with the same request id: the CLI never
    // sees an initialize from the client (and answers the interrupt, so the client connects).
    let options = Options::builder()
        .transport(s.gw.url().replace("http://", "ws://"), TOKEN)
        .initialize_timeout(Duration::from_secs(60))
        .can_use_tool(|_req| {
            futures::future::ready(claude_conduit::permission::PermissionDecision::allow())
        })
        .frame_filter(Arc::new(Rewrite(|t| {
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(t) else {
                return t.to_owned();
            };
            if v["request"]["subtype"] == "initialize" {
                v["request"] = json!({"subtype": "interrupt"});
            }
            v.to_string()
        })))
        .build();
    let client = Client::connect(options).await.expect("connect");
    run_turn(&client).await;
    assert!(!s.target.exists());
    assert!(model_was_told(&s).contains("site policy"));
    client.disconnect().await.expect("disconnect");
    let log = stdin_log(s.dir.path());
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.contains("\"gw_init_1\"") && first.contains("\"gw_0\""),
        "the gateway's initialize comes first: {log}"
    );
    s.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_protocol_extensions_see_both_directions() {
    let seen_from_cli = Arc::new(AtomicUsize::new(0));
    let seen = seen_from_cli.clone();
    let ext = Extensions::new()
        // A client frame the gateway answers itself (never reaching the CLI).
        .handle("probe", |f| {
            Action::Reply(Bytes::from(format!(
                r#"{{"type":"probe_ack","dir":"{}"}}"#,
                f.direction.as_str()
            )))
        })
        // CLI frames: each `result` is marked.
        .handle("result", move |f| {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut v = f.value.clone();
            v["gateway_mark"] = json!(true);
            Action::Replace(Bytes::from(v.to_string()))
        });
    let gw = start(config(&[]).extensions(ext)).await;
    let (client, items) = probe_then_turn(&gw, Extensions::new()).await;
    let raws: Vec<serde_json::Value> = items
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .map(|m| serde_json::from_slice(m.raw()).unwrap())
        .collect();
    assert!(
        raws.iter()
            .any(|v| v["type"] == "probe_ack" && v["dir"] == "sdk->cli"),
        "{raws:?}"
    );
    let result = raws.iter().find(|v| v["type"] == "result").unwrap();
    assert_eq!(result["gateway_mark"], true);
    assert!(seen_from_cli.load(Ordering::SeqCst) >= 1);
    client.disconnect().await.expect("disconnect");
    gw.shutdown().await;
}

/// A plugin's `can_use_tool` policy on the gateway is enforced at the gateway's own `PreToolUse`
/// hook: a token holder whose session allows Bash outright (`allowed_tools`, so the CLI never
/// asks `can_use_tool`), with a hook and a `can_use_tool` handler of its own that allow
/// everything, still cannot run what the operator's policy denies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_plugins_permission_policy_holds_when_the_client_allows_the_tool_outright() {
    let s = setup_with(
        "fn can_use_tool(input) { if input.input.command.contains(\"touch\") { \
         return #{ decision: \"deny\", reason: \"site permission policy: \" + input.tool_name }; } }",
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let options = client_options(&s, calls.clone())
        .allowed_tools(["Bash"])
        .build();
    let client = Client::connect(options).await.expect("connect");
    run_turn(&client).await;
    assert!(
        !s.target.exists(),
        "the operator's policy must stop the tool"
    );
    assert!(
        model_was_told(&s).contains("site permission policy: Bash"),
        "{}",
        model_was_told(&s)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the client's own hook ran beside it"
    );
    client.disconnect().await.expect("disconnect");
    let log = stdin_log(s.dir.path());
    let init = log
        .lines()
        .find(|l| l.contains("\"subtype\":\"initialize\""))
        .unwrap_or_default();
    assert!(
        init.contains("\"PreToolUse\"") && init.contains("\"gw_0\""),
        "the policy rides on the gateway's PreToolUse matcher: {init}"
    );
    s.gw.shutdown().await;
}

#[derive(Debug, serde::Deserialize)]
struct MockFrame {
    x: i64,
    seen_by: String,
}

/// A gateway plugin's custom message type and its Rhai handler act on every session's frames,
/// both ways (mock-claude emits `{"type":"mock_unknown_type","x":1}` each turn; the real CLI
/// carries no custom frames): the CLI's frame is transformed before the remote client sees it
/// (which decodes it as its own typed custom message), a client's `probe` is answered by the
/// gateway and never reaches the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_plugins_message_types_and_handlers_act_on_frames_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("frames");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(
        plugin.join("plugin.toml"),
        r#"name = "frames"
version = "1.0.0"
runtime = "rhai"
entry = "main.rhai"

[[messages]]
type = "mock_unknown_type"
schema = "mock.json"
handler = "on_mock"

[[messages]]
type = "probe"
handler = "on_probe"
"#,
    )
    .unwrap();
    std::fs::write(
        plugin.join("mock.json"),
        r#"{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}"#,
    )
    .unwrap();
    std::fs::write(
        plugin.join("main.rhai"),
        r#"
fn on_mock(frame, direction) {
    frame.x = frame.x * 10;
    frame.seen_by = PLUGIN;
    #{ action: "replace", frame: frame }
}
fn on_probe(frame, direction) {
    #{ action: "reply", frame: #{ type: "probe_ack", by: PLUGIN, dir: direction } }
}
"#,
    )
    .unwrap();
    let manager = PluginManager::new();
    let problems = manager.load_dir(dir.path()).await;
    assert!(problems.is_empty(), "{problems:?}");
    let gw = start(config(&[("MOCK_CLAUDE_UNKNOWN_FRAMES", "1")]).plugins(manager.clone())).await;
    let (client, items) = probe_then_turn(
        &gw,
        Extensions::new().register(claude_conduit::extension::CustomType::new::<MockFrame>(
            "mock_unknown_type",
        )),
    )
    .await;
    let ok: Vec<&claude_conduit::Message> = items.iter().filter_map(|m| m.as_ref().ok()).collect();
    let ack = ok
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(m.raw()).unwrap())
        .find(|v| v["type"] == "probe_ack")
        .unwrap_or_else(|| panic!("no probe_ack: {items:?}"));
    assert_eq!(
        ack,
        json!({"type": "probe_ack", "by": "frames", "dir": "sdk->cli"})
    );
    let mock = ok
        .iter()
        .find_map(|m| m.custom::<MockFrame>())
        .unwrap_or_else(|| panic!("no typed mock frame: {items:?}"));
    assert_eq!((mock.x, mock.seen_by.as_str()), (10, "frames"));
    assert_eq!(manager.list()[0].failures, 0);
    client.disconnect().await.expect("disconnect");
    gw.shutdown().await;
}
