//! Tool permissions: answering the CLI's `can_use_tool` requests.
//!
//! When a permission handler is configured the SDK starts the CLI with
//! `--permission-prompt-tool stdio`. Whenever the CLI's own evaluation of a tool call ends in
//! "ask" (no allow rule, no deny rule, no permission mode that covers it), it sends a
//! `can_use_tool` control request instead of prompting on a terminal, and waits — with no
//! deadline — for the answer. Calls already allowed by `allowed_tools`, settings rules, the
//! permission mode or a `PreToolUse` hook never get here, and neither do calls denied by deny
//! rules. Read-only Bash commands the CLI auto-approves (such as `echo hi`) never get here either.
//!
//! The pieces:
//!
//! * [`PermissionRequest`]: what the CLI asks (tool, input, suggestions, context), parsed from
//!   the request body with [`PermissionRequest::from_body`].
//! * [`PermissionDecision`]: the answer — allow (optionally with a rewritten input and permission
//!   updates such as "always allow") or deny (optionally interrupting the whole turn).
//!   [`PermissionDecision::to_wire`] gives the exact JSON the CLI expects.
//! * [`PermissionUpdate`]: the typed permission changes the CLI suggests and accepts back.
//! * [`PermissionHandler`]: the async callback. Any
//!   `Fn(PermissionRequest) -> impl Future<Output = PermissionDecision>` closure is one.
//! * [`policy`]: synchronous, rule-based policies ([`policy::AllowList`],
//!   [`policy::DenyList`], [`policy::ReadOnly`], [`policy::Chain`]) in the CLI's permission-rule
//!   syntax (`Bash(git *)`, `Read(//etc/**)`, `mcp__server__*`), and
//!   [`policy::PolicyHandler`], which turns a policy into a handler with a fallback for calls
//!   the policy does not decide.
//! * [`answer`]: parse, decide, encode — what the protocol router runs for a `can_use_tool`
//!   request.
//!
//! # Cancellation
//!
//! When the CLI withdraws a pending request (it sends `control_cancel_request`, for example
//! because the turn was interrupted), the protocol engine aborts the task that runs the handler:
//! the future returned by [`PermissionHandler::decide`] is **dropped** at whatever `.await` it is
//! suspended on, and no answer is sent. Handlers must therefore be cancel-safe: do not leave
//! shared state half-updated across an `.await`, and release anything a prompt UI holds in
//! `Drop` rather than after the await.
//!
//! # Example
//!
//! A policy that denies `rm` and allows git, with a closure deciding everything else. This runs
//! without the CLI: the request is built from JSON shaped like a real `can_use_tool` body.
//!
//! ```
//! use claude_conduit::permission::policy::{AllowList, Chain, DenyList, Policy, PolicyHandler, Rule};
//! use claude_conduit::permission::{PermissionDecision, PermissionHandler, PermissionRequest};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let body = json!({
//!     "subtype": "can_use_tool",
//!     "tool_name": "Bash",
//!     "input": {"command": "git status", "description": "Show the working tree status"},
//!     "tool_use_id": "toolu_01",
//! });
//! let body = body.as_object().ok_or("not an object")?;
//! let request = PermissionRequest::from_body(body)?;
//!
//! // Deny first, so that a deny rule wins over an allow rule.
//! let policy = Chain(vec![
//!     Box::new(DenyList::parse(["Bash(rm *)"])?) as Box<dyn Policy>,
//!     Box::new(AllowList::parse(["Bash(git *)", "Read"])?),
//! ]);
//! let handler = PolicyHandler::new(policy).fallback(|req: PermissionRequest| async move {
//!     PermissionDecision::deny(format!("{} needs a human", req.tool_name))
//! });
//!
//! let decision = futures::executor::block_on(handler.decide(request.clone()));
//! assert_eq!(decision, PermissionDecision::allow());
//! assert_eq!(
//!     decision.to_wire(&request.input),
//!     json!({
//!         "behavior": "allow",
//!         "updatedInput": {"command": "git status", "description": "Show the working tree status"},
//!     }),
//! );
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

pub mod policy;
mod shell;

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

