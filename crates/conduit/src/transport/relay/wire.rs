//! What travels between a gateway client and the gateway, defined once for both sides: the
//! JSON messages (hello, ack, in_ack, refusal, end), the numbered binary frame of the WebSocket
//! wire, the WebSocket close codes and the constants every wire shares. The gateway
//! (`claude-conduit-gateway`) builds its messages from these types and the SDK's clients parse
//! them with the same types, so the two cannot drift. The field names are the public wire
//! format (docs/WIRE.md): they do not change.
//!
//! The gRPC wire carries the same values in protobuf clothes (`claude-conduit-proto`).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// A client acks the gateway's frames at least every this many frames; the gateway's replay
/// ring waits for acks when it is full, so a client that never acks stalls its stream.
pub const ACK_EVERY: u64 = 16;
/// The HTTP header that numbers the first frame of a `POST …/frames` body.
pub const SEQ_HEADER: &str = "conduit-seq";
/// Bytes of the big-endian sequence number in front of a WebSocket binary frame.
pub const SEQ_BYTES: usize = 8;
/// Room above the frame limit the gateway allows for a message's envelope (a protobuf message,
/// a WebSocket message), so that a slightly oversized frame gets a typed refusal.
pub const ENVELOPE_MARGIN: usize = 1 << 20;

/// WebSocket close codes of the gateway.
pub mod close {
    /// The session ended (after an `end` message).
    pub const NORMAL: u16 = 1000;
    /// The gateway is shutting down: reconnect later (to this or another gateway).
    pub const GOING_AWAY: u16 = 1001;
    /// A message over the frame limit plus [`ENVELOPE_MARGIN`](super::ENVELOPE_MARGIN).
    pub const TOO_BIG: u16 = 1009;
    /// A resume point ahead of the session, or a client frame number that skipped ahead.
    pub const BAD_RESUME: u16 = 4400;
    /// No such session (or another token's). Reserved: the gateway answers an unknown session
    /// with HTTP 404 at the handshake, before any WebSocket exists.
    pub const UNKNOWN_SESSION: u16 = 4404;
    /// A newer connection took the session over.
    pub const REPLACED: u16 = 4409;
    /// The resume point is older than the oldest frame the gateway still keeps.
    pub const REPLAY_TOO_OLD: u16 = 4410;
    /// The worker running the session's CLI stopped (`conduit serve --redis`); the reason is
    /// the worker's name. The session is gone.
    pub const SESSION_LOST: u16 = 4502;

    /// Close codes after which reconnecting cannot help.
    pub fn is_fatal(code: u16) -> bool {
        matches!(
            code,
            BAD_RESUME | UNKNOWN_SESSION | REPLACED | REPLAY_TOO_OLD | TOO_BIG | SESSION_LOST
        )
    }
}

/// The server-sent event `lost` (and what the other wires carry of it): the worker running the
/// session stopped; the session is gone (`conduit serve --redis`, docs/SCALE.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lost {
    /// The session.
    pub session: String,
    /// The worker's name.
    pub worker: String,
}

impl Lost {
    /// Parse the Display of [`Error::SessionLost`](crate::Error::SessionLost) (a gRPC
    /// `DATA_LOSS` message): `session <id> lost: worker <name> stopped`.
    pub fn from_message(message: &str) -> Option<Self> {
        let (session, worker) = message
            .strip_prefix("session ")?
            .split_once(" lost: worker ")?;
        Some(Self {
            session: session.to_owned(),
            worker: worker.strip_suffix(" stopped")?.to_owned(),
        })
    }

    /// The WebSocket close reason: `<session> <worker>` (at most 123 bytes).
    pub fn close_reason(&self) -> String {
        let mut r = format!("{} {}", self.session, self.worker);
        while r.len() > 123 {
            r.pop();
        }
        r
    }

    /// Parse a close reason of [`close::SESSION_LOST`].
    pub fn from_close_reason(reason: &str) -> Self {
        let (session, worker) = reason.split_once(' ').unwrap_or((reason, ""));
        Self {
            session: session.to_owned(),
            worker: worker.to_owned(),
        }
    }

