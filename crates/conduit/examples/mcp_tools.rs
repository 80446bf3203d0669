//! An in-process MCP tool the model can call:
//! `cargo run -p claude-conduit --example mcp_tools -- --offline`
//! (drop `--offline` to use your own account).
//!
//! The tool's arguments are a Rust type; its JSON schema is generated from it. The CLI reaches
//! the server through the SDK (no process, no port), and the model sees it as `mcp__calc__add`.

mod common;

use claude_conduit::mcp::{SdkMcpServer, SdkTool, ToolOutput};
use claude_conduit::schemars::JsonSchema;
use claude_conduit::testkit::Turn;
use claude_conduit::{MessageKind, query};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

/// The arguments of `add`; the doc comments become the schema's descriptions.
#[derive(Deserialize, JsonSchema)]
// schemars comes re-exported with the SDK (no dependency of your own); a derive through the
// re-export names its path:
#[schemars(crate = "claude_conduit::schemars")]
struct Add {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (options, _offline) = common::options(vec![
        Turn::tool_use("mcp__calc__add", json!({"a": 2, "b": 40})),
        Turn::text("2 + 40 = 42"),
    ])
    .await?;

    let add = SdkTool::typed("add", "Add two numbers", |args: Add| async move {
        println!("  [add] called with a={} b={}", args.a, args.b);
        Ok(ToolOutput::text((args.a + args.b).to_string()))
    });
    let calc = SdkMcpServer::builder("calc").tool(add).build();
    let options = options
        .to_builder()
        // Let the model call the server's tools without a permission prompt.
        .allowed_tools(calc.tool_names())
        .sdk_mcp_server(calc)
        .build();

    let prompt = "What is 2 + 40? Use the add tool, then answer in a few words.";
    let mut stream = query(prompt, options);
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
                    println!("  -> tool result: {}", r.text());
                }
            }
            MessageKind::Result(r) => println!("-- {} after {} turn(s)", r.subtype, r.num_turns),
            _ => {}
        }
    }
    Ok(())
}
