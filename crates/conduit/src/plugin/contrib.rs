//! What plugins contribute beyond hooks and tools, on the SDK's own extension points: permission
//! policies (a [`PermissionHandler`]), custom message types and protocol extensions
//! ([`Extensions`]), and query middleware (a tower [`Layer`]). Each call goes to a plugin's
//! current version, so a reload takes effect for the next call.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use super::PluginManager;
use super::manager::{Live, Version};
use super::manifest::OnError;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::extension::{Action, Extensions, FrameRef, find_type};
use crate::hooks::{HookEvent, HookInput, HookOutput};
use crate::middleware::{QueryLayer, QueryRequest};
use crate::permission::{PermissionDecision, PermissionHandler, PermissionRequest};
use crate::session::Query;

impl PluginManager {
    /// Whether an active plugin has a `can_use_tool` permission policy.
    pub fn has_permission_policies(&self) -> bool {
        self.active().iter().any(|(_, v)| v.permission)
    }

    /// The active plugins' permission policies on one request, in priority order (highest
    /// `priority` first, ties by name), combined by [`PermissionDecision::combine`]: any deny
    /// wins (the first deny ends the chain: lower policies are not asked), the first
    /// `updated_input` applies. `None`: no policy had an opinion.
    ///
    /// A policy that fails (a script error or limit, a coprocessor that is down, an error of a
    /// native plugin, a panic, or no answer within the manifest's `timeout_ms`) is logged,
    /// counted and reported ([`list`](Self::list)); it counts as no opinion, or as a deny under
    /// `on_error = "deny"`.
    pub async fn can_use_tool(&self, request: &PermissionRequest) -> Option<PermissionDecision> {
        let mut answers = Vec::new();
        for (live, version) in self.active() {
            if !version.permission {
                continue;
            }
            // A panic while making the future or while polling it is a failure, not a crash.
            let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                version.plugin.can_use_tool(request.clone())
            }));
            let answer = match call {
                Err(_) => Err("the policy panicked".to_owned()),
                Ok(call) => {
                    let call = std::panic::AssertUnwindSafe(call).catch_unwind();
                    match tokio::time::timeout(version.manifest.call_timeout(), call).await {
                        Ok(Ok(answer)) => answer,
                        Ok(Err(_)) => Err("the policy panicked".to_owned()),
                        Err(_) => Err(format!(
                            "no answer within {} ms (`timeout_ms`)",
                            version.manifest.timeout_ms
                        )),
                    }
                }
            };
            let decision = match answer {
                Ok(d) => d,
                Err(error) => {
                    live.failed("can_use_tool", &error);
                    match version.manifest.on_error {
                        OnError::Deny => Some(PermissionDecision::deny(format!(
                            "plugin `{}` failed ({error}); its policy denies on error",
                            live.name
                        ))),
                        OnError::Ignore => None,
                    }
                }
            };
            if let Some(d) = decision {
                let deny = !d.is_allow();
                answers.push(d);
                if deny {
                    break;
                }
            }
        }
        PermissionDecision::combine(answers)
    }

    /// The plugins' permission policies as a `PreToolUse` hook answer, for a host that must
    /// enforce them on every tool call whatever the session's own permission settings (the
    /// gateway: a client's `allowed_tools` or permission mode would keep the CLI from ever
    /// asking `can_use_tool`). The policies see a request built from the hook input
    /// (`tool_name`, `input`, `tool_use_id`, `agent_id`). A deny becomes a `PreToolUse` deny
    /// with its message (with `interrupt`, also `continue: false`); an allow with an
    /// `updated_input` becomes an `updatedInput` **without** a permission decision; a plain
    /// allow or no opinion gives `None`. So the policies only ever deny or rewrite: an allow
    /// never skips the session's own permission checks. `None` for other events.
    pub async fn policies_as_pre_tool_use(&self, input: &HookInput) -> Option<HookOutput> {
        if input.event() != HookEvent::PreToolUse {
            return None;
        }
        let mut request = PermissionRequest::new(
            input.tool_name().unwrap_or_default(),
            input.tool_input().cloned().unwrap_or_else(|| json!({})),
        );
        request.tool_use_id = input.tool_use_id().map(str::to_owned);
        if let Some(id) = request.tool_use_id.clone() {
            request.raw.insert("tool_use_id".into(), Value::String(id));
        }
        if let Some(agent) = input.raw().get("agent_id").and_then(Value::as_str) {
            request.agent_id = Some(agent.to_owned());
            request
                .raw
                .insert("agent_id".into(), Value::String(agent.to_owned()));
        }
        match self.can_use_tool(&request).await? {
            PermissionDecision::Deny { message, interrupt } => {
                let out = HookOutput::deny_tool(message.clone());
                Some(if interrupt {
                    let mut out = out.with_continue(false);
                    out.stop_reason = Some(message);
                    out
                } else {
                    out
                })
            }
            PermissionDecision::Allow {
                updated_input: Some(input),
                ..
            } => Some(HookOutput::default().with_updated_input(input)),
            PermissionDecision::Allow { .. } => None,
        }
    }

    /// A `can_use_tool` handler: the plugins' policies ([`can_use_tool`](Self::can_use_tool)),
    /// then `user` (the session's own handler) as the last in the chain. A plugin's deny is the
    /// answer (`user` is not asked); otherwise `user` decides too and the answers combine (any
    /// deny wins, the first `updated_input` in order — the plugins' before the user's —
    /// applies). Without `user`, a call no policy allowed is denied, as the CLI denies an
    /// unanswered permission prompt in a non-interactive session.
    /// [`OptionsBuilder::plugins`](crate::options::OptionsBuilder::plugins) installs it.
    pub fn permission_handler(
        &self,
        user: Option<Arc<dyn PermissionHandler>>,
    ) -> Arc<dyn PermissionHandler> {
        Arc::new(PluginPermissions {
            manager: self.clone(),
            user,
        })
    }

    /// The active plugins' custom message types and protocol extensions, as one
    /// [`Extensions`] (plugins in priority order). The set of types is taken now; each frame
    /// goes to the handling plugin's current version. A handler sees only frames that pass the
    /// schema of its type, if the plugin declares one; others go to standard processing (where
    /// a session reports them as [`Error::InvalidFrame`]).
    pub fn extensions(&self) -> Extensions {
        let mut ext = Extensions::new();
        for (live, version) in self.active() {
            for t in &version.custom_types {
                ext = ext.register(t.clone());
            }
            for type_ in &version.frame_types {
                let live = live.clone();
                let handled = type_.clone();
                ext = ext.handle(type_.clone(), move |frame| on_frame(&live, &handled, frame));
            }
        }
        ext
    }

    /// A tower layer running the active plugins' query layers
    /// ([`Plugin::query_layer`](super::Plugin::query_layer)) around each query, the highest
    /// `priority` outermost. The stack is built per query from the plugins' current versions:
    /// a reloaded or new plugin's layer wraps the next query.
    ///
    /// ```
    /// use claude_conduit::middleware::QueryService;
    /// use claude_conduit::plugin::PluginManager;
    /// use tower::ServiceBuilder;
    ///
    /// let manager = PluginManager::new();
    /// let service = ServiceBuilder::new().layer(manager.layer()).service(QueryService::new());
    /// # let _ = service;
    /// ```
    pub fn layer(&self) -> PluginLayer {
        PluginLayer {
            manager: self.clone(),
        }
    }

    fn query_layers(&self) -> Vec<QueryLayer> {
        self.active()
            .into_iter()
            .filter_map(|(_, v)| v.layer.clone())
            .collect()
    }
}

