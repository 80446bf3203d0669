//! [`GatewayConfig`]: everything the gateway needs, built with setters over sane defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use claude_conduit::Options;

use crate::auth::Tokens;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8992";

/// Gateway settings. Start from [`GatewayConfig::new`] and chain setters.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) tokens: Tokens,
    pub(crate) options: Options,
    pub(crate) grace: Duration,
    pub(crate) max_sessions_per_token: usize,
    pub(crate) replay_frames: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) close_grace: Duration,
    /// Client frames per second per session and the burst allowed (`None`: unlimited).
    pub(crate) frame_rate: Option<(u32, u32)>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The smallest replay ring: clients ack every [`ACK_EVERY`](crate::session::ACK_EVERY) frames,
/// so a smaller ring could wait for an ack that never comes.
pub const MIN_REPLAY_FRAMES: usize = 64;

impl GatewayConfig {
    /// Defaults: listen on 127.0.0.1:8992, no tokens (every authenticated route answers 401),
    /// the `claude` found on the usual paths, 60 s grace after a dropped connection, 8 sessions
    /// per token, a replay ring of 4096 frames, 30 min idle timeout, ping every 20 s with a 10 s
    /// timeout.
    pub fn new() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8992)),
            tokens: Tokens::default(),
            options: Options::default(),
            grace: Duration::from_secs(60),
            max_sessions_per_token: 8,
            replay_frames: 4096,
            idle_timeout: Duration::from_secs(30 * 60),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(10),
            close_grace: Duration::from_secs(5),
            frame_rate: None,
        }
    }

    /// The address to listen on (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Accept this bearer token (may be called more than once).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens.add(token.into());
        self
    }

    /// Accept all of these tokens.
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// The CLI executable (otherwise the options template's, or the usual search).
    pub fn cli_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.options = self.options.to_builder().cli_path(path).build();
        self
    }

    /// The template every session's [`Options`] start from (CLI path, env, cwd, frame-size limit).
    /// Remote clients may set only a few fields on top (see [`crate::session::SessionRequest`]).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// How long a session survives without a connected client.
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// How many live sessions one token may hold (sessions whose CLI has exited do not count).
    pub fn max_sessions_per_token(mut self, n: usize) -> Self {
        self.max_sessions_per_token = n;
        self
    }

    /// Frames kept per session for resume (at least [`MIN_REPLAY_FRAMES`]). When the ring is
    /// full of frames the client has not acked, the CLI's output waits (backpressure).
    pub fn replay_frames(mut self, n: usize) -> Self {
        self.replay_frames = n.max(MIN_REPLAY_FRAMES);
        self
    }

    /// A session with no frame in either direction for this long is closed.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// WebSocket ping interval and pong timeout.
    pub fn ping(mut self, interval: Duration, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    /// How long closing a CLI waits before signalling it.
    pub fn close_grace(mut self, d: Duration) -> Self {
        self.close_grace = d;
        self
    }

    /// Limit each session to `per_second` client frames per second, with bursts of up to `burst`.
    /// Over the limit the gateway slows the client down (it stops reading its frames for a
    /// moment); nothing is dropped.
    pub fn frame_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.frame_rate = Some((per_second.max(1), burst.max(1)));
        self
    }

    /// Lower (or raise) the per-frame size limit for every session, in bytes: client frames over
    /// it are refused with a `frame_too_large` error and the session goes on; CLI frames over it
    /// reach the client as the SDK's `FrameTooLarge`.
    pub fn max_frame_bytes_limit(mut self, bytes: usize) -> Self {
        self.options = self.options.to_builder().max_frame_bytes(bytes).build();
        self
    }

    /// The configured listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The per-frame size limit (the SDK's one setting, from the options template).
    pub fn max_frame_bytes(&self) -> usize {
        self.options.max_frame_bytes()
    }
}
