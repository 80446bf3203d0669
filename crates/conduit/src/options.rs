//! What to run and how: the [`Options`] builder.
//!
//! `Options` turns into three things, and nothing else: the CLI's argv, its environment, and the
//! SDK-side settings (timeouts, buffer sizes). It never spawns anything itself; see
//! [`Options::subprocess_transport`].
//!
//! Every valued flag is passed as one `--flag=value` argument, so a value that starts with `-`
//! can never be read as another flag.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use std::collections::BTreeMap;

use crate::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::error::{Error, Result};
use crate::hooks::{HookEvent, HookMatcher, Hooks};
use crate::mcp::{McpServerConfig, SdkMcpServer};
use crate::permission::PermissionHandler;
use crate::remote::{BadRemote, Remote, SessionRequest};
use crate::transport::SubprocessTransport;
use crate::transport::subprocess::{StderrCallback, find_cli};

pub mod flags;
use flags::Flag;

/// The value this SDK sets in `CLAUDE_CODE_ENTRYPOINT`: one the CLI recognises as an SDK host
/// (it accepts `sdk-ts`, `sdk-py` and `sdk-cli`; an unknown value would lose SDK behaviour).
pub const ENTRYPOINT: &str = "sdk-py";

/// This SDK's name and version, as announced to the CLI in `CLAUDE_AGENT_SDK_CLIENT_APP`.
pub const CLIENT_APP: &str = concat!("claude-conduit/", env!("CARGO_PKG_VERSION"));

/// The system prompt to run with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SystemPrompt {
    /// An empty system prompt (`--system-prompt=`), as the official SDKs default to.
    #[default]
    Empty,
    /// A custom system prompt.
    Text(String),
    /// Read the system prompt from a file (`--system-prompt-file`).
    File(PathBuf),
    /// Claude Code's own system prompt, optionally with text appended (`--append-system-prompt`).
    ClaudeCode {
        /// Text appended to Claude Code's prompt.
        append: Option<String>,
    },
}

/// The base set of built-in tools (`--tools`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tools {
    /// Claude Code's default tool set.
    Default,
    /// Exactly these tools (an empty list disables all built-in tools).
    List(Vec<String>),
}

/// Permission modes the CLI accepts. Validated here: the CLI itself accepts any string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PermissionMode {
    /// Ask for everything not allowed by rules.
    Default,
    /// Auto-accept file edits.
    AcceptEdits,
    /// Plan only, no changes.
    Plan,
    /// Skip all permission checks.
    BypassPermissions,
    /// Deny anything not pre-approved, without asking.
    DontAsk,
    /// Let the CLI's classifier decide.
    Auto,
}

impl PermissionMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
            PermissionMode::BypassPermissions => "bypassPermissions",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::Auto => "auto",
        }
    }
}

impl std::str::FromStr for PermissionMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "default" | "manual" => PermissionMode::Default,
            "acceptEdits" => PermissionMode::AcceptEdits,
            "plan" => PermissionMode::Plan,
            "bypassPermissions" => PermissionMode::BypassPermissions,
            "dontAsk" => PermissionMode::DontAsk,
            "auto" => PermissionMode::Auto,
            other => {
                return Err(Error::InvalidOptions(format!(
                    "unknown permission mode `{other}` (expected default, acceptEdits, plan, \
                     bypassPermissions, dontAsk or auto)"
                )));
            }
        })
    }
}

impl std::fmt::Display for PermissionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extended thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Thinking {
    /// The model decides (`--thinking=adaptive`).
    Adaptive,
    /// A fixed budget (`--max-thinking-tokens=N`).
    Enabled {
        /// Thinking token budget.
        budget_tokens: u32,
    },
    /// No thinking (`--thinking=disabled`).
    Disabled,
}

/// How thinking is shown in the output (`--thinking-display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThinkingDisplay {
    /// Summarized thinking.
    Summarized,
    /// No thinking text in the output.
    Omitted,
}

/// Reasoning effort (`--effort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effort {
    /// low
    Low,
    /// medium
    Medium,
    /// high
    High,
    /// xhigh
    XHigh,
    /// max
    Max,
}

impl Effort {
    fn as_str(self) -> &'static str {
        match self {
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
            Effort::Max => "max",
        }
    }
}

/// Which settings files the CLI loads (`--setting-sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingSource {
    /// `~/.claude/settings.json`
    User,
    /// `.claude/settings.json`
    Project,
    /// `.claude/settings.local.json`
    Local,
}

impl SettingSource {
    fn as_str(self) -> &'static str {
        match self {
            SettingSource::User => "user",
            SettingSource::Project => "project",
            SettingSource::Local => "local",
        }
    }
}

/// Everything about a session: what to run, with which flags, and how the SDK behaves.
///
/// Built with [`Options::builder`]; inside, the settings are grouped by what they are for (the
/// process, the model and prompt, tools and permissions, limits, the conversation, configuration
/// sources, output, callbacks, the SDK's own runtime settings). Every CLI flag written comes from
/// the one table in [`flags`].
///
/// ```
/// use claude_conduit::{Options, options::PermissionMode};
/// let opts = Options::builder()
///     .model("claude-sonnet-4-5")
///     .permission_mode(PermissionMode::AcceptEdits)
///     .max_turns(3)
///     .allowed_tools(["Read", "Bash(git *)"])
///     .build();
/// let argv = opts.argv().unwrap();
/// assert!(argv.iter().any(|a| a == "--model=claude-sonnet-4-5"));
/// ```
#[derive(Clone, Default)]
pub struct Options {
    pub(crate) process: ProcessOptions,
    pub(crate) prompt: PromptOptions,
    pub(crate) tools: ToolOptions,
    pub(crate) limits: LimitOptions,
    pub(crate) conversation: ConversationOptions,
    pub(crate) config: ConfigOptions,
    pub(crate) output: OutputOptions,
    pub(crate) callbacks: CallbackOptions,
    pub(crate) runtime: RuntimeOptions,
    /// Any other CLI flags ([`OptionsBuilder::extra_arg`]), written last.
    pub(crate) extra_args: Vec<(String, Option<String>)>,
    /// The gateway [`OptionsBuilder::transport`] named, parsed there (or why it cannot be used);
    /// `None` for the local subprocess.
    pub(crate) remote: Option<std::result::Result<Remote, BadRemote>>,
    /// Extension points: event bus, frame filters and sinks, custom types. Never on the
    /// command line.
    pub(crate) ext: crate::protocol::ext::ExtConfig,
}

/// The CLI process: which program, where, with what environment, as whom. Never sent to a
/// gateway.
#[derive(Clone, Default)]
pub(crate) struct ProcessOptions {
    pub(crate) cli_path: Option<PathBuf>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: Vec<(String, Option<String>)>,
    /// `Some`: the CLI starts from exactly these variables instead of this process's environment.
    pub(crate) base_env: Option<Vec<(String, String)>>,
    pub(crate) stderr: Option<StderrCallback>,
    pub(crate) user: Option<String>,
    pub(crate) enable_file_checkpointing: bool,
}

/// The model and what it is told.
#[derive(Clone, Default)]
pub(crate) struct PromptOptions {
    pub(crate) system_prompt: SystemPrompt,
    pub(crate) model: Option<String>,
    pub(crate) fallback_model: Option<String>,
    pub(crate) betas: Vec<String>,
    pub(crate) thinking: Option<Thinking>,
    pub(crate) thinking_display: Option<ThinkingDisplay>,
    pub(crate) effort: Option<Effort>,
    pub(crate) json_schema: Option<Value>,
}

