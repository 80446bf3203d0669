//! `conduit bench`: the SDK measured against the raw-pipe floor, in one process, against one CLI,
//! in one run.
//!
//! # Method
//!
//! Absolute figures on shared virtual machines move by 2x with the machine's state, so every
//! workload is run on both sides in alternating rounds (warm-up rounds first, then `floor, sdk,
//! floor, sdk, …`) and the report gives each side's median and their ratio.
//!
//! * **The CLI** is `--cli PATH` run with the SDK's own argv ([`Options::argv`]) and environment
//!   ([`Options::env_changes`]), or by default this executable with `mock-claude` put in front of
//!   that argv (the hidden `conduit mock-claude` subcommand). The workload's size goes in
//!   `MOCK_CLAUDE_MESSAGES` (assistant frames per user message) and `MOCK_CLAUDE_TEXT_BYTES`
//!   (text bytes per frame). Both sides use exactly the same program, argv and environment.
//! * **The floor** ([`floor`]) is blocking std I/O on the bench's own thread: spawn, write the
//!   `initialize` request, read its reply; then the clock starts; write a user frame and read
//!   lines with a 64 KiB `BufReader` until the `result` line, counting every line and every byte.
//!   It writes byte-identical frames to the SDK's (encoded with the SDK's own encoders, before the
//!   clock starts).
//! * **The SDK side** ([`sdk`]) runs on a tokio runtime built for the bench (multi-thread with one
//!   worker per core, which is what `#[tokio::main]` gives, or current-thread with `--runtime
//!   current-thread`). After `Client::connect_with` has returned (spawn + initialize), the clock
//!   starts; `send` one user message, then count the [`Message`](claude_conduit::Message) items
//!   `receive_response()` yields until the `result`. Bytes are the transport's `bytes_received`
//!   over the timed section (newlines included, like the floor's count). The message counts of
//!   the two sides must agree in every round (the byte counts within 0.1%), or the bench fails.
//! * **CPU** is the `getrusage(RUSAGE_SELF)` user+system delta over the timed section: this
//!   process only (all its threads), never the CLI.
//! * **Peak RSS** is this process's `VmHWM`, reset with `echo 5 > /proc/self/clear_refs` right
//!   before each SDK round (before the connect) and read after it; the report gives the largest
//!   over the measured SDK rounds. It is the whole bench process (binary, both runtimes' threads),
//!   not the CLI.
//! * **Startup** times `Client::connect_with` against the floor's spawn + initialize write +
//!   reply read, with in-process `Instant`s, and reports the median of the per-round differences.
//!
//! Rates use MB = 10^6 bytes.

mod floor;
mod report;
mod sdk;
mod sessions;
mod sys;
mod via;

/// The file name under which `conduit` runs as `conduit mock-claude`.
const MOCK_LINK_NAME: &str = "mock-claude";

/// Whether this process was started through a link named [`MOCK_LINK_NAME`].
pub fn invoked_as_mock() -> bool {
    std::env::args_os().next().is_some_and(|a| {
        std::path::Path::new(&a)
            .file_name()
            .is_some_and(|n| n == MOCK_LINK_NAME)
    })
}

/// A symbolic link named `mock-claude` to this executable, in a per-process temporary directory:
/// a CLI path that runs the mock without an argument in front (what a gateway needs).
fn mock_link() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = std::env::temp_dir().join(format!("conduit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = dir.join(MOCK_LINK_NAME);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&exe, &link)
        .with_context(|| format!("linking {} to {}", link.display(), exe.display()))?;
    Ok(link)
}

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use claude_conduit::Options;
use claude_conduit::message::{UserInput, outbound};
use claude_conduit::transport::SubprocessTransport;
use claude_conduit_testkit::mock_claude::{ENV_MESSAGES, ENV_TEXT_BYTES};

use floor::Floor;

/// Arguments of `conduit bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    workload: Workload,
}

/// The workloads.
#[derive(Debug, Clone, clap::Subcommand)]
enum Workload {
    /// One user message answered by N assistant frames of B text bytes: messages/s and MB/s.
    Firehose(FirehoseArgs),
    /// K user messages on one session, each answered by one assistant frame: time and CPU per
    /// turn.
    Pingpong(PingpongArgs),
    /// What the SDK adds to a CLI start: Client::connect_with vs spawn + initialize round trip.
    Startup(StartupArgs),
    /// Many idle sessions on one gateway (`conduit serve` as a child process): the gateway's
    /// RSS per session and the connect time (create + connect + initialize) p50/p99.
    Sessions(sessions::SessionsArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct FirehoseArgs {
    /// Assistant frames the CLI writes for the one user message (MOCK_CLAUDE_MESSAGES), 1 to
    /// 100000000.
    #[arg(long, default_value_t = 100_000, allow_negative_numbers = true,
          value_parser = crate::args::number::<u64>(1..=100_000_000))]
    messages: u64,
    /// Text bytes per assistant frame (MOCK_CLAUDE_TEXT_BYTES), 0 to 100000000.
    #[arg(long, default_value_t = 200, allow_negative_numbers = true,
          value_parser = crate::args::number::<u64>(0..=100_000_000))]
    bytes: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Clone, clap::Args)]
