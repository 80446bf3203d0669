//! Typed messages: every frame the CLI writes and every frame the SDK writes.
//!
//! A [`Message`] keeps the frame's raw bytes beside its typed view ([`MessageKind`]), so that
//! serializing a message gives back exactly the JSON that arrived, unknown fields included.
//!
//! * Every frame `type` of the protocol has its own variant: `assistant`, `user`, `result`,
//!   `system` (one variant of [`SystemMessage`] per documented subtype), `stream_event`,
//!   `rate_limit_event`, `keep_alive`, `conversation_reset` and the three control frames.
//! * Nothing new makes parsing fail: an unknown `type` becomes [`MessageKind::Unknown`], an unknown
//!   `system` subtype [`SystemMessage::Other`], an unknown content block
//!   [`ContentBlock::Unknown`], each keeping its JSON.
//! * Each frame is parsed once, straight into these types: the `type`/`subtype` tags are read
//!   off the parser as they come, without serde's buffering tagged enums or `flatten`.
//!
//! ```
//! use bytes::Bytes;
//! use claude_conduit::message::{ContentBlock, Message, MessageKind};
//!
//! let frame = Bytes::from_static(
//!     br#"{"type":"assistant","message":{"id":"msg_1","model":"claude-opus-4-8","role":"assistant","content":[{"type":"text","text":"Hello!"}],"stop_reason":null,"usage":{"input_tokens":12,"output_tokens":3}},"parent_tool_use_id":null,"session_id":"s-1","uuid":"u-1"}"#,
//! );
//! let msg = Message::parse(frame)?;
//! assert_eq!(msg.type_name(), "assistant");
//! assert_eq!(msg.session_id(), Some("s-1"));
//! let MessageKind::Assistant(a) = msg.kind() else { unreachable!() };
//! assert_eq!(a.text(), "Hello!");
//! assert!(matches!(&a.content()[0], ContentBlock::Text(t) if t.text == "Hello!"));
//! // Serializing gives back the frame exactly.
//! assert_eq!(serde_json::to_string(&msg)?.as_bytes(), msg.raw().as_ref());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod assistant;
mod content;
mod control;
mod cost;
pub(crate) mod de;
mod events;
pub mod outbound;
mod result;
mod skim;
mod system;

use bytes::Bytes;
use serde_json::Value;

pub use assistant::{
    ApiMessage, AssistantMessage, ServerToolUsage, ToolUseMeta, Usage, UserBody, UserMessage,
};
pub use content::{
    ContentBlock, DocumentBlock, ImageBlock, MessageContent, RedactedThinkingBlock,
    ServerToolResultBlock, TextBlock, ThinkingBlock, ToolResultBlock, ToolResultContent,
    ToolUseBlock,
};
pub use control::{ControlCancel, ControlOutcome, ControlRequest, ControlResponse};
pub use cost::CostTracker;
pub use events::{
    ApiStreamEvent, BlockDelta, ConversationReset, RateLimitEvent, RateLimitInfo, StreamEvent,
};
pub use outbound::{UserContent, UserInput};
pub use result::{ModelUsage, PermissionDenial, ResultMessage, ResultSubtype};
pub use system::{
    ApiRetry, CompactBoundary, CompactMetadata, HookRun, McpServerInfo, OtherSystem, SystemInit,
    SystemMessage, SystemStatus, TaskNotification, TaskProgress, TaskStarted, TaskUpdated,
    TaskUsage, ThinkingTokens,
};

use crate::error::{Error, Result};
use de::tagged_object;

/// One frame: the raw JSON bytes and a typed view of them.
///
/// Messages from a session are **validated when they arrive and typed on first access**: the
/// stream checks that each frame is well-formed JSON and reads its `type` (malformed frames are
/// [`Error::Decode`] items in the stream), and the typed view ([`kind`](Self::kind) and the
/// `as_*` accessors) is built the first time you ask for it. Code that only relays or counts
/// frames (a gateway, a logger, a benchmark) never pays for typing; code that reads every
/// message pays exactly once. [`Message::parse`] types eagerly.
#[derive(Debug, Clone)]
pub struct Message {
    raw: Bytes,
    tag: Tag,
    /// Boxed: a `Message` moves through the stream by value, and an unboxed `MessageKind` would
    /// make every move a copy of several hundred bytes.
    kind: std::sync::OnceLock<Box<MessageKind>>,
}

