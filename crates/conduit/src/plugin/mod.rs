//! Plugins: packages that contribute to the SDK's extension points, with manifests,
//! dependencies, a guarded lifecycle and three runtimes (cargo feature `plugins`; Rhai scripts
//! with `rhai`, hot reload with `hot-reload`). `docs/PLUGINS.md` is the full guide.
//!
//! Not to be confused with the `claude` CLI's own plugins (`--plugin-dir`: skills, commands):
//! these are SDK and gateway plugins (`conduit query --plugins DIR`, `conduit serve --plugins DIR`).
//!
//! * A plugin directory `DIR/NAME/` holds a [`Manifest`] (`plugin.toml`): name, semver version,
//!   runtime (`rhai` | `process` | `native`), entry, dependencies, a JSON Schema for its
//!   configuration.
//! * [`PluginManager`] resolves dependencies ([`resolve`]), validates each configuration,
//!   initializes plugins in dependency order and keeps their [`PluginState`]. Each plugin's
//!   hook handlers go on the manager's [`EventBus`] at the manifest's `priority`, so they combine
//!   with every other handler by the bus's rules (any deny wins, …); its MCP tools become an SDK
//!   MCP server named after the plugin ([`PluginManager::mcp_servers`]). Give a session the
//!   manager with [`OptionsBuilder::plugins`](crate::options::OptionsBuilder::plugins).
//! * Every runtime implements [`Plugin`]: native Rust plugins ([`NativePlugin`], registered in
//!   code), Rhai scripts, and coprocessors (JSON lines over a child's stdio).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use claude_conduit::hooks::{HookEvent, HookInput, HookOutput};
//! use claude_conduit::plugin::{Manifest, NativePlugin, Plugin, PluginContext, PluginManager, Runtime};
//! use futures::future::BoxFuture;
//!
//! struct NoRm;
//! impl Plugin for NoRm {
//!     fn hook_events(&self) -> Vec<HookEvent> { vec![HookEvent::PreToolUse] }
//!     fn on_hook(&self, input: HookInput, _: Option<String>)
//!         -> BoxFuture<'static, Result<Option<HookOutput>, String>> {
//!         let rm = input.tool_input().and_then(|i| i["command"].as_str()).is_some_and(|c| c.contains("rm "));
//!         Box::pin(async move { Ok(rm.then(|| HookOutput::deny_tool("no rm"))) })
//!     }
//! }
//! struct Factory;
//! impl NativePlugin for Factory {
//!     fn init(&self, _ctx: PluginContext) -> BoxFuture<'static, Result<Arc<dyn Plugin>, String>> {
//!         Box::pin(async { Ok(Arc::new(NoRm) as Arc<dyn Plugin>) })
//!     }
//! }
//!
//! let manager = PluginManager::new();
//! manager.register_native("no-rm", Factory);
//! let manifest = Manifest::new("no-rm", semver::Version::new(1, 0, 0), Runtime::Native);
//! manager.load(vec![(manifest, None)]).await;
//! assert_eq!(manager.bus().hook_events(), [HookEvent::PreToolUse]);
//! # });
//! ```

mod contrib;
mod manager;
mod manifest;
mod process;
pub mod resolve;
#[cfg(feature = "rhai")]
mod script;
#[cfg(feature = "hot-reload")]
mod watch;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::events::{BoxError, Event, EventBus, EventKind, Outcome, Subscription};
use crate::extension::{Action, CustomType, FrameRef};
use crate::hooks::{HookEvent, HookInput, HookOutput};
use crate::mcp::{ToolError, ToolOutput};
use crate::middleware::QueryLayer;
use crate::permission::{PermissionDecision, PermissionRequest};

pub use contrib::{PluginLayer, PluginService};
pub use manager::{CheckProblem, PluginInfo, PluginManager, PluginState};
pub use manifest::{
    Declared, Entry, Limits, MANIFEST_FILE, Manifest, ManifestError, MessageType, OnError, Runtime,
};
pub use process::PROTOCOL_VERSION;
pub use resolve::ResolveError;
#[cfg(feature = "hot-reload")]
pub use watch::Watcher;

