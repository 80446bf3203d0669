//! `conduit serve`: run the gateway (HTTP + WebSocket, optionally gRPC and TLS, sessions of the
//! `claude` CLI).
//!
//! Every setting comes from its flag, else its `CONDUIT_*` environment variable, else the TOML
//! file given with `--config` ([`GatewayFile`]), else the default. Tokens: `--token-file` /
//! `CONDUIT_TOKEN_FILE`, else `CONDUIT_TOKENS` (comma-separated), else the file's `token_file`.
//! See `docs/GATEWAY.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use claude_conduit_gateway::GatewayConfig;
use claude_conduit_gateway::auth::Tokens;
use claude_conduit_gateway::config::GatewayFile;

use crate::exit::EXIT_FAILURE;

/// Arguments of `conduit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (flags and CONDUIT_* variables override its keys).
    #[arg(long, env = "CONDUIT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for HTTP and WebSocket [default: 127.0.0.1:8992, loopback only].
    #[arg(long, env = "CONDUIT_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Also serve gRPC on this address.
    #[arg(long, env = "CONDUIT_GRPC_LISTEN", value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// File with the accepted bearer tokens, one per line (`#` comments allowed). Without it,
    /// tokens come from `CONDUIT_TOKENS` (comma-separated), else the config file's `token_file`.
    #[arg(long, env = "CONDUIT_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS / wss:// (needs --tls-key).
    #[arg(long, env = "CONDUIT_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CONDUIT_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The `claude` executable [default: the usual search].
    #[arg(long, env = "CONDUIT_CLAUDE_CLI", value_name = "PATH")]
    cli: Option<PathBuf>,
    /// Seconds a session survives without a connected client [default: 60].
    #[arg(long, env = "CONDUIT_GRACE_SECS", value_name = "SECS")]
    grace_secs: Option<u64>,
    /// Seconds without traffic after which a session is closed [default: 1800].
    #[arg(long, env = "CONDUIT_IDLE_SECS", value_name = "SECS")]
    idle_secs: Option<u64>,
    /// Live sessions allowed per token [default: 8].
    #[arg(long, env = "CONDUIT_MAX_SESSIONS_PER_TOKEN", value_name = "N")]
    max_sessions_per_token: Option<usize>,
    /// Frames kept per session for resume [default: 4096].
    #[arg(long, env = "CONDUIT_REPLAY_FRAMES", value_name = "N")]
    replay_frames: Option<usize>,
    /// Per-frame size limit in MiB [default: 256].
    #[arg(long, env = "CONDUIT_MAX_FRAME_MIB", value_name = "MIB")]
    max_frame_mib: Option<usize>,
    /// Client frames per second per session [default: unlimited].
    #[arg(long, env = "CONDUIT_FRAME_RATE", value_name = "N")]
    frame_rate: Option<u32>,
    /// Burst of client frames allowed over --frame-rate [default: the rate].
    #[arg(long, env = "CONDUIT_FRAME_BURST", value_name = "N")]
    frame_burst: Option<u32>,
    /// Replay byte budget per session, in MiB [default: 32].
    #[arg(long, env = "CONDUIT_REPLAY_MIB", value_name = "MIB")]
    replay_mib: Option<usize>,
    /// Replay byte budget of the whole gateway, in MiB [default: 256].
    #[arg(long, env = "CONDUIT_REPLAY_TOTAL_MIB", value_name = "MIB")]
    replay_total_mib: Option<usize>,
    /// Seconds a client may take to send a request's headers [default: 10].
    #[arg(long, env = "CONDUIT_HEADER_TIMEOUT_SECS", value_name = "SECS")]
    header_timeout_secs: Option<u64>,
    /// Seconds a connection may stay open with no request in flight [default: 60].
    #[arg(long, env = "CONDUIT_KEEPALIVE_IDLE_SECS", value_name = "SECS")]
    keepalive_idle_secs: Option<u64>,
    /// Seconds a gRPC connection may take to start its first call [default: 10].
    #[arg(long, env = "CONDUIT_GRPC_FIRST_BYTES_SECS", value_name = "SECS")]
    grpc_first_bytes_secs: Option<u64>,
    /// Concurrent gRPC streams per connection [default: 64].
    #[arg(long, env = "CONDUIT_GRPC_MAX_STREAMS", value_name = "N")]
    grpc_max_streams: Option<u32>,
    /// Open connections, both listeners together [default: 1024].
    #[arg(long, env = "CONDUIT_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Policy: clients may set their cwd (and --add-dir) under this directory (repeatable).
    #[arg(
        long = "cwd-root",
        env = "CONDUIT_CWD_ROOTS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    cwd_roots: Vec<PathBuf>,
    /// Policy: permission modes clients may pick (repeatable) [default: default, acceptEdits,
    /// plan, dontAsk].
    #[arg(
        long = "permission-mode",
        env = "CONDUIT_PERMISSION_MODES",
        value_delimiter = ',',
        value_name = "MODE"
    )]
    permission_modes: Vec<String>,
    /// Policy: also allow this CLI flag, any value (repeatable; e.g. `settings`).
    #[arg(
        long = "allow-flag",
        env = "CONDUIT_ALLOW_FLAGS",
        value_delimiter = ',',
        value_name = "FLAG"
    )]
    allowed_flags: Vec<String>,
    /// Policy: always refuse this CLI flag (repeatable).
    #[arg(
        long = "deny-flag",
        env = "CONDUIT_DENY_FLAGS",
        value_delimiter = ',',
        value_name = "FLAG"
    )]
    denied_flags: Vec<String>,
    /// Policy: allow bypassPermissions and --dangerously-skip-permissions (dangerous).
    #[arg(long, env = "CONDUIT_ALLOW_DANGEROUSLY_SKIP_PERMISSIONS")]
    allow_dangerously_skip_permissions: bool,
    /// Policy: allow MCP servers other than in-process SDK ones.
    #[arg(long, env = "CONDUIT_ALLOW_EXTERNAL_MCP")]
    allow_external_mcp: bool,
    /// Policy: control_request subtypes clients may send (repeatable; replaces the default,
    /// those the SDK's typed methods send).
    #[arg(
        long = "control-subtype",
        env = "CONDUIT_CONTROL_SUBTYPES",
        value_delimiter = ',',
        value_name = "SUBTYPE"
    )]
    control_subtypes: Vec<String>,
    /// State directory: per-token work directories, conversation owners [default:
    /// $XDG_STATE_HOME/claude-conduit/gateway, else ~/.local/state/claude-conduit/gateway].
    #[arg(long, env = "CONDUIT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Force Claude Code's sandbox on every session (needs bwrap and socat on Linux).
    #[arg(long, env = "CONDUIT_SANDBOX")]
    sandbox: bool,
    /// Policy: a flag the options template sets that clients may replace (repeatable).
    #[arg(
        long = "overridable-flag",
        env = "CONDUIT_OVERRIDABLE_FLAGS",
        value_delimiter = ',',
        value_name = "FLAG"
    )]
    overridable_flags: Vec<String>,
    /// Plugins acting on every session (the gateway's own hooks and MCP tools; clients cannot
    /// switch them off): a directory of plugin directories, each with a `plugin.toml`. Watched:
    /// changed plugins are reloaded, new ones loaded, removed ones unloaded. Their
    /// configuration comes from `[plugins.NAME]` in --config. See docs/PLUGINS.md. (Not the
    /// claude CLI's `--plugin-dir`.)
    #[arg(long = "plugins", env = "CONDUIT_PLUGINS", value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    /// Serve GET /metrics without a bearer token (default: the token is required).
    #[arg(long, env = "CONDUIT_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Pass this process's OTEL_* variables and CLAUDE_CODE_ENABLE_TELEMETRY=1 to every
    /// session's CLI (its own telemetry joins the session's trace).
    #[arg(long, env = "CONDUIT_CLI_TELEMETRY")]
    cli_telemetry: bool,
    /// Record no metrics and serve no /metrics.
    #[arg(long, env = "CONDUIT_NO_METRICS")]
    no_metrics: bool,
    /// Seconds between metric snapshots; alert rules are evaluated at each [default: 10].
    #[arg(long, env = "CONDUIT_METRICS_INTERVAL_SECS", value_name = "SECS")]
    metrics_interval_secs: Option<u64>,
    /// Serve sessions through Redis Streams: this gateway runs no CLI, `conduit worker`s do
    /// (`redis://[user:password@]host:port`, `rediss://` for TLS; docs/SCALE.md).
    #[arg(long = "redis", env = "CONDUIT_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// Redis key prefix shared by a deployment's gateways and workers [default: conduit].
    #[arg(long, env = "CONDUIT_REDIS_PREFIX", value_name = "PREFIX")]
    redis_prefix: Option<String>,
    /// A session whose worker sent no heartbeat for this long is lost, in ms [default: 10000].
    #[arg(long, env = "CONDUIT_REDIS_HEARTBEAT_MS", value_name = "MS")]
    heartbeat_ms: Option<u64>,
    /// A session request a worker took but did not start for this long goes to another worker,
    /// in ms [default: 10000].
    #[arg(long, env = "CONDUIT_REDIS_CLAIM_IDLE_MS", value_name = "MS")]
    claim_idle_ms: Option<u64>,
    /// Seconds a session's Redis keys stay after it ended [default: 3600].
    #[arg(long, env = "CONDUIT_REDIS_SESSION_TTL_SECS", value_name = "SECS")]
    session_ttl_secs: Option<u64>,
    /// Seconds a gateway waits for a worker to start a session [default: 30].
    #[arg(long, env = "CONDUIT_REDIS_START_TIMEOUT_SECS", value_name = "SECS")]
    start_timeout_secs: Option<u64>,
}

pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("conduit serve: {message}");
    ExitCode::from(EXIT_FAILURE)
}

impl ServeArgs {
    /// Flags and environment over the file's keys.
    fn merge(self, mut f: GatewayFile) -> GatewayFile {
        macro_rules! over {
            ($($k:ident),*) => { $( if self.$k.is_some() { f.$k = self.$k; } )* };
        }
        over!(
            listen,
            grpc_listen,
            token_file,
            tls_cert,
            tls_key,
            cli,
            grace_secs,
            idle_secs,
            max_sessions_per_token,
            replay_frames,
            max_frame_mib,
            frame_rate,
            frame_burst,
            replay_mib,
            replay_total_mib,
            header_timeout_secs,
            keepalive_idle_secs,
            grpc_first_bytes_secs,
            grpc_max_streams,
            max_connections,
            state_dir,
            plugins_dir,
            metrics_interval_secs
        );
        if self.sandbox {
            f.sandbox = Some(true);
        }
        if self.metrics_public {
            f.metrics_public = Some(true);
        }
        if self.no_metrics {
            f.metrics = Some(false);
        }
        if self.cli_telemetry {
            f.cli_telemetry = Some(true);
        }
        let p = &mut f.policy;
        if !self.cwd_roots.is_empty() {
            p.cwd_roots = Some(self.cwd_roots);
        }
        if !self.permission_modes.is_empty() {
            p.permission_modes = Some(self.permission_modes);
        }
        if !self.allowed_flags.is_empty() {
            p.allowed_flags = Some(self.allowed_flags);
        }
        if !self.denied_flags.is_empty() {
            p.denied_flags = Some(self.denied_flags);
        }
        if self.allow_dangerously_skip_permissions {
            p.allow_dangerously_skip_permissions = Some(true);
        }
        if self.allow_external_mcp {
            p.allow_external_mcp = Some(true);
        }
        if !self.control_subtypes.is_empty() {
            p.control_subtypes = Some(self.control_subtypes);
        }
        if !self.overridable_flags.is_empty() {
            p.overridable_flags = Some(self.overridable_flags);
        }
        let r = &mut f.redis;
        macro_rules! over_redis {
            ($($k:ident => $f:ident),*) => { $( if self.$k.is_some() { r.$f = self.$k; } )* };
        }
        over_redis!(
            redis_url => url,
            redis_prefix => prefix,
            heartbeat_ms => heartbeat_ms,
            claim_idle_ms => claim_idle_ms,
            session_ttl_secs => session_ttl_secs,
            start_timeout_secs => start_timeout_secs
        );
        f
    }

