//! The audit layer: every frame both ways, as JSON Lines.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tower::Layer;

use super::{Intercept, MapOptions};
use crate::error::{Error, Result};
use crate::extension::{Direction, FrameSink};

type Callback = dyn Fn(&str) + Send + Sync;

/// Where audit lines go.
#[derive(Clone)]
pub enum AuditSink {
    /// Appended to a file, one line each, flushed per line.
    File(Arc<Mutex<std::fs::File>>),
    /// `tracing` events at info level, target `claude_conduit::audit`, field `line`.
    Tracing,
    /// Your function, called with each line (without the newline), inline: keep it quick.
    Callback(Arc<Callback>),
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuditSink::File(_) => "AuditSink::File",
            AuditSink::Tracing => "AuditSink::Tracing",
            AuditSink::Callback(_) => "AuditSink::Callback",
        })
    }
}

impl AuditSink {
    /// Append to `path` (created if missing).
    pub fn file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                Error::InvalidOptions(format!("cannot open audit file {}: {e}", path.display()))
            })?;
        Ok(AuditSink::File(Arc::new(Mutex::new(file))))
    }

    /// Call `f` with each line.
    pub fn callback(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        AuditSink::Callback(Arc::new(f))
    }
}

/// One audit line: `{"ts":"<RFC 3339, UTC, microseconds>","dir":"sdk->cli"|"cli->sdk","frame":<the frame>}`.
///
/// The frame is embedded as the JSON object it is, byte for byte. A frame that is not a JSON
/// object (the CLI wrote a broken line) is embedded as `{"unparsed":"<its text>"}`, so each
/// line stays one JSON object.
pub fn audit_line(direction: Direction, frame: &[u8]) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let is_object = frame.first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(frame).is_ok();
    let frame = if is_object {
        String::from_utf8_lossy(frame).into_owned()
    } else {
        serde_json::json!({ "unparsed": String::from_utf8_lossy(frame) }).to_string()
    };
    format!(
        "{{\"ts\":\"{ts}\",\"dir\":\"{}\",\"frame\":{frame}}}",
        direction.as_str()
    )
}

impl FrameSink for AuditSink {
    fn frame(&self, direction: Direction, frame: &Bytes) {
        let line = audit_line(direction, frame);
        match self {
            AuditSink::File(file) => {
                let mut file = match file.lock() {
                    Ok(f) => f,
                    Err(poisoned) => poisoned.into_inner(),
                };
                // One write per line (O_APPEND): lines of concurrent sessions do not interleave.
                let mut buf = line.into_bytes();
                buf.push(b'\n');
                if let Err(e) = file.write_all(&buf) {
                    tracing::warn!(target: "claude_conduit::audit", error = %e, "could not write the audit file");
                }
            }
            AuditSink::Tracing => tracing::info!(target: "claude_conduit::audit", %line),
            AuditSink::Callback(f) => f(&line),
        }
    }
}

/// Audits every frame of each query, both ways, control frames included, after redaction
/// (a [`RedactLayer`](super::RedactLayer) anywhere in the stack applies first). The format is
/// the audit line format (`audit_line`), one line per frame; see docs/EXTENDING.md.
///
/// ```no_run
/// use claude_conduit::middleware::{AuditLayer, AuditSink, QueryRequest, QueryService};
/// use claude_conduit::Options;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # async fn demo() -> claude_conduit::Result<()> {
/// let service = ServiceBuilder::new()
///     .layer(AuditLayer::new(AuditSink::file("session.audit.jsonl")?))
///     .service(QueryService::new());
/// let stream = service.oneshot(QueryRequest::new("hi", Options::default())).await?;
/// # drop(stream); Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuditLayer {
    stage: MapOptions,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer").finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// Audit to `sink`.
    pub fn new(sink: AuditSink) -> Self {
        let sink: Arc<dyn FrameSink> = Arc::new(sink);
        AuditLayer {
            stage: MapOptions::new(move |options: crate::Options| {
                options.to_builder().frame_sink(sink.clone()).build()
            }),
        }
    }
}

impl<S> Layer<S> for AuditLayer {
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
    fn a_line_is_one_json_object_with_ts_dir_and_the_frame() {
        let line = audit_line(Direction::SdkToCli, br#"{"type":"user","n":1}"#);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["dir"], "sdk->cli");
        assert_eq!(v["frame"], serde_json::json!({"type":"user","n":1}));
        let ts = v["ts"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert!(!line.contains('\n'));
        let broken = audit_line(Direction::CliToSdk, b"{not json");
        let v: serde_json::Value = serde_json::from_str(&broken).unwrap();
        assert_eq!(v["frame"], serde_json::json!({"unparsed": "{not json"}));
    }
}
