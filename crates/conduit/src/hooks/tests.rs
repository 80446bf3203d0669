use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::executor::block_on;
use serde_json::{Map, Value, json};

use super::*;

const HOOKS: &str = include_str!("../../tests/fixtures/transcripts/hooks.jsonl");
const PRETOOL_DENY: &str =
    include_str!("../../tests/fixtures/transcripts/hooks_pretool_deny.jsonl");
const FULL: &str = include_str!("../../tests/fixtures/transcripts/full.jsonl");

/// The parsed `raw` frames of a transcript sent in direction `dir`.
fn frames(transcript: &str, dir: &str) -> Vec<Value> {
    transcript
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["dir"] == dir)
        .filter_map(|record| serde_json::from_str(record["raw"].as_str()?).ok())
        .collect()
}

/// The `hooks` field of the SDK's initialize request.
fn initialize_hooks(transcript: &str) -> Value {
    frames(transcript, "sdk->cli")
        .into_iter()
        .find(|frame| frame["request"]["subtype"] == "initialize")
        .map(|frame| frame["request"]["hooks"].clone())
        .unwrap_or_default()
}

/// The CLI's `hook_callback` requests: (request_id, request body).
fn hook_requests(transcript: &str) -> Vec<(String, Map<String, Value>)> {
    frames(transcript, "cli->sdk")
        .into_iter()
        .filter(|frame| frame["type"] == "control_request")
        .filter(|frame| frame["request"]["subtype"] == "hook_callback")
        .map(|frame| {
            (
                frame["request_id"].as_str().unwrap().to_owned(),
                frame["request"].as_object().unwrap().clone(),
            )
        })
        .collect()
}

/// The recorded SDK answer (`response.response`) to request `id`.
fn recorded_answer(transcript: &str, id: &str) -> Value {
    frames(transcript, "sdk->cli")
        .into_iter()
        .find(|frame| frame["type"] == "control_response" && frame["response"]["request_id"] == id)
        .map(|frame| frame["response"]["response"].clone())
        .unwrap()
}

fn noop() -> HookMatcher {
    HookMatcher::all().callback(|_input, _id| async { HookOutput::default() })
}

/// The hooks the recording probe registered in `hooks.jsonl` and `full.jsonl`, answering as it
/// did.
fn probe_hooks(with_prompt_and_stop: bool) -> Hooks {
    let hooks = Hooks::new()
        .on(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash").callback(|_input, _id| async {
                HookOutput::additional_context(HookEvent::PreToolUse, "probe PreToolUse context")
                    .with_continue(true)
            }),
        )
        .on(
            HookEvent::PostToolUse,
            HookMatcher::all().callback(|_input, _id| async {
                HookOutput::additional_context(HookEvent::PostToolUse, "probe PostToolUse context")
            }),
        );
    if !with_prompt_and_stop {
        return hooks;
    }
    hooks
        .on(
            HookEvent::UserPromptSubmit,
            HookMatcher::all().callback(|_input, _id| async {
                HookOutput::additional_context(
                    HookEvent::UserPromptSubmit,
                    "probe UserPromptSubmit context",
                )
            }),
        )
        .on(HookEvent::Stop, noop())
}

fn deny_hooks() -> Hooks {
    Hooks::new().on(
        HookEvent::PreToolUse,
        HookMatcher::new("Bash")
            .callback(|_input, _id| async { HookOutput::deny_tool("blocked by probe hook") }),
    )
}

#[test]
fn registration_equals_the_recorded_initialize_hooks() {
    for (transcript, hooks) in [
        (HOOKS, probe_hooks(true)),
        (PRETOOL_DENY, deny_hooks()),
        (FULL, probe_hooks(false)),
    ] {
        let recorded = initialize_hooks(transcript);
        assert!(recorded.is_object());
        let registration = hooks.registration();
        assert_eq!(registration.config, recorded);
        assert_eq!(
            registration.callbacks.len(),
            recorded.as_object().unwrap().len()
        );
    }
    // The ids follow registration order: PreToolUse, PostToolUse, UserPromptSubmit, Stop.
    assert_eq!(
        probe_hooks(true).registration().config["Stop"][0]["hookCallbackIds"],
        json!(["hook_3"])
    );
}

