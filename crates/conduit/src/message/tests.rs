//! Unit tests of the message module: unknown types, subtypes and blocks keep their JSON, tag
//! order does not matter, bad frames are errors (never panics).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn parse(v: &Value) -> Message {
    Message::parse(Bytes::from(v.to_string())).unwrap()
}

fn parse_str(s: &str) -> Result<Message> {
    Message::parse(Bytes::from(s.to_owned()))
}

#[test]
fn unknown_type_keeps_the_whole_frame() {
    let frame = json!({"type": "tool_progress", "tool_use_id": "t1", "elapsed_time_seconds": 1.5,
        "session_id": "s", "uuid": "u", "nested": {"a": [1, 2]}});
    let msg = parse(&frame);
    match msg.kind() {
        MessageKind::Unknown { type_, value } => {
            assert_eq!(type_, "tool_progress");
            assert_eq!(value, &frame);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(msg.type_name(), "tool_progress");
    assert_eq!(msg.session_id(), Some("s"));
    assert_eq!(msg.uuid(), Some("u"));
    assert_eq!(serde_json::to_value(&msg).unwrap(), frame);
}

#[test]
fn frame_without_type_is_unknown_with_empty_type() {
    let msg = parse(&json!({"hello": 1}));
    assert!(
        matches!(msg.kind(), MessageKind::Unknown { type_, value } if type_.is_empty() && value["hello"] == 1)
    );
}

#[test]
fn unknown_system_subtype_keeps_the_whole_frame() {
    let frame = json!({"type": "system", "subtype": "session_state_changed", "state": "idle",
        "session_id": "s", "uuid": "u"});
    let msg = parse(&frame);
    let Some(SystemMessage::Other(o)) = msg.as_system() else {
        panic!("{:?}", msg.kind())
    };
    assert_eq!(o.subtype, "session_state_changed");
    assert_eq!(o.value, frame);
    assert_eq!(msg.subtype(), Some("session_state_changed"));
    assert_eq!(msg.session_id(), Some("s"));
    assert_eq!(msg.uuid(), Some("u"));
}

#[test]
fn known_system_subtype_of_the_wrong_shape_degrades_to_other() {
    // `attempt` should be a number: a newer CLI changing it must not lose the frame.
    let frame = json!({"type": "system", "subtype": "api_retry", "attempt": {"n": 1}});
    let msg = parse(&frame);
    let Some(SystemMessage::Other(o)) = msg.as_system() else {
        panic!("{:?}", msg.kind())
    };
    assert_eq!(o.subtype, "api_retry");
    assert_eq!(o.value, frame);
}

#[test]
fn unknown_block_types_keep_their_json() {
    let block = json!({"type": "container_upload", "file_id": "f1", "extra": [true]});
    let frame = json!({"type": "assistant", "message": {"id": "m", "content": [
        {"type": "text", "text": "a"}, block.clone(), {"type": "text", "text": "b"}]}});
    let a = parse(&frame).as_assistant().unwrap().clone();
    assert_eq!(a.content()[1], ContentBlock::Unknown(block));
    assert_eq!(a.content()[1].type_name(), "container_upload");
    assert_eq!(a.text(), "ab");
}

#[test]
fn every_known_block_type() {
    let frame = json!({"type": "assistant", "message": {"content": [
        {"type": "text", "text": "t", "citations": [{"x": 1}]},
        {"type": "thinking", "thinking": "th", "signature": "sig"},
        {"type": "redacted_thinking", "data": "enc"},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [{"type": "web_search_result", "url": "u"}]},
        {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2", "content": {"type": "web_fetch_result"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
        {"type": "document", "source": {"type": "text", "data": "d"}, "title": "T"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "out"}], "is_error": true},
    ]}});
    let a = parse(&frame).as_assistant().unwrap().clone();
    let c = a.content();
    let names: Vec<_> = c.iter().map(ContentBlock::type_name).collect();
    assert_eq!(
        names,
        [
            "text",
            "thinking",
            "redacted_thinking",
            "tool_use",
            "server_tool_use",
            "web_search_tool_result",
            "web_fetch_tool_result",
            "image",
            "document",
            "tool_result"
        ]
    );
    assert!(matches!(&c[0], ContentBlock::Text(t) if t.citations.is_some()));
    assert!(matches!(&c[1], ContentBlock::Thinking(t) if t.signature == "sig"));
    assert!(matches!(&c[2], ContentBlock::RedactedThinking(t) if t.data == "enc"));
    assert!(matches!(&c[3], ContentBlock::ToolUse(t) if t.input["command"] == "ls"));
    assert!(matches!(&c[4], ContentBlock::ServerToolUse(t) if t.name == "web_search"));
    assert!(matches!(&c[5], ContentBlock::WebSearchToolResult(t) if t.content.is_array()));
    assert!(matches!(&c[6], ContentBlock::ServerToolResult(t) if t.tool_use_id == "srvtoolu_2"));
    assert!(matches!(&c[7], ContentBlock::Image(t) if t.source["media_type"] == "image/png"));
    assert!(matches!(&c[8], ContentBlock::Document(t) if t.title.as_deref() == Some("T")));
    assert!(matches!(&c[9], ContentBlock::ToolResult(t) if t.is_error && t.text() == "out"));
    assert_eq!(a.tool_uses().count(), 1);
    assert_eq!(a.thinking(), "th");
}

