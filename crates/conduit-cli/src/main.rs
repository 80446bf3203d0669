//! `conduit`: Claude Code from the command line, through claude-conduit.
//!
//! Subcommands: `query` (run one prompt), `demo` (an offline end-to-end session), `bench`
//! (benchmarks against the raw-pipe floor), and the hidden `mock-claude` (the test kit's fast
//! stand-in CLI, so `conduit bench` can find it as its own executable).

mod bench;
mod demo;
mod query;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Claude Code, driven from Rust, over any transport.
#[derive(Debug, Parser)]
#[command(name = "conduit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one prompt through the claude CLI and print the session.
    Query(Box<query::QueryArgs>),
    /// Run a complete Claude Code session offline against a scripted fake model (or, with
    /// --real, against your own account).
    Demo(demo::DemoArgs),
    /// Measure the SDK against the raw-pipe floor (firehose, ping-pong, startup).
    Bench(bench::BenchArgs),
    /// Run the gateway: claude CLI sessions over HTTP and WebSocket, with bearer-token auth.
    Serve(Box<serve::ServeArgs>),
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
                ExitCode::from(query::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONDUIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conduit: cannot start the async runtime: {e}");
            return ExitCode::from(query::EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Query(args) => query::run(*args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => match bench::run(args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("conduit bench: {e:#}");
                    ExitCode::from(query::EXIT_FAILURE)
                }
            },
            Command::Serve(args) => serve::run(*args).await,
            Command::MockClaude { .. } => claude_conduit_testkit::mock_claude::run(),
        }
    })
}
