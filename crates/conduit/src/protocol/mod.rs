//! The control engine: one reader task per connection, the pending-request map, inbound
//! dispatch.
//!
//! The engine follows a handle/driver split. `Engine` (the handle, cheap to share) sends frames
//! and control requests; the **reader task** (the driver) owns the receive half and is the only
//! code that reads frames. Invariants:
//!
//! * the reader never awaits a callback: inbound `control_request`s run on their own tasks under
//!   a concurrency limit, answer through the shared writer, and can be cancelled by the CLI's
//!   `control_cancel_request` (then no answer is sent);
//! * every pending outbound request fails at once when the reader ends (no 60 s wait);
//! * the reader frames and routes; it does not parse messages. It recognises a frame's `type`
//!   (a prefix check on the CLI's compact JSON, a small parse otherwise), handles control frames
//!   itself and counts `result`s, and hands every other frame as raw bytes, in batches of what one
//!   read produced, to the consumer, which parses them (`MessageRx`). So allocation and free of
//!   a message's fields happen on one thread, and there is one hand-off per read, not per frame;
//! * batches go to a bounded channel; when it is full the reader stops reading (backpressure)
//!   — except while one of our control requests awaits its reply, when the reader reads ahead and
//!   parks batches, so a reply is never stuck behind undrained messages;
//! * inbound requests that arrive before the `initialize` reply are served (the CLI asks for SDK
//!   MCP handshakes before it answers `initialize`).

mod dispatch;
pub(crate) mod ext;
pub(crate) mod spans;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;

#[cfg(test)]
use dispatch::DefaultHandler;
pub(crate) use dispatch::InboundHandler;
pub(crate) use dispatch::Router;

use crate::error::{Error, Result};
use crate::message::{
    ControlOutcome, ControlRequest, CostTracker, Message, MessageKind, SystemMessage, outbound,
};
use crate::transport::{FrameReceiver, FrameSender, Received, Termination};

/// Settings of one engine.
#[derive(Clone)]
pub(crate) struct EngineConfig {
    pub message_buffer: usize,
    pub max_concurrent_callbacks: usize,
    pub idle_timeout: Option<Duration>,
    pub handler: Arc<dyn InboundHandler>,
    /// Extension points (event bus, frame filters and sinks, custom types); `None`: none.
    pub ext: Option<Arc<ext::Ext>>,
    /// The connection's counters, published to the process-wide metrics once per read batch.
    pub metrics: Option<Arc<crate::transport::TransportMetrics>>,
    /// The session's `conduit.session` span (`Span::none()`: no spans).
    pub span: tracing::Span,
}

/// A sender with its futures boxed, so the engine's handle does not carry the transport's type.
pub(crate) trait DynSender: Send {
    fn send(&mut self, frame: Bytes) -> BoxFuture<'_, Result<()>>;
    fn end_input(&mut self) -> BoxFuture<'_, Result<()>>;
    fn close(self: Box<Self>, grace: Duration) -> BoxFuture<'static, Result<()>>;
}

impl<S: FrameSender> DynSender for S {
    fn send(&mut self, frame: Bytes) -> BoxFuture<'_, Result<()>> {
        Box::pin(FrameSender::send(self, frame))
    }
    fn end_input(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(FrameSender::end_input(self))
    }
    fn close(self: Box<Self>, grace: Duration) -> BoxFuture<'static, Result<()>> {
        Box::pin(FrameSender::close(*self, grace))
    }
}

type Reply = oneshot::Sender<Result<Option<Value>>>;

