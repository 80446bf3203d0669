//! The event bus: your code at the SDK's own lifecycle points and at every CLI hook event, run
//! in an order you choose.
//!
//! An [`EventBus`] holds handlers, each registered for one [`EventKind`] with a **priority**:
//! higher priorities run first, equal priorities run in registration order. A handler is a sync
//! closure (`Fn(&Event) -> Result<Outcome, BoxError>`, run inline: keep it quick) or an async one
//! (`Fn(Event) -> impl Future<Output = Result<Outcome, BoxError>>`, bounded by the bus's
//! [handler timeout](EventBus::with_timeout)). Registration returns a [`Subscription`] whose
//! [`remove`](Subscription::remove) takes the handler out; dropping it keeps the handler.
//!
//! Give the bus to a session with
//! [`OptionsBuilder::events`](crate::options::OptionsBuilder::events); one bus may serve many
//! sessions. A session without a bus pays nothing (one `Option` check per frame).
//!
//! # Events and what a handler may answer
//!
//! | kind | when | outcomes that act |
//! |---|---|---|
//! | `Connect` | before the transport connects | `Stop` |
//! | `Connected` | after the CLI answered `initialize` | `Stop` |
//! | `BeforeSend` | before each frame the SDK writes (user messages, control requests and responses) | `Rewrite(frame)`, `Refuse(reason)`, `Stop` |
//! | `MessageReceived` | each message, before your stream yields it | `Stop` |
//! | `TurnResult` | each `result`, after `MessageReceived` | `Stop` |
//! | `Error` | each error item of the stream, before your stream yields it | `Stop` |
//! | `Reconnect` | a network transport reconnected (seen with the next message) | `Stop` |
//! | `SessionMoved` | the CLI's session id changed (`system/init` with a new id) | `Stop` |
//! | `Disconnect` | the CLI's output ended (once per session) | `Stop` |
//! | `Plugin` | a plugin changed state, or its reload failed (see [`plugin`](crate::plugin)) | `Stop` |
//! | `Alert` | a collector's alert rule fired or resolved (feature `collector`) | `Stop` |
//! | `Hook(event)` | the CLI fires a hook event (`PreToolUse`, `Stop`, …) | `Answer(output)`, `AnswerAndStop(output)`, `Stop` |
//!
//! `Stop` ends the chain: handlers after it are not run for this event. An outcome that does not
//! apply to the event (a `Rewrite` on `Connected`) is logged and treated as `Continue`.
//!
//! `BeforeSend`: a `Rewrite` replaces the frame for the handlers after it and for the transport;
//! a `Refuse` stops the chain, nothing is sent, and the call that sent it returns
//! [`Error::Refused`](crate::Error::Refused) (refusing `initialize` makes the connect fail).
//!
//! # Isolation
//!
//! A handler that returns an error, panics, or (async) runs past the handler timeout is logged
//! (`tracing` warn, target `claude_conduit::events`), counted in [`EventBus::stats`], and
//! skipped: the chain goes on as if it had returned [`Outcome::Continue`], and the session goes
//! on. The caller (the session, the CLI) never sees the failure.
//!
//! # CLI hook events: how the answers combine
//!
//! Register handlers for [`EventKind::Hook`] **before connecting**: at connect the session
//! registers one match-all hook with the CLI per hook event that has handlers, and answers it
//! by running the chain. The answers ([`Outcome::Answer`]) of the handlers that ran combine into
//! one [`HookOutput`] ([`combine`]):
//!
//! 1. **Any deny wins.** `PreToolUse`: deny over defer over ask over allow, whatever their
//!    priorities; the reason is that of the first handler (in priority order) with the winning
//!    decision. `PermissionRequest`: a deny wins over allows. `decision: "block"` wins over
//!    `"approve"`; `continue: false` wins over `true`.
//! 2. **The first `updatedInput` in priority order applies** (later ones are ignored); the same
//!    for `updatedMCPToolOutput` / `updatedToolOutput`, `stopReason` and `reason`.
//! 3. **Additional contexts are joined in priority order**, one per line; so are
//!    `systemMessage`s.
//! 4. **A handler may stop the chain** with [`Outcome::AnswerAndStop`] (its answer counts) or
//!    [`Outcome::Stop`]: lower-priority handlers do not run, so only the answers so far combine.
//!
//! No answer at all gives the empty output (the CLI goes on as without the hook).
//!
//! ```
//! use claude_conduit::events::{Event, EventBus, EventKind, Outcome};
//! use claude_conduit::hooks::{HookEvent, HookInput, HookOutput};
//! use serde_json::json;
//!
//! let bus = EventBus::new();
//! // Priority 10 allows, priority 0 denies: the deny wins.
//! bus.on(EventKind::Hook(HookEvent::PreToolUse), 10, |_: &Event| {
//!     Ok(Outcome::Answer(HookOutput::allow_tool("fine by me")))
//! });
//! let audit = bus.on(EventKind::Hook(HookEvent::PreToolUse), 0, |e: &Event| {
//!     let Event::Hook { input, .. } = e else { return Ok(Outcome::Continue) };
//!     let rm = input.tool_input().and_then(|i| i["command"].as_str()).is_some_and(|c| c.contains("rm"));
//!     Ok(if rm { Outcome::Answer(HookOutput::deny_tool("no rm")) } else { Outcome::Continue })
//! });
//! let input = HookInput::from_wire(json!({
//!     "session_id": "s", "transcript_path": "/t", "cwd": "/", "hook_event_name": "PreToolUse",
//!     "tool_name": "Bash", "tool_input": {"command": "rm -rf x"}, "tool_use_id": "t1"
//! }));
//! let out = futures::executor::block_on(bus.run_hook(input.clone(), None));
//! assert_eq!(out.to_wire()["hookSpecificOutput"]["permissionDecision"], "deny");
//! assert!(audit.remove());
//! let out = futures::executor::block_on(bus.run_hook(input, None));
//! assert_eq!(out.to_wire()["hookSpecificOutput"]["permissionDecision"], "allow");
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::hooks::{
    HookCallback, HookDecision, HookEvent, HookInput, HookOutput, HookSpecificOutput,
    PermissionRequestDecision, PreToolUseDecision, PreToolUseOutput,
};
use crate::message::Message;
use crate::transport::{ConnectionInfo, Termination};

