//! [`HookOutput`]: what a hook answers.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::HookEvent;

/// `decision` of a hook output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookDecision {
    /// `"block"`: block the action (the tool call, the stop, the prompt); `reason` goes to
    /// Claude.
    Block,
    /// `"approve"`: deprecated for `PreToolUse` (use [`PreToolUseDecision::Allow`]).
    Approve,
}

impl HookDecision {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HookDecision::Block => "block",
            HookDecision::Approve => "approve",
        }
    }
}

/// `permissionDecision` of a `PreToolUse` output.
///
/// Not to be confused with [`crate::permission::PermissionDecision`], the answer of a
/// `can_use_tool` permission callback: a hook's decision is one of these four words, a
/// permission callback's answer carries the input to run or the denial message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreToolUseDecision {
    /// Run the tool without asking (`can_use_tool` is skipped).
    Allow,
    /// Do not run the tool; `permissionDecisionReason` becomes the tool result Claude sees.
    Deny,
    /// Ask as usual; the reason is passed on as `can_use_tool`'s `decision_reason`.
    Ask,
    /// Stop the run with `result.deferred_tool_use` (`terminal_reason: tool_deferred`), so the
    /// host can run the tool itself and resume.
    Defer,
}

impl PreToolUseDecision {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PreToolUseDecision::Allow => "allow",
            PreToolUseDecision::Deny => "deny",
            PreToolUseDecision::Ask => "ask",
            PreToolUseDecision::Defer => "defer",
        }
    }
}

/// `hookSpecificOutput` for `PreToolUse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreToolUseOutput {
    /// `permissionDecision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_decision: Option<PreToolUseDecision>,
    /// `permissionDecisionReason`: shown to Claude on deny, to the permission prompt on ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_decision_reason: Option<String>,
    /// `updatedInput`: the tool input to run instead of the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<Value>,
    /// `additionalContext`: text added for Claude next to the tool result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_context: Option<String>,
    /// Other fields, sent as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `hookSpecificOutput` for `PostToolUse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostToolUseOutput {
    /// `additionalContext`: text added for Claude next to the tool result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_context: Option<String>,
    /// `updatedMCPToolOutput`: replaces an MCP tool's output before Claude sees it.
    #[serde(
        default,
        rename = "updatedMCPToolOutput",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_mcp_tool_output: Option<Value>,
    /// `updatedToolOutput`: replaces a tool's output (must match a built-in tool's output schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_tool_output: Option<Value>,
    /// Other fields (`classifierContext`, …), sent as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `hookSpecificOutput` for `UserPromptSubmit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPromptSubmitOutput {
    /// `additionalContext`: text added to the context sent with the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_context: Option<String>,
    /// Other fields (`sessionTitle`, `suppressOriginalPrompt`, …), sent as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `hookSpecificOutput` for `SessionStart`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStartOutput {
    /// `additionalContext`: text added to the session's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_context: Option<String>,
    /// Other fields (`initialUserMessage`, `sessionTitle`, `watchPaths`, …), sent as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `decision` of a `PermissionRequest` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "behavior", rename_all = "lowercase")]
pub enum PermissionRequestDecision {
    /// `{"behavior":"allow"}`.
    Allow {
        /// `updatedInput`: the tool input to run instead.
        #[serde(
            default,
            rename = "updatedInput",
            skip_serializing_if = "Option::is_none"
        )]
        updated_input: Option<Value>,
        /// `updatedPermissions`: a list of `PermissionUpdate` objects, as JSON.
        #[serde(
            default,
            rename = "updatedPermissions",
            skip_serializing_if = "Option::is_none"
        )]
        updated_permissions: Option<Value>,
    },
    /// `{"behavior":"deny"}`.
    Deny {
        /// `message`: fed back to Claude.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// `interrupt`: also abort the turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupt: Option<bool>,
    },
}

/// `hookSpecificOutput` for `PermissionRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionRequestOutput {
    /// `decision`.
    pub decision: PermissionRequestDecision,
    /// Other fields, sent as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `hookSpecificOutput` for the events whose only specific field is `additionalContext`
