//! MCP servers for the CLI: in-process SDK servers and external server configurations.
//!
//! **In-process (SDK) servers.** Declare tools ([`SdkTool::new`] for raw JSON arguments, with a
//! JSON Schema or the Python SDK's `{"a": "number"}` shorthand; `SdkTool::typed` for a `serde` +
//! `schemars` type, schemars re-exported as `claude_conduit::schemars`), group them in an [`SdkMcpServer`] and
//! register it in the options. The CLI lists it in `--mcp-config` as
//! `{"type":"sdk","name":N}` and acts as the MCP client: every JSON-RPC message travels in a
//! `control_request` `{"subtype":"mcp_message","server_name":N,"message":…}`, and the SDK answers
//! `{"mcp_response": <JSON-RPC response>}` ([`answer`] does the routing, [`SdkMcpServer::handle`]
//! the JSON-RPC). The model calls the tools `mcp__<server>__<tool>`
//! ([`SdkMcpServer::tool_names`]).
//!
//! Protocol details this module copes with: the CLI sends its `initialize` before it answers the
//! SDK's own `initialize`, and it performs the whole handshake twice with the same ids;
//! notifications still need an ack; tool failures of any kind (handler error, panic, unknown tool,
//! bad arguments) are tool results with `"isError": true`, so the model sees them.
//!
//! **External servers** ([`McpServerConfig::Stdio`], [`Sse`](McpServerConfig::Sse),
//! [`Http`](McpServerConfig::Http)) are passed through to the CLI; [`mcp_config_json`] builds the
//! `--mcp-config` value for a mixed set.
//!
//! **Cargo feature `mcp`** (on by default) brings the JSON-RPC dispatch (on the official Rust MCP
//! SDK's protocol types, `rmcp::model`) and `SdkTool::typed` (`schemars`). Without it the
//! configuration types still exist, but [`SdkMcpServer::handle`] answers every request with an
//! error.
//!
//! ```
//! # #[cfg(feature = "mcp")]
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use claude_conduit::mcp::{SdkMcpServer, SdkTool, ToolOutput};
//! use serde_json::json;
//!
//! // schemars comes with the SDK: derive through its re-export, naming the path.
//! #[derive(serde::Deserialize, claude_conduit::schemars::JsonSchema)]
//! #[schemars(crate = "claude_conduit::schemars")]
//! struct Add {
//!     /// First addend.
//!     a: f64,
//!     /// Second addend.
//!     b: f64,
//! }
//!
//! let add = SdkTool::typed("add", "Add two numbers", |args: Add| async move {
//!     Ok(ToolOutput::text(format!("{}", args.a + args.b)))
//! });
//! let server = SdkMcpServer::builder("calc").version("1.0.0").tool(add).build();
//! assert_eq!(server.tool_names(), ["mcp__calc__add"]);
//! assert_eq!(server.config_entry(), json!({"type": "sdk", "name": "calc"}));
//!
//! let response = server
//!     .handle(json!({
//!         "jsonrpc": "2.0",
//!         "id": 2,
//!         "method": "tools/call",
//!         "params": {"name": "add", "arguments": {"a": 1, "b": 2}},
//!     }))
//!     .await;
//! assert_eq!(response["id"], 2);
//! assert_eq!(response["result"]["content"][0]["text"], "3");
//! assert_eq!(response["result"]["isError"], false);
//! # });
//! ```

use std::collections::HashMap;

use serde_json::{Map, Value, json};

mod config;
#[cfg(feature = "mcp")]
mod jsonrpc;
mod server;
mod tool;

pub use config::{McpServerConfig, mcp_config_json, sdk_servers};
pub use server::{SdkMcpServer, SdkMcpServerBuilder};
pub use tool::{SdkTool, ToolAnnotations, ToolContent, ToolError, ToolOutput};

/// Answers an `mcp_message` control request (its `body`: `server_name` and `message`) with
/// `{"mcp_response": …}` from the named server.
///
/// `Err` (an error control response) when `server_name` is missing or names no server in
/// `servers`. Never `Ok(None)`: every message, notifications included, gets a response.
pub async fn answer(
    servers: &HashMap<String, SdkMcpServer>,
    body: &Map<String, Value>,
) -> Result<Option<Value>, String> {
    let Some(name) = body.get("server_name").and_then(Value::as_str) else {
        return Err("mcp_message without a `server_name`".to_owned());
    };
    let Some(server) = servers.get(name) else {
        let mut known: Vec<&str> = servers.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Err(format!(
            "unknown MCP server `{name}`: no SDK MCP server with this name is registered \
             (registered: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ));
    };
    let message = body.get("message").cloned().unwrap_or(Value::Null);
    Ok(Some(json!({"mcp_response": server.handle(message).await})))
}

#[cfg(all(test, feature = "mcp"))]
mod tests;

#[cfg(all(test, not(feature = "mcp")))]
mod tests_without_mcp {
    use super::*;

    #[tokio::test]
    async fn requests_are_refused_and_notifications_acked() {
        let server = SdkMcpServer::builder("s").build();
        let refused = server
            .handle(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
            .await;
        assert_eq!(refused["id"], 3);
        assert_eq!(refused["error"]["code"], -32601);
        let ack = server
            .handle(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(ack, json!({"jsonrpc": "2.0", "result": {}}));
    }
}