/// An MCP tool a plugin contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The tool's name (the model sees `mcp__<plugin>__<name>`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// A JSON Schema of its arguments (or the SDK's shorthand, see
    /// [`SdkTool::new`](crate::mcp::SdkTool::new)).
    pub input_schema: Value,
}

/// A running plugin, whatever its runtime. Calls may run concurrently.
pub trait Plugin: Send + Sync + 'static {
    /// The CLI hook events it answers.
    fn hook_events(&self) -> Vec<HookEvent> {
        Vec::new()
    }

    /// Answer a hook event: `Ok(None)` is no opinion. An `Err` counts as the manifest's
    /// `on_error` says.
    fn on_hook(
        &self,
        input: HookInput,
        tool_use_id: Option<String>,
    ) -> BoxFuture<'static, Result<Option<HookOutput>, String>> {
        let _ = (input, tool_use_id);
        Box::pin(async { Ok(None) })
    }

    /// The MCP tools it contributes.
    fn tools(&self) -> Vec<ToolSpec> {
        Vec::new()
    }

    /// Run one of its tools.
    fn call_tool(
        &self,
        name: &str,
        arguments: Value,
    ) -> BoxFuture<'static, Result<ToolOutput, ToolError>> {
        let _ = arguments;
        let name = name.to_owned();
        Box::pin(async move { Err(ToolError::new(format!("no tool `{name}`"))) })
    }

    /// Whether it has a `can_use_tool` permission policy ([`can_use_tool`](Self::can_use_tool)).
    fn has_permission_policy(&self) -> bool {
        false
    }

    /// Decide a `can_use_tool` request: `Ok(None)` is no opinion. Policies of several plugins
    /// and the session's own handler combine by
    /// [`PermissionDecision::combine`] (any deny wins; the first `updated_input` in priority
    /// order applies). An `Err` (or overrunning the manifest's `timeout_ms`) counts as the
    /// manifest's `on_error` says.
    fn can_use_tool(
        &self,
        request: PermissionRequest,
    ) -> BoxFuture<'static, Result<Option<PermissionDecision>, String>> {
        let _ = request;
        Box::pin(async { Ok(None) })
    }

    /// Custom message types it registers (in addition to the manifest's `[[messages]]`).
    fn custom_types(&self) -> Vec<CustomType> {
        Vec::new()
    }

    /// The frame `type`s it handles as a protocol extension ([`on_frame`](Self::on_frame)).
    fn frame_types(&self) -> Vec<String> {
        Vec::new()
    }

    /// Handle one frame of a type from [`frame_types`](Self::frame_types): pass, swallow,
    /// replace or answer it ([`Action`]). Runs inline on the session's reader (in the gateway,
    /// on the session's pump): keep it quick. An `Err` counts as the manifest's `on_error`
    /// says: `ignore` passes the frame on, `deny` swallows it.
    fn on_frame(&self, frame: FrameRef<'_>) -> Result<Action, String> {
        let _ = frame;
        Ok(Action::Pass)
    }

    /// A tower layer for queries (native plugins; see
    /// [`PluginManager::layer`]): it wraps each query of a service stacked with the manager's
    /// [`PluginLayer`].
    fn query_layer(&self) -> Option<QueryLayer> {
        None
    }

    /// Release what it holds (bounded by the manifest's `cleanup_timeout_ms`).
    fn cleanup(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// A Rust plugin registered in code ([`PluginManager::register_native`]); a manifest with
/// `runtime = "native"` and `entry = "<the registered name>"` loads it, with the same
/// dependencies and configuration as any other plugin.
pub trait NativePlugin: Send + Sync + 'static {
    /// Initialize with the validated configuration; the context also gives the manager's bus
    /// (handlers registered through [`PluginContext::on`] are removed when it unloads).
    fn init(&self, ctx: PluginContext) -> BoxFuture<'static, Result<Arc<dyn Plugin>, String>>;
}

