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
//! [`Received::End`] and then [`FrameReceiver::termination`] says how the peer ended.

#[cfg(feature = "grpc")]
pub mod grpc;
/// Items that exist when at least one gateway wire is built in (features `websocket`, `http`,
/// `grpc`, `redis`): the one place that says which features make a wire.
macro_rules! with_wires {
    ($($item:item)*) => {
        $(
            #[cfg(any(
                feature = "websocket",
                feature = "http",
                feature = "grpc",
                feature = "redis"
            ))]
            $item
        )*
    };
}

pub mod relay;
with_wires! {
    pub use relay::{GatewayReceiver, GatewaySender};
}
#[cfg(feature = "http")]
pub mod http;
pub mod memory;
pub(crate) mod metrics;
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
#[cfg(any(feature = "websocket", feature = "http", feature = "grpc"))]
use crate::remote::{Remote, SessionRequest};

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

/// What every network transport (`websocket::WebSocketTransport`, `http::HttpTransport`,
/// `grpc::GrpcTransport`) has, with the same signatures: built from a [`Remote`] and a session
/// id, it creates sessions, names its session and checks the gateway's health.
///
/// [`Client::connect`](crate::Client::connect) uses it through
/// [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport); use it directly to
/// hold a session's id (to resume from another process, say) or to probe a gateway.
#[cfg(any(feature = "websocket", feature = "http", feature = "grpc"))]
pub trait GatewayTransport: Transport + Sized {
    /// The transport of the existing session `session_id` on `remote` (nothing is sent yet).
    fn new(remote: &Remote, session_id: impl Into<String>) -> Self;

    /// The session's id on the gateway.
    fn session_id(&self) -> &str;

    /// The gateway.
    fn remote(&self) -> &Remote;

    /// Create a session for `request` on `remote` (`POST /v1/sessions`, gRPC `CreateSession`);
    /// its id.
    fn create_session(
        remote: &Remote,
        request: &SessionRequest,
    ) -> impl Future<Output = Result<String>> + Send;

    /// `Ok` when the gateway is up and serving: `GET /health` (HTTP and WebSocket listener),
    /// `grpc.health.v1.Health/Check` (gRPC). Needs no token. A gateway that is shutting down
    /// or unreachable is [`GatewayErrorKind::Unavailable`](crate::GatewayErrorKind).
    fn health(remote: &Remote) -> impl Future<Output = Result<()>> + Send;

    /// Create a session for `request` and return its transport (reusing the connection where
    /// the wire can).
    fn open_session(
        remote: &Remote,
        request: &SessionRequest,
    ) -> impl Future<Output = Result<Self>> + Send {
        async move {
            let id = Self::create_session(remote, request).await?;
            Ok(Self::new(remote, id))
        }
    }
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

/// What [`FrameReceiver::recv`] gives when it does not fail.
///
/// Three outcomes, kept apart so that no caller confuses "one frame went wrong" with "the stream
/// is over":
///
/// | `recv()` returns | meaning | next `recv()` |
/// |---|---|---|
/// | `Ok(Received::Frame(f))` | the next frame, in order | the frame after it |
/// | `Ok(Received::Bad(e))` | one frame is lost or refused (e.g. [`Error::FrameTooLarge`](crate::Error::FrameTooLarge), a frame the gateway refused): the stream goes on | the frame after it |
/// | `Ok(Received::End)` | the peer ended; [`FrameReceiver::termination`] says how | `End` again |
/// | `Err(e)` | the transport failed (a broken pipe, a gateway that gave up); fatal | `End` |
#[derive(Debug)]
#[non_exhaustive]
pub enum Received {
    /// The next frame (one JSON document, without its newline).
    Frame(Bytes),
    /// A per-frame problem: this one frame is lost or was refused; later frames still come.
    Bad(crate::Error),
    /// The end of the stream: [`FrameReceiver::termination`] now says how the peer ended.
    End,
}

impl Received {
    /// The frame, if this is one.
    pub fn frame(self) -> Option<Bytes> {
        match self {
            Self::Frame(f) => Some(f),
            _ => None,
        }
    }

    /// Whether this is the end of the stream.
    pub fn is_end(&self) -> bool {
        matches!(self, Self::End)
    }
}

/// The receiving half of a connection.
pub trait FrameReceiver: Send + 'static {
    /// The next frame, a per-frame problem, or the end (see [`Received`]). `Err(e)` is a
    /// transport failure: the stream is over.
    ///
    /// Cancel-safe: dropping the future loses no frame.
    fn recv(&mut self) -> impl Future<Output = Result<Received>> + Send;

    /// How the peer ended, once [`recv`](Self::recv) has returned [`Received::End`] (or failed);
    /// `None` before.
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
