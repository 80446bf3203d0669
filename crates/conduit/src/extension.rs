//! Teaching the SDK new frames: custom message types with validation, protocol extensions that
//! answer, transform or swallow frames, and frame-level filters and sinks.
//!
//! * [`CustomType`]: a frame `type` (optionally with a `subtype`) the CLI or a gateway sends
//!   that the SDK does not know. Registered in [`Extensions`], such frames are checked against a
//!   JSON Schema (feature `schema`) and your validators, then typed with serde: they arrive as
//!   [`MessageKind::Custom`](crate::MessageKind::Custom) (read the value with
//!   [`Message::custom`](crate::Message::custom)), or as a per-frame
//!   [`Error::InvalidFrame`] naming the failing JSON path; the stream goes on. Frames of
//!   unknown types that are not registered arrive as before, as
//!   [`MessageKind::Unknown`](crate::MessageKind::Unknown) with their raw JSON.
//! * A **protocol extension** ([`Extensions::handle`]) sees each frame of a type it names, before
//!   anything else does, and returns an [`Action`]: pass it on to standard processing (the
//!   fallback), swallow it, replace it, or answer with a frame of its own. In the SDK it sees the
//!   frames the CLI sends (the handler runs on the session's reader: keep it quick); in the
//!   gateway (`claude-conduit-gateway`'s `GatewayBuilder::extensions`), the frames of its
//!   sessions in both directions.
//! * [`FrameFilter`] and [`FrameSink`]: every frame, both ways, control frames included.
//!   Filters rewrite what the SDK writes before the transport sees it (and give sinks their view
//!   of what the CLI writes); sinks observe. Filters always run before sinks, whatever order they
//!   were added in. The shipped [`RedactLayer`](crate::middleware::RedactLayer) and
//!   [`AuditLayer`](crate::middleware::AuditLayer) are built on them.
//!
//! ```
//! use claude_conduit::extension::{CustomType, Extensions, Invalid};
//! use claude_conduit::{Error, Message};
//! use bytes::Bytes;
//!
//! #[derive(Debug, serde::Deserialize, PartialEq)]
//! struct Progress { percent: u8, label: String }
//!
//! let ext = Extensions::new().register(
//!     CustomType::new::<Progress>("progress").validator(|v| match v["percent"].as_u64() {
//!         Some(p) if p > 100 => Err(Invalid::new("/percent", "over 100")),
//!         _ => Ok(()),
//!     }),
//! );
//! let ok = ext.decode(Bytes::from_static(br#"{"type":"progress","percent":40,"label":"build"}"#));
//! let msg: Message = ok.expect("registered").expect("valid");
//! assert_eq!(msg.custom::<Progress>(), Some(&Progress { percent: 40, label: "build".into() }));
//!
//! let bad = ext.decode(Bytes::from_static(br#"{"type":"progress","percent":"x","label":"a"}"#));
//! assert!(matches!(bad, Some(Err(Error::InvalidFrame { path, .. })) if path == "/percent"));
//! let too_much = ext.decode(Bytes::from_static(br#"{"type":"progress","percent":140,"label":"a"}"#));
//! assert!(matches!(too_much, Some(Err(Error::InvalidFrame { message, .. })) if message == "over 100"));
//! // Not registered: not ours to decode (the session delivers it raw).
//! assert!(ext.decode(Bytes::from_static(br#"{"type":"other"}"#)).is_none());
//! ```

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::message::Message;

/// Which way a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Written by the SDK (or a gateway client), read by the CLI.
    SdkToCli,
    /// Written by the CLI.
    CliToSdk,
}

impl Direction {
    /// `"sdk->cli"` or `"cli->sdk"` (as in audit lines).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SdkToCli => "sdk->cli",
            Direction::CliToSdk => "cli->sdk",
        }
    }
}

/// Rewrites frames at the frame level, both ways.
pub trait FrameFilter: Send + Sync + 'static {
    /// A frame the SDK is about to write (`sdk->cli`): what the transport gets instead.
    fn outbound(&self, frame: Bytes) -> Bytes;
    /// A frame the CLI wrote (`cli->sdk`): what [`FrameSink`]s see of it. The session itself
    /// gets the original. The default shows sinks the frame as it is.
    fn sink_view(&self, frame: Bytes) -> Bytes {
        frame
    }
}