#[test]
fn replaying_recorded_hook_callbacks_gives_the_recorded_answers() {
    let mut replayed = 0;
    for (transcript, hooks) in [
        (HOOKS, probe_hooks(true)),
        (PRETOOL_DENY, deny_hooks()),
        (FULL, probe_hooks(false)),
    ] {
        let registration = hooks.registration();
        for (request_id, body) in hook_requests(transcript) {
            let reply = block_on(answer(&registration.callbacks, &body));
            assert_eq!(
                reply,
                Ok(Some(recorded_answer(transcript, &request_id))),
                "{request_id}"
            );
            replayed += 1;
        }
    }
    assert_eq!(replayed, 4 + 1 + 3);
}

#[test]
fn every_recorded_input_parses_into_its_typed_variant() {
    let mut seen = Vec::new();
    for transcript in [HOOKS, PRETOOL_DENY, FULL] {
        for (_, body) in hook_requests(transcript) {
            let raw = body["input"].clone();
            let input = HookInput::from_wire(raw.clone());
            assert_eq!(input.raw(), &raw, "raw is kept whole");
            assert_eq!(input.event().as_str(), raw["hook_event_name"]);
            assert!(!input.is_other(), "{raw}");
            let context = input.context();
            assert_eq!(context.session_id, raw["session_id"]);
            assert!(context.transcript_path.ends_with(".jsonl"));
            assert_eq!(context.cwd, "/home/user/work/work");
            assert_eq!(context.permission_mode.as_deref(), Some("default"));
            assert!(context.prompt_id.is_some());
            match &input {
                HookInput::PreToolUse(pre) => {
                    assert_eq!(pre.tool_name, "Bash");
                    assert_eq!(pre.tool_input["command"], "touch marker.txt && echo hi");
                    assert_eq!(Some(pre.tool_use_id.as_str()), body["tool_use_id"].as_str());
                    assert_eq!(context.effort_level.as_deref(), Some("high"));
                    assert_eq!(input.matcher_subject(), Some("Bash"));
                }
                HookInput::PostToolUse(post) => {
                    assert!(post.tool_name == "Bash" || post.tool_name == "mcp__probe__add");
                    assert!(!post.tool_response.is_null());
                    assert!(post.duration_ms.is_some());
                    assert_eq!(input.tool_use_id(), body["tool_use_id"].as_str());
                }
                HookInput::UserPromptSubmit(prompt) => {
                    assert_eq!(prompt.prompt, "run echo hi with hooks");
                    assert_eq!(input.matcher_subject(), None);
                }
                HookInput::Stop(stop) => {
                    assert!(!stop.stop_hook_active);
                    assert_eq!(stop.last_assistant_message.as_deref(), Some("Hooks ran."));
                    assert_eq!(stop.background_tasks, Some(vec![]));
                    assert_eq!(stop.session_crons, Some(vec![]));
                }
                other => panic!("unexpected variant {other:?}"),
            }
            seen.push(input.event());
        }
    }
    for event in [
        HookEvent::PreToolUse,
        HookEvent::PostToolUse,
        HookEvent::UserPromptSubmit,
        HookEvent::Stop,
    ] {
        assert!(seen.contains(&event), "{event}");
    }
}

#[test]
fn recorded_answers_round_trip_through_hook_output() {
    for transcript in [HOOKS, PRETOOL_DENY, FULL] {
        for (request_id, _) in hook_requests(transcript) {
            let recorded = recorded_answer(transcript, &request_id);
            let output = HookOutput::from_wire(&recorded);
            assert!(output.extra.is_empty(), "{recorded}");
            assert!(
                !matches!(output.hook_specific, Some(HookSpecificOutput::Other(_))),
                "{recorded}"
            );
            assert_eq!(output.to_wire(), recorded);
            let via_serde: HookOutput = serde_json::from_value(recorded.clone()).unwrap();
            assert_eq!(serde_json::to_value(&via_serde).unwrap(), recorded);
        }
    }
    let deny = HookOutput::from_wire(&json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse", "permissionDecision": "deny",
        "permissionDecisionReason": "blocked by probe hook"}}));
    assert_eq!(deny, HookOutput::deny_tool("blocked by probe hook"));
    assert_eq!(deny.permission_decision(), Some(PreToolUseDecision::Deny));
}

