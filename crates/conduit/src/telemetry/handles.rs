//! Metric handles registered once (per connection, per session) and then updated with one
//! atomic add per batch. Without an installed recorder every handle is a no-op.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

use super::names;

/// The counters of one transport connection, labelled with its `wire` (`subprocess`,
/// `memory`, `ws`, `http`, `grpc`, …).
#[derive(Clone)]
pub struct TransportCounters {
    frames_in: Counter,
    bytes_in: Counter,
    frames_out: Counter,
    bytes_out: Counter,
    errors: Counter,
    reconnects: Counter,
    connect: Histogram,
}

impl std::fmt::Debug for TransportCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportCounters").finish_non_exhaustive()
    }
}

impl TransportCounters {
    /// Register the handles for `wire` with the installed recorder (no-ops without one).
    pub fn new(wire: &'static str) -> Self {
        Self {
            frames_in: counter!(names::TRANSPORT_FRAMES, "wire" => wire, "direction" => "in"),
            bytes_in: counter!(names::TRANSPORT_BYTES, "wire" => wire, "direction" => "in"),
            frames_out: counter!(names::TRANSPORT_FRAMES, "wire" => wire, "direction" => "out"),
            bytes_out: counter!(names::TRANSPORT_BYTES, "wire" => wire, "direction" => "out"),
            errors: counter!(names::TRANSPORT_ERRORS, "wire" => wire),
            reconnects: counter!(names::TRANSPORT_RECONNECTS, "wire" => wire),
            connect: histogram!(names::TRANSPORT_CONNECT, "wire" => wire),
        }
    }
    /// Count one batch received: `frames` frames of `bytes` bytes in all.
    #[inline]
    pub fn received(&self, frames: u64, bytes: u64) {
        self.frames_in.increment(frames);
        self.bytes_in.increment(bytes);
    }
    /// Count one batch sent.
    #[inline]
    pub fn sent(&self, frames: u64, bytes: u64) {
        self.frames_out.increment(frames);
        self.bytes_out.increment(bytes);
    }
    /// Count one error.
    pub fn error(&self) {
        self.errors.increment(1);
    }
    /// Count one reconnect.
    pub fn reconnect(&self) {
        self.reconnects.increment(1);
    }
    /// Record the connect time.
    pub fn connected(&self, took: Duration) {
        self.connect.record(took.as_secs_f64());
    }
}

/// How many distinct tool names keep their own `tool` label; later ones are `other`.
pub const MAX_TOOL_LABELS: usize = 64;

/// The `tool` label for `name`: the name itself for the first [`MAX_TOOL_LABELS`] distinct
/// names this process sees (and only names of at most 64 ASCII letters, digits, `_`, `-`, `.`
/// or `:`), `other` for every later or odd one. A process can therefore never hold more than
/// `MAX_TOOL_LABELS + 1` series per tool metric, whatever the CLI or a client sends.
pub fn tool_label(name: &str) -> String {
    static TOOLS: LabelSet = LabelSet::new();
    TOOLS.label(name)
}

/// The `owner` label of event bus handlers for `name` (the name a handler was registered
/// under, see [`EventBus::owned`](crate::events::EventBus::owned)): bounded as
/// [`tool_label`] is, with its own [`MAX_TOOL_LABELS`] names.
pub fn owner_label(name: &str) -> String {
    static OWNERS: LabelSet = LabelSet::new();
    OWNERS.label(name)
}

/// The first [`MAX_TOOL_LABELS`] distinct plain names seen, for one label.
struct LabelSet(OnceLock<Mutex<HashSet<String>>>);

impl LabelSet {
    const fn new() -> Self {
        Self(OnceLock::new())
    }

    fn label(&self, name: &str) -> String {
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !plain {
            return "other".to_owned();
        }
        let seen = self.0.get_or_init(|| Mutex::new(HashSet::new()));
        let Ok(mut seen) = seen.lock() else {
            return "other".to_owned();
        };
        if seen.contains(name) {
            return name.to_owned();
        }
        if seen.len() < MAX_TOOL_LABELS {
            seen.insert(name.to_owned());
            return name.to_owned();
        }
        "other".to_owned()
    }
}

/// The metrics of one event bus handler, labelled with its owner (`none` without one).
#[derive(Clone)]
pub(crate) struct HandlerCounters {
    ok: Counter,
    error: Counter,
    panic: Counter,
    timeout: Counter,
    latency: Histogram,
}

/// How an event bus handler call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandlerOutcome {
    Ok,
    Error,
    Panic,
    Timeout,
}