/// Observes every frame, both ways, after the filters. Runs inline (on the session's reader
/// for `cli->sdk`): keep it quick, hand heavy work to a task.
pub trait FrameSink: Send + Sync + 'static {
    /// One frame.
    fn frame(&self, direction: Direction, frame: &Bytes);
}

/// A validation failure: a JSON pointer into the frame and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON pointer (`/payload/count`; `""` for the whole frame).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Invalid {
    /// A failure at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

type Validate = dyn Fn(&Value) -> std::result::Result<(), Invalid> + Send + Sync;
type Decode =
    dyn Fn(Value) -> std::result::Result<Arc<dyn Any + Send + Sync>, Invalid> + Send + Sync;

/// A custom frame type: its `type` (and optional `subtype`), a JSON Schema, validators, and the
/// Rust type it decodes to.
#[derive(Clone)]
pub struct CustomType {
    type_: String,
    subtype: Option<String>,
    #[cfg(feature = "schema")]
    schema: Option<Arc<jsonschema::Validator>>,
    validators: Vec<Arc<Validate>>,
    decode: Arc<Decode>,
}

impl std::fmt::Debug for CustomType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomType")
            .field("type", &self.type_)
            .field("subtype", &self.subtype)
            .field("validators", &self.validators.len())
            .finish_non_exhaustive()
    }
}

impl CustomType {
    /// Frames with `"type": type_` decode to `T` (with serde).
    pub fn new<T: DeserializeOwned + Send + Sync + 'static>(type_: impl Into<String>) -> Self {
        CustomType {
            type_: type_.into(),
            subtype: None,
            #[cfg(feature = "schema")]
            schema: None,
            validators: Vec::new(),
            decode: Arc::new(|value| {
                serde_path_to_error::deserialize::<_, T>(value)
                    .map(|t| Arc::new(t) as Arc<dyn Any + Send + Sync>)
                    .map_err(|e| Invalid::new(pointer(e.path()), e.inner().to_string()))
            }),
        }
    }

    /// Only frames whose `subtype` is `subtype` (a type registered with and without a subtype:
    /// the subtype's registration wins).
    pub fn subtype(mut self, subtype: impl Into<String>) -> Self {
        self.subtype = Some(subtype.into());
        self
    }

    /// Check frames against this JSON Schema first (feature `schema`, the `jsonschema` crate;
    /// no remote `$ref`s). A schema that does not compile is [`Error::InvalidOptions`].
    #[cfg(feature = "schema")]
    pub fn schema(mut self, schema: &Value) -> Result<Self> {
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            Error::InvalidOptions(format!("JSON Schema of custom type `{}`: {e}", self.type_))
        })?;
        self.schema = Some(Arc::new(validator));
        Ok(self)
    }

    /// Add a validator, run after the schema and before decoding, in the order added.
    pub fn validator(
        mut self,
        f: impl Fn(&Value) -> std::result::Result<(), Invalid> + Send + Sync + 'static,
    ) -> Self {
        self.validators.push(Arc::new(f));
        self
    }

    /// Whether frames of `type_` (with `subtype`) are of this type.
    pub fn applies_to(&self, type_: &str, subtype: Option<&str>) -> bool {
        self.type_ == type_ && (self.subtype.is_none() || self.subtype.as_deref() == subtype)
    }

    /// Check a frame against the schema and the validators (and that it decodes), without
    /// keeping the typed value.
    pub fn validate(&self, value: &Value) -> std::result::Result<(), Invalid> {
        self.check(value.clone()).map(|_| ())
    }

    /// `type`, or `type/subtype` when registered by subtype.
    pub fn name(&self) -> String {
        match &self.subtype {
            Some(s) => format!("{}/{s}", self.type_),
            None => self.type_.clone(),
        }
    }

    fn check(&self, value: Value) -> std::result::Result<CustomMessage, Invalid> {
        #[cfg(feature = "schema")]
        if let Some(schema) = &self.schema
            && let Some(e) = schema_error(schema, &value)
        {
            return Err(e);
        }
        for v in &self.validators {
            v(&value)?;
        }
        let typed = (self.decode)(value.clone())?;
        Ok(CustomMessage {
            type_: self.type_.clone(),
            subtype: self.subtype.clone(),
            value,
            typed,
        })
    }
}

