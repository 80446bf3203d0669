//! Gateway plugins and gateway-side protocol extensions, on each session's frames.
//!
//! **Plugins** (`conduit serve --plugins DIR`, [`GatewayConfig::plugins`](crate::GatewayConfig::plugins))
//! act on every session the gateway runs, and clients cannot switch them off:
//!
//! * The gateway adds its own hook matchers — callback ids `gw_0`, `gw_1`, …, one match-all
//!   matcher per hook event the plugins answer — to each `initialize` request a client sends, and
//!   sends an `initialize` of its own (request id `gw_init_<n>`, its answer not forwarded) before
//!   the first client frame when that frame is not an `initialize`. Every later client
//!   `initialize` gets the matchers again, so re-initializing cannot drop them.
//! * It answers the CLI's `hook_callback` requests for `gw_` ids itself, by the plugin manager's
//!   bus, and never forwards them; it answers `mcp_message` requests for the plugins' SDK MCP
//!   servers (one per plugin with tools, on every session's `--mcp-config`) the same way. The
//!   client's own hooks (its `hook_N` ids) and MCP servers work beside them, forwarded as before.
//! * **Permission policies** (a plugin's `can_use_tool`) are enforced as the gateway's own
//!   `PreToolUse` hook, not by answering the CLI's `can_use_tool` requests: the CLI asks
//!   `can_use_tool` only when its own evaluation ends in "ask", which a client decides
//!   (`allowed_tools`, a permission mode, settings), so a policy applied there could be
//!   bypassed; `PreToolUse` fires for every tool call. A policy's deny is the hook's deny (it
//!   wins over the client's hooks and skips the client's `can_use_tool`); an allow with an
//!   `updated_input` is the hook's `updatedInput` without a decision; a plain allow is no
//!   opinion, so operator policies only ever restrict or rewrite, never loosen the client's own
//!   permission checks ([`PluginManager::policies_as_pre_tool_use`]).
//! * The plugins' **custom message types and protocol extensions** join the gateway's
//!   [`GatewayConfig::extensions`](crate::GatewayConfig::extensions) (after them) on every
//!   session, both directions.
//! * Refused (a `policy` error, the session goes on): a client `initialize` that uses a `gw_`
//!   callback id, a client control request with a `gw_` request id, and a client
//!   `control_response` to a request the gateway is answering.
//!
//! **Protocol extensions** ([`GatewayConfig::extensions`](crate::GatewayConfig::extensions)) see
//! every frame of every session in both directions (client frames before the control-frame
//! policy, which then judges what they pass on; CLI frames before they are numbered); a reply
//! goes back to where the frame came from.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use claude_conduit::extension::Extensions;
use claude_conduit::hooks::{HookEvent, HookInput};
use claude_conduit::mcp::SdkMcpServer;
use claude_conduit::plugin::PluginManager;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

/// The callback-id and request-id prefix reserved for the gateway.
pub const GATEWAY_PREFIX: &str = "gw_";

/// What to do with a CLI frame.
pub(crate) enum FromCli {
    /// Number it and send it to the client.
    Forward(Bytes),
    /// Drop it (the answer to the gateway's own `initialize`).
    Swallow,
    /// The gateway answers the request with this id: write the answer to the CLI (then call
    /// [`SessionPlugins::answered`]), never show the client.
    Answer(String, BoxFuture<'static, Bytes>),
}

/// The plugins' part of one session.
pub(crate) struct SessionPlugins {
    manager: PluginManager,
    /// `hooks` of the initialize request: event → `[{"matcher":null,"hookCallbackIds":["gw_N"]}]`.
    registration: Map<String, Value>,
    servers: Arc<HashMap<String, SdkMcpServer>>,
    /// The plugins' custom types and protocol extensions.
    extensions: Option<Extensions>,
    state: Mutex<State>,
    next_init: AtomicU64,
}

impl std::fmt::Debug for SessionPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPlugins")
            .field("hooks", &self.registration.keys().collect::<Vec<_>>())
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// An initialize (the client's or ours) went to the CLI.
    initialized: bool,
    /// Request ids of our own initializes whose answers are not forwarded.
    own_inits: HashSet<String>,
    /// Request ids of the CLI's requests the gateway is answering.
    answering: HashSet<String>,
}

fn is_control(frame: &[u8]) -> bool {
    static CONTROL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"control_"));
    CONTROL.find(frame).is_some()
}

fn success(request_id: &str, response: Value) -> Bytes {
    Bytes::from(
        json!({"type": "control_response", "response": {
            "subtype": "success", "request_id": request_id, "response": response}})
        .to_string(),
    )
}

fn failure(request_id: &str, error: &str) -> Bytes {
    Bytes::from(
        json!({"type": "control_response", "response": {
            "subtype": "error", "request_id": request_id, "error": error}})
        .to_string(),
    )
}