/// The frame's `type`, known without typing the whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Assistant,
    User,
    Result,
    System,
    StreamEvent,
    Control,
    Other,
}

impl Tag {
    fn of(type_: &str) -> Tag {
        match type_ {
            "assistant" => Tag::Assistant,
            "user" => Tag::User,
            "result" => Tag::Result,
            "system" => Tag::System,
            "stream_event" => Tag::StreamEvent,
            "control_request" | "control_response" | "control_cancel_request" => Tag::Control,
            _ => Tag::Other,
        }
    }

    fn of_kind(kind: &MessageKind) -> Tag {
        Tag::of(match kind {
            MessageKind::Unknown { .. } => "",
            other => other.type_name(),
        })
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Tag::Assistant => "assistant",
            Tag::User => "user",
            Tag::Result => "result",
            Tag::System => "system",
            Tag::StreamEvent => "stream_event",
            Tag::Control | Tag::Other => return None,
        })
    }
}

/// Checks a frame is one well-formed JSON object and reads its `type`, without building
/// anything else (serde skips the other fields, validating them).
#[derive(serde::Deserialize)]
struct Header<'a> {
    #[serde(rename = "type", borrow, default)]
    type_: Option<std::borrow::Cow<'a, str>>,
}

/// The typed view of a frame, one variant per frame `type`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageKind {
    /// `type:"system"` (init, status, api_retry, task_*, hook_*, …).
    System(SystemMessage),
    /// `type:"assistant"`: one content block of a model message.
    Assistant(AssistantMessage),
    /// `type:"user"`: a prompt, tool results, a replay, an interrupt marker.
    User(UserMessage),
    /// `type:"result"`, the last frame of every turn.
    Result(ResultMessage),
    /// `type:"stream_event"`: a raw API streaming event (`--include-partial-messages`).
    StreamEvent(StreamEvent),
    /// `type:"rate_limit_event"`.
    RateLimit(RateLimitEvent),
    /// `type:"conversation_reset"` (after `/clear`).
    ConversationReset(ConversationReset),
    /// `type:"keep_alive"`.
    KeepAlive,
    /// `type:"control_request"`.
    ControlRequest(ControlRequest),
    /// `type:"control_response"`.
    ControlResponse(ControlResponse),
    /// `type:"control_cancel_request"`.
    ControlCancel(ControlCancel),
    /// A frame of a custom type registered in [`Extensions`](crate::extension::Extensions),
    /// validated and typed (read it with [`Message::custom`]).
    Custom(crate::extension::CustomMessage),
    /// A frame whose `type` this SDK does not know (`tool_progress`, `auth_status`, …).
    Unknown {
        /// The frame's `type` (empty if it had none).
        type_: String,
        /// The whole frame as JSON.
        value: Value,
    },
}

tagged_object!(MessageKind, "a frame (a JSON object)", "type", |t| {
    Ok(match t.tag() {
        "assistant" => MessageKind::Assistant(t.finish()?),
        "stream_event" => MessageKind::StreamEvent(t.finish()?),
        "user" => MessageKind::User(t.finish()?),
        "system" => MessageKind::System(t.finish()?),
        "result" => MessageKind::Result(t.finish()?),
        "control_request" => {
            MessageKind::ControlRequest(t.finish::<control::RequestWire>()?.into())
        }
        "control_response" => {
            MessageKind::ControlResponse(t.finish::<control::ResponseWire>()?.into())
        }
        "control_cancel_request" => {
            MessageKind::ControlCancel(t.finish::<control::CancelWire>()?.into())
        }
        "rate_limit_event" => MessageKind::RateLimit(t.finish()?),
        "conversation_reset" => MessageKind::ConversationReset(t.finish()?),
        "keep_alive" => {
            t.skip()?;
            MessageKind::KeepAlive
        }
        other => {
            let type_ = other.to_owned();
            MessageKind::Unknown {
                type_,
                value: t.into_value("type")?,
            }
        }
    })
});