#[test]
fn tag_need_not_come_first() {
    // The CLI writes tool_result blocks with `tool_use_id` before `type`; SDKs may write the frame
    // `type` anywhere.
    let raw = r#"{"message":{"content":[{"tool_use_id":"t1","content":"hi","type":"tool_result","is_error":false}],"role":"user"},"session_id":"s","type":"user","uuid":"u"}"#;
    let msg = parse_str(raw).unwrap();
    let u = msg.as_user().unwrap();
    let r = u.tool_results().next().unwrap();
    assert_eq!((r.tool_use_id.as_str(), r.text().as_str()), ("t1", "hi"));
    assert_eq!(msg.session_id(), Some("s"));
    assert_eq!(msg.uuid(), Some("u"));

    let raw = r#"{"session_id":"s","subtype":"init","model":"m","type":"system","tools":["Bash"]}"#;
    let init = parse_str(raw).unwrap();
    let init = init.as_system().unwrap().as_init().unwrap();
    assert_eq!((init.model.as_str(), init.tools.len()), ("m", 1));
    assert_eq!(init.session_id.as_deref(), Some("s"));
}

#[test]
fn spaced_json_and_sdk_user_frames() {
    let raw = r#"{"type": "user", "message": {"role": "user", "content": "hello"}, "parent_tool_use_id": null, "session_id": "default"}"#;
    let msg = parse_str(raw).unwrap();
    let u = msg.as_user().unwrap();
    assert_eq!(u.text(), "hello");
    assert_eq!(u.content().as_str(), Some("hello"));
    assert!(!u.is_replay() && !u.is_tool_result());
    // What the SDK's own encoder writes parses back.
    let encoded = UserInput::new("hi").uuid("u-1").encode();
    let back = Message::parse(encoded).unwrap();
    assert_eq!(back.as_user().unwrap().text(), "hi");
    assert_eq!(back.uuid(), Some("u-1"));
}

