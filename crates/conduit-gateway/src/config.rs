//! [`GatewayConfig`]: everything the gateway needs, built with setters over sane defaults; and
//! [`GatewayFile`], the TOML file `conduit serve --config` reads.
//!
//! # The configuration file
//!
//! Every key is optional; unknown keys are an error. Relative paths are relative to the file's
//! directory. `conduit serve` takes each setting from its flag, else its `CONDUIT_*` environment
//! variable, else this file, else the default (see `docs/GATEWAY.md`).
//!
//! ```toml
//! listen = "127.0.0.1:8992"        # HTTP + WebSocket
//! grpc_listen = "127.0.0.1:8993"   # gRPC (off when absent)
//! token_file = "tokens.txt"        # bearer tokens, one per line
//! tls_cert = "cert.pem"            # PEM chain; with tls_key: https / wss / grpcs
//! tls_key = "key.pem"
//! cli = "/usr/local/bin/claude"
//! grace_secs = 60                  # a session without a client survives this long
//! idle_secs = 1800                 # a session without traffic is closed after this long
//! max_sessions_per_token = 8
//! replay_frames = 4096             # frames kept per session for resume
//! replay_mib = 32                  # replay byte budget per session
//! replay_total_mib = 256           # replay byte budget of the whole gateway
//! max_frame_mib = 256              # per-frame size limit
//! frame_rate = 200                 # client frames per second per session
//! frame_burst = 400
//! header_timeout_secs = 10         # a request's headers must come within this
//! keepalive_idle_secs = 60         # a connection with no request in flight is closed after this
//! grpc_first_bytes_secs = 10       # a gRPC connection must start a call within this
//! grpc_max_streams = 64            # concurrent gRPC streams per connection (at least 48)
//! max_connections = 1024           # open connections, both listeners together
//! state_dir = "/var/lib/conduit"   # per-token work dirs, conversation owners
//! sandbox = true                   # Claude Code's sandbox on every session
//! metrics = true                   # GET /metrics (Prometheus text), behind the bearer token
//! metrics_public = false           # true: /metrics without a token
//! metrics_interval_secs = 10       # metric snapshots; alert rules are evaluated at each
//! cli_telemetry = false            # true: OTEL_* and CLAUDE_CODE_ENABLE_TELEMETRY=1 to sessions
//!
//! [[alerts]]                       # see claude_conduit::telemetry::AlertRule
//! name = "many-sessions"
//! metric = "conduit_gateway_sessions"
//! above = 100
//! for_secs = 60
//!
//! [env]                            # extra variables for every session's CLI (never CONDUIT_*)
//! ANTHROPIC_BASE_URL = "https://llm-proxy.internal"
//!
//! [[tokens]]                       # a named token, optionally run as an OS user
//! name = "alice"
//! token_file = "alice.token"       # or: a `alice TOKEN` line in token_file
//! user = "alice"
//!
//! [policy]                         # what remote clients may set (see crate::policy)
//! cwd_roots = ["/srv/projects"]
//! permission_modes = ["default", "acceptEdits", "plan", "dontAsk"]
//! allowed_flags = ["settings"]
//! denied_flags = []
//! allow_dangerously_skip_permissions = false
//! allow_external_mcp = false
//! control_subtypes = ["initialize", "interrupt", "set_permission_mode"]  # default: the SDK's
//! overridable_flags = ["model"]    # template flags clients may replace
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_conduit::Options;
use claude_conduit::options::PermissionMode;
use serde::Deserialize;

use crate::auth::Tokens;
use crate::policy::Policy;

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
    /// Replay byte budget per session.
    pub(crate) replay_bytes: usize,
    /// Replay byte budget of the whole gateway.
    pub(crate) replay_bytes_total: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) close_grace: Duration,
    /// Client frames per second per session and the burst allowed (`None`: unlimited).
    pub(crate) frame_rate: Option<(u32, u32)>,
    /// What remote clients may set.
    pub(crate) policy: Policy,
    /// PEM certificate chain and private key: serve HTTPS / `wss://`.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// Where to serve gRPC as well (`None`: no gRPC listener).
    pub(crate) grpc_listen: Option<SocketAddr>,
    /// A request's headers must be complete within this (HTTP; see [`crate::serving`]).
    pub(crate) header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub(crate) keepalive_idle: Duration,
    /// A gRPC connection must start its first call within this.
    pub(crate) grpc_first_bytes_timeout: Duration,
    /// Concurrent gRPC streams per connection.
    pub(crate) grpc_max_streams: u32,
    /// Open connections, both listeners together.
    pub(crate) max_connections: usize,
    /// The state directory (`None`: the default, see [`GatewayConfig::state_dir`]).
    pub(crate) state_dir: Option<PathBuf>,
    /// Force Claude Code's sandbox on every session.
    pub(crate) sandbox: bool,
    /// Files sessions must not read (token files, the config file): `Read(//path)` deny rules
    /// when the sandbox is on.
    pub(crate) protected: Vec<PathBuf>,
    /// The environment the sessions' allowlist is taken from (`None`: this process's).
    pub(crate) environment: Option<EnvVars>,
    /// Plugins acting on every session (see [`crate::plugins`]).
    pub(crate) plugins: Option<claude_conduit::plugin::PluginManager>,
    /// Protocol extensions seeing every session's frames both ways (see [`crate::plugins`]).
    pub(crate) extensions: Option<claude_conduit::extension::Extensions>,
    /// `/metrics`, the collector and its alert rules.
    pub(crate) metrics: MetricsSettings,
    /// Pass the gateway's `OTEL_*` variables and `CLAUDE_CODE_ENABLE_TELEMETRY=1` to sessions.
    pub(crate) cli_telemetry: bool,
    /// `--redis`: sessions are served by `conduit worker`s (docs/SCALE.md).
    pub(crate) redis: Option<crate::scale::RedisSettings>,
}

