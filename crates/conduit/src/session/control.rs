//! Typed control requests: every SDK → CLI request the pinned CLI answers, as a method on
//! [`Client`] with a typed reply.
//!
//! Each reply type keeps the CLI's whole answer in `raw`, so fields this SDK does not type yet
//! are never lost. Requests the CLI refuses come back as [`Error::ControlError`] with its text
//! and code.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Client;
use crate::error::{Error, Result};

/// The reply to `interrupt`: prompts still queued after it and prompts it cancelled.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct InterruptReceipt {
    /// Uuids of queued user messages that are still queued.
    #[serde(default)]
    pub still_queued: Vec<String>,
    /// Uuids of queued user messages the interrupt cancelled.
    #[serde(default)]
    pub cancelled: Vec<String>,
    /// The whole reply.
    #[serde(skip)]
    pub raw: Value,
}

/// The reply to `mcp_status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct McpStatus {
    /// One entry per MCP server the CLI knows.
    #[serde(rename = "mcpServers", default)]
    pub servers: Vec<McpServerStatus>,
    /// The whole reply.
    #[serde(skip)]
    pub raw: Value,
}

/// One server in [`McpStatus`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct McpServerStatus {
    /// The server's name.
    #[serde(default)]
    pub name: String,
    /// `connected`, `failed`, `needs-auth`, `pending`, `disabled`, …
    #[serde(default)]
    pub status: String,
    /// Where it was configured (`dynamic` for SDK servers, `user`, `project`, …).
    #[serde(default)]
    pub scope: Option<String>,
    /// Its tools.
    #[serde(default)]
    pub tools: Vec<McpToolStatus>,
    /// The error, for failed servers.
    #[serde(default)]
    pub error: Option<String>,
}

/// One tool in [`McpServerStatus`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct McpToolStatus {
    /// The tool's name (without the `mcp__server__` prefix).
    #[serde(default)]
    pub name: String,
    /// Its annotations.
    #[serde(default)]
    pub annotations: Value,
}

/// The reply to `get_context_usage`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ContextUsage {
    /// Token use by category (system prompt, tools, messages, …).
    #[serde(default)]
    pub categories: Vec<ContextCategory>,
    /// Tokens in the context now.
    #[serde(default)]
    pub total_tokens: u64,
    /// The usable context size.
    #[serde(default)]
    pub max_tokens: u64,
    /// The model's raw context window.
    #[serde(default)]
    pub raw_max_tokens: u64,
    /// `total_tokens / max_tokens`, in percent.
    #[serde(default)]
    pub percentage: f64,
    /// The model the figures are for.
    #[serde(default)]
    pub model: Option<String>,
    /// The whole reply.
    #[serde(skip)]
    pub raw: Value,
}

/// One category of [`ContextUsage`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ContextCategory {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Tokens used.
    #[serde(default)]
    pub tokens: u64,
}

/// The reply to `rewind_files`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RewindResult {
    /// Whether the files can be (or were) rewound.
    #[serde(default)]
    pub can_rewind: bool,
    /// Why not, when they cannot.
    #[serde(default)]
    pub error: Option<String>,
    /// Files that change.
    #[serde(default)]
    pub files_changed: Vec<String>,
    /// Lines added back.
    #[serde(default)]
    pub insertions: u64,
    /// Lines removed.
    #[serde(default)]
    pub deletions: u64,
    /// The whole reply.
    #[serde(skip)]
    pub raw: Value,
}

/// The reply to `mcp_set_servers`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct McpSetServersResult {
    /// Servers added.
    #[serde(default)]
    pub added: Vec<String>,
    /// Servers removed.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Errors by server name.
    #[serde(default)]
    pub errors: BTreeMap<String, Value>,
    /// The whole reply.
    #[serde(skip)]
    pub raw: Value,
}

/// One model in the reply to `list_models`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ModelInfo {
    /// The value to pass to `set_model` (`default`, `sonnet`, …).
    #[serde(default)]
    pub value: Option<String>,
    /// The model it resolves to.
    #[serde(default)]
    pub resolved_model: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Description (with prices).
    #[serde(default)]
    pub description: Option<String>,
    /// Effort levels the model supports.
    #[serde(default)]
    pub supported_effort_levels: Vec<String>,
}