/// Which tools exist and which need asking.
#[derive(Clone, Default)]
pub(crate) struct ToolOptions {
    pub(crate) tools: Option<Tools>,
    pub(crate) allowed_tools: Vec<String>,
    pub(crate) disallowed_tools: Vec<String>,
    pub(crate) skills: Option<Skills>,
    pub(crate) permission_prompt_tool: Option<String>,
    pub(crate) permission_mode: Option<PermissionMode>,
}

/// When the CLI stops on its own.
#[derive(Clone, Default)]
pub(crate) struct LimitOptions {
    pub(crate) max_turns: Option<u32>,
    pub(crate) max_budget_usd: Option<f64>,
    pub(crate) task_budget: Option<u64>,
}

/// Which conversation the session continues, and whether it is kept.
#[derive(Clone)]
pub(crate) struct ConversationOptions {
    pub(crate) continue_conversation: bool,
    pub(crate) resume: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) fork_session: bool,
    pub(crate) resume_session_at: Option<String>,
    pub(crate) resume_drops_turn: Option<String>,
    pub(crate) persist_session: bool,
}

impl Default for ConversationOptions {
    fn default() -> Self {
        Self {
            continue_conversation: false,
            resume: None,
            session_id: None,
            fork_session: false,
            resume_session_at: None,
            resume_drops_turn: None,
            persist_session: true,
        }
    }
}

/// Where the CLI's settings, directories, plugins and external MCP servers come from.
#[derive(Clone, Default)]
pub(crate) struct ConfigOptions {
    pub(crate) settings: Option<String>,
    pub(crate) sandbox: Option<Value>,
    pub(crate) setting_sources: Option<Vec<SettingSource>>,
    pub(crate) add_dirs: Vec<PathBuf>,
    pub(crate) plugin_dirs: Vec<PathBuf>,
    pub(crate) mcp_config: Option<String>,
    pub(crate) strict_mcp_config: bool,
}

/// Which extra frames the CLI writes.
#[derive(Clone, Copy, Default)]
pub(crate) struct OutputOptions {
    pub(crate) include_partial_messages: bool,
    pub(crate) include_hook_events: bool,
    pub(crate) replay_user_messages: bool,
}

/// What runs in this process when the CLI asks (permission handler, hooks, in-process MCP
/// servers), and what the `initialize` request declares (agents, subagent text, prompt
/// sections).
#[derive(Clone, Default)]
pub(crate) struct CallbackOptions {
    pub(crate) permission: Option<Arc<dyn PermissionHandler>>,
    /// Plugins with permission policies, in front of `permission` (see `permission_handler`).
    #[cfg(feature = "plugins")]
    pub(crate) plugin_policies: Option<crate::plugin::PluginManager>,
    pub(crate) hooks: Hooks,
    pub(crate) mcp_servers: BTreeMap<String, McpServerConfig>,
    pub(crate) agents: BTreeMap<String, AgentDefinition>,
    pub(crate) forward_subagent_text: bool,
    pub(crate) exclude_dynamic_sections: bool,
}

impl CallbackOptions {
    /// The `can_use_tool` handler a session runs: the plugins' permission policies (feature
    /// `plugins`) in front of your own handler, or your handler alone.
    pub(crate) fn permission_handler(&self) -> Option<Arc<dyn PermissionHandler>> {
        #[cfg(feature = "plugins")]
        if let Some(manager) = &self.plugin_policies {
            return Some(manager.permission_handler(self.permission.clone()));
        }
        self.permission.clone()
    }

    fn has_permission_handler(&self) -> bool {
        #[cfg(feature = "plugins")]
        if self.plugin_policies.is_some() {
            return true;
        }
        self.permission.is_some()
    }
}

/// The SDK's side: frame limit, timeouts, buffers. Never on the command line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RuntimeOptions {
    pub(crate) max_frame_bytes: usize,
    pub(crate) initialize_timeout: Duration,
    pub(crate) control_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) close_grace: Duration,
    pub(crate) message_buffer: usize,
    pub(crate) max_concurrent_callbacks: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            initialize_timeout: default_initialize_timeout(),
            control_timeout: Duration::from_secs(60),
            idle_timeout: None,
            close_grace: Duration::from_secs(5),
            message_buffer: 256,
            max_concurrent_callbacks: 64,
        }
    }
}

/// A programmatic subagent (sent in `initialize.agents`, not on the command line).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AgentDefinition {
    /// When the main agent should use this one.
    pub description: String,
    /// Its system prompt.
    pub prompt: String,
    /// Tools it may use (all when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Tools it may not use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disallowed_tools: Option<Vec<String>>,
    /// Its model (`sonnet`, `opus`, `haiku`, `inherit`, or a model id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Skills it may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    /// Turn cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Permission mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// Any other field the CLI understands (`mcpServers`, `initialPrompt`, `background`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl AgentDefinition {
    /// An agent with a description and a prompt.
    pub fn new(description: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            description: description.into(),
            prompt: prompt.into(),
            ..Self::default()
        }
    }
    /// Restrict its tools.
    pub fn tools<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tools: I) -> Self {
        self.tools = Some(tools.into_iter().map(Into::into).collect());
        self
    }
    /// Set its model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
}

/// Which skills the session may use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Skills {
    /// Every skill (`Skill` is allowed).
    All,
    /// Only these (`Skill(name)` is allowed for each; names are validated).
    Only(Vec<String>),
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `env` values may be secrets: print names only.
        let p = &self.process;
        let r = &self.runtime;
        f.debug_struct("Options")
            .field("cli_path", &p.cli_path)
            .field("argv", &self.argv().unwrap_or_default())
            .field("env", &p.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &p.cwd)
            .field("max_frame_bytes", &r.max_frame_bytes)
            .field("initialize_timeout", &r.initialize_timeout)
            .field("control_timeout", &r.control_timeout)
            .field("idle_timeout", &r.idle_timeout)
            .field("transport", &self.remote)
            .finish_non_exhaustive()
    }
}