impl MessageKind {
    /// The frame `type` as it appears on the wire.
    pub fn type_name(&self) -> &str {
        match self {
            MessageKind::System(_) => "system",
            MessageKind::Assistant(_) => "assistant",
            MessageKind::User(_) => "user",
            MessageKind::Result(_) => "result",
            MessageKind::StreamEvent(_) => "stream_event",
            MessageKind::RateLimit(_) => "rate_limit_event",
            MessageKind::ConversationReset(_) => "conversation_reset",
            MessageKind::KeepAlive => "keep_alive",
            MessageKind::ControlRequest(_) => "control_request",
            MessageKind::ControlResponse(_) => "control_response",
            MessageKind::ControlCancel(_) => "control_cancel_request",
            MessageKind::Custom(c) => &c.type_,
            MessageKind::Unknown { type_, .. } => type_,
        }
    }
}

/// Parse the typed view of one frame, in one pass.
///
/// The frame is checked to be UTF-8 once, as a whole (fast, vectorised), and then parsed as a
/// `str`: serde_json then skips its per-string UTF-8 validation, which costs more in total.
fn parse_kind(raw: &[u8]) -> serde_json::Result<MessageKind> {
    let text = match std::str::from_utf8(raw) {
        Ok(text) => text,
        // Not UTF-8: let the byte parser report where (invalid JSON, or a bad string).
        Err(_) => return serde_json::from_slice(raw),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let kind = serde::Deserialize::deserialize(&mut de)?;
    de.end()?;
    Ok(kind)
}

/// A `system` frame whose known subtype did not have the expected shape (a field changed type
/// in a newer CLI) is kept as [`SystemMessage::Other`] rather than dropped.
fn system_fallback(raw: &[u8]) -> Option<MessageKind> {
    let value: Value = serde_json::from_slice(raw).ok()?;
    if value.get("type")?.as_str()? != "system" {
        return None;
    }
    let subtype = value.get("subtype")?.as_str()?.to_owned();
    Some(MessageKind::System(SystemMessage::Other(OtherSystem {
        subtype,
        value,
    })))
}

impl Message {
    /// Parse one frame (one JSON object, without its newline).
    ///
    /// Errors are [`Error::Decode`] with an excerpt of the frame: the bytes are not JSON, not an
    /// object, or a frame of a known type lacks a required field (`message` of `assistant` and
    /// `user`, `request_id` of control frames) or has a field of the wrong JSON type. Unknown
    /// types, subtypes, content blocks and fields never fail.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use claude_conduit::message::{Message, MessageKind};
    /// let msg = Message::parse(Bytes::from_static(br#"{"type":"result","subtype":"success","is_error":false,"result":"4","total_cost_usd":0.01}"#))?;
    /// let result = msg.as_result().unwrap();
    /// assert!(result.is_success());
    /// assert_eq!(result.text(), Some("4"));
    ///
    /// let msg = Message::parse(Bytes::from_static(br#"{"type":"brand_new","x":1}"#))?;
    /// assert!(matches!(msg.kind(), MessageKind::Unknown { type_, .. } if type_ == "brand_new"));
    ///
    /// assert!(Message::parse(Bytes::from_static(b"not json")).is_err());
    /// # Ok::<(), claude_conduit::Error>(())
    /// ```
    pub fn parse(raw: Bytes) -> Result<Self> {
        let kind = match parse_kind(&raw) {
            Ok(kind) => kind,
            Err(e) => system_fallback(&raw).ok_or_else(|| Error::decode(&raw, e))?,
        };
        Ok(Message {
            raw,
            tag: Tag::of_kind(&kind),
            kind: std::sync::OnceLock::from(Box::new(kind)),
        })
    }

    /// Check that `raw` is one well-formed JSON object and read its `type`; the typed view is
    /// built on first access. Errors are [`Error::Decode`] with an excerpt.
    ///
    /// A frame of a known type whose fields do not have the shape this SDK expects (valid JSON,
    /// wrong field types) types as [`MessageKind::Unknown`] with the whole frame, instead of
    /// failing later.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use claude_conduit::message::Message;
    /// let msg = Message::validate(Bytes::from_static(br#"{"type":"result","subtype":"success","is_error":false}"#))?;
    /// assert!(msg.is_result()); // no typing needed for this
    /// assert!(msg.as_result().is_some_and(|r| r.is_success())); // typed now, once
    /// assert!(Message::validate(Bytes::from_static(br#"{"type":"assistant", oops"#)).is_err());
    /// # Ok::<(), claude_conduit::Error>(())
    /// ```
    pub fn validate(raw: Bytes) -> Result<Self> {
        // The skim accepts only what the serde pass below accepts, with the same `type`, at a
        // fraction of its cost; anything it is unsure of (errors included) goes to serde, which
        // decides and words the error.
        let tag = match skim::object_type(&raw) {
            Some(type_) => Tag::of(type_.unwrap_or("")),
            None => {
                let header: Header<'_> =
                    serde_json::from_slice(&raw).map_err(|e| Error::decode(&raw, e))?;
                Tag::of(header.type_.as_deref().unwrap_or(""))
            }
        };
        Ok(Message {
            raw,
            tag,
            kind: std::sync::OnceLock::new(),
        })
    }

    fn typed(&self) -> &MessageKind {
        self.kind.get_or_init(|| {
            Box::new(match parse_kind(&self.raw) {
                Ok(kind) => kind,
                Err(_) => system_fallback(&self.raw).unwrap_or_else(|| MessageKind::Unknown {
                    type_: self.tag.name().unwrap_or_default().to_owned(),
                    value: serde_json::from_slice(&self.raw).unwrap_or(Value::Null),
                }),
            })
        })
    }

    /// The frame exactly as it arrived (no trailing newline).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// A message of a registered custom type (typed already).
    pub(crate) fn from_custom(raw: Bytes, custom: crate::extension::CustomMessage) -> Self {
        Message {
            raw,
            tag: Tag::Other,
            kind: std::sync::OnceLock::from(Box::new(MessageKind::Custom(custom))),
        }
    }

    /// The typed value of a frame of a registered custom type, if it is a `T` (see
    /// [`extension`](crate::extension)).
    pub fn custom<T: 'static>(&self) -> Option<&T> {
        match self.kind.get().map(|k| &**k) {
            Some(MessageKind::Custom(c)) => c.get(),
            _ => None,
        }
    }

    /// Whether the frame's `type` is none of the protocol's own (typing not needed).
    pub(crate) fn is_other_type(&self) -> bool {
        self.tag == Tag::Other
    }

    /// The typed view.
    pub fn kind(&self) -> &MessageKind {
        self.typed()
    }

    /// Mutable typed view (the session fills in derived fields such as per-turn cost).
    #[allow(dead_code)] // used by the session layer
    pub(crate) fn kind_mut(&mut self) -> &mut MessageKind {
        self.typed();
        match self.kind.get_mut() {
            Some(kind) => kind,
            // `typed()` just filled it.
            None => unreachable!("typed view initialised above"),
        }
    }

    /// Consume the message, keeping the typed view.
    pub fn into_kind(self) -> MessageKind {
        self.typed();
        let Message { kind, .. } = self;
        kind.into_inner()
            .map_or(MessageKind::KeepAlive, |kind| *kind)
    }

    /// Consume the message, keeping both parts.
    pub fn into_parts(self) -> (Bytes, MessageKind) {
        self.typed();
        let Message { raw, kind, .. } = self;
        (
            raw,
            kind.into_inner()
                .map_or(MessageKind::KeepAlive, |kind| *kind),
        )
    }

    /// The frame as a JSON value (parsed from the raw bytes).
    pub fn to_value(&self) -> Result<Value> {
        serde_json::from_slice(&self.raw).map_err(|e| Error::decode(&self.raw, e))
    }

    /// The frame `type` (`"assistant"`, `"result"`, …; the unknown type itself for
    /// [`MessageKind::Unknown`]).
    pub fn type_name(&self) -> &str {
        match self.tag.name() {
            Some(name) => name,
            None => self.typed().type_name(),
        }
    }

    /// The subtype of `system`, `result` and control request frames.
    pub fn subtype(&self) -> Option<&str> {
        match self.typed() {
            MessageKind::System(s) => Some(s.subtype()),
            MessageKind::Result(r) => Some(&r.subtype),
            MessageKind::ControlRequest(r) => Some(&r.subtype),
            _ => None,
        }
    }

    /// The CLI's `session_id`, on every frame that carries one (not on control frames).
    pub fn session_id(&self) -> Option<&str> {
        match self.typed() {
            MessageKind::System(s) => s.session_id(),
            MessageKind::Assistant(m) => m.session_id.as_deref(),
            MessageKind::User(m) => m.session_id.as_deref(),
            MessageKind::Result(m) => m.session_id.as_deref(),
            MessageKind::StreamEvent(m) => m.session_id.as_deref(),
            MessageKind::RateLimit(m) => m.session_id.as_deref(),
            MessageKind::ConversationReset(m) => m.session_id.as_deref(),
            MessageKind::Unknown { value, .. } => value.get("session_id").and_then(Value::as_str),
            MessageKind::Custom(c) => c.value.get("session_id").and_then(Value::as_str),
            MessageKind::KeepAlive
            | MessageKind::ControlRequest(_)
            | MessageKind::ControlResponse(_)
            | MessageKind::ControlCancel(_) => None,
        }
    }

    /// The frame's `uuid`, when it has one.
    pub fn uuid(&self) -> Option<&str> {
        match self.typed() {
            MessageKind::System(s) => s.uuid(),
            MessageKind::Assistant(m) => m.uuid.as_deref(),
            MessageKind::User(m) => m.uuid.as_deref(),
            MessageKind::Result(m) => m.uuid.as_deref(),
            MessageKind::StreamEvent(m) => m.uuid.as_deref(),
            MessageKind::RateLimit(m) => m.uuid.as_deref(),
            MessageKind::ConversationReset(m) => m.uuid.as_deref(),
            MessageKind::Unknown { value, .. } => value.get("uuid").and_then(Value::as_str),
            MessageKind::Custom(c) => c.value.get("uuid").and_then(Value::as_str),
            MessageKind::KeepAlive
            | MessageKind::ControlRequest(_)
            | MessageKind::ControlResponse(_)
            | MessageKind::ControlCancel(_) => None,
        }
    }

    /// `parent_tool_use_id`: set on subagent output (assistant, user and stream_event frames).
    pub fn parent_tool_use_id(&self) -> Option<&str> {
        match self.typed() {
            MessageKind::Assistant(m) => m.parent_tool_use_id.as_deref(),
            MessageKind::User(m) => m.parent_tool_use_id.as_deref(),
            MessageKind::StreamEvent(m) => m.parent_tool_use_id.as_deref(),
            _ => None,
        }
    }

    /// The result view, if this is a `result` frame.
    pub fn as_result(&self) -> Option<&ResultMessage> {
        match self.typed() {
            MessageKind::Result(r) => Some(r),
            _ => None,
        }
    }

    /// The assistant view, if this is an `assistant` frame.
    pub fn as_assistant(&self) -> Option<&AssistantMessage> {
        match self.typed() {
            MessageKind::Assistant(m) => Some(m),
            _ => None,
        }
    }

    /// The user view, if this is a `user` frame.
    pub fn as_user(&self) -> Option<&UserMessage> {
        match self.typed() {
            MessageKind::User(m) => Some(m),
            _ => None,
        }
    }

    /// The system view, if this is a `system` frame.
    pub fn as_system(&self) -> Option<&SystemMessage> {
        match self.typed() {
            MessageKind::System(m) => Some(m),
            _ => None,
        }
    }

    /// The stream event, if this is a `stream_event` frame.
    pub fn as_stream_event(&self) -> Option<&StreamEvent> {
        match self.typed() {
            MessageKind::StreamEvent(m) => Some(m),
            _ => None,
        }
    }

    /// True for `system` frames (known without typing the frame).
    pub fn is_system(&self) -> bool {
        self.tag == Tag::System
    }

    /// True for `result` frames.
    pub fn is_result(&self) -> bool {
        self.tag == Tag::Result
    }

    /// True for `control_request`, `control_response` and `control_cancel_request` frames.
    pub fn is_control(&self) -> bool {
        self.tag == Tag::Control
            && matches!(
                self.typed(),
                MessageKind::ControlRequest(_)
                    | MessageKind::ControlResponse(_)
                    | MessageKind::ControlCancel(_)
            )
    }
}

impl serde::Serialize for Message {
    /// Serializes the raw frame verbatim: unknown fields survive a round trip.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_slice(&self.raw)
            .map_err(|e| serde::ser::Error::custom(e.to_string()))?;
        raw.serialize(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
