//! Coprocessors: a program in any language speaking JSON lines on stdin/stdout, run through the
//! SDK's own [`SubprocessTransport`] (process group, bounded lines, stderr tail), with rlimits,
//! restarted with backoff after a crash, killed on unload.
//!
//! The protocol (docs/PLUGINS.md has the full text):
//!
//! 1. The coprocessor writes `{"hello":{"protocol":1,"hooks":["PreToolUse",…],"tools":[{"name",
//!    "description","input_schema"}],"can_use_tool":true,"frames":["progress",…]}}` first (all
//!    but `protocol` optional).
//! 2. The host sends `{"id":1,"method":"initialize","params":{"name","version","config"}}`; the
//!    coprocessor answers `{"id":1,"result":{}}` (or `{"id":1,"error":"why"}`).
//! 3. Then requests `{"id":N,"method":"hook","params":{"event","input","tool_use_id"}}` (answer:
//!    `{"id":N,"result":<hook answer map or null>}`) and `{"id":N,"method":"tool","params":{"name",
//!    "arguments"}}` (answer: `{"id":N,"result":{"content":[…],"isError":false}}` or a string);
//!    when the hello declares them, `{"id":N,"method":"can_use_tool","params":{"tool_name",
//!    "input",…}}` (answer: a `can_use_tool` answer map or null) and `{"id":N,"method":"frame",
//!    "params":{"direction","frame"}}` (answer: a frame action map or null).
//!    Several requests may be in flight; answers come in any order, matched by `id`.
//! 4. On unload the host sends `{"method":"shutdown"}`, ends stdin, and kills the process group
//!    after the cleanup timeout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::manifest::Manifest;
use super::{
    Plugin, PluginContext, ToolSpec, action_from_map, decision_from_map, output_from_map,
    request_map,
};
use crate::extension::{Action, FrameRef};
use crate::hooks::{HookEvent, HookInput, HookOutput};
use crate::mcp::{ToolError, ToolOutput};
use crate::permission::{PermissionDecision, PermissionRequest};
use crate::transport::{FrameReceiver, FrameSender, Received, SubprocessTransport, Transport};

/// The coprocessor protocol's version (the hello's `protocol`).
pub const PROTOCOL_VERSION: u64 = 1;

/// Backoff between restarts after a crash: doubling from this …
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// … up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest line a coprocessor may write.
const MAX_LINE: usize = 16 << 20;

type Reply = oneshot::Sender<Result<Value, String>>;

enum Cmd {
    Call {
        method: &'static str,
        params: Value,
        reply: Reply,
    },
    /// A call timed out: the coprocessor hangs; kill it (it is restarted).
    Kill(String),
    Shutdown(oneshot::Sender<()>),
}

/// What the hello announced.
#[derive(Debug, Clone, Default)]
struct Hello {
    hooks: Vec<HookEvent>,
    tools: Vec<ToolSpec>,
    can_use_tool: bool,
    frames: Vec<String>,
}

fn parse_hello(frame: &[u8]) -> Result<Hello, String> {
    let v: Value =
        serde_json::from_slice(frame).map_err(|e| format!("the hello is not JSON: {e}"))?;
    let h = v
        .get("hello")
        .ok_or_else(|| format!("the first line must be a hello, got {v}"))?;
    match h.get("protocol").and_then(Value::as_u64) {
        Some(PROTOCOL_VERSION) => {}
        other => {
            return Err(format!(
                "hello.protocol is {other:?}; this host speaks {PROTOCOL_VERSION}"
            ));
        }
    }
    let mut hello = Hello::default();
    for e in h
        .get("hooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = e.as_str().unwrap_or_default();
        match HookEvent::known(name) {
            Some(ev) => hello.hooks.push(ev),
            None => return Err(format!("hello.hooks: unknown hook event `{name}`")),
        }
    }
    for t in h
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            return Err("hello.tools: a tool without a `name`".into());
        }
        hello.tools.push(ToolSpec {
            name: name.to_owned(),
            description: t
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            input_schema: t.get("input_schema").cloned().unwrap_or_else(|| json!({})),
        });
    }
    match h.get("can_use_tool") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => hello.can_use_tool = *b,
        Some(other) => {
            return Err(format!(
                "hello.can_use_tool must be true or false, not {other}"
            ));
        }
    }
    for t in h
        .get("frames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match t.as_str() {
            Some(t) if !t.is_empty() => hello.frames.push(t.to_owned()),
            _ => {
                return Err(format!(
                    "hello.frames: a frame type must be a string, not {t}"
                ));
            }
        }
    }
    Ok(hello)
}