/// 60 s, or `CLAUDE_CODE_STREAM_CLOSE_TIMEOUT` (ms) when that is larger, as the official SDKs do.
fn default_initialize_timeout() -> Duration {
    let base = Duration::from_secs(60);
    std::env::var("CLAUDE_CODE_STREAM_CLOSE_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .map_or(base, |d| d.max(base))
}

/// Builds [`Options`].
#[derive(Debug, Clone, Default)]
pub struct OptionsBuilder {
    o: Options,
}

macro_rules! setter {
    ($(#[$m:meta])* $group:ident . $name:ident: Option<String>) => {
        $(#[$m])*
        pub fn $name(mut self, v: impl Into<String>) -> Self {
            self.o.$group.$name = Some(v.into());
            self
        }
    };
    ($(#[$m:meta])* $group:ident . $name:ident: bool) => {
        $(#[$m])*
        pub fn $name(mut self, v: bool) -> Self {
            self.o.$group.$name = v;
            self
        }
    };
    ($(#[$m:meta])* $group:ident . $name:ident: Vec<String>) => {
        $(#[$m])*
        pub fn $name<I, S>(mut self, v: I) -> Self
        where I: IntoIterator<Item = S>, S: Into<String> {
            self.o.$group.$name.extend(v.into_iter().map(Into::into));
            self
        }
    };
}

/// The command line being written: flags only from the [`flags`] table, each valued one as a
/// single `--name=value` argument.
struct Argv(Vec<String>);

impl Argv {
    fn value(&mut self, flag: &Flag, value: &str) {
        debug_assert!(flag.takes_value(), "--{} is a switch", flag.name);
        self.0.push(format!("--{}={value}", flag.name));
    }
    fn value_opt(&mut self, flag: &Flag, value: Option<&str>) {
        if let Some(v) = value {
            self.value(flag, v);
        }
    }
    fn list(&mut self, flag: &Flag, items: &[String]) {
        if !items.is_empty() {
            self.value(flag, &items.join(","));
        }
    }
    fn number(&mut self, flag: &Flag, value: Option<impl ToString>) {
        if let Some(v) = value {
            self.value(flag, &v.to_string());
        }
    }
    fn path(&mut self, flag: &Flag, path: &Path) -> Result<()> {
        let s = path.to_str().ok_or_else(|| {
            Error::InvalidOptions(format!("path is not UTF-8: {}", path.display()))
        })?;
        self.value(flag, s);
        Ok(())
    }
    fn switch(&mut self, flag: &Flag, on: bool) {
        debug_assert!(!flag.takes_value(), "--{} takes a value", flag.name);
        if on {
            self.0.push(format!("--{}", flag.name));
        }
    }
}

impl PromptOptions {
    fn write(&self, a: &mut Argv) -> Result<()> {
        match &self.system_prompt {
            SystemPrompt::Empty => a.value(&flags::SYSTEM_PROMPT, ""),
            SystemPrompt::Text(t) => a.value(&flags::SYSTEM_PROMPT, t),
            SystemPrompt::File(p) => a.path(&flags::SYSTEM_PROMPT_FILE, p)?,
            SystemPrompt::ClaudeCode { append } => {
                a.value_opt(&flags::APPEND_SYSTEM_PROMPT, append.as_deref())
            }
        }
        a.value_opt(&flags::MODEL, self.model.as_deref());
        if let Some(m) = &self.fallback_model {
            if self.model.as_ref() == Some(m) {
                return Err(Error::InvalidOptions(
                    "fallback_model must differ from model".into(),
                ));
            }
            a.value(&flags::FALLBACK_MODEL, m);
        }
        a.list(&flags::BETAS, &self.betas);
        match self.thinking {
            Some(Thinking::Adaptive) => a.value(&flags::THINKING, "adaptive"),
            Some(Thinking::Disabled) => a.value(&flags::THINKING, "disabled"),
            Some(Thinking::Enabled { budget_tokens }) => {
                a.number(&flags::MAX_THINKING_TOKENS, Some(budget_tokens))
            }
            None => {}
        }
        match self.thinking_display {
            Some(ThinkingDisplay::Summarized) => a.value(&flags::THINKING_DISPLAY, "summarized"),
            Some(ThinkingDisplay::Omitted) => a.value(&flags::THINKING_DISPLAY, "omitted"),
            None => {}
        }
        a.value_opt(&flags::EFFORT, self.effort.map(Effort::as_str));
        if let Some(schema) = &self.json_schema {
            a.value(&flags::JSON_SCHEMA, &schema.to_string());
        }
        Ok(())
    }
}

impl ToolOptions {
    fn write(&self, a: &mut Argv, permission_callback: bool) -> Result<()> {
        match &self.tools {
            Some(Tools::Default) => a.value(&flags::TOOLS, "default"),
            Some(Tools::List(l)) => a.value(&flags::TOOLS, &l.join(",")),
            None => {}
        }
        let mut allowed = self.allowed_tools.clone();
        match &self.skills {
            Some(Skills::All) => allowed.push("Skill".to_owned()),
            Some(Skills::Only(names)) => {
                for n in names {
                    let ok = !n.is_empty()
                        && n.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
                        });
                    if !ok {
                        return Err(Error::InvalidOptions(format!("invalid skill name `{n}`")));
                    }
                    allowed.push(format!("Skill({n})"));
                }
            }
            None => {}
        }
        a.list(&flags::ALLOWED_TOOLS, &allowed);
        a.list(&flags::DISALLOWED_TOOLS, &self.disallowed_tools);
        match (&self.permission_prompt_tool, permission_callback) {
            (Some(t), true) if t != "stdio" => {
                return Err(Error::InvalidOptions(format!(
                    "a can_use_tool callback answers permission prompts itself; it cannot be \
                     combined with permission_prompt_tool `{t}`"
                )));
            }
            (_, true) => a.value(&flags::PERMISSION_PROMPT_TOOL, "stdio"),
            (Some(t), false) => a.value(&flags::PERMISSION_PROMPT_TOOL, t),
            (None, false) => {}
        }
        a.value_opt(
            &flags::PERMISSION_MODE,
            self.permission_mode.map(PermissionMode::as_str),
        );
        Ok(())
    }
}

impl LimitOptions {
    fn write(&self, a: &mut Argv) {
        a.number(&flags::MAX_TURNS, self.max_turns);
        a.number(&flags::MAX_BUDGET_USD, self.max_budget_usd);
        a.number(&flags::TASK_BUDGET, self.task_budget);
    }
}

impl ConversationOptions {
    fn write(&self, a: &mut Argv) {
        a.switch(&flags::CONTINUE, self.continue_conversation);
        a.value_opt(&flags::RESUME, self.resume.as_deref());
        a.value_opt(&flags::SESSION_ID, self.session_id.as_deref());
        a.switch(&flags::FORK_SESSION, self.fork_session);
        a.value_opt(&flags::RESUME_SESSION_AT, self.resume_session_at.as_deref());
        a.value_opt(&flags::RESUME_DROPS_TURN, self.resume_drops_turn.as_deref());
        a.switch(&flags::NO_SESSION_PERSISTENCE, !self.persist_session);
    }
}

impl ConfigOptions {
    /// `sdk_mcp` is the `--mcp-config` JSON of the session's MCP servers, if it has any; `skills`
    /// whether skills are configured (they live in settings directories).
    fn write(&self, a: &mut Argv, sdk_mcp: Option<Value>, skills: bool) -> Result<()> {
        match (&self.settings, &self.sandbox) {
            (Some(s), None) => a.value(&flags::SETTINGS, s),
            (settings, Some(sandbox)) => {
                let mut base = match settings {
                    None => serde_json::Map::new(),
                    Some(s) => settings_object(s)?,
                };
                base.insert("sandbox".to_owned(), sandbox.clone());
                a.value(&flags::SETTINGS, &Value::Object(base).to_string());
            }
            (None, None) => {}
        }
        for d in &self.add_dirs {
            a.path(&flags::ADD_DIR, d)?;
        }
        if let Some(config) = sdk_mcp {
            a.value(&flags::MCP_CONFIG, &config.to_string());
        }
        a.value_opt(&flags::MCP_CONFIG, self.mcp_config.as_deref());
        a.switch(&flags::STRICT_MCP_CONFIG, self.strict_mcp_config);
        let default_sources = [SettingSource::User, SettingSource::Project];
        let sources = match &self.setting_sources {
            Some(src) => Some(src.as_slice()),
            // Skills live in settings directories: load user and project settings for them.
            None if skills => Some(&default_sources[..]),
            None => None,
        };
        if let Some(src) = sources {
            let joined = src.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
            a.value(&flags::SETTING_SOURCES, &joined);
        }
        for d in &self.plugin_dirs {
            a.path(&flags::PLUGIN_DIR, d)?;
        }
        Ok(())
    }
}

/// A `--settings` value (inline JSON or a file path) as a JSON object, to merge sandbox
/// settings into.
fn settings_object(s: &str) -> Result<serde_json::Map<String, Value>> {
    let text = if s.trim_start().starts_with('{') {
        s.to_owned()
    } else {
        std::fs::read_to_string(s)
            .map_err(|e| Error::InvalidOptions(format!("cannot read settings file {s}: {e}")))?
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::InvalidOptions(
            "settings must be a JSON object to merge sandbox settings into".into(),
        )),
    }
}

impl OutputOptions {
    fn write(self, a: &mut Argv) {
        a.switch(
            &flags::INCLUDE_PARTIAL_MESSAGES,
            self.include_partial_messages,
        );
        a.switch(&flags::INCLUDE_HOOK_EVENTS, self.include_hook_events);
        a.switch(&flags::REPLAY_USER_MESSAGES, self.replay_user_messages);
    }
}

impl Options {
    /// Start building options.
    pub fn builder() -> OptionsBuilder {
        OptionsBuilder::default()
    }

    /// A builder starting from these options.
    pub fn to_builder(&self) -> OptionsBuilder {
        OptionsBuilder { o: self.clone() }
    }

    /// The CLI arguments these options produce (without the program name).
    pub fn argv(&self) -> Result<Vec<String>> {
        let mut a = Argv(Vec::new());
        a.value(&flags::OUTPUT_FORMAT, "stream-json");
        a.switch(&flags::VERBOSE, true);
        a.value(&flags::INPUT_FORMAT, "stream-json");
        self.prompt.write(&mut a)?;
        self.tools
            .write(&mut a, self.callbacks.has_permission_handler())?;
        self.limits.write(&mut a);
        self.conversation.write(&mut a);
        let sdk_mcp = (!self.callbacks.mcp_servers.is_empty())
            .then(|| crate::mcp::mcp_config_json(&self.callbacks.mcp_servers));
        self.config
            .write(&mut a, sdk_mcp, self.tools.skills.is_some())?;
        self.output.write(&mut a);
        for (k, v) in &self.extra_args {
            let k = k.trim_start_matches('-');
            if k.is_empty() || k.contains('=') {
                return Err(Error::InvalidOptions(format!(
                    "bad extra argument name `{k}`"
                )));
            }
            a.0.push(match v {
                Some(v) => format!("--{k}={v}"),
                None => format!("--{k}"),
            });
        }
        Ok(a.0)
    }

    /// The environment changes for the CLI: `(name, Some(value))` sets, `(name, None)` removes.
    /// Applied on top of this process's environment, or of the
    /// [`base_env`](OptionsBuilder::base_env) when one is set.
    pub fn env_changes(&self) -> Vec<(String, Option<String>)> {
        let mut e: Vec<(String, Option<String>)> = vec![
            // Inherited from a Claude Code shell, this makes the child refuse to start.
            ("CLAUDECODE".into(), None),
            ("CLAUDE_CODE_ENTRYPOINT".into(), Some(ENTRYPOINT.into())),
            (
                "CLAUDE_AGENT_SDK_VERSION".into(),
                Some(env!("CARGO_PKG_VERSION").into()),
            ),
        ];
        let app = match std::env::var("CLAUDE_AGENT_SDK_CLIENT_APP") {
            Ok(user_app) if !user_app.is_empty() => format!("{user_app} {CLIENT_APP}"),
            _ => CLIENT_APP.to_owned(),
        };
        e.push(("CLAUDE_AGENT_SDK_CLIENT_APP".into(), Some(app)));
        let p = &self.process;
        if p.enable_file_checkpointing {
            e.push((
                "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING".into(),
                Some("true".into()),
            ));
        }
        if let Some(cwd) = &p.cwd {
            e.push(("PWD".into(), Some(cwd.to_string_lossy().into_owned())));
        }
        // The caller's own variables come last and win.
        e.extend(p.env.iter().cloned());
        e
    }

    /// The `initialize` control request these options send, given the hooks' registration
    /// config (`Value::Null` for none).
    pub fn initialize_request(&self, hooks_config: Value) -> Value {
        let c = &self.callbacks;
        let mut req = serde_json::Map::new();
        req.insert("hooks".to_owned(), hooks_config);
        if !c.agents.is_empty() {
            req.insert(
                "agents".to_owned(),
                serde_json::to_value(&c.agents).unwrap_or(Value::Null),
            );
        }
        if let Some(Skills::Only(names)) = &self.tools.skills {
            req.insert("skills".to_owned(), serde_json::json!(names));
        }
        if c.forward_subagent_text {
            req.insert("forwardSubagentText".to_owned(), Value::Bool(true));
        }
        if c.exclude_dynamic_sections {
            req.insert("excludeDynamicSections".to_owned(), Value::Bool(true));
        }
        Value::Object(req)
    }

    /// True when the CLI may call back into this process (permission callback, hooks, SDK MCP
    /// servers): the CLI's input must then stay open while a turn runs.
    pub fn has_callbacks(&self) -> bool {
        let c = &self.callbacks;
        c.has_permission_handler()
            || !c.hooks.is_empty()
            || c.mcp_servers.values().any(|c| c.as_sdk().is_some())
            || self
                .ext
                .events
                .as_ref()
                .is_some_and(|bus| !bus.hook_events().is_empty())
    }

    /// Find the CLI and build the transport that runs it with these options.
    pub fn subprocess_transport(&self) -> Result<SubprocessTransport> {
        let p = &self.process;
        let program = find_cli(p.cli_path.as_deref())?;
        let mut t = SubprocessTransport::new(program)
            .args(self.argv()?.into_iter().map(OsString::from))
            .max_frame_bytes(self.runtime.max_frame_bytes);
        if let Some(base) = &p.base_env {
            t = t.env_clear();
            for (k, v) in base {
                t = t.env(k, v);
            }
        }
        for (k, v) in self.env_changes() {
            t = match v {
                Some(v) => t.env(k, v),
                None => t.env_remove(k),
            };
        }
        if let Some(cwd) = &p.cwd {
            t = t.cwd(cwd);
        }
        if let Some(cb) = &p.stderr {
            t = t.on_stderr(cb.clone());
        }
        if let Some(name) = &p.user {
            let user = nix::unistd::User::from_name(name)
                .map_err(|e| Error::InvalidOptions(format!("cannot look up user `{name}`: {e}")))?
                .ok_or_else(|| Error::InvalidOptions(format!("no such user `{name}`")))?;
            t = t.run_as(user.uid.as_raw(), user.gid.as_raw());
        }
        Ok(t)
    }

    /// The per-frame size limit in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.runtime.max_frame_bytes
    }
    /// How long to wait for the initialize reply.
    pub fn initialize_timeout(&self) -> Duration {
        self.runtime.initialize_timeout
    }
    /// How long to wait for replies to other control requests.
    pub fn control_timeout(&self) -> Duration {
        self.runtime.control_timeout
    }
    /// The idle timeout during a turn, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.runtime.idle_timeout
    }
    /// How long a graceful close waits for the CLI before signalling it.
    pub fn close_grace(&self) -> Duration {
        self.runtime.close_grace
    }
    /// The gateway [`OptionsBuilder::transport`] named (parsed when it was set); `None` for the
    /// local subprocess; the error if the URL or token cannot be used.
    pub fn remote(&self) -> Result<Option<Remote>> {
        match &self.remote {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r.clone())),
            Some(Err(bad)) => Err(bad.clone().into()),
        }
    }

    /// The working directory, if set.
    pub fn cwd(&self) -> Option<&std::path::Path> {
        self.process.cwd.as_deref()
    }
}