/// A `can_use_tool` request: the CLI asks whether a tool call may run.
///
/// Every field the CLI sent is also kept in [`raw`](Self::raw), including the flags this type
/// does not lift out (`classifier_approvable`, `default_to_no`, `suppress_always_allow_rule`,
/// `matched_ask_rule`, `requires_user_interaction`, …).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PermissionRequest {
    /// The tool the model wants to call: `Bash`, `Write`, `mcp__server__tool`, ….
    pub tool_name: String,
    /// The tool's input, as the model wrote it (an object; `{}` when the CLI sent none).
    pub input: Value,
    /// The id of the `tool_use` block this request is about.
    pub tool_use_id: Option<String>,
    /// Permission updates the CLI suggests for "always allow" (`permission_suggestions`); echo
    /// them back with [`PermissionDecision::allow_always`].
    pub suggestions: Vec<PermissionUpdate>,
    /// The path that triggered the prompt, when a file path is involved.
    pub blocked_path: Option<String>,
    /// Why the CLI asks (`decision_reason`), as text; a non-string value is kept as its JSON
    /// text. The original value is in [`raw`](Self::raw).
    pub decision_reason: Option<String>,
    /// The kind of reason (`decision_reason_type`, e.g. `"subcommandResults"`).
    pub decision_reason_type: Option<String>,
    /// A title for a prompt UI, when the CLI sends one.
    pub title: Option<String>,
    /// The tool's display name (`"Bash"`, `"Add"` for an MCP tool `add`, …).
    pub display_name: Option<String>,
    /// A human description of the call (for Bash: the model's description of the command).
    pub description: Option<String>,
    /// The subagent making the call, when it is not the main agent.
    pub agent_id: Option<String>,
    /// The MCP server providing the tool, when the CLI names it.
    pub mcp_server: Option<McpServerRef>,
    /// The whole request object as sent (including `subtype`).
    pub raw: Map<String, Value>,
}

/// The MCP server a requested tool belongs to (`mcp_server` of a `can_use_tool` request).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpServerRef {
    /// The server's name.
    pub name: String,
    /// Where it comes from; `"sdk"` means an in-process server registered by this SDK.
    pub source: Option<String>,
}

impl PermissionRequest {
    /// A request for `tool_name` with `input` and every other field empty; handy in tests and
    /// to evaluate a [`policy::Policy`] outside a session.
    pub fn new(tool_name: impl Into<String>, input: Value) -> Self {
        let tool_name = tool_name.into();
        let mut raw = Map::new();
        raw.insert("subtype".into(), Value::String("can_use_tool".into()));
        raw.insert("tool_name".into(), Value::String(tool_name.clone()));
        raw.insert("input".into(), input.clone());
        PermissionRequest {
            tool_name,
            input,
            tool_use_id: None,
            suggestions: Vec::new(),
            blocked_path: None,
            decision_reason: None,
            decision_reason_type: None,
            title: None,
            display_name: None,
            description: None,
            agent_id: None,
            mcp_server: None,
            raw,
        }
    }

    /// Parses the `request` object of a `can_use_tool` control request
    /// ([`ControlRequest::body`](crate::message::ControlRequest::body)).
    ///
    /// Only `tool_name` is required (the error text says so when it is missing or not a
    /// string). Unknown fields are kept in [`raw`](Self::raw); a suggestion this SDK does not
    /// know becomes [`PermissionUpdate::Other`].
    pub fn from_body(body: &Map<String, Value>) -> Result<Self, String> {
        let tool_name = match body.get("tool_name") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(format!(
                    "can_use_tool request has a non-string tool_name: {other}"
                ));
            }
            None => return Err("can_use_tool request has no tool_name".to_owned()),
        };
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        let input = match body.get("input") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v) => v.clone(),
        };
        let suggestions = match body.get("permission_suggestions") {
            Some(Value::Array(items)) => items
                .iter()
                .cloned()
                .map(PermissionUpdate::from_value)
                .collect(),
            _ => Vec::new(),
        };
        let decision_reason = match body.get("decision_reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let mcp_server = match body.get("mcp_server") {
            Some(Value::Object(m)) => {
                m.get("name")
                    .and_then(Value::as_str)
                    .map(|name| McpServerRef {
                        name: name.to_owned(),
                        source: m.get("source").and_then(Value::as_str).map(str::to_owned),
                    })
            }
            Some(Value::String(name)) => Some(McpServerRef {
                name: name.clone(),
                source: None,
            }),
            _ => None,
        };
        Ok(PermissionRequest {
            tool_name,
            input,
            tool_use_id: text("tool_use_id"),
            suggestions,
            blocked_path: text("blocked_path"),
            decision_reason,
            decision_reason_type: text("decision_reason_type"),
            title: text("title"),
            display_name: text("display_name"),
            description: text("description"),
            agent_id: text("agent_id"),
            mcp_server,
            raw: body.clone(),
        })
    }

    /// A string field of [`input`](Self::input), if present.
    pub fn input_str(&self, key: &str) -> Option<&str> {
        self.input.get(key).and_then(Value::as_str)
    }
}

