//! [`HookInput`]: what the CLI tells a hook about the event.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::HookEvent;

/// The fields every hook input carries (`BaseHookInput` in the official SDKs).
///
/// Read from the raw input field by field: a missing or mistyped field is left empty, it never
/// makes parsing fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookContext {
    /// `hook_event_name`. Empty [`HookEvent::Other`] when the input had none.
    pub hook_event_name: HookEvent,
    /// `session_id`.
    pub session_id: String,
    /// `transcript_path`: the session's JSONL transcript on the CLI's machine.
    pub transcript_path: String,
    /// `cwd`: the CLI's working directory.
    pub cwd: String,
    /// `permission_mode` (`default`, `acceptEdits`, `plan`, …).
    pub permission_mode: Option<String>,
    /// `prompt_id`: the user prompt this event belongs to.
    pub prompt_id: Option<String>,
    /// `agent_id`: set when the hook fired inside a subagent.
    pub agent_id: Option<String>,
    /// `agent_type`: set when the hook fired inside a subagent.
    pub agent_type: Option<String>,
    /// `effort.level` (`low` … `max`).
    pub effort_level: Option<String>,
}

impl Default for HookContext {
    fn default() -> Self {
        HookContext {
            hook_event_name: HookEvent::Other(String::new()),
            session_id: String::new(),
            transcript_path: String::new(),
            cwd: String::new(),
            permission_mode: None,
            prompt_id: None,
            agent_id: None,
            agent_type: None,
            effort_level: None,
        }
    }
}

