//! Plugins with the REAL pinned `claude` CLI and FakeModel (issue 13): hot reload between the
//! turns of a live session, and runaway plugins (a looping script, a hungry script, a crashing
//! and a hanging coprocessor) stopped or restarted with clear errors while the session goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claude_conduit::Client;
use claude_conduit::events::{Event, EventKind, Outcome};
use claude_conduit::plugin::{PluginManager, PluginState};
use claude_conduit_suite::{RealCli, Subprocess, extend::bash};
use claude_conduit_testkit::Turn;
use futures::StreamExt;

const T: Duration = Duration::from_secs(90);

fn write(dir: &Path, name: &str, files: &[(&str, &str)]) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for (f, body) in files {
        std::fs::write(d.join(f), body).unwrap();
    }
}

fn rhai(dir: &Path, name: &str, script: &str, extra: &str) {
    write(
        dir,
        name,
        &[
            (
                "plugin.toml",
                &format!(
                    "name = \"{name}\"\nversion = \"1.0.0\"\nruntime = \"rhai\"\nentry = \"main.rhai\"\n{extra}"
                ),
            ),
            ("main.rhai", script),
        ],
    );
}

const DENY_TOUCH: &str = r#"
fn pre_tool_use(input) {
    if input.tool_name == "Bash" && input.tool_input.command.contains("touch") {
        return #{ decision: "deny", reason: "no touching" };
    }
}
"#;

/// Run one turn to its result; the text of the tool_result the model got for it.
async fn turn(client: &Client, h: &RealCli, prompt: &str) -> String {
    client.send(prompt).await.expect("send");
    let items: Vec<_> = tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
        .await
        .expect("the turn ended in time");
    assert!(
        items
            .last()
            .and_then(|m| m.as_ref().ok())
            .is_some_and(|m| m.is_result()),
        "{items:?}"
    );
    let reqs = h.model.message_requests();
    let last = reqs.last().expect("a request");
    let id = last
        .messages()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .rfind(|b| b["type"] == "tool_result")
        .map(|b| b["tool_use_id"].as_str().unwrap_or_default().to_owned())
        .expect("a tool_result reached the model");
    last.tool_result_text(&id).unwrap_or_default()
}

/// Collects `Event::Plugin`s as `name:state[:error]`.
fn record(manager: &PluginManager) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    manager.bus().on(EventKind::Plugin, 0, move |e| {
        if let Event::Plugin {
            name, state, error, ..
        } = e
        {
            l.lock().unwrap().push(match error {
                Some(e) => format!("{name}:{state}:{e}"),
                None => format!("{name}:{state}"),
            });
        }
        Ok(Outcome::Continue)
    });
    log
}

