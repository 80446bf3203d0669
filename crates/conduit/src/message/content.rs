//! Content blocks: the pieces of `assistant` and `user` message content (Messages API shapes).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::Value;

use super::de::tagged_object;

/// One content block of an assistant or user message.
///
/// Block types this SDK does not know become [`ContentBlock::Unknown`], which keeps the whole
/// block (its `type` included) as JSON. A block of a known type always lands in its own variant.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ContentBlock {
    /// `text`.
    Text(TextBlock),
    /// `thinking`: the model's visible reasoning.
    Thinking(ThinkingBlock),
    /// `redacted_thinking`: encrypted reasoning.
    RedactedThinking(RedactedThinkingBlock),
    /// `tool_use`: the model calls a client-side tool (built-in, MCP or SDK tool).
    ToolUse(ToolUseBlock),
    /// `tool_result`: the result of a `tool_use`, sent back in a `user` message.
    ToolResult(ToolResultBlock),
    /// `server_tool_use`: the model calls a server-side tool (web search, web fetch, code
    /// execution, advisor, …).
    ServerToolUse(ToolUseBlock),
    /// `web_search_tool_result`.
    WebSearchToolResult(ServerToolResultBlock),
    /// Any other `*_tool_result` block of a server tool (`web_fetch_tool_result`,
    /// `code_execution_tool_result`, `advisor_tool_result`, …); the type is in
    /// [`ServerToolResultBlock::block_type`].
    ServerToolResult(ServerToolResultBlock),
    /// `image`.
    Image(ImageBlock),
    /// `document`.
    Document(DocumentBlock),
    /// A block of a type this SDK does not know, as JSON (its `type` included).
    Unknown(Value),
}

/// A `text` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TextBlock {
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Citations, when the model cites documents or search results.
    #[serde(default)]
    pub citations: Option<Value>,
}

/// A `thinking` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ThinkingBlock {
    /// The reasoning text (may be empty or summarized, depending on the thinking display option).
    #[serde(default)]
    pub thinking: String,
    /// The signature the API needs to verify the block when it is sent back.
    #[serde(default)]
    pub signature: String,
}

/// A `redacted_thinking` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct RedactedThinkingBlock {
    /// The encrypted reasoning.
    #[serde(default)]
    pub data: String,
}

/// A `tool_use` or `server_tool_use` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ToolUseBlock {
    /// The tool-use id (`toolu_…` or `srvtoolu_…`); results refer to it.
    #[serde(default)]
    pub id: String,
    /// The tool's name (`Bash`, `mcp__server__tool`, `web_search`, …).
    #[serde(default)]
    pub name: String,
    /// The tool's input, as JSON (usually an object).
    #[serde(default)]
    pub input: Value,
}

/// A `tool_result` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ToolResultBlock {
    /// The id of the `tool_use` this answers.
    #[serde(default)]
    pub tool_use_id: String,
    /// The result: a string or content blocks; `None` when absent.
    #[serde(default)]
    pub content: Option<ToolResultContent>,
    /// True when the tool failed (or was denied).
    #[serde(default, deserialize_with = "super::de::null_default")]
    pub is_error: bool,
}

/// The `content` of a `tool_result` block.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolResultContent {
    /// Plain text.
    Text(String),
    /// Content blocks (text, image, …), e.g. what an MCP tool returned.
    Blocks(Vec<ContentBlock>),
}

/// A server tool's result block (`web_search_tool_result`, `web_fetch_tool_result`, …).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ServerToolResultBlock {
    /// The block's `type`, e.g. `web_search_tool_result`.
    #[serde(skip)]
    pub block_type: String,
    /// The id of the `server_tool_use` this answers.
    #[serde(default)]
    pub tool_use_id: String,
    /// The result, as JSON (a list of results, or an error object).
    #[serde(default)]
    pub content: Value,
}

/// An `image` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ImageBlock {
    /// The image source (`{"type":"base64","media_type":…,"data":…}`, `url` or `file`).
    #[serde(default)]
    pub source: Value,
}

/// A `document` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct DocumentBlock {
    /// The document source (`base64`, `text`, `url`, `content` or `file`).
    #[serde(default)]
    pub source: Value,
    /// The document's title, if given.
    #[serde(default)]
    pub title: Option<String>,
    /// Context about the document, if given.
    #[serde(default)]
    pub context: Option<String>,
    /// The citations setting, if given.
    #[serde(default)]
    pub citations: Option<Value>,
}

