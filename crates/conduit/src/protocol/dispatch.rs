//! Who answers the CLI's control requests.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::message::ControlRequest;

/// The message a `can_use_tool` request is denied with when no permission handler is set.
pub(crate) const NO_PERMISSION_HANDLER: &str = "No permission handler is configured in this SDK session \
     (set a can_use_tool callback or a permission mode / allowed tools that cover this tool); \
     the tool call was denied.";

/// Answers control requests the CLI sends to the SDK (`can_use_tool`, `hook_callback`,
/// `mcp_message`, …).
///
/// `Ok(Some(v))` answers with a success carrying `v`, `Ok(None)` with a bare success, `Err(msg)`
/// with an error response. Each request runs on its own task; a panic is answered with an error.
pub(crate) trait InboundHandler: Send + Sync + 'static {
    /// Answer one request.
    fn handle(&self, request: ControlRequest) -> BoxFuture<'static, Result<Option<Value>, String>>;
}

/// The answers given when nothing else is configured: permission requests are denied with
/// [`NO_PERMISSION_HANDLER`], unknown hook callbacks, MCP servers and subtypes get errors.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DefaultHandler;

impl DefaultHandler {
    /// The default answer to `request`.
    pub(crate) fn answer(request: &ControlRequest) -> Result<Option<Value>, String> {
        let field = |k: &str| request.body.get(k).and_then(Value::as_str).unwrap_or("");
        match request.subtype.as_str() {
            "can_use_tool" => Ok(Some(json!({
                "behavior": "deny",
                "message": NO_PERMISSION_HANDLER,
            }))),
            "hook_callback" => Err(format!(
                "unknown hook callback id `{}`: no hook with this id is registered",
                field("callback_id")
            )),
            "mcp_message" => Err(format!(
                "unknown MCP server `{}`: no SDK MCP server with this name is registered",
                field("server_name")
            )),
            other => Err(format!("Unsupported control request subtype: {other}")),
        }
    }
}

impl InboundHandler for DefaultHandler {
    fn handle(&self, request: ControlRequest) -> BoxFuture<'static, Result<Option<Value>, String>> {
        let answer = Self::answer(&request);
        Box::pin(async move { answer })
    }
}

/// Routes the CLI's control requests to the session's callbacks: `can_use_tool` to the
/// permission handler, `hook_callback` to hooks by callback id, `mcp_message` to in-process MCP
/// servers by name; anything else (or a family with nothing configured) gets the
/// [`DefaultHandler`]'s answer.
#[derive(Clone, Default)]
pub(crate) struct Router {
    pub permission: Option<std::sync::Arc<dyn crate::permission::PermissionHandler>>,
    pub hooks: std::sync::Arc<
        std::collections::HashMap<String, std::sync::Arc<dyn crate::hooks::HookCallback>>,
    >,
    pub mcp: std::sync::Arc<std::collections::HashMap<String, crate::mcp::SdkMcpServer>>,
}

impl InboundHandler for Router {
    fn handle(&self, request: ControlRequest) -> BoxFuture<'static, Result<Option<Value>, String>> {
        use crate::telemetry::{CallbackKind, callback, permission_decision, tool_call};
        let started = std::time::Instant::now();
        let kind = match request.subtype.as_str() {
            "can_use_tool" => {
                if let Some(tool) = request.body.get("tool_name").and_then(Value::as_str) {
                    tool_call(tool);
                }
                CallbackKind::Permission
            }
            "hook_callback" => CallbackKind::Hook,
            "mcp_message" => CallbackKind::McpTool,
            _ => return self.route(request),
        };
        let answer = self.route(request);
        Box::pin(async move {
            let r = answer.await;
            match kind {
                CallbackKind::Permission => {
                    let outcome = match &r {
                        Ok(Some(v)) if v["behavior"] == "allow" => "allow",
                        Ok(_) => "deny",
                        Err(_) => "error",
                    };
                    permission_decision(outcome, started.elapsed());
                }
                other => callback(other, started.elapsed()),
            }
            r
        })
    }
}

impl Router {
    fn route(&self, request: ControlRequest) -> BoxFuture<'static, Result<Option<Value>, String>> {
        match request.subtype.as_str() {
            "can_use_tool" => match &self.permission {
                Some(handler) => {
                    let handler = handler.clone();
                    Box::pin(
                        async move { crate::permission::answer(&*handler, &request.body).await },
                    )
                }
                None => DefaultHandler.handle(request),
            },
            "hook_callback" => crate::hooks::dispatch_owned(&self.hooks, request.body),
            "mcp_message" => {
                let servers = self.mcp.clone();
                Box::pin(async move { crate::mcp::answer(&servers, &request.body).await })
            }
            _ => DefaultHandler.handle(request),
        }
    }
}