/// State shared by the handle, the reader task and callback tasks.
pub(crate) struct Shared {
    writer: tokio::sync::Mutex<Option<Box<dyn DynSender>>>,
    input_ended: AtomicBool,
    pending: Mutex<HashMap<String, (String, Reply)>>,
    /// `pending.len()`, readable without the lock (the reader checks it per frame).
    pending_len: std::sync::atomic::AtomicUsize,
    /// Woken when a control request is registered, so a reader parked on a full channel reads on.
    control_sent: Notify,
    next_id: AtomicU64,
    id_salt: u64,
    inbound: Mutex<HashMap<String, AbortHandle>>,
    /// Set once the reader has ended: why.
    ended: OnceLock<Termination>,
    turns_sent: AtomicU64,
    results_seen: AtomicU64,
    /// The session's metrics (no-ops without a recorder).
    stats: crate::telemetry::SessionCounters,
    /// When the engine started: the origin of `turn_sent_nanos`.
    started: std::time::Instant,
    /// When the last user message was written (nanoseconds after `started`).
    turn_sent_nanos: AtomicU64,
    /// A user message was written and no message has come back since.
    awaiting_first: AtomicBool,
    /// Background agent tasks in flight (task_started .. terminal task_notification).
    background_tasks: Mutex<HashSet<String>>,
    cli_version: OnceLock<String>,
    session_id: OnceLock<String>,
    ext: Option<Arc<ext::Ext>>,
    /// The session's `tracing` spans.
    spans: spans::Spans,
}

/// The engine's handle.
#[derive(Clone)]
pub(crate) struct Engine {
    pub(crate) shared: Arc<Shared>,
}

