//! Rhai script plugins: sandboxed by construction (no file, network or process access: the
//! host registers no function for them), with limits on operations, call depth, sizes and wall
//! time per call.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};
use serde_json::Value;

use super::manifest::{Limits, Manifest, MessageType};
use super::{
    Plugin, PluginContext, action_from_map, decision_from_map, hook_function_name, output_from_map,
    request_map,
};
use crate::extension::{Action, FrameRef};
use crate::hooks::{HookEvent, HookInput, HookOutput};
use crate::permission::{PermissionDecision, PermissionRequest};

thread_local! {
    /// The deadline of the call running on this thread (`on_progress` checks it).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The engine with the manifest's limits and the host functions (`print`/`debug` to the log).
fn engine(name: &str, limits: &Limits) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_expr_depths(64, 32);
    // `eval` would compile code at run time, beyond what `plugins check` saw.
    e.disable_symbol("eval");
    e.on_progress(|_ops| {
        let late = DEADLINE
            .with(|d| d.get())
            .is_some_and(|d| Instant::now() >= d);
        late.then(|| Dynamic::from("wall time"))
    });
    let p = name.to_owned();
    e.on_print(move |s| tracing::info!(target: "claude_conduit::plugin", plugin = %p, "{s}"));
    let p = name.to_owned();
    e.on_debug(move |s, _, pos| {
        tracing::debug!(target: "claude_conduit::plugin", plugin = %p, %pos, "{s}")
    });
    e
}

/// Which limit (or error) an evaluation failure is, in words that name the limit.
fn describe(error: &EvalAltResult, limits: &Limits) -> String {
    match error {
        EvalAltResult::ErrorTooManyOperations(pos) => format!(
            "operations limit hit ({} operations, `limits.max_operations`) at {pos}",
            limits.max_operations
        ),
        EvalAltResult::ErrorStackOverflow(pos) => format!(
            "call depth limit hit ({} levels, `limits.max_call_depth`) at {pos}",
            limits.max_call_depth
        ),
        EvalAltResult::ErrorDataTooLarge(what, pos) => {
            let key = match what.as_str() {
                w if w.contains("string") || w.contains("String") => "max_string_size",
                w if w.contains("rray") => "max_array_size",
                w if w.contains("map") || w.contains("Map") => "max_map_size",
                _ => "limits",
            };
            format!("size limit hit: {what} (`limits.{key}`) at {pos}")
        }
        EvalAltResult::ErrorTerminated(_, pos) => format!(
            "wall time limit hit ({} ms, `limits.max_wall_ms`) at {pos}",
            limits.max_wall_ms
        ),
        other => other.to_string(),
    }
}

struct Script {
    name: String,
    engine: Engine,
    ast: AST,
    limits: Limits,
    config: Dynamic,
    hooks: Vec<HookEvent>,
    /// It defines `can_use_tool(input)`.
    permission: bool,
    /// The manifest's message types with a `handler` (each defined with two parameters).
    handlers: Vec<MessageType>,
}

impl Script {
    /// Call `function` with `args` under the wall-time limit, on this (blocking) thread.
    fn call(&self, function: &str, args: Vec<Dynamic>) -> Result<Dynamic, String> {
        let deadline = Instant::now() + Duration::from_millis(self.limits.max_wall_ms.max(1));
        DEADLINE.with(|d| d.set(Some(deadline)));
        let mut scope = Scope::new();
        scope.push_constant("CONFIG", self.config.clone());
        scope.push_constant("PLUGIN", self.name.clone());
        let r = self
            .engine
            .call_fn::<Dynamic>(&mut scope, &self.ast, function, args);
        DEADLINE.with(|d| d.set(None));
        r.map_err(|e| {
            format!(
                "plugin `{}`: `{function}`: {}",
                self.name,
                describe(&e, &self.limits)
            )
        })
    }

    /// Call `function` with one JSON argument; its answer as JSON (`()` → null).
    fn call_json(&self, function: &str, args: &[Value]) -> Result<Value, String> {
        let args = args
            .iter()
            .map(rhai::serde::to_dynamic)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let out = self.call(function, args)?;
        if out.is_unit() {
            return Ok(Value::Null);
        }
        rhai::serde::from_dynamic::<Value>(&out)
            .map_err(|e| format!("plugin `{}`: `{function}` returned {e}", self.name))
    }
}

/// A running script.
pub(crate) struct RhaiPlugin(Arc<Script>);