/// The command line: `sh -c 'ulimit …; exec "$0" "$@"' program args…` sets the rlimits in the
/// child before the program starts (no `unsafe` `pre_exec` in the host).
fn transport(manifest: &Manifest, dir: Option<&Path>) -> Result<SubprocessTransport, String> {
    let (program, args) = manifest.entry.split();
    let program = resolve_program(program, dir);
    let l = &manifest.limits;
    let mut script = String::from("set -e; ");
    if l.memory_mb > 0 {
        script.push_str(&format!("ulimit -v {}; ", l.memory_mb.saturating_mul(1024)));
    }
    if l.cpu_secs > 0 {
        script.push_str(&format!("ulimit -t {}; ", l.cpu_secs));
    }
    if l.open_files > 0 {
        script.push_str(&format!("ulimit -n {}; ", l.open_files));
    }
    script.push_str("exec \"$0\" \"$@\"");
    let mut t = SubprocessTransport::new("/bin/sh")
        .args(["-c".to_owned(), script])
        .args([program.into_os_string()])
        .args(args.iter().cloned())
        .max_frame_bytes(MAX_LINE)
        .env("CONDUIT_PLUGIN", &manifest.name);
    if let Some(d) = dir {
        t = t.cwd(d);
    }
    Ok(t)
}

/// A relative program with a `/` (`./copro.py`, `bin/x`) is relative to the plugin's
/// directory; a bare name (`python3`) is looked up on `PATH`.
fn resolve_program(program: &str, dir: Option<&Path>) -> PathBuf {
    let p = PathBuf::from(program);
    match dir {
        Some(d) if p.is_relative() && program.contains('/') => d.join(p),
        _ => p,
    }
}

/// `conduit plugins check`: the program must exist (a path) or be found on `PATH` (a name).
pub(crate) fn check(manifest: &Manifest, dir: &Path) -> Result<(), String> {
    let (program, _) = manifest.entry.split();
    let p = resolve_program(program, Some(dir));
    let found = if program.contains('/') {
        p.is_file()
    } else {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(format!("coprocessor program `{program}` not found"))
    }
}

/// One running coprocessor (its supervisor task owns the process).
pub(crate) struct Coprocessor {
    name: String,
    hello: Hello,
    timeout: Duration,
    cmds: mpsc::Sender<Cmd>,
    /// Whether a process is up (false while restarting).
    up: watch::Receiver<bool>,
}

/// Start the coprocessor, read its hello, initialize it; then supervise it.
pub(crate) async fn start(
    manifest: &Manifest,
    dir: Option<&Path>,
    ctx: PluginContext,
) -> Result<Arc<Coprocessor>, String> {
    let t = transport(manifest, dir)?;
    let init = json!({
        "name": manifest.name,
        "version": manifest.version.to_string(),
        "config": ctx.config,
    });
    let (proc_, hello) = spawn(&t, &init, manifest.init_timeout()).await?;
    let (cmds, rx) = mpsc::channel(256);
    let (up_tx, up) = watch::channel(true);
    tokio::spawn(supervise(
        Supervisor {
            name: manifest.name.clone(),
            transport: t,
            init,
            init_timeout: manifest.init_timeout(),
            grace: manifest.cleanup_timeout(),
            up: up_tx,
            restarts: Arc::new(AtomicU64::new(0)),
        },
        proc_,
        rx,
    ));
    Ok(Arc::new(Coprocessor {
        name: manifest.name.clone(),
        hello,
        timeout: manifest.call_timeout(),
        cmds,
        up,
    }))
}

struct Proc {
    sender: crate::transport::subprocess::SubprocessSender,
    receiver: crate::transport::subprocess::SubprocessReceiver,
}

/// Spawn, read the hello, send initialize and wait for its answer (all within `timeout`).
async fn spawn(
    t: &SubprocessTransport,
    init: &Value,
    timeout: Duration,
) -> Result<(Proc, Hello), String> {
    let conn = t
        .clone()
        .connect()
        .await
        .map_err(|e| format!("cannot start the coprocessor: {e}"))?;
    let (mut sender, mut receiver) = (conn.sender, conn.receiver);
    let handshake = async {
        let hello = match receiver.recv().await {
            Ok(Received::Frame(frame)) => parse_hello(&frame)?,
            Ok(Received::Bad(e)) => return Err(e.to_string()),
            Ok(Received::End) | Err(_) => {
                return Err(format!(
                    "the coprocessor exited before its hello{}",
                    tail(&receiver)
                ));
            }
        };
        let req = json!({"id": 0, "method": "initialize", "params": init});
        sender
            .send(Bytes::from(req.to_string()))
            .await
            .map_err(|e| format!("writing initialize: {e}"))?;
        loop {
            match receiver.recv().await {
                Ok(Received::Frame(frame)) => {
                    let v: Value = serde_json::from_slice(&frame)
                        .map_err(|e| format!("a line that is not JSON: {e}"))?;
                    if v.get("id").and_then(Value::as_u64) != Some(0) {
                        continue;
                    }
                    if let Some(e) = v.get("error") {
                        return Err(format!("the coprocessor refused initialize: {}", text(e)));
                    }
                    return Ok(hello);
                }
                Ok(Received::Bad(e)) => return Err(e.to_string()),
                Ok(Received::End) | Err(_) => {
                    return Err(format!(
                        "the coprocessor exited during initialize{}",
                        tail(&receiver)
                    ));
                }
            }
        }
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(hello)) => Ok((Proc { sender, receiver }, hello)),
        Ok(Err(e)) => {
            let _ = sender.close(Duration::ZERO).await;
            Err(e)
        }
        Err(_) => {
            let _ = sender.close(Duration::ZERO).await;
            Err(format!(
                "no hello and initialize answer within {} ms",
                timeout.as_millis()
            ))
        }
    }
}

