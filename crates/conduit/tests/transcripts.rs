//! Replays every frame of the recorded CLI transcripts through [`Message::parse`].
//!
//! The fixtures in `tests/fixtures/transcripts/*.jsonl` are recordings of the real `claude` CLI
//! (2.1.197) talking to a fake Messages API: one JSON object per line, with `dir` one of
//! `sdk->cli`, `cli->sdk`, `api`, `meta`, `cli-stderr`. For the first two, `raw` is the exact
//! frame. Lines marked `truncated:true` were cut by the recorder (frames over 256 KB) and are not
//! valid frames: they are skipped and counted, nothing else is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use claude_conduit::message::{
    ApiStreamEvent, BlockDelta, ContentBlock, ControlOutcome, CostTracker, Message, MessageKind,
    ResultSubtype, SystemMessage, ToolResultContent,
};
use serde_json::Value;

struct Frame {
    file: String,
    seq: u64,
    dir: String,
    raw: String,
}

impl Frame {
    fn parse(&self) -> Message {
        Message::parse(Bytes::from(self.raw.clone()))
            .unwrap_or_else(|e| panic!("{}#{}: {e}", self.file, self.seq))
    }
    fn value(&self) -> Value {
        serde_json::from_str(&self.raw).unwrap()
    }
    fn at(&self) -> String {
        format!("{}#{}", self.file, self.seq)
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transcripts")
}

/// All frames of all fixtures, plus the number of truncated lines skipped.
fn all_frames() -> (Vec<Frame>, usize) {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 16, "fixtures missing: {files:?}");
    let mut frames = Vec::new();
    let mut truncated = 0;
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        frames.extend(frames_of_path(&path, &name, &mut truncated));
    }
    (frames, truncated)
}

fn frames_of_path(path: &Path, name: &str, truncated: &mut usize) -> Vec<Frame> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let rec: Value = serde_json::from_str(line).unwrap();
        let dir = rec["dir"].as_str().unwrap_or_default();
        if dir != "sdk->cli" && dir != "cli->sdk" {
            continue;
        }
        if rec["truncated"].as_bool() == Some(true) {
            *truncated += 1;
            continue;
        }
        out.push(Frame {
            file: name.to_owned(),
            seq: rec["seq"].as_u64().unwrap_or_default(),
            dir: dir.to_owned(),
            raw: rec["raw"].as_str().unwrap().to_owned(),
        });
    }
    out
}

fn frames_of(name: &str) -> Vec<Frame> {
    let mut truncated = 0;
    frames_of_path(
        &fixture_dir().join(format!("{name}.jsonl")),
        name,
        &mut truncated,
    )
}

fn messages_of(name: &str, dir: &str) -> Vec<Message> {
    frames_of(name)
        .iter()
        .filter(|f| f.dir == dir)
        .map(Frame::parse)
        .collect()
}

const CLI: &str = "cli->sdk";
const SDK: &str = "sdk->cli";