impl HookContext {
    /// Reads the common fields of a hook input; never fails.
    pub fn from_raw(raw: &Value) -> Self {
        let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
        HookContext {
            hook_event_name: HookEvent::from(text("hook_event_name").unwrap_or_default()),
            session_id: text("session_id").unwrap_or_default(),
            transcript_path: text("transcript_path").unwrap_or_default(),
            cwd: text("cwd").unwrap_or_default(),
            permission_mode: text("permission_mode"),
            prompt_id: text("prompt_id"),
            agent_id: text("agent_id"),
            agent_type: text("agent_type"),
            effort_level: raw
                .get("effort")
                .and_then(|effort| effort.get("level"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// `mcp_server` on tool events: which MCP server provides the tool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct McpServerProvenance {
    /// The server's name.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// Where it is configured (`"sdk"` for an in-process server of this SDK).
    #[serde(default, deserialize_with = "or_default")]
    pub source: String,
}

/// One call of a `PostToolBatch` input's `tool_calls`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ToolCall {
    /// `tool_name`.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_name: String,
    /// `tool_input`.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_input: Value,
    /// `tool_use_id`.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_use_id: String,
    /// `tool_response`, when the tool produced one.
    #[serde(default, deserialize_with = "lenient")]
    pub tool_response: Option<Value>,
}

// Every typed input below has `context` and `raw` (filled by `HookInput::from_wire`), its
// required fields as plain `Deserialize` fields (missing or mistyped → `HookInput::Other`), and
// its other fields through `or_default`/`lenient` (missing or mistyped → default/`None`).

/// `PreToolUse`: a tool is about to run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PreToolUseInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `tool_name` (required): `Bash`, `Write`, `mcp__<server>__<tool>`, …
    pub tool_name: String,
    /// `tool_input`: the arguments the model gave the tool.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_input: Value,
    /// `tool_use_id`: the model's id for this call (empty when absent).
    #[serde(default, deserialize_with = "or_default")]
    pub tool_use_id: String,
    /// `mcp_server`, for MCP tools.
    #[serde(default, deserialize_with = "lenient")]
    pub mcp_server: Option<McpServerProvenance>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PostToolUse`: a tool succeeded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PostToolUseInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `tool_name` (required).
    pub tool_name: String,
    /// `tool_input`.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_input: Value,
    /// `tool_response`: the tool's raw result (shape depends on the tool).
    #[serde(default, deserialize_with = "or_default")]
    pub tool_response: Value,
    /// `tool_use_id` (empty when absent).
    #[serde(default, deserialize_with = "or_default")]
    pub tool_use_id: String,
    /// `duration_ms`: how long the tool ran.
    #[serde(default, deserialize_with = "lenient")]
    pub duration_ms: Option<u64>,
    /// `mcp_server`, for MCP tools.
    #[serde(default, deserialize_with = "lenient")]
    pub mcp_server: Option<McpServerProvenance>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PostToolUseFailure`: a tool failed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PostToolUseFailureInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `tool_name` (required).
    pub tool_name: String,
    /// `tool_input`.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_input: Value,
    /// `tool_use_id` (empty when absent).
    #[serde(default, deserialize_with = "or_default")]
    pub tool_use_id: String,
    /// `error`: the failure text.
    #[serde(default, deserialize_with = "or_default")]
    pub error: String,
    /// `is_interrupt`: the failure came from a user interrupt.
    #[serde(default, deserialize_with = "lenient")]
    pub is_interrupt: Option<bool>,
    /// `duration_ms`.
    #[serde(default, deserialize_with = "lenient")]
    pub duration_ms: Option<u64>,
    /// `mcp_server`, for MCP tools.
    #[serde(default, deserialize_with = "lenient")]
    pub mcp_server: Option<McpServerProvenance>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PostToolBatch`: a batch of tool calls finished.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PostToolBatchInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `tool_calls` (empty when absent or malformed).
    #[serde(default, deserialize_with = "or_default")]
    pub tool_calls: Vec<ToolCall>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PermissionRequest`: the CLI is about to ask for permission to run a tool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PermissionRequestInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `tool_name` (required).
    pub tool_name: String,
    /// `tool_input`.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_input: Value,
    /// `permission_suggestions`: `PermissionUpdate` objects, as sent.
    #[serde(default, deserialize_with = "lenient")]
    pub permission_suggestions: Option<Vec<Value>>,
    /// `mcp_server`, for MCP tools.
    #[serde(default, deserialize_with = "lenient")]
    pub mcp_server: Option<McpServerProvenance>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PermissionDenied`: the permission system denied a tool call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PermissionDeniedInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `tool_name` (required).
    pub tool_name: String,
    /// `tool_input`.
    #[serde(default, deserialize_with = "or_default")]
    pub tool_input: Value,
    /// `tool_use_id` (empty when absent).
    #[serde(default, deserialize_with = "or_default")]
    pub tool_use_id: String,
    /// `reason`: why it was denied.
    #[serde(default, deserialize_with = "or_default")]
    pub reason: String,
    /// `mcp_server`, for MCP tools.
    #[serde(default, deserialize_with = "lenient")]
    pub mcp_server: Option<McpServerProvenance>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `Notification`: something the CLI would notify the user about.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct NotificationInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `message`.
    #[serde(default, deserialize_with = "or_default")]
    pub message: String,
    /// `title`.
    #[serde(default, deserialize_with = "lenient")]
    pub title: Option<String>,
    /// `notification_type` (what matchers compare against).
    #[serde(default, deserialize_with = "or_default")]
    pub notification_type: String,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `UserPromptSubmit`: a prompt is about to go to the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct UserPromptSubmitInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `prompt` (required): the prompt text.
    pub prompt: String,
    /// `source` (`user`, `sdk`, `system`, …).
    #[serde(default, deserialize_with = "lenient")]
    pub source: Option<String>,
    /// `session_title`.
    #[serde(default, deserialize_with = "lenient")]
    pub session_title: Option<String>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `UserPromptExpansion`: a slash command or MCP prompt was expanded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct UserPromptExpansionInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `expansion_type` (`slash_command`, `mcp_prompt`).
    #[serde(default, deserialize_with = "or_default")]
    pub expansion_type: String,
    /// `command_name`.
    #[serde(default, deserialize_with = "or_default")]
    pub command_name: String,
    /// `command_args`.
    #[serde(default, deserialize_with = "or_default")]
    pub command_args: String,
    /// `command_source`.
    #[serde(default, deserialize_with = "lenient")]
    pub command_source: Option<String>,
    /// `prompt`: the expanded prompt.
    #[serde(default, deserialize_with = "or_default")]
    pub prompt: String,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `SessionStart`: a session starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SessionStartInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `source` (`startup`, `resume`, `clear`, `compact`, `fork`).
    #[serde(default, deserialize_with = "or_default")]
    pub source: String,
    /// `model`.
    #[serde(default, deserialize_with = "lenient")]
    pub model: Option<String>,
    /// `session_title`.
    #[serde(default, deserialize_with = "lenient")]
    pub session_title: Option<String>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `SessionEnd`: a session ends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SessionEndInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `reason` (`clear`, `resume`, `logout`, `prompt_input_exit`, `other`).
    #[serde(default, deserialize_with = "or_default")]
    pub reason: String,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `Stop`: the agent is about to stop.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct StopInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `stop_hook_active`: true when the agent already continues because of a stop hook (check
    /// it to avoid endless loops).
    #[serde(default, deserialize_with = "or_default")]
    pub stop_hook_active: bool,
    /// `last_assistant_message`: the last assistant text of the turn.
    #[serde(default, deserialize_with = "lenient")]
    pub last_assistant_message: Option<String>,
    /// `background_tasks`, as sent.
    #[serde(default, deserialize_with = "lenient")]
    pub background_tasks: Option<Vec<Value>>,
    /// `session_crons`, as sent.
    #[serde(default, deserialize_with = "lenient")]
    pub session_crons: Option<Vec<Value>>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `StopFailure`: a turn ended with an API error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct StopFailureInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `error` (`rate_limit`, `overloaded`, `server_error`, …).
    #[serde(default, deserialize_with = "or_default")]
    pub error: String,
    /// `error_details`.
    #[serde(default, deserialize_with = "lenient")]
    pub error_details: Option<String>,
    /// `last_assistant_message`.
    #[serde(default, deserialize_with = "lenient")]
    pub last_assistant_message: Option<String>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `SubagentStart`: a subagent starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SubagentStartInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `agent_id`.
    #[serde(default, deserialize_with = "or_default")]
    pub agent_id: String,
    /// `agent_type` (what matchers compare against).
    #[serde(default, deserialize_with = "or_default")]
    pub agent_type: String,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `SubagentStop`: a subagent is about to stop.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SubagentStopInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `stop_hook_active`.
    #[serde(default, deserialize_with = "or_default")]
    pub stop_hook_active: bool,
    /// `agent_id`.
    #[serde(default, deserialize_with = "or_default")]
    pub agent_id: String,
    /// `agent_transcript_path`: the subagent's own transcript.
    #[serde(default, deserialize_with = "or_default")]
    pub agent_transcript_path: String,
    /// `agent_type` (what matchers compare against).
    #[serde(default, deserialize_with = "or_default")]
    pub agent_type: String,
    /// `last_assistant_message`.
    #[serde(default, deserialize_with = "lenient")]
    pub last_assistant_message: Option<String>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PreCompact`: the conversation is about to be compacted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PreCompactInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `trigger` (`manual`, `auto`).
    #[serde(default, deserialize_with = "or_default")]
    pub trigger: String,
    /// `custom_instructions` (given with a manual `/compact`).
    #[serde(default, deserialize_with = "lenient")]
    pub custom_instructions: Option<String>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PostCompact`: the conversation was compacted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PostCompactInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `trigger` (`manual`, `auto`).
    #[serde(default, deserialize_with = "or_default")]
    pub trigger: String,
    /// `compact_summary`: the summary compaction produced.
    #[serde(default, deserialize_with = "or_default")]
    pub compact_summary: String,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// `PreModelSwitch` / `PostModelSwitch`: the model is switched.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ModelSwitchInput {
    /// The common fields.
    #[serde(skip)]
    pub context: HookContext,
    /// `from_model`.
    #[serde(default, deserialize_with = "or_default")]
    pub from_model: String,
    /// `to_model`.
    #[serde(default, deserialize_with = "or_default")]
    pub to_model: String,
    /// `requested_model`.
    #[serde(default, deserialize_with = "lenient")]
    pub requested_model: Option<String>,
    /// `source` (`command`, `picker`, `sdk`, …).
    #[serde(default, deserialize_with = "or_default")]
    pub source: String,
    /// `context_tokens`.
    #[serde(default, deserialize_with = "lenient")]
    pub context_tokens: Option<u64>,
    /// The whole input as received.
    #[serde(skip)]
    pub raw: Value,
}

/// An input without a typed variant: an event this SDK has no struct for (`Setup`,
/// `FileChanged`, an unknown name, …), or a known event whose required fields were missing or
/// mistyped. Nothing is lost: read [`raw`](Self::raw).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OtherHookInput {
    /// The common fields (whatever could be read).
    pub context: HookContext,
    /// The whole input as received.
    pub raw: Value,
}

/// The input of a hook callback, typed by event.
///
/// Built with [`HookInput::from_wire`], which never fails: the variant follows
/// `hook_event_name`; a known event whose required fields (`tool_name` for tool events, `prompt`
/// for `UserPromptSubmit`) are missing or mistyped becomes [`HookInput::Other`]; other fields that
/// are missing or mistyped are left at their default (`""`, `false`, `null`, `None`). Every
/// variant keeps the whole input as `raw`, so fields this SDK does not type yet stay readable.
///
/// The accessors ([`event`](Self::event), [`tool_name`](Self::tool_name), …) work on every
/// variant, `Other` included: policy code that must not be skipped (a deny rule) should rely on
/// them rather than on matching a variant.
///
/// ```
/// use claude_conduit::hooks::{HookEvent, HookInput};
/// use serde_json::json;
///
/// let input = HookInput::from_wire(json!({
///     "session_id": "s", "transcript_path": "/t.jsonl", "cwd": "/w",
///     "hook_event_name": "PreToolUse", "tool_name": "Bash",
///     "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1", "brand_new_field": 1
/// }));
/// assert_eq!(input.event(), HookEvent::PreToolUse);
/// assert_eq!(input.tool_name(), Some("Bash"));
/// match &input {
///     HookInput::PreToolUse(pre) => assert_eq!(pre.tool_input["command"], "ls"),
///     _ => unreachable!(),
/// }
/// assert_eq!(input.raw()["brand_new_field"], 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HookInput {
    /// `PreToolUse`.
    PreToolUse(PreToolUseInput),
    /// `PostToolUse`.
    PostToolUse(PostToolUseInput),
    /// `PostToolUseFailure`.
    PostToolUseFailure(PostToolUseFailureInput),
    /// `PostToolBatch`.
    PostToolBatch(PostToolBatchInput),
    /// `PermissionRequest`.
    PermissionRequest(PermissionRequestInput),
    /// `PermissionDenied`.
    PermissionDenied(PermissionDeniedInput),
    /// `Notification`.
    Notification(NotificationInput),
    /// `UserPromptSubmit`.
    UserPromptSubmit(UserPromptSubmitInput),
    /// `UserPromptExpansion`.
    UserPromptExpansion(UserPromptExpansionInput),
    /// `SessionStart`.
    SessionStart(SessionStartInput),
    /// `SessionEnd`.
    SessionEnd(SessionEndInput),
    /// `Stop`.
    Stop(StopInput),
    /// `StopFailure`.
    StopFailure(StopFailureInput),
    /// `SubagentStart`.
    SubagentStart(SubagentStartInput),
    /// `SubagentStop`.
    SubagentStop(SubagentStopInput),
    /// `PreCompact`.
    PreCompact(PreCompactInput),
    /// `PostCompact`.
    PostCompact(PostCompactInput),
    /// `PreModelSwitch`.
    PreModelSwitch(ModelSwitchInput),
    /// `PostModelSwitch`.
    PostModelSwitch(ModelSwitchInput),
    /// Anything else; see [`OtherHookInput`].
    Other(OtherHookInput),
}

/// Calls `$body` with `$i` bound to the variant's struct (every struct has `context` and `raw`).
macro_rules! each_variant {
    ($self:expr, $i:ident => $body:expr) => {
        match $self {
            HookInput::PreToolUse($i) => $body,
            HookInput::PostToolUse($i) => $body,
            HookInput::PostToolUseFailure($i) => $body,
            HookInput::PostToolBatch($i) => $body,
            HookInput::PermissionRequest($i) => $body,
            HookInput::PermissionDenied($i) => $body,
            HookInput::Notification($i) => $body,
            HookInput::UserPromptSubmit($i) => $body,
            HookInput::UserPromptExpansion($i) => $body,
            HookInput::SessionStart($i) => $body,
            HookInput::SessionEnd($i) => $body,
            HookInput::Stop($i) => $body,
            HookInput::StopFailure($i) => $body,
            HookInput::SubagentStart($i) => $body,
            HookInput::SubagentStop($i) => $body,
            HookInput::PreCompact($i) => $body,
            HookInput::PostCompact($i) => $body,
            HookInput::PreModelSwitch($i) => $body,
            HookInput::PostModelSwitch($i) => $body,
            HookInput::Other($i) => $body,
        }
    };
}

/// Typed inputs get their `context` and `raw` after deserializing.
trait Attach: DeserializeOwned {
    fn attach(&mut self, context: HookContext, raw: Value);
}

macro_rules! attach {
    ($($ty:ty),* $(,)?) => {$(
        impl Attach for $ty {
            fn attach(&mut self, context: HookContext, raw: Value) {
                self.context = context;
                self.raw = raw;
            }
        }
    )*};
}

attach!(
    PreToolUseInput,
    PostToolUseInput,
    PostToolUseFailureInput,
    PostToolBatchInput,
    PermissionRequestInput,
    PermissionDeniedInput,
    NotificationInput,
    UserPromptSubmitInput,
    UserPromptExpansionInput,
    SessionStartInput,
    SessionEndInput,
    StopInput,
    StopFailureInput,
    SubagentStartInput,
    SubagentStopInput,
    PreCompactInput,
    PostCompactInput,
    ModelSwitchInput,
);

fn typed<T: Attach>(raw: Value, context: HookContext, wrap: fn(T) -> HookInput) -> HookInput {
    match T::deserialize(&raw) {
        Ok(mut typed) => {
            typed.attach(context, raw);
            wrap(typed)
        }
        Err(_) => HookInput::Other(OtherHookInput { context, raw }),
    }
}

impl HookInput {
    /// Parses the `input` object of a `hook_callback` request. Never fails (see the type's
    /// docs); a non-object becomes [`HookInput::Other`].
    pub fn from_wire(raw: Value) -> HookInput {
        let context = HookContext::from_raw(&raw);
        if !raw.is_object() {
            return HookInput::Other(OtherHookInput { context, raw });
        }
        match context.hook_event_name {
            HookEvent::PreToolUse => typed(raw, context, HookInput::PreToolUse),
            HookEvent::PostToolUse => typed(raw, context, HookInput::PostToolUse),
            HookEvent::PostToolUseFailure => typed(raw, context, HookInput::PostToolUseFailure),
            HookEvent::PostToolBatch => typed(raw, context, HookInput::PostToolBatch),
            HookEvent::PermissionRequest => typed(raw, context, HookInput::PermissionRequest),
            HookEvent::PermissionDenied => typed(raw, context, HookInput::PermissionDenied),
            HookEvent::Notification => typed(raw, context, HookInput::Notification),
            HookEvent::UserPromptSubmit => typed(raw, context, HookInput::UserPromptSubmit),
            HookEvent::UserPromptExpansion => typed(raw, context, HookInput::UserPromptExpansion),
            HookEvent::SessionStart => typed(raw, context, HookInput::SessionStart),
            HookEvent::SessionEnd => typed(raw, context, HookInput::SessionEnd),
            HookEvent::Stop => typed(raw, context, HookInput::Stop),
            HookEvent::StopFailure => typed(raw, context, HookInput::StopFailure),
            HookEvent::SubagentStart => typed(raw, context, HookInput::SubagentStart),
            HookEvent::SubagentStop => typed(raw, context, HookInput::SubagentStop),
            HookEvent::PreCompact => typed(raw, context, HookInput::PreCompact),
            HookEvent::PostCompact => typed(raw, context, HookInput::PostCompact),
            HookEvent::PreModelSwitch => typed(raw, context, HookInput::PreModelSwitch),
            HookEvent::PostModelSwitch => typed(raw, context, HookInput::PostModelSwitch),
            _ => HookInput::Other(OtherHookInput { context, raw }),
        }
    }

    /// The event (`hook_event_name`), also for [`HookInput::Other`].
    pub fn event(&self) -> HookEvent {
        self.context().hook_event_name.clone()
    }

    /// The common fields.
    pub fn context(&self) -> &HookContext {
        each_variant!(self, i => &i.context)
    }

    /// The whole input as received.
    pub fn raw(&self) -> &Value {
        each_variant!(self, i => &i.raw)
    }

    /// The whole input as received, by value.
    pub fn into_raw(self) -> Value {
        each_variant!(self, i => i.raw)
    }

    /// A field of the raw input (`input.get("tool_response")`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.raw().get(key)
    }

    /// Whether the input has no typed variant ([`HookInput::Other`]).
    pub fn is_other(&self) -> bool {
        matches!(self, HookInput::Other(_))
    }

    /// `session_id`.
    pub fn session_id(&self) -> &str {
        &self.context().session_id
    }

    /// `tool_name`, for the tool events (read from the raw input, so it also works on `Other`).
    pub fn tool_name(&self) -> Option<&str> {
        self.get("tool_name").and_then(Value::as_str)
    }

    /// `tool_input`, for the tool events (read from the raw input).
    pub fn tool_input(&self) -> Option<&Value> {
        self.get("tool_input")
    }

    /// `tool_use_id`, for the tool events (read from the raw input).
    pub fn tool_use_id(&self) -> Option<&str> {
        self.get("tool_use_id").and_then(Value::as_str)
    }

    /// The value the CLI compares matchers against for this event
    /// ([`HookEvent::matcher_field`]): the tool name for tool events, `notification_type`,
    /// `agent_type`, `trigger` or `source`; `None` for events that ignore matchers.
    pub fn matcher_subject(&self) -> Option<&str> {
        let field = self.context().hook_event_name.matcher_field()?;
        self.get(field).and_then(Value::as_str)
    }
}

impl Serialize for HookInput {
    /// Serializes as the raw input.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HookInput {
    /// Any JSON value; see [`HookInput::from_wire`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(HookInput::from_wire)
    }
}

/// A field that is `None` when missing, `null` or of the wrong type.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).ok())
}

/// A field that is `T::default()` when missing, `null` or of the wrong type.
fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}