/// The gateway's metrics settings ([`GatewayConfig::metrics`], [`GatewayConfig::metrics_public`],
/// [`GatewayConfig::alert`]).
#[derive(Debug, Clone)]
pub(crate) struct MetricsSettings {
    /// Install the recorder and serve `GET /metrics` (default true).
    pub(crate) enabled: bool,
    /// Serve `/metrics` without a token (default false).
    pub(crate) public: bool,
    /// Collector snapshot interval (alerts are evaluated at each snapshot).
    pub(crate) interval: Duration,
    /// Alert rules.
    pub(crate) alerts: Vec<claude_conduit::telemetry::AlertRule>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            public: false,
            interval: Duration::from_secs(10),
            alerts: Vec::new(),
        }
    }
}

/// Environment variables whose `Debug` shows the names only (values may be secrets).
#[derive(Clone, Default)]
pub(crate) struct EnvVars(pub(crate) Vec<(String, String)>);

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The default replay byte budget per session, in MiB.
pub const DEFAULT_REPLAY_MIB: usize = 32;
/// The default gateway-wide replay byte budget, in MiB.
pub const DEFAULT_REPLAY_TOTAL_MIB: usize = 256;

/// The smallest replay ring: clients ack every [`ACK_EVERY`](crate::session::ACK_EVERY) frames,
/// so a smaller ring could wait for an ack that never comes.
pub const MIN_REPLAY_FRAMES: usize = 64;