/// The error type handlers return (any error converts with `?` or `.into()`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a handler is registered for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// Before the transport connects.
    Connect,
    /// After the CLI answered `initialize`.
    Connected,
    /// Before each frame the SDK writes.
    BeforeSend,
    /// Each message the session yields.
    MessageReceived,
    /// Each `result` message.
    TurnResult,
    /// Each error item of the message stream.
    Error,
    /// A network transport reconnected.
    Reconnect,
    /// The CLI's session id changed.
    SessionMoved,
    /// The CLI's output ended.
    Disconnect,
    /// A CLI hook event (served through the CLI's hook callbacks).
    Hook(HookEvent),
    /// A plugin changed state (see [`plugin`](crate::plugin), feature `plugins`).
    Plugin,
    /// An alert rule of a [`MetricsCollector`](crate::telemetry::MetricsCollector) fired or
    /// resolved (feature `collector`; the collector must be
    /// [attached](crate::telemetry::MetricsCollector::attach_bus) to the bus).
    Alert,
}

impl EventKind {
    /// The bit of this kind in the bus's "has handlers" mask (all hook events share one).
    fn bit(&self) -> u32 {
        1 << match self {
            EventKind::Connect => 0,
            EventKind::Connected => 1,
            EventKind::BeforeSend => 2,
            EventKind::MessageReceived => 3,
            EventKind::TurnResult => 4,
            EventKind::Error => 5,
            EventKind::Reconnect => 6,
            EventKind::SessionMoved => 7,
            EventKind::Disconnect => 8,
            EventKind::Hook(_) => 9,
            EventKind::Plugin => 10,
            EventKind::Alert => 10,
        }
    }
}

