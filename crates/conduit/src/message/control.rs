//! Control-protocol frames: `control_request`, `control_response`, `control_cancel_request`.
//!
//! These are routed by the protocol engine and never reach user code through a message stream.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A `control_request` frame, from either side.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlRequest {
    /// The sender's id for this request; the answer carries the same id.
    pub request_id: String,
    /// The request's subtype (`initialize`, `can_use_tool`, `hook_callback`, …).
    pub subtype: String,
    /// The request object (including `subtype`), as sent.
    pub body: Map<String, Value>,
}

/// A `control_response` frame, from either side.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlResponse {
    /// The id of the request this answers.
    pub request_id: String,
    /// Success (with an optional payload: some subtypes answer with no `response` field) or error.
    pub outcome: ControlOutcome,
}

/// The outcome carried by a [`ControlResponse`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ControlOutcome {
    /// `subtype:"success"`; the `response` payload, when present.
    Success(Option<Value>),
    /// `subtype:"error"`.
    Error {
        /// The error text.
        message: String,
        /// `error_code`, when the CLI sends one (e.g. `unsupported_request`).
        code: Option<String>,
    },
}

/// A `control_cancel_request` frame: the sender withdraws one of its pending requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlCancel {
    /// The id of the withdrawn request.
    pub request_id: String,
}

#[derive(Deserialize)]
pub(crate) struct RequestWire {
    request_id: String,
    request: Map<String, Value>,
}

#[derive(Deserialize)]
pub(crate) struct ResponseWire {
    response: ResponseInner,
}

#[derive(Deserialize)]
struct ResponseInner {
    subtype: String,
    request_id: String,
    #[serde(default)]
    response: Option<Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CancelWire {
    request_id: String,
}

impl From<RequestWire> for ControlRequest {
    fn from(w: RequestWire) -> Self {
        let subtype = w
            .request
            .get("subtype")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        ControlRequest {
            request_id: w.request_id,
            subtype,
            body: w.request,
        }
    }
}

impl From<ResponseWire> for ControlResponse {
    fn from(w: ResponseWire) -> Self {
        let r = w.response;
        let outcome = if r.subtype == "error" {
            ControlOutcome::Error {
                message: r.error.unwrap_or_default(),
                code: r.error_code,
            }
        } else {
            ControlOutcome::Success(r.response)
        };
        ControlResponse {
            request_id: r.request_id,
            outcome,
        }
    }
}

impl From<CancelWire> for ControlCancel {
    fn from(w: CancelWire) -> Self {
        ControlCancel {
            request_id: w.request_id,
        }
    }
}

impl ControlRequest {
    /// A field of the request object (`tool_name`, `input`, `callback_id`, …).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name)
    }
}

impl ControlResponse {
    /// True for a success response.
    pub fn is_success(&self) -> bool {
        matches!(self.outcome, ControlOutcome::Success(_))
    }
}
