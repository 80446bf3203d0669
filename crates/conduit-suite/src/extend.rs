//! The extension points (event bus serving a PreToolUse, middleware ordering, audit and
//! redaction) with the REAL pinned CLI against FakeModel, on any [`Backend`]: the SDK's
//! `tests/e2e_extend.rs` runs them on a local subprocess, the gateway's `tests/callbacks.rs`
//! through a real gateway over WebSocket on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Backend, RealCli, collect};
use claude_conduit::events::{Event, EventBus, EventKind, Outcome};
use claude_conduit::hooks::{HookEvent, HookOutput};
use claude_conduit::middleware::{
    AuditLayer, AuditSink, InterceptLayer, Interceptor, QueryRequest, QueryService, RedactLayer,
};
use claude_conduit::{Message, query};
use claude_conduit_testkit::Turn;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

const T: Duration = Duration::from_secs(90);

/// A Bash tool_use input.
pub fn bash(command: &str) -> Value {
    json!({"command": command, "description": "test command"})
}

/// See the module docs.
pub async fn bus_low_priority_deny_beats_high_priority_allow_for_a_real_pre_tool_use(
    backend: &dyn Backend,
) {
    const WHY: &str = "the low-priority audit handler denies this";
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch bus-denied.txt && echo hi")),
            Turn::text("ok"),
        ],
    )
    .await;
    let bus = EventBus::new();
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let c = calls.clone();
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 100, move |_| {
        c.lock().unwrap().push("allow@100".into());
        Ok(Outcome::Answer(HookOutput::allow_tool(
            "high priority says yes",
        )))
    });
    // A broken handler in the middle changes nothing.
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 50, |_| {
        panic!("handler bug")
    });
    let c = calls.clone();
    bus.on_async(EventKind::Hook(HookEvent::PreToolUse), -100, move |event| {
        let c = c.clone();
        async move {
            let Event::Hook { input, .. } = event else {
                return Ok(Outcome::Continue);
            };
            c.lock()
                .unwrap()
                .push(format!("deny@-100 {}", input.tool_name().unwrap_or("?")));
            Ok(Outcome::Answer(HookOutput::deny_tool(WHY)))
        }
    });
    // Lifecycle events, in the order they happen.
    let lifecycle = Arc::new(Mutex::new(Vec::<String>::new()));
    for kind in [
        EventKind::Connect,
        EventKind::Connected,
        EventKind::TurnResult,
        EventKind::Disconnect,
    ] {
        let l = lifecycle.clone();
        bus.on(kind.clone(), 0, move |_| {
            l.lock().unwrap().push(format!("{kind:?}"));
            Ok(Outcome::Continue)
        });
    }
    let sent = Arc::new(AtomicUsize::new(0));
    let s = sent.clone();
    bus.on(EventKind::BeforeSend, 0, move |_| {
        s.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::Continue)
    });

    let options = h.options().events(bus.clone()).build();
    let items = collect(query("make the file", options), T).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert!(
        !h.env.cwd().join("bus-denied.txt").exists(),
        "the tool must not run"
    );
    assert_eq!(*calls.lock().unwrap(), ["allow@100", "deny@-100 Bash"]);
    assert_eq!(bus.stats().panics, 1);
    let reqs = h.model.message_requests();
    let id = reqs[1]
        .messages()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_result")
        .map(|b| b["tool_use_id"].as_str().unwrap_or_default().to_owned())
        .expect("a tool_result reached the model");
    assert!(
        reqs[1]
            .tool_result_text(&id)
            .unwrap_or_default()
            .contains(WHY)
    );
    assert_eq!(
        *lifecycle.lock().unwrap(),
        ["Connect", "Connected", "TurnResult", "Disconnect"]
    );
    // initialize, the user message, the hook answers at least.
    assert!(sent.load(Ordering::SeqCst) >= 3);
}

