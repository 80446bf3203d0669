//! Interrupting a turn, then going on with the same session:
//! `cargo run -p claude-conduit --example interrupt -- --offline`
//! (drop `--offline` to use your own account).

mod common;

use std::time::Duration;

use claude_conduit::Client;
use claude_conduit::testkit::Turn;
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (options, _offline) = common::options(vec![
        // A slow answer: FakeModel waits a second, then streams four characters every 300 ms.
        Turn::text("Once upon a time, a lighthouse keeper kept a light on a rock in the sea.")
            .delay(Duration::from_secs(1))
            .chunk_chars(4)
            .chunk_delay(Duration::from_millis(300)),
        Turn::text("4"),
    ])
    .await?;
    // Partial messages: the turn's first event arrives as soon as the model starts answering.
    let client =
        Client::connect(options.to_builder().include_partial_messages(true).build()).await?;

    println!("> Write a 5000-word story about a lighthouse keeper.");
    client
        .send("Write a 5000-word story about a lighthouse keeper.")
        .await?;
    {
        let mut replies = client.receive_response();
        let mut interrupted = false;
        while let Some(msg) = replies.next().await {
            let msg = msg?;
            // Stop the turn at the model's first message; the turn still ends with a `result`.
            if !interrupted && !msg.is_system() {
                println!(
                    "first message from the model: {}; interrupting",
                    msg.type_name()
                );
                client.interrupt().await?;
                interrupted = true;
            }
            if let Some(r) = msg.as_result() {
                println!("-- result: {} (is_error: {})", r.subtype, r.is_error);
            }
        }
    }

    // The session is still usable.
    println!("> What is 2 + 2? Answer with the number only.");
    client
        .send("What is 2 + 2? Answer with the number only.")
        .await?;
    let mut replies = client.receive_response();
    while let Some(msg) = replies.next().await {
        let msg = msg?;
        if let Some(a) = msg.as_assistant() {
            println!("{}", a.text());
        }
        if let Some(r) = msg.as_result() {
            println!("-- result: {} (is_error: {})", r.subtype, r.is_error);
        }
    }
    drop(replies);
    client.disconnect().await?;
    Ok(())
}