/// One event, as handlers see it.
// Events are built only when a handler wants them, and moved once into the chain: the size of
// the hook variant costs nothing worth a box on every access.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Before the transport connects.
    Connect {
        /// The transport's type name.
        transport: &'static str,
    },
    /// The session is initialized.
    Connected {
        /// Facts about the connection.
        info: ConnectionInfo,
        /// The CLI's version, when its initialize reply named it.
        cli_version: Option<String>,
    },
    /// A frame about to be written (after the rewrites of higher-priority handlers).
    BeforeSend {
        /// The frame (one JSON object, no newline).
        frame: Bytes,
    },
    /// A message, before the session's stream yields it.
    MessageReceived(Message),
    /// A `result` message.
    TurnResult(Message),
    /// An error item of the stream (its text; the item itself goes to the stream's reader).
    Error {
        /// The error's message.
        message: String,
        /// A per-frame error: the stream goes on after it.
        frame_error: bool,
    },
    /// The transport reconnected.
    Reconnect {
        /// Reconnects of this session so far.
        reconnects: u64,
    },
    /// The CLI's session id changed.
    SessionMoved {
        /// The previous id (`None` for the first one seen).
        from: Option<String>,
        /// The new id.
        to: String,
    },
    /// The CLI's output ended.
    Disconnect {
        /// How the CLI ended, when known.
        termination: Option<Termination>,
    },
    /// A plugin changed state (`discovered`, `resolved`, `initializing`, `active`, `failed`,
    /// `unloading`, `unloaded`), or a reload of it failed while the old version kept serving
    /// (`state` stays `active`, `error` says why).
    Plugin {
        /// The plugin.
        name: String,
        /// Its version.
        version: String,
        /// The state it is in now.
        state: &'static str,
        /// What went wrong, for `failed` and failed reloads.
        error: Option<String>,
    },
    /// A CLI hook event.
    Hook {
        /// The hook's input (typed per event).
        input: HookInput,
        /// The request's `tool_use_id`.
        tool_use_id: Option<String>,
    },
    /// An alert fired or resolved (feature `collector`).
    #[cfg(feature = "collector")]
    Alert(crate::telemetry::AlertEvent),
}

impl Event {
    /// The kind this event is delivered to.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Connect { .. } => EventKind::Connect,
            Event::Connected { .. } => EventKind::Connected,
            Event::BeforeSend { .. } => EventKind::BeforeSend,
            Event::MessageReceived(_) => EventKind::MessageReceived,
            Event::TurnResult(_) => EventKind::TurnResult,
            Event::Error { .. } => EventKind::Error,
            Event::Reconnect { .. } => EventKind::Reconnect,
            Event::SessionMoved { .. } => EventKind::SessionMoved,
            Event::Disconnect { .. } => EventKind::Disconnect,
            Event::Hook { input, .. } => EventKind::Hook(input.event()),
            Event::Plugin { .. } => EventKind::Plugin,
            #[cfg(feature = "collector")]
            Event::Alert(_) => EventKind::Alert,
        }
    }
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Nothing to say; the next handler runs.
    Continue,
    /// End the chain here: handlers after this one do not run for this event.
    Stop,
    /// `BeforeSend`: send this frame instead.
    Rewrite(Bytes),
    /// `BeforeSend`: do not send the frame; the sender gets [`Error::Refused`](crate::Error::Refused).
    Refuse(String),
    /// Hook events: this handler's answer, combined with the others' ([`combine`]).
    Answer(HookOutput),
    /// Hook events: this answer, and end the chain.
    AnswerAndStop(HookOutput),
}

/// Failures of handlers so far, per bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Handlers that returned an error.
    pub errors: u64,
    /// Handlers that panicked.
    pub panics: u64,
    /// Async handlers that ran past the handler timeout.
    pub timeouts: u64,
    /// Outcomes that do not apply to their event (ignored).
    pub misplaced: u64,
}

type SyncFn = dyn Fn(&Event) -> Result<Outcome, BoxError> + Send + Sync;
type AsyncFn = dyn Fn(Event) -> BoxFuture<'static, Result<Outcome, BoxError>> + Send + Sync;

enum Handler {
    Sync(Box<SyncFn>),
    Async(Box<AsyncFn>),
}

struct Entry {
    id: u64,
    priority: i32,
    kind: EventKind,
    handler: Handler,
    /// Who registered it ([`EventBus::owned`]): the `owner` label of its metrics.
    owner: Option<Arc<str>>,
    /// Its metrics, registered at its first call (after the application installed a recorder).
    metrics: std::sync::OnceLock<crate::telemetry::HandlerCounters>,
}

impl Entry {
    fn metrics(&self) -> &crate::telemetry::HandlerCounters {
        self.metrics
            .get_or_init(|| crate::telemetry::HandlerCounters::new(self.owner.as_deref()))
    }
}