/// (`PostToolUseFailure`, `Notification`, `SubagentStart`, `Stop`, `SubagentStop`,
/// `PostToolBatch`, …) and for any event without a typed output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenericHookOutput {
    /// `hookEventName`.
    #[serde(skip, default = "no_event")]
    pub hook_event_name: HookEvent,
    /// `additionalContext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_context: Option<String>,
    /// Other fields, sent as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn no_event() -> HookEvent {
    HookEvent::Other(String::new())
}

impl GenericHookOutput {
    /// An output for `event` with only `additionalContext`.
    pub fn new(event: HookEvent, additional_context: impl Into<String>) -> Self {
        GenericHookOutput {
            hook_event_name: event,
            additional_context: Some(additional_context.into()),
            extra: Map::new(),
        }
    }
}

/// `hookSpecificOutput`: the event-specific part of a [`HookOutput`]. On the wire it always
/// carries `hookEventName`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HookSpecificOutput {
    /// `PreToolUse`.
    PreToolUse(PreToolUseOutput),
    /// `PostToolUse`.
    PostToolUse(PostToolUseOutput),
    /// `UserPromptSubmit`.
    UserPromptSubmit(UserPromptSubmitOutput),
    /// `SessionStart`.
    SessionStart(SessionStartOutput),
    /// `PermissionRequest`.
    PermissionRequest(PermissionRequestOutput),
    /// Any other event: `hookEventName` plus `additionalContext`.
    Generic(GenericHookOutput),
    /// A `hookSpecificOutput` object sent exactly as given (it must carry its own
    /// `hookEventName`).
    Other(Value),
}

impl HookSpecificOutput {
    /// The event this output is for (`hookEventName`).
    pub fn event(&self) -> HookEvent {
        match self {
            HookSpecificOutput::PreToolUse(_) => HookEvent::PreToolUse,
            HookSpecificOutput::PostToolUse(_) => HookEvent::PostToolUse,
            HookSpecificOutput::UserPromptSubmit(_) => HookEvent::UserPromptSubmit,
            HookSpecificOutput::SessionStart(_) => HookEvent::SessionStart,
            HookSpecificOutput::PermissionRequest(_) => HookEvent::PermissionRequest,
            HookSpecificOutput::Generic(generic) => generic.hook_event_name.clone(),
            HookSpecificOutput::Other(value) => HookEvent::from(
                value
                    .get("hookEventName")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
        }
    }

    /// An output for `event` carrying only `additionalContext`, typed when the event has a
    /// typed output.
    pub fn additional_context(event: HookEvent, text: impl Into<String>) -> Self {
        let additional_context = Some(text.into());
        match event {
            HookEvent::PreToolUse => HookSpecificOutput::PreToolUse(PreToolUseOutput {
                additional_context,
                ..Default::default()
            }),
            HookEvent::PostToolUse => HookSpecificOutput::PostToolUse(PostToolUseOutput {
                additional_context,
                ..Default::default()
            }),
            HookEvent::UserPromptSubmit => {
                HookSpecificOutput::UserPromptSubmit(UserPromptSubmitOutput {
                    additional_context,
                    ..Default::default()
                })
            }
            HookEvent::SessionStart => HookSpecificOutput::SessionStart(SessionStartOutput {
                additional_context,
                ..Default::default()
            }),
            event => HookSpecificOutput::Generic(GenericHookOutput {
                hook_event_name: event,
                additional_context,
                extra: Map::new(),
            }),
        }
    }

    /// The wire object, with `hookEventName`.
    pub fn to_wire(&self) -> Value {
        let mut object = match self {
            HookSpecificOutput::PreToolUse(output) => to_object(output),
            HookSpecificOutput::PostToolUse(output) => to_object(output),
            HookSpecificOutput::UserPromptSubmit(output) => to_object(output),
            HookSpecificOutput::SessionStart(output) => to_object(output),
            HookSpecificOutput::PermissionRequest(output) => to_object(output),
            HookSpecificOutput::Generic(output) => to_object(output),
            HookSpecificOutput::Other(value) => return value.clone(),
        };
        object.insert(
            "hookEventName".to_owned(),
            Value::String(self.event().as_str().to_owned()),
        );
        Value::Object(object)
    }

    /// Reads a `hookSpecificOutput` object. Never fails: an object without `hookEventName`, or
    /// one the typed variant would not reproduce exactly (unexpected types, explicit `null`s),
    /// becomes [`HookSpecificOutput::Other`], so `from_wire(v).to_wire() == v`.
    pub fn from_wire(value: &Value) -> Self {
        let other = || HookSpecificOutput::Other(value.clone());
        let Some(object) = value.as_object() else {
            return other();
        };
        let Some(event) = object.get("hookEventName").and_then(Value::as_str) else {
            return other();
        };
        let mut fields = object.clone();
        fields.remove("hookEventName");
        let fields = Value::Object(fields);
        let parsed = match HookEvent::from(event) {
            HookEvent::PreToolUse => parse(fields).map(HookSpecificOutput::PreToolUse),
            HookEvent::PostToolUse => parse(fields).map(HookSpecificOutput::PostToolUse),
            HookEvent::UserPromptSubmit => parse(fields).map(HookSpecificOutput::UserPromptSubmit),
            HookEvent::SessionStart => parse(fields).map(HookSpecificOutput::SessionStart),
            HookEvent::PermissionRequest => {
                parse(fields).map(HookSpecificOutput::PermissionRequest)
            }
            event => parse::<GenericHookOutput>(fields).map(|mut generic| {
                generic.hook_event_name = event;
                HookSpecificOutput::Generic(generic)
            }),
        };
        // Typed only when nothing is lost (unknown values inside `decision`, explicit nulls, …).
        parsed
            .filter(|typed| typed.to_wire() == *value)
            .unwrap_or_else(other)
    }
}

fn parse<T: DeserializeOwned>(fields: Value) -> Option<T> {
    T::deserialize(fields).ok()
}

fn to_object<T: Serialize>(value: &T) -> Map<String, Value> {
    // These types serialize to objects with string keys; `to_value` cannot fail for them.
    match serde_json::to_value(value) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    }
}