struct PingpongArgs {
    /// Turns (user messages) per round, on one session, 1 to 10000000.
    #[arg(long, default_value_t = 2000, allow_negative_numbers = true,
          value_parser = crate::args::number::<u64>(1..=10_000_000))]
    turns: u64,
    /// Text bytes of each turn's one assistant frame (MOCK_CLAUDE_TEXT_BYTES), 0 to 100000000.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true,
          value_parser = crate::args::number::<u64>(0..=100_000_000))]
    bytes: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Clone, clap::Args)]
struct StartupArgs {
    #[command(flatten)]
    common: Common,
}

/// Options every workload takes.
#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// The CLI to run: any program with mock-claude's knobs, run with the SDK's normal argv
    /// [default: this executable's hidden `mock-claude` subcommand].
    #[arg(long, value_name = "PATH")]
    cli: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Measured rounds per side, alternating floor and SDK, 1 to 1000; medians are reported
    /// [default: 5, startup 21].
    #[arg(long, allow_negative_numbers = true,
          value_parser = crate::args::number::<u32>(1..=1000))]
    rounds: Option<u32>,
    /// Unmeasured rounds per side before the measured ones, 0 to 1000.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true,
          value_parser = crate::args::number::<u32>(0..=1000))]
    warmup: u32,
    /// The tokio runtime the SDK side runs on.
    #[arg(long, value_enum, default_value_t = RuntimeKind::MultiThread)]
    runtime: RuntimeKind,
    /// Print every round's figures on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Run the SDK side through a conduit gateway: `ws`, `http` or `grpc` start one in this
    /// process on 127.0.0.1 (with the same mock CLI behind it); a URL (`ws://…`, `grpc://…`)
    /// uses a running `conduit serve` (its CLI must be the mock with the same knobs). The floor
    /// stays a local raw pipe.
    #[arg(long, value_name = "TRANSPORT|URL", value_parser = crate::args::bench_via)]
    via: Option<String>,
    /// The bearer token file for `--via URL` (default: `CONDUIT_TOKEN`).
    #[arg(long, value_name = "F", requires = "via")]
    token_file: Option<PathBuf>,
    /// Record metrics while measuring: install the collector and the Prometheus recorder (as
    /// `conduit serve` does) before the first round. Compare with a run without it.
    #[arg(long)]
    metrics: bool,
}

/// The SDK side's runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeKind {
    /// `tokio::runtime::Builder::new_multi_thread()`, one worker per core, as `#[tokio::main]`.
    MultiThread,
    /// `tokio::runtime::Builder::new_current_thread()`: everything on the bench's thread.
    CurrentThread,
}

impl RuntimeKind {
    fn build(self) -> Result<tokio::runtime::Runtime> {
        let mut b = match self {
            RuntimeKind::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            RuntimeKind::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        };
        b.enable_all()
            .build()
            .context("building the SDK side's runtime")
    }

    fn name(self) -> &'static str {
        match self {
            RuntimeKind::MultiThread => "multi-thread",
            RuntimeKind::CurrentThread => "current-thread",
        }
    }
}

/// Run `conduit bench`.
///
/// The measuring happens on a dedicated thread of its own (the floor's blocking I/O must not sit
/// on a runtime worker, and the SDK side needs a runtime of the requested flavour that is not
/// nested in the caller's); this future only waits for it.
pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("conduit-bench".into())
        .spawn(move || {
            let _ = tx.send(run_blocking(args));
        })
        .context("starting the bench thread")?;
    rx.await
        .context("the bench thread ended without a result")?
}

fn run_blocking(args: BenchArgs) -> Result<ExitCode> {
    let metrics = match &args.workload {
        Workload::Firehose(a) => a.common.metrics,
        Workload::Pingpong(a) => a.common.metrics,
        Workload::Startup(a) => a.common.metrics,
        Workload::Sessions(_) => false,
    };
    if metrics {
        claude_conduit::telemetry::Telemetry::builder()
            .collector(claude_conduit::telemetry::CollectorConfig::default())
            .prometheus()
            .install()
            .context("installing the metrics recorder")?;
    }
    match args.workload {
        Workload::Firehose(a) => firehose(&a),
        Workload::Pingpong(a) => pingpong(&a),
        Workload::Startup(a) => startup(&a),
        Workload::Sessions(a) => sessions::run(&a),
    }
}