#[test]
fn control_frames_from_both_sides() {
    let req = parse_str(&String::from_utf8_lossy(&outbound::control_request(
        "r1",
        "set_model",
        json!({"model": "m"}),
    )))
    .unwrap();
    let MessageKind::ControlRequest(r) = req.kind() else {
        panic!()
    };
    assert_eq!(
        (r.request_id.as_str(), r.subtype.as_str()),
        ("r1", "set_model")
    );
    assert_eq!(r.field("model"), Some(&json!("m")));
    assert!(req.is_control());
    assert_eq!(req.subtype(), Some("set_model"));

    let ok = Message::parse(outbound::control_success("r1", None)).unwrap();
    assert!(
        matches!(ok.kind(), MessageKind::ControlResponse(r) if r.is_success() && r.outcome == ControlOutcome::Success(None))
    );
    let err = parse_str(r#"{"type":"control_response","response":{"subtype":"error","request_id":"r2","error":"nope","error_code":"unsupported_request"}}"#).unwrap();
    assert!(
        matches!(err.kind(), MessageKind::ControlResponse(r) if r.outcome == ControlOutcome::Error { message: "nope".into(), code: Some("unsupported_request".into()) })
    );
    let cancel = Message::parse(outbound::control_cancel("r3")).unwrap();
    assert!(matches!(cancel.kind(), MessageKind::ControlCancel(c) if c.request_id == "r3"));
    assert_eq!(cancel.session_id(), None);
}

#[test]
fn other_top_level_types() {
    let msg = parse(&json!({"type": "keep_alive"}));
    assert_eq!(msg.kind(), &MessageKind::KeepAlive);
    assert_eq!(msg.type_name(), "keep_alive");

    let msg = parse(
        &json!({"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning",
        "resetsAt": 1795312646, "rateLimitType": "five_hour", "utilization": 0.91, "isUsingOverage": false},
        "session_id": "s", "uuid": "u"}),
    );
    let MessageKind::RateLimit(r) = msg.kind() else {
        panic!("{:?}", msg.kind())
    };
    assert_eq!(r.rate_limit_info.status, "allowed_warning");
    assert_eq!(r.rate_limit_info.resets_at, Some(1_795_312_646));
    assert_eq!(
        r.rate_limit_info.rate_limit_type.as_deref(),
        Some("five_hour")
    );
    assert_eq!(r.rate_limit_info.utilization, Some(0.91));
    assert_eq!(msg.type_name(), "rate_limit_event");

    let msg = parse(
        &json!({"type": "conversation_reset", "new_conversation_id": "c2", "trigger": "clear", "session_id": "s"}),
    );
    assert!(
        matches!(msg.kind(), MessageKind::ConversationReset(c) if c.new_conversation_id.as_deref() == Some("c2"))
    );
    assert_eq!(msg.session_id(), Some("s"));
}

#[test]
fn typed_system_subtypes() {
    let cases = [
        json!({"type": "system", "subtype": "hook_started", "hook_id": "h", "hook_name": "PreToolUse:Bash", "hook_event": "PreToolUse"}),
        json!({"type": "system", "subtype": "hook_progress", "hook_id": "h", "hook_name": "n", "hook_event": "e", "stdout": "o", "stderr": "", "output": "o"}),
        json!({"type": "system", "subtype": "hook_response", "hook_id": "h", "hook_name": "n", "hook_event": "e", "output": "", "stdout": "", "stderr": "", "exit_code": 0, "outcome": "success"}),
        json!({"type": "system", "subtype": "task_progress", "task_id": "t", "description": "d", "usage": {"total_tokens": 5, "tool_uses": 1, "duration_ms": 9}, "last_tool_name": "Bash"}),
        json!({"type": "system", "subtype": "compact_boundary", "compact_metadata": {"trigger": "auto", "pre_tokens": 1000}}),
        json!({"type": "system", "subtype": "status", "status": "compacting"}),
    ];
    let msgs: Vec<_> = cases.iter().map(parse).collect();
    assert!(
        matches!(msgs[0].as_system(), Some(SystemMessage::HookStarted(h)) if h.hook_name == "PreToolUse:Bash")
    );
    assert!(
        matches!(msgs[1].as_system(), Some(SystemMessage::HookProgress(h)) if h.stdout.as_deref() == Some("o"))
    );
    assert!(
        matches!(msgs[2].as_system(), Some(SystemMessage::HookResponse(h)) if h.exit_code == Some(0) && h.outcome.as_deref() == Some("success"))
    );
    assert!(
        matches!(msgs[3].as_system(), Some(SystemMessage::TaskProgress(t)) if t.usage.as_ref().map(|u| u.tool_uses) == Some(1))
    );
    assert!(
        matches!(msgs[4].as_system(), Some(SystemMessage::CompactBoundary(c)) if c.compact_metadata.as_ref().map(|m| m.pre_tokens) == Some(1000))
    );
    assert!(
        matches!(msgs[5].as_system(), Some(SystemMessage::Status(s)) if s.status.as_deref() == Some("compacting"))
    );
    for (m, c) in msgs.iter().zip(&cases) {
        assert_eq!(m.subtype(), c["subtype"].as_str());
    }
}