impl Engine {
    /// Start an engine on a connection: spawns the reader task. Returns the handle and the
    /// receiving end of the message channel.
    pub(crate) fn start<S: FrameSender, R: FrameReceiver>(
        sender: S,
        receiver: R,
        config: EngineConfig,
    ) -> (Engine, MessageRx) {
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(Some(Box::new(sender))),
            input_ended: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            pending_len: std::sync::atomic::AtomicUsize::new(0),
            control_sent: Notify::new(),
            next_id: AtomicU64::new(1),
            id_salt: salt,
            inbound: Mutex::new(HashMap::new()),
            ended: OnceLock::new(),
            turns_sent: AtomicU64::new(0),
            results_seen: AtomicU64::new(0),
            stats: crate::telemetry::SessionCounters::new(),
            started: std::time::Instant::now(),
            turn_sent_nanos: AtomicU64::new(0),
            awaiting_first: AtomicBool::new(false),
            background_tasks: Mutex::new(HashSet::new()),
            cli_version: OnceLock::new(),
            session_id: OnceLock::new(),
            ext: config.ext.clone(),
            spans: spans::Spans::new(config.span.clone()),
        });
        let (tx, rx) = mpsc::channel((config.message_buffer / BATCH_MAX).max(2));
        let reader = Reader {
            shared: shared.clone(),
            receiver,
            tx,
            overflow: VecDeque::new(),
            overflow_frames: 0,
            overflow_cap: config.message_buffer.max(1),
            semaphore: Arc::new(Semaphore::new(config.max_concurrent_callbacks.max(1))),
            handler: config.handler,
            idle_timeout: config.idle_timeout,
            metrics: config.metrics.clone(),
        };
        tokio::spawn(reader.run());
        let rx = MessageRx {
            rx,
            ready: Vec::new().into_iter(),
            shared: shared.clone(),
            costs: CostTracker::default(),
            events: config.ext.as_ref().and_then(ext::RxEvents::new),
        };
        (Engine { shared }, rx)
    }

    /// Write one frame.
    pub(crate) async fn write(&self, frame: Bytes) -> Result<()> {
        self.shared.write(frame).await
    }

    /// Write a user message and count it as a turn.
    pub(crate) async fn send_user(&self, frame: Bytes) -> Result<()> {
        let turn = self.shared.turns_sent.fetch_add(1, Ordering::AcqRel) + 1;
        self.shared.spans.turn_sent(turn);
        let now = u64::try_from(self.shared.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared.turn_sent_nanos.store(now, Ordering::Relaxed);
        self.shared.awaiting_first.store(true, Ordering::Relaxed);
        let r = self.shared.write(frame).await;
        if r.is_err() {
            self.shared.turns_sent.fetch_sub(1, Ordering::AcqRel);
            self.shared.spans.turn_not_sent();
        }
        r
    }

    /// Send a control request and wait for its reply.
    pub(crate) async fn request(
        &self,
        subtype: &str,
        fields: Value,
        timeout: Duration,
    ) -> Result<Option<Value>> {
        if let Some(t) = self.shared.ended.get() {
            return Err(death_error(t));
        }
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "req_{n}_{:08x}",
            (self.shared.id_salt ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as u32
        );
        let span = self.shared.spans.control(subtype, &id);
        let r = tracing::Instrument::instrument(
            self.send_request(subtype, fields, timeout, id),
            span.clone(),
        )
        .await;
        if !span.is_disabled() {
            let outcome = match &r {
                Ok(_) => "ok",
                Err(Error::ControlError { .. }) => "error",
                Err(Error::ControlTimeout { .. }) => "timeout",
                Err(_) => "closed",
            };
            span.record("outcome", outcome);
        }
        r
    }

    async fn send_request(
        &self,
        subtype: &str,
        fields: Value,
        timeout: Duration,
        id: String,
    ) -> Result<Option<Value>> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.shared.pending.lock() {
            p.insert(id.clone(), (subtype.to_owned(), tx));
            self.shared.pending_len.store(p.len(), Ordering::Release);
        }
        self.shared.control_sent.notify_one();
        // The reader may have ended between the check above and the insert: re-check.
        if let Some(t) = self.shared.ended.get() {
            self.shared.forget(&id);
            return Err(death_error(t));
        }
        if let Err(e) = self
            .write(outbound::control_request(&id, subtype, fields))
            .await
        {
            self.shared.forget(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r.map_err(|e| match e {
                Error::ControlError { message, code, .. } => Error::ControlError {
                    subtype: subtype.to_owned(),
                    message,
                    code,
                },
                other => other,
            }),
            Ok(Err(_)) => Err(self
                .shared
                .ended
                .get()
                .map(death_error)
                .unwrap_or(Error::Closed)),
            Err(_) => {
                self.shared.forget(&id);
                // Withdraw it, so the CLI does not act on it later.
                let _ = self.write(outbound::control_cancel(&id)).await;
                Err(Error::ControlTimeout {
                    subtype: subtype.to_owned(),
                    after: timeout,
                })
            }
        }
    }

    /// Signal end of input to the CLI. Idempotent.
    pub(crate) async fn end_input(&self) -> Result<()> {
        if self.shared.input_ended.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut w = self.shared.writer.lock().await;
        match w.as_mut() {
            Some(s) => s.end_input().await,
            None => Ok(()),
        }
    }

    /// Graceful close of the sending side (end input, wait, then signal the process).
    pub(crate) async fn close(&self, grace: Duration) -> Result<()> {
        self.shared.input_ended.store(true, Ordering::Release);
        let sender = self.shared.writer.lock().await.take();
        match sender {
            Some(s) => s.close(grace).await,
            None => Ok(()),
        }
    }

    /// How the connection ended, once the reader has finished.
    pub(crate) fn termination(&self) -> Option<&Termination> {
        self.shared.ended.get()
    }

    pub(crate) fn input_ended(&self) -> bool {
        self.shared.input_ended.load(Ordering::Acquire)
    }

    /// True when nothing still needs the CLI's input: every turn sent has its result, no
    /// callback is running, no request of ours is pending and no background agent task runs.
    pub(crate) fn quiescent(&self) -> bool {
        let s = &self.shared;
        s.results_seen.load(Ordering::Acquire) >= s.turns_sent.load(Ordering::Acquire)
            && s.inbound.lock().map(|m| m.is_empty()).unwrap_or(true)
            && s.pending.lock().map(|m| m.is_empty()).unwrap_or(true)
            && s.background_tasks
                .lock()
                .map(|m| m.is_empty())
                .unwrap_or(true)
    }

    pub(crate) fn cli_version(&self) -> Option<&str> {
        self.shared.cli_version.get().map(String::as_str)
    }

    pub(crate) fn set_cli_version(&self, v: String) {
        let _ = self.shared.cli_version.set(v);
    }

    pub(crate) fn session_id(&self) -> Option<&str> {
        self.shared.session_id.get().map(String::as_str)
    }
}

