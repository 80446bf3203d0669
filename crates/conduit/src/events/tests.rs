use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;

fn recorder(
    log: &Arc<Mutex<Vec<&'static str>>>,
    name: &'static str,
) -> impl Fn(&Event) -> Result<Outcome, BoxError> + Send + Sync + 'static {
    let log = log.clone();
    move |_| {
        log.lock().unwrap().push(name);
        Ok(Outcome::Continue)
    }
}

fn pre_tool_use(command: &str) -> HookInput {
    HookInput::from_wire(json!({
        "session_id": "s", "transcript_path": "/t", "cwd": "/", "permission_mode": "default",
        "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": {"command": command}, "tool_use_id": "t1"
    }))
}

fn run_hook(bus: &EventBus, input: HookInput) -> serde_json::Value {
    futures::executor::block_on(bus.run_hook(input, Some("t1".into()))).to_wire()
}

#[tokio::test]
async fn higher_priority_runs_first_and_ties_keep_registration_order() {
    let bus = EventBus::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    bus.on(EventKind::Connected, 0, recorder(&log, "zero-a"));
    bus.on(EventKind::Connected, 5, recorder(&log, "five-a"));
    bus.on(EventKind::Connected, -3, recorder(&log, "minus"));
    bus.on(EventKind::Connected, 0, recorder(&log, "zero-b"));
    let l = log.clone();
    bus.on_async(EventKind::Connected, 5, move |_| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push("five-b-async");
            Ok(Outcome::Continue)
        }
    });
    bus.on(EventKind::Connected, 0, recorder(&log, "zero-c"));
    // Another kind is not run.
    bus.on(EventKind::Connect, 100, recorder(&log, "other-kind"));
    bus.emit(Event::Connected {
        info: ConnectionInfo::default(),
        cli_version: None,
    })
    .await;
    assert_eq!(
        *log.lock().unwrap(),
        [
            "five-a",
            "five-b-async",
            "zero-a",
            "zero-b",
            "zero-c",
            "minus"
        ]
    );
}

#[tokio::test]
async fn an_erroring_a_panicking_and_a_slow_handler_are_skipped_and_counted() {
    let bus = EventBus::with_timeout(Duration::from_millis(50));
    let log = Arc::new(Mutex::new(Vec::new()));
    bus.on(EventKind::BeforeSend, 40, |_| Err("broken handler".into()));
    bus.on(EventKind::BeforeSend, 30, |_| panic!("handler bug"));
    bus.on_async(EventKind::BeforeSend, 25, |_| async {
        panic!("async handler bug")
    });
    bus.on_async(EventKind::BeforeSend, 20, |_| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Outcome::Refuse("never".into()))
    });
    bus.on(EventKind::BeforeSend, 10, |_| {
        Ok(Outcome::Rewrite(Bytes::from_static(b"{\"x\":1}")))
    });
    bus.on(EventKind::BeforeSend, 0, recorder(&log, "last"));
    let chain = bus
        .run(Event::BeforeSend {
            frame: Bytes::from_static(b"{}"),
        })
        .await;
    assert!(chain.refused.is_none());
    assert!(matches!(chain.event, Event::BeforeSend { frame } if frame.as_ref() == b"{\"x\":1}"));
    assert_eq!(*log.lock().unwrap(), ["last"]);
    assert_eq!(
        bus.stats(),
        BusStats {
            errors: 1,
            panics: 2,
            timeouts: 1,
            misplaced: 0
        }
    );
}

#[tokio::test]
async fn removing_a_handler_stops_its_calls_and_removing_twice_says_so() {
    let bus = EventBus::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let a = bus.on(EventKind::Disconnect, 0, recorder(&log, "a"));
    bus.on(EventKind::Disconnect, 0, recorder(&log, "b"));
    assert!(bus.has(&EventKind::Disconnect));
    bus.emit(Event::Disconnect { termination: None }).await;
    assert!(a.remove());
    assert!(!a.remove());
    bus.emit(Event::Disconnect { termination: None }).await;
    assert_eq!(*log.lock().unwrap(), ["a", "b", "b"]);
    assert!(!bus.has(&EventKind::Connect));
}

#[tokio::test]
async fn stop_ends_the_chain_and_a_misplaced_outcome_is_ignored() {
    let bus = EventBus::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    bus.on(EventKind::TurnResult, 9, |_| {
        Ok(Outcome::Refuse("not here".into()))
    });
    bus.on(EventKind::TurnResult, 5, recorder(&log, "runs"));
    bus.on(EventKind::TurnResult, 4, |_| Ok(Outcome::Stop));
    bus.on(EventKind::TurnResult, 3, recorder(&log, "never"));
    let msg = Message::parse(Bytes::from_static(
        b"{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false}",
    ))
    .unwrap();
    bus.emit(Event::TurnResult(msg)).await;
    assert_eq!(*log.lock().unwrap(), ["runs"]);
    assert_eq!(bus.stats().misplaced, 1);
}