impl OptionsBuilder {
    /// Finish building.
    pub fn build(self) -> Options {
        self.o
    }

    /// Deliver this session's events to `bus` (see [`events`](crate::events)). Handlers for
    /// CLI hook events must be on the bus before connecting.
    pub fn events(mut self, bus: crate::events::EventBus) -> Self {
        self.o.ext.events = Some(bus);
        self
    }

    /// Run the plugins of `manager` in this session (feature `plugins`): the manager's bus
    /// becomes the session's (replacing an earlier [`events`](Self::events); register your own
    /// handlers on [`PluginManager::bus`](crate::plugin::PluginManager::bus) or build the
    /// manager [`with_bus`](crate::plugin::PluginManager::with_bus)), and each active plugin's
    /// MCP tools become an SDK MCP server named after it; when a plugin has a `can_use_tool`
    /// policy the session answers permission prompts by the plugins' policies in front of your
    /// own [`can_use_tool`](Self::can_use_tool) handler (set before or after this call; see
    /// [`PluginManager::permission_handler`](crate::plugin::PluginManager::permission_handler));
    /// the plugins' custom message types and protocol extensions join your
    /// [`extensions`](Self::extensions) (yours first). Taken now: hook events, tools, the
    /// presence of a permission policy and the message types of plugins loaded later reach
    /// sessions built later; a reloaded plugin's new version serves this session's next calls.
    #[cfg(feature = "plugins")]
    pub fn plugins(mut self, manager: &crate::plugin::PluginManager) -> Self {
        self.o.ext.events = Some(manager.bus().clone());
        self.o.callbacks.plugin_policies =
            manager.has_permission_policies().then(|| manager.clone());
        self.o.ext.plugin_extensions = Some(manager.extensions()).filter(|e| !e.is_empty());
        for server in manager.mcp_servers() {
            self = self.sdk_mcp_server(server);
        }
        self
    }