/// What to run, identically for both sides.
#[derive(Clone)]
struct Target {
    program: PathBuf,
    /// Arguments before the SDK's argv (`mock-claude` for the default CLI).
    prefix: Vec<OsString>,
    options: Options,
    /// The gateway the SDK side goes through (`--via`), once started.
    via: Option<via::Via>,
}

impl Target {
    fn new(cli: Option<PathBuf>, knobs: &[(&str, u64)]) -> Result<Target> {
        let (program, prefix) = match cli {
            Some(p) => (p, Vec::new()),
            None => (
                std::env::current_exe().context(
                    "finding this executable (the default CLI is `conduit mock-claude`)",
                )?,
                vec![OsString::from("mock-claude")],
            ),
        };
        let mut b = Options::builder().cli_path(program.clone());
        for (k, v) in knobs {
            b = b.env(*k, v.to_string());
        }
        Ok(Target {
            program,
            prefix,
            options: b.build(),
            via: None,
        })
    }

    fn argv(&self) -> Result<Vec<OsString>> {
        let mut argv = self.prefix.clone();
        argv.extend(self.options.argv()?.into_iter().map(OsString::from));
        Ok(argv)
    }

    /// The SDK side's transport: what [`Options::subprocess_transport`] builds, with the prefix.
    fn transport(&self) -> Result<SubprocessTransport> {
        let mut t = SubprocessTransport::new(&self.program)
            .args(self.argv()?)
            .max_frame_bytes(self.options.max_frame_bytes());
        for (k, v) in self.options.env_changes() {
            t = match v {
                Some(v) => t.env(k, v),
                None => t.env_remove(k),
            };
        }
        Ok(t)
    }

    /// The floor's command: same program, argv and environment.
    fn command(&self) -> Result<std::process::Command> {
        let mut c = std::process::Command::new(&self.program);
        c.args(self.argv()?);
        for (k, v) in self.options.env_changes() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        Ok(c)
    }

    fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.prefix {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        if let Some(v) = &self.via {
            s.push_str(&format!("; SDK side via {}", v.describe()));
        }
        s
    }
}

/// The frames both sides send, encoded once by the SDK's own encoders (newline included).
struct Frames {
    init: Vec<u8>,
    user: Vec<u8>,
}

/// The prompt of every user message.
const PROMPT: &str = "bench";

impl Frames {
    fn new() -> Frames {
        let line = |b: bytes::Bytes| {
            let mut v = b.to_vec();
            v.push(b'\n');
            v
        };
        Frames {
            init: line(outbound::control_request(
                "req_1_00000000",
                "initialize",
                serde_json::json!({"hooks": null}),
            )),
            user: line(UserInput::new(PROMPT).encode()),
        }
    }
}

/// One round of one side.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// The timed section's wall time.
    elapsed: Duration,
    /// CPU time of this process over the timed section.
    cpu: Duration,
    /// Lines (floor) or messages (SDK) received in the timed section.
    items: u64,
    /// Bytes received in the timed section, newlines included.
    bytes: u64,
    /// `VmHWM` after the round (reset before it).
    peak_rss_kb: Option<u64>,
    /// Startup: the spawn part.
    spawn: Duration,
}

/// Warm-up rounds, then `rounds` alternating pairs (floor first). Fails when a pair's counts
/// differ: the two sides must have received the same frames.
fn alternate(
    common: &Common,
    default_rounds: u32,
    check_counts: bool,
    mut floor: impl FnMut() -> Result<Sample>,
    mut sdk: impl FnMut() -> Result<Sample>,
) -> Result<(Vec<Sample>, Vec<Sample>)> {
    for i in 0..common.warmup {
        let (f, s) = (floor()?, sdk()?);
        if common.verbose {
            eprintln!("warm-up {}: floor {}, sdk {}", i + 1, show(&f), show(&s));
        }
    }
    let rounds = common.rounds.unwrap_or(default_rounds);
    let (mut fs, mut ss) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let (f, s) = (floor()?, sdk()?);
        if common.verbose {
            eprintln!(
                "round {}/{rounds}: floor {}, sdk {}",
                i + 1,
                show(&f),
                show(&s)
            );
        }
        // Byte counts may differ by a few bytes (a CLI's timing and cost fields vary in width);
        // message counts may not.
        // Through a gateway the SDK side counts frame bytes without newlines: compare messages.
        let bytes_differ = common.via.is_none() && f.bytes.abs_diff(s.bytes) > f.bytes / 1000;
        if check_counts && (f.items != s.items || bytes_differ) {
            bail!(
                "round {}: the SDK received {} messages ({} bytes) but the floor read {} lines ({} \
                 bytes) from the same CLI",
                i + 1,
                s.items,
                s.bytes,
                f.items,
                f.bytes
            );
        }
        fs.push(f);
        ss.push(s);
    }
    Ok((fs, ss))
}