/// Wait until the log has more than `seen` entries; the new ones.
async fn next_events(log: &Arc<Mutex<Vec<String>>>, seen: &mut usize, want: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        {
            let l = log.lock().unwrap();
            let new: Vec<String> = l[*seen..].to_vec();
            // `name:state` matches exactly; anything longer, as a part.
            if new
                .iter()
                .any(|e| e == want || (want.contains(' ') && e.contains(want)))
            {
                *seen = l.len();
                return new;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{want}` event: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn file(h: &RealCli, name: &str) -> PathBuf {
    h.env.cwd().join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_between_the_turns_of_a_live_session() {
    let h = RealCli::start(
        &Subprocess,
        vec![
            Turn::tool_use("Bash", bash("touch one.txt")),
            Turn::text("turn one"),
            Turn::tool_use("Bash", bash("touch two.txt")),
            Turn::text("turn two"),
            Turn::tool_use("Bash", bash("touch three.txt")),
            Turn::text("turn three"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    rhai(dir.path(), "policy", DENY_TOUCH, "");
    let manager = PluginManager::new();
    let log = record(&manager);
    assert!(manager.load_dir(dir.path()).await.is_empty());
    let _watcher = manager
        .watch(dir.path(), Duration::from_millis(100))
        .unwrap();
    let mut seen = log.lock().unwrap().len();
    let client = Client::connect(
        h.options()
            .allowed_tools(["Bash"])
            .plugins(&manager)
            .build(),
    )
    .await
    .expect("connect");

    // v1 denies.
    let told = turn(&client, &h, "one").await;
    assert!(told.contains("no touching"), "{told}");
    assert!(!file(&h, "one.txt").exists());

    // A broken version: the old one keeps serving, the failure is reported.
    rhai(dir.path(), "policy", "fn pre_tool_use(input) { #{ ", "");
    let events = next_events(&log, &mut seen, "the old version keeps serving").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("policy:active:reload failed")),
        "{events:?}"
    );
    let info = manager.list().remove(0);
    assert_eq!(info.state, PluginState::Active);
    assert!(info.error.unwrap().contains("main.rhai"));
    let told = turn(&client, &h, "two").await;
    assert!(told.contains("no touching"), "{told}");
    assert!(!file(&h, "two.txt").exists());

    // v3 has no objection: the next tool call of the same session sees it.
    rhai(
        dir.path(),
        "policy",
        "fn pre_tool_use(input) { () }",
        "description = \"v3\"\n",
    );
    next_events(&log, &mut seen, "policy:active").await;
    assert_eq!(manager.list()[0].error, None);
    let told = turn(&client, &h, "three").await;
    assert!(!told.contains("no touching"), "{told}");
    assert!(file(&h, "three.txt").exists());

    // Removed: unloaded, its handler off the bus.
    std::fs::remove_dir_all(dir.path().join("policy")).unwrap();
    next_events(&log, &mut seen, "policy:unloaded").await;
    assert_eq!(manager.state("policy"), Some(PluginState::Unloaded));
    assert!(manager.bus().hook_events().is_empty());
    client.disconnect().await.expect("disconnect");
}

/// A coprocessor that misbehaves on its first hook call only (a marker file remembers it across
/// restarts): `crash` exits, `hang` never answers.
fn coprocessor(dir: &Path, name: &str, misbehave: &str) {
    let script = format!(
        r#"import json, os, sys, time
MARK = "first-call-done"
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
send({{"hello": {{"protocol": 1, "hooks": ["PreToolUse"], "tools": []}}}})
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("method") == "hook" and not os.path.exists(MARK):
        open(MARK, "w").close()
        {misbehave}
    if "id" in msg:
        send({{"id": msg["id"], "result": None}})
"#
    );
    write(
        dir,
        name,
        &[
            (
                "plugin.toml",
                &format!(
                    "name = \"{name}\"\nversion = \"1.0.0\"\nruntime = \"process\"\n\
                     entry = [\"python3\", \"-u\", \"copro.py\"]\ntimeout_ms = 1500\n"
                ),
            ),
            ("copro.py", &script),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_plugins_are_stopped_or_restarted_and_the_session_goes_on() {
    let h = RealCli::start(
        &Subprocess,
        vec![
            Turn::tool_use("Bash", bash("touch first.txt")),
            Turn::text("turn one"),
            Turn::tool_use("Bash", bash("touch second.txt")),
            Turn::text("turn two"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    rhai(
        dir.path(),
        "spin",
        "fn pre_tool_use(input) { let n = 0; loop { n += 1; } }",
        "[limits]\nmax_operations = 0\nmax_wall_ms = 300\n",
    );
    rhai(
        dir.path(),
        "hungry",
        "fn pre_tool_use(input) { let a = []; loop { a.push(\"xxxxxxxxxxxxxxxx\"); } }",
        "[limits]\nmax_operations = 0\nmax_array_size = 10000\n",
    );
    coprocessor(
        dir.path(),
        "crash",
        "sys.stderr.write('crash: giving up\\n'); sys.exit(3)",
    );
    coprocessor(dir.path(), "hang", "time.sleep(3600)");
    let manager = PluginManager::new();
    let problems = manager.load_dir(dir.path()).await;
    assert!(problems.is_empty(), "{problems:?}");
    let client = Client::connect(
        h.options()
            .allowed_tools(["Bash"])
            .plugins(&manager)
            .build(),
    )
    .await
    .expect("connect");

    // Every plugin fails open: the tool runs, the turn ends normally.
    turn(&client, &h, "one").await;
    assert!(file(&h, "first.txt").exists());
    let errors: std::collections::BTreeMap<String, (String, u64)> = manager
        .list()
        .into_iter()
        .map(|p| (p.name, (p.error.unwrap_or_default(), p.failures)))
        .collect();
    assert!(
        errors["spin"].0.contains("plugin `spin`") && errors["spin"].0.contains("wall time limit"),
        "{errors:?}"
    );
    assert!(errors["hungry"].0.contains("max_array_size"), "{errors:?}");
    assert!(
        errors["crash"].0.contains("coprocessor `crash` exited")
            && errors["crash"].0.contains("crash: giving up"),
        "{errors:?}"
    );
    assert!(
        errors["hang"].0.contains("did not answer within 1500 ms"),
        "{errors:?}"
    );
    assert!(errors.values().all(|(_, n)| *n == 1), "{errors:?}");

    // The coprocessors were restarted: the next turn's calls succeed (the scripts hit their
    // limits again, counted, and the session still goes on).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !dir.path().join("hang/first-call-done").exists()
        || !dir.path().join("crash/first-call-done").exists()
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait for the restarts (after a 100 ms backoff): probe until a call costs neither
    // coprocessor a failure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let before = failures(&manager);
        manager
            .bus()
            .run_hook(
                claude_conduit::hooks::HookInput::from_wire(serde_json::json!({
                    "session_id": "probe", "transcript_path": "/t", "cwd": "/",
                    "hook_event_name": "PreToolUse", "tool_name": "Read",
                    "tool_input": {}, "tool_use_id": "p"
                })),
                None,
            )
            .await;
        let after = failures(&manager);
        if after["crash"] == before["crash"] && after["hang"] == before["hang"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coprocessors did not come back: {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = failures(&manager);
    turn(&client, &h, "two").await;
    assert!(file(&h, "second.txt").exists());
    let after = failures(&manager);
    assert_eq!(
        after["crash"], before["crash"],
        "the restarted crash answered"
    );
    assert_eq!(after["hang"], before["hang"], "the restarted hang answered");
    assert!(after["spin"] > before["spin"] && after["hungry"] > before["hungry"]);
    client.disconnect().await.expect("disconnect");
    manager.shutdown().await;
}

fn failures(manager: &PluginManager) -> std::collections::BTreeMap<String, u64> {
    manager
        .list()
        .into_iter()
        .map(|p| (p.name, p.failures))
        .collect()
}

/// A plugin's `can_use_tool` policy (issue 13's "permission policies"): the CLI asks (no
/// `allowed_tools`), the Rhai policy denies the `touch` before the session's own handler is
/// asked, and the model is told the policy's reason; a changed policy answers the next call of
/// the same session, and with no objection left the session's own handler decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_can_use_tool_policy_denies_before_the_sessions_own_handler() {
    let h = RealCli::start(
        &Subprocess,
        vec![
            Turn::tool_use("Bash", bash("touch denied.txt")),
            Turn::text("turn one"),
            Turn::tool_use("Bash", bash("touch allowed.txt")),
            Turn::text("turn two"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    rhai(
        dir.path(),
        "policy",
        r#"
fn can_use_tool(input) {
    if input.tool_name == "Bash" && input.input.command.contains("touch") {
        return #{ decision: "deny", reason: "plugin policy: no touching" };
    }
}
"#,
        "",
    );
    let manager = PluginManager::new();
    assert!(manager.load_dir(dir.path()).await.is_empty());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a = asked.clone();
    let client = Client::connect(
        h.options()
            .can_use_tool(move |req: claude_conduit::permission::PermissionRequest| {
                a.lock().unwrap().push(req.tool_name.clone());
                futures::future::ready(claude_conduit::permission::PermissionDecision::allow())
            })
            .plugins(&manager)
            .build(),
    )
    .await
    .expect("connect");

    let told = turn(&client, &h, "one").await;
    assert!(told.contains("plugin policy: no touching"), "{told}");
    assert!(!file(&h, "denied.txt").exists());
    assert!(
        asked.lock().unwrap().is_empty(),
        "the session's handler is not asked after a plugin deny"
    );

    rhai(dir.path(), "policy", "fn can_use_tool(input) { () }", "");
    assert!(manager.sync_dir(dir.path()).await.is_empty());
    let told = turn(&client, &h, "two").await;
    assert!(!told.contains("no touching"), "{told}");
    assert!(file(&h, "allowed.txt").exists());
    assert_eq!(*asked.lock().unwrap(), ["Bash"]);
    client.disconnect().await.expect("disconnect");
}
