//! The one table of CLI flags: every flag [`Options::argv`](super::Options::argv) can write,
//! whether it takes a value, and what a remote client may do with it on a gateway.
//!
//! `argv` writes flags only through the constants here, and the gateway's policy decides on a
//! client's flag by looking it up in [`FLAGS`], so the two cannot drift apart: a new option needs
//! a row here first, and that row says what a remote client may send.

/// Whether a flag is `--name=value` or a bare `--name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// `--name=value` (always one argument, so a value cannot be read as another flag).
    Value,
    /// `--name`, no value.
    Switch,
}

/// What a remote client may send for a flag, by default, on a gateway (`conduit serve`).
///
/// The gateway's policy applies these rules; an operator can loosen or tighten some of them
/// (see the gateway's `policy` module), never the stream-json flags ([`RemoteRule::Fixed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteRule {
    /// Any value (or none, for a switch).
    Any,
    /// A whole number.
    WholeNumber,
    /// A finite number, at least 0.
    NonNegative,
    /// Valid JSON.
    Json,
    /// Exactly one of these values.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these values.
    ListOf(&'static [&'static str]),
    /// A session or message id: letters, digits, `-` and `_`, at most 128 (never a path).
    Id,
    /// A permission mode the gateway's policy allows.
    PermissionMode,
    /// Inline JSON naming only in-process SDK MCP servers (external servers and paths only when
    /// the operator allows external MCP).
    SdkMcpConfig,
    /// A directory under one of the gateway's cwd roots.
    Directory,
    /// Only when the operator allows skipping permissions.
    Dangerous,
    /// Refused unless the operator allows the flag by name: it reads files on the gateway's
    /// machine, or reaches conversations that may be another client's.
    Refused,
    /// Set by the SDK and the gateway themselves (the stream-json protocol); never from a client.
    Fixed,
}

/// One CLI flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The name, without `--`.
    pub name: &'static str,
    /// Whether it takes a value.
    pub arity: Arity,
    /// What a remote client may send.
    pub remote: RemoteRule,
}

impl Flag {
    const fn value(name: &'static str, remote: RemoteRule) -> Self {
        Self {
            name,
            arity: Arity::Value,
            remote,
        }
    }

    const fn switch(name: &'static str, remote: RemoteRule) -> Self {
        Self {
            name,
            arity: Arity::Switch,
            remote,
        }
    }

    /// Whether the flag takes a value.
    pub fn takes_value(&self) -> bool {
        self.arity == Arity::Value
    }
}

