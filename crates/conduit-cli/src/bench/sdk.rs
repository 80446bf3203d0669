//! The SDK side: the same CLI, argv and environment as the floor, driven through the public API
//! only (`Client::connect_with`, `Client::send`, `Client::receive_response`).

use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use claude_conduit::Client;
use futures::StreamExt;

use super::Target;

/// Start the CLI and initialize the session (what the startup workload times).
pub async fn connect(target: &Target) -> Result<Client> {
    if let Some(via) = &target.via {
        return Client::connect(via.options(&target.options))
            .await
            .context("sdk: connecting through the gateway");
    }
    let transport = target.transport()?;
    Client::connect_with(transport, target.options.clone())
        .await
        .context("sdk: connecting")
}

/// Send one user message and count the messages the public stream yields up to and including
/// the `result`.
pub async fn turn(client: &Client, text: &str) -> Result<u64> {
    client.send(text).await.context("sdk: sending")?;
    let mut stream = pin!(client.receive_response());
    let mut n = 0u64;
    let mut saw_result = false;
    while let Some(msg) = stream.next().await {
        let msg = msg.context("sdk: receiving")?;
        n += 1;
        saw_result = msg.is_result();
    }
    if !saw_result {
        bail!("sdk: the stream ended before the result ({n} messages)");
    }
    Ok(n)
}

/// End the session; not timed.
pub async fn close(client: Client) -> Result<()> {
    client.disconnect().await.context("sdk: disconnecting")?;
    Ok(())
}

/// One timed startup: `Client::connect_with` (spawn + initialize round trip), then the spawn
/// part as the transport measured it.
pub async fn startup(target: &Target) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let client = connect(target).await?;
    let total = t0.elapsed();
    let spawn = client.metrics().snapshot().connect_time;
    close(client).await?;
    Ok((total, spawn))
}