impl Shared {
    async fn write(&self, frame: Bytes) -> Result<()> {
        let frame = match &self.ext {
            Some(ext) => ext.outbound(frame).await?,
            None => frame,
        };
        let mut w = self.writer.lock().await;
        match w.as_mut() {
            Some(s) if !self.input_ended.load(Ordering::Acquire) => s.send(frame).await,
            _ => Err(Error::Closed),
        }
    }

    fn forget(&self, id: &str) -> Option<(String, Reply)> {
        let mut p = self.pending.lock().ok()?;
        let entry = p.remove(id);
        self.pending_len.store(p.len(), Ordering::Release);
        entry
    }

    fn pending_count(&self) -> usize {
        self.pending_len.load(Ordering::Acquire)
    }

    fn turn_in_flight(&self) -> bool {
        self.results_seen.load(Ordering::Acquire) < self.turns_sent.load(Ordering::Acquire)
    }
}

/// The error pending requests get when the connection ended.
fn death_error(t: &Termination) -> Error {
    Error::ProcessExited {
        code: t.code,
        signal: t.signal,
        stderr_tail: t.stderr_tail.clone(),
    }
}

/// The driver: owns the receive half.
struct Reader<R> {
    shared: Arc<Shared>,
    receiver: R,
    tx: mpsc::Sender<Batch>,
    /// Batches the channel had no room for.
    overflow: VecDeque<Batch>,
    /// Frames in `overflow`.
    overflow_frames: usize,
    overflow_cap: usize,
    semaphore: Arc<Semaphore>,
    handler: Arc<dyn InboundHandler>,
    idle_timeout: Option<Duration>,
    metrics: Option<Arc<crate::transport::TransportMetrics>>,
}

/// At most this many frames are taken from one read into one batch.
const BATCH_MAX: usize = 64;

/// What the reader hands to the consumer.
pub(crate) enum Item {
    /// A frame to parse on the consumer's side.
    Frame(Bytes),
    /// Something the reader produced itself (a per-frame error, the death of the CLI, …);
    /// rare, so boxed to keep the common item small.
    Ready(Box<Result<Message>>),
}

type Batch = Vec<Item>;

enum Step {
    Frames(Vec<Result<Received>>),
    Delivered,
    Idle(Duration),
    Wake,
    ConsumerGone,
}