/// The fewest concurrent gRPC streams a connection may be limited to: the SDK multiplexes up to
/// 32 sessions over one connection (`transport::grpc::SESSIONS_PER_CONNECTION`), and a client at
/// the limit would wait for a stream to close before its next session could start.
pub const MIN_GRPC_STREAMS: u32 = 48;

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
            replay_bytes: DEFAULT_REPLAY_MIB << 20,
            replay_bytes_total: DEFAULT_REPLAY_TOTAL_MIB << 20,
            idle_timeout: Duration::from_secs(30 * 60),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(10),
            close_grace: Duration::from_secs(5),
            frame_rate: None,
            policy: Policy::default(),
            tls: None,
            grpc_listen: None,
            header_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(60),
            grpc_first_bytes_timeout: Duration::from_secs(10),
            grpc_max_streams: 64,
            max_connections: 1024,
            state_dir: None,
            sandbox: false,
            protected: Vec::new(),
            environment: None,
            plugins: None,
            extensions: None,
            metrics: MetricsSettings::default(),
            cli_telemetry: false,
            redis: None,
        }
    }

    /// Run these plugins on every session (see [`crate::plugins`]): their hook handlers answer
    /// the CLI's hooks through matchers the gateway adds itself, their MCP tools are on every
    /// session; clients cannot switch them off. Load them (and set their configuration) first.
    pub fn plugins(mut self, manager: claude_conduit::plugin::PluginManager) -> Self {
        self.plugins = Some(manager);
        self
    }

    /// Protocol extensions for every session's frames, both ways (see [`crate::plugins`]).
    pub fn extensions(mut self, extensions: claude_conduit::extension::Extensions) -> Self {
        self.extensions = Some(extensions).filter(|e| !e.is_empty());
        self
    }

    /// The plugin manager, when plugins are configured.
    pub fn plugin_manager(&self) -> Option<&claude_conduit::plugin::PluginManager> {
        self.plugins.as_ref()
    }

    /// Turn on the CLI's own telemetry in every session: the gateway's `OTEL_*` variables and
    /// `CLAUDE_CODE_ENABLE_TELEMETRY=1` go into its environment (default off: they may hold a
    /// collector's credentials, and a token holder can read its CLI's environment).
    pub fn cli_telemetry(mut self, on: bool) -> Self {
        self.cli_telemetry = on;
        self
    }

    /// Record metrics and serve `GET /metrics` (Prometheus text) on the HTTP listener
    /// (default true). Off: no recorder is installed, `/metrics` is 404.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics.enabled = on;
        self
    }

    /// Serve `/metrics` without a bearer token (default false: the same auth as every route).
    pub fn metrics_public(mut self, on: bool) -> Self {
        self.metrics.public = on;
        self
    }

    /// How often the collector snapshots the metrics and evaluates the alert rules (default
    /// 10 s).
    pub fn metrics_interval(mut self, d: Duration) -> Self {
        self.metrics.interval = d.max(Duration::from_millis(10));
        self
    }

    /// Add an alert rule (see [`claude_conduit::telemetry::AlertRule`]); firing and resolving
    /// are logged (target `claude_conduit::alert`) and set `conduit_alerts_firing{rule}`.
    pub fn alert(mut self, rule: claude_conduit::telemetry::AlertRule) -> Self {
        self.metrics.alerts.push(rule);
        self
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

    /// The replay byte budget of one session: when its ring holds this many bytes of frames the
    /// client has not acked, the CLI's output waits (backpressure; nothing is dropped). Clients
    /// ack every [`ACK_EVERY`](crate::session::ACK_EVERY) frames, so a session may always hold
    /// that many unacked frames, whatever their size.
    pub fn replay_bytes(mut self, bytes: usize) -> Self {
        self.replay_bytes = bytes;
        self
    }

    /// The replay byte budget of the whole gateway: the bytes every session's ring holds
    /// together. Over it, sessions' CLIs wait until clients ack (each session may still hold
    /// [`ACK_EVERY`](crate::session::ACK_EVERY) unacked frames, so one slow session never stalls
    /// the others for good).
    pub fn replay_bytes_total(mut self, bytes: usize) -> Self {
        self.replay_bytes_total = bytes;
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

    /// Also serve the gRPC service (`proto/conduit.proto`, see [`crate::grpc`]) on this address
    /// (port 0 picks a free port; [`Gateway::grpc_addr`](crate::Gateway::grpc_addr) tells which).
    pub fn grpc_listen(mut self, addr: SocketAddr) -> Self {
        self.grpc_listen = Some(addr);
        self
    }

    /// What remote clients may set on their sessions (default: [`Policy::default`], the safe
    /// policy described in [`crate::policy`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Serve HTTPS and `wss://` with this PEM certificate chain and PEM private key (loaded by
    /// [`Gateway::bind`](crate::Gateway::bind); see [`crate::tls`]).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert.into(), key.into()));
        self
    }

    /// How long a client may take to send a request's headers (HTTP), counted from its first
    /// byte, or from the connection's start for its first request. Default 10 s.
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d;
        self
    }

    /// How long a connection may stay open with no request in flight, between requests
    /// (default 60 s). Not the sessions' idle timeout ([`GatewayConfig::idle_timeout`]): an open
    /// SSE stream, gRPC stream or WebSocket is never closed by it.
    pub fn keepalive_idle(mut self, d: Duration) -> Self {
        self.keepalive_idle = d;
        self
    }

    /// How long a gRPC connection may take to start its first call (default 10 s).
    pub fn grpc_first_bytes_timeout(mut self, d: Duration) -> Self {
        self.grpc_first_bytes_timeout = d;
        self
    }

    /// Concurrent gRPC streams (calls) per connection (default 64, at least
    /// [`MIN_GRPC_STREAMS`]: smaller values are raised to it).
    pub fn grpc_max_streams(mut self, n: u32) -> Self {
        self.grpc_max_streams = n.max(MIN_GRPC_STREAMS);
        self
    }

    /// Open connections the gateway accepts, both listeners and WebSockets together (default
    /// 1024). Over it a new connection gets `503` (gRPC: `RESOURCE_EXHAUSTED`) and is closed.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Where the gateway keeps its state: one work directory per token (a session without a
    /// cwd starts in its token's) and the record of which token's sessions started which
    /// conversation. Default: `$XDG_STATE_HOME/claude-conduit/gateway`, else
    /// `~/.local/state/claude-conduit/gateway`. Created with mode 0700 when first needed; it
    /// need not exist before.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The state directory in force (the configured one, else the default).
    pub fn state_dir_path(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
    }

    /// Force Claude Code's own sandbox on every session (Bash runs in bubblewrap on Linux,
    /// reads of the state directory and of the [protected files](Self::protect_file) are
    /// denied); clients cannot change these settings. Needs `bwrap` and `socat` on Linux.
    pub fn sandbox(mut self, on: bool) -> Self {
        self.sandbox = on;
        self
    }

    /// The environment the sessions' CLIs take their allowlisted variables from (see
    /// [`crate::tenancy`]); default: this process's own, read when the gateway binds. For
    /// embedders that hold a curated environment (and tests).
    pub fn environment<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.environment = Some(EnvVars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ));
        self
    }

    /// A file sessions must not read (the gateway adds token files and its config file): with
    /// the [sandbox](Self::sandbox) on, it gets a `Read(//path)` deny rule.
    pub fn protect_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.protected.push(path.into());
        self
    }

    /// Serve sessions through Redis: this gateway runs no CLI, `conduit worker`s do
    /// (docs/SCALE.md).
    pub fn redis(mut self, settings: crate::scale::RedisSettings) -> Self {
        self.redis = Some(settings);
        self
    }

    /// The same configuration running its sessions locally (what a `conduit worker` does with
    /// the `[redis]` settings it shares with the gateways).
    pub fn without_redis(mut self) -> Self {
        self.redis = None;
        self
    }

    /// The Redis settings, when sessions go through Redis.
    pub fn redis_settings(&self) -> Option<&crate::scale::RedisSettings> {
        self.redis.as_ref()
    }

    /// Check what [`Gateway::bind`](crate::Gateway::bind) cannot start with: tokens shorter
    /// than [`MIN_TOKEN_BYTES`](crate::auth::MIN_TOKEN_BYTES) or badly named, an OS user that
    /// does not exist, the sandbox with `settings` allowed to clients.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tokens.validate().map_err(|e| ConfigError::Invalid {
            key: "tokens",
            message: e.0,
        })?;
        for i in 0..self.tokens.len() {
            let id = crate::auth::TokenId(i);
            if let Some(user) = self.tokens.user(id) {
                match nix::unistd::User::from_name(user) {
                    Ok(Some(_)) => {}
                    _ => {
                        return Err(ConfigError::Invalid {
                            key: "tokens.user",
                            message: format!(
                                "token {}: no OS user `{user}` on this host",
                                self.tokens.label(id)
                            ),
                        });
                    }
                }
            }
        }
        if self.sandbox {
            crate::tenancy::sandbox_settings(&self.options, &self.state_dir_path(), &[], &[])
                .map_err(|message| ConfigError::Invalid {
                    key: "sandbox",
                    message,
                })?;
        }
        if self.sandbox && self.policy.allows_flag("settings") {
            return Err(ConfigError::Invalid {
                key: "sandbox",
                message: "with the sandbox on, clients may not be allowed `settings` (it could \
                          turn the sandbox off): remove it from allowed_flags"
                    .into(),
            });
        }
        Ok(())
    }

    /// The accepted tokens (their `Debug` shows only the count).
    pub fn token_list(&self) -> &Tokens {
        &self.tokens
    }

    /// How many bearer tokens are accepted (never the tokens themselves).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The policy in force.
    pub fn current_policy(&self) -> &Policy {
        &self.policy
    }

    /// The TLS certificate and key files, when TLS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        self.tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// The connection cap ([`GatewayConfig::max_connections`]).
    pub fn max_connections_limit(&self) -> usize {
        self.max_connections
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

/// `$XDG_STATE_HOME/claude-conduit/gateway`, else `$HOME/.local/state/claude-conduit/gateway`
/// (else a relative `.conduit-state`, when neither variable is set).
pub fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        });
    match base {
        Some(b) => b.join("claude-conduit/gateway"),
        None => PathBuf::from(".conduit-state"),
    }
}