    /// The SDK's error for it.
    pub fn into_error(self) -> crate::Error {
        crate::Error::SessionLost {
            session_id: self.session,
            worker: self.worker,
        }
    }
}

/// The `kind` of a refusal or error body (`{"error":{"kind":…,"message":…}}`).
pub mod kind {
    /// A frame over the gateway's frame limit; skipped, the session goes on.
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    /// A client frame that is not a JSON object, or a malformed control message; skipped, the
    /// session goes on.
    pub const BAD_FRAME: &str = "bad_frame";
    /// A numbered client frame that skipped ahead.
    pub const GAP: &str = "gap";
    /// The session's CLI is gone.
    pub const CLOSED: &str = "closed";
    /// A request body that does not decode.
    pub const BAD_BODY: &str = "bad_body";
    /// A bad `Conduit-Seq` header or query parameter.
    pub const BAD_REQUEST: &str = "bad_request";
    /// Missing or invalid bearer token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// No such session (or another token's), or no such route.
    pub const NOT_FOUND: &str = "not_found";
    /// The resume point is older than the replay ring.
    pub const REPLAY_TOO_OLD: &str = "replay_too_old";
    /// The resume point is ahead of the session.
    pub const BAD_RESUME: &str = "bad_resume";
    /// A newer connection took the session over.
    pub const REPLACED: &str = "replaced";
    /// The operator's policy refused the request (session options).
    pub const REFUSED: &str = "refused";
    /// The operator's policy refused a frame (a control request it does not allow); the session
    /// goes on.
    pub const POLICY: &str = "policy";
    /// Too many sessions for this token.
    pub const TOO_MANY_SESSIONS: &str = "too_many_sessions";
    /// The gateway is shutting down.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Anything else that went wrong on the gateway.
    pub const INTERNAL: &str = "internal";
}

/// The gateway's first message on every stream: which session, how many client frames it has
/// accepted (resend everything after `in_seq`), and its frame limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The highest client frame sequence number the session has accepted.
    #[serde(default)]
    pub in_seq: u64,
    /// The gateway's per-frame limit in bytes (0: not said).
    #[serde(default)]
    pub max_frame_bytes: u64,
    /// The session id.
    #[serde(default)]
    pub session: String,
}

/// How the session's CLI ended: the last message of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Exit code, when the CLI exited normally.
    #[serde(default)]
    pub code: Option<i32>,
    /// The signal that ended the CLI, if any.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The last part of the CLI's stderr.
    #[serde(default)]
    pub stderr_tail: String,
}

impl From<&crate::transport::Termination> for End {
    fn from(t: &crate::transport::Termination) -> Self {
        Self {
            code: t.code,
            signal: t.signal,
            stderr_tail: t.stderr_tail.clone(),
        }
    }
}

impl From<End> for crate::transport::Termination {
    fn from(end: End) -> Self {
        Self {
            code: end.code,
            signal: end.signal,
            stderr_tail: end.stderr_tail,
        }
    }
}

/// A refusal or error: the object under `"error"`. `kind` is one of [`kind`]; the other fields
/// are present where the kind has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Resume point asked for (`replay_too_old`, `bad_resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The sequence number the gateway expected (`gap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// The sequence number that arrived (`gap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub got: Option<u64>,
    /// What went wrong, machine-readable.
    pub kind: String,
    /// The newest sequence number of the session (`bad_resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// The frame limit (`frame_too_large`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What went wrong, for people.
    #[serde(default)]
    pub message: String,
    /// The oldest sequence number the ring keeps (`replay_too_old`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<u64>,
    /// The refused frame's sequence number, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The refused frame's size (`frame_too_large`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl ErrorInfo {
    /// An error of `kind` with `message` and no other field.
    pub fn new(kind: &str, message: impl std::fmt::Display) -> Self {
        Self {
            kind: kind.to_owned(),
            message: message.to_string(),
            ..Self::default()
        }
    }

    /// `frame_too_large` for a frame of `size` bytes over `limit`, numbered `seq`.
    pub fn too_large(limit: usize, size: usize, seq: Option<u64>) -> Self {
        Self {
            limit: Some(limit as u64),
            size: Some(size as u64),
            seq,
            ..Self::new(
                kind::FRAME_TOO_LARGE,
                format!("frame of {size} bytes is over the gateway's limit of {limit} bytes"),
            )
        }
    }
}

