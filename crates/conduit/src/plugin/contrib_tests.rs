//! Permission policies, custom message types, protocol extensions and query layers contributed
//! by plugins, per runtime.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::extension::Direction;
use crate::permission::PermissionHandler;

use super::tests::write;

fn bash(command: &str) -> PermissionRequest {
    PermissionRequest::new("Bash", json!({"command": command}))
}

type PolicyFn =
    dyn Fn(&PermissionRequest) -> Result<Option<PermissionDecision>, String> + Send + Sync;

type FrameFn = dyn Fn(FrameRef<'_>) -> Result<Action, String> + Send + Sync;

/// A native plugin built from closures.
#[derive(Clone, Default)]
struct Parts {
    policy: Option<Arc<PolicyFn>>,
    frames: Vec<String>,
    on_frame: Option<Arc<FrameFn>>,
    types: Vec<CustomType>,
    layer: Option<QueryLayer>,
}

impl Plugin for Parts {
    fn has_permission_policy(&self) -> bool {
        self.policy.is_some()
    }
    fn can_use_tool(
        &self,
        request: PermissionRequest,
    ) -> BoxFuture<'static, Result<Option<PermissionDecision>, String>> {
        let answer = self.policy.as_ref().map_or(Ok(None), |p| p(&request));
        Box::pin(async move { answer })
    }
    fn custom_types(&self) -> Vec<CustomType> {
        self.types.clone()
    }
    fn frame_types(&self) -> Vec<String> {
        self.frames.clone()
    }
    fn on_frame(&self, frame: FrameRef<'_>) -> Result<Action, String> {
        self.on_frame
            .as_ref()
            .map_or(Ok(Action::Pass), |f| f(frame))
    }
    fn query_layer(&self) -> Option<QueryLayer> {
        self.layer.clone()
    }
}

/// Its factory: each init hands out the parts currently set (a test swaps them to "reload").
#[derive(Clone, Default)]
struct Factory(Arc<Mutex<Parts>>);

impl NativePlugin for Factory {
    fn init(&self, _ctx: PluginContext) -> BoxFuture<'static, Result<Arc<dyn Plugin>, String>> {
        let parts = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(Arc::new(parts) as Arc<dyn Plugin>) })
    }
}

fn policy(
    f: impl Fn(&PermissionRequest) -> Result<Option<PermissionDecision>, String> + Send + Sync + 'static,
) -> Parts {
    Parts {
        policy: Some(Arc::new(f)),
        ..Parts::default()
    }
}

fn manifest(name: &str, priority: i32) -> Manifest {
    let mut m = Manifest::new(name, semver::Version::new(1, 0, 0), Runtime::Native);
    m.priority = priority;
    m
}

async fn load_native(manager: &PluginManager, name: &str, priority: i32, parts: Parts) -> Factory {
    let factory = Factory(Arc::new(Mutex::new(parts)));
    manager.register_native(name, factory.clone());
    let problems = manager.load(vec![(manifest(name, priority), None)]).await;
    assert!(problems.is_empty(), "{problems:?}");
    factory
}

fn input_of(d: &PermissionDecision) -> Option<&Value> {
    match d {
        PermissionDecision::Allow { updated_input, .. } => updated_input.as_ref(),
        PermissionDecision::Deny { .. } => None,
    }
}

