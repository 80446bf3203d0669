//! `conduit demo`: a whole Claude Code session end to end, offline by default.
//!
//! Without `--real` it starts the test kit's `FakeModel` with a scripted session (the model asks
//! for a Bash tool call, the real CLI runs it, the model answers), points the pinned real CLI at
//! it, and shows the session as `conduit query` would. With `--real` it uses your own
//! credentials (an API key or a logged-in CLI).

use std::process::ExitCode;

use claude_conduit::Options;
use claude_conduit_testkit::{FakeModel, Turn, ensure_pinned_cli, pinned_cli_path};
use serde_json::json;

use crate::exit::{Context, EXIT_CLI_NOT_FOUND, EXIT_FAILURE, EXIT_USAGE};
use crate::query::{OutputFormat, run_session};

const DEMO_PROMPT: &str =
    "Create a file named hello.txt that greets the world, show it, then tell me what you did.";

/// Arguments of `conduit demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Use your own credentials (ANTHROPIC_API_KEY or a logged-in CLI) instead of the offline
    /// scripted model.
    #[arg(long)]
    pub real: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Run `conduit demo`.
pub async fn run(args: DemoArgs) -> ExitCode {
    let cli = match pinned_cli_path() {
        Some(p) => p,
        None => {
            eprintln!(
                "conduit demo: installing the pinned claude CLI ({}) with npm, once…",
                claude_conduit_testkit::PINNED_CLI_VERSION
            );
            match tokio::task::spawn_blocking(ensure_pinned_cli).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    eprintln!("conduit demo: {e}");
                    return ExitCode::from(EXIT_CLI_NOT_FOUND);
                }
                Err(e) => {
                    eprintln!("conduit demo: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
    };
    if args.real {
        return real(cli, args.output).await;
    }
    let model = match FakeModel::builder()
        .turn(Turn::tool_use(
            "Bash",
            json!({
                "command": "echo 'Hello, world! (written by a real tool call)' > hello.txt && cat hello.txt",
                "description": "Create hello.txt and show it"
            }),
        ))
        .turn(Turn::text(
            "I created hello.txt with a greeting and printed it: the Bash tool ran for real, \
             in a scratch directory, driven by claude-conduit.",
        ))
        .start()
        .await
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("conduit demo: cannot start the fake model: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let env = match model.cli_env_with(&cli) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("conduit demo: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    eprint!(
        "{}",
        boxed(&[
            "conduit demo — OFFLINE: the model's answers are SCRIPTED by the test".to_owned(),
            format!("kit's FakeModel on {}", model.base_url()),
            "The claude CLI, its tool calls and the SDK are real. No API key, no".to_owned(),
            "network. Run `conduit demo --real` to use your own account.".to_owned(),
        ])
    );
    eprintln!("> {DEMO_PROMPT}");
    let options = Options::builder()
        .testkit(&env)
        .allowed_tools(["Bash"])
        .build();
    let code = run_session(DEMO_PROMPT, options, args.output, Context::default()).await;
    let file = env.cwd().join("hello.txt");
    match std::fs::read_to_string(&file) {
        Ok(text) => eprintln!(
            "(the tool really ran: {} contains {:?})",
            file.display(),
            text.trim()
        ),
        Err(_) => eprintln!("(hello.txt was not created)"),
    }
    eprintln!(
        "(the cost shown is what the CLI computes from the fake model's token counts at API \
         prices: play money, nothing was charged)"
    );
    ExitCode::from(code)
}

async fn real(cli: std::path::PathBuf, output: OutputFormat) -> ExitCode {
    let has_key = std::env::var_os("ANTHROPIC_API_KEY").is_some_and(|k| !k.is_empty());
    let logged_in = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .is_some_and(|h| {
            h.join(".claude/.credentials.json").exists() || h.join(".claude.json").exists()
        });
    if !has_key && !logged_in {
        eprintln!(
            "conduit demo --real: no credentials found (set ANTHROPIC_API_KEY or log in with `claude`). \
             Run `conduit demo` without --real for the offline demo."
        );
        return ExitCode::from(EXIT_USAGE);
    }
    eprintln!("conduit demo --real: using your own credentials; this calls the Anthropic API.");
    eprintln!("> Say hello in one short sentence.");
    let options = Options::builder().cli_path(cli).max_turns(1).build();
    ExitCode::from(
        run_session(
            "Say hello in one short sentence.",
            options,
            output,
            Context::default(),
        )
        .await,
    )
}

/// `lines` in a box drawn with box-drawing characters, every line padded to the widest (counted
/// in characters: all of them are one column wide).
fn boxed(lines: &[String]) -> String {
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let rule = "─".repeat(width + 2);
    let mut out = format!("┌{rule}┐\n");
    for l in lines {
        let pad = width - l.chars().count();
        out.push_str(&format!("│ {l}{} │\n", " ".repeat(pad)));
    }
    out.push_str(&format!("└{rule}┘\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_lines_have_one_width() {
        let b = boxed(&["short".to_owned(), "a longer line — with a dash".to_owned()]);
        let widths: Vec<usize> = b.lines().map(|l| l.chars().count()).collect();
        assert_eq!(widths.len(), 4);
        assert!(widths.iter().all(|w| *w == widths[0]), "{b}");
    }
}