macro_rules! flags {
    ($($(#[$m:meta])* $konst:ident = $kind:ident($name:literal, $remote:expr);)*) => {
        $($(#[$m])* pub const $konst: Flag = Flag::$kind($name, $remote);)*
        /// Every flag.
        pub const FLAGS: &[Flag] = &[$($konst),*];
    };
}

flags! {
    /// `--output-format=stream-json`.
    OUTPUT_FORMAT = value("output-format", RemoteRule::Fixed);
    /// `--verbose` (stream-json output needs it).
    VERBOSE = switch("verbose", RemoteRule::Fixed);
    /// `--input-format=stream-json`.
    INPUT_FORMAT = value("input-format", RemoteRule::Fixed);
    /// `--system-prompt`.
    SYSTEM_PROMPT = value("system-prompt", RemoteRule::Any);
    /// `--system-prompt-file` (reads a file).
    SYSTEM_PROMPT_FILE = value("system-prompt-file", RemoteRule::Refused);
    /// `--append-system-prompt`.
    APPEND_SYSTEM_PROMPT = value("append-system-prompt", RemoteRule::Any);
    /// `--tools`.
    TOOLS = value("tools", RemoteRule::Any);
    /// `--allowedTools`.
    ALLOWED_TOOLS = value("allowedTools", RemoteRule::Any);
    /// `--disallowedTools`.
    DISALLOWED_TOOLS = value("disallowedTools", RemoteRule::Any);
    /// `--max-turns`.
    MAX_TURNS = value("max-turns", RemoteRule::WholeNumber);
    /// `--max-budget-usd`.
    MAX_BUDGET_USD = value("max-budget-usd", RemoteRule::NonNegative);
    /// `--task-budget`.
    TASK_BUDGET = value("task-budget", RemoteRule::WholeNumber);
    /// `--model`.
    MODEL = value("model", RemoteRule::Any);
    /// `--fallback-model`.
    FALLBACK_MODEL = value("fallback-model", RemoteRule::Any);
    /// `--betas`.
    BETAS = value("betas", RemoteRule::Any);
    /// `--permission-prompt-tool` (remotely only `stdio`: the client's own callback).
    PERMISSION_PROMPT_TOOL = value("permission-prompt-tool", RemoteRule::OneOf(&["stdio"]));
    /// `--permission-mode`.
    PERMISSION_MODE = value("permission-mode", RemoteRule::PermissionMode);
    /// `--resume`.
    RESUME = value("resume", RemoteRule::Id);
    /// `--session-id`.
    SESSION_ID = value("session-id", RemoteRule::Id);
    /// `--resume-session-at`.
    RESUME_SESSION_AT = value("resume-session-at", RemoteRule::Id);
    /// `--resume-drops-turn`.
    RESUME_DROPS_TURN = value("resume-drops-turn", RemoteRule::Id);
    /// `--settings` (a path or JSON; may read a file).
    SETTINGS = value("settings", RemoteRule::Refused);
    /// `--add-dir`.
    ADD_DIR = value("add-dir", RemoteRule::Directory);
    /// `--mcp-config`.
    MCP_CONFIG = value("mcp-config", RemoteRule::SdkMcpConfig);
    /// `--setting-sources`.
    SETTING_SOURCES = value("setting-sources", RemoteRule::ListOf(&["user", "project", "local"]));
    /// `--plugin-dir` (loads code from a directory).
    PLUGIN_DIR = value("plugin-dir", RemoteRule::Refused);
    /// `--thinking`.
    THINKING = value("thinking", RemoteRule::OneOf(&["adaptive", "enabled", "disabled"]));
    /// `--max-thinking-tokens`.
    MAX_THINKING_TOKENS = value("max-thinking-tokens", RemoteRule::WholeNumber);
    /// `--thinking-display`.
    THINKING_DISPLAY = value("thinking-display", RemoteRule::Any);
    /// `--effort`.
    EFFORT = value("effort", RemoteRule::Any);
    /// `--json-schema`.
    JSON_SCHEMA = value("json-schema", RemoteRule::Json);
    /// `--continue` (the most recent conversation in the directory: maybe another client's).
    CONTINUE = switch("continue", RemoteRule::Refused);
    /// `--fork-session`.
    FORK_SESSION = switch("fork-session", RemoteRule::Any);
    /// `--strict-mcp-config`.
    STRICT_MCP_CONFIG = switch("strict-mcp-config", RemoteRule::Any);
    /// `--include-partial-messages`.
    INCLUDE_PARTIAL_MESSAGES = switch("include-partial-messages", RemoteRule::Any);
    /// `--include-hook-events`.
    INCLUDE_HOOK_EVENTS = switch("include-hook-events", RemoteRule::Any);
    /// `--replay-user-messages`.
    REPLAY_USER_MESSAGES = switch("replay-user-messages", RemoteRule::Any);
    /// `--no-session-persistence`.
    NO_SESSION_PERSISTENCE = switch("no-session-persistence", RemoteRule::Any);
    /// `--dangerously-skip-permissions` (not written by `Options`; only through `extra_arg`).
    DANGEROUSLY_SKIP_PERMISSIONS = switch("dangerously-skip-permissions", RemoteRule::Dangerous);
    /// `--allow-dangerously-skip-permissions` (likewise).
    ALLOW_DANGEROUSLY_SKIP_PERMISSIONS =
        switch("allow-dangerously-skip-permissions", RemoteRule::Dangerous);
}

/// The flag called `name` (without `--`), if the table has it.
pub fn lookup(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_plain() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(
                !f.name.is_empty()
                    && f.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{}",
                f.name
            );
            assert_eq!(
                FLAGS.iter().position(|x| x.name == f.name),
                Some(i),
                "{}",
                f.name
            );
            assert_eq!(lookup(f.name), Some(f));
        }
        assert!(lookup("no-such-flag").is_none());
    }
}