/// The reply to `get_binary_version`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BinaryVersion {
    /// The CLI version (`2.1.330`).
    #[serde(default)]
    pub version: String,
    /// When it was built.
    #[serde(default)]
    pub build_time: Option<String>,
    /// The whole reply.
    #[serde(skip)]
    pub raw: Value,
}

/// Reply types that keep the raw answer.
trait Raw: DeserializeOwned + Default {
    fn set_raw(&mut self, raw: Value);
}

macro_rules! raw_reply {
    ($($t:ty),*) => {$(
        impl Raw for $t {
            fn set_raw(&mut self, raw: Value) {
                self.raw = raw;
            }
        }
    )*};
}
raw_reply!(
    InterruptReceipt,
    McpStatus,
    ContextUsage,
    RewindResult,
    McpSetServersResult,
    BinaryVersion
);

fn typed<T: Raw>(subtype: &str, reply: Option<Value>) -> Result<T> {
    let raw = reply.unwrap_or(Value::Null);
    let mut t: T = if raw.is_null() {
        T::default()
    } else {
        serde_json::from_value(raw.clone()).map_err(|e| {
            Error::decode(
                raw.to_string().as_bytes(),
                format!("reply to {subtype}: {e}"),
            )
        })?
    };
    t.set_raw(raw);
    Ok(t)
}

impl Client {
    /// Interrupt the current turn; the turn then ends with its own `result` frame.
    pub async fn interrupt(&self) -> Result<InterruptReceipt> {
        typed("interrupt", self.control("interrupt", json!({})).await?)
    }

    /// Set the thinking budget (`None` removes the limit).
    pub async fn set_max_thinking_tokens(&self, tokens: Option<u32>) -> Result<()> {
        self.control(
            "set_max_thinking_tokens",
            json!({"max_thinking_tokens": tokens}),
        )
        .await
        .map(drop)
    }

    /// The MCP servers the CLI knows, with their status and tools.
    pub async fn mcp_status(&self) -> Result<McpStatus> {
        typed("mcp_status", self.control("mcp_status", json!({})).await?)
    }

    /// Reconnect an MCP server.
    pub async fn mcp_reconnect(&self, server: &str) -> Result<()> {
        self.control("mcp_reconnect", json!({"serverName": server}))
            .await
            .map(drop)
    }

    /// Enable or disable an MCP server.
    pub async fn mcp_toggle(&self, server: &str, enabled: bool) -> Result<()> {
        self.control(
            "mcp_toggle",
            json!({"serverName": server, "enabled": enabled}),
        )
        .await
        .map(drop)
    }

    /// Replace the session's dynamically added MCP servers (`{name: config}` in the
    /// `--mcp-config` entry shape).
    pub async fn mcp_set_servers(&self, servers: Value) -> Result<McpSetServersResult> {
        typed(
            "mcp_set_servers",
            self.control("mcp_set_servers", json!({"servers": servers}))
                .await?,
        )
    }

    /// How full the context window is, by category.
    pub async fn get_context_usage(&self) -> Result<ContextUsage> {
        typed(
            "get_context_usage",
            self.control("get_context_usage", json!({})).await?,
        )
    }

    /// Rewind files changed since the user message `user_message_id` (needs
    /// `enable_file_checkpointing`; `dry_run` only reports what would change).
    pub async fn rewind_files(&self, user_message_id: &str, dry_run: bool) -> Result<RewindResult> {
        typed(
            "rewind_files",
            self.control(
                "rewind_files",
                json!({"user_message_id": user_message_id, "dry_run": dry_run}),
            )
            .await?,
        )
    }

    /// Stop a background task (a `task_notification` with status `stopped` follows).
    pub async fn stop_task(&self, task_id: &str) -> Result<()> {
        self.control("stop_task", json!({"task_id": task_id}))
            .await
            .map(drop)
    }

    /// The models the CLI offers.
    pub async fn list_models(&self) -> Result<Vec<ModelInfo>> {
        let reply = self.control("list_models", json!({})).await?;
        let models = reply
            .as_ref()
            .and_then(|r| r.get("models"))
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(models)
            .map_err(|e| Error::decode(b"list_models", format!("reply to list_models: {e}")))
    }

    /// The CLI binary's version and build time.
    pub async fn get_binary_version(&self) -> Result<BinaryVersion> {
        typed(
            "get_binary_version",
            self.control("get_binary_version", json!({})).await?,
        )
    }

