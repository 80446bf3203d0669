//! `conduit`: Claude Code from the command line, through claude-conduit.
//!
//! Subcommands: `query` (run one prompt), `demo` (an offline end-to-end session), `install-cli`
//! (the pinned `claude` CLI), `serve` (the gateway), `bench` (benchmarks against the raw-pipe
//! floor), `completions` and `man`, and the hidden `mock-claude` (the test kit's fast stand-in
//! CLI, so `conduit bench` can find it as its own executable).

/// The exit-code table: `conduit --help`, `conduit query --help` and
/// the README (a test compares them) show this one text.
macro_rules! exit_codes_table {
    () => {
        "Exit codes:
  0  success: the turn ended with a success result
  1  the session ended with an error result (not logged in, API error, max turns, ...)
  2  usage: bad command line, invalid options, or options the gateway refused
  3  no usable claude CLI (not found or not executable): run `conduit install-cli`
  4  failure: the CLI died, a connection failed, a file could not be read, ..."
    };
}

mod args;
mod bench;
mod demo;
mod exit;
mod install;
mod logging;
mod plugins;
mod query;
mod serve;
mod stats;
mod worker;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::exit::{EXIT_FAILURE, EXIT_USAGE};

/// Claude Code, driven from Rust, over any transport.
#[derive(Debug, Parser)]
#[command(
    name = "conduit",
    version,
    about,
    long_about = None,
    after_help = AFTER_HELP,
)]
struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or directives
    /// (`warn,claude_conduit=debug`). Over RUST_LOG, which is over CONDUIT_LOG [default: warn;
    /// serve: warn,claude_conduit_gateway=info].
    #[arg(long, global = true, value_name = "FILTER", value_parser = logging::parse_filter)]
    log_level: Option<String>,
    /// Log line format: text (default) or json (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "CONDUIT_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The end of `conduit --help`.
const AFTER_HELP: &str = concat!(
    "Start with `conduit demo` (offline, nothing to set up but npm), then `conduit install-cli` \
     and `conduit query \"hello\"` with your own ANTHROPIC_API_KEY or `claude` login.\n\n",
    "Logging: --log-level, else RUST_LOG, else CONDUIT_LOG, else the default; on stderr, in \
     colour only on a terminal.\n\n",
    exit_codes_table!()
);

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one prompt through the claude CLI (local, or on a gateway with --via) and print the
    /// session.
    Query(Box<query::QueryArgs>),
    /// Run a complete Claude Code session offline against a scripted fake model (or, with
    /// --real, against your own account).
    Demo(demo::DemoArgs),
    /// Install the pinned claude CLI (with npm) where conduit looks for it.
    InstallCli(install::InstallCliArgs),
    /// Run the gateway: claude CLI sessions for remote clients over WebSocket, HTTP + server-sent
    /// events and gRPC, with bearer-token auth, a policy for remote options, and optional TLS.
    Serve(Box<serve::ServeArgs>),
    /// SDK and gateway plugins (not the claude CLI's own): list, check, or create one.
    Plugins(plugins::PluginsArgs),
    /// Run the CLIs of sessions that gateways (`conduit serve --redis`) or Redis clients
    /// (`--via redis://…`) put in Redis Streams; any number of workers on any host.
    Worker(Box<worker::WorkerArgs>),
    /// Measure the SDK against the raw-pipe floor (firehose, ping-pong, startup, sessions).
    Bench(bench::BenchArgs),
    /// Print a shell completion script: `conduit completions bash > ~/.local/share/bash-completion/completions/conduit`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `conduit man > conduit.1`.
    Man,
    /// The test kit's stand-in CLI (used by `conduit bench`).
    #[command(hide = true, disable_help_flag = true)]
    MockClaude {
        /// Ignored: the mock accepts the flags the SDK passes to the real CLI.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    // `conduit mock-claude` must not pay for a tokio runtime or argument parsing: it is the
    // stand-in CLI the benchmarks measure against.
    // Run as a link named `mock-claude`: the same, for callers that cannot put an argument first
    // (a gateway's CLI in `conduit bench --via` and `conduit bench sessions`).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "mock-claude")
        || bench::invoked_as_mock()
    {
        return claude_conduit_testkit::mock_claude::run();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "conduit",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("conduit man: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            };
        }
        _ => {}
    }
    let default_filter = match cli.command {
        Command::Serve(_) | Command::Worker(_) => logging::SERVE_DEFAULT,
        _ => logging::DEFAULT,
    };
    let service = match cli.command {
        Command::Serve(_) => "conduit-gateway",
        _ => "conduit",
    };
    let otel = logging::init(
        cli.log_level.as_deref(),
        default_filter,
        cli.log_format,
        service,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conduit: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Query(args) => query::run(*args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::InstallCli(args) => install::run(args).await,
            Command::Bench(args) => match bench::run(args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("conduit bench: {e:#}");
                    ExitCode::from(EXIT_FAILURE)
                }
            },
            Command::Serve(args) => serve::run(*args).await,
            Command::Plugins(args) => plugins::run(args).await,
            Command::Worker(args) => worker::run(*args).await,
            Command::MockClaude { .. } => claude_conduit_testkit::mock_claude::run(),
            Command::Completions { .. } | Command::Man => ExitCode::SUCCESS,
        }
    });
    if let Some(otel) = otel {
        // Spans still held by tasks (a relay driver finishing its close, the session span it
        // runs in) end with them: drop the tasks first so those spans are exported too (a
        // bounded wait for blocking threads).
        runtime.shutdown_timeout(std::time::Duration::from_millis(500));
        otel.shutdown();
    }
    code
}