impl HandlerCounters {
    pub(crate) fn new(owner: Option<&str>) -> Self {
        let owner = owner.map_or_else(|| "none".to_owned(), owner_label);
        let calls = |outcome: &'static str| counter!(names::HANDLER_CALLS, "owner" => owner.clone(), "outcome" => outcome);
        Self {
            ok: calls("ok"),
            error: calls("error"),
            panic: calls("panic"),
            timeout: calls("timeout"),
            latency: histogram!(names::HANDLER_LATENCY, "owner" => owner.clone()),
        }
    }

    /// Count one call, and its latency when it was timed.
    pub(crate) fn call(&self, outcome: HandlerOutcome, took: Option<Duration>) {
        match outcome {
            HandlerOutcome::Ok => &self.ok,
            HandlerOutcome::Error => &self.error,
            HandlerOutcome::Panic => &self.panic,
            HandlerOutcome::Timeout => &self.timeout,
        }
        .increment(1);
        if let Some(t) = took {
            self.latency.record(t.as_secs_f64());
        }
    }
}

/// The handles of the per-session metrics (no session id among the labels).
#[derive(Clone)]
pub struct SessionCounters {
    turns: Counter,
    first_message: Histogram,
    turn: Histogram,
    cost: Histogram,
    tokens: [Counter; 4],
}

impl std::fmt::Debug for SessionCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCounters").finish_non_exhaustive()
    }
}

impl SessionCounters {
    /// Register the handles (no-ops without a recorder) and count one session.
    pub fn new() -> Self {
        counter!(names::SESSIONS).increment(1);
        Self {
            turns: counter!(names::TURNS),
            first_message: histogram!(names::FIRST_MESSAGE),
            turn: histogram!(names::TURN_LATENCY),
            cost: histogram!(names::TURN_COST),
            tokens: [
                counter!(names::TOKENS, "kind" => "input"),
                counter!(names::TOKENS, "kind" => "output"),
                counter!(names::TOKENS, "kind" => "cache_read"),
                counter!(names::TOKENS, "kind" => "cache_creation"),
            ],
        }
    }
    /// The first message of a turn arrived `after` its user message.
    pub fn first_message(&self, after: Duration) {
        self.first_message.record(after.as_secs_f64());
    }
    /// A turn ended: its latency (when a user message started it), cost and usage (the
    /// result frame's `usage` object).
    pub fn turn(
        &self,
        latency: Option<Duration>,
        cost_usd: Option<f64>,
        usage: Option<&crate::message::Usage>,
    ) {
        self.turns.increment(1);
        if let Some(l) = latency {
            self.turn.record(l.as_secs_f64());
        }
        if let Some(c) = cost_usd {
            self.cost.record(c);
        }
        if let Some(u) = usage {
            let counts = [
                u.input_tokens,
                u.output_tokens,
                u.cache_read_input_tokens,
                u.cache_creation_input_tokens,
            ];
            for (counter, n) in self.tokens.iter().zip(counts) {
                counter.increment(n);
            }
        }
    }
}

impl Default for SessionCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Count one tool call of `tool` (label bounded by [`tool_label`]).
pub fn tool_call(tool: &str) {
    counter!(names::TOOL_CALLS, "tool" => tool_label(tool)).increment(1);
}

/// Count one permission decision (`allow`, `deny` or `error`) and its callback latency.
pub fn permission_decision(outcome: &'static str, took: Duration) {
    counter!(names::PERMISSION_DECISIONS, "outcome" => outcome).increment(1);
    callback(CallbackKind::Permission, took);
}

/// The callback families timed by [`callback`].
#[derive(Debug, Clone, Copy)]
pub enum CallbackKind {
    /// `can_use_tool`.
    Permission,
    /// `hook_callback`.
    Hook,
    /// `mcp_message` to an SDK MCP server.
    McpTool,
}

/// Record one callback's latency.
pub fn callback(kind: CallbackKind, took: Duration) {
    let label = match kind {
        CallbackKind::Permission => "permission",
        CallbackKind::Hook => "hook",
        CallbackKind::McpTool => "mcp_tool",
    };
    histogram!(names::CALLBACK_LATENCY, "kind" => label).record(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_set_keeps_the_first_plain_names_and_calls_the_rest_other() {
        let set = LabelSet::new();
        assert_eq!(set.label("bad owner\n"), "other");
        assert_eq!(set.label(""), "other");
        let labels: Vec<String> = (0..MAX_TOOL_LABELS + 10)
            .map(|i| set.label(&format!("owner-{i}")))
            .collect();
        assert_eq!(labels[0], "owner-0");
        assert_eq!(
            labels[MAX_TOOL_LABELS - 1],
            format!("owner-{}", MAX_TOOL_LABELS - 1)
        );
        assert!(labels[MAX_TOOL_LABELS..].iter().all(|l| l == "other"));
        // A name seen before keeps its label.
        assert_eq!(set.label("owner-3"), "owner-3");
    }
}
