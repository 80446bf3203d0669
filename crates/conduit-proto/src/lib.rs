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

/// The size tonic's read and write buffers of a call start at (its default: 8 KiB). A stream
/// keeps both for as long as it is open, so with the default an idle session's stream holds
/// 16 KiB on each side; the buffers grow to what a burst of frames needs and are allocated again
/// at this size after a burst.
pub const CODEC_BUFFER_BYTES: usize = 512;

/// Encoded messages a stream's writer gathers before it hands them to HTTP/2 (tonic's default:
/// 32 KiB). A busy stream then goes out in DATA frames of up to this size (the SDK's client
/// takes 256 KiB frames), a quarter as many as with the default: measured, 3-4 % less CPU on
/// a gRPC firehose (docs/PERFORMANCE.md). Only a burst fills it; an idle stream holds none.
pub const YIELD_BYTES: usize = 128 * 1024;

/// The protobuf codec of the service: tonic-prost's, with [`CODEC_BUFFER_BYTES`] buffers and
/// [`YIELD_BYTES`] of encoded messages before the writer yields.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(std::marker::PhantomData<fn(T) -> U>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

fn lean_settings() -> tonic::codec::BufferSettings {
    tonic::codec::BufferSettings::new(CODEC_BUFFER_BYTES, YIELD_BYTES)
}

impl<T, U> tonic::codec::Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::raw_encoder(lean_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<T, U>::raw_decoder(lean_settings())
    }
}

pub use v1::conduit_client::ConduitClient;
pub use v1::conduit_server::{Conduit, ConduitServer};