struct Inner {
    /// Sorted: priority descending, then registration order.
    handlers: RwLock<Vec<Arc<Entry>>>,
    /// Which kinds have handlers ([`EventKind::bit`]).
    mask: AtomicU32,
    next_id: AtomicU64,
    timeout: Duration,
    errors: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    misplaced: AtomicU64,
}

/// Handlers by event kind and priority; cheap to clone (shared).
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
    /// The owner stamped on the handlers registered through this handle ([`EventBus::owned`]).
    owner: Option<Arc<str>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let handlers = self.inner.handlers.read().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("EventBus")
            .field("handlers", &handlers)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

/// The handle [`EventBus::on`] returns: [`remove`](Self::remove) takes the handler out.
/// Dropping it keeps the handler registered.
#[derive(Debug, Clone)]
pub struct Subscription {
    id: u64,
    bus: Weak<Inner>,
}

impl Subscription {
    /// Remove the handler. Returns whether it was still registered. A chain already running
    /// finishes with the handlers it started with.
    pub fn remove(&self) -> bool {
        let Some(inner) = self.bus.upgrade() else {
            return false;
        };
        let mut handlers = match inner.handlers.write() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = handlers.len();
        handlers.retain(|e| e.id != self.id);
        let removed = handlers.len() != before;
        inner.mask.store(mask_of(&handlers), Ordering::Release);
        removed
    }
}

fn mask_of(handlers: &[Arc<Entry>]) -> u32 {
    handlers.iter().fold(0, |m, e| m | e.kind.bit())
}

/// What running a chain gave.
pub(crate) struct Chain {
    /// The event after rewrites (`BeforeSend`).
    pub event: Event,
    /// A `Refuse` reason.
    pub refused: Option<String>,
    /// Hook answers in priority order.
    pub answers: Vec<HookOutput>,
}

impl EventBus {
    /// An empty bus; async handlers get 30 s each.
    pub fn new() -> Self {
        Self::with_timeout(Duration::from_secs(30))
    }

    /// An empty bus whose async handlers are skipped after `timeout` each.
    pub fn with_timeout(timeout: Duration) -> Self {
        EventBus {
            owner: None,
            inner: Arc::new(Inner {
                handlers: RwLock::new(Vec::new()),
                mask: AtomicU32::new(0),
                next_id: AtomicU64::new(0),
                timeout,
                errors: AtomicU64::new(0),
                panics: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                misplaced: AtomicU64::new(0),
            }),
        }
    }

    /// A handle on the same bus whose registrations carry `owner` (a plugin's name, a
    /// component's): the `owner` label of the handlers' metrics
    /// (`conduit_event_handler_calls_total`, `conduit_event_handler_seconds`), bounded to the
    /// first [`MAX_TOOL_LABELS`](crate::telemetry::MAX_TOOL_LABELS) distinct owners of the
    /// process (later ones are `other`). Handlers registered without an owner are `none`.
    ///
    /// ```
    /// use claude_conduit::events::{EventBus, EventKind, Outcome};
    /// let bus = EventBus::new();
    /// let mine = bus.owned("audit-plugin");
    /// mine.on(EventKind::TurnResult, 0, |_| Ok(Outcome::Continue));
    /// assert!(bus.has(&EventKind::TurnResult)); // one bus
    /// ```
    pub fn owned(&self, owner: &str) -> EventBus {
        EventBus {
            inner: self.inner.clone(),
            owner: Some(Arc::from(owner)),
        }
    }

    /// Register a sync handler for `kind` at `priority` (higher runs first; equal priorities
    /// run in registration order). It runs inline: keep it quick.
    pub fn on<F>(&self, kind: EventKind, priority: i32, handler: F) -> Subscription
    where
        F: Fn(&Event) -> Result<Outcome, BoxError> + Send + Sync + 'static,
    {
        self.register(kind, priority, Handler::Sync(Box::new(handler)))
    }

    /// Register an async handler for `kind` at `priority`; it gets its own copy of the event
    /// and is skipped (counted as a timeout) after the bus's handler timeout.
    pub fn on_async<F, Fut>(&self, kind: EventKind, priority: i32, handler: F) -> Subscription
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, BoxError>> + Send + 'static,
    {
        self.register(
            kind,
            priority,
            Handler::Async(Box::new(move |e| handler(e).boxed())),
        )
    }