#[test]
fn builders_emit_the_wire_names() {
    let pre = |decision: &str, reason: Option<&str>| {
        let mut specific = json!({"hookEventName": "PreToolUse", "permissionDecision": decision});
        if let Some(reason) = reason {
            specific["permissionDecisionReason"] = json!(reason);
        }
        json!({ "hookSpecificOutput": specific })
    };
    assert_eq!(HookOutput::default().to_wire(), json!({}));
    assert_eq!(
        HookOutput::allow_tool("ok").to_wire(),
        pre("allow", Some("ok"))
    );
    assert_eq!(
        HookOutput::deny_tool("no").to_wire(),
        pre("deny", Some("no"))
    );
    assert_eq!(
        HookOutput::ask("check").to_wire(),
        pre("ask", Some("check"))
    );
    assert_eq!(HookOutput::defer().to_wire(), pre("defer", None));
    assert_eq!(
        HookOutput::allow_tool("rewritten")
            .with_updated_input(json!({"command": "ls"}))
            .with_system_message("rewrote the command")
            .to_wire(),
        json!({
            "systemMessage": "rewrote the command",
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse", "permissionDecision": "allow",
                "permissionDecisionReason": "rewritten", "updatedInput": {"command": "ls"}
            }
        })
    );
    assert_eq!(
        HookOutput::default()
            .with_updated_input(json!({"a": 1}))
            .to_wire(),
        json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "updatedInput": {"a": 1}}})
    );
    assert_eq!(
        HookOutput::stop("done")
            .with_suppress_output(true)
            .to_wire(),
        json!({"continue": false, "stopReason": "done", "suppressOutput": true})
    );
    assert_eq!(
        HookOutput::block("keep going").to_wire(),
        json!({"decision": "block", "reason": "keep going"})
    );
    assert_eq!(
        HookOutput {
            decision: Some(HookDecision::Approve),
            ..Default::default()
        }
        .with_reason("fine")
        .to_wire(),
        json!({"decision": "approve", "reason": "fine"})
    );
    assert_eq!(
        HookOutput::async_(Some(Duration::from_secs(30))).to_wire(),
        json!({"async": true, "asyncTimeout": 30000})
    );
    assert_eq!(HookOutput::async_(None).to_wire(), json!({"async": true}));
    assert_eq!(
        HookOutput::allow_permission_request()
            .with_updated_input(json!({"x": 1}))
            .to_wire(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
            "decision": {"behavior": "allow", "updatedInput": {"x": 1}}}})
    );
    assert_eq!(
        HookOutput::deny_permission_request("nope").to_wire(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
            "decision": {"behavior": "deny", "message": "nope"}}})
    );
    assert_eq!(
        HookOutput::with_specific(HookSpecificOutput::PermissionRequest(
            PermissionRequestOutput {
                decision: PermissionRequestDecision::Deny {
                    message: None,
                    interrupt: Some(true)
                },
                extra: Map::new(),
            }
        ))
        .to_wire(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
            "decision": {"behavior": "deny", "interrupt": true}}})
    );
    assert_eq!(
        HookOutput::from(HookSpecificOutput::PostToolUse(PostToolUseOutput {
            updated_mcp_tool_output: Some(json!([{"type": "text", "text": "redacted"}])),
            ..Default::default()
        }))
        .to_wire(),
        json!({"hookSpecificOutput": {"hookEventName": "PostToolUse",
            "updatedMCPToolOutput": [{"type": "text", "text": "redacted"}]}})
    );
    for event in [
        HookEvent::SessionStart,
        HookEvent::UserPromptSubmit,
        HookEvent::Notification,
        HookEvent::SubagentStart,
        HookEvent::Other("BrandNew".into()),
    ] {
        let output = HookOutput::additional_context(event.clone(), "ctx");
        assert_eq!(
            output.to_wire(),
            json!({"hookSpecificOutput": {"hookEventName": event.as_str(), "additionalContext": "ctx"}})
        );
        assert_eq!(HookOutput::from_wire(&output.to_wire()), output);
    }
    // `updatedInput` does not apply to other events: left alone.
    let post = HookOutput::additional_context(HookEvent::PostToolUse, "ctx");
    assert_eq!(post.clone().with_updated_input(json!({})), post);
    // Typed fields win over `extra`; `extra` carries the rest.
    let mut output = HookOutput::stop("typed");
    output
        .extra
        .insert("stopReason".into(), json!("from extra"));
    output
        .extra
        .insert("terminalSequence".into(), json!("\u{1b}]9;hi\u{7}"));
    assert_eq!(
        output.to_wire(),
        json!({"continue": false, "stopReason": "typed", "terminalSequence": "\u{1b}]9;hi\u{7}"})
    );
}

