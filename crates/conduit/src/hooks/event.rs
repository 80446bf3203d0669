//! [`HookEvent`]: the names of the CLI's hook events.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::convert::Infallible;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! hook_events {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A hook event, named as on the wire (`"PreToolUse"`, `"Stop"`, …).
        ///
        /// The enum is open: a name this SDK does not know yet becomes [`HookEvent::Other`] and
        /// goes to and from the wire unchanged, so hooks for events added to the CLI later can be
        /// registered and answered today.
        ///
        /// Equality, ordering and hashing use the wire name, so `HookEvent::Other("Stop".into())`
        /// equals `HookEvent::Stop`. `From<&str>`, `From<String>`, [`FromStr`] and `Deserialize`
        /// never build `Other` for a known name.
        ///
        /// ```
        /// use claude_conduit::hooks::HookEvent;
        ///
        /// assert_eq!(HookEvent::from("PreToolUse"), HookEvent::PreToolUse);
        /// assert_eq!(HookEvent::PreToolUse.as_str(), "PreToolUse");
        /// let future: HookEvent = "SomeFutureEvent".parse().unwrap_or(HookEvent::Stop);
        /// assert_eq!(future, HookEvent::Other("SomeFutureEvent".into()));
        /// assert_eq!(serde_json::to_string(&future).ok().as_deref(), Some("\"SomeFutureEvent\""));
        /// ```
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub enum HookEvent {
            $($(#[$doc])* $name,)*
            /// An event name this SDK does not know; carries the wire name.
            Other(String),
        }

        impl HookEvent {
            /// Every event this SDK knows, in the order of the CLI's `HOOK_EVENTS` list.
            pub const KNOWN: &'static [HookEvent] = &[$(HookEvent::$name,)*];

            /// The wire name (`"PreToolUse"`).
            pub fn as_str(&self) -> &str {
                match self {
                    $(HookEvent::$name => stringify!($name),)*
                    HookEvent::Other(name) => name,
                }
            }

            /// The known event called `name`, if any (no `Other`).
            pub fn known(name: &str) -> Option<HookEvent> {
                match name {
                    $(stringify!($name) => Some(HookEvent::$name),)*
                    _ => None,
                }
            }
        }
    };
}

hook_events! {
    /// Before a tool runs; can allow, deny, ask, defer or rewrite the call.
    PreToolUse,
    /// After a tool succeeded; sees the tool's response.
    PostToolUse,
    /// After a tool failed.
    PostToolUseFailure,
    /// After a batch of parallel tool calls finished.
    PostToolBatch,
    /// A notification the CLI would show (permission prompt, idle, …).
    Notification,
    /// A user prompt is about to be sent to the model.
    UserPromptSubmit,
    /// A slash command or MCP prompt was expanded into a prompt.
    UserPromptExpansion,
    /// A session starts (startup, resume, clear, compact, fork).
    SessionStart,
    /// A session ends.
    SessionEnd,
    /// The agent is about to stop (end of a turn).
    Stop,
    /// A turn ended with an API error.
    StopFailure,
    /// A subagent starts.
    SubagentStart,
    /// A subagent is about to stop.
    SubagentStop,
    /// Before the conversation is compacted.
    PreCompact,
    /// After the conversation was compacted.
    PostCompact,
    /// Before the model is switched.
    PreModelSwitch,
    /// After the model was switched.
    PostModelSwitch,
    /// The CLI is about to ask for permission to use a tool.
    PermissionRequest,
    /// A tool call was denied by the permission system.
    PermissionDenied,
    /// Repository setup (`init`, `maintenance`).
    Setup,
    /// A teammate (agent team member) went idle.
    TeammateIdle,
    /// A task was created.
    TaskCreated,
    /// A task was completed.
    TaskCompleted,
    /// An MCP server asks the user for input.
    Elicitation,
    /// The answer to an MCP elicitation.
    ElicitationResult,
    /// A settings file changed.
    ConfigChange,
    /// A git worktree is created.
    WorktreeCreate,
    /// A git worktree is removed.
    WorktreeRemove,
    /// A `CLAUDE.md`/memory file was loaded.
    InstructionsLoaded,
    /// The working directory changed.
    CwdChanged,
    /// A watched file changed.
    FileChanged,
    /// A directory was added to the session.
    DirectoryAdded,
    /// Assistant text is about to be displayed.
    MessageDisplay,
}

impl HookEvent {
    /// The input field the CLI compares a matcher against for this event (CLI rules, see
    /// [`HookMatcher::matches`](super::HookMatcher::matches)): `tool_name` for the tool events,
    /// `notification_type`, `agent_type`, `trigger` or `source` for a few others; `None` when
    /// the CLI ignores matchers for this event (`UserPromptSubmit`, `Stop`, …).
    pub fn matcher_field(&self) -> Option<&'static str> {
        match self {
            HookEvent::PreToolUse
            | HookEvent::PostToolUse
            | HookEvent::PostToolUseFailure
            | HookEvent::PermissionRequest
            | HookEvent::PermissionDenied => Some("tool_name"),
            HookEvent::Notification => Some("notification_type"),
            HookEvent::SubagentStart | HookEvent::SubagentStop => Some("agent_type"),
            HookEvent::PreCompact | HookEvent::PostCompact => Some("trigger"),
            HookEvent::SessionStart => Some("source"),
            _ => None,
        }
    }
}

impl From<&str> for HookEvent {
    fn from(name: &str) -> Self {
        HookEvent::known(name).unwrap_or_else(|| HookEvent::Other(name.to_owned()))
    }
}

impl From<String> for HookEvent {
    fn from(name: String) -> Self {
        HookEvent::known(&name).unwrap_or(HookEvent::Other(name))
    }
}

impl FromStr for HookEvent {
    type Err = Infallible;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(HookEvent::from(name))
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for HookEvent {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for HookEvent {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for HookEvent {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HookEvent {}

impl PartialEq<str> for HookEvent {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for HookEvent {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for HookEvent {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for HookEvent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HookEvent {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Serialize for HookEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HookEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(HookEvent::from)
    }
}
