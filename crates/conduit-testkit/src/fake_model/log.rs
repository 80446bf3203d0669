//! The request log of a [`FakeModel`](super::FakeModel).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// Which endpoint a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestKind {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `HEAD` on any path (the CLI sends `HEAD /` at startup).
    Head,
    /// `GET` on any path.
    Get,
    /// Anything else (answered 404).
    Other,
}

/// How the fake answered a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Answer {
    /// Not answered yet (the turn's delay is running, or the handler is still working).
    Pending,
    /// A normal assistant message, from a scripted turn or the fallback.
    Message {
        /// Labels of the content blocks: `text`, `thinking`, `tool_use:<name>`.
        blocks: Vec<String>,
        /// The stop reason sent.
        stop_reason: String,
        /// Ids of the `tool_use` blocks sent, in order.
        tool_use_ids: Vec<String>,
    },
    /// An HTTP error status with an Anthropic error body (scripted failure or bad request).
    HttpError {
        /// The HTTP status.
        status: u16,
        /// The `error.type` of the body.
        error_type: String,
    },
    /// A stream that ended with an SSE `error` event.
    SseError {
        /// The `error.type` of the event.
        error_type: String,
    },
    /// `{"input_tokens": N}` for `count_tokens`.
    CountTokens {
        /// The count returned.
        input_tokens: u64,
    },
    /// An empty `200` (`HEAD`) or `{}` (`GET`).
    Ok,
}

/// One request the [`FakeModel`](super::FakeModel) received, in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LoggedRequest {
    /// 0-based position in the log.
    pub seq: usize,
    /// Time since the server started.
    pub at: Duration,
    /// HTTP method (`POST`, `HEAD`, `GET`, …).
    pub method: String,
    /// Path including the query string, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Which endpoint this was.
    pub kind: RequestKind,
    /// All request headers, names in lower case (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Size of the request body in bytes.
    pub body_bytes: usize,
    /// The body parsed as JSON (`None` for an empty or non-JSON body).
    pub body: Option<Value>,
    /// `model` from the body.
    pub model: Option<String>,
    /// `stream` from the body (`false` when absent).
    pub stream: bool,
    /// Number of entries in `messages` (including the CLI's `role:"system"` entry).
    pub message_count: usize,
    /// Text of the most recent user text block, skipping `<system-reminder>` blocks and
    /// tool results (so after a tool call it is still the prompt that started the turn).
    pub last_user_text: Option<String>,
    /// Names of the tools offered in `tools`.
    pub tool_names: Vec<String>,
    /// Index in the script of the turn that answered (`None`: the fallback, or not a messages call).
    pub turn: Option<usize>,
    /// What was sent back.
    pub answer: Answer,
    /// `true` when the client went away before the whole response was sent (for example an
    /// interrupted stream). Detection is best effort: it happens when the server next writes.
    pub disconnected: bool,
}

impl LoggedRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `messages` array of the body (empty when absent).
    pub fn messages(&self) -> &[Value] {
        self.body
            .as_ref()
            .and_then(|b| b.get("messages"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The `tool_result` blocks in the **last** message of the request (what the client sends back
    /// after running the tools of the previous reply).
    pub fn tool_results(&self) -> Vec<&Value> {
        self.messages()
            .last()
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Text of the `tool_result` block answering `tool_use_id`, anywhere in the messages
    /// (string content, or the text blocks of list content joined with `\n`).
    pub fn tool_result_text(&self, tool_use_id: &str) -> Option<String> {
        self.messages()
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .find(|b| {
                b.get("type").and_then(Value::as_str) == Some("tool_result")
                    && b.get("tool_use_id").and_then(Value::as_str) == Some(tool_use_id)
            })
            .map(|b| match b.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            })
    }

    /// The `system` field of the body, flattened to text.
    pub fn system_text(&self) -> Option<String> {
        match self.body.as_ref()?.get("system")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        }
    }
}

/// Text of the most recent user text block, skipping `<system-reminder>` blocks.
pub(crate) fn last_user_text(messages: &[Value]) -> Option<String> {
    for message in messages.iter().rev() {
        if message.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        match message.get("content") {
            Some(Value::String(s)) if !is_reminder(s) => return Some(s.clone()),
            Some(Value::Array(blocks)) => {
                let found = blocks.iter().rev().find_map(|b| {
                    if b.get("type").and_then(Value::as_str) != Some("text") {
                        return None;
                    }
                    b.get("text")
                        .and_then(Value::as_str)
                        .filter(|t| !is_reminder(t))
                });
                if let Some(text) = found {
                    return Some(text.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

fn is_reminder(text: &str) -> bool {
    text.trim_start().starts_with("<system-reminder>")
}