impl<R: FrameReceiver> Reader<R> {
    async fn run(mut self) {
        let end = loop {
            let may_read =
                self.overflow_frames < self.overflow_cap || self.shared.pending_count() > 0;
            let idle = self
                .idle_timeout
                .filter(|_| self.shared.turn_in_flight() && self.callbacks_idle());
            let step = {
                let Reader {
                    receiver,
                    tx,
                    overflow,
                    overflow_frames,
                    shared,
                    ..
                } = &mut self;
                tokio::select! {
                    biased;
                    permit = tx.reserve(), if !overflow.is_empty() => match permit {
                        Ok(p) => {
                            if let Some(b) = overflow.pop_front() {
                                *overflow_frames -= b.len();
                                p.send(b);
                            }
                            Step::Delivered
                        }
                        Err(_) => Step::ConsumerGone,
                    },
                    frames = recv_batch(receiver, idle), if may_read => frames,
                    _ = shared.control_sent.notified(), if !may_read => Step::Wake,
                    _ = tx.closed() => Step::ConsumerGone,
                }
            };
            match step {
                Step::Delivered | Step::Wake => {}
                Step::ConsumerGone => break None,
                Step::Idle(after) => {
                    // Count the stuck turn as finished so the error is reported once.
                    let sent = self.shared.turns_sent.load(Ordering::Acquire);
                    self.shared.results_seen.store(sent, Ordering::Release);
                    self.shared.spans.abandon("idle");
                    self.push(vec![Item::Ready(Box::new(Err(Error::Idle { after })))]);
                }
                Step::Frames(items) => {
                    if let Some(m) = &self.metrics {
                        m.publish();
                    }
                    let mut batch = Vec::with_capacity(items.len());
                    let mut end = None;
                    for item in items {
                        match item {
                            Ok(Received::Frame(frame)) => self.on_frame(frame, &mut batch),
                            Ok(Received::Bad(e)) => batch.push(Item::Ready(Box::new(Err(e)))),
                            Ok(Received::End) => {
                                end = Some(self.receiver.termination().unwrap_or_default());
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "transport failed");
                                batch.push(Item::Ready(Box::new(Err(e))));
                                end = Some(self.receiver.termination().unwrap_or_default());
                                break;
                            }
                        }
                    }
                    self.push(batch);
                    if end.is_some() {
                        break end;
                    }
                }
            }
        };
        let Some(term) = end else {
            self.fail_pending(&Termination::default());
            return;
        };
        if self.shared.turn_in_flight() {
            self.push(vec![Item::Ready(Box::new(Err(death_error(&term))))]);
        }
        self.shared.spans.abandon("ended");
        self.fail_pending(&term);
        // Deliver what is parked, then close the channel (the consumer sees the end).
        while let Some(b) = self.overflow.pop_front() {
            if self.tx.send(b).await.is_err() {
                break;
            }
        }
    }

    fn callbacks_idle(&self) -> bool {
        self.shared
            .inbound
            .lock()
            .map(|m| m.is_empty())
            .unwrap_or(true)
    }

    fn fail_pending(&self, term: &Termination) {
        let _ = self.shared.ended.set(term.clone());
        let drained: Vec<_> = match self.shared.pending.lock() {
            Ok(mut p) => {
                self.shared.pending_len.store(0, Ordering::Release);
                p.drain().collect()
            }
            Err(_) => Vec::new(),
        };
        for (_, (_, reply)) in drained {
            let _ = reply.send(Err(death_error(term)));
        }
        if let Ok(mut inbound) = self.shared.inbound.lock() {
            for (_, h) in inbound.drain() {
                h.abort();
            }
        }
    }

    /// Queue a batch for the consumer without ever blocking the reader.
    fn push(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        if self.overflow.is_empty() {
            match self.tx.try_send(batch) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(batch)) => {
                    self.overflow_frames += batch.len();
                    self.overflow.push_back(batch);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        } else {
            self.overflow_frames += batch.len();
            self.overflow.push_back(batch);
        }
    }

    /// Route one frame: control frames are handled here, everything else goes to the consumer
    /// unparsed.
    fn on_frame(&mut self, frame: Bytes, batch: &mut Batch) {
        let frame = match &self.shared.ext {
            Some(ext) => {
                let (frame, reply) = ext.inbound(frame);
                if let Some(reply) = reply {
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = shared.write(reply).await {
                            tracing::debug!(error = %e, "could not send an extension's reply");
                        }
                    });
                }
                match frame {
                    Some(f) => f,
                    None => return,
                }
            }
            None => frame,
        };
        match frame_type(&frame) {
            FrameType::Message => batch.push(Item::Frame(frame)),
            FrameType::Result => {
                self.shared.results_seen.fetch_add(1, Ordering::AcqRel);
                self.shared.spans.result_seen();
                batch.push(Item::Frame(frame));
            }
            FrameType::Control => match Message::parse(frame) {
                Ok(msg) => self.on_control(msg),
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable control frame skipped");
                    batch.push(Item::Ready(Box::new(Err(e))));
                }
            },
        }
    }

    fn on_control(&mut self, mut msg: Message) {
        match msg.kind_mut() {
            MessageKind::ControlResponse(resp) => match self.shared.forget(&resp.request_id) {
                Some((subtype, reply)) => {
                    let r =
                        match std::mem::replace(&mut resp.outcome, ControlOutcome::Success(None)) {
                            ControlOutcome::Success(v) => Ok(v),
                            ControlOutcome::Error { message, code } => Err(Error::ControlError {
                                subtype,
                                message,
                                code,
                            }),
                        };
                    let _ = reply.send(r);
                }
                None => {
                    tracing::debug!(id = %resp.request_id, "reply to an unknown request ignored")
                }
            },
            MessageKind::ControlRequest(_) => {
                if let MessageKind::ControlRequest(req) = msg.into_kind() {
                    self.dispatch(req);
                }
            }
            MessageKind::ControlCancel(c) => {
                let handle = self
                    .shared
                    .inbound
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&c.request_id));
                if let Some(h) = handle {
                    tracing::debug!(id = %c.request_id, "CLI withdrew its request; callback cancelled");
                    h.abort();
                }
            }
            _ => {}
        }
    }

    /// Run an inbound request on its own task; answer through the shared writer.
    fn dispatch(&self, req: ControlRequest) {
        let id = req.request_id.clone();
        let shared = self.shared.clone();
        let handler = self.handler.clone();
        let semaphore = self.semaphore.clone();
        let task_id = id.clone();
        let span = self.shared.spans.callback(&req);
        let answered = span.clone();
        // Register the task under the lock it takes to deregister itself, so it can never
        // look itself up before it is registered (and then drop its answer).
        let mut inbound = match self.shared.inbound.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let task = async move {
            let _permit = semaphore.acquire_owned().await;
            let subtype = req.subtype.clone();
            let outcome = std::panic::AssertUnwindSafe(handler.handle(req))
                .catch_unwind()
                .await;
            spans::callback_answered(&answered, &subtype, outcome.as_ref().map_err(|_| ()));
            let frame = match outcome {
                Ok(Ok(v)) => outbound::control_success(&task_id, v),
                Ok(Err(msg)) => outbound::control_error(&task_id, &msg),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    tracing::error!(subtype, panic = %what, "callback panicked");
                    outbound::control_error(
                        &task_id,
                        &format!("{subtype} callback panicked: {what}"),
                    )
                }
            };
            let still_wanted = shared
                .inbound
                .lock()
                .map(|mut m| m.remove(&task_id).is_some())
                .unwrap_or(true);
            if still_wanted && let Err(e) = shared.write(frame).await {
                tracing::debug!(error = %e, "could not answer a control request");
            }
        };
        let task = tokio::spawn(tracing::Instrument::instrument(task, span));
        inbound.insert(id, task.abort_handle());
    }
}