#[test]
fn every_frame_parses_and_round_trips() {
    let (frames, truncated) = all_frames();
    let mut errors = Vec::new();
    let (mut inbound, mut outbound) = (0, 0);
    for f in &frames {
        match Message::parse(Bytes::from(f.raw.clone())) {
            Ok(msg) => {
                let back = serde_json::to_value(&msg).unwrap();
                assert_eq!(back, f.value(), "{}: round trip", f.at());
                assert_eq!(msg.to_value().unwrap(), f.value(), "{}: to_value", f.at());
                assert_eq!(msg.raw().as_ref(), f.raw.as_bytes());
            }
            Err(e) => errors.push(format!("{}: {e}", f.at())),
        }
        if f.dir == CLI {
            inbound += 1;
        } else {
            outbound += 1;
        }
    }
    eprintln!(
        "parsed {inbound} cli->sdk and {outbound} sdk->cli frames; skipped {truncated} truncated lines"
    );
    assert!(
        errors.is_empty(),
        "{} frames failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    // Every frame of the 16 recordings (none of them has a truncated line today).
    assert_eq!((inbound, outbound, truncated), (194, 83, 0));
}

/// Every frame of a known type lands in its typed variant; the typed view agrees with the JSON.
#[test]
fn known_types_are_typed_and_agree_with_the_json() {
    let (frames, _) = all_frames();
    for f in &frames {
        let msg = f.parse();
        let v = f.value();
        let at = f.at();
        let ty = v["type"].as_str().unwrap();
        assert_eq!(msg.type_name(), ty, "{at}");
        assert!(
            !matches!(msg.kind(), MessageKind::Unknown { .. }),
            "{at}: known type {ty} landed in Unknown"
        );
        let opt = |key: &str| v.get(key).and_then(Value::as_str);
        match msg.kind() {
            MessageKind::System(s) => {
                assert_eq!(Some(s.subtype()), opt("subtype"), "{at}");
                assert!(
                    !matches!(s, SystemMessage::Other(_)),
                    "{at}: typed subtype in Other"
                );
                assert_eq!(s.session_id(), opt("session_id"), "{at}");
                assert_eq!(s.uuid(), opt("uuid"), "{at}");
                if let SystemMessage::Init(init) = s {
                    assert_eq!(init.model, v["model"], "{at}");
                    assert_eq!(init.cwd, v["cwd"], "{at}");
                    assert_eq!(
                        init.tools.len(),
                        v["tools"].as_array().unwrap().len(),
                        "{at}"
                    );
                    assert_eq!(
                        init.permission_mode.as_deref(),
                        opt("permissionMode"),
                        "{at}"
                    );
                    assert_eq!(init.claude_code_version.as_deref(), Some("2.1.197"), "{at}");
                }
            }
            MessageKind::Assistant(a) => {
                let m = &v["message"];
                assert_eq!(a.id(), m["id"], "{at}");
                assert_eq!(a.model(), m["model"], "{at}");
                assert_eq!(a.message.role, "assistant", "{at}");
                assert_eq!(
                    a.content().len(),
                    m["content"].as_array().unwrap().len(),
                    "{at}"
                );
                assert_eq!(a.session_id.as_deref(), opt("session_id"), "{at}");
                assert_eq!(a.uuid.as_deref(), opt("uuid"), "{at}");
                assert_eq!(a.error.as_deref(), opt("error"), "{at}");
                assert_eq!(a.request_id.as_deref(), opt("request_id"), "{at}");
                let usage = a.message.usage.as_ref().unwrap();
                assert_eq!(
                    Some(usage.input_tokens),
                    m["usage"]["input_tokens"].as_u64(),
                    "{at}"
                );
                assert_eq!(
                    Some(usage.output_tokens),
                    m["usage"]["output_tokens"].as_u64(),
                    "{at}"
                );
                assert_no_unknown_blocks(a.content(), &at);
                for (block, json) in a.content().iter().zip(m["content"].as_array().unwrap()) {
                    assert_eq!(block.type_name(), json["type"], "{at}");
                    if let ContentBlock::ToolUse(t) = block {
                        assert_eq!(t.input, json["input"], "{at}");
                        assert_eq!(t.id, json["id"], "{at}");
                    }
                }
            }
            MessageKind::User(u) => {
                assert_eq!(
                    u.is_replay,
                    v["isReplay"].as_bool().unwrap_or(false),
                    "{at}"
                );
                assert_eq!(u.session_id.as_deref(), opt("session_id"), "{at}");
                assert_eq!(u.uuid.as_deref(), opt("uuid"), "{at}");
                assert_eq!(
                    u.parent_tool_use_id.as_deref(),
                    opt("parent_tool_use_id"),
                    "{at}"
                );
                let expected = v.get("tool_use_result").filter(|x| !x.is_null());
                assert_eq!(u.tool_use_result.as_ref(), expected, "{at}");
                assert_no_unknown_blocks(u.content().blocks(), &at);
                match &v["message"]["content"] {
                    Value::String(s) => assert_eq!(u.content().as_str(), Some(s.as_str()), "{at}"),
                    Value::Array(a) => assert_eq!(u.content().blocks().len(), a.len(), "{at}"),
                    other => panic!("{at}: content {other}"),
                }
            }
            MessageKind::Result(r) => {
                assert_eq!(r.subtype, v["subtype"], "{at}");
                assert_ne!(r.kind(), ResultSubtype::Other, "{at}");
                assert_eq!(r.is_error, v["is_error"].as_bool().unwrap(), "{at}");
                assert_eq!(r.total_cost_usd, v["total_cost_usd"].as_f64(), "{at}");
                assert_eq!(Some(r.num_turns), v["num_turns"].as_u64(), "{at}");
                assert_eq!(Some(r.duration_ms), v["duration_ms"].as_u64(), "{at}");
                assert_eq!(r.terminal_reason.as_deref(), opt("terminal_reason"), "{at}");
                assert_eq!(r.result.as_deref(), opt("result"), "{at}");
                assert_eq!(r.turn_cost_usd, None, "{at}");
                let model_usage = v["modelUsage"].as_object().unwrap();
                assert_eq!(r.model_usage.len(), model_usage.len(), "{at}");
                for (name, u) in model_usage {
                    assert_eq!(
                        Some(r.model_usage[name].cost_usd),
                        u["costUSD"].as_f64(),
                        "{at}"
                    );
                }
                assert!(r.usage.is_some(), "{at}");
            }
            MessageKind::StreamEvent(e) => {
                assert_eq!(e.event_type(), v["event"]["type"], "{at}");
                assert!(
                    !matches!(e.event, ApiStreamEvent::Other(_)),
                    "{at}: event in Other"
                );
                if let ApiStreamEvent::ContentBlockDelta { delta, .. } = &e.event {
                    assert!(
                        !matches!(delta, BlockDelta::Other(_)),
                        "{at}: delta in Other"
                    );
                }
                if let ApiStreamEvent::ContentBlockStart { content_block, .. } = &e.event {
                    assert_no_unknown_blocks(std::slice::from_ref(content_block), &at);
                }
            }
            MessageKind::ControlRequest(r) => {
                assert_eq!(r.request_id, v["request_id"], "{at}");
                assert_eq!(r.subtype, v["request"]["subtype"], "{at}");
                assert_eq!(Value::Object(r.body.clone()), v["request"], "{at}");
            }
            MessageKind::ControlResponse(r) => {
                let inner = &v["response"];
                assert_eq!(r.request_id, inner["request_id"], "{at}");
                match &r.outcome {
                    ControlOutcome::Success(payload) => {
                        assert_eq!(inner["subtype"], "success", "{at}");
                        assert_eq!(payload.as_ref(), inner.get("response"), "{at}");
                    }
                    ControlOutcome::Error { message, .. } => {
                        assert_eq!(inner["subtype"], "error", "{at}");
                        assert_eq!(message, &inner["error"], "{at}");
                    }
                    other => panic!("{at}: {other:?}"),
                }
            }
            MessageKind::ControlCancel(c) => assert_eq!(c.request_id, v["request_id"], "{at}"),
            other => panic!("{at}: unexpected kind {other:?}"),
        }
        assert_eq!(
            msg.session_id(),
            opt("session_id"),
            "{at}: Message::session_id"
        );
    }
}

fn assert_no_unknown_blocks(blocks: &[ContentBlock], at: &str) {
    for b in blocks {
        assert!(
            !matches!(b, ContentBlock::Unknown(_)),
            "{at}: block in Unknown: {b:?}"
        );
        if let ContentBlock::ToolResult(r) = b
            && let Some(ToolResultContent::Blocks(inner)) = &r.content
        {
            assert_no_unknown_blocks(inner, at);
        }
    }
}

#[test]
fn oneshot_assistant_text_and_result() {
    let msgs = messages_of("oneshot", CLI);
    let kinds: Vec<_> = msgs.iter().map(Message::type_name).collect();
    assert_eq!(kinds, ["system", "assistant", "result"]);
    let init = msgs[0].as_system().unwrap().as_init().unwrap();
    assert_eq!(init.model, "claude-opus-4-8[1m]");
    assert!(init.tools.iter().any(|t| t == "Bash"));
    let a = msgs[1].as_assistant().unwrap();
    assert_eq!(a.text(), "Hello from the fake model.");
    assert!(!a.is_error() && !a.is_subagent());
    assert_eq!(a.tool_uses().count(), 0);
    let r = msgs[2].as_result().unwrap();
    assert!(r.is_success());
    assert_eq!(r.text(), Some("Hello from the fake model."));
    assert_eq!(r.kind(), ResultSubtype::Success);
    assert_eq!(msgs[2].session_id(), msgs[0].session_id());
}

#[test]
fn api_error_529_is_an_error_result_with_retries() {
    let msgs = messages_of("api_error_529", CLI);
    let retries: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m.as_system() {
            Some(SystemMessage::ApiRetry(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2);
    assert_eq!((retries[0].attempt, retries[1].attempt), (1, 2));
    assert_eq!(retries[0].max_retries, 2);
    assert_eq!(retries[0].error_status, Some(529));
    assert!(retries[0].retry_delay_ms > 0.0);

    let synthetic = msgs.iter().find_map(Message::as_assistant).unwrap();
    assert_eq!(synthetic.error.as_deref(), Some("server_error"));
    assert_eq!(synthetic.model(), "<synthetic>");
    assert!(synthetic.text().starts_with("API Error: 529"));

    let r = msgs.iter().find_map(Message::as_result).unwrap();
    assert!(r.is_error);
    assert_eq!(r.subtype, "success");
    assert!(!r.is_success());
    assert!(r.is_api_error());
    assert_eq!(r.api_error_status, Some(529));
    assert!(r.text().unwrap().contains("529 Overloaded"));
}

#[test]
fn permission_allow_can_use_tool_request() {
    let msgs = messages_of("permission_allow", CLI);
    let req = msgs
        .iter()
        .find_map(|m| match m.kind() {
            MessageKind::ControlRequest(r) if r.subtype == "can_use_tool" => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(req.field("tool_name").unwrap(), "Bash");
    assert_eq!(
        req.field("input").unwrap()["command"],
        "touch marker.txt && echo hi"
    );
    assert!(!req.request_id.is_empty());

    let tool_use = msgs
        .iter()
        .filter_map(Message::as_assistant)
        .find_map(|a| a.tool_uses().next().cloned())
        .unwrap();
    assert_eq!(tool_use.name, "Bash");
    assert_eq!(req.field("tool_use_id").unwrap(), tool_use.id.as_str());

    let user = msgs
        .iter()
        .filter_map(Message::as_user)
        .find(|u| u.is_tool_result())
        .unwrap();
    let result = user.tool_results().next().unwrap();
    assert_eq!(result.tool_use_id, tool_use.id);
    assert_eq!(result.text(), "hi");
    assert!(!result.is_error);
    assert_eq!(user.tool_use_result.as_ref().unwrap()["stdout"], "hi");

    // The SDK's answer, parsed from the other direction.
    let answers = messages_of("permission_allow", SDK);
    let answer = answers
        .iter()
        .find_map(|m| match m.kind() {
            MessageKind::ControlResponse(r) if r.request_id == req.request_id => Some(r),
            _ => None,
        })
        .unwrap();
    let ControlOutcome::Success(Some(payload)) = &answer.outcome else {
        panic!("{answer:?}")
    };
    assert_eq!(payload["behavior"], "allow");
}

#[test]
fn sdk_frames_parse_as_typed_messages() {
    let msgs = messages_of("streaming_multiturn", SDK);
    let init = msgs
        .iter()
        .find_map(|m| match m.kind() {
            MessageKind::ControlRequest(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(init.subtype, "initialize");
    let prompts: Vec<_> = msgs.iter().filter_map(Message::as_user).collect();
    assert!(prompts.len() >= 3);
    assert_eq!(prompts[0].text(), "hello, turn one");
    assert_eq!(prompts[0].session_id.as_deref(), Some("default"));
    assert_eq!(prompts[0].uuid, None);
    assert!(prompts.iter().any(|u| !u.content().blocks().is_empty()));
}

#[test]
fn error_subtypes_and_terminal_reasons() {
    let r = messages_of("max_turns", CLI)
        .into_iter()
        .find_map(|m| m.as_result().cloned())
        .unwrap();
    assert_eq!(r.kind(), ResultSubtype::ErrorMaxTurns);
    assert_eq!(r.terminal_reason.as_deref(), Some("max_turns"));
    assert_eq!(r.errors, ["Reached maximum number of turns (1)"]);
    assert!(r.is_error && !r.is_api_error());

    let msgs = messages_of("interrupt", CLI);
    let r = msgs.iter().find_map(Message::as_result).unwrap();
    assert_eq!(r.kind(), ResultSubtype::ErrorDuringExecution);
    assert_eq!(r.terminal_reason.as_deref(), Some("aborted_streaming"));
    let marker = msgs.iter().find_map(Message::as_user).unwrap();
    assert_eq!(marker.text(), "[Request interrupted by user]");
    // The interrupt's answer has no `response` field.
    assert!(msgs.iter().any(|m| matches!(
        m.kind(),
        MessageKind::ControlResponse(r) if r.outcome == ControlOutcome::Success(None)
    )));
}

#[test]
fn partial_messages_stream_events() {
    let msgs = messages_of("partial_messages", CLI);
    let text: String = msgs
        .iter()
        .filter_map(Message::as_stream_event)
        .filter_map(|e| e.text_delta())
        .collect();
    assert_eq!(text, "Running echo.The command printed hi.");
    let json: String = msgs
        .iter()
        .filter_map(Message::as_stream_event)
        .filter_map(|e| match &e.event {
            ApiStreamEvent::ContentBlockDelta {
                delta: BlockDelta::InputJson(s),
                ..
            } => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let input: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(input["command"], "touch marker.txt && echo hi");
    let stop_reasons: Vec<_> = msgs
        .iter()
        .filter_map(Message::as_stream_event)
        .filter_map(|e| match &e.event {
            ApiStreamEvent::MessageDelta { stop_reason, .. } => stop_reason.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(stop_reasons, ["tool_use", "end_turn"]);
    let start = msgs
        .iter()
        .filter_map(Message::as_stream_event)
        .next()
        .unwrap();
    assert!(
        matches!(&start.event, ApiStreamEvent::MessageStart { message } if message.id.starts_with("msg_"))
    );
    assert!(start.ttft_ms.is_some());
    let thinking = msgs
        .iter()
        .filter_map(Message::as_assistant)
        .next()
        .unwrap();
    assert_eq!(thinking.thinking(), "Let me run it.");
    assert!(msgs.iter().any(|m| matches!(
        m.as_system(),
        Some(SystemMessage::ThinkingTokens(t)) if t.estimated_tokens > 0
    )));
    assert!(msgs.iter().any(|m| matches!(
        m.as_system(),
        Some(SystemMessage::Status(s)) if s.status.as_deref() == Some("requesting")
    )));
}

#[test]
fn subagent_tasks_and_prompt() {
    let msgs = messages_of("subagent", CLI);
    let started = msgs
        .iter()
        .find_map(|m| match m.as_system() {
            Some(SystemMessage::TaskStarted(t)) => Some(t),
            _ => None,
        })
        .unwrap();
    assert_eq!(started.task_type.as_deref(), Some("local_agent"));
    assert_eq!(started.subagent_type.as_deref(), Some("general-purpose"));
    let prompt = msgs
        .iter()
        .filter_map(Message::as_user)
        .find(|u| u.parent_tool_use_id.is_some())
        .unwrap();
    assert_eq!(prompt.parent_tool_use_id, started.tool_use_id);
    assert_eq!(prompt.subagent_type.as_deref(), Some("general-purpose"));
    assert_eq!(prompt.text(), "Reply with hi");
    let updated = msgs
        .iter()
        .find_map(|m| match m.as_system() {
            Some(SystemMessage::TaskUpdated(t)) => Some(t),
            _ => None,
        })
        .unwrap();
    assert_eq!(updated.status(), Some("completed"));
    let done = msgs
        .iter()
        .find_map(|m| match m.as_system() {
            Some(SystemMessage::TaskNotification(t)) => Some(t),
            _ => None,
        })
        .unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(done.task_id, started.task_id);
    assert!(done.usage.as_ref().unwrap().total_tokens > 0);
}

#[test]
fn mcp_tool_use_meta_and_block_results() {
    let msgs = messages_of("full", CLI);
    let a = msgs
        .iter()
        .filter_map(Message::as_assistant)
        .find(|a| !a.tool_use_meta.is_empty())
        .unwrap();
    assert_eq!(a.tool_use_meta[0].display_name.as_deref(), Some("Add"));
    assert_eq!(a.tool_uses().next().unwrap().name, "mcp__probe__add");
    let u = msgs
        .iter()
        .filter_map(Message::as_user)
        .find(|u| {
            u.tool_results()
                .any(|r| matches!(r.content, Some(ToolResultContent::Blocks(_))))
        })
        .unwrap();
    assert_eq!(u.tool_results().next().unwrap().text(), "1 + 2 = 3");
    assert!(u.tool_use_result.as_ref().unwrap().is_array());
    // set_model produces a replayed user line.
    let replay = msgs
        .iter()
        .filter_map(Message::as_user)
        .find(|u| u.is_replay());
    assert!(replay.unwrap().text().contains("Set model to"));

    let denied = messages_of("hooks_pretool_deny", CLI);
    let r = denied
        .iter()
        .filter_map(Message::as_user)
        .flat_map(|u| u.tool_results())
        .next()
        .unwrap();
    assert!(r.is_error);
    assert_eq!(r.text(), "blocked by probe hook");
}

#[test]
fn cost_tracker_over_a_multi_turn_session() {
    for name in ["full", "streaming_multiturn", "control_misc"] {
        let results: Vec<_> = messages_of(name, CLI)
            .into_iter()
            .filter_map(|m| m.as_result().cloned())
            .collect();
        assert!(results.len() >= 2, "{name}");
        let mut tracker = CostTracker::new();
        let mut sum = 0.0;
        for r in &results {
            let turn = tracker.observe(r).unwrap();
            assert!(turn >= 0.0, "{name}: {turn}");
            sum += turn;
        }
        let last = results.last().unwrap().total_cost_usd.unwrap();
        assert!((sum - last).abs() < 1e-9, "{name}: {sum} vs {last}");
        assert!((tracker.total() - last).abs() < 1e-9);
    }
}
