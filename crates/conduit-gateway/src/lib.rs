//! The claude-conduit gateway: `claude` CLI sessions served to remote SDK clients over
//! WebSocket, plain HTTP (POST + server-sent events) and gRPC, with resume.
//!
//! ```text
//! WebSocketTransport ══ws══┐
//! HttpTransport ═══http/sse══► gateway ══► SubprocessTransport ══► claude   (one per session)
//! GrpcTransport ═══grpc════┘
//! ```
//!
//! The gateway spawns one CLI per session (through the SDK's [`SubprocessTransport`]) and relays
//! frames both ways without interpreting them: the control protocol stays end to end between the
//! SDK client and the CLI, so permission callbacks, hooks and in-process MCP tools of a remote
//! client work unchanged.
//!
//! * [`config`]: [`GatewayConfig`] (listeners, tokens, TLS, the CLI [`Options`] template, limits,
//!   policy) and the TOML file form; flags, env and keys are in `docs/GATEWAY.md`.
//! * [`auth`]: bearer tokens, compared in constant time, never logged.
//! * [`policy`]: what a remote client may set (flags, permission modes, cwd roots, MCP servers,
//!   template flags); [`dirs`]: how a client's directory is checked and opened without a race.
//! * [`tenancy`]: what isolates sessions: the allowlisted environment, the state directory
//!   (per-token work directories, conversation owners), the optional sandbox.
//! * [`session`]: [`SessionManager`] — one CLI per session, sequence numbers both ways, the replay
//!   ring, one attached client at a time, frame-size and frame-rate limits, the reaper.
//! * [`server`]: the axum router, the WebSocket front and [`Gateway`] (bind, serve, graceful
//!   shutdown of every listener and every CLI).
//! * [`http`]: the plain-HTTP front for clients that cannot hold a WebSocket: `POST` frames
//!   (JSON lines, numbered with `Conduit-Seq`), server-sent events out (`GET …/events`, the
//!   event id is the frame's sequence number, `Last-Event-ID` resumes), `POST …/ack`.
//! * [`grpc`]: the tonic service of `proto/conduit.proto` (session create/list/get/close and a
//!   bidirectional stream of sequenced frames).
//! * [`tls`]: rustls (ring provider) for the HTTP/WebSocket listener (and the gRPC one).
//!
//! # Delivery guarantees (every front)
//!
//! CLI → client frames are numbered 1, 2, 3, … and kept in a bounded replay ring until the client
//! acks them (at least every [`session::ACK_EVERY`] frames); a client that reconnects with the
//! last number it saw gets every later frame once, in order. When the ring is full of unacked
//! frames, or over its replay byte budget (per session and gateway-wide), the CLI's output waits
//! (backpressure), nothing is dropped. Client → CLI frames are
//! numbered by the client the same way; each (re)connection starts with a hello carrying
//! `in_seq`, the last client frame the gateway accepted, and the client resends what came after
//! it; the gateway skips numbers it already has and refuses gaps. A client frame over the
//! frame-size limit is refused with a typed error (its number counts as used) and the session
//! goes on; so is a frame the [control-frame policy](control_policy) refuses (a refused control
//! request is answered by the gateway with a `control_response` error in the CLI → client
//! stream).
//!
//! # Wire format of `/v1/sessions/{id}/stream` (WebSocket)
//!
//! | direction | message | meaning |
//! |---|---|---|
//! | server → client | text `{"hello":{"session","in_seq","max_frame_bytes"}}` | first message of every connection |
//! | server → client | binary: 8-byte big-endian `seq` ++ frame bytes | CLI frame number `seq` (1, 2, 3, …), verbatim |
//! | server → client | text `{"in_ack":N}` | client frames up to `N` were accepted (every 16) |
//! | server → client | text `{"error":{"kind":"frame_too_large","limit","size","seq"}}` | a client frame was refused; the session goes on |
//! | server → client | text `{"error":{"kind":"policy","seq","message"}}` | a client frame the policy refuses (not a control request); the session goes on |
//! | server → client | text `{"end":{"code":..,"signal":..,"stderr_tail":".."}}` | the CLI exited; the server then closes (1000) |
//! | client → server | binary: 8-byte big-endian `seq` ++ frame bytes | client frame number `seq` for the CLI's stdin |
//! | client → server | text `{"ack":N}` | frames up to `N` were received; the ring may drop them |
//! | client → server | text `{"end_input":true}` | end the CLI's stdin |
//! | client → server | text `{"close":true}` | gracefully close the CLI (end input, wait, signal) |
//! | client → server | any other JSON object as text | one unnumbered frame for the CLI's stdin (simple clients) |
//! | server → client | text `{"error":{"kind":"bad_frame"/"frame_too_large",…}}` | a refused client frame (not one JSON object, a malformed control message, a binary message under 8 bytes, over the limit); the session goes on |
//!
//! CLI frames are binary so that one that is not valid JSON (or UTF-8) still passes verbatim; the
//! SDK's codec reports it, not the gateway. Client frames must be one JSON object each (the CLI
//! ends the session on anything else): others are refused. docs/WIRE.md describes every wire. Resume with `?after=N`: frames with `seq > N` are
//! replayed, then the stream goes live; `N` counts as an ack. An unknown session (or another token's) is an HTTP 404 at the handshake. Close codes:
//! 4409 replaced by a newer connection, 4410 `after` older than the replay ring holds, 4400 bad
//! `after` or a gap in client frame numbers, 1001 gateway shutting down, 1009 a message larger
//! than the frame limit plus [`server::WS_MARGIN`] (refused from its frame header, before its
//! payload is read).
//!
//! permessage-deflate is not offered: tungstenite (under axum and the SDK client) does not
//! implement it, and the one maintained crate that does (yawc) is not built here; frames are
//! small JSON on loopback/LAN paths where compression costs more CPU than it saves.
//!
//! [`SubprocessTransport`]: claude_conduit::transport::SubprocessTransport
//! [`Options`]: claude_conduit::Options