#[test]
fn combine_any_deny_wins_whatever_the_priorities() {
    let bus = EventBus::new();
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 100, |_| {
        Ok(Outcome::Answer(HookOutput::allow_tool("high allow")))
    });
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 50, |_| {
        Ok(Outcome::Answer(HookOutput::ask("mid ask")))
    });
    bus.on(EventKind::Hook(HookEvent::PreToolUse), -100, |_| {
        Ok(Outcome::Answer(HookOutput::deny_tool("low deny")))
    });
    let wire = run_hook(&bus, pre_tool_use("ls"));
    assert_eq!(wire["hookSpecificOutput"]["permissionDecision"], "deny");
    assert_eq!(
        wire["hookSpecificOutput"]["permissionDecisionReason"],
        "low deny"
    );
    // Without the deny, ask beats allow.
    let bus = EventBus::new();
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 100, |_| {
        Ok(Outcome::Answer(HookOutput::allow_tool("allow")))
    });
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 0, |_| {
        Ok(Outcome::Answer(HookOutput::ask("ask")))
    });
    assert_eq!(
        run_hook(&bus, pre_tool_use("ls"))["hookSpecificOutput"]["permissionDecision"],
        "ask"
    );
}

#[test]
fn combine_the_first_updated_input_in_priority_order_applies() {
    let bus = EventBus::new();
    // Registered low first: priority decides, not registration order.
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 1, |_| {
        Ok(Outcome::Answer(
            HookOutput::default().with_updated_input(json!({"command": "low"})),
        ))
    });
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 2, |_| {
        Ok(Outcome::Answer(
            HookOutput::allow_tool("ok").with_updated_input(json!({"command": "high"})),
        ))
    });
    let wire = run_hook(&bus, pre_tool_use("ls"));
    assert_eq!(
        wire["hookSpecificOutput"]["updatedInput"],
        json!({"command": "high"})
    );
    assert_eq!(wire["hookSpecificOutput"]["permissionDecision"], "allow");
}

#[test]
fn combine_additional_contexts_are_joined_in_priority_order() {
    let bus = EventBus::new();
    for (priority, text) in [(1, "third"), (3, "first"), (2, "second")] {
        bus.on(
            EventKind::Hook(HookEvent::PostToolUse),
            priority,
            move |_| {
                Ok(Outcome::Answer(HookOutput::additional_context(
                    HookEvent::PostToolUse,
                    text,
                )))
            },
        );
    }
    let input = HookInput::from_wire(json!({
        "session_id": "s", "transcript_path": "/t", "cwd": "/", "hook_event_name": "PostToolUse",
        "tool_name": "Bash", "tool_input": {}, "tool_response": "x", "tool_use_id": "t1"
    }));
    let wire = run_hook(&bus, input);
    assert_eq!(
        wire,
        json!({"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": "first\nsecond\nthird"}})
    );
}

#[test]
fn combine_a_handler_may_stop_the_chain() {
    let bus = EventBus::new();
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 10, |_| {
        Ok(Outcome::AnswerAndStop(HookOutput::allow_tool("trusted")))
    });
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 0, |_| {
        Ok(Outcome::Answer(HookOutput::deny_tool("not run")))
    });
    let wire = run_hook(&bus, pre_tool_use("ls"));
    assert_eq!(wire["hookSpecificOutput"]["permissionDecision"], "allow");
    // No answer at all: the empty output.
    let bus = EventBus::new();
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 0, |_| {
        Ok(Outcome::Stop)
    });
    assert_eq!(run_hook(&bus, pre_tool_use("ls")), json!({}));
}

#[test]
fn combine_block_and_continue_false_win_and_messages_join() {
    let out = combine(
        &HookEvent::Stop,
        vec![
            HookOutput::default().with_system_message("one"),
            HookOutput::block("keep going"),
            HookOutput::stop("budget").with_system_message("two"),
            HookOutput::block("ignored reason"),
        ],
    );
    let wire = out.to_wire();
    assert_eq!(wire["decision"], "block");
    assert_eq!(wire["reason"], "keep going");
    assert_eq!(wire["continue"], false);
    assert_eq!(wire["stopReason"], "budget");
    assert_eq!(wire["systemMessage"], "one\ntwo");
}

#[test]
fn hook_events_lists_each_event_once_in_registration_order() {
    let bus = EventBus::new();
    bus.on(EventKind::Hook(HookEvent::Stop), 0, |_| {
        Ok(Outcome::Continue)
    });
    bus.on(EventKind::Hook(HookEvent::PreToolUse), 9, |_| {
        Ok(Outcome::Continue)
    });
    bus.on(EventKind::Hook(HookEvent::Stop), 5, |_| {
        Ok(Outcome::Continue)
    });
    bus.on(EventKind::Connect, 5, |_| Ok(Outcome::Continue));
    assert_eq!(bus.hook_events(), [HookEvent::Stop, HookEvent::PreToolUse]);
    let mut hooks = crate::hooks::Hooks::new();
    bus.add_cli_hooks(&mut hooks);
    assert_eq!(
        hooks.registration().config,
        json!({"Stop": [{"matcher": null, "hookCallbackIds": ["hook_0"]}],
               "PreToolUse": [{"matcher": null, "hookCallbackIds": ["hook_1"]}]})
    );
}