    /// The configuration file (if any) under the flags and environment: what `conduit worker`
    /// reads too (one policy, two front doors).
    pub(crate) fn load(self) -> Result<(GatewayFile, Option<PathBuf>), String> {
        let file = match &self.config {
            Some(path) => GatewayFile::load(path).map_err(|e| e.to_string())?,
            None => GatewayFile::default(),
        };
        let path = self.config.clone();
        Ok((self.merge(file), path))
    }
}

/// `config` with the plugins of `file` (`--plugins DIR` / `plugins_dir`, configured from
/// `[plugins.NAME]`), loaded and watched; every problem is printed (as `conduit WHO: plugin: …`)
/// and ends the command.
pub(crate) async fn with_plugins(
    config: GatewayConfig,
    file: &GatewayFile,
    who: &str,
) -> Result<(GatewayConfig, Option<claude_conduit::plugin::Watcher>), ExitCode> {
    let Some(dir) = &file.plugins_dir else {
        if let Some(name) = file.plugins.keys().next() {
            return Err(fail(format!(
                "`[plugins.{name}]` is configured but no plugin directory is (--plugins DIR)"
            )));
        }
        return Ok((config, None));
    };
    let configs = file
        .plugins
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()));
    let (manager, watcher) = match crate::plugins::start(dir, configs).await {
        Ok(x) => x,
        Err(problems) => {
            for p in &problems {
                eprintln!("conduit {who}: plugin: {p}");
            }
            return Err(fail(format!(
                "{} plugin problem(s) in {}",
                problems.len(),
                dir.display()
            )));
        }
    };
    eprintln!(
        "conduit {who}: plugins from {}: {}",
        dir.display(),
        crate::plugins::summary(&manager)
    );
    Ok((config.plugins(manager), watcher))
}

