//! The redaction layer: regex-defined secrets replaced in frames.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tower::Layer;

use super::{Intercept, MapOptions};
use crate::error::{Error, Result};
use crate::extension::FrameFilter;

/// Replaces every match of its patterns in the strings of a frame (values, not keys) with a
/// replacement (`[REDACTED]` by default). Matching is on the decoded JSON strings, so a frame
/// stays valid JSON whatever the pattern. Patterns use the `regex` crate's syntax in ASCII mode,
/// as hook matchers do (the SDK builds regex without Unicode tables): `\d`, `\w`, `\s` and
/// classes are ASCII; write non-ASCII text literally.
#[derive(Debug, Clone)]
pub struct Redactor {
    patterns: Vec<regex::bytes::Regex>,
    replacement: String,
}

impl Redactor {
    /// Patterns in the `regex` crate's syntax; a bad one is [`Error::InvalidOptions`].
    pub fn new<I, P>(patterns: I) -> Result<Self>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| {
                regex::bytes::RegexBuilder::new(p.as_ref())
                    .unicode(false)
                    .build()
                    .map_err(|e| {
                        Error::InvalidOptions(format!("redaction pattern `{}`: {e}", p.as_ref()))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Redactor {
            patterns,
            replacement: "[REDACTED]".to_owned(),
        })
    }

    /// Replace matches with `replacement` instead.
    pub fn replacement(mut self, replacement: impl Into<String>) -> Self {
        self.replacement = replacement.into();
        self
    }

    /// `text` with every match replaced.
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(text.as_bytes());
        for p in &self.patterns {
            if let Cow::Owned(s) =
                p.replace_all(&out, regex::bytes::NoExpand(self.replacement.as_bytes()))
            {
                out = Cow::Owned(s);
            }
        }
        match out {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // A match may end inside a multi-byte character (`.` is one byte here).
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    fn redact_value(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) => match self.redact_str(s) {
                Cow::Owned(r) => {
                    *s = r;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, v| self.redact_value(v) | changed),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |changed, v| self.redact_value(v) | changed),
            _ => false,
        }
    }

    /// The frame with every match in its strings replaced (the same bytes when nothing
    /// matches; a frame that is not JSON is redacted as text).
    pub fn redact_frame(&self, frame: Bytes) -> Bytes {
        // Escapes (`\n`, `\u…`) may hide a match from the raw text: decode those frames.
        let escaped = memchr::memchr(b'\\', &frame).is_some();
        if !escaped && !self.patterns.iter().any(|p| p.is_match(&frame)) {
            return frame;
        }
        let text = String::from_utf8_lossy(&frame);
        match serde_json::from_slice::<Value>(&frame) {
            Ok(mut value) => {
                if !self.redact_value(&mut value) {
                    return frame;
                }
                serde_json::to_vec(&value).map(Bytes::from).unwrap_or(frame)
            }
            Err(_) => match self.redact_str(&text) {
                Cow::Owned(s) => Bytes::from(s),
                Cow::Borrowed(_) => frame,
            },
        }
    }
}

impl FrameFilter for Redactor {
    fn outbound(&self, frame: Bytes) -> Bytes {
        self.redact_frame(frame)
    }
    fn sink_view(&self, frame: Bytes) -> Bytes {
        self.redact_frame(frame)
    }
}

/// Replaces regex-defined secrets in every frame the SDK writes before the transport sees it,
/// and in every frame both ways before the audit or any other [`FrameSink`](crate::extension::FrameSink)
/// sees it (filters run before sinks, wherever the layers sit in the stack). What your stream
/// yields from the CLI is not changed. The SDK does not log frame contents.
///
/// ```
/// use claude_conduit::middleware::{AuditLayer, AuditSink, QueryService, RedactLayer};
/// use tower::ServiceBuilder;
///
/// # fn main() -> claude_conduit::Result<()> {
/// let service = ServiceBuilder::new()
///     .layer(AuditLayer::new(AuditSink::Tracing))
///     .layer(RedactLayer::new([r"sk-[A-Za-z0-9]{20,}", r"AKIA[0-9A-Z]{16}"])?)
///     .service(QueryService::new());
/// # let _ = service; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedactLayer {
    stage: MapOptions,
    redactor: Arc<Redactor>,
}

impl RedactLayer {
    /// Redact matches of `patterns` (see [`Redactor::new`]).
    pub fn new<I, P>(patterns: I) -> Result<Self>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Ok(Self::with(Redactor::new(patterns)?))
    }

    /// Redact with `redactor`.
    pub fn with(redactor: Redactor) -> Self {
        let redactor = Arc::new(redactor);
        let filter: Arc<dyn FrameFilter> = redactor.clone();
        RedactLayer {
            stage: MapOptions::new(move |options: crate::Options| {
                options.to_builder().frame_filter(filter.clone()).build()
            }),
            redactor,
        }
    }

    /// The redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

impl<S> Layer<S> for RedactLayer {
    type Service = Intercept<S, MapOptions>;
    fn layer(&self, inner: S) -> Self::Service {
        Intercept {
            inner,
            interceptor: Arc::new(self.stage.clone()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_in_strings_and_the_frame_stays_json() {
        let r = Redactor::new([r"sk-[a-z0-9]{8}", r#"a"b"#]).unwrap();
        let frame = Bytes::from_static(
            br#"{"type":"user","message":{"content":"key sk-abcd1234 and a\"b\nsk-zzzz9999"},"n":1}"#,
        );
        let out = r.redact_frame(frame);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["message"]["content"],
            "key [REDACTED] and [REDACTED]\n[REDACTED]"
        );
        assert_eq!(v["n"], 1);
        let clean = Bytes::from_static(br#"{"type":"user","x":"nothing here"}"#);
        assert_eq!(r.redact_frame(clean.clone()), clean);
        assert!(Redactor::new(["("]).is_err());
    }
}
