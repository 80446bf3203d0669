//! Moving frames: the [`Transport`] trait and its implementations.
//!
//! A transport moves frames (one JSON document each, as [`Bytes`] without the newline) and never
//! interprets them. [`Transport::connect`] gives a [`Connection`]: independent send and receive
//! halves ([`FrameSender`], [`FrameReceiver`]) plus shared [`TransportMetrics`], so a reader task
//! never holds anything the writer needs.
//!
//! * [`SubprocessTransport`]: the real `claude` CLI as a child process (stdin/stdout pipes).
//! * [`MemoryTransport`]: an in-process pair, for tests; see [`memory::ScriptedCli`].
//!
//! Contract every implementation keeps: frames arrive in order, none lost, none duplicated;
//! sending waits when the peer is slow (backpressure, never dropping); the receive half ends with
//! `Ok(None)` and then [`FrameReceiver::termination`] says how the peer ended.

#[cfg(feature = "grpc")]
pub mod grpc;
pub mod relay;
#[cfg(any(
    feature = "websocket",
    feature = "http",
    feature = "grpc",
    feature = "redis"
))]
pub use relay::{GatewayReceiver, GatewaySender};
#[cfg(feature = "http")]
pub mod http;
pub mod memory;
mod metrics;
#[cfg(feature = "redis")]
pub mod redis;
pub mod subprocess;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "websocket")]
pub mod websocket;

use std::future::Future;

use bytes::Bytes;

pub use memory::MemoryTransport;
pub use metrics::{MetricsSnapshot, TransportMetrics};
pub use subprocess::SubprocessTransport;

use crate::error::Result;

/// Something that can open a connection to a `claude` CLI (directly or through a gateway).
pub trait Transport: Send + 'static {
    /// The sending half.
    type Sender: FrameSender;
    /// The receiving half.
    type Receiver: FrameReceiver;

    /// Open the connection. Measures its own connect time into the metrics.
    fn connect(
        self,
    ) -> impl Future<Output = Result<Connection<Self::Sender, Self::Receiver>>> + Send;
}

/// An open connection, split into halves.
#[derive(Debug)]
pub struct Connection<S, R> {
    /// Sends frames to the CLI.
    pub sender: S,
    /// Receives frames from the CLI.
    pub receiver: R,
    /// Counters shared by both halves.
    pub metrics: std::sync::Arc<TransportMetrics>,
    /// What is known about the peer at connect time.
    pub info: ConnectionInfo,
}

/// Facts about a connection's peer.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The CLI's process id, for local processes.
    pub pid: Option<u32>,
    /// The executable that runs, for local processes.
    pub program: Option<std::path::PathBuf>,
    /// A short human description (`subprocess /path/to/claude`, `memory`, …).
    pub description: String,
}

/// The sending half of a connection.
pub trait FrameSender: Send + 'static {
    /// Send one frame (without its newline). Waits while the peer is not reading.
    fn send(&mut self, frame: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Signal end of input (stdin EOF for a process). Frames can no longer be sent. Idempotent.
    fn end_input(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Graceful close: end input, wait up to `grace` for the peer to finish on its own, then make
    /// it stop (for a process: SIGTERM to its process group, then SIGKILL).
    fn close(self, grace: std::time::Duration) -> impl Future<Output = Result<()>> + Send;
}

/// The receiving half of a connection.
pub trait FrameReceiver: Send + 'static {
    /// The next frame. `Ok(Some(Err(e)))` is a per-frame problem ([`crate::Error::FrameTooLarge`]):
    /// the stream goes on. `Ok(None)` is the end of the stream. `Err(e)` is a transport failure.
    ///
    /// Cancel-safe: dropping the future loses no frame.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Result<Bytes>>>> + Send;

    /// How the peer ended, once [`recv`](Self::recv) has returned `Ok(None)`; `None` before.
    fn termination(&self) -> Option<Termination>;
}

/// How the peer of a connection ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Termination {
    /// Exit code of the process, when it exited normally.
    pub code: Option<i32>,
    /// Signal that ended the process, if any.
    pub signal: Option<i32>,
    /// The last part of the peer's stderr (bounded).
    pub stderr_tail: String,
}

impl Termination {
    /// A clean end with exit code 0 and nothing on stderr.
    pub fn clean() -> Self {
        Self {
            code: Some(0),
            ..Self::default()
        }
    }
}