/// Run the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> ExitCode {
    let file = match &args.config {
        Some(path) => match GatewayFile::load(path) {
            Ok(f) => f,
            Err(e) => return fail(e),
        },
        None => GatewayFile::default(),
    };
    // Tokens: a token file named by flag or environment, else CONDUIT_TOKENS, else the file's.
    let env_tokens = std::env::var("CONDUIT_TOKENS").unwrap_or_default();
    let use_env_tokens = args.token_file.is_none() && !env_tokens.trim().is_empty();
    let config_path = args.config.clone();
    let mut merged = args.merge(file);
    if use_env_tokens {
        merged.token_file = None;
    }
    if let Some(path) = &merged.token_file
        && let Err(message) = check_token_file(path)
    {
        return fail(message);
    }
    let mut config = match merged.to_config() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let via_redis = config
        .redis_settings()
        .map(|r| format!(" through redis (prefix {})", r.prefix_name()));
    if use_env_tokens {
        let mut tokens = match Tokens::from_comma_list(&env_tokens) {
            Ok(t) => t,
            Err(e) => return fail(format!("CONDUIT_TOKENS: {e}")),
        };
        // `[[tokens]]` tables with their own token_file come on top.
        tokens.extend(config.token_list().clone());
        config = config.tokens(tokens);
    }
    if let Some(path) = config_path {
        config = config.protect_file(path);
    }
    // Only the count is ever shown, never a token.
    let count = config.token_count();
    if count == 0 {
        return fail(
            "no tokens (give --token-file F, set CONDUIT_TOKENS, or set token_file in --config)",
        );
    }
    let scheme = if config.tls_files().is_some() {
        "https"
    } else {
        "http"
    };
    raise_nofile(config.max_connections_limit());
    let policy = config.current_policy().summary();
    let listen = config.listen_addr();
    if scheme == "http" && !listen.ip().is_loopback() {
        eprintln!(
            "conduit serve: WARNING: listening on {listen}, not a loopback address, without TLS: \
             bearer tokens and every frame cross the network in clear text (give --tls-cert and \
             --tls-key; see the security checklist in docs/GATEWAY.md)"
        );
    }
    let frame_mib = config.max_frame_bytes() as f64 / (1024.0 * 1024.0);
    if via_redis.is_some() && merged.plugins_dir.is_some() {
        return fail(
            "plugins act where the CLIs run: give --plugins to `conduit worker`, not to \
             `conduit serve --redis`",
        );
    }
    let (config, _watcher) = match with_plugins(config, &merged, "serve").await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let gateway = match claude_conduit_gateway::Gateway::bind(config).await {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let grpc_tls = if scheme == "https" { " (grpcs://)" } else { "" };
    let grpc = gateway
        .grpc_addr()
        .map_or(String::new(), |a| format!(", grpc on {a}{grpc_tls}"));
    let stop = shutdown_signal();
    eprintln!(
        "conduit serve: listening on {scheme}://{}{grpc}{} ({count} token(s); frames up to \
         {frame_mib} MiB; policy: {policy})",
        gateway.local_addr(),
        via_redis.unwrap_or_default()
    );
    match gateway.run(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Raise the open-file soft limit to the hard limit (each connection and each session's CLI
/// pipes take descriptors); warn when even that is below what `max_connections` may need.
pub(crate) fn raise_nofile(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                eprintln!("conduit serve: cannot raise RLIMIT_NOFILE from {soft}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => return,
    };
    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(64);
    if limit < wanted {
        eprintln!(
            "conduit serve: warning: the open-file limit ({limit}) is below max_connections \
             ({max_connections}) plus room for sessions; lower --max-connections or raise the limit"
        );
    }
}

/// The token file is readable and names at least one token; else what is wrong with it.
fn check_token_file(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    if matches!(Tokens::from_lines(&text), Ok(t) if t.is_empty()) {
        return Err(format!(
            "the token file {} holds no token (one per line; blank lines and `#` comments are \
             skipped)",
            path.display()
        ));
    }
    Ok(())
}

/// SIGINT or SIGTERM. The handlers are installed by this call, not on the first poll: call it
/// before saying that the process is ready, so that a signal sent right after that is a graceful
/// stop and never the default action (killed by the signal).
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut i), Ok(mut t)) => {
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
            }
            (Ok(mut s), Err(_)) | (Err(_), Ok(mut s)) => {
                s.recv().await;
            }
            // Neither can be watched: the process stops only when killed.
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}
