//! The harness the gateway's integration tests share: the real gateway on 127.0.0.1 (free
//! ports, HTTP/WebSocket and gRPC listeners) with `mock-claude` as the CLI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use claude_conduit::Options;
use claude_conduit_gateway::GatewayConfig;
use claude_conduit_gateway::auth::TokenId;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-1-0123456789";
pub const OTHER: &str = "test-token-2-0123456789";
/// Deadline that turns a hang into a failure.
pub const T: Duration = Duration::from_secs(60);

/// The mock CLI binary, next to this test's target directory (built if missing: cargo exposes
/// `CARGO_BIN_EXE_*` only to the package that owns the binary).
pub fn mock_claude() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    let bin = target_dir.join("mock-claude");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "claude-conduit-testkit",
                "--bin",
                "mock-claude",
            ])
            .status()
            .expect("cargo build mock-claude");
        assert!(status.success());
    }
    bin
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Both listeners on free loopback ports, the two tokens, mock-claude with `knobs` in its
/// environment.
pub fn config(knobs: &[(&str, &str)]) -> GatewayConfig {
    let mut o = Options::builder().cli_path(mock_claude());
    for (k, v) in knobs {
        o = o.env(*k, *v);
    }
    GatewayConfig::new()
        .listen(loopback())
        .grpc_listen(loopback())
        .token(TOKEN)
        .token(OTHER)
        .options(o.build())
        .close_grace(Duration::from_secs(2))
        .state_dir(state_dir())
}

/// The tests' state directory (per-token work directories, conversation owners): under cargo's
/// scratch space, never the user's own.
pub fn state_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gateway-state")
}

/// A gateway serving in the background.
pub struct Running {
    pub addr: SocketAddr,
    grpc: Option<SocketAddr>,
    pub manager: claude_conduit_gateway::SessionManager,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), claude_conduit_gateway::GatewayError>>,
    /// `--redis` deployments: the server and the workers (see [`start_scaled`]).
    pub scaled: Option<Scaled>,
}

/// The Redis side of a `conduit serve --redis` deployment under test.
pub struct Scaled {
    pub redis: claude_conduit_testkit::RedisServer,
    pub workers: Vec<RunningWorker>,
}

/// A `conduit worker` running in this process.
pub struct RunningWorker {
    pub name: String,
    pub manager: claude_conduit_gateway::SessionManager,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), claude_conduit_gateway::GatewayError>>,
}

impl RunningWorker {
    /// Stop it gracefully (its CLIs are closed) and wait, bounded.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(T, self.task)
            .await
            .expect("worker stops in time")
            .expect("join")
            .expect("worker ok");
    }

    /// Stop it abruptly, like SIGKILL of its process: its tasks stop at once; its CLIs get
    /// end of input (this test process keeps them as children, the kernel does not kill them).
    pub fn abort(mut self) {
        self.stop.take();
        self.task.abort();
    }
}

/// Short timeouts for tests (a lost worker shows within about a second).
pub fn redis_settings(url: &str) -> claude_conduit_gateway::scale::RedisSettings {
    claude_conduit_gateway::scale::RedisSettings::new(url)
        .heartbeat(Duration::from_millis(1000))
        .claim_idle(Duration::from_millis(1000))
        .start_timeout(Duration::from_secs(20))
}

/// A worker named `name` with `config` (its CLI template and policy) on the Redis at `url`.
pub fn spawn_worker(config: GatewayConfig, url: &str, name: &str, max: usize) -> RunningWorker {
    let worker = claude_conduit_gateway::scale::Worker::new(
        config.without_redis(),
        claude_conduit_gateway::scale::WorkerSettings {
            redis: redis_settings(url),
            name: name.to_owned(),
            max_sessions: max,
        },
    )
    .expect("worker");
    let manager = worker.manager().clone();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    RunningWorker {
        name: name.to_owned(),
        manager,
        stop: Some(stop),
        task,
    }
}

