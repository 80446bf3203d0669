//! The one error type of the SDK.
//!
//! Every variant says where something failed and keeps the evidence: the exit code and the tail of
//! stderr when the CLI dies, an excerpt of a frame that did not decode, the limit a frame broke.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used across the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between your code and the `claude` CLI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `claude` executable was found; `searched` lists every place that was tried, in order.
    #[error("claude CLI not found; looked in: {}", display_paths(.searched))]
    CliNotFound {
        /// The places looked at, in the order they were tried.
        searched: Vec<PathBuf>,
    },

    /// The CLI could not be started.
    #[error("could not start {path}: {source}")]
    Spawn {
        /// The executable that was run.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The options cannot be turned into a valid CLI invocation.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// The working directory given in the options does not exist or is not a directory.
    #[error("working directory does not exist or is not a directory: {}", .0.display())]
    CwdNotFound(PathBuf),

    /// The CLI process ended without finishing the turn in progress.
    ///
    /// An `is_error` result is *not* this error: the CLI exits with code 1 after an error result,
    /// and that is a normal end of a session.
    #[error("claude CLI exited ({}) before the turn finished; stderr tail:\n{stderr_tail}", exit_desc(*.code, *.signal))]
    ProcessExited {
        /// The exit code, if the process exited normally.
        code: Option<i32>,
        /// The signal that ended the process, if any.
        signal: Option<i32>,
        /// The last lines the CLI wrote to stderr (bounded).
        stderr_tail: String,
    },

    /// A frame was larger than the per-frame limit. The frame was skipped; the stream goes on.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes (skipped)")]
    FrameTooLarge {
        /// The configured per-frame limit in bytes.
        limit: usize,
        /// The size of the offending frame in bytes (without its newline).
        size: usize,
    },

    /// A frame was not valid JSON or did not have the shape its type requires. The frame was
    /// skipped; the stream goes on.
    #[error("could not decode frame: {message}; frame starts with: {excerpt}")]
    Decode {
        /// The start of the offending frame (at most a few hundred bytes, lossily UTF-8).
        excerpt: String,
        /// What the parser said.
        message: String,
    },

    /// A control request sent to the CLI got no answer in time.
    #[error("control request `{subtype}` got no answer within {after:?}")]
    ControlTimeout {
        /// The request's subtype (`initialize`, `interrupt`, …).
        subtype: String,
        /// How long we waited.
        after: Duration,
    },

    /// The CLI answered a control request with an error.
    #[error("control request `{subtype}` failed: {message}")]
    ControlError {
        /// The request's subtype.
        subtype: String,
        /// The CLI's error text.
        message: String,
        /// The CLI's machine-readable error code, when it sends one.
        code: Option<String>,
    },

    /// The CLI produced no output for longer than the configured idle timeout during a turn.
    #[error("no output from the CLI for {after:?} during a turn")]
    Idle {
        /// The configured idle timeout.
        after: Duration,
    },

    /// The session has ended (the CLI exited or the session was disconnected).
    #[error("the session is closed")]
    Closed,

    /// The gateway (`conduit serve`) refused or ended something, with a machine-readable kind.
    /// [`GatewayErrorKind::is_frame_error`] kinds concern one frame only: the stream goes on.
    #[error("gateway: {kind}{}: {message}", status_desc(status))]
    Gateway {
        /// What went wrong.
        kind: GatewayErrorKind,
        /// The HTTP status, WebSocket close code or gRPC status code that carried it.
        status: Option<GatewayStatus>,
        /// The gateway's (or the connection's) words.
        message: String,
        /// The underlying failure, when there is one (a connection error, a TLS error, …).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// The worker that ran the session's CLI stopped (killed, crashed, lost its host) while the
    /// session ran: its CLI is gone and the session cannot go on. Fatal on every wire (WebSocket
    /// close 4502, server-sent event `lost`, gRPC `DATA_LOSS`); never reconnected on. See
    /// docs/SCALE.md.
    #[error("session {session_id} lost: worker {worker} stopped")]
    SessionLost {
        /// The session.
        session_id: String,
        /// The worker's name (`conduit worker --name`).
        worker: String,
    },

    /// The operation needs a cargo feature of `claude-conduit` this build does not have
    /// (`websocket`, `http`, `grpc`, `tls`).
    #[error("this needs the `{0}` cargo feature of claude-conduit (this build has none)")]
    FeatureDisabled(&'static str),

    /// A transport-level I/O failure.
    #[error("transport error ({context}): {source}")]
    Transport {
        /// What the transport was doing.
        context: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// An event handler refused to send a frame ([`events::Outcome::Refuse`](crate::events::Outcome::Refuse)
    /// on [`BeforeSend`](crate::events::EventKind::BeforeSend)); nothing was sent.
    #[error("frame not sent: refused by an event handler: {reason}")]
    Refused {
        /// The handler's reason.
        reason: String,
    },

    /// A query ran longer than the whole-query timeout of
    /// [`middleware::TimeoutLayer`](crate::middleware::TimeoutLayer); the session was ended.
    #[error("the query did not finish within {after:?}")]
    Timeout {
        /// The limit.
        after: Duration,
    },

    /// A frame of a registered custom type failed its JSON Schema, its validators or its
    /// typed view (a per-frame error: the stream goes on). `path` is a JSON pointer to the
    /// failing value (`""` for the whole frame).
    #[error("custom frame `{type_}` is invalid at `{path}`: {message}")]
    InvalidFrame {
        /// The frame's `type` (and `/subtype` when registered by subtype).
        type_: String,
        /// JSON pointer to the failing value, e.g. `/payload/count`.
        path: String,
        /// What is wrong there.
        message: String,
    },
}

impl Error {
    /// Build a [`Error::Decode`] from a frame and a parser message, keeping a bounded excerpt.
    pub fn decode(frame: &[u8], message: impl std::fmt::Display) -> Self {
        Error::Decode {
            excerpt: excerpt(frame, EXCERPT_LEN),
            message: message.to_string(),
        }
    }

    /// Build a [`Error::Transport`].
    pub fn transport(context: &'static str, source: std::io::Error) -> Self {
        Error::Transport { context, source }
    }

    /// A [`Error::Gateway`] of `kind` with `message`, carried by `status`.
    pub fn gateway(
        kind: GatewayErrorKind,
        status: Option<GatewayStatus>,
        message: impl std::fmt::Display,
    ) -> Self {
        Error::Gateway {
            kind,
            status,
            message: message.to_string(),
            source: None,
        }
    }

    /// A [`Error::Gateway`] keeping `source` as its cause.
    pub fn gateway_caused(
        kind: GatewayErrorKind,
        status: Option<GatewayStatus>,
        message: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Gateway {
            kind,
            status,
            message: message.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// The kind of a [`Error::Gateway`], `None` for other errors.
    pub fn gateway_kind(&self) -> Option<GatewayErrorKind> {
        match self {
            Error::Gateway { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// True for errors that concern one frame only: the stream goes on after them.
    pub fn is_frame_error(&self) -> bool {
        match self {
            Error::FrameTooLarge { .. } | Error::Decode { .. } | Error::InvalidFrame { .. } => true,
            Error::Gateway { kind, .. } => kind.is_frame_error(),
            _ => false,
        }
    }
}

/// What a gateway said went wrong ([`Error::Gateway`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GatewayErrorKind {
    /// Missing or invalid bearer token (HTTP 401, gRPC `UNAUTHENTICATED`).
    Unauthorized,
    /// No such session, or another token's (HTTP 404, gRPC `NOT_FOUND`, close 4404).
    NotFound,
    /// The resume point is older than the gateway's replay ring (close 4410, gRPC
    /// `OUT_OF_RANGE`, HTTP 410): frames were lost for this client.
    ReplayTooOld,
    /// The resume point, or a client frame number, does not fit the session (close 4400).
    BadResume,
    /// A newer connection took the session over (close 4409, gRPC `ABORTED`).
    Replaced,
    /// The operator's policy refused a request or a frame (per frame: the stream goes on).
    Refused,
    /// A frame that is not a JSON object, or a malformed control message (per frame: the stream
    /// goes on).
    BadFrame,
    /// A request the gateway could not take (bad options, bad body, message too big).
    InvalidRequest,
    /// Too many sessions for this token.
    TooManySessions,
    /// The gateway is shutting down, overloaded or unreachable, and reconnecting did not help.
    Unavailable,
    /// The gateway broke the protocol (a gap in sequence numbers, an unexpected message).
    Protocol,
    /// Anything else.
    Other,
}

impl GatewayErrorKind {
    /// The kind for a wire `kind` string (`transport::relay::wire::kind`).
    pub fn from_wire(kind: &str) -> Self {
        match kind {
            "unauthorized" => Self::Unauthorized,
            "not_found" => Self::NotFound,
            "replay_too_old" => Self::ReplayTooOld,
            "bad_resume" | "gap" => Self::BadResume,
            "replaced" => Self::Replaced,
            "refused" | "policy" => Self::Refused,
            "bad_frame" => Self::BadFrame,
            "bad_body" | "bad_request" | "frame_too_large" | "invalid_options" => {
                Self::InvalidRequest
            }
            "too_many_sessions" => Self::TooManySessions,
            "unavailable" | "closed" => Self::Unavailable,
            _ => Self::Other,
        }
    }

    /// True for kinds that concern one frame only.
    pub fn is_frame_error(self) -> bool {
        matches!(self, Self::Refused | Self::BadFrame)
    }
}

impl std::fmt::Display for GatewayErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not found",
            Self::ReplayTooOld => "replay too old",
            Self::BadResume => "bad resume",
            Self::Replaced => "replaced",
            Self::Refused => "refused",
            Self::BadFrame => "bad frame",
            Self::InvalidRequest => "invalid request",
            Self::TooManySessions => "too many sessions",
            Self::Unavailable => "unavailable",
            Self::Protocol => "protocol error",
            Self::Other => "error",
        })
    }
}

/// What carried a gateway error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GatewayStatus {
    /// An HTTP status code.
    Http(u16),
    /// A WebSocket close code.
    Close(u16),
    /// A gRPC status code (`tonic::Code as i32`).
    Grpc(i32),
}

fn status_desc(status: &Option<GatewayStatus>) -> String {
    match status {
        None => String::new(),
        Some(GatewayStatus::Http(s)) => format!(" (HTTP {s})"),
        Some(GatewayStatus::Close(c)) => format!(" (close code {c})"),
        Some(GatewayStatus::Grpc(c)) => format!(" (gRPC status {c})"),
    }
}

/// How many bytes of a bad frame an error keeps.
pub const EXCERPT_LEN: usize = 256;

/// The first `max` bytes of `frame`, lossily decoded, with an ellipsis when cut.
pub(crate) fn excerpt(frame: &[u8], max: usize) -> String {
    if frame.len() <= max {
        String::from_utf8_lossy(frame).into_owned()
    } else {
        let mut s = String::from_utf8_lossy(&frame[..max]).into_owned();
        s.push('…');
        s
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nowhere)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn exit_desc(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "exit status unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_bounded_and_marks_the_cut() {
        let long = vec![b'x'; 1000];
        let e = Error::decode(&long, "bad");
        match e {
            Error::Decode { excerpt, .. } => {
                assert!(excerpt.ends_with('…'));
                assert_eq!(excerpt.chars().count(), EXCERPT_LEN + 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn process_exited_names_code_and_stderr() {
        let e = Error::ProcessExited {
            code: Some(137),
            signal: None,
            stderr_tail: "boom".into(),
        };
        let s = e.to_string();
        assert!(s.contains("exit code 137") && s.contains("boom"), "{s}");
    }
}
