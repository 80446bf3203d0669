//! The session's `tracing` spans: `conduit.session` (as long as the session), a `conduit.turn`
//! per user message (until its `result`), a `conduit.control` per request the SDK sends and a
//! span per callback the SDK answers (`conduit.permission`, `conduit.hook`, `conduit.mcp_tool`,
//! `conduit.mcp_message`, `conduit.callback`), each a child of the turn in flight, else of the
//! session. Names and fields are listed in `docs/OBSERVABILITY.md`.
//!
//! Fields are ids, names, outcomes and sizes; never a prompt, a tool's input, a token or a key.
//! When no subscriber is interested in the session span (no `tracing` subscriber, or one that
//! filters `info` out) every method here is a branch on a `bool`: no lock, no allocation, and
//! the span macros evaluate no field (`tracing`'s callsite cache decides first).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::Value;
use tracing::Span;
use tracing::field::Empty;

use crate::message::ControlRequest;

/// A new `conduit.session` span, child of the current span. Its `session_id` and `cli_version`
/// are recorded once known.
pub(crate) fn session_span() -> Span {
    tracing::info_span!(
        "conduit.session",
        wire = Empty,
        session_id = Empty,
        cli_version = Empty,
    )
}

/// The spans of one engine.
pub(crate) struct Spans {
    session: Span,
    /// False when nobody listens to the session span: then nothing below is touched.
    on: bool,
    /// Turns sent whose `result` the reader has not seen yet, oldest first.
    open: Mutex<VecDeque<Span>>,
    /// Turns whose `result` the reader saw and the consumer has not typed yet.
    ending: Mutex<VecDeque<Span>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Spans {
    pub(crate) fn new(session: Span) -> Self {
        Self {
            on: !session.is_disabled(),
            session,
            open: Mutex::new(VecDeque::new()),
            ending: Mutex::new(VecDeque::new()),
        }
    }

    /// The parent of what happens now: the oldest turn in flight, else the session.
    pub(crate) fn current(&self) -> Span {
        if !self.on {
            return Span::none();
        }
        lock(&self.open)
            .front()
            .cloned()
            .unwrap_or_else(|| self.session.clone())
    }

    /// User message number `turn` is being sent.
    pub(crate) fn turn_sent(&self, turn: u64) {
        if !self.on {
            return;
        }
        let span = tracing::info_span!(
            parent: &self.session,
            "conduit.turn",
            turn,
            num_turns = Empty,
            cost_usd = Empty,
            is_error = Empty,
            subtype = Empty,
        );
        lock(&self.open).push_back(span);
    }

    /// The user message of the newest turn could not be sent: that turn never started.
    pub(crate) fn turn_not_sent(&self) {
        if self.on {
            lock(&self.open).pop_back();
        }
    }

    /// The reader saw a `result`: the oldest turn in flight is over (its fields come from the
    /// consumer, which types the frame).
    pub(crate) fn result_seen(&self) {
        if !self.on {
            return;
        }
        if let Some(span) = lock(&self.open).pop_front() {
            lock(&self.ending).push_back(span);
        }
    }

    /// The consumer typed that `result`: record its figures and close the turn.
    pub(crate) fn result_typed(&self, r: &crate::message::ResultMessage) {
        if !self.on {
            return;
        }
        let Some(span) = lock(&self.ending).pop_front() else {
            return;
        };
        span.record("num_turns", r.num_turns);
        span.record("is_error", r.is_error);
        span.record("subtype", r.subtype.as_str());
        if let Some(c) = r.turn_cost_usd {
            span.record("cost_usd", c);
        }
    }

    /// The connection ended (`ended`) or went idle (`idle`) with turns in flight: they end
    /// without a result, as errors.
    pub(crate) fn abandon(&self, why: &'static str) {
        if !self.on {
            return;
        }
        for span in lock(&self.open).drain(..) {
            span.record("is_error", true);
            span.record("subtype", why);
        }
    }

    /// The `system/init` facts.
    pub(crate) fn init(&self, session_id: Option<&str>, cli_version: Option<&str>) {
        if !self.on {
            return;
        }
        if let Some(id) = session_id {
            self.session.record("session_id", id);
        }
        if let Some(v) = cli_version {
            self.session.record("cli_version", v);
        }
    }

    /// The span of a control request the SDK sends.
    pub(crate) fn control(&self, subtype: &str, request_id: &str) -> Span {
        if !self.on {
            return Span::none();
        }
        tracing::info_span!(
            parent: &self.current(),
            "conduit.control",
            subtype,
            request_id,
            outcome = Empty,
        )
    }

    /// The span of a callback the SDK answers (a control request of the CLI).
    pub(crate) fn callback(&self, req: &ControlRequest) -> Span {
        if !self.on {
            return Span::none();
        }
        let parent = self.current();
        let id = req.request_id.as_str();
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        match req.subtype.as_str() {
            "can_use_tool" => tracing::info_span!(
                parent: &parent,
                "conduit.permission",
                request_id = id,
                tool = text(req.body.get("tool_name")),
                decision = Empty,
                outcome = Empty,
            ),
            "hook_callback" => tracing::info_span!(
                parent: &parent,
                "conduit.hook",
                request_id = id,
                callback_id = text(req.body.get("callback_id")),
                event = text(req.body.get("input").and_then(|i| i.get("hook_event_name"))),
                outcome = Empty,
            ),
            "mcp_message" => {
                let server = text(req.body.get("server_name"));
                let message = req.body.get("message");
                let method = text(message.and_then(|m| m.get("method")));
                if method == "tools/call" {
                    tracing::info_span!(
                        parent: &parent,
                        "conduit.mcp_tool",
                        request_id = id,
                        server,
                        tool = text(message.and_then(|m| m.pointer("/params/name"))),
                        is_error = Empty,
                        outcome = Empty,
                    )
                } else {
                    tracing::info_span!(
                        parent: &parent,
                        "conduit.mcp_message",
                        request_id = id,
                        server,
                        method,
                        outcome = Empty,
                    )
                }
            }
            subtype => tracing::info_span!(
                parent: &parent,
                "conduit.callback",
                subtype,
                request_id = id,
                outcome = Empty,
            ),
        }
    }
}

/// Record how a callback ended on its span: `outcome` (`ok` | `error` | `panic`), and for a
/// permission its `decision` (`allow` | `deny` | `error`), for an MCP tool call its `is_error`.
pub(crate) fn callback_answered(
    span: &Span,
    subtype: &str,
    answer: Result<&Result<Option<Value>, String>, ()>,
) {
    if span.is_disabled() {
        return;
    }
    let outcome = match answer {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(()) => "panic",
    };
    span.record("outcome", outcome);
    match (subtype, answer) {
        ("can_use_tool", Ok(r)) => {
            let decision = match r {
                Ok(Some(v)) if v["behavior"] == "allow" => "allow",
                Ok(_) => "deny",
                Err(_) => "error",
            };
            span.record("decision", decision);
        }
        ("can_use_tool", Err(())) => {
            span.record("decision", "error");
        }
        ("mcp_message", Ok(Ok(Some(v)))) => {
            let resp = &v["mcp_response"];
            let is_error = resp.get("error").is_some() || resp["result"]["isError"] == true;
            span.record("is_error", is_error);
        }
        ("mcp_message", _) => {
            span.record("is_error", true);
        }
        _ => {}
    }
}