#[test]
fn hook_output_from_wire_never_loses_fields() {
    for wire in [
        json!({"continue": "yes", "async": false, "asyncTimeout": 1.5, "decision": "maybe"}),
        json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "perhaps"}}),
        json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "updatedInput": null}}),
        json!({"hookSpecificOutput": {"permissionDecision": "deny"}}),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
            "decision": {"behavior": "allow", "surprise": 1}}}),
        json!({"hookSpecificOutput": {"hookEventName": "UserPromptSubmit",
            "additionalContext": "c", "sessionTitle": "t"}}),
        json!({"hookSpecificOutput": {"hookEventName": "WorktreeCreate", "worktreePath": "/w"}}),
        json!({"hookSpecificOutput": "not an object"}),
    ] {
        assert_eq!(HookOutput::from_wire(&wire).to_wire(), wire);
    }
    let typed = HookOutput::from_wire(&json!({"hookSpecificOutput": {
        "hookEventName": "UserPromptSubmit", "additionalContext": "c", "sessionTitle": "t"}}));
    match typed.hook_specific {
        Some(HookSpecificOutput::UserPromptSubmit(output)) => {
            assert_eq!(output.additional_context.as_deref(), Some("c"));
            assert_eq!(output.extra["sessionTitle"], "t");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(HookOutput::from_wire(&json!("text")), HookOutput::default());
}

#[test]
fn unknown_event_names_round_trip() {
    let event = HookEvent::from("BrandNewEvent");
    assert_eq!(event, HookEvent::Other("BrandNewEvent".into()));
    assert_eq!(event.as_str(), "BrandNewEvent");
    assert_eq!(event.to_string(), "BrandNewEvent");
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!("BrandNewEvent")
    );
    assert_eq!(
        serde_json::from_value::<HookEvent>(json!("BrandNewEvent")).unwrap(),
        event
    );
    assert_eq!(
        "BrandNewEvent".parse::<HookEvent>(),
        Ok(HookEvent::Other("BrandNewEvent".into()))
    );
    // Known names never stay `Other`, and compare by name.
    assert!(matches!(HookEvent::from("Stop"), HookEvent::Stop));
    assert_eq!(HookEvent::Other("Stop".into()), HookEvent::Stop);
    assert_eq!(HookEvent::KNOWN.len(), 33);
    for known in HookEvent::KNOWN {
        let wire = serde_json::to_value(known).unwrap();
        assert_eq!(&serde_json::from_value::<HookEvent>(wire).unwrap(), known);
        assert!(!matches!(
            HookEvent::from(known.as_str()),
            HookEvent::Other(_)
        ));
    }

    // An input for an unknown event keeps everything.
    let raw = json!({"session_id": "s", "transcript_path": "t", "cwd": "c",
        "hook_event_name": "BrandNewEvent", "anything": [1, 2]});
    let input = HookInput::from_wire(raw.clone());
    assert!(input.is_other());
    assert_eq!(input.event(), event);
    assert_eq!(input.session_id(), "s");
    assert_eq!(input.get("anything"), Some(&json!([1, 2])));
    assert_eq!(serde_json::to_value(&input).unwrap(), raw);
    assert_eq!(
        serde_json::from_value::<HookInput>(raw.clone()).unwrap(),
        input
    );

    // Registration and outputs for it.
    let hooks = Hooks::new().on("BrandNewEvent", noop());
    assert_eq!(
        hooks.registration().config,
        json!({"BrandNewEvent": [{"matcher": null, "hookCallbackIds": ["hook_0"]}]})
    );
    let wire = json!({"hookEventName": "BrandNewEvent", "additionalContext": "x", "more": 1});
    let specific = HookSpecificOutput::from_wire(&wire);
    assert!(matches!(&specific, HookSpecificOutput::Generic(g) if g.hook_event_name == event));
    assert_eq!(specific.event(), event);
    assert_eq!(specific.to_wire(), wire);
}

