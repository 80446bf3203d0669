//! The SDK's whole callback suite (permission callbacks, hooks, in-process MCP tools,
//! structured output; `claude_conduit_suite::callbacks`) with the REAL pinned `claude` CLI and
//! FakeModel, through a real gateway on 127.0.0.1 over each wire: the same tests the SDK runs on a
//! local subprocess (`crates/conduit/tests/e2e_callbacks.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::net::SocketAddr;
use std::time::Duration;

use claude_conduit::Options;
use claude_conduit::options::OptionsBuilder;
use claude_conduit_gateway::GatewayConfig;
use claude_conduit_suite::{Backend, local_options};
use claude_conduit_testkit::CliEnv;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

const TOKEN: &str = "callback-suite-token";

/// A gateway serving the test's CLI, reached over `scheme` (`ws`, `http` or `grpc`). Its
/// options template carries what local options would (CLI path, environment, cwd); the
/// session's options reach it through `Options::transport(<scheme>://addr, token)`.
struct Gateway(&'static str);

impl Backend for Gateway {
    fn connect<'a>(
        &'a self,
        env: &'a CliEnv,
    ) -> BoxFuture<'a, (OptionsBuilder, Box<dyn Any + Send + Sync>)> {
        Box::pin(async move {
            let scheme = self.0;
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let mut config = GatewayConfig::new()
                .listen(loopback)
                .token(TOKEN)
                .options(local_options(env).build())
                .close_grace(Duration::from_secs(2))
                .state_dir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gateway-state"));
            if scheme == "grpc" {
                config = config.grpc_listen(loopback);
            }
            let gateway = claude_conduit_gateway::Gateway::bind(config)
                .await
                .expect("bind the gateway");
            let addr = match scheme {
                "grpc" => gateway.grpc_addr().expect("a gRPC listener"),
                _ => gateway.local_addr(),
            };
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(gateway.run(async move {
                let _ = stopped.await;
            }));
            let options = Options::builder().transport(format!("{scheme}://{addr}"), TOKEN);
            // Dropping the sender (at the end of the test) shuts the gateway down.
            (options, Box::new(stop) as Box<dyn Any + Send + Sync>)
        })
    }
}

mod ws {
    claude_conduit_suite::callback_tests!(super::Gateway("ws"));

    // The extension suite (event bus, middleware, audit and redaction) over the same wire.
    use claude_conduit_suite::extend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn extend_bus_deny_beats_allow_for_a_real_pre_tool_use() {
        extend::bus_low_priority_deny_beats_high_priority_allow_for_a_real_pre_tool_use(
            &super::Gateway("ws"),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn extend_three_layers_order() {
        extend::three_layers_over_a_real_session_run_before_outside_in_and_after_inside_out(
            &super::Gateway("ws"),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn extend_audit_and_redaction() {
        extend::audit_lines_cover_both_ways_and_redaction_comes_first(&super::Gateway("ws")).await;
    }
}

mod http {
    claude_conduit_suite::callback_tests!(super::Gateway("http"));
}

mod grpc {
    claude_conduit_suite::callback_tests!(super::Gateway("grpc"));
}

/// The same suite through Redis Streams (docs/SCALE.md): a real redis-server and two workers
/// run the CLI; the client reaches them through a gateway in `--redis` mode over WebSocket
/// (`Gateway` = false) or straight through Redis (`redis://`, true). Permission callbacks, hooks
/// and SDK MCP tools are answered by the remote client: their control frames travel through
/// Redis like every frame.
struct ThroughRedis {
    direct: bool,
}

impl Backend for ThroughRedis {
    fn connect<'a>(
        &'a self,
        env: &'a CliEnv,
    ) -> BoxFuture<'a, (OptionsBuilder, Box<dyn Any + Send + Sync>)> {
        Box::pin(async move {
            use claude_conduit_gateway::scale::{RedisSettings, Worker, WorkerSettings};
            let redis = claude_conduit_testkit::RedisServer::start().expect("redis-server");
            let url = redis.url();
            let settings = RedisSettings::new(&url)
                .heartbeat(Duration::from_secs(2))
                .claim_idle(Duration::from_secs(1));
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let config = GatewayConfig::new()
                .listen(loopback)
                .token(TOKEN)
                .options(local_options(env).build())
                .close_grace(Duration::from_secs(2))
                .state_dir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gateway-state"));
            let mut stops = Vec::new();
            for name in ["w1", "w2"] {
                let worker = Worker::new(
                    config.clone(),
                    WorkerSettings {
                        redis: settings.clone(),
                        name: name.into(),
                        max_sessions: 8,
                    },
                )
                .expect("worker");
                let (stop, stopped) = oneshot::channel::<()>();
                tokio::spawn(worker.run(async move {
                    let _ = stopped.await;
                }));
                stops.push(stop);
            }
            let options = if self.direct {
                Options::builder().transport_url(url)
            } else {
                let gateway = claude_conduit_gateway::Gateway::bind(config.redis(settings))
                    .await
                    .expect("bind the gateway");
                let addr = gateway.local_addr();
                let (stop, stopped) = oneshot::channel::<()>();
                tokio::spawn(gateway.run(async move {
                    let _ = stopped.await;
                }));
                stops.push(stop);
                Options::builder().transport(format!("ws://{addr}"), TOKEN)
            };
            // Dropped at the end of the test: the gateway and the workers stop, then Redis.
            (
                options,
                Box::new((stops, redis)) as Box<dyn Any + Send + Sync>,
            )
        })
    }
}

mod redis_gateway {
    claude_conduit_suite::callback_tests!(super::ThroughRedis { direct: false });
}

mod redis_direct {
    claude_conduit_suite::callback_tests!(super::ThroughRedis { direct: true });
}