/// The registration of `types` that frames of `type_`/`subtype` decode with: the one registered
/// with that subtype, else the one registered for the type alone.
pub(crate) fn find_type<'a>(
    types: &'a [CustomType],
    type_: &str,
    subtype: Option<&str>,
) -> Option<&'a CustomType> {
    types
        .iter()
        .find(|c| c.type_ == type_ && c.subtype.is_some() && c.subtype.as_deref() == subtype)
        .or_else(|| {
            types
                .iter()
                .find(|c| c.type_ == type_ && c.subtype.is_none())
        })
}

/// The first failure of `value` against a compiled JSON Schema (shared by custom types and
/// plugin configurations).
#[cfg(feature = "schema")]
pub(crate) fn schema_error(schema: &jsonschema::Validator, value: &Value) -> Option<Invalid> {
    schema
        .iter_errors(value)
        .next()
        .map(|e| Invalid::new(e.instance_path().as_str(), e.to_string()))
}

/// A JSON pointer for serde_path_to_error's path (`a.b[0]` → `/a/b/0`).
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => out.push_str(variant),
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

/// A frame of a registered [`CustomType`], validated and typed.
#[derive(Clone)]
pub struct CustomMessage {
    /// The frame's `type`.
    pub type_: String,
    /// The registered `subtype`, if registered by subtype.
    pub subtype: Option<String>,
    /// The whole frame as JSON.
    pub value: Value,
    typed: Arc<dyn Any + Send + Sync>,
}

impl CustomMessage {
    /// The typed value, if it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.typed.downcast_ref()
    }
}

impl std::fmt::Debug for CustomMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomMessage")
            .field("type", &self.type_)
            .field("subtype", &self.subtype)
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

impl PartialEq for CustomMessage {
    fn eq(&self, other: &Self) -> bool {
        self.type_ == other.type_ && self.subtype == other.subtype && self.value == other.value
    }
}

/// What a protocol extension does with a frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Standard processing (the fallback): the frame goes on as it is.
    Pass,
    /// Drop the frame.
    Swallow,
    /// Standard processing of this frame instead.
    Replace(Bytes),
    /// Send this frame back to where the frame came from, and drop the frame.
    Reply(Bytes),
    /// Send this frame back, and pass the frame on.
    ReplyAndPass(Bytes),
}

/// A frame a protocol extension sees: its raw bytes and its JSON.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// Which way it goes.
    pub direction: Direction,
    /// The bytes.
    pub raw: &'a Bytes,
    /// The parsed frame.
    pub value: &'a Value,
}

