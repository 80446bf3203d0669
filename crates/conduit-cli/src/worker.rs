//! `conduit worker`: run the CLIs of sessions taken from Redis Streams (docs/SCALE.md). The
//! same configuration file, policy flags and environment rule as `conduit serve` (one policy,
//! two front doors); the listener and token settings do not apply.

use std::process::ExitCode;

use claude_conduit_gateway::scale::{Worker, WorkerSettings};

use crate::serve::{ServeArgs, fail, raise_nofile, shutdown_signal};

/// Arguments of `conduit worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// This worker's name (heartbeats, `session … lost: worker NAME stopped`) [default:
    /// hostname-pid].
    #[arg(long, env = "CONDUIT_WORKER_NAME", value_name = "NAME")]
    name: Option<String>,
    /// Sessions this worker runs at once [default: 64].
    #[arg(long, env = "CONDUIT_WORKER_MAX_SESSIONS", value_name = "N")]
    max_sessions: Option<usize>,
    /// Serve GET /metrics (and /health) on this address, behind the --token/--token-file
    /// tokens unless --metrics-public [default: no listener].
    #[arg(long, env = "CONDUIT_WORKER_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// `conduit serve`'s settings: --redis (required), --config, --cli, the policy flags, the
    /// replay and frame limits, the state directory.
    #[command(flatten)]
    serve: ServeArgs,
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Run the worker until Ctrl-C or SIGTERM (then every CLI is closed).
pub async fn run(args: WorkerArgs) -> ExitCode {
    let (file, config_path) = match args.serve.load() {
        Ok(f) => f,
        Err(e) => return fail(format!("worker: {e}")),
    };
    let Some(redis) = file.redis.settings() else {
        return fail(
            "worker: needs --redis URL (or CONDUIT_REDIS_URL, or [redis] url in --config)",
        );
    };
    let name = args
        .name
        .or_else(|| file.redis.worker_name.clone())
        .unwrap_or_else(default_name);
    let max_sessions = args
        .max_sessions
        .or(file.redis.max_sessions)
        .unwrap_or(64)
        .max(1);
    // The worker's own sessions are local: the config's `[redis]` says where to take them from.
    let mut config = match file.to_config() {
        Ok(c) => c,
        Err(e) => return fail(format!("worker: {e}")),
    };
    if let Some(path) = config_path {
        config = config.protect_file(path);
    }
    // Plugins act on the sessions of this worker (their CLIs run here).
    let (config, _watcher) = match crate::serve::with_plugins(config, &file, "worker").await {
        Ok(x) => x,
        Err(code) => return code,
    };
    raise_nofile(max_sessions.saturating_mul(4));
    let settings = WorkerSettings {
        redis,
        name: name.clone(),
        max_sessions,
    };
    let prefix = settings.redis.prefix_name().to_owned();
    let metrics_listen = args.metrics_listen.or(file.redis.metrics_listen);
    let worker = match Worker::new(config.without_redis(), settings) {
        Ok(w) => w,
        Err(e) => return fail(format!("worker: {e}")),
    };
    // Its metrics on a listener of their own, when asked for (`serve_metrics` installs the
    // recorder before the worker takes a session: its handles register at first use).
    let (metrics, metrics_at) = match metrics_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                let at = l
                    .local_addr()
                    .map(|a| format!("; metrics on http://{a}/metrics"))
                    .unwrap_or_default();
                let serving = claude_conduit_gateway::server::serve_metrics(
                    worker.manager().clone(),
                    l,
                    std::future::pending(),
                );
                (Some(tokio::spawn(serving)), at)
            }
            Err(e) => return fail(format!("worker: cannot listen on {addr}: {e}")),
        },
        None => (None, String::new()),
    };
    let stop = shutdown_signal();
    eprintln!(
        "conduit worker: {name} serving up to {max_sessions} session(s) from redis (prefix {prefix}){metrics_at}"
    );
    let r = worker.run(stop).await;
    if let Some(m) = metrics {
        m.abort();
    }
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("worker: {e}")),
    }
}