#[test]
fn parsing_is_lenient_but_keeps_required_fields_honest() {
    let base = |extra: Value| {
        let mut raw = json!({"session_id": "s", "transcript_path": "t", "cwd": "c"});
        raw.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        raw
    };
    // Missing and mistyped optional fields: still typed.
    let input = HookInput::from_wire(base(json!({"hook_event_name": "PostToolUse",
        "tool_name": "Read", "duration_ms": "slow", "tool_use_id": 7,
        "mcp_server": {"name": "fs", "source": "sdk"}, "unknown": true})));
    match &input {
        HookInput::PostToolUse(post) => {
            assert_eq!(post.duration_ms, None);
            assert_eq!(post.tool_use_id, "");
            assert_eq!(post.tool_response, Value::Null);
            let server = post.mcp_server.as_ref().unwrap();
            assert_eq!(
                (server.name.as_str(), server.source.as_str()),
                ("fs", "sdk")
            );
        }
        other => panic!("{other:?}"),
    }
    // A missing required field: `Other`, but the event and accessors still work.
    let input = HookInput::from_wire(base(json!({"hook_event_name": "PreToolUse",
        "tool_input": {"command": "rm -rf /"}})));
    assert!(input.is_other());
    assert_eq!(input.event(), HookEvent::PreToolUse);
    assert_eq!(input.tool_input().unwrap()["command"], "rm -rf /");
    let input = HookInput::from_wire(base(json!({"hook_event_name": "UserPromptSubmit",
        "prompt": 42})));
    assert!(input.is_other());
    // Not an object at all.
    for raw in [Value::Null, json!("x"), json!([1])] {
        let input = HookInput::from_wire(raw.clone());
        assert!(input.is_other());
        assert_eq!(input.event(), HookEvent::Other(String::new()));
        assert_eq!(input.into_raw(), raw);
    }
    // The typed events documented in §D.3.
    let cases = [
        (
            json!({"hook_event_name": "PostToolUseFailure", "tool_name": "Bash",
            "tool_input": {}, "tool_use_id": "t", "error": "exit 1", "is_interrupt": false}),
            "PostToolUseFailure",
        ),
        (
            json!({"hook_event_name": "Notification", "message": "m", "title": "T",
            "notification_type": "idle_prompt"}),
            "Notification",
        ),
        (
            json!({"hook_event_name": "SubagentStart", "agent_id": "a", "agent_type": "Explore"}),
            "SubagentStart",
        ),
        (
            json!({"hook_event_name": "SubagentStop", "stop_hook_active": true, "agent_id": "a",
            "agent_transcript_path": "p", "agent_type": "Explore"}),
            "SubagentStop",
        ),
        (
            json!({"hook_event_name": "PreCompact", "trigger": "manual",
            "custom_instructions": null}),
            "PreCompact",
        ),
        (
            json!({"hook_event_name": "PostCompact", "trigger": "auto", "compact_summary": "s"}),
            "PostCompact",
        ),
        (
            json!({"hook_event_name": "SessionStart", "source": "resume", "model": "m"}),
            "SessionStart",
        ),
        (
            json!({"hook_event_name": "SessionEnd", "reason": "logout"}),
            "SessionEnd",
        ),
        (
            json!({"hook_event_name": "PermissionRequest", "tool_name": "Write",
            "tool_input": {"file_path": "/x"},
            "permission_suggestions": [{"type": "setMode", "mode": "acceptEdits",
                "destination": "session"}]}),
            "PermissionRequest",
        ),
        (
            json!({"hook_event_name": "PermissionDenied", "tool_name": "Bash", "tool_input": {},
            "tool_use_id": "t", "reason": "rule"}),
            "PermissionDenied",
        ),
        (
            json!({"hook_event_name": "StopFailure", "error": "rate_limit"}),
            "StopFailure",
        ),
        (
            json!({"hook_event_name": "PostToolBatch", "tool_calls": [{"tool_name": "Read",
            "tool_input": {}, "tool_use_id": "t"}]}),
            "PostToolBatch",
        ),
        (
            json!({"hook_event_name": "UserPromptExpansion", "expansion_type": "slash_command",
            "command_name": "review", "command_args": "", "prompt": "p"}),
            "UserPromptExpansion",
        ),
        (
            json!({"hook_event_name": "PreModelSwitch", "from_model": "a", "to_model": "b",
            "requested_model": null, "source": "sdk", "context_tokens": 10}),
            "PreModelSwitch",
        ),
        (
            json!({"hook_event_name": "PostModelSwitch", "from_model": "a", "to_model": "b",
            "source": "sdk"}),
            "PostModelSwitch",
        ),
    ];
    for (fields, event) in cases {
        let input = HookInput::from_wire(base(fields));
        assert!(!input.is_other(), "{event}");
        assert_eq!(input.event().as_str(), event);
        let fine = match &input {
            HookInput::PostToolUseFailure(i) => {
                i.error == "exit 1" && i.is_interrupt == Some(false)
            }
            HookInput::Notification(i) => {
                i.notification_type == "idle_prompt"
                    && input.matcher_subject() == Some("idle_prompt")
            }
            HookInput::SubagentStart(i) => {
                i.agent_type == "Explore" && input.matcher_subject() == Some("Explore")
            }
            HookInput::SubagentStop(i) => i.stop_hook_active && i.agent_transcript_path == "p",
            HookInput::PreCompact(i) => i.trigger == "manual" && i.custom_instructions.is_none(),
            HookInput::PostCompact(i) => i.compact_summary == "s",
            HookInput::SessionStart(i) => {
                i.source == "resume" && input.matcher_subject() == Some("resume")
            }
            HookInput::SessionEnd(i) => i.reason == "logout",
            HookInput::PermissionRequest(i) => {
                i.permission_suggestions.as_ref().map(Vec::len) == Some(1)
            }
            HookInput::PermissionDenied(i) => i.reason == "rule",
            HookInput::StopFailure(i) => i.error == "rate_limit",
            HookInput::PostToolBatch(i) => i.tool_calls[0].tool_name == "Read",
            HookInput::UserPromptExpansion(i) => i.command_name == "review",
            HookInput::PreModelSwitch(i) => i.context_tokens == Some(10),
            HookInput::PostModelSwitch(i) => i.to_model == "b",
            _ => false,
        };
        assert!(fine, "{input:?}");
    }
}

