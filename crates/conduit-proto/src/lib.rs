//! The claude-conduit gateway's gRPC service, generated from `proto/conduit.proto` (package
//! `conduit.v1`) with tonic: messages ([`v1::ClientMessage`], [`v1::ServerMessage`], …), the
//! client ([`v1::conduit_client::ConduitClient`]) and the server trait
//! ([`v1::conduit_server::Conduit`], served by [`v1::conduit_server::ConduitServer`]).
//!
//! `bytes` fields are [`bytes::Bytes`]. The code is generated at build time from the `.proto`
//! file by `protox` (a pure-Rust protobuf compiler) and `tonic-prost-build`: no `protoc` needed.
//!
//! # The `Stream` call
//!
//! Every call carries `authorization: Bearer <token>` metadata. On `Stream`, the client's first
//! message is [`v1::Attach`] (`session_id`, and `after`: the last CLI frame already seen); the
//! gateway answers [`v1::Hello`] (`in_seq`: the last client frame it accepted, and its
//! `max_frame_bytes`), replays CLI frames with `seq > after`, then streams live. Client frames
//! carry their own numbers (1, 2, 3, … across reconnects; 0 = unnumbered); the gateway acks them
//! with [`v1::InAck`], the client acks CLI frames with [`v1::Ack`]. See the `.proto` file for the
//! status codes a stream can end with.

/// Package `conduit.v1`, as generated.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    rustdoc::all
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/conduit.v1.rs"));
}

/// `proto/conduit.proto` compiled to an encoded `FileDescriptorSet` (for gRPC server
/// reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/conduit_descriptor.bin"));

pub use v1::conduit_client::ConduitClient;
pub use v1::conduit_server::{Conduit, ConduitServer};