// ---------------------------------------------------------------------------------------------
// Permission updates
// ---------------------------------------------------------------------------------------------

/// A permission change, as the CLI suggests it (`permission_suggestions`) and accepts it back
/// (`updatedPermissions`).
///
/// Serializes to and from the exact wire shape (`{"type":"addRules","rules":[…],…}`). A value
/// whose `type` is unknown, or whose fields do not match the known shape exactly (a missing or
/// extra field), is kept verbatim as [`Other`](Self::Other), so a round trip never loses
/// anything.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PermissionUpdate {
    /// `addRules`: add permission rules.
    AddRules {
        /// The rules.
        rules: Vec<PermissionRuleValue>,
        /// Whether the rules allow, deny or ask.
        behavior: PermissionBehavior,
        /// Where the rules are stored.
        destination: PermissionDestination,
    },
    /// `replaceRules`: replace the rules of this behavior at the destination.
    ReplaceRules {
        /// The rules.
        rules: Vec<PermissionRuleValue>,
        /// Whether the rules allow, deny or ask.
        behavior: PermissionBehavior,
        /// Where the rules are stored.
        destination: PermissionDestination,
    },
    /// `removeRules`: remove permission rules.
    RemoveRules {
        /// The rules.
        rules: Vec<PermissionRuleValue>,
        /// Whether the rules allow, deny or ask.
        behavior: PermissionBehavior,
        /// Where the rules are stored.
        destination: PermissionDestination,
    },
    /// `setMode`: switch the permission mode (`default`, `acceptEdits`, `plan`,
    /// `bypassPermissions`, `dontAsk`, `auto`; see
    /// [`PermissionMode::as_str`](crate::options::PermissionMode::as_str)).
    SetMode {
        /// The mode, as on the wire.
        mode: String,
        /// Where the mode is stored (`session` for this session only).
        destination: PermissionDestination,
    },
    /// `addDirectories`: add working directories the tools may access.
    AddDirectories {
        /// The directories.
        directories: Vec<String>,
        /// Where they are stored.
        destination: PermissionDestination,
    },
    /// `removeDirectories`: remove working directories.
    RemoveDirectories {
        /// The directories.
        directories: Vec<String>,
        /// Where they are stored.
        destination: PermissionDestination,
    },
    /// Any other value, kept verbatim.
    Other(Value),
}

/// One rule of a rules update: `{"toolName": "Bash", "ruleContent": "git *"}`.
///
/// Deserializing rejects unknown fields, so that an update carrying them is kept verbatim as
/// [`PermissionUpdate::Other`] instead of losing them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionRuleValue {
    /// The tool (`Bash`, `Read`, `mcp__server__tool`, …).
    pub tool_name: String,
    /// The rule's content (`git *`, a path pattern, …); `None` for the whole tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_content: Option<String>,
}

impl PermissionRuleValue {
    /// A rule for `tool_name`, with optional content.
    pub fn new(tool_name: impl Into<String>, rule_content: Option<String>) -> Self {
        PermissionRuleValue {
            tool_name: tool_name.into(),
            rule_content,
        }
    }
}

/// Defines an open string enum: known values as variants, anything else in `Other`.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this SDK does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $wire => $name::$variant, )+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }
    };
}

open_enum! {
    /// What a rules update does with matching calls.
    PermissionBehavior {
        /// `allow`.
        Allow = "allow",
        /// `deny`.
        Deny = "deny",
        /// `ask`.
        Ask = "ask",
    }
}

