//! Hooks: your code runs before and after each tool call:
//! `cargo run -p claude-conduit --example hooks -- --offline`
//! (drop `--offline` to use your own account, in a scratch directory).
//!
//! A `PreToolUse` hook refuses Bash commands that use `rm` — even though Bash is in
//! `allowed_tools`, hooks run before the permission check — and a `PostToolUse` hook adds a
//! note for the model next to each tool result.

mod common;

use claude_conduit::hooks::{HookEvent, HookInput, HookMatcher, HookOutput};
use claude_conduit::testkit::Turn;
use claude_conduit::{MessageKind, query};
use futures::StreamExt;
use serde_json::json;

const PROMPT: &str = "Using one Bash call per step: run `rm -rf notes`, then `echo hello > greeting.txt && \
    cat greeting.txt`. Then say in one sentence what happened.";

/// The note the `PostToolUse` hook adds for the model.
const NOTE: &str = "Note from the PostToolUse hook: this command ran in a scratch directory.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bash = |command: &str| Turn::tool_use("Bash", json!({ "command": command }));
    let (options, offline) = common::options(vec![
        bash("rm -rf notes"),
        bash("echo hello > greeting.txt && cat greeting.txt"),
        Turn::text("The rm was blocked by a hook; greeting.txt now says hello."),
    ])
    .await?;

    let scratch = tempfile::tempdir()?;
    let mut options = options
        .to_builder()
        .allowed_tools(["Bash"])
        // Before a Bash call runs: deny it when a word of the command is `rm`.
        .hook(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash").callback(|input: HookInput, _tool_use_id| async move {
                let command = input
                    .tool_input()
                    .and_then(|i| i["command"].as_str())
                    .unwrap_or_default();
                if command.split_whitespace().any(|word| word == "rm") {
                    println!("  [PreToolUse] denying `{command}`");
                    HookOutput::deny_tool("Deleting files is not allowed in this session.")
                } else {
                    println!("  [PreToolUse] letting `{command}` run");
                    HookOutput::default()
                }
            }),
        )
        // After a Bash call succeeded: add context for the model.
        .hook(
            HookEvent::PostToolUse,
            HookMatcher::new("Bash").callback(|input: HookInput, _tool_use_id| async move {
                let stdout = input
                    .get("tool_response")
                    .and_then(|r| r["stdout"].as_str())
                    .unwrap_or_default();
                println!("  [PostToolUse] output {stdout:?}; adding a note for the model");
                HookOutput::additional_context(HookEvent::PostToolUse, NOTE)
            }),
        );
    if offline.is_none() {
        options = options.cwd(scratch.path());
    }

    let mut stream = query(PROMPT, options.build());
    while let Some(msg) = stream.next().await {
        match msg?.kind() {
            MessageKind::Assistant(a) => {
                for call in a.tool_uses() {
                    println!("tool call: {} {}", call.name, call.input);
                }
                if !a.text().is_empty() {
                    println!("{}", a.text());
                }
            }
            MessageKind::User(u) => {
                for r in u.tool_results() {
                    let status = if r.is_error { "refused/failed" } else { "ok" };
                    println!("  -> {status}: {}", r.text().trim());
                }
            }
            MessageKind::Result(r) => println!("-- {} after {} turn(s)", r.subtype, r.num_turns),
            _ => {}
        }
    }

    // Offline, FakeModel recorded what the model was sent: the note is in there.
    if let Some(offline) = &offline {
        let seen = offline.model.message_requests().iter().any(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b.to_string().contains(NOTE))
        });
        println!("the model received the PostToolUse note: {seen}");
    }
    Ok(())
}