/// A hook's answer. `HookOutput::default()` is `{}` on the wire ("no opinion, go on").
///
/// Fields map to the wire names (`continue_` → `continue`, `stop_reason` → `stopReason`, …);
/// only fields that are set are sent. `extra` holds fields this SDK does not type
/// (`terminalSequence`, …); a typed field wins over an `extra` entry of the same name.
///
/// ```
/// use claude_conduit::hooks::{HookEvent, HookOutput};
/// use serde_json::json;
///
/// assert_eq!(HookOutput::default().to_wire(), json!({}));
/// assert_eq!(
///     HookOutput::deny_tool("no rm -rf").to_wire(),
///     json!({"hookSpecificOutput": {
///         "hookEventName": "PreToolUse",
///         "permissionDecision": "deny",
///         "permissionDecisionReason": "no rm -rf"
///     }})
/// );
/// assert_eq!(
///     HookOutput::additional_context(HookEvent::PostToolUse, "checked").to_wire(),
///     json!({"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": "checked"}})
/// );
/// assert_eq!(
///     HookOutput::stop("budget reached").to_wire(),
///     json!({"continue": false, "stopReason": "budget reached"})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookOutput {
    /// `continue`: `false` stops the agent after this hook.
    pub continue_: Option<bool>,
    /// `stopReason`: shown when `continue` is `false`.
    pub stop_reason: Option<String>,
    /// `suppressOutput`: hide the hook's output from the transcript.
    pub suppress_output: Option<bool>,
    /// `decision`.
    pub decision: Option<HookDecision>,
    /// `reason`: feedback to Claude for the decision.
    pub reason: Option<String>,
    /// `systemMessage`: a warning shown to the user.
    pub system_message: Option<String>,
    /// `async`: the hook goes on in the background; the CLI does not wait for a decision.
    pub async_: bool,
    /// `asyncTimeout`, in milliseconds on the wire.
    pub async_timeout: Option<Duration>,
    /// `hookSpecificOutput`.
    pub hook_specific: Option<HookSpecificOutput>,
    /// Other top-level fields, sent as they are.
    pub extra: Map<String, Value>,
}

