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
use crate::hooks::{HookEvent, HookInput, HookOutput};
use crate::mcp::{ToolError, ToolOutput};

pub use manager::{CheckProblem, PluginInfo, PluginManager, PluginState};
pub use manifest::{
    Declared, Entry, Limits, MANIFEST_FILE, Manifest, ManifestError, OnError, Runtime,
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