/// `config` served through a real redis-server: `workers` workers run the CLIs, the gateway
/// runs none (`conduit serve --redis`).
pub async fn start_scaled_with(config: GatewayConfig, workers: usize) -> Running {
    let redis = claude_conduit_testkit::RedisServer::start().expect("redis-server");
    let url = redis.url();
    let workers = (0..workers)
        .map(|i| spawn_worker(config.clone(), &url, &format!("w{i}"), 256))
        .collect();
    let mut running = start(config.redis(redis_settings(&url))).await;
    running.scaled = Some(Scaled { redis, workers });
    running
}

/// [`start_scaled_with`] one worker.
pub async fn start_scaled(config: GatewayConfig) -> Running {
    start_scaled_with(config, 1).await
}

impl Running {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The gRPC listener's address.
    pub fn grpc(&self) -> SocketAddr {
        self.grpc.expect("a gRPC listener")
    }

    /// `grpc://addr`.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.grpc())
    }

    /// The WebSocket listener as an SDK [`Remote`] with `TOKEN`.
    pub fn ws_remote(&self) -> claude_conduit::remote::Remote {
        claude_conduit::remote::Remote::parse(&format!("ws://{}", self.addr), TOKEN).unwrap()
    }

    /// The gRPC listener as an SDK [`Remote`] with `TOKEN`.
    pub fn grpc_remote(&self) -> claude_conduit::remote::Remote {
        claude_conduit::remote::Remote::parse(&self.grpc_url(), TOKEN).unwrap()
    }

    /// Stop serving and wait (bounded) until every CLI is closed.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(T, self.task)
            .await
            .expect("shutdown in time")
            .expect("join")
            .expect("serve ok");
        if let Some(s) = self.scaled.take() {
            for w in s.workers {
                w.stop().await;
            }
        }
    }

    /// The only session of `TOKEN`.
    pub fn only_session(&self) -> claude_conduit_gateway::SessionInfo {
        let list = self.manager.list(TokenId(0));
        assert_eq!(list.len(), 1, "{list:?}");
        list.into_iter().next().unwrap()
    }
}

/// Send `prompt` and collect the turn's messages (none may be an error), in time.
pub async fn turn(client: &claude_conduit::Client, prompt: &str) -> Vec<claude_conduit::Message> {
    client.send(prompt).await.expect("send");
    response(client).await
}

/// Collect the messages of the turn under way (none may be an error), in time.
pub async fn response(client: &claude_conduit::Client) -> Vec<claude_conduit::Message> {
    use futures::StreamExt;
    tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
        .await
        .expect("in time")
        .into_iter()
        .map(|m| m.expect("no errors"))
        .collect()
}

/// The mock's numbers of the assistant messages (the tail of their uuids).
pub fn assistant_seqs(items: &[claude_conduit::Message]) -> Vec<u64> {
    items
        .iter()
        .filter(|m| m.as_assistant().is_some())
        .map(|m| {
            let uuid = m.uuid().unwrap_or_default();
            u64::from_str_radix(&uuid[uuid.len().saturating_sub(12)..], 16).unwrap_or(0)
        })
        .collect()
}

pub async fn start(config: GatewayConfig) -> Running {
    let gateway = claude_conduit_gateway::Gateway::bind(config)
        .await
        .expect("bind");
    let addr = gateway.local_addr();
    let grpc = gateway.grpc_addr();
    let manager = gateway.manager();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(gateway.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        grpc,
        manager,
        stop: Some(stop),
        task,
        scaled: None,
    }
}

/// A `--cli` wrapper that appends everything the CLI reads on stdin to `dir/stdin.log`, then
/// runs `cli` with the same arguments (the attack's recording wrapper).
pub fn recording_cli(dir: &std::path::Path, cli: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("claude-recording");
    let log = dir.join("stdin.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntee -a '{}' | '{}' \"$@\"\n",
            log.display(),
            cli.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// What the CLI behind [`recording_cli`] read so far.
pub fn stdin_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("stdin.log")).unwrap_or_default()
}

/// `POST /v1/sessions` with `body` and `token`, on a raw connection: status and JSON reply.
pub async fn post_session(
    addr: SocketAddr,
    token: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let req = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http reply");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Established TCP connections whose local port is `port` (the gateway's side of its clients'
/// connections), from `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn connections_to(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "01"
                })
                .count()
        })
        .sum()
}

/// Wait (bounded) until `f` holds.
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