/// Why a configuration file was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`GatewayFile`] (unknown keys included).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A setting has a value that cannot work.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The key (`tls_cert`, `policy.permission_modes`, …).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The TOML configuration file of `conduit serve --config` (see the [module docs](self) for an
/// example). Every key is optional; unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewayFile {
    /// HTTP/WebSocket listen address.
    pub listen: Option<SocketAddr>,
    /// gRPC listen address.
    pub grpc_listen: Option<SocketAddr>,
    /// Bearer tokens, one per line.
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain (with `tls_key`: TLS on).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// The `claude` executable.
    pub cli: Option<PathBuf>,
    /// Seconds a session survives without a client.
    pub grace_secs: Option<u64>,
    /// Seconds without traffic after which a session is closed.
    pub idle_secs: Option<u64>,
    /// Live sessions per token.
    pub max_sessions_per_token: Option<usize>,
    /// Frames kept per session for resume.
    pub replay_frames: Option<usize>,
    /// Replay byte budget per session, in MiB.
    pub replay_mib: Option<usize>,
    /// Replay byte budget of the whole gateway, in MiB.
    pub replay_total_mib: Option<usize>,
    /// The per-frame size limit, in MiB.
    pub max_frame_mib: Option<usize>,
    /// Client frames per second per session.
    pub frame_rate: Option<u32>,
    /// Burst of client frames allowed over the rate (default: the rate).
    pub frame_burst: Option<u32>,
    /// Seconds a client may take to send a request's headers.
    pub header_timeout_secs: Option<u64>,
    /// Seconds a connection may stay open with no request in flight.
    pub keepalive_idle_secs: Option<u64>,
    /// Seconds a gRPC connection may take to start its first call.
    pub grpc_first_bytes_secs: Option<u64>,
    /// Concurrent gRPC streams per connection.
    pub grpc_max_streams: Option<u32>,
    /// Open connections, both listeners together.
    pub max_connections: Option<usize>,
    /// The state directory (per-token work directories, conversation owners).
    pub state_dir: Option<PathBuf>,
    /// Force Claude Code's sandbox on every session.
    pub sandbox: Option<bool>,
    /// Extra environment variables for every session's CLI (never `CONDUIT_*`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Named tokens (`[[tokens]]`), with the OS user their sessions run as.
    #[serde(default)]
    pub tokens: Vec<TokenFile>,
    /// What remote clients may set.
    #[serde(default)]
    pub policy: PolicyFile,
    /// The plugin directory (`conduit serve --plugins DIR`).
    pub plugins_dir: Option<PathBuf>,
    /// Plugin configurations, `[plugins.NAME]`, validated against each plugin's schema.
    #[serde(default)]
    pub plugins: BTreeMap<String, toml::Value>,
    /// Record metrics and serve `GET /metrics` (default true).
    pub metrics: Option<bool>,
    /// Serve `/metrics` without a token (default false).
    pub metrics_public: Option<bool>,
    /// Seconds between metric snapshots (alert evaluation), default 10.
    pub metrics_interval_secs: Option<u64>,
    /// Pass `OTEL_*` and `CLAUDE_CODE_ENABLE_TELEMETRY=1` to sessions (default false).
    pub cli_telemetry: Option<bool>,
    /// Alert rules (`[[alerts]]`, see [`claude_conduit::telemetry::AlertRule`]).
    #[serde(default)]
    pub alerts: Vec<claude_conduit::telemetry::AlertRule>,
    /// Scale-out through Redis (`[redis]`; docs/SCALE.md).
    #[serde(default)]
    pub redis: RedisFile,
}

