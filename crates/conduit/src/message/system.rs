//! `system` frames, one type per subtype.

use serde::Deserialize;
use serde_json::Value;

use super::de::{count, null_default, opt_count, tagged_object};

/// A `system` frame. Subtypes with documented fields have their own variant; any other subtype
/// is [`SystemMessage::Other`], which keeps the whole frame as JSON.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SystemMessage {
    /// `init`: the session's configuration, sent at the start of every turn.
    Init(SystemInit),
    /// `status`: `requesting` before an API call, `compacting`, or `null` (with the new
    /// `permissionMode` after a mode change).
    Status(SystemStatus),
    /// `api_retry`: an API call failed and will be retried.
    ApiRetry(ApiRetry),
    /// `thinking_tokens`: a running estimate while a thinking block streams.
    ThinkingTokens(ThinkingTokens),
    /// `task_started`: a background task (subagent, background shell) started.
    TaskStarted(TaskStarted),
    /// `task_progress`: a background task's progress.
    TaskProgress(TaskProgress),
    /// `task_updated`: a background task's state changed (`patch`).
    TaskUpdated(TaskUpdated),
    /// `task_notification`: a background task completed, failed or was stopped.
    TaskNotification(TaskNotification),
    /// `hook_started`: a command hook started (with `--include-hook-events`).
    HookStarted(HookRun),
    /// `hook_progress`: a command hook's output so far.
    HookProgress(HookRun),
    /// `hook_response`: a command hook finished.
    HookResponse(HookRun),
    /// `compact_boundary`: the conversation was compacted.
    CompactBoundary(CompactBoundary),
    /// Any other subtype (`session_state_changed`, `files_persisted`, `local_command_output`, …).
    Other(OtherSystem),
}

/// A `system` frame of a subtype without its own type: the whole frame as JSON.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OtherSystem {
    /// The subtype (empty if the frame had none).
    pub subtype: String,
    /// The whole frame as JSON (`type` and `subtype` included).
    pub value: Value,
}

/// `system/init`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SystemInit {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The working directory.
    #[serde(default)]
    pub cwd: String,
    /// The tools offered to the model (`Bash`, `Read`, `mcp__server__tool`, …).
    #[serde(default, deserialize_with = "null_default")]
    pub tools: Vec<String>,
    /// MCP servers and their connection status.
    #[serde(default, deserialize_with = "null_default")]
    pub mcp_servers: Vec<McpServerInfo>,
    /// The model (e.g. `claude-opus-4-8[1m]`).
    #[serde(default)]
    pub model: String,
    /// `permissionMode` (`default`, `acceptEdits`, `plan`, …).
    #[serde(rename = "permissionMode", default)]
    pub permission_mode: Option<String>,
    /// Slash commands available.
    #[serde(default, deserialize_with = "null_default")]
    pub slash_commands: Vec<String>,
    /// `apiKeySource` (`ANTHROPIC_API_KEY`, `none`, …).
    #[serde(rename = "apiKeySource", default)]
    pub api_key_source: Option<String>,
    /// The CLI's version (`2.1.197`).
    #[serde(default)]
    pub claude_code_version: Option<String>,
    /// The output style.
    #[serde(default)]
    pub output_style: Option<String>,
    /// Agent (subagent type) names.
    #[serde(default, deserialize_with = "null_default")]
    pub agents: Vec<String>,
    /// Skill names.
    #[serde(default, deserialize_with = "null_default")]
    pub skills: Vec<String>,
    /// Loaded plugins, as JSON (`[{name, path, …}]`).
    #[serde(default, deserialize_with = "null_default")]
    pub plugins: Vec<Value>,
    /// Fast mode state.
    #[serde(default)]
    pub fast_mode_state: Option<String>,
    /// Memory file locations, as JSON.
    #[serde(default)]
    pub memory_paths: Option<Value>,
}

/// An MCP server's entry in `system/init`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct McpServerInfo {
    /// The server's name.
    #[serde(default)]
    pub name: String,
    /// `connected`, `failed`, `needs-auth`, `pending`, `disabled`, …
    #[serde(default)]
    pub status: String,
}

/// `system/status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SystemStatus {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// `requesting`, `compacting`, or `None`.
    #[serde(default)]
    pub status: Option<String>,
    /// `permissionMode`, after a mode change.
    #[serde(rename = "permissionMode", default)]
    pub permission_mode: Option<String>,
}

