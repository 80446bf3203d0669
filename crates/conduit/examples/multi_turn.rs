//! A conversation on one CLI process: `cargo run -p claude-conduit --example multi_turn -- --offline`.

mod common;

use claude_conduit::Client;
use claude_conduit::testkit::Turn;
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (options, _offline) = common::options(vec![
        Turn::text("Nice to meet you, Ada."),
        Turn::text("Your name is Ada."),
    ])
    .await?;
    let client = Client::connect(options).await?;
    println!(
        "claude {} (pid {:?})",
        client.cli_version().unwrap_or("?"),
        client.pid()
    );
    for prompt in ["Hi, my name is Ada.", "What is my name?"] {
        println!("> {prompt}");
        client.send(prompt).await?;
        let mut replies = client.receive_response();
        while let Some(msg) = replies.next().await {
            let msg = msg?;
            if let Some(a) = msg.as_assistant() {
                println!("{}", a.text());
            }
            if let Some(r) = msg.as_result() {
                println!("-- turn cost ${:.4}", r.turn_cost_usd.unwrap_or_default());
            }
        }
    }
    let end = client.disconnect().await?;
    println!("CLI exited with {:?}", end.and_then(|t| t.code));
    Ok(())
}
