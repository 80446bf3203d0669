//! Offline test kit for claude-conduit.
//!
//! * [`fake_model`]: [`FakeModel`], a scriptable fake of the Anthropic Messages API on
//!   `127.0.0.1`, good enough to drive the **real** `claude` CLI offline (see `docs/TESTKIT.md`).
//! * [`cli`]: install and locate the pinned CLI ([`ensure_pinned_cli`]) and [`CliEnv`], a scratch
//!   `HOME` + working directory + environment for running it against a [`FakeModel`].
//! * [`redis`]: [`RedisServer`], a real `redis-server` on a free loopback port for the Redis
//!   scale-out tests.

pub mod cli;
pub mod fake_model;

pub use cli::{
    CliEnv, CliError, PINNED_CLI_VERSION, ensure_pinned_cli, pinned_cli_dir, pinned_cli_path,
};
pub use fake_model::{
    Answer, Block, FakeModel, FakeModelBuilder, FakeModelError, Fallback, LoggedRequest,
    RequestKind, Turn,
};
pub mod mock_claude;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod redis;
pub use redis::{RedisError, RedisServer};