/// Compile the script and run its `init(config)` if it defines one.
pub(crate) fn start(
    manifest: &Manifest,
    dir: Option<&Path>,
    ctx: PluginContext,
) -> Result<Arc<RhaiPlugin>, String> {
    let (file, source) = read(manifest, dir)?;
    let engine = engine(&manifest.name, &manifest.limits);
    let ast = engine
        .compile(&source)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let config = rhai::serde::to_dynamic(&ctx.config).map_err(|e| e.to_string())?;
    let defined: Vec<(String, usize)> = ast
        .iter_functions()
        .map(|f| (f.name.to_owned(), f.params.len()))
        .collect();
    let hooks = HookEvent::KNOWN
        .iter()
        .filter(|e| {
            let f = hook_function_name(e);
            defined.iter().any(|(n, arity)| *n == f && *arity == 1)
        })
        .cloned()
        .collect();
    let permission = defined.iter().any(|(n, a)| n == "can_use_tool" && *a == 1);
    let mut handlers = Vec::new();
    for m in manifest.messages.iter().filter(|m| m.handler.is_some()) {
        let f = m.handler.as_deref().unwrap_or_default();
        if !defined.iter().any(|(n, a)| n == f && *a == 2) {
            return Err(format!(
                "{}: `messages` `{}` names handler `{f}`, but the script defines no `fn {f}(frame, \
                 direction)`",
                file.display(),
                m.name()
            ));
        }
        handlers.push(m.clone());
    }
    let script = Script {
        name: manifest.name.clone(),
        engine,
        ast,
        limits: manifest.limits.clone(),
        config,
        hooks,
        permission,
        handlers,
    };
    if defined.iter().any(|(n, a)| n == "init" && *a == 1) {
        let _ = script.call("init", vec![script.config.clone()])?;
    }
    Ok(Arc::new(RhaiPlugin(Arc::new(script))))
}

fn read(manifest: &Manifest, dir: Option<&Path>) -> Result<(PathBuf, String), String> {
    let entry = manifest.entry.split().0;
    let file = match dir {
        Some(d) => d.join(entry),
        None => PathBuf::from(entry),
    };
    let source = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Ok((file, source))
}

/// Compile only (for `conduit plugins check`): the file, line and message of a syntax error.
pub(crate) fn check(manifest: &Manifest, dir: &Path) -> Result<(), (PathBuf, usize, String)> {
    let (file, source) =
        read(manifest, Some(dir)).map_err(|e| (dir.join(super::MANIFEST_FILE), 1, e))?;
    let engine = engine(&manifest.name, &manifest.limits);
    let ast = engine.compile(&source).map_err(|e| {
        let line = e.1.line().unwrap_or(1);
        (file.clone(), line, e.0.to_string())
    })?;
    for f in manifest
        .messages
        .iter()
        .filter_map(|m| m.handler.as_deref())
    {
        if !ast
            .iter_functions()
            .any(|d| d.name == f && d.params.len() == 2)
        {
            return Err((
                file,
                1,
                format!(
                    "`messages` names handler `{f}`, but the script defines no `fn {f}(frame, direction)`"
                ),
            ));
        }
    }
    Ok(())
}

impl Plugin for RhaiPlugin {
    fn hook_events(&self) -> Vec<HookEvent> {
        self.0.hooks.clone()
    }

    fn on_hook(
        &self,
        input: HookInput,
        _tool_use_id: Option<String>,
    ) -> BoxFuture<'static, Result<Option<HookOutput>, String>> {
        let script = self.0.clone();
        Box::pin(async move {
            let event = input.event();
            let function = hook_function_name(&event);
            let arg = input.raw().clone();
            // Scripts are CPU work: off the async threads, bounded by the wall-time limit.
            let result = tokio::task::spawn_blocking(move || script.call_json(&function, &[arg]))
                .await
                .map_err(|e| format!("script task: {e}"))??;
            output_from_map(&event, &result)
        })
    }

    fn has_permission_policy(&self) -> bool {
        self.0.permission
    }

    fn can_use_tool(
        &self,
        request: PermissionRequest,
    ) -> BoxFuture<'static, Result<Option<PermissionDecision>, String>> {
        let script = self.0.clone();
        let name = self.0.name.clone();
        Box::pin(async move {
            let arg = request_map(&request);
            let result =
                tokio::task::spawn_blocking(move || script.call_json("can_use_tool", &[arg]))
                    .await
                    .map_err(|e| format!("script task: {e}"))??;
            decision_from_map(&result).map_err(|e| format!("plugin `{name}`: {e}"))
        })
    }

    fn frame_types(&self) -> Vec<String> {
        let mut out: Vec<String> = self.0.handlers.iter().map(|m| m.type_.clone()).collect();
        out.dedup();
        out
    }

    /// Inline, on the caller's thread (a frame handler is synchronous), bounded by the limits.
    fn on_frame(&self, frame: FrameRef<'_>) -> Result<Action, String> {
        let type_ = frame.value.get("type").and_then(Value::as_str);
        let subtype = frame.value.get("subtype").and_then(Value::as_str);
        let of_type = || {
            self.0
                .handlers
                .iter()
                .filter(move |m| Some(m.type_.as_str()) == type_)
        };
        // As for decoding: a handler declared for the subtype wins over one for the type.
        let Some(handler) = of_type()
            .find(|m| m.subtype.is_some() && m.subtype.as_deref() == subtype)
            .or_else(|| of_type().find(|m| m.subtype.is_none()))
            .and_then(|m| m.handler.clone())
        else {
            return Ok(Action::Pass);
        };
        let out = self.0.call_json(
            &handler,
            &[frame.value.clone(), Value::from(frame.direction.as_str())],
        )?;
        action_from_map(&out).map_err(|e| format!("plugin `{}`: `{handler}`: {e}", self.0.name))
    }
}
