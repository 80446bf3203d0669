//! `conduit serve`: run the gateway (HTTP + WebSocket sessions of the `claude` CLI).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use claude_conduit_gateway::GatewayConfig;
use claude_conduit_gateway::auth::Tokens;

use crate::query::EXIT_FAILURE;

/// Arguments of `conduit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = claude_conduit_gateway::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// File with the accepted bearer tokens, one per line (`#` comments allowed). Without it,
    /// tokens come from `CONDUIT_TOKENS` (comma-separated).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The `claude` executable (default: the usual search).
    #[arg(long)]
    cli: Option<PathBuf>,
    /// Seconds a session survives without a connected client.
    #[arg(long, default_value_t = 60)]
    grace_secs: u64,
    /// Live sessions allowed per token.
    #[arg(long, default_value_t = 8)]
    max_sessions_per_token: usize,
}

/// Run the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> ExitCode {
    let tokens = match &args.token_file {
        Some(path) => match Tokens::from_file(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "conduit serve: cannot read the token file {}: {e}",
                    path.display()
                );
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        None => Tokens::from_comma_list(&std::env::var("CONDUIT_TOKENS").unwrap_or_default()),
    };
    if tokens.is_empty() {
        eprintln!("conduit serve: no tokens (give --token-file F or set CONDUIT_TOKENS)");
        return ExitCode::from(EXIT_FAILURE);
    }
    // Only the count is ever shown, never a token.
    let count = tokens.len();
    let mut config = GatewayConfig::new()
        .listen(args.listen)
        .tokens(tokens)
        .grace_period(std::time::Duration::from_secs(args.grace_secs))
        .max_sessions_per_token(args.max_sessions_per_token);
    if let Some(cli) = args.cli {
        config = config.cli_path(cli);
    }
    let gateway = match claude_conduit_gateway::Gateway::bind(config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("conduit serve: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    eprintln!(
        "conduit serve: listening on http://{} ({count} token(s))",
        gateway.local_addr()
    );
    match gateway.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit serve: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