/// `system/api_retry`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ApiRetry {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The retry number (1 for the first retry).
    #[serde(default, deserialize_with = "count")]
    pub attempt: u64,
    /// The most retries the CLI will make.
    #[serde(default, deserialize_with = "count")]
    pub max_retries: u64,
    /// The delay before this retry, in milliseconds.
    #[serde(default, deserialize_with = "null_default")]
    pub retry_delay_ms: f64,
    /// The HTTP status that failed (`529`, …), if any.
    #[serde(default, deserialize_with = "opt_count")]
    pub error_status: Option<u64>,
    /// The error kind (`overloaded`, …), if given.
    #[serde(default)]
    pub error: Option<String>,
}

/// `system/thinking_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ThinkingTokens {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Estimated thinking tokens so far.
    #[serde(default, deserialize_with = "count")]
    pub estimated_tokens: u64,
    /// Estimated tokens since the previous frame.
    #[serde(default, deserialize_with = "null_default")]
    pub estimated_tokens_delta: i64,
}

/// Token and timing totals of a background task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct TaskUsage {
    /// Tokens used.
    #[serde(default, deserialize_with = "count")]
    pub total_tokens: u64,
    /// Tool calls made.
    #[serde(default, deserialize_with = "count")]
    pub tool_uses: u64,
    /// Running time in milliseconds.
    #[serde(default, deserialize_with = "count")]
    pub duration_ms: u64,
}

/// `system/task_started`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TaskStarted {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The task id.
    #[serde(default)]
    pub task_id: String,
    /// The tool use that started the task (the `Agent` call), if any.
    #[serde(default)]
    pub tool_use_id: Option<String>,
    /// The task's description.
    #[serde(default)]
    pub description: Option<String>,
    /// `local_agent`, `local_bash`, `remote_agent`, …
    #[serde(default)]
    pub task_type: Option<String>,
    /// The subagent type, for agent tasks.
    #[serde(default)]
    pub subagent_type: Option<String>,
    /// The subagent's prompt, for agent tasks.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// `system/task_progress`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TaskProgress {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The task id.
    #[serde(default)]
    pub task_id: String,
    /// The tool use that started the task, if any.
    #[serde(default)]
    pub tool_use_id: Option<String>,
    /// A description of the current state.
    #[serde(default)]
    pub description: Option<String>,
    /// Totals so far.
    #[serde(default)]
    pub usage: Option<TaskUsage>,
    /// The last tool the task used.
    #[serde(default)]
    pub last_tool_name: Option<String>,
}

/// `system/task_updated`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TaskUpdated {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The task id.
    #[serde(default)]
    pub task_id: String,
    /// The changed fields (`{"status":"completed","end_time":…}`), as JSON.
    #[serde(default)]
    pub patch: Value,
}

impl TaskUpdated {
    /// `patch.status` (`pending`, `running`, `completed`, `failed`, `killed`, …), when present.
    pub fn status(&self) -> Option<&str> {
        self.patch.get("status").and_then(Value::as_str)
    }
}

/// `system/task_notification`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TaskNotification {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The task id.
    #[serde(default)]
    pub task_id: String,
    /// The tool use that started the task, if any.
    #[serde(default)]
    pub tool_use_id: Option<String>,
    /// `completed`, `failed` or `stopped`.
    #[serde(default)]
    pub status: String,
    /// Where the task's output was written (may be empty).
    #[serde(default)]
    pub output_file: Option<String>,
    /// A summary of the task.
    #[serde(default)]
    pub summary: Option<String>,
    /// Totals.
    #[serde(default)]
    pub usage: Option<TaskUsage>,
}

/// One run of a command hook, as `system/hook_started`, `hook_progress` and `hook_response`
/// report it (with `--include-hook-events`). The event names themselves are
/// [`hooks::HookEvent`](crate::hooks::HookEvent).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct HookRun {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The hook run's id.
    #[serde(default)]
    pub hook_id: String,
    /// The hook's name (`PreToolUse:Bash`).
    #[serde(default)]
    pub hook_name: String,
    /// The hook event (`PreToolUse`, …).
    #[serde(default)]
    pub hook_event: String,
    /// Parsed output (progress and response only).
    #[serde(default)]
    pub output: Option<String>,
    /// The hook's stdout (progress and response only).
    #[serde(default)]
    pub stdout: Option<String>,
    /// The hook's stderr (progress and response only).
    #[serde(default)]
    pub stderr: Option<String>,
    /// The exit code (response only).
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// `success`, `error` or `cancelled` (response only).
    #[serde(default)]
    pub outcome: Option<String>,
}

