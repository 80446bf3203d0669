//! The script a [`FakeModel`](super::FakeModel) follows: [`Turn`]s made of [`Block`]s.

use std::time::Duration;

use serde_json::Value;

/// Default number of characters per streamed delta (text, thinking and tool input JSON).
pub const DEFAULT_CHUNK_CHARS: usize = 24;

/// One content block of a scripted assistant reply.
///
/// Build blocks with the constructors ([`Block::text`], [`Block::tool_use`], [`Block::thinking`], …)
/// and put several of them in one reply with [`Turn::blocks`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Block {
    /// A `text` block, streamed as `text_delta` chunks.
    Text {
        /// The text of the block.
        text: String,
    },
    /// A `tool_use` block, its input streamed as `input_json_delta` chunks.
    ToolUse {
        /// The tool-use id; `None` generates a fresh `toolu_…` id for every reply.
        id: Option<String>,
        /// The tool name as the CLI offers it (`Bash`, `Write`, `mcp__server__tool`, …).
        name: String,
        /// The tool input (a JSON object).
        input: Value,
    },
    /// A `thinking` block, streamed as `thinking_delta` chunks followed by one `signature_delta`.
    Thinking {
        /// The thinking text.
        thinking: String,
        /// The signature; `None` generates a `fake-signature-…` value.
        signature: Option<String>,
    },
}

impl Block {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        Block::Text { text: text.into() }
    }

    /// A tool-use block with a generated `toolu_…` id.
    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        Block::ToolUse {
            id: None,
            name: name.into(),
            input,
        }
    }

    /// A tool-use block with a fixed id (the same id on every reply that uses it).
    pub fn tool_use_with_id(id: impl Into<String>, name: impl Into<String>, input: Value) -> Self {
        Block::ToolUse {
            id: Some(id.into()),
            name: name.into(),
            input,
        }
    }

    /// A thinking block with a generated signature.
    pub fn thinking(thinking: impl Into<String>) -> Self {
        Block::Thinking {
            thinking: thinking.into(),
            signature: None,
        }
    }

    /// A thinking block with a fixed signature.
    pub fn thinking_with_signature(
        thinking: impl Into<String>,
        signature: impl Into<String>,
    ) -> Self {
        Block::Thinking {
            thinking: thinking.into(),
            signature: Some(signature.into()),
        }
    }

    /// Short label used in the request log: `text`, `thinking` or `tool_use:<name>`.
    pub fn label(&self) -> String {
        match self {
            Block::Text { .. } => "text".to_string(),
            Block::Thinking { .. } => "thinking".to_string(),
            Block::ToolUse { name, .. } => format!("tool_use:{name}"),
        }
    }
}

/// What a turn answers with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TurnKind {
    /// A normal assistant message with these blocks.
    Reply(Vec<Block>),
    /// An HTTP error response with an Anthropic error body.
    HttpError {
        status: u16,
        error_type: String,
        message: String,
    },
    /// Stream the blocks, then an SSE `error` event instead of `message_delta`/`message_stop`.
    SseError {
        blocks: Vec<Block>,
        error_type: String,
        message: String,
    },
}

/// One scripted answer of the [`FakeModel`](super::FakeModel).
///
/// Each `POST /v1/messages` consumes the first pending turn that applies (see [`Turn::match_text`]);
/// a turn with [`Turn::times`]`(n)` answers `n` requests before it is used up. Modifiers are
/// chainable:
///
/// ```
/// use std::time::Duration;
/// use claude_conduit_testkit::fake_model::{Block, Turn};
/// use serde_json::json;
///
/// let turns = vec![
///     Turn::overloaded().times(2),
///     Turn::blocks(vec![
///         Block::thinking("Let me run it."),
///         Block::text("Running echo."),
///         Block::tool_use("Bash", json!({"command": "echo hi", "description": "say hi"})),
///     ]),
///     Turn::text("A long answer ...").chunk_delay(Duration::from_millis(20)),
/// ];
/// # let _ = turns;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub(crate) kind: TurnKind,
    pub(crate) stop_reason: Option<String>,
    pub(crate) delay: Duration,
    pub(crate) chunk_delay: Duration,
    pub(crate) chunk_chars: usize,
    pub(crate) times: usize,
    pub(crate) match_text: Option<String>,
    pub(crate) usage: Option<(u64, u64)>,
}

impl Turn {
    fn new(kind: TurnKind) -> Self {
        Turn {
            kind,
            stop_reason: None,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunk_chars: DEFAULT_CHUNK_CHARS,
            times: 1,
            match_text: None,
            usage: None,
        }
    }