fn show(s: &Sample) -> String {
    format!(
        "{:.3} ms, cpu {:.3} ms, {} items, {} bytes",
        s.elapsed.as_secs_f64() * 1e3,
        s.cpu.as_secs_f64() * 1e3,
        s.items,
        s.bytes
    )
}

fn firehose(a: &FirehoseArgs) -> Result<ExitCode> {
    let target = Target::new(
        a.common.cli.clone(),
        &[(ENV_MESSAGES, a.messages), (ENV_TEXT_BYTES, a.bytes)],
    )?;
    let frames = Frames::new();
    let rt = a.common.runtime.build()?;
    let target = via::attach(target, &a.common, &rt)?;
    let (floor, sdk) = alternate(
        &a.common,
        5,
        true,
        || floor_turns(&target, &frames, 1),
        || rt.block_on(sdk_turns(&target, 1)),
    )?;
    report::firehose(a, &target, &floor, &sdk);
    Ok(ExitCode::SUCCESS)
}

fn pingpong(a: &PingpongArgs) -> Result<ExitCode> {
    let target = Target::new(
        a.common.cli.clone(),
        &[(ENV_MESSAGES, 1), (ENV_TEXT_BYTES, a.bytes)],
    )?;
    let frames = Frames::new();
    let rt = a.common.runtime.build()?;
    let target = via::attach(target, &a.common, &rt)?;
    let (floor, sdk) = alternate(
        &a.common,
        5,
        true,
        || floor_turns(&target, &frames, a.turns),
        || rt.block_on(sdk_turns(&target, a.turns)),
    )?;
    report::pingpong(a, &target, &floor, &sdk);
    Ok(ExitCode::SUCCESS)
}

fn startup(a: &StartupArgs) -> Result<ExitCode> {
    let target = Target::new(a.common.cli.clone(), &[(ENV_MESSAGES, 1)])?;
    let frames = Frames::new();
    let rt = a.common.runtime.build()?;
    let target = via::attach(target, &a.common, &rt)?;
    let (floor, sdk) = alternate(
        &a.common,
        21,
        false,
        || {
            let cmd = target.command()?;
            let t0 = Instant::now();
            let f = Floor::start(cmd, &frames.init)?;
            let elapsed = t0.elapsed();
            let spawn = f.spawn_time;
            f.finish()?;
            Ok(Sample {
                elapsed,
                spawn,
                ..Sample::default()
            })
        },
        || {
            let (elapsed, spawn) = rt.block_on(sdk::startup(&target))?;
            Ok(Sample {
                elapsed,
                spawn,
                ..Sample::default()
            })
        },
    )?;
    report::startup(a, &target, &floor, &sdk);
    Ok(ExitCode::SUCCESS)
}

/// One floor round: start and initialize (untimed), then `turns` timed turns.
fn floor_turns(target: &Target, frames: &Frames, turns: u64) -> Result<Sample> {
    let cmd = target.command()?;
    sys::reset_peak_rss();
    let mut f = Floor::start(cmd, &frames.init)?;
    let cpu0 = sys::cpu_time()?;
    let t0 = Instant::now();
    let (mut items, mut bytes) = (0, 0);
    for _ in 0..turns {
        let r = f.turn(&frames.user)?;
        items += r.lines;
        bytes += r.bytes;
    }
    let elapsed = t0.elapsed();
    let cpu = sys::cpu_time()?.saturating_sub(cpu0);
    f.finish()?;
    Ok(Sample {
        elapsed,
        cpu,
        items,
        bytes,
        peak_rss_kb: sys::peak_rss_kb(),
        spawn: Duration::ZERO,
    })
}

/// One SDK round: connect (untimed, but inside the RSS window), then `turns` timed turns.
async fn sdk_turns(target: &Target, turns: u64) -> Result<Sample> {
    sys::reset_peak_rss();
    let client = sdk::connect(target).await?;
    let b0 = client.metrics().snapshot().bytes_received;
    let cpu0 = sys::cpu_time()?;
    let t0 = Instant::now();
    let mut items = 0;
    for _ in 0..turns {
        items += sdk::turn(&client, PROMPT).await?;
    }
    let elapsed = t0.elapsed();
    let cpu = sys::cpu_time()?.saturating_sub(cpu0);
    let bytes = client.metrics().snapshot().bytes_received - b0;
    sdk::close(client).await?;
    Ok(Sample {
        elapsed,
        cpu,
        items,
        bytes,
        peak_rss_kb: sys::peak_rss_kb(),
        spawn: Duration::ZERO,
    })
}