/// What a plugin gets at init.
#[derive(Clone)]
pub struct PluginContext {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: semver::Version,
    /// Its configuration (validated against the manifest's schema).
    pub config: Value,
    /// Its directory, if it was loaded from one.
    pub dir: Option<std::path::PathBuf>,
    bus: EventBus,
    subs: Arc<std::sync::Mutex<Vec<Subscription>>>,
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PluginContext {
    /// Register a handler on the manager's bus for any event (lifecycle events included), at
    /// any priority; it is removed when the plugin unloads or is replaced.
    pub fn on<F>(&self, kind: EventKind, priority: i32, handler: F)
    where
        F: Fn(&Event) -> Result<Outcome, BoxError> + Send + Sync + 'static,
    {
        let sub = self.bus.on(kind, priority, handler);
        if let Ok(mut subs) = self.subs.lock() {
            subs.push(sub);
        }
    }

    /// The manager's bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }
}

/// Snake-case name of a hook event: the Rhai function that answers it (`PreToolUse` →
/// `pre_tool_use`).
pub fn hook_function_name(event: &HookEvent) -> String {
    let mut out = String::new();
    for (i, c) in event.as_str().chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A hook answer in the plugins' map form (Rhai scripts and coprocessors answer with it).
///
/// * `()`/`null`: no opinion.
/// * `PreToolUse`: `{decision: "allow"|"deny"|"ask"|"defer", reason, updated_input}`.
/// * `PermissionRequest`: `{decision: "allow"|"deny", reason}`.
/// * Any event: `additional_context`, `system_message`, `decision: "block"` with `reason`,
///   `continue: false` with `stop_reason`.
pub fn output_from_map(event: &HookEvent, value: &Value) -> Result<Option<HookOutput>, String> {
    let map = match value {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        other => return Err(format!("a hook answer must be a map or (), not {other}")),
    };
    let known = [
        "decision",
        "reason",
        "updated_input",
        "additional_context",
        "system_message",
        "continue",
        "stop_reason",
    ];
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{k}` in the hook answer (known: {})",
            known.join(", ")
        ));
    }
    let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
    let reason = text("reason").unwrap_or_default();
    let mut out = match (event, text("decision").as_deref()) {
        (_, None) => HookOutput::default(),
        (HookEvent::PreToolUse, Some("allow")) => HookOutput::allow_tool(reason.clone()),
        (HookEvent::PreToolUse, Some("deny")) => HookOutput::deny_tool(reason.clone()),
        (HookEvent::PreToolUse, Some("ask")) => HookOutput::ask(reason.clone()),
        (HookEvent::PreToolUse, Some("defer")) => HookOutput::defer(),
        (HookEvent::PermissionRequest, Some("allow")) => HookOutput::allow_permission_request(),
        (HookEvent::PermissionRequest, Some("deny")) => {
            HookOutput::deny_permission_request(reason.clone())
        }
        (_, Some("block")) => HookOutput::block(reason.clone()),
        (e, Some(d)) => return Err(format!("decision `{d}` does not apply to {}", e.as_str())),
    };
    if let Some(input) = map.get("updated_input").filter(|v| !v.is_null()) {
        if *event != HookEvent::PreToolUse {
            return Err("`updated_input` applies to PreToolUse only".into());
        }
        out = out.with_updated_input(input.clone());
    }
    if let Some(ctx) = text("additional_context") {
        let ctx_out = HookOutput::additional_context(event.clone(), ctx);
        match (&mut out.hook_specific, ctx_out.hook_specific) {
            (Some(crate::hooks::HookSpecificOutput::PreToolUse(pre)), Some(_)) => {
                pre.additional_context = text("additional_context");
            }
            (slot @ None, specific) => *slot = specific,
            _ => {}
        }
    }
    if let Some(m) = text("system_message") {
        out = out.with_system_message(m);
    }
    if map.get("continue").and_then(Value::as_bool) == Some(false) {
        out = out.with_continue(false);
        out.stop_reason = text("stop_reason");
    }
    Ok(Some(out))
}

/// A `can_use_tool` answer in the plugins' map form (Rhai scripts and coprocessors):
///
/// * `()`/`null`: no opinion;
/// * `{decision: "allow", updated_input?}`: allow (with the input to run instead);
/// * `{decision: "deny", reason?, interrupt?}`: deny, telling the model `reason`
///   (`interrupt: true` also ends the turn).
pub fn decision_from_map(value: &Value) -> Result<Option<PermissionDecision>, String> {
    let map = match value {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        other => {
            return Err(format!(
                "a can_use_tool answer must be a map or (), not {other}"
            ));
        }
    };
    let known = ["decision", "reason", "updated_input", "interrupt"];
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{k}` in the can_use_tool answer (known: {})",
            known.join(", ")
        ));
    }
    let input = map.get("updated_input").filter(|v| !v.is_null()).cloned();
    let interrupt = map.get("interrupt").and_then(Value::as_bool) == Some(true);
    let reason = map
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match map.get("decision").and_then(Value::as_str) {
        Some("allow") if interrupt => Err("`interrupt` goes with `decision: \"deny\"`".into()),
        Some("allow") => Ok(Some(match input {
            Some(i) => PermissionDecision::allow_with_input(i),
            None => PermissionDecision::allow(),
        })),
        Some("deny") if input.is_some() => {
            Err("`updated_input` goes with `decision: \"allow\"`".into())
        }
        Some("deny") => {
            let reason = if reason.is_empty() {
                "denied by a plugin's policy"
            } else {
                reason
            };
            Ok(Some(if interrupt {
                PermissionDecision::deny_and_interrupt(reason)
            } else {
                PermissionDecision::deny(reason)
            }))
        }
        Some(other) => Err(format!(
            "can_use_tool decision `{other}`: use \"allow\" or \"deny\" (or return () for no \
             opinion)"
        )),
        None if map.is_empty() => Ok(None),
        None => Err("a can_use_tool answer needs `decision: \"allow\"` or `\"deny\"`".into()),
    }
}

