//! [`SdkMcpServer`]: a named set of tools answering the CLI's tunnelled MCP requests.

use std::fmt;
use std::sync::Arc;

use serde_json::{Value, json};

use super::tool::SdkTool;

/// An MCP server living inside this process: the CLI reaches it through `mcp_message` control
/// requests instead of spawning anything.
///
/// Register it in the options (it is listed in `--mcp-config` as `{"type":"sdk","name":N}`), and
/// the session routes each `mcp_message` for `N` to [`SdkMcpServer::handle`]. Cheap to clone.
#[derive(Clone)]
pub struct SdkMcpServer {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    version: String,
    instructions: Option<String>,
    tools: Vec<SdkTool>,
}

impl fmt::Debug for SdkMcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkMcpServer")
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("instructions", &self.inner.instructions)
            .field("tools", &self.inner.tools)
            .finish()
    }
}

/// Builds an [`SdkMcpServer`]; see [`SdkMcpServer::builder`].
#[derive(Debug)]
#[must_use]
pub struct SdkMcpServerBuilder {
    name: String,
    version: String,
    instructions: Option<String>,
    tools: Vec<SdkTool>,
}

impl SdkMcpServerBuilder {
    /// The version reported in `serverInfo` (default `1.0.0`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Instructions for the client, returned by `initialize`.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Adds a tool. A tool with the same name replaces the earlier one (keeping its position).
    pub fn tool(mut self, tool: SdkTool) -> Self {
        match self.tools.iter_mut().find(|t| t.name() == tool.name()) {
            Some(slot) => *slot = tool,
            None => self.tools.push(tool),
        }
        self
    }

    /// Adds several tools, as [`tool`](Self::tool) does.
    pub fn tools(self, tools: impl IntoIterator<Item = SdkTool>) -> Self {
        tools.into_iter().fold(self, Self::tool)
    }

    /// The server.
    pub fn build(self) -> SdkMcpServer {
        SdkMcpServer {
            inner: Arc::new(Inner {
                name: self.name,
                version: self.version,
                instructions: self.instructions,
                tools: self.tools,
            }),
        }
    }
}

impl SdkMcpServer {
    /// Starts a server called `name` (version `1.0.0`, no tools).
    pub fn builder(name: impl Into<String>) -> SdkMcpServerBuilder {
        SdkMcpServerBuilder {
            name: name.into(),
            version: "1.0.0".into(),
            instructions: None,
            tools: Vec::new(),
        }
    }

    /// The server's name (the `server_name` of the CLI's `mcp_message` requests).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The version reported in `serverInfo`.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The instructions returned by `initialize`, if any.
    pub fn instructions(&self) -> Option<&str> {
        self.inner.instructions.as_deref()
    }

    /// The tools, in registration order.
    pub fn tools(&self) -> &[SdkTool] {
        &self.inner.tools
    }

    /// The tool called `name` (its name inside the server, without the `mcp__` prefix).
    pub fn tool(&self, name: &str) -> Option<&SdkTool> {
        self.inner.tools.iter().find(|t| t.name() == name)
    }

    /// The tool names as the CLI and the model see them: `mcp__<server>__<tool>` (usable in
    /// allowed/disallowed tool lists and hook matchers).
    pub fn tool_names(&self) -> Vec<String> {
        self.inner
            .tools
            .iter()
            .map(|t| format!("mcp__{}__{}", self.inner.name, t.name()))
            .collect()
    }

    /// This server's `--mcp-config` entry: `{"type":"sdk","name":<name>}`.
    pub fn config_entry(&self) -> Value {
        json!({"type": "sdk", "name": self.inner.name})
    }

    /// Answers one JSON-RPC message from the CLI; the result goes into
    /// `{"mcp_response": …}`.
    ///
    /// - `initialize` (accepted any number of times; the CLI handshakes twice with the same ids)
    ///   → `protocolVersion` (the client's if supported, else the newest with an `initialize`
    ///   handshake), `capabilities: {"tools": {}}`, `serverInfo`;
    /// - notifications (no `id`) → the ack `{"jsonrpc":"2.0","result":{}}`;
    /// - `ping` → `{}`; `tools/list` → every tool with its schema, annotations and `_meta`;
    /// - `tools/call` → the handler's result; handler errors, panics, unknown tools and invalid
    ///   arguments become results with `"isError": true` so the model sees them;
    /// - any other method → JSON-RPC error `-32601`; a message that is not a JSON-RPC 2.0
    ///   request → `-32600`.
    ///
    /// Ids are echoed exactly as sent. Without the `mcp` cargo feature every request is answered
    /// with a JSON-RPC error saying so.
    pub async fn handle(&self, message: Value) -> Value {
        #[cfg(feature = "mcp")]
        {
            let view = super::jsonrpc::ServerView {
                name: &self.inner.name,
                version: &self.inner.version,
                instructions: self.inner.instructions.as_deref(),
                tools: &self.inner.tools,
            };
            super::jsonrpc::dispatch(view, message).await
        }
        #[cfg(not(feature = "mcp"))]
        {
            match message.get("id") {
                None => json!({"jsonrpc": "2.0", "result": {}}),
                Some(id) => json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": -32601,
                        "message": "SDK MCP servers need the `mcp` cargo feature of claude-conduit",
                    },
                }),
            }
        }
    }
}
