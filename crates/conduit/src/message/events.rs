//! `stream_event`, `rate_limit_event` and `conversation_reset` frames.

use serde::Deserialize;
use serde_json::Value;

use super::assistant::{ApiMessage, Usage};
use super::content::ContentBlock;
use super::de::{count, opt_count, tagged_object};

/// A `stream_event` frame (only with `--include-partial-messages`): one Messages API streaming
/// event, forwarded as the CLI received it (`ping` excepted).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct StreamEvent {
    /// The API event.
    pub event: ApiStreamEvent,
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The subagent's `Agent` tool use id, for subagent output.
    #[serde(default)]
    pub parent_tool_use_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Time to first token in milliseconds (on `message_start`).
    #[serde(default, deserialize_with = "opt_count")]
    pub ttft_ms: Option<u64>,
}

/// A Messages API streaming event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ApiStreamEvent {
    /// `message_start`: the message with empty content and the initial usage.
    MessageStart {
        /// The message so far.
        message: ApiMessage,
    },
    /// `content_block_start`.
    ContentBlockStart {
        /// The block's index in the message.
        index: u64,
        /// The block's initial state (empty text, empty tool input, …).
        content_block: ContentBlock,
    },
    /// `content_block_delta`.
    ContentBlockDelta {
        /// The block's index in the message.
        index: u64,
        /// The increment.
        delta: BlockDelta,
    },
    /// `content_block_stop`.
    ContentBlockStop {
        /// The block's index in the message.
        index: u64,
    },
    /// `message_delta`: the stop reason and the final output usage.
    MessageDelta {
        /// Why the model stopped.
        stop_reason: Option<String>,
        /// The stop sequence that matched, if any.
        stop_sequence: Option<String>,
        /// Usage (cumulative output tokens).
        usage: Option<Usage>,
    },
    /// `message_stop`.
    MessageStop,
    /// Any other event (`error`, `ping`, new types), as JSON (its `type` included).
    Other(Value),
}

/// The `delta` of a `content_block_delta` event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BlockDelta {
    /// `text_delta`: more text.
    Text(String),
    /// `input_json_delta`: more of a tool input's JSON text.
    InputJson(String),
    /// `thinking_delta`: more reasoning text.
    Thinking(String),
    /// `signature_delta`: the thinking block's signature.
    Signature(String),
    /// `citations_delta`: one citation, as JSON.
    Citation(Value),
    /// Any other delta, as JSON (its `type` included).
    Other(Value),
}

#[derive(Deserialize)]
struct MessageStartWire {
    #[serde(default)]
    message: ApiMessage,
}

#[derive(Deserialize)]
struct BlockStartWire {
    #[serde(default, deserialize_with = "count")]
    index: u64,
    content_block: ContentBlock,
}

#[derive(Deserialize)]
struct BlockDeltaWire {
    #[serde(default, deserialize_with = "count")]
    index: u64,
    delta: BlockDelta,
}

#[derive(Deserialize)]
struct BlockStopWire {
    #[serde(default, deserialize_with = "count")]
    index: u64,
}

#[derive(Deserialize)]
struct MessageDeltaWire {
    #[serde(default)]
    delta: MessageDeltaBody,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize, Default)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
}

tagged_object!(ApiStreamEvent, "a stream event object", "type", |t| {
    Ok(match t.tag() {
        "content_block_delta" => {
            let w: BlockDeltaWire = t.finish()?;
            ApiStreamEvent::ContentBlockDelta {
                index: w.index,
                delta: w.delta,
            }
        }
        "content_block_start" => {
            let w: BlockStartWire = t.finish()?;
            ApiStreamEvent::ContentBlockStart {
                index: w.index,
                content_block: w.content_block,
            }
        }
        "content_block_stop" => {
            let w: BlockStopWire = t.finish()?;
            ApiStreamEvent::ContentBlockStop { index: w.index }
        }
        "message_start" => {
            let w: MessageStartWire = t.finish()?;
            ApiStreamEvent::MessageStart { message: w.message }
        }
        "message_delta" => {
            let w: MessageDeltaWire = t.finish()?;
            ApiStreamEvent::MessageDelta {
                stop_reason: w.delta.stop_reason,
                stop_sequence: w.delta.stop_sequence,
                usage: w.usage,
            }
        }
        "message_stop" => {
            t.skip()?;
            ApiStreamEvent::MessageStop
        }
        _ => ApiStreamEvent::Other(t.into_value("type")?),
    })
});