#[test]
fn result_subtypes_and_fields() {
    for (subtype, kind) in [
        ("success", ResultSubtype::Success),
        (
            "error_during_execution",
            ResultSubtype::ErrorDuringExecution,
        ),
        ("error_max_turns", ResultSubtype::ErrorMaxTurns),
        ("error_max_budget_usd", ResultSubtype::ErrorMaxBudgetUsd),
        (
            "error_max_structured_output_retries",
            ResultSubtype::ErrorMaxStructuredOutputRetries,
        ),
        ("error_something_new", ResultSubtype::Other),
    ] {
        let msg =
            parse(&json!({"type": "result", "subtype": subtype, "is_error": subtype != "success"}));
        let r = msg.as_result().unwrap();
        assert_eq!(r.kind(), kind);
        assert_eq!(r.subtype, subtype);
        assert_eq!(r.is_success(), subtype == "success");
        assert!(msg.is_result());
    }
    let msg = parse(
        &json!({"type": "result", "subtype": "success", "is_error": false,
        "duration_ms": 12.7, "num_turns": 2, "result": "done", "structured_output": {"a": 1},
        "permission_denials": [{"tool_name": "Bash", "tool_use_id": "t", "tool_input": {"command": "rm"}}],
        "model_usage_since_last_result": {"m": {"costUSD": 0.5, "inputTokens": 3}},
        "usage": {"input_tokens": 1, "output_tokens": 2, "cache_creation_input_tokens": null, "cache_read_input_tokens": 4},
        "total_cost_usd": 0.75}),
    );
    let r = msg.as_result().unwrap();
    assert_eq!(r.duration_ms, 13);
    assert_eq!(r.structured_output, Some(json!({"a": 1})));
    assert_eq!(r.permission_denials[0].tool_input["command"], "rm");
    assert_eq!(r.cost_since_last_result(), Some(0.5));
    let usage = r.usage.as_ref().unwrap();
    assert_eq!(usage.total_input_tokens(), 5);
    assert_eq!(usage.cache_creation_input_tokens, 0);
    assert_eq!(r.turn_cost_usd, None);
}

#[test]
fn session_can_fill_the_turn_cost() {
    let mut msg = parse(&json!({"type": "result", "subtype": "success", "total_cost_usd": 0.5}));
    let mut tracker = CostTracker::new();
    if let MessageKind::Result(r) = msg.kind_mut() {
        r.turn_cost_usd = tracker.observe(r);
    }
    assert_eq!(msg.as_result().unwrap().turn_cost_usd, Some(0.5));
}

#[test]
fn stream_events() {
    let msg = parse(
        &json!({"type": "stream_event", "event": {"type": "content_block_delta", "index": 1,
        "delta": {"type": "text_delta", "text": "hi"}}, "session_id": "s", "parent_tool_use_id": "p", "uuid": "u"}),
    );
    let e = msg.as_stream_event().unwrap();
    assert_eq!(e.text_delta(), Some("hi"));
    assert_eq!(msg.parent_tool_use_id(), Some("p"));
    let msg = parse(&json!({"type": "stream_event", "event": {"type": "ping"}}));
    assert!(
        matches!(&msg.as_stream_event().unwrap().event, ApiStreamEvent::Other(v) if v == &json!({"type": "ping"}))
    );
    let msg = parse(
        &json!({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
        "delta": {"type": "future_delta", "x": 1}}}),
    );
    assert!(matches!(&msg.as_stream_event().unwrap().event,
        ApiStreamEvent::ContentBlockDelta { delta: BlockDelta::Other(v), .. } if v["x"] == 1));
}

