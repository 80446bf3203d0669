//! Shared end-to-end test suites of claude-conduit, as a library (not published).
//!
//! A suite is a set of `pub async fn(&dyn Backend)`: the same tests run wherever a session can
//! run. The SDK's `tests/e2e_callbacks.rs` runs them on a local subprocess ([`Subprocess`]);
//! the gateway's `tests/callbacks.rs` through a real gateway over each wire (its own
//! [`Backend`]). A test file turns a suite into `#[tokio::test]`s with one macro call:
//!
//! ```ignore
//! claude_conduit_suite::callback_tests!(claude_conduit_suite::Subprocess);
//! ```
//!
//! This crate depends on the SDK and the test kit; the test kit does not depend on the SDK (so
//! the SDK's own unit tests can use it without two copies of the SDK's types), which is why the
//! suites live here and not there.
// Test code: a failed expectation is a test failure, reported by the panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::time::Duration;

use claude_conduit::{Error, Message, Options, options::OptionsBuilder};
use claude_conduit_testkit::{CliEnv, FakeModel, Turn};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};

pub mod callbacks;
pub mod extend;

/// Where a suite's sessions run.
pub trait Backend: Send + Sync {
    /// Options that reach the pinned real CLI set up in `env` (its path, environment and working
    /// directory), and whatever must stay alive while the test runs (a gateway, say; dropped at
    /// the end of the test).
    fn connect<'a>(
        &'a self,
        env: &'a CliEnv,
    ) -> BoxFuture<'a, (OptionsBuilder, Box<dyn Any + Send + Sync>)>;
}

/// The local subprocess: the SDK runs the CLI itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subprocess;

impl Backend for Subprocess {
    fn connect<'a>(
        &'a self,
        env: &'a CliEnv,
    ) -> BoxFuture<'a, (OptionsBuilder, Box<dyn Any + Send + Sync>)> {
        Box::pin(async move {
            (
                local_options(env),
                Box::new(()) as Box<dyn Any + Send + Sync>,
            )
        })
    }
}

/// Options that run the CLI of `env` as a local subprocess (the CLI path, its environment and
/// working directory). A gateway backend uses them as its options template.
pub fn local_options(env: &CliEnv) -> OptionsBuilder {
    let mut b = Options::builder()
        .cli_path(env.cli_path())
        .cwd(env.cwd())
        .envs(env.envs());
    for k in env.vars_to_remove() {
        b = b.env_remove(k);
    }
    b
}

/// One test's world: a FakeModel with scripted turns, the pinned real CLI's scratch environment
/// pointed at it, and options that reach that CLI through the backend.
pub struct RealCli {
    /// The fake Messages API the CLI talks to.
    pub model: FakeModel,
    /// The CLI's scratch home and working directory.
    pub env: CliEnv,
    options: OptionsBuilder,
    _keep: Box<dyn Any + Send + Sync>,
}

impl RealCli {
    /// Start a FakeModel with `turns`, install (if needed) the pinned CLI, and connect `backend`.
    pub async fn start(backend: &dyn Backend, turns: Vec<Turn>) -> RealCli {
        let model = FakeModel::builder()
            .turns(turns)
            .start()
            .await
            .expect("fake model");
        // Resolve (and install if needed) the pinned CLI before HOME is overridden.
        let cli = tokio::task::spawn_blocking(claude_conduit_testkit::ensure_pinned_cli)
            .await
            .expect("join")
            .expect("the pinned claude CLI (scripts/install-cli.sh)");
        let env = model.cli_env_with(cli).expect("cli env");
        let (options, keep) = backend.connect(&env).await;
        RealCli {
            model,
            env,
            options,
            _keep: keep,
        }
    }

    /// Options for a session on this world's CLI (the CLI's first reply may take a while: a
    /// 60 s initialize timeout).
    pub fn options(&self) -> OptionsBuilder {
        self.options
            .clone()
            .initialize_timeout(Duration::from_secs(60))
    }
}