#[tokio::test]
async fn native_policies_combine_like_the_bus_any_deny_wins_first_updated_input_applies() {
    let manager = PluginManager::new();
    let low_calls = Arc::new(AtomicUsize::new(0));
    let calls = low_calls.clone();
    // Priority 0 denies `rm`; priority 10 and 5 allow everything with an input of their own.
    load_native(
        &manager,
        "low",
        0,
        policy(move |r| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(r.input_str("command")
                .is_some_and(|c| c.contains("rm"))
                .then(|| PermissionDecision::deny("low says no rm")))
        }),
    )
    .await;
    load_native(
        &manager,
        "high",
        10,
        policy(|_| {
            Ok(Some(PermissionDecision::allow_with_input(
                json!({"command": "from high"}),
            )))
        }),
    )
    .await;
    load_native(
        &manager,
        "mid",
        5,
        policy(|r| {
            Ok(Some(if r.input_str("command") == Some("halt") {
                PermissionDecision::deny_and_interrupt("mid halts")
            } else {
                PermissionDecision::allow_with_input(json!({"command": "from mid"}))
            }))
        }),
    )
    .await;
    assert!(manager.has_permission_policies());
    let d = manager.can_use_tool(&bash("rm -rf x")).await.unwrap();
    assert_eq!(
        d,
        PermissionDecision::deny("low says no rm"),
        "a low deny beats high allows"
    );
    let d = manager.can_use_tool(&bash("ls")).await.unwrap();
    assert_eq!(input_of(&d), Some(&json!({"command": "from high"})));
    // The first deny ends the chain: `low` is not asked after `mid` denied.
    let before = low_calls.load(Ordering::SeqCst);
    let d = manager.can_use_tool(&bash("halt")).await.unwrap();
    assert_eq!(d, PermissionDecision::deny_and_interrupt("mid halts"));
    assert_eq!(low_calls.load(Ordering::SeqCst), before);
    assert!(manager.list().iter().all(|i| i.permission_policy));
}