/// The one error body of every HTTP answer that is not a success: `{"error":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// A text message from the gateway on the WebSocket wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerText {
    /// `{"hello":{…}}`, the first message.
    Hello(Hello),
    /// `{"in_ack":N}`: the session has the client's frames up to `N`.
    InAck(u64),
    /// `{"error":{…}}`: a refused client frame; the stream goes on.
    Error(ErrorInfo),
    /// `{"end":{…}}`: the CLI ended; a close frame follows.
    End(End),
}

impl ServerText {
    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        // A derived Serialize of strings and numbers into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A control message from a client on the WebSocket wire (a text message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientControl {
    /// `{"ack":N}`: the client has every gateway frame up to `N`.
    Ack(u64),
    /// `{"end_input":true}`: end the CLI's stdin (idempotent).
    EndInput(True),
    /// `{"close":true}`: close the CLI gracefully (idempotent).
    Close(True),
}

/// The JSON value `true`, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct True;

impl Serialize for True {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}

impl<'de> Deserialize<'de> for True {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if bool::deserialize(d)? {
            Ok(True)
        } else {
            Err(serde::de::Error::custom("expected `true`"))
        }
    }
}

impl ClientControl {
    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a client's WebSocket text message is.
#[derive(Debug, PartialEq, Eq)]
pub enum TextMessage {
    /// A control message.
    Control(ClientControl),
    /// A JSON object that is not a control message: an unnumbered frame for the CLI.
    Frame,
    /// Neither: refused with [`kind::BAD_FRAME`] and the reason.
    Bad(String),
}

/// Classify a client's text message. An object with exactly one key among `ack`, `end_input`
/// and `close` is a control message and must be a valid one; any other JSON object is a frame;
/// anything else is refused.
pub fn classify_text(text: &str) -> TextMessage {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return TextMessage::Bad(format!("not JSON: {e}")),
    };
    let serde_json::Value::Object(map) = &value else {
        return TextMessage::Bad("a frame must be a JSON object".into());
    };
    let is_control = map.len() == 1
        && map
            .keys()
            .all(|k| matches!(k.as_str(), "ack" | "end_input" | "close"));
    if !is_control {
        return TextMessage::Frame;
    }
    match serde_json::from_value(value) {
        Ok(c) => TextMessage::Control(c),
        Err(e) => TextMessage::Bad(format!("invalid control message: {e}")),
    }
}

/// Whether `frame` is one JSON object (what the CLI accepts as a line of input). Checks the
/// first non-blank byte and that the whole frame parses, without building a value.
pub fn is_json_object(frame: &[u8]) -> bool {
    let first = frame.iter().find(|b| !b.is_ascii_whitespace());
    first == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(frame).is_ok()
}

/// `seq` (big-endian) followed by `frame`: a numbered frame on the WebSocket wire.
pub fn numbered(seq: u64, frame: &[u8]) -> Bytes {
    numbered_in(&mut BytesMut::new(), seq, frame)
}

/// [`numbered`], written at the end of `buf` and split off it: a batch of messages written into
/// one buffer reserved for all of them costs one allocation, not one each.
pub fn numbered_in(buf: &mut BytesMut, seq: u64, frame: &[u8]) -> Bytes {
    buf.reserve(SEQ_BYTES + frame.len());
    buf.put_u64(seq);
    buf.put_slice(frame);
    buf.split().freeze()
}