/// Collect a stream with a deadline (a hang fails the test instead of stalling it).
pub async fn collect<S: Stream<Item = Result<Message, Error>>>(
    s: S,
    within: Duration,
) -> Vec<Result<Message, Error>> {
    tokio::time::timeout(within, s.collect::<Vec<_>>())
        .await
        .expect("stream did not end in time")
}

/// The type names of messages (`system/init`, `assistant`, `error: …`), for order assertions.
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

/// Calls `$m!($backend, name)` for every test of the callback suite (the one list of them).
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_callback_test {
    ($m:ident, $backend:expr) => {
        $m!(
            $backend,
            permission_allow_runs_the_tool_and_its_result_reaches_the_model
        );
        $m!(
            $backend,
            permission_allow_with_modified_input_runs_the_rewritten_command
        );
        $m!(
            $backend,
            permission_deny_reaches_the_model_as_an_error_and_is_listed_in_the_result
        );
        $m!(
            $backend,
            permission_deny_with_interrupt_ends_the_turn_and_the_session_goes_on
        );
        $m!(
            $backend,
            permission_allow_always_rule_is_not_asked_again_in_the_same_session
        );
        $m!(
            $backend,
            permission_allow_always_for_a_file_write_is_not_asked_again_in_the_same_session
        );
        $m!(
            $backend,
            interrupt_while_a_permission_callback_is_pending_cancels_and_drops_it
        );
        $m!(
            $backend,
            pre_tool_use_hook_deny_blocks_the_tool_and_the_model_sees_the_reason
        );
        $m!(
            $backend,
            pre_tool_use_hook_allow_skips_the_permission_callback
        );
        $m!(
            $backend,
            post_tool_use_additional_context_reaches_the_next_model_request
        );
        $m!(
            $backend,
            user_prompt_submit_hook_sees_the_prompt_and_its_context_reaches_the_model
        );
        $m!(
            $backend,
            stop_hook_fires_once_after_the_last_assistant_and_before_the_result
        );
        $m!(
            $backend,
            a_hook_output_with_continue_false_stops_the_agent_after_the_tool
        );
        $m!(
            $backend,
            interrupt_while_a_pre_tool_use_hook_is_pending_cancels_and_drops_it
        );
        $m!(
            $backend,
            sdk_mcp_typed_tool_is_called_by_the_model_end_to_end
        );
        $m!(
            $backend,
            sdk_mcp_tool_error_reaches_the_model_as_an_error_result
        );
        $m!(
            $backend,
            sdk_mcp_tool_panic_is_an_error_result_and_the_session_survives
        );
        $m!(
            $backend,
            json_schema_structured_output_comes_back_in_the_result
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __callback_test {
    ($backend:expr, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::callbacks::$name(&$backend).await
        }
    };
}

/// Every test of [`callbacks`] as a `#[tokio::test]` of the calling test file, run on
/// `$backend` (an expression of a type that implements [`Backend`], evaluated per test).
#[macro_export]
macro_rules! callback_tests {
    ($backend:expr) => {
        use $crate::__callback_test as __conduit_callback_test;
        $crate::__for_each_callback_test!(__conduit_callback_test, $backend);
    };
}

#[cfg(test)]
mod tests {
    macro_rules! name_of {
        ($names:expr, $name:ident) => {
            $names.insert(stringify!($name));
        };
    }

    /// The macro's list and the suite's `pub async fn`s are the same set: a new test cannot be
    /// left out of the generated ones.
    #[test]
    fn the_macro_lists_every_test_of_the_suite() {
        let mut listed = std::collections::BTreeSet::new();
        crate::__for_each_callback_test!(name_of, listed);
        let source = include_str!("callbacks.rs");
        let defined: std::collections::BTreeSet<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|l| l.split_once('(').map_or(l, |(name, _)| name))
            .collect();
        assert!(defined.len() >= 18, "{defined:?}");
        assert_eq!(listed, defined);
    }
}