    fn register(&self, kind: EventKind, priority: i32, handler: Handler) -> Subscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            id,
            priority,
            kind,
            handler,
            owner: self.owner.clone(),
            metrics: std::sync::OnceLock::new(),
        });
        let mut handlers = match self.inner.handlers.write() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        // After every handler of the same or a higher priority: stable for ties.
        let at = handlers.partition_point(|e| e.priority >= priority);
        handlers.insert(at, entry);
        self.inner.mask.store(mask_of(&handlers), Ordering::Release);
        Subscription {
            id,
            bus: Arc::downgrade(&self.inner),
        }
    }

    /// Whether any handler is registered for `kind` (any hook event, for `Hook(_)`).
    pub fn has(&self, kind: &EventKind) -> bool {
        self.inner.mask.load(Ordering::Acquire) & kind.bit() != 0
    }

    /// Failures so far.
    pub fn stats(&self) -> BusStats {
        BusStats {
            errors: self.inner.errors.load(Ordering::Relaxed),
            panics: self.inner.panics.load(Ordering::Relaxed),
            timeouts: self.inner.timeouts.load(Ordering::Relaxed),
            misplaced: self.inner.misplaced.load(Ordering::Relaxed),
        }
    }

    /// The hook events that have handlers, in the order first registered.
    pub fn hook_events(&self) -> Vec<HookEvent> {
        let handlers = match self.inner.handlers.read() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut by_id: Vec<(u64, &HookEvent)> = handlers
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Hook(h) => Some((e.id, h)),
                _ => None,
            })
            .collect();
        by_id.sort_by_key(|(id, _)| *id);
        let mut out: Vec<HookEvent> = Vec::new();
        for (_, h) in by_id {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
        out
    }

    /// Deliver `event` to its handlers; the outcomes that change nothing are not reported.
    pub async fn emit(&self, event: Event) {
        if self.has(&event.kind()) {
            self.run(event).await;
        }
    }

    /// Run the chain of `input`'s hook event and combine the answers ([`combine`]).
    pub async fn run_hook(&self, input: HookInput, tool_use_id: Option<String>) -> HookOutput {
        let event = input.event();
        let chain = self.run(Event::Hook { input, tool_use_id }).await;
        combine(&event, chain.answers)
    }

    /// Run `event`'s chain.
    pub(crate) async fn run(&self, mut event: Event) -> Chain {
        let kind = event.kind();
        let entries: Vec<Arc<Entry>> = match self.inner.handlers.read() {
            Ok(h) => h.iter().filter(|e| e.kind == kind).cloned().collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter()
                .filter(|e| e.kind == kind)
                .cloned()
                .collect(),
        };
        let mut chain = Chain {
            event: Event::Disconnect { termination: None },
            refused: None,
            answers: Vec::new(),
        };
        for entry in entries {
            let Some(outcome) = self.call(&entry, &event).await else {
                continue;
            };
            match (outcome, &mut event) {
                (Outcome::Continue, _) => {}
                (Outcome::Stop, _) => break,
                (Outcome::Rewrite(frame), Event::BeforeSend { frame: current }) => {
                    *current = frame;
                }
                (Outcome::Refuse(reason), Event::BeforeSend { .. }) => {
                    chain.refused = Some(reason);
                    break;
                }
                (Outcome::Answer(out), Event::Hook { .. }) => chain.answers.push(out),
                (Outcome::AnswerAndStop(out), Event::Hook { .. }) => {
                    chain.answers.push(out);
                    break;
                }
                (other, _) => {
                    self.inner.misplaced.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target: "claude_conduit::events",
                        handler = entry.id,
                        event = ?kind,
                        outcome = ?other,
                        "event handler outcome does not apply to this event; ignored"
                    );
                }
            }
        }
        chain.event = event;
        chain
    }

    /// Run one handler, isolated: `None` when it failed (logged and counted). Each call is
    /// counted by outcome in the handler's metrics, and timed, except sync handlers of the
    /// per-frame events (`BeforeSend`, `MessageReceived`), which are only counted.
    async fn call(&self, entry: &Entry, event: &Event) -> Option<Outcome> {
        use crate::telemetry::HandlerOutcome;
        let per_frame = matches!(entry.handler, Handler::Sync(_))
            && matches!(
                entry.kind,
                EventKind::BeforeSend | EventKind::MessageReceived
            );
        let started = (!per_frame).then(std::time::Instant::now);
        let (out, outcome) = match self.call_inner(entry, event).await {
            Ok(o) => (Some(o), HandlerOutcome::Ok),
            Err(why) => (None, why),
        };
        entry.metrics().call(outcome, started.map(|s| s.elapsed()));
        out
    }

    async fn call_inner(
        &self,
        entry: &Entry,
        event: &Event,
    ) -> Result<Outcome, crate::telemetry::HandlerOutcome> {
        use crate::telemetry::HandlerOutcome;
        let result = match &entry.handler {
            Handler::Sync(f) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(event)))
                .map_err(|p| panic_text(&*p)),
            Handler::Async(f) => {
                let fut =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(event.clone())));
                match fut {
                    Err(p) => Err(panic_text(&*p)),
                    Ok(fut) => {
                        let guarded = std::panic::AssertUnwindSafe(fut).catch_unwind();
                        match tokio::time::timeout(self.inner.timeout, guarded).await {
                            Ok(r) => r.map_err(|p| panic_text(&*p)),
                            Err(_) => {
                                self.inner.timeouts.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(
                                    target: "claude_conduit::events",
                                    handler = entry.id,
                                    event = ?entry.kind,
                                    after = ?self.inner.timeout,
                                    "event handler timed out; skipped"
                                );
                                return Err(HandlerOutcome::Timeout);
                            }
                        }
                    }
                }
            }
        };
        match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(error)) => {
                self.inner.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "claude_conduit::events",
                    handler = entry.id,
                    event = ?entry.kind,
                    %error,
                    "event handler failed; skipped"
                );
                Err(HandlerOutcome::Error)
            }
            Err(panic) => {
                self.inner.panics.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "claude_conduit::events",
                    handler = entry.id,
                    event = ?entry.kind,
                    %panic,
                    "event handler panicked; skipped"
                );
                Err(HandlerOutcome::Panic)
            }
        }
    }

    /// The hooks a session registers with the CLI for this bus: one match-all matcher per hook
    /// event with handlers, answered by the chain.
    pub(crate) fn add_cli_hooks(&self, hooks: &mut crate::hooks::Hooks) {
        for event in self.hook_events() {
            hooks.add(
                event,
                crate::hooks::HookMatcher::all().hook(BusHook(self.clone())),
            );
        }
    }
}