    /// A reply with one text block (`stop_reason: "end_turn"`).
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(TurnKind::Reply(vec![Block::text(text)]))
    }

    /// A reply with one `tool_use` block (`stop_reason: "tool_use"`) and a generated `toolu_…` id.
    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        Self::new(TurnKind::Reply(vec![Block::tool_use(name, input)]))
    }

    /// A reply with a thinking block (generated signature) followed by a text block.
    pub fn thinking(thinking: impl Into<String>, text: impl Into<String>) -> Self {
        Self::new(TurnKind::Reply(vec![
            Block::thinking(thinking),
            Block::text(text),
        ]))
    }

    /// A reply with these blocks, in order. The default stop reason is `tool_use` when any block is
    /// a tool use, `end_turn` otherwise.
    pub fn blocks(blocks: Vec<Block>) -> Self {
        Self::new(TurnKind::Reply(blocks))
    }

    /// An HTTP error answer with an Anthropic-style body:
    /// `{"type":"error","error":{"type":<error_type>,"message":<message>}}`.
    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(TurnKind::HttpError {
            status,
            error_type: error_type.into(),
            message: message.into(),
        })
    }

    /// HTTP 529 `overloaded_error` / `Overloaded`.
    pub fn overloaded() -> Self {
        Self::error(529, "overloaded_error", "Overloaded")
    }

    /// HTTP 429 `rate_limit_error`.
    pub fn rate_limited() -> Self {
        Self::error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
    }

    /// HTTP 401 `authentication_error` / `invalid x-api-key`.
    pub fn unauthorized() -> Self {
        Self::error(401, "authentication_error", "invalid x-api-key")
    }

    /// HTTP 500 `api_error` / `Internal server error`.
    pub fn server_error() -> Self {
        Self::error(500, "api_error", "Internal server error")
    }

    /// Start a normal stream (`message_start`, `ping`), then send an SSE `error` event with this
    /// type and message and end the response. A non-streaming request gets an HTTP error instead
    /// (529 for `overloaded_error`, 429 for `rate_limit_error`, else 500).
    pub fn sse_error(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(TurnKind::SseError {
            blocks: Vec::new(),
            error_type: error_type.into(),
            message: message.into(),
        })
    }

    /// Turn a reply into one that fails part-way: its blocks are streamed completely, then an SSE
    /// `error` event replaces `message_delta`/`message_stop`. Has no effect on error turns.
    pub fn then_sse_error(
        mut self,
        error_type: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        if let TurnKind::Reply(blocks) = &mut self.kind {
            self.kind = TurnKind::SseError {
                blocks: std::mem::take(blocks),
                error_type: error_type.into(),
                message: message.into(),
            };
        }
        self
    }

    /// Override the `stop_reason` sent in `message_delta` (e.g. `"max_tokens"`, `"refusal"`).
    pub fn stop_reason(mut self, stop_reason: impl Into<String>) -> Self {
        self.stop_reason = Some(stop_reason.into());
        self
    }

    /// Wait this long before answering (before the response headers are sent).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Wait this long between consecutive SSE events. Together with [`Turn::chunk_chars`] this
    /// makes a long reply stream over time (useful for interrupt tests).
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Characters per `text_delta` / `thinking_delta` / `input_json_delta` event
    /// (default [`DEFAULT_CHUNK_CHARS`]; `0` is treated as 1).
    pub fn chunk_chars(mut self, chars: usize) -> Self {
        self.chunk_chars = chars.max(1);
        self
    }

    /// Answer `n` requests with this turn before moving on (`0` is treated as 1).
    pub fn times(mut self, n: usize) -> Self {
        self.times = n.max(1);
        self
    }

    /// Only take this turn for a request whose last user text contains `needle`; requests that do
    /// not match skip it (it stays pending) and go to the next applicable turn or the fallback.
    pub fn match_text(mut self, needle: impl Into<String>) -> Self {
        self.match_text = Some(needle.into());
        self
    }

    /// Report these token counts instead of the bytes/4 estimates.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.usage = Some((input_tokens, output_tokens));
        self
    }

    /// Whether this turn applies to a request whose last user text is `last_user_text`.
    pub(crate) fn matches(&self, last_user_text: Option<&str>) -> bool {
        match &self.match_text {
            None => true,
            Some(needle) => last_user_text.is_some_and(|t| t.contains(needle.as_str())),
        }
    }
}

/// What the [`FakeModel`](super::FakeModel) answers once no scripted turn applies.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// Reply with the text `echo: <last user text>` (the default).
    #[default]
    Echo,
    /// Reply with this fixed text.
    Text(String),
    /// Answer with this turn, every time (its `times` and `match_text` are ignored).
    Turn(Box<Turn>),
}