/// `system/compact_boundary`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct CompactBoundary {
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// `compact_metadata`.
    #[serde(default)]
    pub compact_metadata: Option<CompactMetadata>,
}

/// The `compact_metadata` of a [`CompactBoundary`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct CompactMetadata {
    /// `manual` or `auto`.
    #[serde(default)]
    pub trigger: String,
    /// Tokens before compaction.
    #[serde(default, deserialize_with = "count")]
    pub pre_tokens: u64,
}

tagged_object!(SystemMessage, "a system frame object", "subtype", |t| {
    Ok(match t.tag() {
        "init" => SystemMessage::Init(t.finish()?),
        "status" => SystemMessage::Status(t.finish()?),
        "api_retry" => SystemMessage::ApiRetry(t.finish()?),
        "thinking_tokens" => SystemMessage::ThinkingTokens(t.finish()?),
        "task_started" => SystemMessage::TaskStarted(t.finish()?),
        "task_progress" => SystemMessage::TaskProgress(t.finish()?),
        "task_updated" => SystemMessage::TaskUpdated(t.finish()?),
        "task_notification" => SystemMessage::TaskNotification(t.finish()?),
        "hook_started" => SystemMessage::HookStarted(t.finish()?),
        "hook_progress" => SystemMessage::HookProgress(t.finish()?),
        "hook_response" => SystemMessage::HookResponse(t.finish()?),
        "compact_boundary" => SystemMessage::CompactBoundary(t.finish()?),
        other => {
            let subtype = other.to_owned();
            let mut value = t.into_value("subtype")?;
            if let Value::Object(m) = &mut value {
                m.insert("type".to_owned(), Value::String("system".to_owned()));
            }
            SystemMessage::Other(OtherSystem { subtype, value })
        }
    })
});

impl SystemMessage {
    /// The subtype as it appears on the wire.
    pub fn subtype(&self) -> &str {
        match self {
            SystemMessage::Init(_) => "init",
            SystemMessage::Status(_) => "status",
            SystemMessage::ApiRetry(_) => "api_retry",
            SystemMessage::ThinkingTokens(_) => "thinking_tokens",
            SystemMessage::TaskStarted(_) => "task_started",
            SystemMessage::TaskProgress(_) => "task_progress",
            SystemMessage::TaskUpdated(_) => "task_updated",
            SystemMessage::TaskNotification(_) => "task_notification",
            SystemMessage::HookStarted(_) => "hook_started",
            SystemMessage::HookProgress(_) => "hook_progress",
            SystemMessage::HookResponse(_) => "hook_response",
            SystemMessage::CompactBoundary(_) => "compact_boundary",
            SystemMessage::Other(o) => &o.subtype,
        }
    }

    /// The CLI's session id.
    pub fn session_id(&self) -> Option<&str> {
        self.ids().0
    }

    /// This frame's id.
    pub fn uuid(&self) -> Option<&str> {
        self.ids().1
    }

    fn ids(&self) -> (Option<&str>, Option<&str>) {
        fn pair<'a>(
            s: &'a Option<String>,
            u: &'a Option<String>,
        ) -> (Option<&'a str>, Option<&'a str>) {
            (s.as_deref(), u.as_deref())
        }
        match self {
            SystemMessage::Init(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::Status(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::ApiRetry(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::ThinkingTokens(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::TaskStarted(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::TaskProgress(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::TaskUpdated(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::TaskNotification(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::HookStarted(m)
            | SystemMessage::HookProgress(m)
            | SystemMessage::HookResponse(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::CompactBoundary(m) => pair(&m.session_id, &m.uuid),
            SystemMessage::Other(o) => (
                o.value.get("session_id").and_then(Value::as_str),
                o.value.get("uuid").and_then(Value::as_str),
            ),
        }
    }

    /// The `init` view, if this is `system/init`.
    pub fn as_init(&self) -> Option<&SystemInit> {
        match self {
            SystemMessage::Init(m) => Some(m),
            _ => None,
        }
    }
}