// Module docs link to the crate's internal items (read with --document-private-items).
#![allow(rustdoc::private_intra_doc_links)]

pub mod auth;
mod auth_log;
pub mod config;
pub mod control_policy;
pub mod dirs;
pub mod front;
pub(crate) mod grpc_gate;
pub(crate) mod metrics;
pub mod plugins;
pub mod policy;
pub mod scale;
pub mod server;
pub(crate) mod serving;
pub mod session;
pub mod tenancy;
pub mod tls;

pub use config::GatewayConfig;
pub use front::{grpc, http};
pub use server::{Gateway, serve};
pub use session::{SessionInfo, SessionManager};

use claude_conduit::transport::relay::wire::close;
/// Close code: the session does not exist (reserved: an unknown session is an HTTP 404 at the
/// handshake).
pub const CLOSE_UNKNOWN_SESSION: u16 = close::UNKNOWN_SESSION;
/// Close code: a newer connection took the session over.
pub const CLOSE_REPLACED: u16 = close::REPLACED;
/// Close code: `after` is older than the replay ring holds.
pub const CLOSE_REPLAY_TOO_OLD: u16 = close::REPLAY_TOO_OLD;
/// Close code: `after` is ahead of the stream, or a client frame number skipped ahead.
pub const CLOSE_BAD_RESUME: u16 = close::BAD_RESUME;

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
    /// The CLI could not be started. The message clients see says no more (no path, no OS
    /// error); the details are in the gateway's log and in the source.
    #[error("cannot start the session's CLI (the gateway's log has the details)")]
    Spawn(#[source] claude_conduit::Error),
    /// The session's directory (under the state directory) could not be prepared. Clients see
    /// no path; the details are in the gateway's log.
    #[error("cannot prepare the session's directory (the gateway's log has the details)")]
    StateDir(#[source] std::io::Error),
    /// The configuration cannot work (a token under 16 bytes, an unknown OS user, …).
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Redis (`--redis`) cannot be used or reached; never carries its URL.
    #[error("redis: {0}")]
    Redis(String),
}