#[test]
fn answer_errors() {
    let registration = deny_hooks().registration();
    let body = |v: Value| v.as_object().unwrap().clone();
    let err = block_on(answer(
        &registration.callbacks,
        &body(json!({"subtype": "hook_callback", "callback_id": "hook_9", "input": {}})),
    ))
    .unwrap_err();
    assert!(
        err.starts_with("unknown hook callback id `hook_9`: "),
        "{err}"
    );
    let err = block_on(answer(
        &registration.callbacks,
        &body(json!({"subtype": "hook_callback", "input": {}})),
    ))
    .unwrap_err();
    assert!(err.contains("callback_id"), "{err}");

    // A failing callback becomes an error; its message is kept.
    let registration = Hooks::new()
        .on(
            HookEvent::Stop,
            HookMatcher::all().try_callback(|_input, _id| async {
                Err::<HookOutput, _>("policy service unreachable")
            }),
        )
        .registration();
    let reply = block_on(answer(
        &registration.callbacks,
        &body(json!({"callback_id": "hook_0", "input": {"hook_event_name": "Stop"}})),
    ));
    assert_eq!(reply, Err("policy service unreachable".to_owned()));
}

#[test]
fn callbacks_get_the_input_and_tool_use_id() {
    let registration = Hooks::new()
        .on(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash").callback(|input: HookInput, id: Option<String>| async move {
                HookOutput::allow_tool(format!(
                    "{}:{}",
                    input.tool_name().unwrap_or("?"),
                    id.unwrap_or_default()
                ))
            }),
        )
        .registration();
    let body = json!({"callback_id": "hook_0", "tool_use_id": "toolu_9",
        "input": {"hook_event_name": "PreToolUse", "tool_name": "Bash"}});
    let reply = block_on(dispatch(&registration.callbacks, body.as_object().unwrap()));
    let owned = block_on(dispatch_owned(
        &registration.callbacks,
        body.as_object().unwrap().clone(),
    ));
    assert_eq!(reply, owned);
    assert_eq!(
        reply.unwrap().unwrap()["hookSpecificOutput"]["permissionDecisionReason"],
        "Bash:toolu_9"
    );
    let unknown = json!({"callback_id": "hook_1", "input": {}});
    assert!(
        block_on(dispatch_owned(
            &registration.callbacks,
            unknown.as_object().unwrap().clone()
        ))
        .unwrap_err()
        .starts_with("unknown hook callback id `hook_1`")
    );
}

