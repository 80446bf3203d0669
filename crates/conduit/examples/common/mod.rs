//! Shared by the examples: run offline against the test kit's FakeModel (`--offline`), or
//! against your own account.
#![allow(dead_code)]

use claude_conduit::Options;
use claude_conduit::testkit::{CliEnv, FakeModel, Turn};

/// Keeps the fake model and the scratch environment alive while the example runs.
pub struct Offline {
    pub model: FakeModel,
    pub env: CliEnv,
}

/// Options for the example: offline (FakeModel + the pinned real CLI) when `--offline` is on
/// the command line, otherwise the `claude` CLI found on this machine with your credentials.
pub async fn options(turns: Vec<Turn>) -> anyhow::Result<(Options, Option<Offline>)> {
    if !std::env::args().any(|a| a == "--offline") {
        return Ok((Options::default(), None));
    }
    let model = FakeModel::builder().turns(turns).start().await?;
    let cli = tokio::task::spawn_blocking(claude_conduit::testkit::ensure_pinned_cli).await??;
    let env = model.cli_env_with(cli)?;
    eprintln!(
        "(offline: answers are scripted by FakeModel at {})",
        model.base_url()
    );
    // The real CLI, its scratch HOME and cwd, pointed at the fake model (feature `testkit`).
    let options = Options::builder().testkit(&env).build();
    Ok((options, Some(Offline { model, env })))
}