fn tail(r: &crate::transport::subprocess::SubprocessReceiver) -> String {
    match r.termination() {
        Some(t) => {
            let mut s = format!(" (exit code {:?}, signal {:?}", t.code, t.signal);
            if !t.stderr_tail.trim().is_empty() {
                s.push_str(&format!(", stderr: {}", t.stderr_tail.trim()));
            }
            s.push(')');
            s
        }
        None => String::new(),
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

struct Supervisor {
    name: String,
    transport: SubprocessTransport,
    init: Value,
    init_timeout: Duration,
    grace: Duration,
    up: watch::Sender<bool>,
    restarts: Arc<AtomicU64>,
}

/// Run the process: write requests, route answers by id; on exit fail the calls in flight,
/// then restart with backoff (calls meanwhile fail at once).
async fn supervise(s: Supervisor, first: Proc, mut cmds: mpsc::Receiver<Cmd>) {
    let mut proc_ = Some(first);
    let mut backoff = BACKOFF_MIN;
    let mut next_id: u64 = 1;
    loop {
        let Some(Proc {
            mut sender,
            mut receiver,
        }) = proc_.take()
        else {
            // Down: wait out the backoff, failing calls meanwhile.
            s.up.send_replace(false);
            let wake = tokio::time::sleep(backoff);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    _ = &mut wake => break,
                    cmd = cmds.recv() => match cmd {
                        None => return,
                        Some(Cmd::Call { reply, .. }) => {
                            let _ = reply.send(Err(format!(
                                "coprocessor `{}` is down (restarting)", s.name)));
                        }
                        Some(Cmd::Kill(_)) => {}
                        Some(Cmd::Shutdown(done)) => { let _ = done.send(()); return; }
                    },
                }
            }
            match spawn(&s.transport, &s.init, s.init_timeout).await {
                Ok((p, _hello)) => {
                    let n = s.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(target: "claude_conduit::plugin", plugin = %s.name, restarts = n, "coprocessor restarted");
                    proc_ = Some(p);
                    s.up.send_replace(true);
                }
                Err(e) => {
                    tracing::warn!(target: "claude_conduit::plugin", plugin = %s.name, error = %e, "coprocessor restart failed");
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            continue;
        };
        let mut pending: HashMap<u64, Reply> = HashMap::new();
        let why = loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => { let _ = sender.close(s.grace).await; return; }
                    Some(Cmd::Call { method, params, reply }) => {
                        let id = next_id;
                        next_id += 1;
                        let line = json!({"id": id, "method": method, "params": params});
                        if let Err(e) = sender.send(Bytes::from(line.to_string())).await {
                            let _ = reply.send(Err(format!("writing to the coprocessor: {e}")));
                        } else {
                            pending.insert(id, reply);
                        }
                    }
                    Some(Cmd::Kill(why)) => {
                        let _ = sender.close(Duration::ZERO).await;
                        break why;
                    }
                    Some(Cmd::Shutdown(done)) => {
                        let _ = sender.send(Bytes::from_static(br#"{"method":"shutdown"}"#)).await;
                        let _ = sender.close(s.grace).await;
                        for (_, r) in pending.drain() {
                            let _ = r.send(Err("the plugin is unloading".into()));
                        }
                        let _ = done.send(());
                        return;
                    }
                },
                frame = receiver.recv() => match frame {
                    Ok(Received::Frame(frame)) => {
                        backoff = BACKOFF_MIN;
                        let Ok(v) = serde_json::from_slice::<Value>(&frame) else {
                            tracing::warn!(target: "claude_conduit::plugin", plugin = %s.name, "coprocessor wrote a line that is not JSON; skipped");
                            continue;
                        };
                        let Some(id) = v.get("id").and_then(Value::as_u64) else { continue };
                        if let Some(r) = pending.remove(&id) {
                            let _ = r.send(match v.get("error") {
                                Some(e) => Err(text(e)),
                                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                            });
                        }
                    }
                    Ok(Received::Bad(e)) => tracing::warn!(target: "claude_conduit::plugin", plugin = %s.name, error = %e, "coprocessor line skipped"),
                    Ok(Received::End) | Err(_) => {
                        let _ = sender.close(Duration::ZERO).await;
                        break format!("coprocessor `{}` exited{}", s.name, tail(&receiver));
                    }
                },
            }
        };
        tracing::warn!(target: "claude_conduit::plugin", plugin = %s.name, reason = %why, "coprocessor down; restarting with backoff");
        for (_, r) in pending.drain() {
            let _ = r.send(Err(why.clone()));
        }
    }
}

impl Coprocessor {
    fn call(
        &self,
        method: &'static str,
        params: Value,
    ) -> BoxFuture<'static, Result<Value, String>> {
        let cmds = self.cmds.clone();
        let timeout = self.timeout;
        let name = self.name.clone();
        let up = *self.up.borrow();
        Box::pin(async move {
            if !up {
                return Err(format!("coprocessor `{name}` is down (restarting)"));
            }
            let (tx, rx) = oneshot::channel();
            cmds.send(Cmd::Call {
                method,
                params,
                reply: tx,
            })
            .await
            .map_err(|_| format!("coprocessor `{name}` is unloaded"))?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(format!("coprocessor `{name}` went away")),
                Err(_) => {
                    let why = format!(
                        "coprocessor `{name}` did not answer within {} ms (`timeout_ms`); killed, \
                         it restarts",
                        timeout.as_millis()
                    );
                    let _ = cmds.send(Cmd::Kill(why.clone())).await;
                    Err(why)
                }
            }
        })
    }
}