#[test]
fn dropping_the_answer_cancels_the_callback() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let registration = Hooks::new()
        .on(
            HookEvent::Stop,
            HookMatcher::all().callback(move |_input, _id| {
                let guard = SetOnDrop(Arc::clone(&flag));
                async move {
                    futures::future::pending::<()>().await;
                    drop(guard);
                    HookOutput::default()
                }
            }),
        )
        .registration();
    let body = json!({"callback_id": "hook_0", "input": {"hook_event_name": "Stop"}});
    let mut reply = dispatch(&registration.callbacks, body.as_object().unwrap());
    assert!((&mut reply).now_or_never().is_none());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(reply);
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn registration_shapes() {
    assert_eq!(Hooks::new().registration().config, Value::Null);
    assert!(Hooks::default().is_empty());
    // A matcher without callbacks is not sent.
    let hooks = Hooks::new().on(HookEvent::Stop, HookMatcher::all());
    assert!(hooks.is_empty());
    assert_eq!(hooks.registration().config, Value::Null);
    assert!(hooks.registration().is_empty());

    let callback = |_input: HookInput, _id: Option<String>| async { HookOutput::default() };
    let shared: Arc<dyn HookCallback> = Arc::new(callback);
    let hooks = Hooks::new()
        .on(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash")
                .callback(callback)
                .callback(callback)
                .timeout(Duration::from_secs(60)),
        )
        .on(
            HookEvent::Notification,
            HookMatcher::all()
                .hook_arc(Arc::clone(&shared))
                .timeout(Duration::from_millis(1500)),
        )
        .on(
            HookEvent::PreToolUse,
            HookMatcher::new("Write|Edit").hook(callback),
        );
    let registration = hooks.registration();
    assert_eq!(
        registration.config,
        json!({
            "PreToolUse": [
                {"matcher": "Bash", "hookCallbackIds": ["hook_0", "hook_1"], "timeout": 60},
                {"matcher": "Write|Edit", "hookCallbackIds": ["hook_2"]}
            ],
            "Notification": [{"matcher": null, "hookCallbackIds": ["hook_3"], "timeout": 1.5}]
        })
    );
    assert_eq!(registration.callbacks.len(), 4);
    assert!(Arc::ptr_eq(&registration.callbacks["hook_3"], &shared));
    // Stable: the same ids every time, and clones share the registry.
    let clone = hooks.clone();
    assert_eq!(clone.registration().config, registration.config);
    assert_eq!(
        format!("{registration:?}"),
        format!(
            "HookRegistration {{ config: {:?}, callbacks: [\"hook_0\", \"hook_1\", \"hook_2\", \"hook_3\"] }}",
            registration.config
        )
    );
    // Adding to a clone leaves the original alone.
    let mut more = hooks.clone();
    more.add(HookEvent::Stop, noop());
    assert_eq!(hooks.iter().count(), 2);
    assert_eq!(more.iter().count(), 3);
    assert_eq!(more.registration().callbacks.len(), 5);
}

