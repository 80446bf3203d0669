//! `--show-hooks`: one line on stderr for each hook event the CLI fires.
//!
//! A match-all hook is registered for each event in [`EVENTS`]; it prints
//! `[hook] <Event> [<subject>] [<details>]` — for example
//! `[hook] PreToolUse Bash {"command":"ls","description":"List files"}` — and answers with an
//! empty output, so the session goes on exactly as without the flag.

use claude_conduit::hooks::{HookEvent, HookInput, HookMatcher, HookOutput, Hooks};
use serde_json::{Map, Value};

/// The events `--show-hooks` registers for.
pub const EVENTS: &[HookEvent] = &[
    HookEvent::PreToolUse,
    HookEvent::PostToolUse,
    HookEvent::PostToolUseFailure,
    HookEvent::UserPromptSubmit,
    HookEvent::Stop,
    HookEvent::SubagentStart,
    HookEvent::SubagentStop,
    HookEvent::PreCompact,
    HookEvent::Notification,
    HookEvent::SessionStart,
    HookEvent::SessionEnd,
];

/// At most this many characters of an event's details are printed.
const MAX_DETAILS: usize = 200;

/// Adds the printing hooks to `hooks`.
pub fn add(mut hooks: Hooks) -> Hooks {
    for event in EVENTS {
        hooks.add(
            event.clone(),
            HookMatcher::all().callback(|input: HookInput, _tool_use_id| async move {
                eprintln!("{}", line(&input));
                HookOutput::default()
            }),
        );
    }
    hooks
}

/// Fields every hook input carries; left out of the details.
const COMMON: &[&str] = &[
    "hook_event_name",
    "session_id",
    "transcript_path",
    "cwd",
    "permission_mode",
    "prompt_id",
    "agent_id",
    "effort",
    "tool_use_id",
];

/// The line printed for one event.
pub fn line(input: &HookInput) -> String {
    let event = input.event();
    let mut out = format!("[hook] {event}");
    let subject = input
        .tool_name()
        .or_else(|| input.matcher_subject())
        .map(str::to_owned);
    if let Some(subject) = &subject {
        out.push(' ');
        out.push_str(subject);
    }
    // The one field that matters for the tool events; the rest of the input for the others.
    let details = match event {
        HookEvent::PreToolUse => input.tool_input().cloned(),
        HookEvent::PostToolUse => input.get("tool_response").cloned(),
        HookEvent::PostToolUseFailure => input.get("error").cloned(),
        _ => input.raw().as_object().map(|fields| {
            let rest: Map<String, Value> = fields
                .iter()
                .filter(|(k, v)| {
                    !COMMON.contains(&k.as_str())
                        && (subject.is_none() || v.as_str() != subject.as_deref())
                        && !v.is_null()
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(rest)
        }),
    };
    match details {
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(Value::Null) | None => {}
        Some(v) => {
            out.push(' ');
            out.push_str(&one_line(&v));
        }
    }
    out
}

fn one_line(v: &Value) -> String {
    let s = v.to_string();
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(MAX_DETAILS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> HookInput {
        HookInput::from_wire(v)
    }

    #[test]
    fn tool_events_show_the_tool_and_its_input_or_response() {
        let pre = input(json!({
            "hook_event_name": "PreToolUse", "session_id": "s", "transcript_path": "t",
            "cwd": "/w", "tool_name": "Bash", "tool_input": {"command": "ls"},
            "tool_use_id": "toolu_1"
        }));
        assert_eq!(line(&pre), r#"[hook] PreToolUse Bash {"command":"ls"}"#);
        let post = input(json!({
            "hook_event_name": "PostToolUse", "session_id": "s", "transcript_path": "t",
            "cwd": "/w", "tool_name": "Bash", "tool_input": {"command": "ls"},
            "tool_response": {"stdout": "a".repeat(500)}, "tool_use_id": "toolu_1"
        }));
        let l = line(&post);
        assert!(
            l.starts_with(r#"[hook] PostToolUse Bash {"stdout":"aaa"#),
            "{l}"
        );
        assert!(l.ends_with('…') && l.chars().count() < 240, "{l}");
    }

    #[test]
    fn other_events_show_their_own_fields() {
        let stop = input(json!({
            "hook_event_name": "Stop", "session_id": "s", "transcript_path": "t", "cwd": "/w",
            "stop_hook_active": false
        }));
        assert_eq!(line(&stop), r#"[hook] Stop {"stop_hook_active":false}"#);
        let start = input(json!({
            "hook_event_name": "SessionStart", "session_id": "s", "transcript_path": "t",
            "cwd": "/w", "source": "startup"
        }));
        assert_eq!(line(&start), "[hook] SessionStart startup");
        assert_eq!(
            add(Hooks::new()).registration().callbacks.len(),
            EVENTS.len()
        );
    }
}
