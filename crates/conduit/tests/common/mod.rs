//! Shared helpers for integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use claude_conduit::{Error, Message, Options, options::OptionsBuilder};
use claude_conduit_testkit::{CliEnv, FakeModel, Turn};
use futures::{Stream, StreamExt};

/// A FakeModel with `turns`, and a scratch environment for the pinned real CLI.
pub struct RealCli {
    pub model: FakeModel,
    pub env: CliEnv,
}

impl RealCli {
    pub async fn start(turns: Vec<Turn>) -> RealCli {
        let model = FakeModel::builder()
            .turns(turns)
            .start()
            .await
            .expect("fake model");
        // Resolve (and install if needed) the pinned CLI before HOME is overridden.
        let cli = tokio::task::spawn_blocking(claude_conduit_testkit::ensure_pinned_cli)
            .await
            .expect("join")
            .expect("the pinned claude CLI (scripts/install-cli.sh)");
        let env = model.cli_env_with(cli).expect("cli env");
        RealCli { model, env }
    }

    /// Options pointing the pinned real CLI at the fake model.
    pub fn options(&self) -> OptionsBuilder {
        let mut b = Options::builder()
            .cli_path(self.env.cli_path())
            .cwd(self.env.cwd())
            .envs(self.env.envs())
            .initialize_timeout(Duration::from_secs(60));
        for k in self.env.vars_to_remove() {
            b = b.env_remove(k);
        }
        b
    }
}

/// Collect a stream with a deadline.
pub async fn collect<S: Stream<Item = Result<Message, Error>>>(
    s: S,
    within: Duration,
) -> Vec<Result<Message, Error>> {
    tokio::time::timeout(within, s.collect::<Vec<_>>())
        .await
        .expect("stream did not end in time")
}

/// The type names of messages, for order assertions.
pub fn types(items: &[Result<Message, Error>]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Ok(m) => match m.subtype() {
                Some(s) => format!("{}/{}", m.type_name(), s),
                None => m.type_name().to_owned(),
            },
            Err(e) => format!("error: {e}"),
        })
        .collect()
}

/// True if any live process has `needle` in its command line.
pub fn process_with_cmdline(needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok()).any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                let s = String::from_utf8_lossy(&c).replace('\0', " ");
                s.contains(needle) && !s.contains("cargo") && !s.contains("process_with_cmdline")
            })
            .unwrap_or(false)
    })
}

/// True while any process is in process group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), None).is_ok()
}