tagged_object!(ContentBlock, "a content block object", "type", |t| {
    Ok(match t.tag() {
        "text" => ContentBlock::Text(t.finish()?),
        "tool_use" => ContentBlock::ToolUse(t.finish()?),
        "tool_result" => ContentBlock::ToolResult(t.finish()?),
        "thinking" => ContentBlock::Thinking(t.finish()?),
        "redacted_thinking" => ContentBlock::RedactedThinking(t.finish()?),
        "server_tool_use" => ContentBlock::ServerToolUse(t.finish()?),
        "image" => ContentBlock::Image(t.finish()?),
        "document" => ContentBlock::Document(t.finish()?),
        "web_search_tool_result" => {
            let mut b: ServerToolResultBlock = t.finish()?;
            b.block_type = "web_search_tool_result".to_owned();
            ContentBlock::WebSearchToolResult(b)
        }
        other if other.ends_with("_tool_result") => {
            let block_type = other.to_owned();
            let mut b: ServerToolResultBlock = t.finish()?;
            b.block_type = block_type;
            ContentBlock::ServerToolResult(b)
        }
        _ => ContentBlock::Unknown(t.into_value("type")?),
    })
});

impl ContentBlock {
    /// The block's `type` as it appears on the wire (`"text"`, `"tool_use"`, …).
    pub fn type_name(&self) -> &str {
        match self {
            ContentBlock::Text(_) => "text",
            ContentBlock::Thinking(_) => "thinking",
            ContentBlock::RedactedThinking(_) => "redacted_thinking",
            ContentBlock::ToolUse(_) => "tool_use",
            ContentBlock::ToolResult(_) => "tool_result",
            ContentBlock::ServerToolUse(_) => "server_tool_use",
            ContentBlock::WebSearchToolResult(_) => "web_search_tool_result",
            ContentBlock::ServerToolResult(b) => &b.block_type,
            ContentBlock::Image(_) => "image",
            ContentBlock::Document(_) => "document",
            ContentBlock::Unknown(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The text of a `text` block.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ContentBlock::Text(b) => Some(&b.text),
            _ => None,
        }
    }

    /// The `tool_use` block, if this is one (not `server_tool_use`).
    pub fn as_tool_use(&self) -> Option<&ToolUseBlock> {
        match self {
            ContentBlock::ToolUse(b) => Some(b),
            _ => None,
        }
    }

    /// The `tool_result` block, if this is one.
    pub fn as_tool_result(&self) -> Option<&ToolResultBlock> {
        match self {
            ContentBlock::ToolResult(b) => Some(b),
            _ => None,
        }
    }
}

impl ToolResultBlock {
    /// The result's text: the string content, or its text blocks concatenated.
    pub fn text(&self) -> String {
        match &self.content {
            Some(c) => c.text(),
            None => String::new(),
        }
    }
}

impl ToolResultContent {
    /// The text: the string itself, or the text blocks concatenated.
    pub fn text(&self) -> String {
        match self {
            ToolResultContent::Text(s) => s.clone(),
            ToolResultContent::Blocks(b) => concat_text(b),
        }
    }
}

/// Concatenate the text of the `text` blocks.
pub(crate) fn concat_text(blocks: &[ContentBlock]) -> String {
    let mut out = String::new();
    for b in blocks {
        if let Some(t) = b.as_text() {
            out.push_str(t);
        }
    }
    out
}

/// Message content that is either a string or a list of content blocks (`user` messages; the
/// `content` of a `tool_result`).
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    /// A plain string.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

impl Default for MessageContent {
    fn default() -> Self {
        MessageContent::Blocks(Vec::new())
    }
}

impl MessageContent {
    /// The text: the string itself, or the `text` blocks concatenated.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Blocks(b) => concat_text(b),
        }
    }

    /// The blocks (empty for string content).
    pub fn blocks(&self) -> &[ContentBlock] {
        match self {
            MessageContent::Text(_) => &[],
            MessageContent::Blocks(b) => b,
        }
    }

    /// The string, for string content.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MessageContent::Text(s) => Some(s),
            MessageContent::Blocks(_) => None,
        }
    }
}

/// String-or-blocks, without serde's buffering `untagged` enums.
struct StrOrBlocks;

impl<'de> Visitor<'de> for StrOrBlocks {
    type Value = MessageContent;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of content blocks")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MessageContent, E> {
        Ok(MessageContent::Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<MessageContent, E> {
        Ok(MessageContent::Text(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<MessageContent, E> {
        Ok(MessageContent::Blocks(Vec::new()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MessageContent, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
        while let Some(b) = seq.next_element::<ContentBlock>()? {
            out.push(b);
        }
        Ok(MessageContent::Blocks(out))
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrOrBlocks)
    }
}

impl<'de> Deserialize<'de> for ToolResultContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match d.deserialize_any(StrOrBlocks)? {
            MessageContent::Text(s) => ToolResultContent::Text(s),
            MessageContent::Blocks(b) => ToolResultContent::Blocks(b),
        })
    }
}