/// Serves a CLI hook event with the bus's chain.
struct BusHook(EventBus);

impl HookCallback for BusHook {
    fn call(
        &self,
        input: HookInput,
        tool_use_id: Option<String>,
    ) -> BoxFuture<'static, Result<HookOutput, String>> {
        let bus = self.0.clone();
        Box::pin(async move { Ok(bus.run_hook(input, tool_use_id).await) })
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Combine hook answers (in priority order) into one output, by the rule in the
/// [module docs](self#cli-hook-events-how-the-answers-combine).
///
/// ```
/// use claude_conduit::events::combine;
/// use claude_conduit::hooks::{HookEvent, HookOutput};
/// use serde_json::json;
///
/// let out = combine(&HookEvent::PreToolUse, vec![
///     HookOutput::allow_tool("a").with_updated_input(json!({"command": "ls -1"})),
///     HookOutput::additional_context(HookEvent::PreToolUse, "first"),
///     HookOutput::deny_tool("b").with_updated_input(json!({"command": "ls -2"})),
///     HookOutput::additional_context(HookEvent::PreToolUse, "second"),
/// ]);
/// let wire = out.to_wire();
/// assert_eq!(wire["hookSpecificOutput"]["permissionDecision"], "deny");
/// assert_eq!(wire["hookSpecificOutput"]["permissionDecisionReason"], "b");
/// assert_eq!(wire["hookSpecificOutput"]["updatedInput"], json!({"command": "ls -1"}));
/// assert_eq!(wire["hookSpecificOutput"]["additionalContext"], "first\nsecond");
/// ```
pub fn combine(event: &HookEvent, answers: Vec<HookOutput>) -> HookOutput {
    let mut out = HookOutput::default();
    let mut contexts: Vec<String> = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    let mut decision: Option<(PreToolUseDecision, Option<String>)> = None;
    let mut updated_input: Option<Value> = None;
    let mut request: Option<PermissionRequestDecision> = None;
    let mut specific_extra = serde_json::Map::new();
    let mut post_updates: Vec<(String, Value)> = Vec::new();

    fn rank(d: PreToolUseDecision) -> u8 {
        match d {
            PreToolUseDecision::Deny => 3,
            PreToolUseDecision::Defer => 2,
            PreToolUseDecision::Ask => 1,
            PreToolUseDecision::Allow => 0,
        }
    }

    for answer in answers {
        if answer.continue_ == Some(false) {
            if out.continue_ != Some(false) {
                out.stop_reason = answer.stop_reason.clone();
            }
            out.continue_ = Some(false);
        } else if out.continue_.is_none() {
            out.continue_ = answer.continue_;
        }
        match (answer.decision, out.decision) {
            (Some(HookDecision::Block), Some(HookDecision::Block)) => {}
            (Some(HookDecision::Block), _) => {
                out.decision = Some(HookDecision::Block);
                out.reason = answer.reason.clone();
            }
            (Some(d), None) => {
                out.decision = Some(d);
                out.reason = answer.reason.clone();
            }
            _ => {}
        }
        if answer.suppress_output == Some(true) {
            out.suppress_output = Some(true);
        }
        messages.extend(answer.system_message.clone());
        for (k, v) in &answer.extra {
            out.extra.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let Some(specific) = answer.hook_specific else {
            continue;
        };
        if let Some(ctx) = specific
            .to_wire()
            .get("additionalContext")
            .and_then(Value::as_str)
        {
            contexts.push(ctx.to_owned());
        }
        match specific {
            HookSpecificOutput::PreToolUse(pre) => {
                if let Some(d) = pre.permission_decision
                    && decision
                        .as_ref()
                        .is_none_or(|(won, _)| rank(d) > rank(*won))
                {
                    decision = Some((d, pre.permission_decision_reason.clone()));
                }
                if updated_input.is_none() {
                    updated_input = pre.updated_input;
                }
                for (k, v) in pre.extra {
                    specific_extra.entry(k).or_insert(v);
                }
            }
            HookSpecificOutput::PermissionRequest(req) => {
                let deny = matches!(req.decision, PermissionRequestDecision::Deny { .. });
                let have_deny = matches!(request, Some(PermissionRequestDecision::Deny { .. }));
                if let PermissionRequestDecision::Allow {
                    updated_input: Some(input),
                    ..
                } = &req.decision
                    && updated_input.is_none()
                {
                    updated_input = Some(input.clone());
                }
                if request.is_none() || (deny && !have_deny) {
                    request = Some(req.decision);
                }
            }
            HookSpecificOutput::PostToolUse(post) => {
                for (key, value) in [
                    ("updatedMCPToolOutput", post.updated_mcp_tool_output),
                    ("updatedToolOutput", post.updated_tool_output),
                ] {
                    if let Some(v) = value
                        && !post_updates.iter().any(|(k, _)| k == key)
                    {
                        post_updates.push((key.to_owned(), v));
                    }
                }
            }
            _ => {}
        }
    }
    if !messages.is_empty() {
        out.system_message = Some(messages.join("\n"));
    }
    let context = (!contexts.is_empty()).then(|| contexts.join("\n"));
    out.hook_specific = match event {
        HookEvent::PreToolUse => {
            let pre = PreToolUseOutput {
                permission_decision: decision.as_ref().map(|(d, _)| *d),
                permission_decision_reason: decision.and_then(|(_, r)| r),
                updated_input,
                additional_context: context,
                extra: specific_extra,
            };
            (pre != PreToolUseOutput::default()).then_some(HookSpecificOutput::PreToolUse(pre))
        }
        HookEvent::PermissionRequest => request.map(|mut decision| {
            if let PermissionRequestDecision::Allow {
                updated_input: slot,
                ..
            } = &mut decision
            {
                *slot = updated_input;
            }
            HookSpecificOutput::PermissionRequest(crate::hooks::PermissionRequestOutput {
                decision,
                extra: serde_json::Map::new(),
            })
        }),
        other => {
            let mut specific = context
                .map(|c| HookSpecificOutput::additional_context(other.clone(), c).to_wire())
                .unwrap_or_else(|| serde_json::json!({"hookEventName": other.as_str()}));
            if let Some(object) = specific.as_object_mut() {
                for (k, v) in post_updates.drain(..) {
                    object.insert(k, v);
                }
            }
            let empty = specific.as_object().is_some_and(|o| o.len() <= 1);
            (!empty).then(|| HookSpecificOutput::from_wire(&specific))
        }
    };
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