/// The sequence number and the frame of a numbered WebSocket binary message; `None` when it is
/// shorter than its sequence number.
pub fn split_numbered(message: Bytes) -> Option<(u64, Bytes)> {
    let head: [u8; SEQ_BYTES] = message.get(..SEQ_BYTES)?.try_into().ok()?;
    Some((u64::from_be_bytes(head), message.slice(SEQ_BYTES..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The wire format of the previous release, byte for byte: clients of either release work
    /// against gateways of either.
    #[test]
    fn the_wire_shapes_are_pinned() {
        let hello = ServerText::Hello(Hello {
            in_seq: 3,
            max_frame_bytes: 268_435_456,
            session: "abc".into(),
        });
        assert_eq!(
            hello.to_json(),
            r#"{"hello":{"in_seq":3,"max_frame_bytes":268435456,"session":"abc"}}"#
        );
        assert_eq!(ServerText::InAck(16).to_json(), r#"{"in_ack":16}"#);
        let end = ServerText::End(End {
            code: Some(0),
            signal: None,
            stderr_tail: String::new(),
        });
        assert_eq!(
            end.to_json(),
            r#"{"end":{"code":0,"signal":null,"stderr_tail":""}}"#
        );
        let refusal = ServerText::Error(ErrorInfo::too_large(10, 20, Some(4)));
        assert_eq!(
            refusal.to_json(),
            r#"{"error":{"kind":"frame_too_large","limit":10,"message":"frame of 20 bytes is over the gateway's limit of 10 bytes","seq":4,"size":20}}"#
        );
        assert_eq!(ClientControl::Ack(32).to_json(), r#"{"ack":32}"#);
        assert_eq!(
            ClientControl::EndInput(True).to_json(),
            r#"{"end_input":true}"#
        );
        assert_eq!(ClientControl::Close(True).to_json(), r#"{"close":true}"#);
        assert_eq!(
            &numbered(258, b"{}")[..],
            &[0, 0, 0, 0, 0, 0, 1, 2, b'{', b'}']
        );
        assert_eq!(
            (
                SEQ_HEADER,
                ACK_EVERY,
                close::REPLACED,
                close::REPLAY_TOO_OLD
            ),
            ("conduit-seq", 16, 4409, 4410)
        );
        assert_eq!((close::BAD_RESUME, close::UNKNOWN_SESSION), (4400, 4404));
    }

    #[test]
    fn old_messages_parse() {
        let v: ServerText =
            serde_json::from_str(r#"{"hello":{"session":"s","in_seq":0,"max_frame_bytes":5}}"#)
                .unwrap();
        assert_eq!(
            v,
            ServerText::Hello(Hello {
                in_seq: 0,
                max_frame_bytes: 5,
                session: "s".into()
            })
        );
        let v: ServerText =
            serde_json::from_value(json!({"error": {"kind": "refused", "message": "no"}})).unwrap();
        assert_eq!(v, ServerText::Error(ErrorInfo::new(kind::REFUSED, "no")));
    }

    #[test]
    fn text_messages_are_classified() {
        assert_eq!(
            classify_text(r#"{"ack":5}"#),
            TextMessage::Control(ClientControl::Ack(5))
        );
        assert_eq!(
            classify_text(r#"{"end_input":true}"#),
            TextMessage::Control(ClientControl::EndInput(True))
        );
        assert_eq!(
            classify_text(r#"{"type":"user","message":{}}"#),
            TextMessage::Frame
        );
        for bad in [
            r#"{"ack":"x"}"#,
            r#"{"end_input":false}"#,
            r#"{"close":1}"#,
            "[1,2]",
            "42",
            "not json",
        ] {
            assert!(matches!(classify_text(bad), TextMessage::Bad(_)), "{bad}");
        }
    }

    #[test]
    fn objects_are_recognised() {
        assert!(is_json_object(br#" {"a":[1,{}]}"#));
        for bad in [&b"[]"[..], b"42", b"\"s\"", b"{", b"{} x", b""] {
            assert!(!is_json_object(bad), "{bad:?}");
        }
    }

    #[test]
    fn numbered_frames_round_trip() {
        let b = numbered(7, b"abc");
        assert_eq!(split_numbered(b), Some((7, Bytes::from_static(b"abc"))));
        // A batch written into one buffer: each message whole and apart from the others.
        let mut buf = BytesMut::with_capacity(64);
        let (x, y) = (
            numbered_in(&mut buf, 8, b"{}"),
            numbered_in(&mut buf, 9, b"[1]"),
        );
        assert!(buf.is_empty());
        assert_eq!(split_numbered(x), Some((8, Bytes::from_static(b"{}"))));
        assert_eq!(split_numbered(y), Some((9, Bytes::from_static(b"[1]"))));
        assert_eq!(split_numbered(Bytes::from_static(b"1234567")), None);
    }
}