/// The request a plugin policy sees, in map form: the CLI's `can_use_tool` body (`tool_name`,
/// `input`, `tool_use_id`, `permission_suggestions`, `blocked_path`, `decision_reason`,
/// `agent_id`, …) without its `subtype`.
pub fn request_map(request: &PermissionRequest) -> Value {
    let mut map = request.raw.clone();
    map.remove("subtype");
    map.entry("tool_name")
        .or_insert_with(|| Value::String(request.tool_name.clone()));
    map.entry("input").or_insert_with(|| request.input.clone());
    Value::Object(map)
}

/// A frame handler's answer in the plugins' map form (Rhai scripts and coprocessors):
/// `()`/`null` or `{action: "pass"}`: standard processing; `{action: "swallow"}`: drop it;
/// `{action: "replace", frame: {…}}`: process this frame instead; `{action: "reply", frame}`:
/// send `frame` back to where the frame came from and drop it; `{action: "reply_and_pass",
/// frame}`: send it back and pass the frame on.
pub fn action_from_map(value: &Value) -> Result<Action, String> {
    let map = match value {
        Value::Null => return Ok(Action::Pass),
        Value::Object(m) => m,
        other => return Err(format!("a frame answer must be a map or (), not {other}")),
    };
    if let Some(k) = map
        .keys()
        .find(|k| !["action", "frame"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown key `{k}` in the frame answer (known: action, frame)"
        ));
    }
    let frame = || match map.get("frame") {
        Some(f @ Value::Object(_)) => Ok(bytes::Bytes::from(f.to_string())),
        Some(other) => Err(format!("`frame` must be a map, not {other}")),
        None => Err("this action needs a `frame`".to_owned()),
    };
    match map.get("action").and_then(Value::as_str).unwrap_or("pass") {
        "pass" => Ok(Action::Pass),
        "swallow" => Ok(Action::Swallow),
        "replace" => Ok(Action::Replace(frame()?)),
        "reply" => Ok(Action::Reply(frame()?)),
        "reply_and_pass" => Ok(Action::ReplyAndPass(frame()?)),
        other => Err(format!(
            "frame action `{other}`: use pass, swallow, replace, reply or reply_and_pass"
        )),
    }
}

/// The answer of a failed call under `on_error = "deny"`.
pub(crate) fn failure_output(event: &HookEvent, plugin: &str, error: &str) -> Option<HookOutput> {
    let reason = format!("plugin `{plugin}` failed ({error}); its policy denies on error");
    match event {
        HookEvent::PreToolUse => Some(HookOutput::deny_tool(reason)),
        HookEvent::PermissionRequest => Some(HookOutput::deny_permission_request(reason)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod contrib_tests;