impl Plugin for Coprocessor {
    fn hook_events(&self) -> Vec<HookEvent> {
        self.hello.hooks.clone()
    }

    fn on_hook(
        &self,
        input: HookInput,
        tool_use_id: Option<String>,
    ) -> BoxFuture<'static, Result<Option<HookOutput>, String>> {
        let event = input.event();
        let call = self.call(
            "hook",
            json!({"event": event.as_str(), "input": input.raw(), "tool_use_id": tool_use_id}),
        );
        Box::pin(async move { output_from_map(&event, &call.await?) })
    }

    fn tools(&self) -> Vec<ToolSpec> {
        self.hello.tools.clone()
    }

    fn has_permission_policy(&self) -> bool {
        self.hello.can_use_tool
    }

    fn can_use_tool(
        &self,
        request: PermissionRequest,
    ) -> BoxFuture<'static, Result<Option<PermissionDecision>, String>> {
        let call = self.call("can_use_tool", request_map(&request));
        Box::pin(async move { decision_from_map(&call.await?) })
    }

    fn frame_types(&self) -> Vec<String> {
        self.hello.frames.clone()
    }

    /// A frame handler is synchronous and the coprocessor answers asynchronously: the call
    /// blocks this worker thread (`block_in_place`, so the runtime's other workers go on),
    /// bounded by `timeout_ms`. That needs tokio's multi-thread runtime; on a current-thread
    /// runtime the call fails (and counts as `on_error` says).
    fn on_frame(&self, frame: FrameRef<'_>) -> Result<Action, String> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let handle = Handle::try_current()
            .map_err(|_| format!("coprocessor `{}`: no tokio runtime", self.name))?;
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err(format!(
                "coprocessor `{}`: frame handlers need tokio's multi-thread runtime",
                self.name
            ));
        }
        let call = self.call(
            "frame",
            json!({"direction": frame.direction.as_str(), "frame": frame.value}),
        );
        let answer = tokio::task::block_in_place(|| handle.block_on(call))?;
        action_from_map(&answer)
    }

    fn call_tool(
        &self,
        name: &str,
        arguments: Value,
    ) -> BoxFuture<'static, Result<ToolOutput, ToolError>> {
        let call = self.call("tool", json!({"name": name, "arguments": arguments}));
        Box::pin(async move {
            match call.await.map_err(ToolError::new)? {
                Value::String(s) => Ok(ToolOutput::text(s)),
                Value::Object(o) => {
                    let is_error = o.get("isError").and_then(Value::as_bool).unwrap_or(false);
                    let blocks = o
                        .get("content")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let mut out = ToolOutput::new(Vec::new());
                    for b in blocks {
                        out = out.with(crate::mcp::ToolContent::Raw(b));
                    }
                    Ok(out.with_is_error(is_error))
                }
                other => Ok(ToolOutput::text(other.to_string())),
            }
        })
    }

    fn cleanup(&self) -> BoxFuture<'static, ()> {
        let cmds = self.cmds.clone();
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if cmds.send(Cmd::Shutdown(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
    }
}
