use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;
use crate::events::Event;

pub(super) fn write(dir: &Path, name: &str, files: &[(&str, &str)]) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for (f, body) in files {
        std::fs::write(d.join(f), body).unwrap();
    }
}

fn pre_tool_use(command: &str) -> HookInput {
    HookInput::from_wire(json!({
        "session_id": "s", "transcript_path": "/t", "cwd": "/", "hook_event_name": "PreToolUse",
        "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": "t1"
    }))
}

/// A native plugin that records its init and cleanup.
struct Recorder(Arc<Mutex<Vec<String>>>);
struct Running(String, Arc<Mutex<Vec<String>>>);
impl Plugin for Running {
    fn cleanup(&self) -> BoxFuture<'static, ()> {
        self.1.lock().unwrap().push(format!("cleanup {}", self.0));
        Box::pin(async {})
    }
}
impl NativePlugin for Recorder {
    fn init(&self, ctx: PluginContext) -> BoxFuture<'static, Result<Arc<dyn Plugin>, String>> {
        let log = self.0.clone();
        Box::pin(async move {
            log.lock().unwrap().push(format!("init {}", ctx.name));
            Ok(Arc::new(Running(ctx.name, log)) as Arc<dyn Plugin>)
        })
    }
}

fn native(name: &str, version: &str, deps: &[(&str, &str)]) -> Manifest {
    let mut m = Manifest::new(
        name,
        semver::Version::parse(version).unwrap(),
        Runtime::Native,
    );
    m.entry = Entry::One("recorder".into());
    for (d, r) in deps {
        m = m.depends_on(*d, semver::VersionReq::parse(r).unwrap());
    }
    m
}

#[tokio::test]
async fn plugins_initialize_in_dependency_order_and_unload_is_guarded() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let manager = PluginManager::new();
    manager.register_native("recorder", Recorder(log.clone()));
    let states = Arc::new(Mutex::new(Vec::new()));
    let s = states.clone();
    manager.bus().on(EventKind::Plugin, 0, move |e| {
        if let Event::Plugin { name, state, .. } = e {
            s.lock().unwrap().push(format!("{name}:{state}"));
        }
        Ok(Outcome::Continue)
    });
    let problems = manager
        .load(vec![
            (native("app", "1.0.0", &[("db", "^2"), ("log", "*")]), None),
            (native("db", "2.1.0", &[("log", "^1")]), None),
            (native("log", "1.0.0", &[]), None),
        ])
        .await;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        *log.lock().unwrap(),
        ["init log", "init db", "init app"],
        "dependencies initialize first"
    );
    assert!(
        manager
            .list()
            .iter()
            .all(|p| p.state == PluginState::Active)
    );
    let s = states.lock().unwrap().clone();
    let app: Vec<&String> = s.iter().filter(|x| x.starts_with("app:")).collect();
    assert_eq!(
        app,
        [
            "app:discovered",
            "app:resolved",
            "app:initializing",
            "app:active"
        ]
    );
    // Guarded unload: `log` has active dependants, listed in the error.
    let e = manager.unload("log").await.unwrap_err();
    assert_eq!(
        e,
        "cannot unload `log`: active plugins depend on it: app, db"
    );
    assert_eq!(manager.state("log"), Some(PluginState::Active));
    manager.unload("app").await.unwrap();
    manager.unload("db").await.unwrap();
    manager.unload("log").await.unwrap();
    assert_eq!(manager.state("log"), Some(PluginState::Unloaded));
    assert!(log.lock().unwrap().ends_with(&[
        "cleanup app".to_owned(),
        "cleanup db".to_owned(),
        "cleanup log".to_owned()
    ]));
    assert!(
        states
            .lock()
            .unwrap()
            .ends_with(&["log:unloading".to_owned(), "log:unloaded".to_owned()])
    );
}

#[tokio::test]
async fn missing_mismatched_and_cyclic_dependencies_fail_with_named_errors() {
    let manager = PluginManager::new();
    manager.register_native("recorder", Recorder(Default::default()));
    let problems = manager
        .load(vec![
            (native("a", "1.0.0", &[("ghost", "^1")]), None),
            (native("b", "1.0.0", &[("c", "^2")]), None),
            (native("c", "1.5.0", &[]), None),
            (native("x", "1.0.0", &[("y", "*")]), None),
            (native("y", "1.0.0", &[("x", "*")]), None),
        ])
        .await;
    assert!(
        problems.contains(&"plugin `a` depends on `ghost` (^1), which is not loaded".to_owned()),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"plugin `b` depends on `c` ^2, but version 1.5.0 is loaded".to_owned()),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"dependency cycle: x -> y -> x".to_owned()),
        "{problems:?}"
    );
    let state = |n: &str| manager.state(n).unwrap();
    assert_eq!(state("a"), PluginState::Failed);
    assert_eq!(state("b"), PluginState::Failed);
    assert_eq!(state("c"), PluginState::Active);
    assert_eq!(state("x"), PluginState::Failed);
    let info = manager.list();
    let b = info.iter().find(|p| p.name == "b").unwrap();
    assert!(
        b.error.as_deref().unwrap().contains("required")
            || b.error.as_deref().unwrap().contains("^2")
    );
}

