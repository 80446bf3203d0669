//! Answering the CLI's permission requests with a policy:
//! `cargo run -p claude-conduit --example permissions -- --offline`
//! (drop `--offline` to let your own model try the same steps, in a scratch directory).
//!
//! The CLI asks the SDK about every tool call it would otherwise ask a person about. Here a
//! [`PolicyHandler`] answers: deny rules first, then allow rules, then a closure for the rest.

mod common;

use claude_conduit::permission::policy::{AllowList, Chain, DenyList, PolicyHandler};
use claude_conduit::permission::{PermissionDecision, PermissionRequest};
use claude_conduit::testkit::Turn;
use claude_conduit::{MessageKind, query};
use futures::StreamExt;
use serde_json::json;

const PROMPT: &str = "Using one Bash call per step: delete the build directory with `rm -rf build`, \
    create the directory out/logs with `mkdir out/logs`, then fetch https://example.com with curl. \
    Then say in one sentence what happened.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Offline, FakeModel plays the model: three Bash calls, then a summary.
    let bash = |command: &str| Turn::tool_use("Bash", json!({ "command": command }));
    let (options, offline) = common::options(vec![
        bash("rm -rf build"),
        bash("mkdir out/logs"),
        bash("curl -s https://example.com"),
        Turn::text("rm and curl were refused; out/logs was created."),
    ])
    .await?;

    // Deny first, so that a deny rule wins over an allow rule.
    let policy = Chain::new()
        .with(DenyList::parse(["Bash(rm *)"])?)
        .with(AllowList::parse(["Bash(ls *)"])?);
    // Calls no rule decides: `mkdir` runs as `mkdir -p` (a rewritten input), the rest is denied.
    let handler = PolicyHandler::new(policy).fallback(|req: PermissionRequest| async move {
        let command = req.input_str("command").unwrap_or_default();
        if let Some(dirs) = command.strip_prefix("mkdir ") {
            let mut input = req.input.clone();
            input["command"] = json!(format!("mkdir -p {dirs}"));
            println!("  (fallback: allowing `{command}` as `mkdir -p {dirs}`)");
            PermissionDecision::allow_with_input(input)
        } else {
            println!("  (fallback: denying {} `{command}`)", req.tool_name);
            PermissionDecision::deny(format!("{} is not allowed in this example", req.tool_name))
        }
    });

    // With your own account, work in a scratch directory rather than here.
    let scratch = tempfile::tempdir()?;
    let mut options = options.to_builder().can_use_tool(handler);
    if offline.is_none() {
        options = options.cwd(scratch.path());
    }
    let options = options.build();
    let cwd = options.cwd().unwrap_or(scratch.path()).to_path_buf();

    let mut stream = query(PROMPT, options);
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
    println!("out/logs exists: {}", cwd.join("out/logs").is_dir());
    Ok(())
}
