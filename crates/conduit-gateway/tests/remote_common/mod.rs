//! The `common` module of the callback suite (`crates/conduit/tests/suite/callbacks.rs`), backed
//! by a real gateway: the pinned real CLI runs behind `claude_conduit_gateway` on 127.0.0.1, and
//! the suite's options reach it through `Options::transport(<scheme>://addr, token)`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use claude_conduit::{Error, Message, Options, options::OptionsBuilder};
use claude_conduit_gateway::GatewayConfig;
use claude_conduit_testkit::{CliEnv, FakeModel, Turn};
use futures::{Stream, StreamExt};
use tokio::sync::oneshot;

const TOKEN: &str = "callback-suite-token";

/// A FakeModel with `turns`, the pinned real CLI's scratch environment, and a gateway serving
/// that CLI. Dropping it shuts the gateway down.
pub struct RealCli {
    pub model: FakeModel,
    pub env: CliEnv,
    url: String,
    _stop: oneshot::Sender<()>,
}

impl RealCli {
    pub async fn start(turns: Vec<Turn>) -> RealCli {
        let model = FakeModel::builder()
            .turns(turns)
            .start()
            .await
            .expect("fake model");
        let cli = tokio::task::spawn_blocking(claude_conduit_testkit::ensure_pinned_cli)
            .await
            .expect("join")
            .expect("the pinned claude CLI (scripts/install-cli.sh)");
        let env = model.cli_env_with(cli).expect("cli env");
        // The gateway's template carries what the local options would: CLI, env, cwd.
        let mut template = Options::builder()
            .cli_path(env.cli_path())
            .cwd(env.cwd())
            .envs(env.envs());
        for k in env.vars_to_remove() {
            template = template.env_remove(k);
        }
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = GatewayConfig::new()
            .listen(loopback)
            .token(TOKEN)
            .options(template.build())
            .close_grace(Duration::from_secs(2));
        if super::SCHEME == "grpc" {
            config = config.grpc_listen(loopback);
        }
        let gateway = claude_conduit_gateway::Gateway::bind(config)
            .await
            .expect("bind the gateway");
        let addr = match super::SCHEME {
            "grpc" => gateway.grpc_addr().expect("a gRPC listener"),
            _ => gateway.local_addr(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(gateway.run(async move {
            let _ = stopped.await;
        }));
        RealCli {
            model,
            env,
            url: format!("{}://{addr}", super::SCHEME),
            _stop: stop,
        }
    }

    /// Options that run the session on the gateway.
    pub fn options(&self) -> OptionsBuilder {
        Options::builder()
            .transport(self.url.clone(), TOKEN)
            .initialize_timeout(Duration::from_secs(60))
    }
}

/// Collect a stream with a deadline.
pub async fn collect<S: Stream<Item = Result<Message, Error>>>(
    s: S,
    within: Duration,
) -> Vec<Result<Message, Error>> {
    tokio::time::timeout(within, s.collect::<Vec<_>>())
        .await
        .expect("stream did not end in time")
}

/// The type names of messages, for order assertions.
pub fn types(items: &[Result<Message, Error>]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Ok(m) => match m.subtype() {
                Some(s) => format!("{}/{}", m.type_name(), s),
                None => m.type_name().to_owned(),
            },
            Err(e) => format!("error: {e}"),
        })
        .collect()
}