#[test]
fn unknown_manifest_keys_are_errors_naming_the_key_and_the_file() {
    let file = Path::new("/plugins/p/plugin.toml");
    let e = Manifest::parse(
        "name = \"p\"\nversion = \"1.0.0\"\nruntime = \"rhai\"\nentry = \"main.rhai\"\nentrypoint = \"x\"\n",
        file,
    )
    .unwrap_err();
    assert_eq!(e.file, file);
    assert_eq!(e.line, 5);
    assert!(e.message.contains("unknown field `entrypoint`"), "{e}");
    assert!(
        e.to_string().starts_with("/plugins/p/plugin.toml:5: "),
        "{e}"
    );
    let bad_version = Manifest::parse(
        "name = \"p\"\nversion = \"one\"\nruntime = \"rhai\"\nentry = \"m\"\n",
        file,
    )
    .unwrap_err();
    assert_eq!(bad_version.line, 2, "{bad_version}");
    let bad_runtime = Manifest::parse(
        "name = \"p\"\nversion = \"1.0.0\"\nruntime = \"lua\"\nentry = \"m\"\n",
        file,
    )
    .unwrap_err();
    assert_eq!(bad_runtime.line, 3, "{bad_runtime}");
}

#[tokio::test]
async fn a_config_that_fails_its_schema_fails_init_with_the_path() {
    let manager = PluginManager::new();
    manager.register_native("recorder", Recorder(Default::default()));
    let mut m = native("cfg", "1.0.0", &[]);
    m.config = Some(
        toml::from_str(
            "type = \"object\"\nrequired = [\"limit\"]\n[properties.limit]\ntype = \"integer\"\nminimum = 1\n",
        )
        .unwrap(),
    );
    manager.set_config("cfg", json!({"limit": 0}));
    let problems = manager.load(vec![(m.clone(), None)]).await;
    assert_eq!(manager.state("cfg"), Some(PluginState::Failed));
    assert!(
        problems[0].contains("configuration of `cfg` is invalid at `/limit`"),
        "{problems:?}"
    );
    manager.set_config("cfg", json!({"limit": 3}));
    assert!(manager.load(vec![(m, None)]).await.is_empty());
    assert_eq!(manager.state("cfg"), Some(PluginState::Active));
}

#[test]
fn hook_answers_in_map_form() {
    let pre = HookEvent::PreToolUse;
    let out = output_from_map(
        &pre,
        &json!({"decision": "deny", "reason": "no", "updated_input": {"command": "ls"}}),
    )
    .unwrap()
    .unwrap();
    let wire = out.to_wire();
    assert_eq!(wire["hookSpecificOutput"]["permissionDecision"], "deny");
    assert_eq!(wire["hookSpecificOutput"]["permissionDecisionReason"], "no");
    assert_eq!(wire["hookSpecificOutput"]["updatedInput"]["command"], "ls");
    assert_eq!(output_from_map(&pre, &json!(null)).unwrap(), None);
    assert!(
        output_from_map(&pre, &json!({"decison": "deny"}))
            .unwrap_err()
            .contains("unknown key `decison`")
    );
    let ctx = output_from_map(
        &HookEvent::UserPromptSubmit,
        &json!({"additional_context": "be brief"}),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        ctx.to_wire()["hookSpecificOutput"]["additionalContext"],
        "be brief"
    );
    assert_eq!(hook_function_name(&HookEvent::PreToolUse), "pre_tool_use");
    assert_eq!(
        hook_function_name(&HookEvent::UserPromptSubmit),
        "user_prompt_submit"
    );
    assert_eq!(hook_function_name(&HookEvent::Stop), "stop");
}

#[cfg(feature = "rhai")]
pub(super) mod rhai_scripts {
    use super::*;

    const DENY_TOUCH: &str = r#"
fn pre_tool_use(input) {
    if input.tool_name == "Bash" && input.tool_input.command.contains("touch") {
        return #{ decision: "deny", reason: "no touching" };
    }
}
"#;

