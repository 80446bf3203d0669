//! Hooks: your code, called by the CLI at fixed points of its agent loop (before and after a
//! tool runs, when a prompt is submitted, before the agent stops, …).
//!
//! How it works on the wire:
//!
//! 1. You build a [`Hooks`] registry: per [`HookEvent`], [`HookMatcher`]s (a pattern such as
//!    `"Bash"`, `"Write|Edit"` or `"mcp__.*"`) each running one or more [`HookCallback`]s.
//! 2. [`Hooks::registration`] numbers the callbacks `hook_0`, `hook_1`, … and gives the
//!    initialize request's `hooks` field:
//!    `{"PreToolUse":[{"matcher":"Bash","hookCallbackIds":["hook_0"],"timeout":60}]}`.
//! 3. When an event fires and a matcher matches (the CLI evaluates matchers), the CLI sends a
//!    `hook_callback` control request with `callback_id`, `input` and `tool_use_id`.
//!    [`answer`] (or [`dispatch`]) parses `input` into a typed [`HookInput`], runs the callback
//!    and returns its [`HookOutput`] in wire form, for the success control response. The
//!    callbacks of all matching matchers run concurrently.
//!
//! A callback is any async closure `|input, tool_use_id| async move { … HookOutput }`; use
//! [`HookMatcher::try_callback`] / [`fallible`] for one that can fail (an error becomes an
//! error control response), or implement [`HookCallback`] for a type. Callbacks are cancelled
//! by drop when the CLI withdraws the request (see [`HookCallback`]).
//!
//! # Example: deny `rm` in Bash
//!
//! ```
//! use claude_conduit::hooks::{answer, HookEvent, HookInput, HookMatcher, HookOutput, Hooks};
//! use serde_json::json;
//!
//! let hooks = Hooks::new().on(
//!     HookEvent::PreToolUse,
//!     HookMatcher::new("Bash").callback(|input: HookInput, _tool_use_id| async move {
//!         let command = input.tool_input().and_then(|i| i["command"].as_str()).unwrap_or("");
//!         if command.split_whitespace().any(|word| word == "rm") {
//!             HookOutput::deny_tool("rm is not allowed here")
//!         } else {
//!             HookOutput::default()
//!         }
//!     }),
//! );
//!
//! // What the initialize request carries, and the callbacks by id.
//! let registration = hooks.registration();
//! assert_eq!(
//!     registration.config,
//!     json!({"PreToolUse": [{"matcher": "Bash", "hookCallbackIds": ["hook_0"]}]})
//! );
//!
//! // A `hook_callback` request from the CLI (its `request` object).
//! let body = json!({
//!     "subtype": "hook_callback",
//!     "callback_id": "hook_0",
//!     "input": {
//!         "session_id": "s1", "transcript_path": "/tmp/s1.jsonl", "cwd": "/work",
//!         "permission_mode": "default", "hook_event_name": "PreToolUse",
//!         "tool_name": "Bash", "tool_input": {"command": "rm -rf build"},
//!         "tool_use_id": "toolu_1"
//!     },
//!     "tool_use_id": "toolu_1"
//! });
//! let body = body.as_object().cloned().unwrap_or_default();
//! let reply = futures::executor::block_on(answer(&registration.callbacks, &body));
//! assert_eq!(
//!     reply,
//!     Ok(Some(json!({"hookSpecificOutput": {
//!         "hookEventName": "PreToolUse",
//!         "permissionDecision": "deny",
//!         "permissionDecisionReason": "rm is not allowed here"
//!     }})))
//! );
//! ```

mod callback;
mod event;
mod input;
mod output;
mod registry;

pub use callback::{Fallible, HookCallback, fallible};
pub use event::HookEvent;
pub use input::{
    HookContext, HookInput, McpServerProvenance, ModelSwitchInput, NotificationInput,
    OtherHookInput, PermissionDeniedInput, PermissionRequestInput, PostCompactInput,
    PostToolBatchInput, PostToolUseFailureInput, PostToolUseInput, PreCompactInput,
    PreToolUseInput, SessionEndInput, SessionStartInput, StopFailureInput, StopInput,
    SubagentStartInput, SubagentStopInput, ToolCall, UserPromptExpansionInput,
    UserPromptSubmitInput,
};
pub use output::{
    GenericHookOutput, HookDecision, HookOutput, HookSpecificOutput, PermissionRequestDecision,
    PermissionRequestOutput, PostToolUseOutput, PreToolUseDecision, PreToolUseOutput,
    SessionStartOutput, UserPromptSubmitOutput,
};
pub use registry::{HookMatcher, HookRegistration, Hooks, answer, dispatch, dispatch_owned};

#[cfg(test)]
mod tests;