/// The `[redis]` table of a [`GatewayFile`]: shared by `conduit serve --redis` and
/// `conduit worker`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisFile {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…`.
    pub url: Option<String>,
    /// Key prefix of the deployment.
    pub prefix: Option<String>,
    /// Heartbeat timeout of a worker's sessions, in milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// Idle time after which another worker claims a session request, in milliseconds.
    pub claim_idle_ms: Option<u64>,
    /// Seconds a session's keys stay after it ended.
    pub session_ttl_secs: Option<u64>,
    /// Seconds a gateway waits for a worker to start a session.
    pub start_timeout_secs: Option<u64>,
    /// `conduit worker`: its name.
    pub worker_name: Option<String>,
    /// `conduit worker`: sessions it runs at once.
    pub max_sessions: Option<usize>,
    /// `conduit worker`: serve `GET /metrics` (and `/health`) on this address.
    pub metrics_listen: Option<SocketAddr>,
}

impl RedisFile {
    /// The settings, when a URL is given.
    pub fn settings(&self) -> Option<crate::scale::RedisSettings> {
        let mut s = crate::scale::RedisSettings::new(self.url.clone()?);
        if let Some(p) = &self.prefix {
            s = s.prefix(p);
        }
        if let Some(ms) = self.heartbeat_ms {
            s = s.heartbeat(Duration::from_millis(ms));
        }
        if let Some(ms) = self.claim_idle_ms {
            s = s.claim_idle(Duration::from_millis(ms));
        }
        if let Some(secs) = self.session_ttl_secs {
            s = s.session_ttl(Duration::from_secs(secs));
        }
        if let Some(secs) = self.start_timeout_secs {
            s = s.start_timeout(Duration::from_secs(secs));
        }
        Some(s)
    }
}

/// One `[[tokens]]` table of a [`GatewayFile`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenFile {
    /// The token's name (its label in paths and logs).
    pub name: String,
    /// A file holding the token (its first line that is not blank or a `#` comment). Without
    /// it, `name` refers to a `NAME TOKEN` line of `token_file`.
    pub token_file: Option<PathBuf>,
    /// The OS user this token's sessions run as.
    pub user: Option<String>,
}