    pub(in crate::plugin) fn rhai_plugin(dir: &Path, name: &str, script: &str, extra: &str) {
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

    async fn decision(manager: &PluginManager, command: &str) -> Option<String> {
        let out = manager.bus().run_hook(pre_tool_use(command), None).await;
        out.to_wire()["hookSpecificOutput"]["permissionDecision"]
            .as_str()
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn a_script_denies_by_the_cli_field_names() {
        let dir = tempfile::tempdir().unwrap();
        rhai_plugin(dir.path(), "no-touch", DENY_TOUCH, "");
        let manager = PluginManager::new();
        assert!(manager.load_dir(dir.path()).await.is_empty());
        assert_eq!(decision(&manager, "touch x").await.as_deref(), Some("deny"));
        assert_eq!(decision(&manager, "ls").await, None);
        let info = &manager.list()[0];
        assert_eq!(info.hooks, ["PreToolUse"]);
        assert_eq!(info.runtime, Runtime::Rhai);
    }

    #[tokio::test]
    async fn looping_and_hungry_scripts_are_stopped_by_named_limits() {
        let dir = tempfile::tempdir().unwrap();
        rhai_plugin(
            dir.path(),
            "spin",
            "fn pre_tool_use(input) { let n = 0; loop { n += 1; } }",
            "[limits]\nmax_operations = 0\nmax_wall_ms = 200\n",
        );
        rhai_plugin(
            dir.path(),
            "count",
            "fn pre_tool_use(input) { let n = 0; loop { n += 1; } }",
            "[limits]\nmax_operations = 50000\n",
        );
        rhai_plugin(
            dir.path(),
            "hungry",
            "fn pre_tool_use(input) { let s = \"xxxxxxxx\"; loop { s += s; } }",
            "on_error = \"deny\"\n[limits]\nmax_string_size = 65536\n",
        );
        rhai_plugin(
            dir.path(),
            "deep",
            "fn f(n) { f(n + 1) } fn pre_tool_use(input) { f(0) }",
            "[limits]\nmax_call_depth = 16\n",
        );
        let manager = PluginManager::new();
        assert!(manager.load_dir(dir.path()).await.is_empty());
        // `hungry` fails closed: its limit error is the deny reason.
        let out = manager.bus().run_hook(pre_tool_use("ls"), None).await;
        let wire = out.to_wire();
        assert_eq!(wire["hookSpecificOutput"]["permissionDecision"], "deny");
        let reason = wire["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap();
        assert!(reason.contains("plugin `hungry`"), "{reason}");
        assert!(reason.contains("max_string_size"), "{reason}");
        let errors: std::collections::BTreeMap<String, String> = manager
            .list()
            .into_iter()
            .map(|p| (p.name, p.error.unwrap_or_default()))
            .collect();
        assert!(
            errors["spin"].contains("wall time limit hit (200 ms, `limits.max_wall_ms`)"),
            "{errors:?}"
        );
        assert!(
            errors["count"].contains("operations limit hit (50000 operations"),
            "{errors:?}"
        );
        assert!(
            errors["deep"].contains("call depth limit hit"),
            "{errors:?}"
        );
        assert!(manager.list().iter().all(|p| p.failures == 1));
        // Still serving after the limits: a second call runs (and is stopped) again.
        manager.bus().run_hook(pre_tool_use("ls"), None).await;
        assert!(manager.list().iter().all(|p| p.failures == 2));
    }

    #[tokio::test]
    async fn a_script_has_no_file_access_and_no_eval() {
        let dir = tempfile::tempdir().unwrap();
        rhai_plugin(
            dir.path(),
            "reader",
            "fn pre_tool_use(input) { let f = open_file(\"/etc/passwd\"); }",
            "",
        );
        let manager = PluginManager::new();
        assert!(manager.load_dir(dir.path()).await.is_empty());
        assert_eq!(decision(&manager, "x").await, None);
        let err = manager.list()[0].error.clone().unwrap();
        assert!(err.contains("open_file"), "{err}");
        let problems = {
            rhai_plugin(dir.path(), "evil", "fn pre_tool_use(i) { eval(\"1\") }", "");
            manager.check_dir(dir.path())
        };
        assert!(
            problems.iter().any(|p| p.file.ends_with("evil/main.rhai")),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn reload_swaps_in_a_new_version_and_keeps_the_old_one_when_broken() {
        let dir = tempfile::tempdir().unwrap();
        rhai_plugin(dir.path(), "policy", DENY_TOUCH, "");
        let manager = PluginManager::new();
        assert!(manager.load_dir(dir.path()).await.is_empty());
        assert_eq!(decision(&manager, "touch a").await.as_deref(), Some("deny"));
        // Allow now.
        rhai_plugin(
            dir.path(),
            "policy",
            "fn pre_tool_use(input) { #{ decision: \"allow\", reason: \"fine\" } }",
            "",
        );
        assert!(manager.sync_dir(dir.path()).await.is_empty());
        assert_eq!(
            decision(&manager, "touch a").await.as_deref(),
            Some("allow")
        );
        // Broken: the allow version keeps serving; the error is reported.
        rhai_plugin(dir.path(), "policy", "fn pre_tool_use(input) { #{ ", "");
        let problems = manager.sync_dir(dir.path()).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("old version keeps serving"),
            "{problems:?}"
        );
        assert_eq!(
            decision(&manager, "touch a").await.as_deref(),
            Some("allow")
        );
        let info = &manager.list()[0];
        assert_eq!(info.state, PluginState::Active);
        assert!(
            info.error.as_deref().unwrap().contains("main.rhai"),
            "{info:?}"
        );
        // Removed: unloaded, its handler gone.
        std::fs::remove_dir_all(dir.path().join("policy")).unwrap();
        assert!(manager.sync_dir(dir.path()).await.is_empty());
        assert_eq!(manager.state("policy"), Some(PluginState::Unloaded));
        assert!(manager.bus().hook_events().is_empty());
    }
}
