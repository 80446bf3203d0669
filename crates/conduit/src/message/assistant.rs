//! `assistant` and `user` frames.

use serde::Deserialize;
use serde_json::Value;

use super::content::{ContentBlock, MessageContent, ToolResultBlock, ToolUseBlock, concat_text};
use super::de::{count, null_default};

/// An `assistant` frame: one content block of a model message (the CLI sends one frame per
/// block, all sharing `message.id`), or a synthetic error message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct AssistantMessage {
    /// The Messages API message.
    pub message: ApiMessage,
    /// The id of the `Agent`/`Task` tool use this message belongs to, for subagent output.
    #[serde(default)]
    pub parent_tool_use_id: Option<String>,
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Set on synthetic messages that report an API failure: `authentication_failed`,
    /// `billing_error`, `rate_limit`, `invalid_request`, `server_error`, `max_output_tokens`,
    /// `unknown`, …
    #[serde(default)]
    pub error: Option<String>,
    /// Display metadata for MCP tool uses in this message.
    #[serde(default, deserialize_with = "null_default")]
    pub tool_use_meta: Vec<ToolUseMeta>,
    /// The API request id (`request-id` response header).
    #[serde(default)]
    pub request_id: Option<String>,
    /// When the CLI produced the frame (ISO 8601), if it says.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// The Messages API message carried by an `assistant` frame (or a `message_start` event).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ApiMessage {
    /// The API message id (`msg_…`); shared by all frames of one model message.
    #[serde(default)]
    pub id: String,
    /// The model that produced it (`<synthetic>` for CLI-made error messages).
    #[serde(default)]
    pub model: String,
    /// Always `assistant` for model output.
    #[serde(default)]
    pub role: String,
    /// The content blocks (one per `assistant` frame, as the CLI sends them).
    #[serde(default, deserialize_with = "null_default")]
    pub content: Vec<ContentBlock>,
    /// Why the model stopped. Always `null` in streamed `assistant` frames; the real value is in
    /// the `result` frame or the `message_delta` stream event.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence that matched, if any.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token usage as of `message_start`.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// Token usage of one API call (the Messages API `usage` object). Counts the CLI sends as `null`
/// are 0.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Uncached input tokens.
    #[serde(default, deserialize_with = "count")]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default, deserialize_with = "count")]
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default, deserialize_with = "count")]
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default, deserialize_with = "count")]
    pub cache_read_input_tokens: u64,
    /// Server tool requests made.
    #[serde(default)]
    pub server_tool_use: Option<ServerToolUsage>,
    /// The service tier (`standard`, `priority`, `batch`), when reported.
    #[serde(default)]
    pub service_tier: Option<String>,
}

impl Usage {
    /// All input tokens: uncached, cache writes and cache reads.
    pub fn total_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens)
    }
}

/// Server tool request counts inside [`Usage`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ServerToolUsage {
    /// Web search requests.
    #[serde(default, deserialize_with = "count")]
    pub web_search_requests: u64,
    /// Web fetch requests.
    #[serde(default, deserialize_with = "count")]
    pub web_fetch_requests: u64,
}

/// Display metadata the CLI attaches to MCP tool uses (`tool_use_meta`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ToolUseMeta {
    /// The tool use id.
    #[serde(default)]
    pub id: String,
    /// The tool's display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The MCP server's display name.
    #[serde(default)]
    pub server_display_name: Option<String>,
}

impl AssistantMessage {
    /// The content blocks.
    pub fn content(&self) -> &[ContentBlock] {
        &self.message.content
    }

    /// The text of all `text` blocks, concatenated.
    pub fn text(&self) -> String {
        concat_text(&self.message.content)
    }

    /// The `tool_use` blocks (client-side tools the CLI will run).
    pub fn tool_uses(&self) -> impl Iterator<Item = &ToolUseBlock> {
        self.message
            .content
            .iter()
            .filter_map(ContentBlock::as_tool_use)
    }

    /// The text of all `thinking` blocks, concatenated.
    pub fn thinking(&self) -> String {
        let mut out = String::new();
        for b in &self.message.content {
            if let ContentBlock::Thinking(t) = b {
                out.push_str(&t.thinking);
            }
        }
        out
    }

    /// The API message id (shared by the frames of one model message).
    pub fn id(&self) -> &str {
        &self.message.id
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.message.model
    }

    /// True for the synthetic messages the CLI makes when an API call fails (`error` is set).
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// True when the message comes from a subagent (`parent_tool_use_id` is set).
    pub fn is_subagent(&self) -> bool {
        self.parent_tool_use_id.is_some()
    }
}

/// A `user` frame: a prompt (sent by the SDK, or replayed by the CLI), tool results, an
/// interrupt marker, or a subagent's prompt.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct UserMessage {
    /// The message: role and content.
    pub message: UserBody,
    /// The id of the `Agent`/`Task` tool use this message belongs to (subagent prompts).
    #[serde(default)]
    pub parent_tool_use_id: Option<String>,
    /// The session id (the CLI's own UUID on frames it writes; ignored on frames it reads).
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id (optional on frames the SDK writes).
    #[serde(default)]
    pub uuid: Option<String>,
    /// When the CLI produced the frame (ISO 8601).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Structured per-tool output accompanying a tool result (an object for Bash or Write, an
    /// array for MCP tools, a string such as `"Error: …"` for denials), as JSON.
    #[serde(default)]
    pub tool_use_result: Option<Value>,
    /// `isReplay`: the CLI echoes a user message (`--replay-user-messages`, or the
    /// `<local-command-stdout>` line that `set_model` produces).
    #[serde(rename = "isReplay", default, deserialize_with = "null_default")]
    pub is_replay: bool,
    /// `isSynthetic`: a message the CLI made up rather than one a person typed.
    #[serde(rename = "isSynthetic", default, deserialize_with = "null_default")]
    pub is_synthetic: bool,
    /// For subagent prompts: the subagent type (`general-purpose`, …).
    #[serde(default)]
    pub subagent_type: Option<String>,
    /// For subagent prompts: the task's description.
    #[serde(default)]
    pub task_description: Option<String>,
    /// Where the message came from (`{"kind":"human"|"task-notification"|…}`), when set.
    #[serde(default)]
    pub origin: Option<Value>,
}

/// The `message` object of a `user` frame.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct UserBody {
    /// Always `user`.
    #[serde(default)]
    pub role: String,
    /// A string or content blocks.
    #[serde(default)]
    pub content: MessageContent,
}

impl UserMessage {
    /// The content (string or blocks).
    pub fn content(&self) -> &MessageContent {
        &self.message.content
    }

    /// The text: the string content, or the `text` blocks concatenated.
    pub fn text(&self) -> String {
        self.message.content.text()
    }

    /// True for echoed user messages (`isReplay:true`).
    pub fn is_replay(&self) -> bool {
        self.is_replay
    }

    /// The `tool_result` blocks.
    pub fn tool_results(&self) -> impl Iterator<Item = &ToolResultBlock> {
        self.message
            .content
            .blocks()
            .iter()
            .filter_map(ContentBlock::as_tool_result)
    }

    /// True when the message carries at least one `tool_result` block.
    pub fn is_tool_result(&self) -> bool {
        self.tool_results().next().is_some()
    }
}