/// The `[policy]` table of a [`GatewayFile`] (see [`Policy`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyFile {
    /// Directories under which clients may set their working directory and `--add-dir`.
    pub cwd_roots: Option<Vec<PathBuf>>,
    /// Permission modes clients may pick (wire names: `default`, `acceptEdits`, `plan`,
    /// `dontAsk`, `auto`).
    pub permission_modes: Option<Vec<String>>,
    /// Extra flags allowed with any value.
    pub allowed_flags: Option<Vec<String>>,
    /// Flags always refused.
    pub denied_flags: Option<Vec<String>>,
    /// Allow `bypassPermissions` and `--dangerously-skip-permissions`.
    pub allow_dangerously_skip_permissions: Option<bool>,
    /// Allow MCP servers other than in-process SDK ones.
    pub allow_external_mcp: Option<bool>,
    /// The `control_request` subtypes clients may send (default: those the SDK's typed methods
    /// send; see [`crate::control_policy`]).
    pub control_subtypes: Option<Vec<String>>,
    /// Flags the options template sets that clients may replace.
    pub overridable_flags: Option<Vec<String>>,
}

impl GatewayFile {
    /// Read and parse `path`; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut file = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut file.token_file,
            &mut file.tls_cert,
            &mut file.tls_key,
            &mut file.cli,
            &mut file.state_dir,
            &mut file.plugins_dir,
        ]
        .into_iter()
        .chain(file.tokens.iter_mut().map(|t| &mut t.token_file))
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        for root in file.policy.cwd_roots.iter_mut().flatten() {
            if root.is_relative() {
                *root = dir.join(&*root);
            }
        }
        Ok(file)
    }

    /// A [`GatewayConfig`] with these keys over the defaults. Reads the token file; checks that
    /// `tls_cert` and `tls_key` come together and that the policy's permission modes exist.
    pub fn to_config(&self) -> Result<GatewayConfig, ConfigError> {
        let mut c = GatewayConfig::new();
        if let Some(a) = self.listen {
            c = c.listen(a);
        }
        if let Some(a) = self.grpc_listen {
            c = c.grpc_listen(a);
        }
        if let Some(path) = &self.token_file {
            let tokens = Tokens::from_file(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            c = c.tokens(tokens).protect_file(path);
        }
        for t in &self.tokens {
            match &t.token_file {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    let token = text
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty() && !l.starts_with('#'))
                        .ok_or_else(|| ConfigError::Invalid {
                            key: "tokens.token_file",
                            message: format!("{} holds no token", path.display()),
                        })?;
                    c.tokens.add_named(&t.name, token, t.user.clone());
                    c = c.protect_file(path);
                }
                None => {
                    let user = t.user.as_deref().ok_or_else(|| ConfigError::Invalid {
                        key: "tokens",
                        message: format!(
                            "[[tokens]] `{}` needs a token_file or a user (for a `{}  TOKEN` \
                             line of token_file)",
                            t.name, t.name
                        ),
                    })?;
                    if !c.tokens.set_user(&t.name, user) {
                        return Err(ConfigError::Invalid {
                            key: "tokens",
                            message: format!(
                                "[[tokens]] `{}` has no token_file and token_file has no token \
                                 named `{}`",
                                t.name, t.name
                            ),
                        });
                    }
                }
            }
        }
        if let Some(dir) = &self.state_dir {
            c = c.state_dir(dir);
        }
        if let Some(r) = self.redis.settings() {
            c = c.redis(r);
        }
        if let Some(on) = self.sandbox {
            c = c.sandbox(on);
        }
        if !self.env.is_empty() {
            let mut b = c.options.to_builder();
            for (k, v) in &self.env {
                if k.starts_with("CONDUIT_") || k.is_empty() || k.contains('=') {
                    return Err(ConfigError::Invalid {
                        key: "env",
                        message: format!(
                            "`{k}`: sessions never get CONDUIT_* variables (and a name has no `=`)"
                        ),
                    });
                }
                b = b.env(k, v);
            }
            c.options = b.build();
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => c = c.tls(cert, key),
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    key: "tls_key",
                    message:
                        "a certificate (tls_cert, --tls-cert) needs its key (tls_key, --tls-key)"
                            .into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "tls_cert",
                    message:
                        "a key (tls_key, --tls-key) needs its certificate (tls_cert, --tls-cert)"
                            .into(),
                });
            }
        }
        if let Some(cli) = &self.cli {
            c = c.cli_path(cli);
        }
        if let Some(s) = self.grace_secs {
            c = c.grace_period(Duration::from_secs(s));
        }
        if let Some(s) = self.idle_secs {
            c = c.idle_timeout(Duration::from_secs(s));
        }
        if let Some(n) = self.max_sessions_per_token {
            c = c.max_sessions_per_token(n);
        }
        if let Some(n) = self.replay_frames {
            c = c.replay_frames(n);
        }
        if let Some(s) = self.header_timeout_secs {
            c = c.header_timeout(Duration::from_secs(s));
        }
        if let Some(s) = self.keepalive_idle_secs {
            c = c.keepalive_idle(Duration::from_secs(s));
        }
        if let Some(s) = self.grpc_first_bytes_secs {
            c = c.grpc_first_bytes_timeout(Duration::from_secs(s));
        }
        if let Some(n) = self.grpc_max_streams {
            c = c.grpc_max_streams(n);
        }
        if let Some(n) = self.max_connections {
            c = c.max_connections(n);
        }
        if let Some(on) = self.metrics {
            c = c.metrics(on);
        }
        if let Some(on) = self.cli_telemetry {
            c = c.cli_telemetry(on);
        }
        if let Some(on) = self.metrics_public {
            c = c.metrics_public(on);
        }
        if let Some(s) = self.metrics_interval_secs {
            c = c.metrics_interval(Duration::from_secs(s));
        }
        for rule in &self.alerts {
            rule.validate().map_err(|message| ConfigError::Invalid {
                key: "alerts",
                message,
            })?;
            c = c.alert(rule.clone());
        }
        if let Some(mib) = self.replay_mib {
            c = c.replay_bytes(mib_bytes("replay_mib", mib)?);
        }
        if let Some(mib) = self.replay_total_mib {
            c = c.replay_bytes_total(mib_bytes("replay_total_mib", mib)?);
        }
        if let Some(mib) = self.max_frame_mib {
            let bytes = mib
                .checked_mul(1024 * 1024)
                .filter(|b| *b > 0)
                .ok_or_else(|| ConfigError::Invalid {
                    key: "max_frame_mib",
                    message: format!("{mib} MiB is not a usable frame-size limit"),
                })?;
            c = c.max_frame_bytes_limit(bytes);
        }
        match (self.frame_rate, self.frame_burst) {
            (Some(rate), burst) => c = c.frame_rate_limit(rate, burst.unwrap_or(rate)),
            (None, None) => {}
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "frame_burst",
                    message: "frame_burst needs frame_rate".into(),
                });
            }
        }
        let policy =
            self.policy
                .apply(Policy::default())
                .map_err(|message| ConfigError::Invalid {
                    key: "policy.permission_modes",
                    message,
                })?;
        Ok(c.policy(policy))
    }

    /// Parse TOML text (paths are left as written).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