type Handle = dyn Fn(FrameRef<'_>) -> Action + Send + Sync;

/// Custom types and protocol extensions; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Extensions {
    types: Arc<Vec<CustomType>>,
    handlers: Arc<Vec<(String, Arc<Handle>)>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("types", &self.types)
            .field(
                "handlers",
                &self.handlers.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Reads the top-level `type` and `subtype` of a frame.
#[derive(serde::Deserialize)]
struct Tags<'a> {
    #[serde(rename = "type", borrow, default)]
    type_: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    subtype: Option<std::borrow::Cow<'a, str>>,
}

impl Extensions {
    /// Nothing registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a custom type (builder style).
    pub fn register(mut self, custom: CustomType) -> Self {
        Arc::make_mut(&mut self.types).push(custom);
        self
    }

    /// Add a protocol extension for frames of `type_` (builder style). Handlers of one type
    /// run in the order added; the first that does not [`Action::Pass`] decides, and a
    /// replaced frame is what the next ones see. A handler that panics counts as `Pass`
    /// (logged).
    pub fn handle(
        mut self,
        type_: impl Into<String>,
        f: impl Fn(FrameRef<'_>) -> Action + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.handlers).push((type_.into(), Arc::new(f)));
        self
    }

    /// `self`'s types and handlers, then `other`'s (builder style): for a type registered in
    /// both, `self`'s registration decodes it; `self`'s handlers of a type run before `other`'s.
    /// Plugins' contributions join a session's own extensions this way.
    pub fn merge(mut self, other: &Extensions) -> Self {
        if !other.types.is_empty() {
            Arc::make_mut(&mut self.types).extend(other.types.iter().cloned());
        }
        if !other.handlers.is_empty() {
            Arc::make_mut(&mut self.handlers).extend(other.handlers.iter().cloned());
        }
        self
    }

    /// The frame types registered as custom types (`type` or `type/subtype`), in order.
    pub fn type_names(&self) -> Vec<String> {
        self.types.iter().map(CustomType::name).collect()
    }

    /// Whether anything is registered.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.handlers.is_empty()
    }

    /// Whether custom types are registered.
    pub(crate) fn has_types(&self) -> bool {
        !self.types.is_empty()
    }

    fn tags(frame: &[u8]) -> Option<(String, Option<String>)> {
        let tags: Tags<'_> = serde_json::from_slice(frame).ok()?;
        Some((
            tags.type_?.into_owned(),
            tags.subtype.map(std::borrow::Cow::into_owned),
        ))
    }

    /// Decode a frame of a registered custom type: `None` when its type is not registered,
    /// else the typed message or [`Error::InvalidFrame`].
    pub fn decode(&self, frame: Bytes) -> Option<Result<Message>> {
        if self.types.is_empty() {
            return None;
        }
        let (type_, subtype) = Self::tags(&frame)?;
        let custom = find_type(&self.types, &type_, subtype.as_deref())?;
        let value: Value = match serde_json::from_slice(&frame) {
            Ok(v) => v,
            Err(e) => return Some(Err(Error::decode(&frame, e))),
        };
        Some(match custom.check(value) {
            Ok(m) => Ok(Message::from_custom(frame, m)),
            Err(Invalid { path, message }) => Err(Error::InvalidFrame {
                type_: custom.name(),
                path,
                message,
            }),
        })
    }

    /// Run the protocol extensions for `frame`. Returns the frame to process (`None`: dropped)
    /// and the reply to send back, if any.
    pub fn intercept(&self, direction: Direction, frame: Bytes) -> (Option<Bytes>, Option<Bytes>) {
        if self.handlers.is_empty() {
            return (Some(frame), None);
        }
        let Some((type_, _)) = Self::tags(&frame) else {
            return (Some(frame), None);
        };
        let mut frame = frame;
        let mut value: Option<Value> = None;
        for (t, handler) in self.handlers.iter() {
            if *t != type_ {
                continue;
            }
            let v = match &value {
                Some(v) => v,
                None => match serde_json::from_slice(&frame) {
                    Ok(v) => value.insert(v),
                    Err(_) => return (Some(frame), None),
                },
            };
            let action = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handler(FrameRef {
                    direction,
                    raw: &frame,
                    value: v,
                })
            }));
            match action {
                Ok(Action::Pass) => {}
                Ok(Action::Swallow) => return (None, None),
                Ok(Action::Reply(reply)) => return (None, Some(reply)),
                Ok(Action::ReplyAndPass(reply)) => return (Some(frame), Some(reply)),
                Ok(Action::Replace(new)) => {
                    frame = new;
                    value = None;
                }
                Err(_) => {
                    tracing::warn!(type_ = %type_, "protocol extension panicked; frame passed on");
                }
            }
        }
        (Some(frame), None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Ping {
        seq: u32,
        body: Body,
    }
    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        items: Vec<u32>,
    }

    #[test]
    fn serde_failures_name_the_json_path() {
        let ext = Extensions::new().register(CustomType::new::<Ping>("ping"));
        let bad = Bytes::from_static(br#"{"type":"ping","seq":1,"body":{"items":[1,"two"]}}"#);
        match ext.decode(bad) {
            Some(Err(Error::InvalidFrame { type_, path, .. })) => {
                assert_eq!(type_, "ping");
                assert_eq!(path, "/body/items/1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_subtype_registration_wins_over_the_type_alone() {
        #[derive(Debug, serde::Deserialize)]
        struct A {}
        #[derive(Debug, serde::Deserialize)]
        struct B {}
        let ext = Extensions::new()
            .register(CustomType::new::<A>("ev"))
            .register(CustomType::new::<B>("ev").subtype("b"));
        let b = ext
            .decode(Bytes::from_static(br#"{"type":"ev","subtype":"b"}"#))
            .unwrap()
            .unwrap();
        assert!(b.custom::<B>().is_some());
        let a = ext
            .decode(Bytes::from_static(br#"{"type":"ev","subtype":"x"}"#))
            .unwrap()
            .unwrap();
        assert!(a.custom::<A>().is_some());
    }

    #[cfg(feature = "schema")]
    #[test]
    fn a_schema_failure_names_the_path() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"seq": {"type": "integer", "minimum": 0}},
            "required": ["seq"]
        });
        let ext =
            Extensions::new().register(CustomType::new::<Value>("ping").schema(&schema).unwrap());
        match ext.decode(Bytes::from_static(br#"{"type":"ping","seq":-1}"#)) {
            Some(Err(Error::InvalidFrame { path, message, .. })) => {
                assert_eq!(path, "/seq");
                assert!(message.contains("-1"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            ext.decode(Bytes::from_static(br#"{"type":"ping","seq":3}"#))
                .unwrap()
                .is_ok()
        );
        assert!(
            CustomType::new::<Value>("x")
                .schema(&serde_json::json!({"type": 12}))
                .is_err()
        );
    }

    #[test]
    fn merged_extensions_keep_the_first_registration_and_handler_order() {
        #[derive(Debug, serde::Deserialize)]
        struct A {}
        #[derive(Debug, serde::Deserialize)]
        struct B {}
        let mine = Extensions::new()
            .register(CustomType::new::<A>("ev"))
            .handle("ev", |_| {
                Action::Replace(Bytes::from_static(br#"{"type":"ev","by":"mine"}"#))
            });
        let theirs = Extensions::new()
            .register(CustomType::new::<B>("ev"))
            .register(CustomType::new::<B>("other").subtype("x"))
            .handle("ev", |f| {
                assert_eq!(f.value["by"], "mine", "the session's own handler ran first");
                Action::Swallow
            });
        let merged = mine.merge(&theirs);
        assert_eq!(merged.type_names(), ["ev", "ev", "other/x"]);
        let m = merged
            .decode(Bytes::from_static(br#"{"type":"ev"}"#))
            .unwrap()
            .unwrap();
        assert!(m.custom::<A>().is_some(), "the first registration decodes");
        assert_eq!(
            merged.intercept(Direction::CliToSdk, Bytes::from_static(br#"{"type":"ev"}"#)),
            (None, None)
        );
    }

    #[test]
    fn protocol_extensions_answer_transform_swallow_and_fall_back() {
        let ext = Extensions::new()
            .handle("probe", |f| {
                Action::Reply(Bytes::from(format!(
                    r#"{{"type":"probe_ack","dir":"{}"}}"#,
                    f.direction.as_str()
                )))
            })
            .handle("noise", |_| Action::Swallow)
            .handle("old", |_| {
                Action::Replace(Bytes::from_static(br#"{"type":"new"}"#))
            })
            .handle("old", |f| {
                assert_eq!(
                    f.value["type"], "new",
                    "a replaced frame is what the next handler sees"
                );
                Action::Pass
            })
            .handle("maybe", |_| panic!("bug"));
        let (frame, reply) = ext.intercept(
            Direction::CliToSdk,
            Bytes::from_static(br#"{"type":"probe"}"#),
        );
        assert!(frame.is_none());
        assert_eq!(
            reply.unwrap().as_ref(),
            br#"{"type":"probe_ack","dir":"cli->sdk"}"#
        );
        assert_eq!(
            ext.intercept(
                Direction::CliToSdk,
                Bytes::from_static(br#"{"type":"noise"}"#)
            ),
            (None, None)
        );
        let (frame, _) = ext.intercept(
            Direction::CliToSdk,
            Bytes::from_static(br#"{"type":"old"}"#),
        );
        assert_eq!(frame.unwrap().as_ref(), br#"{"type":"new"}"#);
        // Fallbacks: a panicking handler, and a type nobody handles.
        for raw in [&br#"{"type":"maybe"}"#[..], br#"{"type":"assistant"}"#] {
            let (frame, reply) = ext.intercept(Direction::SdkToCli, Bytes::copy_from_slice(raw));
            assert_eq!(frame.unwrap().as_ref(), raw);
            assert!(reply.is_none());
        }
    }
}