    /// Rewrite frames at the frame level (see [`FrameFilter`](crate::extension::FrameFilter)).
    pub fn frame_filter(
        mut self,
        filter: std::sync::Arc<dyn crate::extension::FrameFilter>,
    ) -> Self {
        self.o.ext.filters.push(filter);
        self
    }

    /// Observe every frame both ways (see [`FrameSink`](crate::extension::FrameSink)).
    pub fn frame_sink(mut self, sink: std::sync::Arc<dyn crate::extension::FrameSink>) -> Self {
        self.o.ext.sinks.push(sink);
        self
    }

    /// Custom message types and protocol extensions (see [`extension`](crate::extension)).
    pub fn extensions(mut self, extensions: crate::extension::Extensions) -> Self {
        self.o.ext.extensions = Some(extensions);
        self
    }

    /// Run this executable instead of discovering `claude`.
    pub fn cli_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.o.process.cli_path = Some(p.into());
        self
    }
    /// Run the CLI of a test kit environment: its executable, its scratch working directory,
    /// its environment (`HOME`, `ANTHROPIC_BASE_URL` of the fake model, …) and the removal of the
    /// inherited `ANTHROPIC_*` / `CLAUDE*` variables. Cargo feature `testkit`.
    ///
    /// An offline test of the real CLI in three lines:
    ///
    /// ```no_run
    /// # async fn t() -> Result<(), Box<dyn std::error::Error>> {
    /// use claude_conduit::Options;
    /// use claude_conduit::testkit::{FakeModel, Turn};
    ///
    /// let model = FakeModel::start([Turn::text("4")]).await?;
    /// let env = model.cli_env()?; // installs the pinned CLI with npm on first use (blocks)
    /// let options = Options::builder().testkit(&env).build();
    /// # let _ = options; Ok(()) }
    /// ```
    #[cfg(feature = "testkit")]
    pub fn testkit(mut self, env: &claude_conduit_testkit::CliEnv) -> Self {
        self = self
            .cli_path(env.cli_path())
            .cwd(env.cwd())
            .envs(env.envs());
        for k in env.vars_to_remove() {
            self = self.env_remove(k);
        }
        self
    }
    /// The system prompt (default: empty, as the official SDKs).
    pub fn system_prompt(mut self, p: impl Into<String>) -> Self {
        self.o.prompt.system_prompt = SystemPrompt::Text(p.into());
        self
    }
    /// The system prompt, in full form (file, Claude Code preset with append, …).
    pub fn system_prompt_kind(mut self, p: SystemPrompt) -> Self {
        self.o.prompt.system_prompt = p;
        self
    }
    /// The base set of built-in tools.
    pub fn tools(mut self, t: Tools) -> Self {
        self.o.tools.tools = Some(t);
        self
    }
    setter!(
        /// Permission rules that auto-approve tools (`Read`, `Bash(git *)`, …). Appends.
        tools.allowed_tools: Vec<String>
    );
    setter!(
        /// Tools removed from the model's context. Appends.
        tools.disallowed_tools: Vec<String>
    );
    /// Stop after this many agentic turns.
    pub fn max_turns(mut self, n: u32) -> Self {
        self.o.limits.max_turns = Some(n);
        self
    }
    /// Stop when the session has cost this much (USD).
    pub fn max_budget_usd(mut self, usd: f64) -> Self {
        self.o.limits.max_budget_usd = Some(usd);
        self
    }
    /// API-side task token budget.
    pub fn task_budget(mut self, tokens: u64) -> Self {
        self.o.limits.task_budget = Some(tokens);
        self
    }
    setter!(
        /// The model.
        prompt.model: Option<String>
    );
    setter!(
        /// The model to fall back to when the main one is overloaded.
        prompt.fallback_model: Option<String>
    );
    setter!(
        /// API beta headers. Appends.
        prompt.betas: Vec<String>
    );
    /// The MCP tool that answers permission prompts (`stdio` = this SDK's callback).
    pub fn permission_prompt_tool(mut self, name: impl Into<String>) -> Self {
        self.o.tools.permission_prompt_tool = Some(name.into());
        self
    }
    /// The initial permission mode.
    pub fn permission_mode(mut self, m: PermissionMode) -> Self {
        self.o.tools.permission_mode = Some(m);
        self
    }
    setter!(
        /// Continue the most recent session in the working directory.
        conversation.continue_conversation: bool
    );
    setter!(
        /// Resume this session id.
        conversation.resume: Option<String>
    );
    setter!(
        /// Use this UUID as the session id.
        conversation.session_id: Option<String>
    );
    setter!(
        /// When resuming, fork into a new session id.
        conversation.fork_session: bool
    );
    setter!(
        /// When resuming, stop at this message uuid.
        conversation.resume_session_at: Option<String>
    );
    setter!(
        /// When resuming with `resume_session_at`, refuse unless this turn is the one dropped.
        conversation.resume_drops_turn: Option<String>
    );
    setter!(
        /// A settings file path or a JSON settings string.
        config.settings: Option<String>
    );
    /// An extra directory the CLI may access. Appends.
    pub fn add_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.o.config.add_dirs.push(d.into());
        self
    }
    /// External MCP servers: a JSON string `{"mcpServers":{…}}` or a path to such a file.
    pub fn mcp_config(mut self, json_or_path: impl Into<String>) -> Self {
        self.o.config.mcp_config = Some(json_or_path.into());
        self
    }
    setter!(
        /// Only use MCP servers given here, ignoring other configuration.
        config.strict_mcp_config: bool
    );
    setter!(
        /// Emit `stream_event` frames with partial messages.
        output.include_partial_messages: bool
    );
    setter!(
        /// Emit `system/hook_*` frames.
        output.include_hook_events: bool
    );
    setter!(
        /// Echo each user message back with `isReplay:true`.
        output.replay_user_messages: bool
    );
    setter!(
        /// Keep the session on disk so it can be resumed (default true).
        conversation.persist_session: bool
    );
    /// Which settings files to load (an empty list loads none).
    pub fn setting_sources(mut self, s: impl IntoIterator<Item = SettingSource>) -> Self {
        self.o.config.setting_sources = Some(s.into_iter().collect());
        self
    }
    /// A local plugin directory. Appends.
    pub fn plugin_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.o.config.plugin_dirs.push(d.into());
        self
    }
    /// Extended thinking.
    pub fn thinking(mut self, t: Thinking) -> Self {
        self.o.prompt.thinking = Some(t);
        self
    }
    /// How thinking is shown in the output.
    pub fn thinking_display(mut self, d: ThinkingDisplay) -> Self {
        self.o.prompt.thinking_display = Some(d);
        self
    }
    /// Reasoning effort.
    pub fn effort(mut self, e: Effort) -> Self {
        self.o.prompt.effort = Some(e);
        self
    }
    /// Structured output: the final result must match this JSON Schema.
    pub fn json_schema(mut self, schema: Value) -> Self {
        self.o.prompt.json_schema = Some(schema);
        self
    }
    /// Where the session runs: `"subprocess"` (the default: a local `claude` child process), or
    /// a conduit gateway (`conduit serve`) by URL — `ws://` / `wss://` (WebSocket), `http://` /
    /// `https://` (POST + server-sent events), `grpc://` / `grpcs://` — with its bearer token.
    /// The URL is parsed here ([`Remote`]); an unusable one is reported when connecting. See
    /// [`crate::remote`] for what travels to the gateway.
    pub fn transport(mut self, url: impl Into<String>, token: impl Into<String>) -> Self {
        let url = url.into();
        self.o.remote = if url.trim() == "subprocess" {
            None
        } else {
            Some(Remote::checked(&url, token.into()))
        };
        self
    }
    /// [`OptionsBuilder::transport`] for a URL that carries its own credentials and needs no
    /// bearer token: `redis://[user:password@]host:port` (feature `redis`; docs/SCALE.md).
    pub fn transport_url(self, url: impl Into<String>) -> Self {
        self.transport(url, "")
    }
    /// Any other CLI flag (`--name=value`, or `--name` when `value` is `None`). Appends.
    pub fn extra_arg(mut self, name: impl Into<String>, value: Option<String>) -> Self {
        self.o.extra_args.push((name.into(), value));
        self
    }
    setter!(
        /// Track file changes so they can be rewound.
        process.enable_file_checkpointing: bool
    );
    /// The CLI's working directory (checked when connecting).
    pub fn cwd(mut self, d: impl Into<PathBuf>) -> Self {
        self.o.process.cwd = Some(d.into());
        self
    }
    /// An environment variable for the CLI, merged over this process's environment.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.o.process.env.push((k.into(), Some(v.into())));
        self
    }
    /// Remove an environment variable from the CLI's environment (e.g. an inherited key).
    pub fn env_remove(mut self, k: impl Into<String>) -> Self {
        self.o.process.env.push((k.into(), None));
        self
    }
    /// Start the CLI from exactly these variables instead of inheriting this process's
    /// environment (the SDK's own variables and those set with [`env`](Self::env) still apply
    /// on top). Without it (the default) the CLI inherits the whole environment. The gateway
    /// uses this to give remote sessions an allowlisted environment.
    pub fn base_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.o.process.base_env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }
    /// Several environment variables (see [`env`](Self::env)).
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.o
            .process
            .env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), Some(v.into()))));
        self
    }
    /// Receive each stderr line of the CLI (it is drained and kept as a tail either way).
    pub fn on_stderr(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.o.process.stderr = Some(Arc::new(f));
        self
    }
    /// Per-frame size limit in bytes (default 256 MiB). Counts one frame, never the session.
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.o.runtime.max_frame_bytes = n;
        self
    }
    /// How long to wait for the initialize reply (default 60 s).
    pub fn initialize_timeout(mut self, d: Duration) -> Self {
        self.o.runtime.initialize_timeout = d;
        self
    }
    /// How long to wait for replies to other control requests (default 60 s).
    pub fn control_timeout(mut self, d: Duration) -> Self {
        self.o.runtime.control_timeout = d;
        self
    }
    /// Fail a turn with [`Error::Idle`] when the CLI writes nothing for this long mid-turn.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.o.runtime.idle_timeout = Some(d);
        self
    }
    /// How long a graceful close waits before signalling the CLI (default 5 s).
    pub fn close_grace(mut self, d: Duration) -> Self {
        self.o.runtime.close_grace = d;
        self
    }
    /// Messages buffered between the reader and your code (default 256). A full buffer slows
    /// the CLI down; it never drops a message.
    pub fn message_buffer(mut self, n: usize) -> Self {
        self.o.runtime.message_buffer = n.max(1);
        self
    }
    /// Answer the CLI's permission prompts with this handler (adds
    /// `--permission-prompt-tool=stdio`). A closure `|req| async { PermissionDecision::allow() }`
    /// or a [`crate::permission::policy::PolicyHandler`].
    pub fn can_use_tool(mut self, handler: impl PermissionHandler) -> Self {
        self.o.callbacks.permission = Some(Arc::new(handler));
        self
    }
    /// All hooks at once (replaces earlier ones).
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.o.callbacks.hooks = hooks;
        self
    }
    /// Add one hook matcher for `event`.
    pub fn hook(mut self, event: impl Into<HookEvent>, matcher: HookMatcher) -> Self {
        self.o.callbacks.hooks = std::mem::take(&mut self.o.callbacks.hooks).on(event, matcher);
        self
    }
    /// An in-process MCP server; its tools are `mcp__<name>__<tool>` to the CLI.
    pub fn sdk_mcp_server(mut self, server: SdkMcpServer) -> Self {
        self.o
            .callbacks
            .mcp_servers
            .insert(server.name().to_owned(), McpServerConfig::Sdk(server));
        self
    }
    /// An MCP server by name (stdio, SSE, HTTP, or in-process), passed to the CLI.
    pub fn mcp_server(mut self, name: impl Into<String>, config: McpServerConfig) -> Self {
        self.o.callbacks.mcp_servers.insert(name.into(), config);
        self
    }
    /// A programmatic subagent.
    pub fn agent(mut self, name: impl Into<String>, agent: AgentDefinition) -> Self {
        self.o.callbacks.agents.insert(name.into(), agent);
        self
    }
    /// Which skills may be used.
    pub fn skills(mut self, skills: Skills) -> Self {
        self.o.tools.skills = Some(skills);
        self
    }
    setter!(
        /// Forward subagents' text and thinking frames.
        callbacks.forward_subagent_text: bool
    );
    setter!(
        /// With the Claude Code preset prompt, leave out its dynamic sections.
        callbacks.exclude_dynamic_sections: bool
    );
    /// Run the CLI as this OS user (a user name; needs the privilege to switch users).
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.o.process.user = Some(name.into());
        self
    }
    /// Bash sandbox settings (merged into `--settings` under `sandbox`).
    pub fn sandbox(mut self, sandbox: Value) -> Self {
        self.o.config.sandbox = Some(sandbox);
        self
    }
    /// At most this many callbacks (permission, hook, MCP) run at once (default 64).
    pub fn max_concurrent_callbacks(mut self, n: usize) -> Self {
        self.o.runtime.max_concurrent_callbacks = n.max(1);
        self
    }
}