/// Every callback id in an initialize's `hooks` (and its agents' hooks).
fn callback_ids(request: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    let mut tables = vec![request.get("hooks")];
    if let Some(agents) = request.get("agents").and_then(Value::as_object) {
        tables.extend(agents.values().map(|a| a.get("hooks")));
    }
    for hooks in tables.into_iter().flatten().filter_map(Value::as_object) {
        for matcher in hooks.values().filter_map(Value::as_array).flatten() {
            for id in matcher
                .get("hookCallbackIds")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                out.push(id);
            }
        }
    }
    out
}

impl SessionPlugins {
    /// The plugins' hooks and MCP servers as they are now (a session keeps what it started with;
    /// reloaded plugins serve its next calls).
    pub(crate) fn new(manager: &PluginManager) -> Option<Arc<SessionPlugins>> {
        let mut events = manager.bus().hook_events();
        let policies = manager.has_permission_policies();
        if policies && !events.contains(&HookEvent::PreToolUse) {
            events.push(HookEvent::PreToolUse);
        }
        let servers: HashMap<String, SdkMcpServer> = manager
            .mcp_servers()
            .into_iter()
            .map(|s| (s.name().to_owned(), s))
            .collect();
        let extensions = Some(manager.extensions()).filter(|e| !e.is_empty());
        if events.is_empty() && servers.is_empty() && extensions.is_none() {
            return None;
        }
        let mut registration = Map::new();
        for (n, event) in events.iter().enumerate() {
            registration.insert(
                event.as_str().to_owned(),
                json!([{"matcher": null, "hookCallbackIds": [format!("{GATEWAY_PREFIX}{n}")]}]),
            );
        }
        Some(Arc::new(SessionPlugins {
            manager: manager.clone(),
            registration,
            servers: Arc::new(servers),
            extensions,
            state: Mutex::new(State::default()),
            next_init: AtomicU64::new(1),
        }))
    }

    /// The gateway's protocol extensions for a session, then its plugins'.
    pub(crate) fn session_extensions(
        gateway: Option<&Extensions>,
        plugins: Option<&Arc<SessionPlugins>>,
    ) -> Option<Extensions> {
        match (gateway, plugins.and_then(|p| p.extensions.as_ref())) {
            (Some(g), Some(p)) => Some(g.clone().merge(p)),
            (g, p) => g.or(p).cloned(),
        }
    }

