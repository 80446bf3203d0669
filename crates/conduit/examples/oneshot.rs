//! One prompt, streamed: `cargo run -p claude-conduit --example oneshot -- --offline`
//! (drop `--offline` to use your own `claude` login or ANTHROPIC_API_KEY).

mod common;

use claude_conduit::testkit::Turn;
use claude_conduit::{MessageKind, query};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (options, _offline) = common::options(vec![Turn::text(
        "Rust's ownership makes memory safety a compile-time property.",
    )])
    .await?;
    let mut stream = query("Tell me one thing about Rust in one sentence.", options);
    while let Some(msg) = stream.next().await {
        match msg?.kind() {
            MessageKind::Assistant(a) => println!("{}", a.text()),
            MessageKind::Result(r) => println!(
                "-- {} turn(s), this turn cost ${:.4}",
                r.num_turns,
                r.turn_cost_usd.unwrap_or_default()
            ),
            _ => {}
        }
    }
    Ok(())
}