/// One frame for one plugin: the current version's handler, if it still handles the type and
/// the frame passes its schema.
fn on_frame(live: &Live, handled: &str, frame: FrameRef<'_>) -> Action {
    let Some(version): Option<Arc<Version>> = live.current() else {
        return Action::Pass;
    };
    if !version.frame_types.iter().any(|t| t == handled) {
        return Action::Pass;
    }
    let subtype = frame
        .value
        .get("subtype")
        .and_then(serde_json::Value::as_str);
    if let Some(t) = find_type(&version.custom_types, handled, subtype)
        && let Err(invalid) = t.validate(frame.value)
    {
        tracing::debug!(
            target: "claude_conduit::plugin",
            plugin = %live.name,
            path = %invalid.path,
            "frame fails the plugin's schema; passed on"
        );
        return Action::Pass;
    }
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        version.plugin.on_frame(frame)
    }))
    .unwrap_or_else(|_| Err("the frame handler panicked".to_owned()));
    match answer {
        Ok(action) => action,
        Err(error) => {
            live.failed(&format!("frame {handled}"), &error);
            match version.manifest.on_error {
                OnError::Deny => Action::Swallow,
                OnError::Ignore => Action::Pass,
            }
        }
    }
}

struct PluginPermissions {
    manager: PluginManager,
    user: Option<Arc<dyn PermissionHandler>>,
}

impl PermissionHandler for PluginPermissions {
    fn decide(&self, request: PermissionRequest) -> BoxFuture<'static, PermissionDecision> {
        let manager = self.manager.clone();
        let user = self.user.clone();
        Box::pin(async move {
            let plugins = manager.can_use_tool(&request).await;
            if let Some(deny @ PermissionDecision::Deny { .. }) = plugins {
                return deny;
            }
            match user {
                Some(user) => {
                    let mine = user.decide(request).await;
                    PermissionDecision::combine(plugins.into_iter().chain([mine.clone()]))
                        .unwrap_or(mine)
                }
                None => plugins.unwrap_or_else(|| {
                    PermissionDecision::deny(format!(
                        "no permission policy allowed `{}` (no plugin policy answered and the \
                         session has no can_use_tool handler)",
                        request.tool_name
                    ))
                }),
            }
        })
    }
}

/// The tower layer of [`PluginManager::layer`].
#[derive(Clone, Debug)]
pub struct PluginLayer {
    manager: PluginManager,
}

impl<S> Layer<S> for PluginLayer {
    type Service = PluginService<S>;
    fn layer(&self, inner: S) -> PluginService<S> {
        PluginService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service [`PluginLayer`] makes.
#[derive(Clone, Debug)]
pub struct PluginService<S> {
    inner: S,
    manager: PluginManager,
}

impl<S> Service<QueryRequest> for PluginService<S>
where
    S: Service<QueryRequest, Response = Query, Error = Error> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Response = Query;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Query>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        // Each call drives a clone of the inner service to readiness (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: QueryRequest) -> Self::Future {
        let layers = self.manager.query_layers();
        let inner = self.inner.clone();
        if layers.is_empty() {
            return Box::pin(inner.oneshot(req));
        }
        let mut service = BoxCloneSyncService::new(inner);
        for layer in layers.iter().rev() {
            service = layer.layer(service);
        }
        Box::pin(service.oneshot(req))
    }
}