#[derive(Deserialize)]
struct TextDelta {
    #[serde(default)]
    text: String,
}
#[derive(Deserialize)]
struct JsonDelta {
    #[serde(default)]
    partial_json: String,
}
#[derive(Deserialize)]
struct ThinkingDelta {
    #[serde(default)]
    thinking: String,
}
#[derive(Deserialize)]
struct SignatureDelta {
    #[serde(default)]
    signature: String,
}
#[derive(Deserialize)]
struct CitationDelta {
    #[serde(default)]
    citation: Value,
}

tagged_object!(BlockDelta, "a delta object", "type", |t| {
    Ok(match t.tag() {
        "text_delta" => BlockDelta::Text(t.finish::<TextDelta>()?.text),
        "input_json_delta" => BlockDelta::InputJson(t.finish::<JsonDelta>()?.partial_json),
        "thinking_delta" => BlockDelta::Thinking(t.finish::<ThinkingDelta>()?.thinking),
        "signature_delta" => BlockDelta::Signature(t.finish::<SignatureDelta>()?.signature),
        "citations_delta" => BlockDelta::Citation(t.finish::<CitationDelta>()?.citation),
        _ => BlockDelta::Other(t.into_value("type")?),
    })
});

impl StreamEvent {
    /// The text of a `text_delta`, if this is one.
    pub fn text_delta(&self) -> Option<&str> {
        match &self.event {
            ApiStreamEvent::ContentBlockDelta {
                delta: BlockDelta::Text(s),
                ..
            } => Some(s),
            _ => None,
        }
    }

    /// The event's `type` as it appears on the wire (`"content_block_delta"`, …).
    pub fn event_type(&self) -> &str {
        match &self.event {
            ApiStreamEvent::MessageStart { .. } => "message_start",
            ApiStreamEvent::ContentBlockStart { .. } => "content_block_start",
            ApiStreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            ApiStreamEvent::ContentBlockStop { .. } => "content_block_stop",
            ApiStreamEvent::MessageDelta { .. } => "message_delta",
            ApiStreamEvent::MessageStop => "message_stop",
            ApiStreamEvent::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

/// A `rate_limit_event` frame: the account's rate-limit state changed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct RateLimitEvent {
    /// The state.
    #[serde(default)]
    pub rate_limit_info: RateLimitInfo,
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
}

/// The `rate_limit_info` of a [`RateLimitEvent`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// `allowed`, `allowed_warning` or `rejected`.
    #[serde(default)]
    pub status: String,
    /// `resetsAt`: when the window resets (Unix seconds).
    #[serde(rename = "resetsAt", default, deserialize_with = "opt_count")]
    pub resets_at: Option<u64>,
    /// `rateLimitType`: `five_hour`, `seven_day`, `seven_day_opus`, `seven_day_sonnet`, `overage`.
    #[serde(rename = "rateLimitType", default)]
    pub rate_limit_type: Option<String>,
    /// Fraction of the window used.
    #[serde(default)]
    pub utilization: Option<f64>,
    /// `overageStatus`.
    #[serde(rename = "overageStatus", default)]
    pub overage_status: Option<String>,
    /// `overageResetsAt` (Unix seconds).
    #[serde(rename = "overageResetsAt", default, deserialize_with = "opt_count")]
    pub overage_resets_at: Option<u64>,
    /// `overageDisabledReason`.
    #[serde(rename = "overageDisabledReason", default)]
    pub overage_disabled_reason: Option<String>,
    /// `isUsingOverage`.
    #[serde(rename = "isUsingOverage", default)]
    pub is_using_overage: Option<bool>,
}

/// A `conversation_reset` frame (after `/clear`): a new conversation starts and the CLI's
/// running totals restart.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ConversationReset {
    /// The new conversation's id.
    #[serde(default)]
    pub new_conversation_id: Option<String>,
    /// What caused the reset, if given.
    #[serde(default)]
    pub trigger: Option<String>,
    /// The user message that caused it, if any.
    #[serde(default)]
    pub user_message_uuid: Option<String>,
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
}