    /// The CLI's cost summary for this session, as text.
    pub async fn get_session_cost(&self) -> Result<String> {
        let reply = self.control("get_session_cost", json!({})).await?;
        Ok(reply
            .as_ref()
            .and_then(|r| r.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Usage and rate-limit information (raw JSON; the shape varies by account type).
    pub async fn get_usage(&self) -> Result<Value> {
        Ok(self
            .control("get_usage", json!({}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// The settings in effect (raw JSON).
    pub async fn get_settings(&self) -> Result<Value> {
        Ok(self
            .control("get_settings", json!({}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// Apply settings as if given by `--settings` (flag layer).
    pub async fn apply_flag_settings(&self, settings: Value) -> Result<()> {
        self.control("apply_flag_settings", json!({"settings": settings}))
            .await
            .map(drop)
    }

    /// The permission rules in effect (raw JSON).
    pub async fn list_permission_rules(&self) -> Result<Value> {
        Ok(self
            .control("list_permission_rules", json!({}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// The hooks in effect and the CLI's hook event catalog (raw JSON).
    pub async fn get_hooks_listing(&self) -> Result<Value> {
        Ok(self
            .control("get_hooks_listing", json!({}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// Reload plugins; returns the refreshed commands, agents, plugins (raw JSON).
    pub async fn reload_plugins(&self) -> Result<Value> {
        Ok(self
            .control("reload_plugins", json!({}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// Reload skills; returns the refreshed list (raw JSON).
    pub async fn reload_skills(&self) -> Result<Value> {
        Ok(self
            .control("reload_skills", json!({}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// Cancel a queued (not yet started) user message by its uuid; true if it was cancelled.
    pub async fn cancel_async_message(&self, message_uuid: &str) -> Result<bool> {
        let reply = self
            .control(
                "cancel_async_message",
                json!({"message_uuid": message_uuid}),
            )
            .await?;
        Ok(reply
            .as_ref()
            .and_then(|r| r.get("cancelled"))
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    /// The output so far of a background shell or monitor task (raw JSON).
    pub async fn get_task_output(&self, task_id: &str) -> Result<Value> {
        Ok(self
            .control("get_task_output", json!({"task_id": task_id}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// Background the running foreground tasks (the CLI's Ctrl+B).
    pub async fn background_tasks(&self) -> Result<()> {
        self.control("background_tasks", json!({})).await.map(drop)
    }

    /// File path completions for `query`, as the CLI's `@` mentions offer them (raw JSON:
    /// `{cwd, suggestions}`).
    pub async fn file_suggestions(&self, query: &str) -> Result<Value> {
        Ok(self
            .control("file_suggestions", json!({"query": query}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// Read a file through the CLI (subject to its read permissions; raw JSON).
    pub async fn read_file(&self, path: &str) -> Result<Value> {
        Ok(self
            .control("read_file", json!({"path": path}))
            .await?
            .unwrap_or(Value::Null))
    }

    /// Call a tool of an MCP server the CLI is connected to (raw JSON result).
    pub async fn mcp_call(&self, server: &str, tool: &str, arguments: Value) -> Result<Value> {
        Ok(self
            .control(
                "mcp_call",
                json!({"serverName": server, "tool": tool, "arguments": arguments}),
            )
            .await?
            .unwrap_or(Value::Null))
    }

    /// Reload output styles; returns the names available.
    pub async fn reload_output_styles(&self) -> Result<Vec<String>> {
        let reply = self.control("reload_output_styles", json!({})).await?;
        Ok(reply
            .as_ref()
            .and_then(|r| r.get("available_output_styles"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Give the session a title.
    pub async fn rename_session(&self, title: &str) -> Result<()> {
        self.control("rename_session", json!({"title": title}))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_keep_raw_and_tolerate_missing_payloads() {
        let r: InterruptReceipt = typed("interrupt", None).unwrap_or_default();
        assert!(r.still_queued.is_empty());
        let s: McpStatus = typed(
            "mcp_status",
            Some(
                json!({"mcpServers":[{"name":"probe","status":"connected","scope":"dynamic",
                "tools":[{"name":"add","annotations":{}}]}],"extra":1}),
            ),
        )
        .unwrap_or_default();
        assert_eq!(s.servers[0].tools[0].name, "add");
        assert_eq!(s.raw["extra"], 1);
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_a_decode_error() {
        let r: Result<McpStatus> = typed("mcp_status", Some(json!({"mcpServers": 5})));
        assert!(matches!(r, Err(Error::Decode { .. })));
    }
}