    /// The plugins' SDK MCP servers (for the session's `--mcp-config`).
    pub(crate) fn servers(&self) -> impl Iterator<Item = &SdkMcpServer> {
        self.servers.values()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client frame on its way to the CLI (after the control-frame policy): the frames to
    /// write instead (the gateway's own initialize first, when needed), or why it is refused
    /// (with the error `control_response` to send the client, for a control request).
    pub(crate) fn client_frame(&self, frame: Bytes) -> Result<Vec<Bytes>, (String, Option<Bytes>)> {
        let mut out = Vec::with_capacity(2);
        if is_control(&frame)
            && let Ok(mut v) = serde_json::from_slice::<Value>(&frame)
        {
            match v.get("type").and_then(Value::as_str) {
                Some("control_request") => {
                    let request_id = v.get("request_id").and_then(Value::as_str).unwrap_or("");
                    let refuse = |message: String| {
                        let answer =
                            failure(request_id, &format!("refused by the gateway: {message}"));
                        Err((message, Some(answer)))
                    };
                    if request_id.starts_with(GATEWAY_PREFIX) {
                        return refuse(format!(
                            "request ids starting with `{GATEWAY_PREFIX}` are the gateway's"
                        ));
                    }
                    let is_init =
                        v.pointer("/request/subtype").and_then(Value::as_str) == Some("initialize");
                    if is_init {
                        let request = v.get("request").unwrap_or(&Value::Null);
                        if let Some(id) = callback_ids(request)
                            .into_iter()
                            .find(|id| id.starts_with(GATEWAY_PREFIX))
                        {
                            return refuse(format!(
                                "hook callback id `{id}`: ids starting with `{GATEWAY_PREFIX}` \
                                 are the gateway's"
                            ));
                        }
                        if let Some(request) = v.get_mut("request").and_then(Value::as_object_mut) {
                            self.merge_hooks(request);
                        }
                        self.lock().initialized = true;
                        out.push(Bytes::from(v.to_string()));
                        return Ok(out);
                    }
                }
                Some("control_response") => {
                    let id = v
                        .pointer("/response/request_id")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if self.lock().answering.contains(id) {
                        return Err((
                            format!("request `{id}` is answered by the gateway, not by clients"),
                            None,
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(init) = self.own_initialize() {
            out.push(init);
        }
        out.push(frame);
        Ok(out)
    }

    /// Put the gateway's matchers beside the client's in an initialize request.
    fn merge_hooks(&self, request: &mut Map<String, Value>) {
        if self.registration.is_empty() {
            return;
        }
        let hooks = request
            .entry("hooks")
            .or_insert_with(|| Value::Object(Map::new()));
        if !hooks.is_object() {
            *hooks = Value::Object(Map::new());
        }
        if let Some(hooks) = hooks.as_object_mut() {
            for (event, matchers) in &self.registration {
                let slot = hooks
                    .entry(event.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                if let (Some(list), Some(ours)) = (slot.as_array_mut(), matchers.as_array()) {
                    list.extend(ours.iter().cloned());
                }
            }
        }
    }

    /// The gateway's own initialize, once, if no initialize went to the CLI yet.
    fn own_initialize(&self) -> Option<Bytes> {
        if self.registration.is_empty() {
            return None;
        }
        let mut st = self.lock();
        if st.initialized {
            return None;
        }
        st.initialized = true;
        let id = format!(
            "{GATEWAY_PREFIX}init_{}",
            self.next_init.fetch_add(1, Ordering::Relaxed)
        );
        st.own_inits.insert(id.clone());
        Some(Bytes::from(
            json!({"type": "control_request", "request_id": id,
                   "request": {"subtype": "initialize", "hooks": self.registration}})
            .to_string(),
        ))
    }

    /// A CLI frame: forwarded, swallowed, or answered by the gateway.
    pub(crate) fn cli_frame(self: &Arc<Self>, frame: Bytes) -> FromCli {
        if !is_control(&frame) {
            return FromCli::Forward(frame);
        }
        let Ok(v) = serde_json::from_slice::<Value>(&frame) else {
            return FromCli::Forward(frame);
        };
        match v.get("type").and_then(Value::as_str) {
            Some("control_response") => {
                let id = v
                    .pointer("/response/request_id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if self.lock().own_inits.remove(id) {
                    if let Some(e) = v.pointer("/response/error") {
                        tracing::warn!(error = %e, "the CLI refused the gateway's initialize");
                    }
                    return FromCli::Swallow;
                }
                FromCli::Forward(frame)
            }
            Some("control_request") => {
                let Some(request_id) = v.get("request_id").and_then(Value::as_str) else {
                    return FromCli::Forward(frame);
                };
                let request = v.get("request").cloned().unwrap_or(Value::Null);
                match request.get("subtype").and_then(Value::as_str) {
                    Some("hook_callback")
                        if request
                            .get("callback_id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| id.starts_with(GATEWAY_PREFIX)) =>
                    {
                        FromCli::Answer(
                            request_id.to_owned(),
                            self.answer(request_id.to_owned(), request, true),
                        )
                    }
                    Some("mcp_message")
                        if request
                            .get("server_name")
                            .and_then(Value::as_str)
                            .is_some_and(|s| self.servers.contains_key(s)) =>
                    {
                        FromCli::Answer(
                            request_id.to_owned(),
                            self.answer(request_id.to_owned(), request, false),
                        )
                    }
                    _ => FromCli::Forward(frame),
                }
            }
            _ => FromCli::Forward(frame),
        }
    }

    fn answer(
        self: &Arc<Self>,
        id: String,
        request: Value,
        hook: bool,
    ) -> BoxFuture<'static, Bytes> {
        self.lock().answering.insert(id.clone());
        let this = self.clone();
        Box::pin(async move {
            if hook {
                let input = HookInput::from_wire(request.get("input").cloned().unwrap_or_default());
                let tool_use_id = request
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                // Asked on every PreToolUse call: a policy loaded after the session started
                // applies too when the session has a PreToolUse matcher.
                let policy = this.manager.policies_as_pre_tool_use(&input).await;
                let event = input.event();
                let mut out = this.manager.bus().run_hook(input, tool_use_id).await;
                if let Some(policy) = policy {
                    // Any deny wins; the hooks' updatedInput comes first.
                    out = claude_conduit::events::combine(&event, vec![out, policy]);
                }
                success(&id, out.to_wire())
            } else {
                let body = request.as_object().cloned().unwrap_or_default();
                match claude_conduit::mcp::answer(&this.servers, &body).await {
                    Ok(v) => success(&id, v.unwrap_or_default()),
                    Err(e) => failure(&id, &e),
                }
            }
        })
    }

    /// The answer to request `id` was written to the CLI: clients' responses to it are no longer
    /// refused (the CLI ignores them).
    pub(crate) fn answered(&self, id: &str) {
        self.lock().answering.remove(id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use claude_conduit::events::{EventKind, Outcome};
    use claude_conduit::hooks::{HookEvent, HookOutput};

    fn session() -> Arc<SessionPlugins> {
        let manager = PluginManager::new();
        manager
            .bus()
            .on(EventKind::Hook(HookEvent::PreToolUse), 0, |_| {
                Ok(Outcome::Answer(HookOutput::deny_tool("gateway says no")))
            });
        SessionPlugins::new(&manager).unwrap()
    }

    fn frame(v: Value) -> Bytes {
        Bytes::from(v.to_string())
    }

    #[test]
    fn a_client_initialize_keeps_its_hooks_and_gets_the_gateways() {
        let s = session();
        let out = s
            .client_frame(frame(json!({"type": "control_request", "request_id": "r1",
                "request": {"subtype": "initialize", "hooks": {"PreToolUse": [
                    {"matcher": "Bash", "hookCallbackIds": ["hook_0"]}]}}})))
            .unwrap();
        assert_eq!(out.len(), 1);
        let v: Value = serde_json::from_slice(&out[0]).unwrap();
        let ids: Vec<&str> = callback_ids(&v["request"]);
        assert_eq!(ids, ["hook_0", "gw_0"]);
        // Initialized: no initialize of the gateway's own before the next frame.
        let next = s
            .client_frame(frame(
                json!({"type": "user", "message": {"role": "user", "content": "hi"}}),
            ))
            .unwrap();
        assert_eq!(next.len(), 1);
    }

    #[test]
    fn without_a_client_initialize_the_gateway_sends_its_own_first_and_swallows_the_answer() {
        let s = session();
        let out = s
            .client_frame(frame(
                json!({"type": "user", "message": {"role": "user", "content": "hi"}}),
            ))
            .unwrap();
        assert_eq!(out.len(), 2);
        let init: Value = serde_json::from_slice(&out[0]).unwrap();
        assert_eq!(init["request_id"], "gw_init_1");
        assert_eq!(callback_ids(&init["request"]), ["gw_0"]);
        let answer = frame(json!({"type": "control_response", "response": {
            "subtype": "success", "request_id": "gw_init_1", "response": {}}}));
        assert!(matches!(s.cli_frame(answer.clone()), FromCli::Swallow));
        // Only once.
        assert!(matches!(s.cli_frame(answer), FromCli::Forward(_)));
    }

    #[tokio::test]
    async fn gateway_callbacks_are_answered_here_and_clients_cannot_answer_or_claim_them() {
        let s = session();
        let request = frame(json!({"type": "control_request", "request_id": "cli-7",
            "request": {"subtype": "hook_callback", "callback_id": "gw_0", "tool_use_id": "t",
                "input": {"session_id": "s", "transcript_path": "/t", "cwd": "/",
                    "hook_event_name": "PreToolUse", "tool_name": "Bash",
                    "tool_input": {"command": "ls"}, "tool_use_id": "t"}}}));
        let FromCli::Answer(id, answer) = s.cli_frame(request) else {
            panic!("the gateway answers its own callbacks")
        };
        assert_eq!(id, "cli-7");
        // While the gateway answers, a client's response to the same request is refused.
        let forged = frame(json!({"type": "control_response", "response": {
            "subtype": "success", "request_id": "cli-7",
            "response": {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                "permissionDecision": "allow"}}}}));
        let (message, reply) = s.client_frame(forged.clone()).unwrap_err();
        assert!(message.contains("answered by the gateway"), "{message}");
        assert!(reply.is_none());
        let reply: Value = serde_json::from_slice(&answer.await).unwrap();
        assert_eq!(reply["response"]["request_id"], "cli-7");
        assert_eq!(
            reply["response"]["response"]["hookSpecificOutput"]["permissionDecision"],
            "deny"
        );
        s.answered("cli-7");
        // A client's own callbacks pass through to it.
        let theirs = frame(json!({"type": "control_request", "request_id": "cli-8",
            "request": {"subtype": "hook_callback", "callback_id": "hook_0", "input": {}}}));
        assert!(matches!(s.cli_frame(theirs), FromCli::Forward(_)));
        // Claiming the gateway's ids or request ids is refused, with an error answer.
        for bad in [
            json!({"type": "control_request", "request_id": "r2", "request": {
                "subtype": "initialize", "agents": {"a": {"hooks": {"Stop": [
                    {"hookCallbackIds": ["gw_9"]}]}}}}}),
            json!({"type": "control_request", "request_id": "gw_init_1",
                "request": {"subtype": "interrupt"}}),
        ] {
            let (message, reply) = s.client_frame(frame(bad)).unwrap_err();
            assert!(message.contains("gw_"), "{message}");
            let reply: Value = serde_json::from_slice(&reply.unwrap()).unwrap();
            assert_eq!(reply["response"]["subtype"], "error");
        }
    }
}
