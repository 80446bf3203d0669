//! Frames the SDK writes to the CLI: user messages and control frames.
//!
//! Encoders return `Bytes` without the trailing newline (the codec adds it).

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// Content of an outbound user message: plain text or a list of content blocks (any Messages API
/// user content: text, image, document, tool_result …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum UserContent {
    /// A plain text prompt.
    Text(String),
    /// Content blocks, as JSON objects in the Messages API shape.
    Blocks(Vec<Value>),
}

impl From<&str> for UserContent {
    fn from(s: &str) -> Self {
        UserContent::Text(s.to_owned())
    }
}
impl From<String> for UserContent {
    fn from(s: String) -> Self {
        UserContent::Text(s)
    }
}
impl From<Vec<Value>> for UserContent {
    fn from(v: Vec<Value>) -> Self {
        UserContent::Blocks(v)
    }
}

/// An outbound `user` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserInput {
    #[serde(rename = "type")]
    type_: &'static str,
    message: UserInputMessage,
    parent_tool_use_id: Option<String>,
    session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct UserInputMessage {
    role: &'static str,
    content: UserContent,
}

impl UserInput {
    /// A user message with the given content.
    pub fn new(content: impl Into<UserContent>) -> Self {
        Self {
            type_: "user",
            message: UserInputMessage {
                role: "user",
                content: content.into(),
            },
            parent_tool_use_id: None,
            session_id: "default".to_owned(),
            uuid: None,
        }
    }

    /// Set the `session_id` field (the CLI ignores its value; kept for parity with the official SDKs).
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.session_id = id.into();
        self
    }

    /// Set a `uuid` (echoed by the CLI; needed for file rewind checkpoints).
    pub fn uuid(mut self, uuid: impl Into<String>) -> Self {
        self.uuid = Some(uuid.into());
        self
    }

    /// Set `parent_tool_use_id`.
    pub fn parent_tool_use_id(mut self, id: impl Into<String>) -> Self {
        self.parent_tool_use_id = Some(id.into());
        self
    }

    /// The content of this message.
    pub fn content(&self) -> &UserContent {
        &self.message.content
    }

    /// Encode as one frame.
    pub fn encode(&self) -> Bytes {
        to_frame(self)
    }
}

/// Encode `{"type":"control_request","request_id":id,"request":{"subtype":subtype, ..fields}}`.
///
/// `fields` must be a JSON object or `null`; other values are ignored.
pub fn control_request(request_id: &str, subtype: &str, fields: Value) -> Bytes {
    let mut request = match fields {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    request.insert("subtype".to_owned(), Value::String(subtype.to_owned()));
    to_frame(&serde_json::json!({
        "type": "control_request",
        "request_id": request_id,
        "request": request,
    }))
}

/// Encode a success `control_response` answering `request_id`.
pub fn control_success(request_id: &str, response: Option<Value>) -> Bytes {
    let mut inner = serde_json::Map::new();
    inner.insert("subtype".to_owned(), "success".into());
    inner.insert("request_id".to_owned(), request_id.into());
    if let Some(r) = response {
        inner.insert("response".to_owned(), r);
    }
    to_frame(&serde_json::json!({"type": "control_response", "response": inner}))
}

/// Encode an error `control_response` answering `request_id`.
pub fn control_error(request_id: &str, message: &str) -> Bytes {
    to_frame(&serde_json::json!({
        "type": "control_response",
        "response": {"subtype": "error", "request_id": request_id, "error": message},
    }))
}

/// Encode a `control_cancel_request` withdrawing our request `request_id`.
pub fn control_cancel(request_id: &str) -> Bytes {
    to_frame(&serde_json::json!({"type": "control_cancel_request", "request_id": request_id}))
}

fn to_frame<T: Serialize>(value: &T) -> Bytes {
    // Serializing these types cannot fail: no maps with non-string keys, no failing Serialize impls.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_frame_shape() {
        let f = UserInput::new("hi").encode();
        let v: Value = serde_json::from_slice(&f).unwrap_or_default();
        assert_eq!(v["type"], "user");
        assert_eq!(v["message"]["role"], "user");
        assert_eq!(v["message"]["content"], "hi");
        assert!(v["parent_tool_use_id"].is_null());
        assert!(v.get("uuid").is_none());
    }

    #[test]
    fn control_frames_shape() {
        let v: Value = serde_json::from_slice(&control_request("r1", "interrupt", Value::Null))
            .unwrap_or_default();
        assert_eq!(v["request"]["subtype"], "interrupt");
        assert_eq!(v["request_id"], "r1");
        let v: Value = serde_json::from_slice(&control_success("x", None)).unwrap_or_default();
        assert!(v["response"].get("response").is_none());
        let v: Value = serde_json::from_slice(&control_error("x", "no")).unwrap_or_default();
        assert_eq!(v["response"]["error"], "no");
    }
}
