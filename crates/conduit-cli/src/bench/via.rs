//! `--via`: the SDK side of a workload goes through a conduit gateway.
//!
//! `ws`, `http` and `grpc` start a gateway inside this process, on the SDK side's runtime, bound
//! to 127.0.0.1 (HTTP/WebSocket and gRPC listeners on free ports) with a random token. Its CLI
//! is this executable through a `mock-claude` link (the mock) with the workload's knobs, so the
//! gateway's CLI is the one the floor runs. A URL uses a running gateway instead, except
//! `redis://…`: the SDK side goes straight through that Redis (the Redis transport) to a
//! `conduit worker` started inside this process with the same mock CLI (docs/SCALE.md).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use claude_conduit::Options;
use claude_conduit_gateway::GatewayConfig;

use super::{Common, Target};

/// Where the SDK side connects.
#[derive(Clone)]
pub struct Via {
    url: String,
    token: String,
    embedded: bool,
}

impl Via {
    /// The SDK side's options: the target's, sent to the gateway.
    pub fn options(&self, base: &Options) -> Options {
        base.to_builder()
            .transport(self.url.clone(), self.token.clone())
            .build()
    }

    pub fn describe(&self) -> String {
        if is_redis(&self.url) {
            format!(
                "{} (a worker in this process)",
                claude_conduit::remote::redact_url(&self.url)
            )
        } else if self.embedded {
            format!("{} (gateway in this process)", self.url)
        } else {
            self.url.clone()
        }
    }
}

/// Start (or name) the gateway `common.via` asks for and put it on `target`.
pub fn attach(mut target: Target, common: &Common, rt: &tokio::runtime::Runtime) -> Result<Target> {
    let Some(via) = &common.via else {
        return Ok(target);
    };
    if is_redis(via) {
        start_worker(&target, via, rt)?;
        target.via = Some(Via {
            url: via.clone(),
            token: String::new(),
            embedded: true,
        });
        return Ok(target);
    }
    if via.contains("://") {
        let token = crate::query::gateway_token(common.token_file.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        target.via = Some(Via {
            url: via.clone(),
            token,
            embedded: false,
        });
        return Ok(target);
    }
    let scheme = match via.as_str() {
        "ws" | "http" | "grpc" => via.as_str(),
        other => bail!("--via {other}: expected ws, http, grpc or a URL"),
    };
    let mut h = RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    let token = format!("bench-{:016x}", h.finish());
    let template = mock_template(&target)?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = GatewayConfig::new()
        .listen(loopback)
        .grpc_listen(loopback)
        .token(token.clone())
        .max_sessions_per_token(1024)
        .options(template.build());
    let (http, grpc) = rt.block_on(async {
        let gateway = claude_conduit_gateway::Gateway::bind(config)
            .await
            .context("starting the gateway")?;
        let http = gateway.local_addr();
        let grpc = gateway.grpc_addr().context("the gateway's gRPC listener")?;
        // Serves until the runtime is dropped at the end of the bench.
        tokio::spawn(gateway.run(std::future::pending()));
        anyhow::Ok((http, grpc))
    })?;
    let url = match scheme {
        "grpc" => format!("grpc://{grpc}"),
        s => format!("{s}://{http}"),
    };
    target.via = Some(Via {
        url,
        token,
        embedded: true,
    });
    Ok(target)
}

fn is_redis(url: &str) -> bool {
    let scheme = url.split("://").next().unwrap_or_default();
    scheme.eq_ignore_ascii_case("redis") || scheme.eq_ignore_ascii_case("rediss")
}

/// The CLI of an embedded gateway or worker: this executable as `mock-claude`, with the target's
/// environment (knobs).
fn mock_template(target: &Target) -> Result<claude_conduit::options::OptionsBuilder> {
    let program = if target.prefix.is_empty() {
        target.program.clone()
    } else {
        super::mock_link()?
    };
    let mut template = Options::builder().cli_path(program);
    for (k, v) in target.options.env_changes() {
        template = match v {
            Some(v) => template.env(k, v),
            None => template.env_remove(k),
        };
    }
    Ok(template)
}

/// A `conduit worker` for the Redis at `url`, in this process, running the target's mock.
fn start_worker(target: &Target, url: &str, rt: &tokio::runtime::Runtime) -> Result<()> {
    use claude_conduit_gateway::scale::{RedisSettings, Worker, WorkerSettings};
    let config = GatewayConfig::new()
        .max_sessions_per_token(1024)
        .options(mock_template(target)?.build());
    rt.block_on(async {
        let worker = Worker::new(
            config,
            WorkerSettings {
                redis: RedisSettings::new(url),
                name: format!("bench-{}", std::process::id()),
                max_sessions: 1024,
            },
        )
        .map_err(|e| anyhow::anyhow!("starting the worker: {e}"))?;
        // Serves until the runtime is dropped at the end of the bench.
        tokio::spawn(worker.run(std::future::pending()));
        anyhow::Ok(())
    })
}
