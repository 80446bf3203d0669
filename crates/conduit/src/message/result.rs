//! `result` frames: the last frame of every turn.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::assistant::Usage;
use super::de::{count, null_default, opt_count};

/// A `result` frame, the last frame of every turn.
///
/// API failures arrive as `subtype:"success"` with `is_error:true`: check [`is_error`] (or
/// [`ResultMessage::is_success`]), not the subtype alone.
///
/// [`is_error`]: ResultMessage::is_error
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ResultMessage {
    /// `success`, `error_during_execution`, `error_max_turns`, `error_max_budget_usd`,
    /// `error_max_structured_output_retries`, or a subtype this SDK does not know
    /// (see [`ResultMessage::kind`]).
    #[serde(default)]
    pub subtype: String,
    /// True for error results (API failures arrive as `subtype:"success"` with `is_error:true`).
    #[serde(default, deserialize_with = "null_default")]
    pub is_error: bool,
    /// Wall-clock duration of the turn in milliseconds.
    #[serde(default, deserialize_with = "count")]
    pub duration_ms: u64,
    /// Time spent waiting for the API, in milliseconds.
    #[serde(default, deserialize_with = "count")]
    pub duration_api_ms: u64,
    /// Number of model calls in the turn.
    #[serde(default, deserialize_with = "count")]
    pub num_turns: u64,
    /// The final text (success results); the error text for API failures.
    #[serde(default)]
    pub result: Option<String>,
    /// The model's stop reason (`end_turn`, `tool_use`, `max_tokens`, …).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The CLI's session id.
    #[serde(default)]
    pub session_id: Option<String>,
    /// This frame's id.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Cumulative cost of the CLI process so far, as the CLI reports it.
    #[serde(default)]
    pub total_cost_usd: Option<f64>,
    /// The cost of this turn alone. Not on the wire: filled in by the session (see
    /// [`CostTracker`](super::CostTracker)).
    #[serde(skip)]
    pub turn_cost_usd: Option<f64>,
    /// Token usage of the main loop.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// `modelUsage`: usage and cost per model, cumulative for the CLI process.
    #[serde(rename = "modelUsage", default, deserialize_with = "null_default")]
    pub model_usage: BTreeMap<String, ModelUsage>,
    /// Usage and cost per model since the previous `result` (newer CLIs only).
    #[serde(default)]
    pub model_usage_since_last_result: Option<BTreeMap<String, ModelUsage>>,
    /// Tool uses that were denied during the turn.
    #[serde(default, deserialize_with = "null_default")]
    pub permission_denials: Vec<PermissionDenial>,
    /// The structured output, when a JSON schema was requested.
    #[serde(default)]
    pub structured_output: Option<Value>,
    /// Error descriptions (error subtypes).
    #[serde(default, deserialize_with = "null_default")]
    pub errors: Vec<String>,
    /// The HTTP status of a failed API call (`529`, `401`, …).
    #[serde(default, deserialize_with = "opt_count")]
    pub api_error_status: Option<u64>,
    /// Why the turn ended: `completed`, `aborted_streaming`, `aborted_tools`, `max_turns`, …
    #[serde(default)]
    pub terminal_reason: Option<String>,
    /// Fast mode state (`off`, `on`, …).
    #[serde(default)]
    pub fast_mode_state: Option<String>,
    /// Time to first token of the last API call, in milliseconds.
    #[serde(default, deserialize_with = "opt_count")]
    pub ttft_ms: Option<u64>,
    /// A tool use deferred to the host (`{id, name, input}`), when present.
    #[serde(default)]
    pub deferred_tool_use: Option<Value>,
    /// What started the turn (`{"kind":"human"|"task-notification"|…}`), when present.
    #[serde(default)]
    pub origin: Option<Value>,
}

/// Usage and cost of one model (an entry of `modelUsage`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ModelUsage {
    /// `inputTokens`.
    #[serde(rename = "inputTokens", default, deserialize_with = "count")]
    pub input_tokens: u64,
    /// `outputTokens`.
    #[serde(rename = "outputTokens", default, deserialize_with = "count")]
    pub output_tokens: u64,
    /// `cacheReadInputTokens`.
    #[serde(rename = "cacheReadInputTokens", default, deserialize_with = "count")]
    pub cache_read_input_tokens: u64,
    /// `cacheCreationInputTokens`.
    #[serde(
        rename = "cacheCreationInputTokens",
        default,
        deserialize_with = "count"
    )]
    pub cache_creation_input_tokens: u64,
    /// `webSearchRequests`.
    #[serde(rename = "webSearchRequests", default, deserialize_with = "count")]
    pub web_search_requests: u64,
    /// `costUSD`.
    #[serde(rename = "costUSD", default, deserialize_with = "null_default")]
    pub cost_usd: f64,
    /// `contextWindow`.
    #[serde(rename = "contextWindow", default, deserialize_with = "opt_count")]
    pub context_window: Option<u64>,
    /// `maxOutputTokens`.
    #[serde(rename = "maxOutputTokens", default, deserialize_with = "opt_count")]
    pub max_output_tokens: Option<u64>,
}

/// A denied tool use listed in a result's `permission_denials`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct PermissionDenial {
    /// The tool's name.
    #[serde(default)]
    pub tool_name: String,
    /// The tool use id.
    #[serde(default)]
    pub tool_use_id: String,
    /// The input the model gave.
    #[serde(default)]
    pub tool_input: Value,
}

/// The known result subtypes, for matching; see [`ResultMessage::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResultSubtype {
    /// `success` (which is also used for API failures, with `is_error:true`).
    Success,
    /// `error_during_execution` (e.g. an interrupted turn).
    ErrorDuringExecution,
    /// `error_max_turns`.
    ErrorMaxTurns,
    /// `error_max_budget_usd`.
    ErrorMaxBudgetUsd,
    /// `error_max_structured_output_retries`.
    ErrorMaxStructuredOutputRetries,
    /// A subtype this SDK does not know; the string is in [`ResultMessage::subtype`].
    Other,
}

impl ResultSubtype {
    /// Classify a subtype string.
    pub fn from_wire(subtype: &str) -> Self {
        match subtype {
            "success" => ResultSubtype::Success,
            "error_during_execution" => ResultSubtype::ErrorDuringExecution,
            "error_max_turns" => ResultSubtype::ErrorMaxTurns,
            "error_max_budget_usd" => ResultSubtype::ErrorMaxBudgetUsd,
            "error_max_structured_output_retries" => ResultSubtype::ErrorMaxStructuredOutputRetries,
            _ => ResultSubtype::Other,
        }
    }
}

impl ResultMessage {
    /// The subtype, classified.
    pub fn kind(&self) -> ResultSubtype {
        ResultSubtype::from_wire(&self.subtype)
    }

    /// True when the turn succeeded: subtype `success` and `is_error:false`.
    pub fn is_success(&self) -> bool {
        !self.is_error && self.subtype == "success"
    }

    /// The final text, when present.
    pub fn text(&self) -> Option<&str> {
        self.result.as_deref()
    }

    /// True when the turn ended because of an API failure (`api_error_status` is set, or the
    /// subtype is `success` with `is_error:true`).
    pub fn is_api_error(&self) -> bool {
        self.api_error_status.is_some() || (self.is_error && self.subtype == "success")
    }

    /// The sum of `costUSD` over `model_usage_since_last_result`, when the CLI sends it.
    pub fn cost_since_last_result(&self) -> Option<f64> {
        self.model_usage_since_last_result
            .as_ref()
            .map(|m| m.values().map(|u| u.cost_usd).sum())
    }
}