#[test]
fn matching_follows_the_cli_rules() {
    let hooks = Hooks::new()
        .on(HookEvent::PreToolUse, noop())
        .on(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash").callback(|_i, _id| async { HookOutput::default() }),
        )
        .on(
            HookEvent::PreToolUse,
            HookMatcher::new("mcp__.*").callback(|_i, _id| async { HookOutput::default() }),
        )
        .on(
            HookEvent::Stop,
            HookMatcher::new("ignored").callback(|_i, _id| async { HookOutput::default() }),
        );
    let input = |event: &str, tool: &str| {
        HookInput::from_wire(json!({"hook_event_name": event, "tool_name": tool}))
    };
    let patterns = |input: &HookInput| -> Vec<Option<String>> {
        hooks.matching(input).map(|m| m.matcher.clone()).collect()
    };
    assert_eq!(
        patterns(&input("PreToolUse", "Bash")),
        vec![None, Some("Bash".to_owned())]
    );
    assert_eq!(
        patterns(&input("PreToolUse", "mcp__fs__read")),
        vec![None, Some("mcp__.*".to_owned())]
    );
    assert_eq!(
        patterns(&input("Stop", "")),
        vec![Some("ignored".to_owned())],
        "Stop ignores matchers"
    );
    assert!(patterns(&input("PostToolUse", "Bash")).is_empty());
    assert!(HookMatcher::new("Bash").is_supported_pattern());
    assert!(!HookMatcher::new("(?<=x)Bash").is_supported_pattern());
    assert!(HookMatcher::all().is_supported_pattern());
}

#[test]
fn matcher_patterns_follow_the_cli_rules() {
    let m = |pattern: &str, subject: &str| HookMatcher::new(pattern).matches(subject);
    for all in ["", "*"] {
        assert!(m(all, "Bash"));
        assert!(m(all, ""));
    }
    assert!(m("Bash", "Bash"));
    assert!(!m("Bash", "BashOutput"), "plain names are exact");
    assert!(!m("bash", "Bash"), "case-sensitive");
    assert!(m("Write|Edit", "Edit"));
    assert!(!m("Write|Edit", "MultiEdit"));
    assert!(m("mcp__memory__.*", "mcp__memory__create"));
    assert!(m("mcp__memory__.*", "x_mcp__memory__"), "unanchored");
    assert!(!m("mcp__memory__.*", "mcp__github__x"));
    assert!(m("^Notebook", "NotebookEdit"));
    assert!(!m("^Notebook", "MyNotebook"));
    assert!(m("Edit$", "MultiEdit"));
    assert!(!m("^Edit$", "MultiEdit"));
    assert!(m("^(Write|Edit)$", "Edit"));
    assert!(!m("^(Write|Edit)$", "Edits"));
    assert!(m("^(?:Write|Edit)$", "Write"));
    assert!(m("mcp__.*__delete_.+", "mcp__fs__delete_file"));
    assert!(!m("mcp__.*__delete_.+", "mcp__fs__delete_"));
    assert!(m("mcp__my-server__tool", "mcp__my-server__tool"));
    assert!(m("^[A-Z][a-z]+$", "Bash"));
    assert!(!m("^[A-Z][a-z]+$", "WebFetch"));
    assert!(m("^[^m]", "Read"));
    assert!(!m("^[^m]", "mcp__x"));
    assert!(m(r"^tool\d{2,3}$", "tool42"));
    assert!(!m(r"^tool\d{2,3}$", "tool4"));
    assert!(!m(r"^tool\d{2,3}$", "tool4242"));
    assert!(m(r"a\.b", "a.b"));
    assert!(!m(r"a\.b", "axb"));
    assert!(m("^Web(Fetch)?$", "WebFetch"));
    assert!(m(".*?", "x"), "lazy quantifier accepted");
    assert!(m(r"\bBash", "run Bash"), "word boundaries");
    assert!(!m(r"\bBash", "xBash"));
    // ASCII classes, as JavaScript's: `\w` does not match a non-ASCII letter.
    assert!(!m(r"^\w+$", "Bäsh"));
    // Linear time: a pattern that backtracks exponentially elsewhere answers at once here.
    let long = "a".repeat(10_000);
    assert!(!m("^(a|a)*$", &format!("{long}b")));
}

#[test]
fn unsupported_patterns_match_nothing() {
    for pattern in [
        "(?=Bash)",
        "(?<=x)Bash",
        r"(a)\1",
        "(Bash",
        "Bash)",
        "[Bash",
        "a{2,1}",
    ] {
        let matcher = HookMatcher::new(pattern);
        assert!(!matcher.is_supported_pattern(), "{pattern}");
        assert!(!matcher.matches("Bash"), "{pattern}");
    }
    assert!(HookMatcher::new("mcp__.*").is_supported_pattern());
    assert!(HookMatcher::new("Bash|Read").is_supported_pattern());
}