open_enum! {
    /// Where a permission update is stored.
    PermissionDestination {
        /// `userSettings` (`~/.claude/settings.json`).
        UserSettings = "userSettings",
        /// `projectSettings` (`.claude/settings.json`).
        ProjectSettings = "projectSettings",
        /// `localSettings` (`.claude/settings.local.json`; ignored by the CLI in an untrusted
        /// workspace).
        LocalSettings = "localSettings",
        /// `session`: this session only.
        Session = "session",
        /// `cliArg`: as if given on the command line.
        CliArg = "cliArg",
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RulesWire {
    #[serde(rename = "type")]
    kind: String,
    rules: Vec<PermissionRuleValue>,
    behavior: PermissionBehavior,
    destination: PermissionDestination,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModeWire {
    #[serde(rename = "type")]
    kind: String,
    mode: String,
    destination: PermissionDestination,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DirsWire {
    #[serde(rename = "type")]
    kind: String,
    directories: Vec<String>,
    destination: PermissionDestination,
}

impl PermissionUpdate {
    /// Decodes one update from its wire value; anything not exactly a known shape becomes
    /// [`Other`](Self::Other). Never fails.
    pub fn from_value(value: Value) -> Self {
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        let typed = match kind {
            "addRules" | "replaceRules" | "removeRules" => {
                serde_json::from_value::<RulesWire>(value.clone())
                    .ok()
                    .map(|w| {
                        let RulesWire {
                            rules,
                            behavior,
                            destination,
                            ..
                        } = w;
                        match kind {
                            "addRules" => PermissionUpdate::AddRules {
                                rules,
                                behavior,
                                destination,
                            },
                            "replaceRules" => PermissionUpdate::ReplaceRules {
                                rules,
                                behavior,
                                destination,
                            },
                            _ => PermissionUpdate::RemoveRules {
                                rules,
                                behavior,
                                destination,
                            },
                        }
                    })
            }
            "setMode" => serde_json::from_value::<ModeWire>(value.clone())
                .ok()
                .map(|w| PermissionUpdate::SetMode {
                    mode: w.mode,
                    destination: w.destination,
                }),
            "addDirectories" | "removeDirectories" => {
                serde_json::from_value::<DirsWire>(value.clone())
                    .ok()
                    .map(|w| {
                        if kind == "addDirectories" {
                            PermissionUpdate::AddDirectories {
                                directories: w.directories,
                                destination: w.destination,
                            }
                        } else {
                            PermissionUpdate::RemoveDirectories {
                                directories: w.directories,
                                destination: w.destination,
                            }
                        }
                    })
            }
            _ => None,
        };
        typed.unwrap_or(PermissionUpdate::Other(value))
    }

    /// The wire value of this update.
    pub fn to_value(&self) -> Value {
        let rules = |kind: &str,
                     rules: &[PermissionRuleValue],
                     behavior: &PermissionBehavior,
                     destination: &PermissionDestination| {
            json!({
                "type": kind,
                "rules": rules,
                "behavior": behavior,
                "destination": destination,
            })
        };
        let dirs = |kind: &str, directories: &[String], destination: &PermissionDestination| {
            json!({
                "type": kind,
                "directories": directories,
                "destination": destination,
            })
        };
        match self {
            PermissionUpdate::AddRules {
                rules: r,
                behavior,
                destination,
            } => rules("addRules", r, behavior, destination),
            PermissionUpdate::ReplaceRules {
                rules: r,
                behavior,
                destination,
            } => rules("replaceRules", r, behavior, destination),
            PermissionUpdate::RemoveRules {
                rules: r,
                behavior,
                destination,
            } => rules("removeRules", r, behavior, destination),
            PermissionUpdate::SetMode { mode, destination } => json!({
                "type": "setMode",
                "mode": mode,
                "destination": destination,
            }),
            PermissionUpdate::AddDirectories {
                directories,
                destination,
            } => dirs("addDirectories", directories, destination),
            PermissionUpdate::RemoveDirectories {
                directories,
                destination,
            } => dirs("removeDirectories", directories, destination),
            PermissionUpdate::Other(v) => v.clone(),
        }
    }

    /// The wire `type` of this update (`addRules`, `setMode`, …; for
    /// [`Other`](Self::Other), its `type` field or `""`).
    pub fn kind(&self) -> &str {
        match self {
            PermissionUpdate::AddRules { .. } => "addRules",
            PermissionUpdate::ReplaceRules { .. } => "replaceRules",
            PermissionUpdate::RemoveRules { .. } => "removeRules",
            PermissionUpdate::SetMode { .. } => "setMode",
            PermissionUpdate::AddDirectories { .. } => "addDirectories",
            PermissionUpdate::RemoveDirectories { .. } => "removeDirectories",
            PermissionUpdate::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

impl Serialize for PermissionUpdate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PermissionUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        if !value.is_object() {
            return Err(D::Error::custom(
                "a permission update must be a JSON object",
            ));
        }
        Ok(PermissionUpdate::from_value(value))
    }
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// The answer to a [`PermissionRequest`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PermissionDecision {
    /// Let the call run.
    Allow {
        /// Run the tool with this input instead of the model's (what the CLI actually runs).
        /// `None` keeps the original input.
        updated_input: Option<Value>,
        /// Permission changes to apply (for "always allow", typically the request's
        /// [`suggestions`](PermissionRequest::suggestions)).
        updated_permissions: Vec<PermissionUpdate>,
    },
    /// Refuse the call.
    Deny {
        /// Why; fed back to the model as the tool's error result.
        message: String,
        /// Also abort the whole turn (the result is then `error_during_execution` with
        /// `terminal_reason: "aborted_tools"`; the session stays usable).
        interrupt: bool,
    },
}

impl PermissionDecision {
    /// Allow the call as it is.
    pub fn allow() -> Self {
        PermissionDecision::Allow {
            updated_input: None,
            updated_permissions: Vec::new(),
        }
    }

    /// Allow the call, but run it with `input` instead of the model's input.
    pub fn allow_with_input(input: Value) -> Self {
        PermissionDecision::Allow {
            updated_input: Some(input),
            updated_permissions: Vec::new(),
        }
    }

    /// Allow the call and apply `updates`; pass the request's
    /// [`suggestions`](PermissionRequest::suggestions) for "always allow".
    pub fn allow_always(updates: Vec<PermissionUpdate>) -> Self {
        PermissionDecision::Allow {
            updated_input: None,
            updated_permissions: updates,
        }
    }

    /// Deny the call; the model sees `message` and the turn goes on.
    pub fn deny(message: impl Into<String>) -> Self {
        PermissionDecision::Deny {
            message: message.into(),
            interrupt: false,
        }
    }

    /// Deny the call and interrupt the turn.
    pub fn deny_and_interrupt(message: impl Into<String>) -> Self {
        PermissionDecision::Deny {
            message: message.into(),
            interrupt: true,
        }
    }

    /// Whether this decision allows the call.
    pub fn is_allow(&self) -> bool {
        matches!(self, PermissionDecision::Allow { .. })
    }

    /// Several answers to one request, in priority order, as one — the event bus's rules for
    /// `PreToolUse` ([`events::combine`](crate::events::combine)) applied to `can_use_tool`:
    ///
    /// 1. **Any deny wins**, whatever its place; the message (and `interrupt`) are those of the
    ///    first deny in order.
    /// 2. Otherwise the call is allowed, and **the first `updated_input` in order applies** (later
    ///    ones are ignored); `updated_permissions` are joined in order.
    ///
    /// `None` when there is no answer at all (every policy abstained).
    ///
    /// ```
    /// use claude_conduit::permission::PermissionDecision;
    /// use serde_json::json;
    ///
    /// let allow = PermissionDecision::allow_with_input(json!({"command": "ls -a"}));
    /// let later = PermissionDecision::allow_with_input(json!({"command": "ls"}));
    /// assert_eq!(PermissionDecision::combine([allow.clone(), later]), Some(allow.clone()));
    /// let deny = PermissionDecision::deny("no");
    /// assert_eq!(PermissionDecision::combine([allow, deny.clone()]), Some(deny));
    /// assert_eq!(PermissionDecision::combine([]), None);
    /// ```
    pub fn combine(answers: impl IntoIterator<Item = PermissionDecision>) -> Option<Self> {
        let mut out: Option<PermissionDecision> = None;
        for answer in answers {
            match (&mut out, answer) {
                (Some(PermissionDecision::Deny { .. }), _) => {}
                (slot, deny @ PermissionDecision::Deny { .. }) => *slot = Some(deny),
                (slot @ None, allow) => *slot = Some(allow),
                (
                    Some(PermissionDecision::Allow {
                        updated_input,
                        updated_permissions,
                    }),
                    PermissionDecision::Allow {
                        updated_input: later_input,
                        updated_permissions: later_permissions,
                    },
                ) => {
                    if updated_input.is_none() {
                        *updated_input = later_input;
                    }
                    updated_permissions.extend(later_permissions);
                }
            }
        }
        out
    }

    /// The `response` payload of the `control_response` for this decision.
    ///
    /// Allow: `{"behavior":"allow","updatedInput":…}`, with the updated input or else
    /// `original_input` (the CLI requires `updatedInput`), plus `"updatedPermissions":[…]` when
    /// there are any. Deny: `{"behavior":"deny","message":…}`, plus `"interrupt":true` when set.
    pub fn to_wire(&self, original_input: &Value) -> Value {
        match self {
            PermissionDecision::Allow {
                updated_input,
                updated_permissions,
            } => {
                let mut out = Map::new();
                out.insert("behavior".into(), Value::String("allow".into()));
                out.insert(
                    "updatedInput".into(),
                    updated_input.as_ref().unwrap_or(original_input).clone(),
                );
                if !updated_permissions.is_empty() {
                    out.insert(
                        "updatedPermissions".into(),
                        Value::Array(
                            updated_permissions
                                .iter()
                                .map(PermissionUpdate::to_value)
                                .collect(),
                        ),
                    );
                }
                Value::Object(out)
            }
            PermissionDecision::Deny { message, interrupt } => {
                let mut out = Map::new();
                out.insert("behavior".into(), Value::String("deny".into()));
                out.insert("message".into(), Value::String(message.clone()));
                if *interrupt {
                    out.insert("interrupt".into(), Value::Bool(true));
                }
                Value::Object(out)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------------

/// Decides `can_use_tool` requests.
///
/// Implemented by every `Fn(PermissionRequest) -> impl Future<Output = PermissionDecision>`
/// closure that is `Send + Sync + 'static` (with a `Send + 'static` future), by
/// [`policy::PolicyHandler`], and by `Arc<H>` of any handler.
///
/// Each request runs on its own task; several may be pending at once. A request has no
/// deadline: the turn waits until the handler answers.
///
/// **Cancellation is by drop.** When the CLI withdraws the request (`control_cancel_request`,
/// e.g. after an interrupt), the returned future is dropped wherever it is suspended and no
/// answer is sent, so implementations must be cancel-safe. A panic in the handler becomes an
/// error response; the CLI then fails the tool call with that text.
pub trait PermissionHandler: Send + Sync + 'static {
    /// Decide one request.
    fn decide(&self, request: PermissionRequest) -> BoxFuture<'static, PermissionDecision>;
}

impl<F, Fut> PermissionHandler for F
where
    F: Fn(PermissionRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = PermissionDecision> + Send + 'static,
{
    fn decide(&self, request: PermissionRequest) -> BoxFuture<'static, PermissionDecision> {
        Box::pin(self(request))
    }
}

impl<H: PermissionHandler + ?Sized> PermissionHandler for Arc<H> {
    fn decide(&self, request: PermissionRequest) -> BoxFuture<'static, PermissionDecision> {
        (**self).decide(request)
    }
}

/// Answers one `can_use_tool` request body with `handler`: parses it
/// ([`PermissionRequest::from_body`]), awaits [`PermissionHandler::decide`], and encodes the
/// decision with [`PermissionDecision::to_wire`].
///
/// Returns `Ok(Some(payload))` for the success response, or `Err(text)` for an error response
/// when the body cannot be parsed. Never returns `Ok(None)` today; the `Option` matches the
/// protocol router's answer type.
pub async fn answer(
    handler: &dyn PermissionHandler,
    body: &Map<String, Value>,
) -> Result<Option<Value>, String> {
    let request = PermissionRequest::from_body(body)?;
    let input = request.input.clone();
    let tool = request.tool_name.clone();
    let decision = handler.decide(request).await;
    tracing::debug!(
        tool = %tool,
        allow = decision.is_allow(),
        "can_use_tool answered"
    );
    Ok(Some(decision.to_wire(&input)))
}