/// `mib` MiB in bytes, or why that is not a usable size.
fn mib_bytes(key: &'static str, mib: usize) -> Result<usize, ConfigError> {
    mib.checked_mul(1024 * 1024)
        .filter(|b| *b > 0)
        .ok_or_else(|| ConfigError::Invalid {
            key,
            message: format!("{mib} MiB is not a usable size"),
        })
}

impl PolicyFile {
    /// Apply the keys that are set over `policy`.
    pub fn apply(&self, mut policy: Policy) -> Result<Policy, String> {
        if let Some(roots) = &self.cwd_roots {
            policy = policy.cwd_roots(roots.iter().cloned());
        }
        if let Some(modes) = &self.permission_modes {
            let modes = modes
                .iter()
                .map(|m| m.parse::<PermissionMode>().map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            policy = policy.permission_modes(modes);
        }
        for f in self.allowed_flags.iter().flatten() {
            policy = policy.allow_flag(f.as_str());
        }
        for f in self.denied_flags.iter().flatten() {
            policy = policy.deny_flag(f.as_str());
        }
        if let Some(on) = self.allow_dangerously_skip_permissions {
            policy = policy.allow_dangerously_skip_permissions(on);
        }
        if let Some(on) = self.allow_external_mcp {
            policy = policy.allow_external_mcp(on);
        }
        if let Some(list) = &self.control_subtypes {
            policy = policy.control_subtypes(list.iter().cloned());
        }
        for f in self.overridable_flags.iter().flatten() {
            policy = policy.overridable_flag(f.as_str());
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_streams_per_connection_never_go_under_what_a_pooled_client_needs() {
        assert_eq!(GatewayConfig::new().grpc_max_streams, 64);
        assert_eq!(
            GatewayConfig::new().grpc_max_streams(1).grpc_max_streams,
            MIN_GRPC_STREAMS
        );
        assert_eq!(
            GatewayConfig::new().grpc_max_streams(500).grpc_max_streams,
            500
        );
        // 32 sessions of one client process share a connection, with room for unary calls.
        assert!(
            MIN_GRPC_STREAMS as usize > claude_conduit::transport::grpc::SESSIONS_PER_CONNECTION
        );
    }

    #[test]
    fn parses_every_key_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:9000"
grpc_listen = "127.0.0.1:9001"
token_file = "tokens.txt"
tls_cert = "/etc/cert.pem"
tls_key = "key.pem"
cli = "bin/claude"
grace_secs = 5
idle_secs = 50
max_sessions_per_token = 2
replay_frames = 128
max_frame_mib = 4
frame_rate = 10
frame_burst = 20

[policy]
cwd_roots = ["projects", "/srv"]
permission_modes = ["plan"]
allowed_flags = ["settings"]
denied_flags = ["model"]
allow_dangerously_skip_permissions = false
allow_external_mcp = true
"#,
        )
        .unwrap();
        let f = GatewayFile::load(&path).unwrap();
        assert_eq!(f.listen, Some(SocketAddr::from(([127, 0, 0, 1], 9000))));
        assert_eq!(f.token_file, Some(dir.path().join("tokens.txt")));
        assert_eq!(f.tls_cert, Some(PathBuf::from("/etc/cert.pem")));
        assert_eq!(f.cli, Some(dir.path().join("bin/claude")));
        assert_eq!(f.max_frame_mib, Some(4));
        assert_eq!(f.frame_burst, Some(20));
        assert_eq!(
            f.policy.cwd_roots,
            Some(vec![dir.path().join("projects"), PathBuf::from("/srv")])
        );
        let p = f.policy.apply(Policy::default()).unwrap();
        assert!(p.check_flag("settings", Some("{}")).is_ok());
        assert!(p.check_flag("model", Some("m")).is_err());
        assert!(p.check_flag("permission-mode", Some("default")).is_err());
        assert!(p.check_flag("permission-mode", Some("plan")).is_ok());
        assert!(p.check_flag("mcp-config", Some("/x.json")).is_ok());
    }

    #[test]
    fn isolation_keys_named_tokens_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let long = "0123456789abcdef-token";
        std::fs::write(dir.path().join("tokens.txt"), format!("bob {long}-b\n")).unwrap();
        std::fs::write(
            dir.path().join("alice.token"),
            format!("# alice\n{long}-a\n"),
        )
        .unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            r#"
token_file = "tokens.txt"
state_dir = "state"
sandbox = true

[env]
ANTHROPIC_BASE_URL = "http://proxy"

[[tokens]]
name = "alice"
token_file = "alice.token"

[[tokens]]
name = "bob"
user = "root"

[policy]
overridable_flags = ["model"]
"#,
        )
        .unwrap();
        let f = GatewayFile::load(&path).unwrap();
        assert_eq!(f.state_dir, Some(dir.path().join("state")));
        let c = f.to_config().unwrap();
        c.validate().unwrap();
        let t = c.token_list();
        assert_eq!(t.len(), 2);
        let bob = t
            .check(Some(format!("Bearer {long}-b").as_bytes()))
            .unwrap();
        let alice = t
            .check(Some(format!("Bearer {long}-a").as_bytes()))
            .unwrap();
        assert_eq!((t.label(bob).as_str(), t.user(bob)), ("bob", Some("root")));
        assert_eq!((t.label(alice).as_str(), t.user(alice)), ("alice", None));
        assert_eq!(c.state_dir_path(), dir.path().join("state"));
        assert!(c.sandbox);
        assert_eq!(
            c.protected,
            vec![
                dir.path().join("tokens.txt"),
                dir.path().join("alice.token")
            ]
        );
        let env = c.options.env_changes();
        assert!(env.contains(&("ANTHROPIC_BASE_URL".into(), Some("http://proxy".into()))));

