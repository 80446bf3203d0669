//! [`HookCallback`]: the code that runs when the CLI fires a hook.

use std::fmt::Display;
use std::future::Future;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{HookInput, HookOutput};

/// A hook callback: answers one `hook_callback` request.
///
/// `tool_use_id` is the request's `tool_use_id`: the tool call's id for tool events, a random
/// UUID for the others (as the CLI sends it).
///
/// An `Err(message)` is answered with a control *error* response carrying `message`; the CLI
/// treats the hook as failed. What it does then is the CLI's choice (newer CLIs accept a
/// per-matcher `onFailure: "continue" | "block"`); return an explicit output such as
/// [`HookOutput::deny_tool`] when a failure must block.
///
/// **Cancellation is by drop.** The returned future runs on its own task; when the CLI withdraws
/// the request (`control_cancel_request`, e.g. on interrupt) or the session ends, the engine
/// aborts that task, so the future is dropped at its next `.await` and no answer is sent. Put
/// clean-up in `Drop` guards, not after an `.await`. The CLI also enforces the matcher's
/// `timeout` on its side.
///
/// Implemented for every async closure `Fn(HookInput, Option<String>) -> impl Future<Output =
/// HookOutput>` (the common, infallible case); wrap a closure returning `Result<HookOutput, E>`
/// in [`fallible`]. Implement the trait directly for a type that holds state.
///
/// ```
/// use claude_conduit::hooks::{HookCallback, HookInput, HookOutput};
/// use futures::future::BoxFuture;
///
/// struct DenyAll;
///
/// impl HookCallback for DenyAll {
///     fn call(&self, _input: HookInput, _id: Option<String>) -> BoxFuture<'static, Result<HookOutput, String>> {
///         Box::pin(async { Ok(HookOutput::deny_tool("read-only session")) })
///     }
/// }
/// ```
pub trait HookCallback: Send + Sync + 'static {
    /// Answers one hook event.
    fn call(
        &self,
        input: HookInput,
        tool_use_id: Option<String>,
    ) -> BoxFuture<'static, Result<HookOutput, String>>;
}

impl<F, Fut> HookCallback for F
where
    F: Fn(HookInput, Option<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HookOutput> + Send + 'static,
{
    fn call(
        &self,
        input: HookInput,
        tool_use_id: Option<String>,
    ) -> BoxFuture<'static, Result<HookOutput, String>> {
        self(input, tool_use_id).map(Ok).boxed()
    }
}

/// A [`HookCallback`] made from a closure that can fail; see [`fallible`].
#[derive(Clone)]
pub struct Fallible<F>(F);

impl<F> std::fmt::Debug for Fallible<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fallible(..)")
    }
}

/// Wraps a closure returning `Result<HookOutput, E>` as a [`HookCallback`]; an `Err(e)` is
/// answered with a control error response carrying `e.to_string()`.
///
/// ```
/// use claude_conduit::hooks::{HookEvent, HookInput, HookMatcher, HookOutput, Hooks, fallible};
///
/// let hooks = Hooks::new().on(
///     HookEvent::PreToolUse,
///     HookMatcher::all().hook(fallible(|input: HookInput, _id: Option<String>| async move {
///         let name = input.tool_name().ok_or("no tool name")?;
///         Ok::<_, &str>(HookOutput::allow_tool(format!("{name} is fine")))
///     })),
/// );
/// assert_eq!(hooks.registration().callbacks.len(), 1);
/// ```
pub fn fallible<F, Fut, E>(f: F) -> Fallible<F>
where
    F: Fn(HookInput, Option<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HookOutput, E>> + Send + 'static,
    E: Display,
{
    Fallible(f)
}

impl<F, Fut, E> HookCallback for Fallible<F>
where
    F: Fn(HookInput, Option<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HookOutput, E>> + Send + 'static,
    E: Display,
{
    fn call(
        &self,
        input: HookInput,
        tool_use_id: Option<String>,
    ) -> BoxFuture<'static, Result<HookOutput, String>> {
        (self.0)(input, tool_use_id)
            .map(|result| result.map_err(|e| e.to_string()))
            .boxed()
    }
}