#[tokio::test]
async fn the_users_handler_comes_last_and_is_not_asked_after_a_plugin_deny() {
    let manager = PluginManager::new();
    load_native(
        &manager,
        "guard",
        0,
        policy(|r| {
            Ok(match r.input_str("command") {
                Some(c) if c.contains("rm") => Some(PermissionDecision::deny("guard: no rm")),
                Some("ls") => Some(PermissionDecision::allow_with_input(
                    json!({"command": "ls -a"}),
                )),
                _ => None,
            })
        }),
    )
    .await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a = asked.clone();
    let user = move |r: PermissionRequest| {
        let a = a.clone();
        async move {
            let c = r.input_str("command").unwrap_or_default().to_owned();
            a.lock().unwrap().push(c.clone());
            if c == "curl" {
                PermissionDecision::deny("the user says no")
            } else {
                PermissionDecision::allow_with_input(json!({"command": "from the user"}))
            }
        }
    };
    let handler = manager.permission_handler(Some(Arc::new(user)));
    assert_eq!(
        handler.decide(bash("rm x")).await,
        PermissionDecision::deny("guard: no rm")
    );
    assert!(asked.lock().unwrap().is_empty(), "not asked after a deny");
    // The plugin's updated input comes first in order.
    let d = handler.decide(bash("ls")).await;
    assert_eq!(input_of(&d), Some(&json!({"command": "ls -a"})));
    // The plugin abstains: the user's decision, deny or allow.
    assert_eq!(
        handler.decide(bash("curl")).await,
        PermissionDecision::deny("the user says no")
    );
    let d = handler.decide(bash("pwd")).await;
    assert_eq!(input_of(&d), Some(&json!({"command": "from the user"})));
    assert_eq!(*asked.lock().unwrap(), ["ls", "curl", "pwd"]);
    // No user handler: what no policy allowed is denied, naming the tool.
    let alone = manager.permission_handler(None);
    match alone.decide(bash("pwd")).await {
        PermissionDecision::Deny { message, .. } => {
            assert!(message.contains("`Bash`"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(alone.decide(bash("ls")).await.is_allow());
}

#[tokio::test]
async fn a_failing_policy_counts_as_its_on_error_says_and_a_reload_takes_effect_next_call() {
    let manager = PluginManager::new();
    let factory = load_native(
        &manager,
        "flaky",
        0,
        policy(|_| Err("backend unreachable".into())),
    )
    .await;
    assert_eq!(manager.can_use_tool(&bash("ls")).await, None, "fail open");
    let info = &manager.list()[0];
    assert_eq!(info.failures, 1);
    assert!(
        info.error
            .as_deref()
            .unwrap()
            .contains("backend unreachable"),
        "{info:?}"
    );
    // Fail closed.
    let mut m = Manifest::new("flaky", semver::Version::new(1, 1, 0), Runtime::Native);
    m.on_error = OnError::Deny;
    manager.reload("flaky", Some(m.clone())).await.unwrap();
    match manager.can_use_tool(&bash("ls")).await {
        Some(PermissionDecision::Deny { message, .. }) => {
            assert!(message.contains("plugin `flaky` failed"), "{message}");
            assert!(message.contains("backend unreachable"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A panicking policy is a failure too, not a crash.
    *factory.0.lock().unwrap() = policy(|_| panic!("bug"));
    manager.reload("flaky", Some(m.clone())).await.unwrap();
    assert!(!manager.can_use_tool(&bash("ls")).await.unwrap().is_allow());
    // A changed policy serves the next call.
    *factory.0.lock().unwrap() = policy(|_| Ok(Some(PermissionDecision::allow())));
    manager.reload("flaky", Some(m)).await.unwrap();
    assert_eq!(
        manager.can_use_tool(&bash("ls")).await,
        Some(PermissionDecision::allow())
    );
    // Unloaded: no policy left.
    manager.unload("flaky").await.unwrap();
    assert!(!manager.has_permission_policies());
    assert_eq!(manager.can_use_tool(&bash("ls")).await, None);
}

#[tokio::test]
async fn declared_contributions_must_be_provided() {
    let manager = PluginManager::new();
    manager.register_native("bare", Factory::default());
    let mut m = Manifest::new("bare", semver::Version::new(1, 0, 0), Runtime::Native);
    m.contributes.can_use_tool = true;
    m.contributes.frames = vec!["progress".into()];
    let problems = manager.load(vec![(m, None)]).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("can_use_tool"), "{problems:?}");
    assert!(problems[0].contains("frames `progress`"), "{problems:?}");
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Progress {
    percent: u8,
}

#[tokio::test]
async fn native_custom_types_and_frame_handlers_act_on_frames_and_follow_reloads() {
    let manager = PluginManager::new();
    let parts = |tag: &'static str| Parts {
        types: vec![CustomType::new::<Progress>("progress")],
        frames: vec!["progress".into()],
        on_frame: Some(Arc::new(move |f: FrameRef<'_>| {
            if f.value["percent"] == 100 {
                return Ok(Action::Reply(Bytes::from(format!(
                    r#"{{"type":"ack","by":"{tag}","dir":"{}"}}"#,
                    f.direction.as_str()
                ))));
            }
            if f.value["percent"] == 13 {
                return Err("unlucky".into());
            }
            Ok(Action::Pass)
        })),
        ..Parts::default()
    };
    let factory = load_native(&manager, "progress", 0, parts("v1")).await;
    let ext = manager.extensions();
    assert_eq!(ext.type_names(), ["progress"]);
    let typed = ext
        .decode(Bytes::from_static(br#"{"type":"progress","percent":40}"#))
        .unwrap()
        .unwrap();
    assert_eq!(typed.custom::<Progress>(), Some(&Progress { percent: 40 }));
    let done = Bytes::from_static(br#"{"type":"progress","percent":100}"#);
    let (frame, reply) = ext.intercept(Direction::CliToSdk, done.clone());
    assert!(frame.is_none());
    assert_eq!(
        reply.unwrap().as_ref(),
        br#"{"type":"ack","by":"v1","dir":"cli->sdk"}"#
    );
    // A failing handler: passed on (on_error = ignore), counted.
    let thirteen = Bytes::from_static(br#"{"type":"progress","percent":13}"#);
    assert_eq!(
        ext.intercept(Direction::CliToSdk, thirteen.clone()),
        (Some(thirteen), None)
    );
    assert_eq!(manager.list()[0].failures, 1);
    // A reload serves the next frame of the same `Extensions`.
    *factory.0.lock().unwrap() = parts("v2");
    manager
        .reload("progress", Some(manifest("progress", 0)))
        .await
        .unwrap();
    let (_, reply) = ext.intercept(Direction::SdkToCli, done.clone());
    assert_eq!(
        reply.unwrap().as_ref(),
        br#"{"type":"ack","by":"v2","dir":"sdk->cli"}"#
    );
    // Unloaded: frames pass untouched.
    manager.unload("progress").await.unwrap();
    assert_eq!(
        ext.intercept(Direction::CliToSdk, done.clone()),
        (Some(done), None)
    );
}

mod layers {
    use super::*;
    use crate::middleware::{InterceptLayer, Interceptor, QueryRequest, QueryService};
    use crate::transport::{MemoryTransport, memory::ScriptedCli};
    use crate::{Message, Options};
    use futures::StreamExt;
    use tower::{ServiceBuilder, ServiceExt};

    /// Appends its tag to the prompt; records `before`/`after` calls.
    struct Tag(&'static str, Arc<Mutex<Vec<String>>>);
    impl Interceptor for Tag {
        fn before(&self, mut req: QueryRequest) -> crate::Result<QueryRequest> {
            self.1.lock().unwrap().push(format!("before {}", self.0));
            if let crate::Prompt::Message(m) = &mut req.prompt
                && let crate::message::UserContent::Text(text) = m.content()
            {
                *m = crate::message::UserInput::new(format!("{text} +{}", self.0));
            }
            Ok(req)
        }
        fn after(&self, message: Message) -> Message {
            if message.is_result() {
                self.1.lock().unwrap().push(format!("after {}", self.0));
            }
            message
        }
    }

    fn layer_of(tag: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Parts {
        Parts {
            layer: Some(QueryLayer::new(InterceptLayer::new(Tag(tag, log.clone())))),
            ..Parts::default()
        }
    }

    async fn ask(
        service: &(
             impl tower::Service<
            QueryRequest,
            Response = crate::Query,
            Error = crate::Error,
            Future: Send,
        > + Clone
         ),
    ) -> String {
        let stream = service
            .clone()
            .oneshot(QueryRequest::new("hi", Options::default()))
            .await
            .unwrap();
        let items: Vec<_> = stream.collect().await;
        items
            .iter()
            .filter_map(|m| m.as_ref().ok()?.as_assistant().map(|a| a.text()))
            .collect()
    }

    #[tokio::test]
    async fn plugin_layers_wrap_each_query_by_priority_and_follow_reloads() {
        let manager = PluginManager::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        load_native(&manager, "outer", 10, layer_of("outer", &log)).await;
        let inner = load_native(&manager, "inner", 0, layer_of("inner", &log)).await;
        let service =
            ServiceBuilder::new()
                .layer(manager.layer())
                .service(QueryService::with_transport(|| {
                    let (transport, cli) = MemoryTransport::pair(16);
                    ScriptedCli::default().spawn(cli);
                    transport
                }));
        assert_eq!(ask(&service).await, "echo: hi +outer +inner");
        assert_eq!(
            *log.lock().unwrap(),
            ["before outer", "before inner", "after inner", "after outer"]
        );
        assert!(manager.list().iter().all(|i| i.query_layer));
        // Reloaded with another layer: the next query runs it.
        *inner.0.lock().unwrap() = layer_of("inner2", &log);
        manager
            .reload("inner", Some(manifest("inner", 0)))
            .await
            .unwrap();
        assert_eq!(ask(&service).await, "echo: hi +outer +inner2");
        manager.unload("outer").await.unwrap();
        manager.unload("inner").await.unwrap();
        assert_eq!(ask(&service).await, "echo: hi");
    }
}

#[test]
fn policy_and_frame_answers_in_map_form() {
    assert_eq!(decision_from_map(&Value::Null), Ok(None));
    assert_eq!(decision_from_map(&json!({})), Ok(None));
    assert_eq!(
        decision_from_map(&json!({"decision": "allow", "updated_input": {"a": 1}})),
        Ok(Some(PermissionDecision::allow_with_input(json!({"a": 1}))))
    );
    assert_eq!(
        decision_from_map(&json!({"decision": "deny", "reason": "no", "interrupt": true})),
        Ok(Some(PermissionDecision::deny_and_interrupt("no")))
    );
    for bad in [
        json!({"decision": "ask"}),
        json!({"decision": "deny", "updated_input": {}}),
        json!({"decision": "allow", "interrupt": true}),
        json!({"behavior": "allow"}),
        json!("allow"),
    ] {
        assert!(decision_from_map(&bad).is_err(), "{bad}");
    }
    assert_eq!(action_from_map(&Value::Null), Ok(Action::Pass));
    assert_eq!(
        action_from_map(&json!({"action": "swallow"})),
        Ok(Action::Swallow)
    );
    assert_eq!(
        action_from_map(&json!({"action": "reply", "frame": {"type": "x"}})),
        Ok(Action::Reply(Bytes::from_static(br#"{"type":"x"}"#)))
    );
    for bad in [
        json!({"action": "replace"}),
        json!({"action": "explode"}),
        json!({"action": "reply", "frame": "x"}),
        json!({"action": "pass", "extra": 1}),
    ] {
        assert!(action_from_map(&bad).is_err(), "{bad}");
    }
}

#[cfg(feature = "rhai")]
mod rhai_scripts {
    use super::*;

    use crate::plugin::tests::rhai_scripts::rhai_plugin;

    const POLICY: &str = r#"
fn can_use_tool(input) {
    if input.tool_name != "Bash" { return; }
    let c = input.input.command;
    if c.contains("touch") {
        return #{ decision: "deny", reason: "no touching (" + input.tool_use_id + ")" };
    }
    if c == "ls" { return #{ decision: "allow", updated_input: #{ command: "ls -la" } }; }
    if c == "bad" { return #{ decision: "maybe" }; }
    if c == "loop" { loop { } }
}
"#;

    #[tokio::test]
    async fn a_script_policy_allows_denies_rewrites_and_fails_by_its_on_error() {
        let dir = tempfile::tempdir().unwrap();
        rhai_plugin(
            dir.path(),
            "policy",
            POLICY,
            "limits = { max_wall_ms = 200 }\n",
        );
        let manager = PluginManager::new();
        assert!(manager.load_dir(dir.path()).await.is_empty());
        assert!(manager.list()[0].permission_policy);
        let mut touch = bash("touch x");
        touch.raw.insert("tool_use_id".into(), json!("toolu_9"));
        assert_eq!(
            manager.can_use_tool(&touch).await,
            Some(PermissionDecision::deny("no touching (toolu_9)"))
        );
        assert_eq!(
            manager.can_use_tool(&bash("ls")).await,
            Some(PermissionDecision::allow_with_input(
                json!({"command": "ls -la"})
            ))
        );
        assert_eq!(manager.can_use_tool(&bash("pwd")).await, None);
        assert_eq!(
            manager
                .can_use_tool(&PermissionRequest::new("Read", json!({})))
                .await,
            None
        );
        // A bad answer and a runaway script: no opinion (on_error = ignore), reported.
        assert_eq!(manager.can_use_tool(&bash("bad")).await, None);
        assert_eq!(manager.can_use_tool(&bash("loop")).await, None);
        let info = &manager.list()[0];
        assert_eq!(info.failures, 2);
        assert!(
            info.error.as_deref().unwrap().contains("limit hit"),
            "{info:?}"
        );
        // Fail closed, and a changed policy takes effect for the next call.
        rhai_plugin(
            dir.path(),
            "policy",
            POLICY,
            "on_error = \"deny\"\nlimits = { max_wall_ms = 200 }\n",
        );
        assert!(manager.sync_dir(dir.path()).await.is_empty());
        match manager.can_use_tool(&bash("loop")).await {
            Some(PermissionDecision::Deny { message, .. }) => {
                assert!(message.contains("limit hit"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        rhai_plugin(
            dir.path(),
            "policy",
            "fn can_use_tool(input) { #{ decision: \"allow\" } }",
            "",
        );
        assert!(manager.sync_dir(dir.path()).await.is_empty());
        assert_eq!(
            manager.can_use_tool(&bash("touch x")).await,
            Some(PermissionDecision::allow())
        );
    }

    const PROGRESS_SCHEMA: &str = r#"{
        "type": "object",
        "properties": {"percent": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["percent"]
    }"#;

    const HANDLER: &str = r#"
fn on_progress(frame, direction) {
    if frame.percent == 100 {
        return #{ action: "reply", frame: #{ type: "progress_ack", direction: direction } };
    }
    if frame.percent == 0 { return #{ action: "swallow" }; }
    if frame.percent == 50 { frame.label = "half"; return #{ action: "replace", frame: frame }; }
    if frame.percent == 66 { return #{ action: "teleport" }; }
}
fn on_done(frame, direction) { #{ action: "swallow" } }
"#;

    fn messages_plugin(dir: &Path, handler: &str) {
        rhai_plugin(
            dir,
            "progress",
            handler,
            r#"
[[messages]]
type = "progress"
schema = "progress.json"
handler = "on_progress"

[[messages]]
type = "progress"
subtype = "done"
handler = "on_done"
"#,
        );
        std::fs::write(dir.join("progress/progress.json"), PROGRESS_SCHEMA).unwrap();
    }

    #[tokio::test]
    async fn declared_message_types_are_validated_and_a_script_handler_answers_transforms_swallows_or_passes()
     {
        let dir = tempfile::tempdir().unwrap();
        messages_plugin(dir.path(), HANDLER);
        let manager = PluginManager::new();
        let problems = manager.load_dir(dir.path()).await;
        assert!(problems.is_empty(), "{problems:?}");
        let info = &manager.list()[0];
        assert_eq!(info.message_types, ["progress", "progress/done"]);
        assert_eq!(info.frame_types, ["progress"]);
        let ext = manager.extensions();
        // Types: a valid frame typed (as JSON), an invalid one rejected with its path.
        let ok = ext
            .decode(Bytes::from_static(br#"{"type":"progress","percent":40}"#))
            .unwrap()
            .unwrap();
        assert_eq!(ok.custom::<Value>().unwrap()["percent"], 40);
        match ext.decode(Bytes::from_static(br#"{"type":"progress","percent":140}"#)) {
            Some(Err(crate::Error::InvalidFrame { type_, path, .. })) => {
                assert_eq!((type_.as_str(), path.as_str()), ("progress", "/percent"));
            }
            other => panic!("{other:?}"),
        }
        let run = |raw: &'static [u8]| ext.intercept(Direction::CliToSdk, Bytes::from_static(raw));
        let (frame, reply) = run(br#"{"type":"progress","percent":100}"#);
        assert!(frame.is_none());
        let reply: Value = serde_json::from_slice(&reply.unwrap()).unwrap();
        assert_eq!(
            reply,
            json!({"type": "progress_ack", "direction": "cli->sdk"})
        );
        assert_eq!(run(br#"{"type":"progress","percent":0}"#), (None, None));
        let (frame, _) = run(br#"{"type":"progress","percent":50}"#);
        let frame: Value = serde_json::from_slice(&frame.unwrap()).unwrap();
        assert_eq!(frame["label"], "half");
        // No opinion: passed on as it is; a frame failing the schema never reaches the handler.
        for raw in [
            &br#"{"type":"progress","percent":7}"#[..],
            br#"{"type":"progress","percent":-3}"#,
        ] {
            assert_eq!(
                ext.intercept(Direction::CliToSdk, Bytes::from_static(raw)),
                (Some(Bytes::from_static(raw)), None)
            );
        }
        // The subtype's handler wins for its subtype.
        assert_eq!(
            run(br#"{"type":"progress","subtype":"done","percent":100}"#),
            (None, None)
        );
        // A bad answer passes the frame on (on_error = ignore) and is counted.
        let raw = br#"{"type":"progress","percent":66}"#;
        assert_eq!(run(raw), (Some(Bytes::from_static(raw)), None));
        let info = &manager.list()[0];
        assert_eq!(info.failures, 1);
        assert!(
            info.error.as_deref().unwrap().contains("teleport"),
            "{info:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_handler_or_schema_fails_init_and_bad_declarations_fail_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        messages_plugin(dir.path(), "fn on_progress(frame, direction) { }");
        let manager = PluginManager::new();
        let problems = manager.load_dir(dir.path()).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("fn on_done(frame, direction)"),
            "{problems:?}"
        );
        messages_plugin(dir.path(), HANDLER);
        std::fs::remove_file(dir.path().join("progress/progress.json")).unwrap();
        let problems = PluginManager::new().load_dir(dir.path()).await;
        assert!(problems[0].contains("progress.json"), "{problems:?}");
        for (extra, want) in [
            (
                "[[messages]]\ntype = \"x\"\nschema = \"../../etc/schema.json\"\n",
                "inside the plugin's directory",
            ),
            ("[[messages]]\ntype = \"x\"\ncolour = 1\n", "colour"),
        ] {
            rhai_plugin(dir.path(), "bad", "", extra);
            let err = Manifest::load(&dir.path().join("bad")).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        let text = "name = \"p\"\nversion = \"1.0.0\"\nruntime = \"process\"\nentry = \"x\"\n\
                    [[messages]]\ntype = \"x\"\nhandler = \"f\"\n";
        let err = Manifest::parse(text, Path::new("plugin.toml")).unwrap_err();
        assert!(err.message.contains("Rhai function"), "{err}");
    }
}

mod coprocessor {
    use super::*;

    const COPRO: &str = r#"import json, sys
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
send({"hello": {"protocol": 1, "can_use_tool": True, "frames": ["ping"]}})
for line in sys.stdin:
    msg = json.loads(line)
    m, p = msg.get("method"), msg.get("params") or {}
    if m == "can_use_tool":
        c = p["input"].get("command", "")
        if "rm" in c:
            r = {"decision": "deny", "reason": "copro: no rm for " + p["tool_name"]}
        elif c == "crash":
            sys.exit(3)
        else:
            r = None
        send({"id": msg["id"], "result": r})
    elif m == "frame":
        f = p["frame"]
        send({"id": msg["id"], "result": {"action": "reply", "frame": {"type": "pong", "seq": f["seq"], "dir": p["direction"]}}})
    elif "id" in msg:
        send({"id": msg["id"], "result": None})
"#;

    async fn load(dir: &Path, extra: &str) -> PluginManager {
        write(
            dir,
            "copro",
            &[
                (
                    "plugin.toml",
                    &format!(
                        "name = \"copro\"\nversion = \"1.0.0\"\nruntime = \"process\"\n\
                         entry = [\"python3\", \"-u\", \"copro.py\"]\ntimeout_ms = 5000\n{extra}"
                    ),
                ),
                ("copro.py", COPRO),
            ],
        );
        let manager = PluginManager::new();
        let problems = manager.load_dir(dir).await;
        assert!(problems.is_empty(), "{problems:?}");
        manager
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_coprocessor_answers_can_use_tool_and_frames_declared_in_its_hello() {
        let dir = tempfile::tempdir().unwrap();
        let manager = load(dir.path(), "on_error = \"deny\"\n").await;
        let info = &manager.list()[0];
        assert!(info.permission_policy);
        assert_eq!(info.frame_types, ["ping"]);
        assert_eq!(
            manager.can_use_tool(&bash("rm -rf /")).await,
            Some(PermissionDecision::deny("copro: no rm for Bash"))
        );
        assert_eq!(manager.can_use_tool(&bash("ls")).await, None);
        let ext = manager.extensions();
        // On a worker of the multi-thread runtime, as a session's reader runs.
        let (frame, reply) = tokio::spawn(async move {
            ext.intercept(
                Direction::SdkToCli,
                Bytes::from_static(br#"{"type":"ping","seq":7}"#),
            )
        })
        .await
        .unwrap();
        assert!(frame.is_none());
        let reply: Value = serde_json::from_slice(&reply.unwrap()).unwrap();
        assert_eq!(reply, json!({"type": "pong", "seq": 7, "dir": "sdk->cli"}));
        // A crash fails the call: denied under `on_error = "deny"`, with the reason.
        match manager.can_use_tool(&bash("crash")).await {
            Some(PermissionDecision::Deny { message, .. }) => {
                assert!(message.contains("exited"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        manager.shutdown().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_a_coprocessor_frame_handler_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let manager = load(dir.path(), "").await;
        let raw = Bytes::from_static(br#"{"type":"ping","seq":1}"#);
        let ext = manager.extensions();
        assert_eq!(
            ext.intercept(Direction::CliToSdk, raw.clone()),
            (Some(raw), None),
            "passed on (on_error = ignore)"
        );
        let info = &manager.list()[0];
        assert!(
            info.error.as_deref().unwrap().contains("multi-thread"),
            "{info:?}"
        );
        manager.shutdown().await;
    }
}

#[tokio::test]
async fn as_a_pre_tool_use_answer_policies_only_deny_or_rewrite_never_approve() {
    let manager = PluginManager::new();
    load_native(
        &manager,
        "site",
        0,
        policy(|r| {
            Ok(match r.input_str("command") {
                Some("rm") => Some(PermissionDecision::deny("no rm")),
                Some("halt") => Some(PermissionDecision::deny_and_interrupt("halt")),
                Some("ls") => Some(PermissionDecision::allow_with_input(
                    json!({"command": "ls -a"}),
                )),
                Some(_) => Some(PermissionDecision::allow()),
                None => None,
            })
        }),
    )
    .await;
    let hook = |command: &str| {
        HookInput::from_wire(json!({
            "session_id": "s", "transcript_path": "/t", "cwd": "/",
            "hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": {"command": command}, "tool_use_id": "t1"
        }))
    };
    let wire = |out: Option<HookOutput>| out.map(|o| o.to_wire());
    let deny = wire(manager.policies_as_pre_tool_use(&hook("rm")).await).unwrap();
    assert_eq!(deny["hookSpecificOutput"]["permissionDecision"], "deny");
    assert_eq!(
        deny["hookSpecificOutput"]["permissionDecisionReason"],
        "no rm"
    );
    let halt = wire(manager.policies_as_pre_tool_use(&hook("halt")).await).unwrap();
    assert_eq!(halt["continue"], false);
    let ls = wire(manager.policies_as_pre_tool_use(&hook("ls")).await).unwrap();
    assert_eq!(
        ls["hookSpecificOutput"]["updatedInput"],
        json!({"command": "ls -a"})
    );
    assert!(
        ls["hookSpecificOutput"].get("permissionDecision").is_none(),
        "a rewrite approves nothing: {ls}"
    );
    assert_eq!(manager.policies_as_pre_tool_use(&hook("pwd")).await, None);
    let stop = HookInput::from_wire(json!({
        "session_id": "s", "transcript_path": "/t", "cwd": "/", "hook_event_name": "Stop"
    }));
    assert_eq!(manager.policies_as_pre_tool_use(&stop).await, None);
}