        let bad = GatewayFile::parse("[env]\nCONDUIT_TOKENS = \"x\"\n").unwrap();
        assert!(
            bad.to_config()
                .unwrap_err()
                .to_string()
                .contains("CONDUIT_")
        );
        let unknown =
            GatewayFile::parse("[[tokens]]\nname = \"carol\"\nuser = \"root\"\n").unwrap();
        assert!(
            unknown
                .to_config()
                .unwrap_err()
                .to_string()
                .contains("carol")
        );
        let settings =
            GatewayFile::parse("sandbox = true\n[policy]\nallowed_flags = [\"settings\"]\n")
                .unwrap();
        let e = settings
            .to_config()
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("sandbox"), "{e}");
        let nobody = GatewayConfig::new().token(format!("{long}-x")).tokens({
            let mut t = Tokens::default();
            t.add_named(
                "x",
                &format!("{long}-x"),
                Some("no-such-user-conduit".into()),
            );
            t
        });
        assert!(
            nobody
                .validate()
                .unwrap_err()
                .to_string()
                .contains("no-such-user-conduit")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let e = GatewayFile::parse("listen = \"127.0.0.1:1\"\nbogus_key = 1\n").unwrap_err();
        assert!(e.contains("bogus_key"), "{e}");
        let e = GatewayFile::parse("[policy]\nroots = []\n").unwrap_err();
        assert!(e.contains("roots"), "{e}");
        let e = GatewayFile::parse("listen = \"nowhere\"\n").unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let f = GatewayFile::parse("[policy]\npermission_modes = [\"sometimes\"]\n").unwrap();
        assert!(
            f.policy
                .apply(Policy::default())
                .unwrap_err()
                .contains("sometimes")
        );
        let e = GatewayFile::load(Path::new("/nonexistent/gw.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/gw.toml"));
        assert_eq!(GatewayFile::parse("").unwrap(), GatewayFile::default());
    }
}