/// The consumer's end of the message channel: parses the frames the reader forwarded.
pub(crate) struct MessageRx {
    rx: mpsc::Receiver<Batch>,
    /// The rest of the batch being delivered.
    ready: std::vec::IntoIter<Item>,
    shared: Arc<Shared>,
    costs: CostTracker,
    /// The event bus's state, when the session has handlers.
    events: Option<ext::RxEvents>,
}

impl MessageRx {
    /// The next message, parsed here (on the consumer's task); `None` once the CLI's output has
    /// ended and everything was delivered.
    pub(crate) async fn recv(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv) as a poll function, for streams that call it directly (no future
    /// to build and move per message).
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Message>>> {
        let Some(events) = &mut self.events else {
            return self.poll_item(cx);
        };
        // Handlers of an item's events run before the item is yielded.
        if let Some((running, _)) = &mut events.pending {
            std::task::ready!(running.as_mut().poll(cx));
            return std::task::Poll::Ready(events.pending.take().and_then(|(_, item)| item));
        }
        let item = std::task::ready!(self.poll_item(cx));
        let shared = &self.shared;
        let Some(events) = &mut self.events else {
            return std::task::Poll::Ready(item);
        };
        match events.events_of(&item, || shared.ended.get().cloned()) {
            None => std::task::Poll::Ready(item),
            Some(running) => {
                events.pending = Some((running, item));
                self.poll_recv(cx)
            }
        }
    }

    fn poll_item(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Message>>> {
        let item = loop {
            if let Some(item) = self.ready.next() {
                break item;
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(batch) => self.ready = batch.into_iter(),
                None => return std::task::Poll::Ready(None),
            }
        };
        std::task::Poll::Ready(Some(match item {
            Item::Ready(r) => *r,
            // Validated here, typed on first access (results and system frames now, for the
            // facts the session keeps; everything else only if the user looks).
            Item::Frame(frame) => validate_or_type(frame).and_then(|mut msg| {
                if self.shared.awaiting_first.load(Ordering::Relaxed)
                    && self.shared.awaiting_first.swap(false, Ordering::Relaxed)
                {
                    self.shared.stats.first_message(self.since_turn_sent());
                }
                if let Some(custom) = self.shared.ext.as_ref().and_then(|e| e.decode(&msg)) {
                    return custom;
                }
                if msg.is_result() || (msg.is_system() && self.system_matters(msg.raw())) {
                    self.observe(&mut msg);
                }
                Ok(msg)
            }),
        }))
    }

    /// Whether a `system` frame may carry a fact [`observe`](Self::observe) keeps, judged from
    /// its subtype without typing it: `init` until the CLI version and session id are known, and
    /// the `task_*` frames. Typing a `system/init` costs more than everything else the SDK does
    /// with a small frame, and the CLI sends one every turn. The subtype is read off the compact
    /// JSON the CLI writes (`{"type":"system","subtype":"…"`); anything else is typed.
    fn system_matters(&self, raw: &[u8]) -> bool {
        const PREFIX: &[u8] = b"{\"type\":\"system\",\"subtype\":\"";
        let Some(rest) = raw.strip_prefix(PREFIX) else {
            return true;
        };
        let Some(end) = memchr::memchr(b'"', rest) else {
            return true;
        };
        match &rest[..end] {
            b"init" => {
                self.shared.cli_version.get().is_none() || self.shared.session_id.get().is_none()
            }
            b"task_started" | b"task_notification" | b"task_updated" => true,
            // An escaped subtype is left to the typed view.
            sub => sub.contains(&b'\\'),
        }
    }

    /// Time since the last user message was written.
    fn since_turn_sent(&self) -> std::time::Duration {
        let sent =
            std::time::Duration::from_nanos(self.shared.turn_sent_nanos.load(Ordering::Relaxed));
        self.shared.started.elapsed().saturating_sub(sent)
    }

    /// Facts the session keeps: per-turn cost on results, the CLI version and session id from
    /// `init`, background agent tasks from `task_*` (they keep a one-shot query's input open).
    fn observe(&mut self, msg: &mut Message) {
        let tasks = &self.shared.background_tasks;
        match msg.kind_mut() {
            MessageKind::Result(r) => {
                r.turn_cost_usd = self.costs.observe(r);
                let latency = self.since_turn_sent();
                self.shared
                    .stats
                    .turn(Some(latency), r.turn_cost_usd, r.usage.as_ref());
                self.shared.spans.result_typed(r);
            }
            MessageKind::System(SystemMessage::Init(init)) => {
                if let Some(v) = &init.claude_code_version {
                    let _ = self.shared.cli_version.set(v.clone());
                }
                if let Some(sid) = &init.session_id {
                    let _ = self.shared.session_id.set(sid.clone());
                }
                self.shared.spans.init(
                    init.session_id.as_deref(),
                    init.claude_code_version.as_deref(),
                );
            }
            MessageKind::System(SystemMessage::TaskStarted(t)) => {
                let agent = matches!(
                    t.task_type.as_deref(),
                    Some("local_agent" | "local_workflow")
                );
                if agent && let Ok(mut set) = tasks.lock() {
                    set.insert(t.task_id.clone());
                }
            }
            MessageKind::System(SystemMessage::TaskNotification(t)) if is_terminal(&t.status) => {
                if let Ok(mut set) = tasks.lock() {
                    set.remove(&t.task_id);
                }
            }
            MessageKind::System(SystemMessage::TaskUpdated(t))
                if t.patch["status"].as_str().is_some_and(is_terminal) =>
            {
                if let Ok(mut set) = tasks.lock() {
                    set.remove(&t.task_id);
                }
            }
            _ => {}
        }
    }
}

/// [`Message::validate`], except that a `result` frame, which the receiver types at once for
/// its cost anyway, is typed straight away with [`Message::parse`] instead of being checked by
/// a separate pass first (one pass over the frame instead of two).
///
/// Both give the same message whenever `parse` succeeds, with one exception, which is ruled out
/// first: a frame that repeats its top-level `type` key (`validate` rejects it, the typed parse
/// ignores the repeat). Without `\u` escapes, any such key is spelled `"type"` in the bytes,
/// so one occurrence of `"type"` (the leading one) is enough. Whatever does not qualify, or
/// does not parse, takes the `validate` path as before (same errors, same fallbacks).
fn validate_or_type(frame: Bytes) -> Result<Message> {
    const RESULT: &[u8] = b"{\"type\":\"result\",";
    if frame.starts_with(RESULT)
        && memchr::memmem::find(&frame[RESULT.len()..], b"\"type\"").is_none()
        && memchr::memmem::find(&frame, b"\\u").is_none()
        && let Ok(msg) = Message::parse(frame.clone())
    {
        return Ok(msg);
    }
    Message::validate(frame)
}

/// How the reader treats a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameType {
    /// `control_request`, `control_response`, `control_cancel_request`: handled by the reader.
    Control,
    /// `result`: counted by the reader (turn tracking), parsed by the consumer.
    Result,
    /// Anything else (and anything unparseable): parsed by the consumer.
    Message,
}

/// The frame's `type`, cheaply: a prefix check on the compact JSON the CLI writes
/// (`{"type":"…"`, compared as bytes), a parse of the `type` field alone otherwise.
fn frame_type(frame: &[u8]) -> FrameType {
    const PREFIX: &[u8] = b"{\"type\":\"";
    if let Some(rest) = frame.strip_prefix(PREFIX) {
        // The value up to its closing quote, as the parse below would read it (an escaped
        // value never matches the names, as before).
        let is = |name: &[u8]| {
            rest.strip_prefix(name)
                .is_some_and(|after| after.first() == Some(&b'"'))
        };
        return if rest.starts_with(b"control_")
            && (is(b"control_request") || is(b"control_response") || is(b"control_cancel_request"))
        {
            FrameType::Control
        } else if is(b"result") {
            FrameType::Result
        } else {
            FrameType::Message
        };
    }
    #[derive(serde::Deserialize)]
    struct TypeOnly<'a> {
        #[serde(rename = "type", borrow)]
        type_: Option<std::borrow::Cow<'a, str>>,
    }
    let ty = serde_json::from_slice::<TypeOnly<'_>>(frame)
        .ok()
        .and_then(|t| t.type_);
    match ty.as_deref() {
        Some("control_request" | "control_response" | "control_cancel_request") => {
            FrameType::Control
        }
        Some("result") => FrameType::Result,
        _ => FrameType::Message,
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "stopped" | "killed")
}

/// Wait for one frame (with the idle timeout, if any), then take every frame that is already
/// there without waiting, up to [`BATCH_MAX`].
async fn recv_batch<R: FrameReceiver>(receiver: &mut R, idle: Option<Duration>) -> Step {
    let first = match idle {
        None => receiver.recv().await,
        Some(after) => match tokio::time::timeout(after, receiver.recv()).await {
            Ok(r) => r,
            Err(_) => return Step::Idle(after),
        },
    };
    let mut items = Vec::with_capacity(8);
    let mut more = matches!(first, Ok(Received::Frame(_) | Received::Bad(_)));
    items.push(first);
    while more && items.len() < BATCH_MAX {
        // `recv` is cancel-safe: dropping it when nothing is ready loses nothing.
        match receiver.recv().now_or_never() {
            Some(item) => {
                more = matches!(item, Ok(Received::Frame(_) | Received::Bad(_)));
                items.push(item);
            }
            None => break,
        }
    }
    Step::Frames(items)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
