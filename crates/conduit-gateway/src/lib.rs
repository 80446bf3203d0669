//! The claude-conduit gateway: `claude` CLI sessions served over HTTP and WebSocket.
//!
//! ```text
//! WebSocketTransport ══ws══► gateway ══► SubprocessTransport ══► claude
//! ```
//!
//! The gateway spawns one CLI per session (through the SDK's [`SubprocessTransport`]) and relays
//! frames both ways without interpreting them: the control protocol stays end to end between the
//! SDK client and the CLI.
//!
//! * [`config`]: [`GatewayConfig`] (listen address, tokens, the CLI [`Options`] template, limits).
//! * [`auth`]: bearer tokens, compared in constant time, never logged.
//! * [`session`]: [`SessionManager`] — one CLI per session, sequence numbers, the replay ring,
//!   one attached client at a time, the reaper.
//! * [`server`]: the axum router and [`Gateway`] (bind, serve, graceful shutdown).
//! * [`http`]: the plain-HTTP front for clients that cannot hold a WebSocket: `POST` frames
//!   (JSON lines, numbered with `Conduit-Seq`), server-sent events out (`GET …/events`, the
//!   event id is the frame's sequence number, `Last-Event-ID` resumes), `POST …/ack`.
//!
//! # Wire format of `/v1/sessions/{id}/stream`
//!
//! | direction | message | meaning |
//! |---|---|---|
//! | server → client | binary: 8-byte big-endian `seq` ++ frame bytes | CLI frame number `seq` (1, 2, 3, …), verbatim |
//! | server → client | text `{"end":{"code":..,"signal":..,"stderr_tail":".."}}` | the CLI exited; the server then closes (1000) |
//! | client → server | binary: the frame bytes | one frame for the CLI's stdin |
//! | client → server | text `{"ack":N}` | frames up to `N` were received; the ring may drop them |
//! | client → server | text `{"end_input":true}` | end the CLI's stdin |
//! | client → server | text `{"close":true}` | gracefully close the CLI (end input, wait, signal) |
//! | client → server | any other text | one frame for the CLI's stdin |
//!
//! Frames are binary so that a frame that is not valid JSON (or UTF-8) still passes verbatim; the
//! SDK's codec reports it, not the gateway. Resume with `?after=N`: frames with `seq > N` are
//! replayed, then the stream goes live; `N` counts as an ack. Close codes: 4404 unknown session,
//! 4409 replaced by a newer connection, 4410 `after` older than the replay ring holds, 4400 bad
//! `after`, 1001 gateway shutting down.
//!
//! [`SubprocessTransport`]: claude_conduit::transport::SubprocessTransport
//! [`Options`]: claude_conduit::Options

pub mod auth;
pub mod config;
pub mod grpc;
pub mod http;
pub mod policy;
pub mod server;
pub mod session;
pub mod tls;

pub use config::GatewayConfig;
pub use server::{Gateway, serve};
pub use session::{SessionInfo, SessionManager};

/// Close code: the session does not exist.
pub const CLOSE_UNKNOWN_SESSION: u16 = 4404;
/// Close code: a newer connection took the session over.
pub const CLOSE_REPLACED: u16 = 4409;
/// Close code: `after` is older than the replay ring holds.
pub const CLOSE_REPLAY_TOO_OLD: u16 = 4410;
/// Close code: `after` is ahead of the stream.
pub const CLOSE_BAD_RESUME: u16 = 4400;

/// What can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// The token owner has reached the session limit.
    #[error("session limit reached ({limit} per token)")]
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// The request's session options are not acceptable.
    #[error("invalid session options: {0}")]
    InvalidOptions(String),
    /// The CLI could not be started.
    #[error("cannot start the CLI: {0}")]
    Spawn(#[source] claude_conduit::Error),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
}