#[test]
fn bad_frames_are_decode_errors() {
    for bad in [
        "",
        "not json",
        "[1,2]",
        "\"user\"",
        "{\"type\":\"user\"",
        "{\"type\":\"user\"} trailing",
        "{\"type\":5}",
        // Known types with the wrong shape.
        "{\"type\":\"user\",\"message\":5}",
        "{\"type\":\"assistant\"}",
        "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":5}]}}",
        "{\"type\":\"control_request\",\"request\":{}}",
        "{\"type\":\"result\",\"is_error\":\"yes\"}",
    ] {
        match parse_str(bad) {
            Err(Error::Decode { excerpt, message }) => {
                assert!(!message.is_empty(), "{bad}");
                assert!(
                    bad.starts_with(excerpt.trim_end_matches('…')),
                    "{bad}: {excerpt}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Invalid UTF-8 is an error too.
    assert!(Message::parse(Bytes::from_static(b"{\"type\":\"user\xff\"}")).is_err());
}

#[test]
fn null_for_optional_collections_is_empty() {
    let msg = parse(
        &json!({"type": "assistant", "message": {"content": null, "usage": null},
        "tool_use_meta": null}),
    );
    let a = msg.as_assistant().unwrap();
    assert!(a.content().is_empty() && a.tool_use_meta.is_empty());
    let msg = parse(&json!({"type": "user", "message": {"content": null}}));
    assert!(msg.as_user().unwrap().content().blocks().is_empty());
}

#[test]
fn into_parts_keeps_raw_and_kind() {
    let raw = Bytes::from_static(br#"{"type":"keep_alive"}"#);
    let (bytes, kind) = Message::parse(raw.clone()).unwrap().into_parts();
    assert_eq!(bytes, raw);
    assert_eq!(kind, MessageKind::KeepAlive);
}

const TYPES: &[&str] = &[
    "assistant",
    "user",
    "result",
    "system",
    "stream_event",
    "rate_limit_event",
    "conversation_reset",
    "keep_alive",
    "control_request",
    "control_response",
    "control_cancel_request",
];

const SUBTYPES: &[&str] = &[
    "init",
    "status",
    "api_retry",
    "thinking_tokens",
    "task_started",
    "task_progress",
    "task_updated",
    "task_notification",
    "hook_started",
    "hook_progress",
    "hook_response",
    "compact_boundary",
    "success",
    "error",
];

/// Field names that the typed views read, so that random values hit typed fields.
const KEYS: &[&str] = &[
    "message",
    "content",
    "text",
    "type",
    "subtype",
    "id",
    "model",
    "usage",
    "input",
    "session_id",
    "uuid",
    "tool_use_result",
    "isReplay",
    "event",
    "delta",
    "index",
    "request",
    "request_id",
    "response",
    "modelUsage",
    "is_error",
    "errors",
    "patch",
    "status",
    "tools",
    "rate_limit_info",
    "citations",
    "tool_use_id",
    "input_tokens",
    "costUSD",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z_]{0,8}".prop_map(Value::String),
        prop::sample::select(TYPES).prop_map(Value::from),
        prop::sample::select(SUBTYPES).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(KEYS).prop_map(str::to_owned),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn frame() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        3 => prop::sample::select(TYPES).prop_map(str::to_owned),
        1 => "[a-z_]{0,12}",
    ];
    (
        ty,
        prop::option::of(prop::sample::select(SUBTYPES)),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..8),
    )
        .prop_map(|(ty, subtype, fields)| {
            let mut m = serde_json::Map::new();
            for (k, v) in fields {
                m.insert(k.to_owned(), v);
            }
            m.insert("type".to_owned(), Value::String(ty));
            if let Some(s) = subtype {
                m.insert("subtype".to_owned(), Value::from(s));
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary objects with a random (mostly known) `type` never panic the parser; whatever
    /// parses serializes back to the same JSON, and the typed view names the same type.
    #[test]
    fn arbitrary_frames_never_panic(v in frame()) {
        let raw = v.to_string();
        let as_value: Value = serde_json::from_str(&raw).unwrap();
        if let Ok(msg) = Message::parse(Bytes::from(raw)) {
            prop_assert_eq!(serde_json::to_value(&msg).unwrap(), as_value);
            prop_assert_eq!(msg.type_name(), v["type"].as_str().unwrap());
        }
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Message::parse(Bytes::from(bytes));
    }

    /// Moving the tag anywhere in the object gives the same typed view.
    #[test]
    fn tag_position_does_not_matter(v in frame(), at in 0usize..10) {
        let Value::Object(m) = &v else { unreachable!() };
        let mut entries: Vec<_> = m.iter().filter(|(k, _)| *k != "type").collect();
        let ty = ("type".to_owned(), m["type"].clone());
        let first = format!("{{\"type\":{}{}}}", m["type"],
            entries.iter().map(|(k, v)| format!(",{}:{}", Value::from(k.as_str()), v)).collect::<String>());
        entries.insert(at.min(entries.len()), (&ty.0, &ty.1));
        let moved = format!("{{{}}}", entries.iter()
            .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v)).collect::<Vec<_>>().join(","));
        let a = Message::parse(Bytes::from(first)).map(Message::into_kind);
        let b = Message::parse(Bytes::from(moved)).map(Message::into_kind);
        match (a, b) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }
}