/// The flags every SDK session passes; a gateway adds them itself.
const FIXED_ARGS: [&str; 3] = [
    "--output-format=stream-json",
    "--verbose",
    "--input-format=stream-json",
];

impl SessionRequest {
    /// The request that reproduces `options` on a gateway: their CLI flags without the fixed
    /// stream-json ones, and the working directory. (Defined here so that `remote` stays a leaf
    /// module.)
    pub fn from_options(options: &Options) -> Result<Self> {
        let args = options
            .argv()?
            .into_iter()
            .filter(|a| !FIXED_ARGS.contains(&a.as_str()))
            .collect();
        let cwd = match options.cwd() {
            Some(p) => Some(
                p.to_str()
                    .ok_or_else(|| {
                        Error::InvalidOptions(format!("cwd is not UTF-8: {}", p.display()))
                    })?
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Self { args, cwd })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(o: OptionsBuilder) -> Vec<String> {
        o.build().argv().unwrap_or_default()
    }

    #[test]
    fn base_command_line_is_stream_json_with_empty_system_prompt() {
        let a = argv(Options::builder());
        assert_eq!(
            a,
            vec![
                "--output-format=stream-json",
                "--verbose",
                "--input-format=stream-json",
                "--system-prompt=",
            ]
        );
    }

    #[test]
    fn dash_leading_values_stay_one_argument() {
        let a = argv(Options::builder().resume("--dangerously-skip-permissions"));
        assert!(a.contains(&"--resume=--dangerously-skip-permissions".to_owned()));
        assert!(!a.contains(&"--dangerously-skip-permissions".to_owned()));
    }

    #[test]
    fn every_plain_option_maps_to_its_flag() {
        let a = argv(
            Options::builder()
                .system_prompt_kind(SystemPrompt::ClaudeCode {
                    append: Some("be brief".into()),
                })
                .tools(Tools::List(vec!["Read".into(), "Bash".into()]))
                .allowed_tools(["Read", "Bash(git *)"])
                .disallowed_tools(["WebFetch"])
                .max_turns(4)
                .max_budget_usd(1.5)
                .task_budget(1000)
                .model("m1")
                .fallback_model("m2")
                .betas(["b1", "b2"])
                .permission_mode(PermissionMode::AcceptEdits)
                .continue_conversation(true)
                .resume("abc")
                .session_id("sid")
                .fork_session(true)
                .resume_session_at("u1")
                .resume_drops_turn("u2")
                .settings("{\"a\":1}")
                .add_dir("/x")
                .add_dir("/y")
                .mcp_config("{\"mcpServers\":{}}")
                .strict_mcp_config(true)
                .include_partial_messages(true)
                .include_hook_events(true)
                .replay_user_messages(true)
                .persist_session(false)
                .setting_sources([SettingSource::User, SettingSource::Project])
                .plugin_dir("/p")
                .thinking(Thinking::Enabled {
                    budget_tokens: 2048,
                })
                .thinking_display(ThinkingDisplay::Summarized)
                .effort(Effort::High)
                .json_schema(serde_json::json!({"type":"object"}))
                .extra_arg("debug-file", Some("/tmp/d".into()))
                .extra_arg("bare", None),
        );
        for want in [
            "--append-system-prompt=be brief",
            "--tools=Read,Bash",
            "--allowedTools=Read,Bash(git *)",
            "--disallowedTools=WebFetch",
            "--max-turns=4",
            "--max-budget-usd=1.5",
            "--task-budget=1000",
            "--model=m1",
            "--fallback-model=m2",
            "--betas=b1,b2",
            "--permission-mode=acceptEdits",
            "--continue",
            "--resume=abc",
            "--session-id=sid",
            "--fork-session",
            "--resume-session-at=u1",
            "--resume-drops-turn=u2",
            "--settings={\"a\":1}",
            "--add-dir=/x",
            "--add-dir=/y",
            "--mcp-config={\"mcpServers\":{}}",
            "--strict-mcp-config",
            "--include-partial-messages",
            "--include-hook-events",
            "--replay-user-messages",
            "--no-session-persistence",
            "--setting-sources=user,project",
            "--plugin-dir=/p",
            "--max-thinking-tokens=2048",
            "--thinking-display=summarized",
            "--effort=high",
            "--json-schema={\"type\":\"object\"}",
            "--debug-file=/tmp/d",
            "--bare",
        ] {
            assert!(a.contains(&want.to_owned()), "missing {want} in {a:?}");
        }
        assert!(!a.iter().any(|x| x.starts_with("--system-prompt=")));
    }

    /// Options that together write every flag `argv` can write (no `extra_arg`).
    fn every_typed_option() -> Vec<Options> {
        use crate::permission::{PermissionDecision, PermissionRequest};
        let full = Options::builder()
            .system_prompt_kind(SystemPrompt::ClaudeCode {
                append: Some("be brief".into()),
            })
            .tools(Tools::List(vec!["Read".into()]))
            .allowed_tools(["Read"])
            .disallowed_tools(["WebFetch"])
            .skills(Skills::Only(vec!["pdf".into()]))
            .max_turns(4)
            .max_budget_usd(1.5)
            .task_budget(1000)
            .model("m1")
            .fallback_model("m2")
            .betas(["b1"])
            .permission_mode(PermissionMode::Plan)
            .can_use_tool(|_req: PermissionRequest| async { PermissionDecision::allow() })
            .continue_conversation(true)
            .resume("abc")
            .session_id("sid")
            .fork_session(true)
            .resume_session_at("u1")
            .resume_drops_turn("u2")
            .settings("{}")
            .sandbox(serde_json::json!({"enabled": true}))
            .add_dir("/x")
            .sdk_mcp_server(crate::mcp::SdkMcpServer::builder("calc").build())
            .mcp_config("{\"mcpServers\":{}}")
            .strict_mcp_config(true)
            .include_partial_messages(true)
            .include_hook_events(true)
            .replay_user_messages(true)
            .persist_session(false)
            .setting_sources([SettingSource::Local])
            .plugin_dir("/p")
            .thinking(Thinking::Enabled { budget_tokens: 1 })
            .thinking_display(ThinkingDisplay::Omitted)
            .effort(Effort::Max)
            .json_schema(serde_json::json!({}))
            .build();
        vec![
            full,
            Options::builder()
                .system_prompt("text")
                .tools(Tools::Default)
                .thinking(Thinking::Adaptive)
                .permission_prompt_tool("mcp__a__b")
                .build(),
            Options::builder()
                .system_prompt_kind(SystemPrompt::File("/f".into()))
                .thinking(Thinking::Disabled)
                .build(),
        ]
    }

    #[test]
    fn every_flag_argv_writes_is_in_the_table_with_its_arity() {
        let mut written = std::collections::BTreeSet::new();
        for o in every_typed_option() {
            for arg in o.argv().unwrap_or_default() {
                let body = arg.strip_prefix("--").unwrap_or_default();
                let (name, value) = match body.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (body, None),
                };
                let flag = flags::lookup(name);
                assert!(flag.is_some(), "`{arg}` is not in the flag table");
                assert_eq!(
                    flag.map(Flag::takes_value),
                    Some(value.is_some()),
                    "`{arg}` disagrees with the table's arity"
                );
                written.insert(name.to_owned());
            }
        }
        // And the table has no row argv never writes, but for the flags only `extra_arg` can
        // pass (which the gateway must still judge).
        for f in flags::FLAGS {
            let extra_only = f.remote == flags::RemoteRule::Dangerous;
            assert_eq!(
                written.contains(f.name),
                !extra_only,
                "--{} in the table vs argv",
                f.name
            );
        }
    }

    #[test]
    fn fallback_equal_to_model_is_rejected() {
        let o = Options::builder().model("m").fallback_model("m").build();
        assert!(matches!(o.argv(), Err(Error::InvalidOptions(_))));
    }

    #[test]
    fn permission_modes_are_validated_client_side() {
        assert_eq!(
            "acceptEdits".parse::<PermissionMode>().ok(),
            Some(PermissionMode::AcceptEdits)
        );
        assert!("notAMode".parse::<PermissionMode>().is_err());
    }

    #[test]
    fn env_drops_claudecode_names_the_sdk_and_lets_user_values_win() {
        let o = Options::builder()
            .cwd("/tmp")
            .env("CLAUDE_CODE_ENTRYPOINT", "sdk-ts")
            .enable_file_checkpointing(true)
            .build();
        let e = o.env_changes();
        assert!(e.contains(&("CLAUDECODE".into(), None)));
        assert!(e.contains(&("PWD".into(), Some("/tmp".into()))));
        assert!(e.iter().any(|(k, v)| k == "CLAUDE_AGENT_SDK_CLIENT_APP"
            && v.as_deref().is_some_and(|v| v.contains("claude-conduit/"))));
        // Later entries win when applied in order.
        let last = e.iter().rev().find(|(k, _)| k == "CLAUDE_CODE_ENTRYPOINT");
        assert_eq!(last.and_then(|(_, v)| v.clone()).as_deref(), Some("sdk-ts"));
        assert!(e.contains(&(
            "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING".into(),
            Some("true".into())
        )));
    }

    /// The environment a CLI started with `o` (a script that records it) gets.
    async fn child_env(o: OptionsBuilder) -> String {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("cli.sh");
        std::fs::write(&script, "#!/bin/sh\n/usr/bin/env > \"$0.env\"\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = o.cli_path(&script).build().subprocess_transport().unwrap();
        let mut conn = crate::transport::Transport::connect(t).await.unwrap();
        use crate::transport::FrameReceiver;
        while !conn.receiver.recv().await.unwrap().is_end() {}
        std::fs::read_to_string(dir.path().join("cli.sh.env")).unwrap()
    }

    #[tokio::test]
    async fn base_env_replaces_the_inherited_environment() {
        let inherited = child_env(Options::builder().env("MINE", "1")).await;
        assert!(
            inherited.lines().any(|l| l.starts_with("PATH=")),
            "{inherited}"
        );
        let based = child_env(
            Options::builder()
                .base_env([("ONLY_BASE", "b"), ("HOME", "/h")])
                .env("MINE", "1"),
        )
        .await;
        let names: Vec<&str> = based
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for want in ["ONLY_BASE", "HOME", "MINE", "CLAUDE_CODE_ENTRYPOINT"] {
            assert!(names.contains(&want), "{want} missing: {based}");
        }
        assert!(!names.contains(&"PATH"), "inherited PATH: {based}");
        assert!(based.contains("HOME=/h\n"));
    }

    #[test]
    fn bad_extra_arg_name_is_rejected() {
        let o = Options::builder().extra_arg("a=b", None).build();
        assert!(o.argv().is_err());
    }

    #[test]
    fn a_permission_callback_adds_the_stdio_prompt_tool_and_conflicts_with_another() {
        use crate::permission::{PermissionDecision, PermissionRequest};
        let o = Options::builder()
            .can_use_tool(|_req: PermissionRequest| async { PermissionDecision::allow() })
            .build();
        assert!(argv_of(&o).contains(&"--permission-prompt-tool=stdio".to_owned()));
        let o = Options::builder()
            .permission_prompt_tool("mcp__auth__prompt")
            .can_use_tool(|_req: PermissionRequest| async { PermissionDecision::allow() })
            .build();
        assert!(
            matches!(o.argv(), Err(Error::InvalidOptions(m)) if m.contains("mcp__auth__prompt"))
        );
    }

    fn argv_of(o: &Options) -> Vec<String> {
        o.argv().unwrap_or_default()
    }

    #[test]
    fn skills_extend_allowed_tools_and_default_the_setting_sources() {
        let o = Options::builder()
            .allowed_tools(["Read"])
            .skills(Skills::Only(vec!["pdf".into(), "xlsx".into()]))
            .build();
        let a = argv_of(&o);
        assert!(
            a.contains(&"--allowedTools=Read,Skill(pdf),Skill(xlsx)".to_owned()),
            "{a:?}"
        );
        assert!(a.contains(&"--setting-sources=user,project".to_owned()));
        assert_eq!(
            o.initialize_request(Value::Null)["skills"],
            serde_json::json!(["pdf", "xlsx"])
        );
        let bad = Options::builder()
            .skills(Skills::Only(vec!["x),Bash(".into()]))
            .build();
        assert!(
            bad.argv().is_err(),
            "rule injection through a skill name is refused"
        );
        let all = Options::builder().skills(Skills::All).build();
        assert!(argv_of(&all).contains(&"--allowedTools=Skill".to_owned()));
    }

    #[test]
    fn sandbox_is_merged_into_the_settings_json() {
        let o = Options::builder()
            .settings(r#"{"model":"x"}"#)
            .sandbox(serde_json::json!({"enabled": true}))
            .build();
        let a = argv_of(&o);
        let s = a
            .iter()
            .find_map(|x| x.strip_prefix("--settings="))
            .unwrap_or_default();
        let v: Value = serde_json::from_str(s).unwrap_or_default();
        assert_eq!(v["model"], "x");
        assert_eq!(v["sandbox"]["enabled"], true);
    }

    #[test]
    fn sdk_mcp_servers_go_into_mcp_config_and_agents_into_initialize() {
        let server = crate::mcp::SdkMcpServer::builder("calc").build();
        let o = Options::builder()
            .sdk_mcp_server(server)
            .agent(
                "reviewer",
                AgentDefinition::new("Reviews code", "You review.").tools(["Read"]),
            )
            .forward_subagent_text(true)
            .build();
        let a = argv_of(&o);
        let cfg = a
            .iter()
            .find_map(|x| x.strip_prefix("--mcp-config="))
            .unwrap_or_default();
        let v: Value = serde_json::from_str(cfg).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"mcpServers":{"calc":{"type":"sdk","name":"calc"}}})
        );
        let init = o.initialize_request(serde_json::json!({"Stop": []}));
        assert_eq!(init["hooks"], serde_json::json!({"Stop": []}));
        assert_eq!(init["agents"]["reviewer"]["description"], "Reviews code");
        assert_eq!(
            init["agents"]["reviewer"]["tools"],
            serde_json::json!(["Read"])
        );
        assert_eq!(init["forwardSubagentText"], true);
        assert!(o.has_callbacks());
        assert!(!Options::default().has_callbacks());
    }

    #[test]
    fn an_unknown_os_user_is_a_typed_error() {
        let o = Options::builder()
            .cli_path("/bin/cat")
            .user("no-such-user-conduit")
            .build();
        assert!(
            matches!(o.subprocess_transport(), Err(Error::InvalidOptions(m)) if m.contains("no-such-user-conduit"))
        );
    }
}
