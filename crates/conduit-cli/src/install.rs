//! `conduit install-cli`: install the pinned `claude` CLI where conduit looks for it.
//!
//! The same install as `scripts/install-cli.sh` and the test kit's `ensure_pinned_cli` (npm into
//! `${XDG_CACHE_HOME:-$HOME/.cache}/claude-conduit/cli/<version>`, one lock file shared by all
//! three), for users of the binary who have no source checkout. Prints where it installs, a
//! spinner while npm runs (on a terminal), then the installed size; the binary's path is the only
//! line on stdout.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use claude_conduit_testkit::cli::{CLI_NPM_PACKAGE, CLI_OVERRIDE_ENV};
use claude_conduit_testkit::{PINNED_CLI_VERSION, ensure_pinned_cli, pinned_cli_dir};

use crate::exit::{EXIT_CLI_NOT_FOUND, EXIT_FAILURE};

/// Arguments of `conduit install-cli` (none).
#[derive(Debug, Clone, clap::Args)]
pub struct InstallCliArgs {}

/// Run `conduit install-cli`.
pub async fn run(_args: InstallCliArgs) -> ExitCode {
    if let Some(path) = std::env::var_os(CLI_OVERRIDE_ENV).filter(|v| !v.is_empty()) {
        let path = std::path::PathBuf::from(path);
        eprintln!(
            "conduit install-cli: {CLI_OVERRIDE_ENV} is set to {}: conduit runs that binary, so \
             there is nothing to install (unset {CLI_OVERRIDE_ENV} to use the pinned copy)",
            path.display()
        );
        return if path.exists() {
            println!("{}", path.display());
            ExitCode::SUCCESS
        } else {
            eprintln!("conduit install-cli: {} does not exist", path.display());
            ExitCode::from(EXIT_CLI_NOT_FOUND)
        };
    }
    let dir = pinned_cli_dir();
    let present = dir.join("node_modules/.bin/claude").exists();
    eprintln!(
        "conduit install-cli: {CLI_NPM_PACKAGE}@{PINNED_CLI_VERSION} in {}",
        dir.display()
    );
    if !present {
        eprintln!("conduit install-cli: running npm install (this can take a minute)…");
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    spinner.set_message(if present {
        "checking the installed version"
    } else {
        "npm install"
    });
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = tokio::task::spawn_blocking(ensure_pinned_cli).await;
    spinner.finish_and_clear();
    match result {
        Ok(Ok(bin)) => {
            let size = dir_bytes(&dir);
            let mb = size as f64 / 1e6;
            if present {
                eprintln!(
                    "conduit install-cli: claude {PINNED_CLI_VERSION} is already installed at {} \
                     ({mb:.1} MB)",
                    bin.display()
                );
            } else {
                eprintln!(
                    "conduit install-cli: installed claude {PINNED_CLI_VERSION} at {} ({mb:.1} MB)",
                    bin.display()
                );
            }
            println!("{}", bin.display());
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("conduit install-cli: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(e) => {
            eprintln!("conduit install-cli: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Bytes of the files under `dir` (symbolic links not followed).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}
