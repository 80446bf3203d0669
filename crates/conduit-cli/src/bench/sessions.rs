//! `conduit bench sessions`: many idle sessions on one gateway.
//!
//! The gateway is `conduit serve` in a child process (so its memory is its own), on 127.0.0.1,
//! with this executable as its CLI through a `mock-claude` link. The bench raises its
//! `RLIMIT_NOFILE` soft limit to the hard limit (the gateway inherits it), reads the gateway's
//! `VmRSS`, opens `--count` sessions (`--concurrency` at a time; each is `POST /v1/sessions`, the
//! stream connection and the `initialize` round trip through it, timed), holds them all idle,
//! waits a second, reads `VmRSS` again and reports the difference per session (the CLI
//! processes are not in it: they are the gateway's children, not part of its RSS), and the
//! connect time's p50 and p99.

use std::io::{BufRead, BufReader};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use claude_conduit::{Client, Options};
use futures::StreamExt;
use serde_json::json;

/// Gateway memory per idle session the issue sets as a target, in KiB.
const RSS_PER_SESSION_TARGET_KB: f64 = 64.0;

/// Arguments of `conduit bench sessions`.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionsArgs {
    /// Sessions to open and hold.
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true,
          value_parser = crate::args::number::<usize>(1..=1_000_000))]
    count: usize,
    /// The transport: ws, http or grpc.
    #[arg(long, default_value = "ws", value_parser = ["ws", "http", "grpc"])]
    via: String,
    /// Sessions being opened at the same time.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true,
          value_parser = crate::args::number::<usize>(1..=10_000))]
    concurrency: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn vm_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .context("no VmRSS")
}

/// Raise the soft open-file limit to the hard one; returns the new soft limit.
fn raise_nofile() -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    Ok(hard)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Run the workload.
pub fn run(a: &SessionsArgs) -> Result<ExitCode> {
    if !matches!(a.via.as_str(), "ws" | "http" | "grpc") {
        bail!("--via {}: expected ws, http or grpc", a.via);
    }
    let nofile = raise_nofile()?;
    let needed = u64::try_from(a.count).unwrap_or(u64::MAX).saturating_mul(8) + 64;
    if nofile < needed {
        eprintln!(
            "warning: RLIMIT_NOFILE is {nofile}; {} sessions may need ~{needed}",
            a.count
        );
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let link = super::mock_link()?;
    let token = format!("bench-sessions-{}", std::process::id());
    let mut child = std::process::Command::new(&exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--cli")
        .arg(&link)
        .arg("--max-sessions-per-token")
        .arg(a.count.to_string())
        .env("CONDUIT_TOKENS", &token)
        .env_remove("CONDUIT_CONFIG")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting conduit serve")?;
    let gateway_pid = child.id();
    let result = (|| {
        let stderr = child.stderr.take().context("the gateway's stderr")?;
        let mut stderr = BufReader::new(stderr);
        let mut line = String::new();
        stderr
            .read_line(&mut line)
            .context("the gateway's first line")?;
        // Keep draining the gateway's stderr so that it never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stderr.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let after = |marker: &str| {
            line.split(marker)
                .nth(1)
                .and_then(|r| r.split([' ', ',', '(']).next())
                .map(str::to_owned)
                .with_context(|| format!("no `{marker}` in the gateway's line: {line}"))
        };
        let url = match a.via.as_str() {
            "grpc" => format!("grpc://{}", after("grpc on ")?),
            s => format!("{s}://{}", after("http://")?),
        };
        std::thread::sleep(Duration::from_millis(300));
        let rss0 = vm_rss_kb(gateway_pid)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("runtime")?;
        let started = Instant::now();
        let (clients, mut times) = rt.block_on(async {
            let opened: Vec<Result<(Client, Duration)>> = futures::stream::iter(0..a.count)
                .map(|_| {
                    let options = Options::builder()
                        .transport(url.clone(), token.clone())
                        .build();
                    async move {
                        let t0 = Instant::now();
                        let client = Client::connect(options).await.context("connecting")?;
                        Ok((client, t0.elapsed()))
                    }
                })
                .buffer_unordered(a.concurrency.max(1))
                .collect()
                .await;
            let mut clients = Vec::with_capacity(opened.len());
            let mut times = Vec::with_capacity(opened.len());
            for o in opened {
                let (c, t) = o?;
                clients.push(c);
                times.push(t);
            }
            anyhow::Ok((clients, times))
        })?;
        let total = started.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        let rss1 = vm_rss_kb(gateway_pid)?;
        times.sort();
        let per_session = rss1.saturating_sub(rss0) as f64 / a.count.max(1) as f64;
        let (p50, p99) = (percentile(&times, 50.0), percentile(&times, 99.0));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        if a.json {
            println!(
                "{}",
                json!({
                    "workload": "sessions", "via": a.via, "count": a.count,
                    "concurrency": a.concurrency,
                    "gateway_rss_before_kb": rss0, "gateway_rss_after_kb": rss1,
                    "gateway_rss_per_session_kb": (per_session * 10.0).round() / 10.0,
                    "connect_p50_ms": (ms(p50) * 100.0).round() / 100.0,
                    "connect_p99_ms": (ms(p99) * 100.0).round() / 100.0,
                    "open_all_s": (total.as_secs_f64() * 100.0).round() / 100.0,
                })
            );
        } else {
            println!(
                "sessions: {} idle sessions over {} on one gateway ({} connecting at once)",
                a.count, a.via, a.concurrency
            );
            println!(
                "  gateway RSS {rss0} kB -> {rss1} kB: {per_session:.1} KiB per session (target <= \
                 {RSS_PER_SESSION_TARGET_KB} KiB: {})",
                if per_session <= RSS_PER_SESSION_TARGET_KB {
                    "met"
                } else {
                    "MISSED"
                }
            );
            println!(
                "  connect (create + stream + initialize): p50 {:.2} ms, p99 {:.2} ms; all {} in {:.2} s",
                ms(p50),
                ms(p99),
                a.count,
                total.as_secs_f64()
            );
        }
        rt.block_on(async {
            futures::future::join_all(clients.into_iter().map(|c| async move {
                let _ = c.disconnect().await;
            }))
            .await;
        });
        anyhow::Ok(())
    })();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(gateway_pid).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    result.map(|()| ExitCode::SUCCESS)
}