impl HookOutput {
    fn pre_tool_use(decision: PreToolUseDecision, reason: Option<String>) -> Self {
        HookOutput {
            hook_specific: Some(HookSpecificOutput::PreToolUse(PreToolUseOutput {
                permission_decision: Some(decision),
                permission_decision_reason: reason,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// `PreToolUse`: run the tool without asking; `reason` is recorded as
    /// `permissionDecisionReason`.
    pub fn allow_tool(reason: impl Into<String>) -> Self {
        Self::pre_tool_use(PreToolUseDecision::Allow, Some(reason.into()))
    }

    /// `PreToolUse`: do not run the tool; Claude gets `reason` as the tool result.
    pub fn deny_tool(reason: impl Into<String>) -> Self {
        Self::pre_tool_use(PreToolUseDecision::Deny, Some(reason.into()))
    }

    /// `PreToolUse`: ask as usual (the CLI's permission flow or `can_use_tool`), passing
    /// `reason` on.
    pub fn ask(reason: impl Into<String>) -> Self {
        Self::pre_tool_use(PreToolUseDecision::Ask, Some(reason.into()))
    }

    /// `PreToolUse`: stop the run and hand the tool call to the host
    /// (`result.deferred_tool_use`).
    pub fn defer() -> Self {
        Self::pre_tool_use(PreToolUseDecision::Defer, None)
    }

    /// `PermissionRequest`: allow, with no changes (add them with
    /// [`with_updated_input`](Self::with_updated_input) or by building a
    /// [`PermissionRequestDecision`]).
    pub fn allow_permission_request() -> Self {
        HookOutput::with_specific(HookSpecificOutput::PermissionRequest(
            PermissionRequestOutput {
                decision: PermissionRequestDecision::Allow {
                    updated_input: None,
                    updated_permissions: None,
                },
                extra: Map::new(),
            },
        ))
    }

    /// `PermissionRequest`: deny, with `message` for Claude.
    pub fn deny_permission_request(message: impl Into<String>) -> Self {
        HookOutput::with_specific(HookSpecificOutput::PermissionRequest(
            PermissionRequestOutput {
                decision: PermissionRequestDecision::Deny {
                    message: Some(message.into()),
                    interrupt: None,
                },
                extra: Map::new(),
            },
        ))
    }

    /// `hookSpecificOutput` with `additionalContext` for `event`: text the CLI adds for
    /// Claude (next to the tool result for tool events, to the prompt's context for
    /// `UserPromptSubmit`, …).
    pub fn additional_context(event: HookEvent, text: impl Into<String>) -> Self {
        HookOutput::with_specific(HookSpecificOutput::additional_context(event, text))
    }

    /// An output carrying only `specific` as `hookSpecificOutput`.
    pub fn with_specific(specific: HookSpecificOutput) -> Self {
        HookOutput {
            hook_specific: Some(specific),
            ..Default::default()
        }
    }

    /// `continue: false` with `stopReason`: stop the agent after this hook.
    pub fn stop(reason: impl Into<String>) -> Self {
        HookOutput {
            continue_: Some(false),
            stop_reason: Some(reason.into()),
            ..Default::default()
        }
    }

    /// `decision: "block"` with `reason` for Claude (blocks a `Stop`, a `PostToolUse` result,
    /// a `UserPromptSubmit` prompt, …).
    pub fn block(reason: impl Into<String>) -> Self {
        HookOutput {
            decision: Some(HookDecision::Block),
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    /// `async: true` (with `asyncTimeout`): the hook carries on in the background.
    pub fn async_(timeout: Option<Duration>) -> Self {
        HookOutput {
            async_: true,
            async_timeout: timeout,
            ..Default::default()
        }
    }

    /// Sets `updatedInput` of the `PreToolUse` output (or of a `PermissionRequest` allow),
    /// creating a `PreToolUse` output when there is none. Other event outputs are left as they
    /// are (a warning is logged), since the CLI reads `updatedInput` only for those two.
    pub fn with_updated_input(mut self, input: Value) -> Self {
        match &mut self.hook_specific {
            None => {
                self.hook_specific = Some(HookSpecificOutput::PreToolUse(PreToolUseOutput {
                    updated_input: Some(input),
                    ..Default::default()
                }));
            }
            Some(HookSpecificOutput::PreToolUse(output)) => output.updated_input = Some(input),
            Some(HookSpecificOutput::PermissionRequest(PermissionRequestOutput {
                decision: PermissionRequestDecision::Allow { updated_input, .. },
                ..
            })) => *updated_input = Some(input),
            Some(other) => tracing::warn!(
                event = %other.event(),
                "with_updated_input ignored: updatedInput only applies to PreToolUse and \
                 PermissionRequest allow outputs"
            ),
        }
        self
    }

    /// Sets `systemMessage` (a warning shown to the user).
    pub fn with_system_message(mut self, message: impl Into<String>) -> Self {
        self.system_message = Some(message.into());
        self
    }

    /// Sets `reason`.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets `continue`.
    pub fn with_continue(mut self, go_on: bool) -> Self {
        self.continue_ = Some(go_on);
        self
    }

    /// Sets `suppressOutput`.
    pub fn with_suppress_output(mut self, suppress: bool) -> Self {
        self.suppress_output = Some(suppress);
        self
    }

    /// The `PreToolUse` permission decision, if this output carries one.
    pub fn permission_decision(&self) -> Option<PreToolUseDecision> {
        match &self.hook_specific {
            Some(HookSpecificOutput::PreToolUse(output)) => output.permission_decision,
            _ => None,
        }
    }

    /// The wire object (the `response` of the `hook_callback` control response).
    pub fn to_wire(&self) -> Value {
        let mut object = self.extra.clone();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        };
        put("continue", self.continue_.map(Value::Bool));
        put("stopReason", self.stop_reason.clone().map(Value::String));
        put("suppressOutput", self.suppress_output.map(Value::Bool));
        put(
            "decision",
            self.decision.map(|d| Value::String(d.as_str().to_owned())),
        );
        put("reason", self.reason.clone().map(Value::String));
        put(
            "systemMessage",
            self.system_message.clone().map(Value::String),
        );
        put("async", self.async_.then_some(Value::Bool(true)));
        put(
            "asyncTimeout",
            self.async_timeout
                .map(|t| Value::from(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))),
        );
        put(
            "hookSpecificOutput",
            self.hook_specific.as_ref().map(HookSpecificOutput::to_wire),
        );
        Value::Object(object)
    }

    /// Reads a hook output object. Never fails: fields with unexpected types are kept in
    /// `extra`, so `from_wire(v).to_wire() == v` for any object `v` (a non-object gives the
    /// default output).
    pub fn from_wire(value: &Value) -> Self {
        let mut output = HookOutput::default();
        let Some(object) = value.as_object() else {
            return output;
        };
        for (key, field) in object {
            let known = match key.as_str() {
                "continue" => field.as_bool().map(|b| output.continue_ = Some(b)),
                "stopReason" => field
                    .as_str()
                    .map(|s| output.stop_reason = Some(s.to_owned())),
                "suppressOutput" => field.as_bool().map(|b| output.suppress_output = Some(b)),
                "decision" => parse::<HookDecision>(field.clone())
                    .map(|decision| output.decision = Some(decision)),
                "reason" => field.as_str().map(|s| output.reason = Some(s.to_owned())),
                "systemMessage" => field
                    .as_str()
                    .map(|s| output.system_message = Some(s.to_owned())),
                "async" if field == &Value::Bool(true) => {
                    output.async_ = true;
                    Some(())
                }
                "asyncTimeout" => field
                    .as_u64()
                    .map(|ms| output.async_timeout = Some(Duration::from_millis(ms))),
                "hookSpecificOutput" if field.is_object() => {
                    output.hook_specific = Some(HookSpecificOutput::from_wire(field));
                    Some(())
                }
                _ => None,
            };
            if known.is_none() {
                output.extra.insert(key.clone(), field.clone());
            }
        }
        output
    }
}

impl From<HookSpecificOutput> for HookOutput {
    fn from(specific: HookSpecificOutput) -> Self {
        HookOutput::with_specific(specific)
    }
}

impl Serialize for HookOutput {
    /// Serializes as [`HookOutput::to_wire`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_wire().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HookOutput {
    /// Any JSON value; see [`HookOutput::from_wire`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| HookOutput::from_wire(&value))
    }
}
