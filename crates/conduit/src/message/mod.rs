//! Typed messages: every frame the CLI writes and every frame the SDK writes.
//!
//! A [`Message`] keeps the frame's raw bytes beside its typed view ([`MessageKind`]), so that
//! serializing a message gives back exactly the JSON that arrived, unknown fields included.
//! Unknown `type`s become [`MessageKind::Unknown`]; the raw frame is always available.

mod control;
pub mod outbound;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

pub use control::{ControlCancel, ControlOutcome, ControlRequest, ControlResponse};
pub use outbound::{UserContent, UserInput};

use crate::error::{Error, Result};

/// One frame, parsed: the raw JSON bytes and a typed view of them.
#[derive(Debug, Clone)]
pub struct Message {
    raw: Bytes,
    kind: MessageKind,
}

/// The typed view of a frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageKind {
    /// `type:"system"` (init, status, api_retry, task_*, hook_*, …).
    System(SystemMessage),
    /// `type:"assistant"`.
    Assistant(Value),
    /// `type:"user"`.
    User(Value),
    /// `type:"result"`, the last frame of every turn.
    Result(ResultMessage),
    /// `type:"control_request"`.
    ControlRequest(ControlRequest),
    /// `type:"control_response"`.
    ControlResponse(ControlResponse),
    /// `type:"control_cancel_request"`.
    ControlCancel(ControlCancel),
    /// A frame whose `type` this SDK does not know; the raw JSON is in [`Message::raw`].
    Unknown {
        /// The frame's `type` (empty if it had none).
        type_: String,
    },
}

/// A `system` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemMessage {
    /// The subtype (`init`, `status`, …).
    pub subtype: String,
}

/// A `result` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultMessage {
    /// `success`, `error_during_execution`, `error_max_turns`, …
    pub subtype: String,
    /// True for error results (API failures arrive as `subtype:"success"` with `is_error:true`).
    pub is_error: bool,
    /// Cumulative cost of the CLI process so far, as the CLI reports it.
    pub total_cost_usd: Option<f64>,
    /// The cost of this turn alone (filled in by the session from the cumulative figure).
    pub turn_cost_usd: Option<f64>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(rename = "type", borrow, default)]
    type_: Option<std::borrow::Cow<'a, str>>,
}

impl Message {
    /// Parse one frame. Errors are [`Error::Decode`] with an excerpt of the frame.
    pub fn parse(raw: Bytes) -> Result<Self> {
        let header: Header<'_> =
            serde_json::from_slice(&raw).map_err(|e| Error::decode(&raw, e))?;
        let type_ = header.type_.unwrap_or_default();
        let kind = match &*type_ {
            "control_request" => MessageKind::ControlRequest(
                control::parse_request(&raw).map_err(|e| Error::decode(&raw, e))?,
            ),
            "control_response" => MessageKind::ControlResponse(
                control::parse_response(&raw).map_err(|e| Error::decode(&raw, e))?,
            ),
            "control_cancel_request" => MessageKind::ControlCancel(
                control::parse_cancel(&raw).map_err(|e| Error::decode(&raw, e))?,
            ),
            "result" => {
                let v: Value = serde_json::from_slice(&raw).map_err(|e| Error::decode(&raw, e))?;
                MessageKind::Result(ResultMessage {
                    subtype: v["subtype"].as_str().unwrap_or_default().to_owned(),
                    is_error: v["is_error"].as_bool().unwrap_or(false),
                    total_cost_usd: v["total_cost_usd"].as_f64(),
                    turn_cost_usd: None,
                })
            }
            "system" => {
                let v: Value = serde_json::from_slice(&raw).map_err(|e| Error::decode(&raw, e))?;
                MessageKind::System(SystemMessage {
                    subtype: v["subtype"].as_str().unwrap_or_default().to_owned(),
                })
            }
            "assistant" => MessageKind::Assistant(
                serde_json::from_slice(&raw).map_err(|e| Error::decode(&raw, e))?,
            ),
            "user" => MessageKind::User(
                serde_json::from_slice(&raw).map_err(|e| Error::decode(&raw, e))?,
            ),
            other => MessageKind::Unknown {
                type_: other.to_owned(),
            },
        };
        Ok(Message { raw, kind })
    }

    /// The frame exactly as it arrived (no trailing newline).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The typed view.
    pub fn kind(&self) -> &MessageKind {
        &self.kind
    }

    /// Mutable typed view (the session fills in derived fields such as per-turn cost).
    pub(crate) fn kind_mut(&mut self) -> &mut MessageKind {
        &mut self.kind
    }

    /// Consume the message, keeping the typed view.
    pub fn into_kind(self) -> MessageKind {
        self.kind
    }

    /// The frame as a JSON value (parsed from the raw bytes).
    pub fn to_value(&self) -> Result<Value> {
        serde_json::from_slice(&self.raw).map_err(|e| Error::decode(&self.raw, e))
    }

    /// The result view, if this is a `result` frame.
    pub fn as_result(&self) -> Option<&ResultMessage> {
        match &self.kind {
            MessageKind::Result(r) => Some(r),
            _ => None,
        }
    }

    /// True for `control_request`, `control_response` and `control_cancel_request` frames.
    pub fn is_control(&self) -> bool {
        matches!(
            self.kind,
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