struct Step {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl Interceptor for Step {
    fn before(&self, mut req: QueryRequest) -> claude_conduit::Result<QueryRequest> {
        self.log
            .lock()
            .unwrap()
            .push(format!("before {}", self.name));
        // Each layer adds its name to the prompt; the model sees all three, outermost first.
        if let claude_conduit::Prompt::Message(m) = &req.prompt {
            let text = match serde_json::to_value(m).ok() {
                Some(v) => v["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                None => String::new(),
            };
            req.prompt = format!("{text} [{}]", self.name).into();
        }
        Ok(req)
    }
    fn after(&self, message: Message) -> Message {
        if message.is_result() {
            self.log
                .lock()
                .unwrap()
                .push(format!("after {}", self.name));
        }
        message
    }
}

/// See the module docs.
pub async fn three_layers_over_a_real_session_run_before_outside_in_and_after_inside_out(
    backend: &dyn Backend,
) {
    let h = RealCli::start(backend, vec![Turn::text("layered answer")]).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let step = |name| {
        InterceptLayer::new(Step {
            name,
            log: log.clone(),
        })
    };
    let service = ServiceBuilder::new()
        .layer(step("outer"))
        .layer(step("middle"))
        .layer(step("inner"))
        .service(QueryService::new());
    let stream = service
        .oneshot(QueryRequest::new("hello", h.options().build()))
        .await
        .expect("the query starts");
    let items = collect(stream, T).await;
    assert!(
        items.last().unwrap().as_ref().unwrap().is_result(),
        "{items:?}"
    );
    assert_eq!(
        *log.lock().unwrap(),
        [
            "before outer",
            "before middle",
            "before inner",
            "after inner",
            "after middle",
            "after outer"
        ]
    );
    let reqs = h.model.message_requests();
    let seen = serde_json::to_string(reqs[0].messages()).unwrap();
    assert!(seen.contains("hello [outer] [middle] [inner]"), "{seen}");
}

/// See the module docs.
pub async fn audit_lines_cover_both_ways_and_redaction_comes_first(backend: &dyn Backend) {
    const SECRET: &str = "sk-live-0123456789abcdefXYZ";
    let h = RealCli::start(backend, vec![Turn::text("noted")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let service = ServiceBuilder::new()
        // Audit outermost, redaction inside: the audit still only sees redacted frames.
        .layer(AuditLayer::new(AuditSink::file(&path).unwrap()))
        .layer(RedactLayer::new([r"sk-live-[0-9A-Za-z]+"]).unwrap())
        .service(QueryService::new());
    let stream = service
        .oneshot(QueryRequest::new(
            format!("my key is {SECRET}"),
            h.options().build(),
        ))
        .await
        .unwrap();
    let items = collect(stream, T).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");

    // The model (behind the transport) never saw the secret.
    let reqs = h.model.message_requests();
    let seen = serde_json::to_string(reqs[0].messages()).unwrap();
    assert!(
        !seen.contains(SECRET) && seen.contains("my key is [REDACTED]"),
        "{seen}"
    );

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(SECRET));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["dir", "frame", "ts"], "{l}");
        assert!(l["frame"].is_object());
        assert!(l["ts"].as_str().unwrap().ends_with('Z'));
    }
    let has = |dir: &str, ty: &str| {
        lines
            .iter()
            .any(|l| l["dir"] == dir && l["frame"]["type"] == ty)
    };
    assert!(has("sdk->cli", "control_request"), "initialize is audited");
    assert!(has("sdk->cli", "user"));
    assert!(has("cli->sdk", "control_response"));
    assert!(has("cli->sdk", "system"));
    assert!(has("cli->sdk", "result"));
    let user = lines.iter().find(|l| l["frame"]["type"] == "user").unwrap();
    assert_eq!(user["frame"]["message"]["content"], "my key is [REDACTED]");
    // Frames in order: the initialize request precedes its reply.
    let first_request = lines
        .iter()
        .position(|l| l["frame"]["type"] == "control_request")
        .unwrap();
    let first_reply = lines
        .iter()
        .position(|l| l["frame"]["type"] == "control_response")
        .unwrap();
    assert!(first_request < first_reply);
}
