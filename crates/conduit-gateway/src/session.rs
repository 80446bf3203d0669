//! [`SessionManager`]: one `claude` CLI per session, sequenced output, a bounded replay ring.
//!
//! Each session owns the two halves of an SDK
//! [`SubprocessTransport`](claude_conduit::transport::SubprocessTransport) connection:
//!
//! * the **pump** task reads CLI frames, numbers them 1, 2, 3, … and appends them to the
//!   session's replay ring. When the ring is full of frames the client has not acked yet, the
//!   pump waits (so the CLI's stdout fills and the CLI waits too): frames are never dropped to
//!   make room, only frames the client acked are;
//! * the **writer** task owns the [`FrameSender`]: it writes the client's frames to the CLI's
//!   stdin and, when the session is deleted, reaped or the gateway shuts down, closes the CLI
//!   gracefully ([`FrameSender::close`]: end input, wait, SIGTERM, SIGKILL).
//!
//! At most one client is attached at a time; a newer connection takes the session over (the
//! older one is closed with [`CLOSE_REPLACED`](crate::CLOSE_REPLACED)). A session without a client
//! survives for the grace period; a session without traffic for the idle timeout is closed.

use std::collections::{HashMap, VecDeque};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// The runtime's clock (not `std`'s): grace periods, idle timeouts and frame rates follow tokio's
// time, so tests can pause and advance it.
use tokio::time::Instant;

use bytes::Bytes;
use claude_conduit::extension::Direction;
use claude_conduit::transport::relay::wire::{ErrorInfo, is_json_object, kind};
use claude_conduit::transport::{FrameReceiver, FrameSender, Received, Termination, Transport};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::GatewayError;
use crate::auth::TokenId;
use crate::config::{ConfigError, GatewayConfig};
use crate::control_policy::Verdict;
use crate::tenancy::{OsUser, StateDir};

/// Frames the pump takes from the CLI before it wakes the connection, when more are ready.
const PUMP_BATCH: usize = 64;

/// How many gateway answers ([`Session::answer_for_cli`]) may go over the replay ring's capacity.
const ANSWER_SLACK: usize = 64;

/// Clients ack at least every this many frames (the replay ring is never smaller than
/// [`MIN_REPLAY_FRAMES`](crate::config::MIN_REPLAY_FRAMES)). Defined once, in the wire types
/// the SDK's clients share.
pub use claude_conduit::transport::relay::wire::ACK_EVERY;

pub use claude_conduit::remote::SessionRequest;

/// What `GET /v1/sessions/{id}` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id.
    pub id: String,
    /// The CLI's process id.
    pub pid: Option<u32>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Whether a client is connected.
    pub attached: bool,
    /// The newest frame's sequence number (0: none yet).
    pub last_seq: u64,
    /// The highest sequence number the client acked.
    pub acked: u64,
    /// The oldest sequence number still in the replay ring (`last_seq + 1` when empty).
    pub oldest_seq: u64,
    /// Whether the CLI has exited.
    pub ended: bool,
    /// The CLI's exit code, once it exited normally.
    pub exit_code: Option<i32>,
}

/// The client-visible end of a session: how the CLI ended (the wire's `end`).
pub type EndInfo = claude_conduit::transport::relay::wire::End;

/// What a client hands [`Session::to_cli`].
#[derive(Debug)]
pub(crate) enum Input {
    /// A frame for the CLI's stdin. `seq` numbers the client's frames 1, 2, 3, … across
    /// connections; a frame with `seq <= in_seq` was already accepted and is skipped. `None`: an
    /// unnumbered frame (simple clients), passed on as is.
    Frame { seq: Option<u64>, frame: Bytes },
    /// End the CLI's stdin.
    EndInput,
}

/// What the writer task is asked to do.
#[derive(Debug)]
enum WriterInput {
    Frame(Bytes),
    EndInput,
}

/// Why [`Session::to_cli`] refused a frame. The session lives on in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InputError {
    /// The CLI no longer reads (it ended, or the session is closing).
    #[error("the session's CLI is gone")]
    Closed,
    /// The frame is larger than the gateway's frame-size limit. It was numbered (its `seq` counts
    /// as accepted) and dropped; the client is told.
    #[error("frame of {size} bytes is over the gateway's limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
        /// The frame's size.
        size: usize,
        /// The frame's sequence number, if it had one.
        seq: Option<u64>,
    },
    /// The gateway's policy refuses the frame (see [`crate::control_policy`]). It was numbered
    /// (its `seq` counts as accepted) and dropped; the client is told.
    #[error("refused by the gateway's policy: {message}")]
    Policy {
        /// Which rule refused it.
        message: String,
        /// The frame's sequence number, if it had one.
        seq: Option<u64>,
    },
    /// The frame is not one JSON object (what the CLI reads as a line of input). It was numbered
    /// (its `seq` counts as accepted) and dropped, never forwarded; the client is told.
    #[error("{reason}")]
    BadFrame {
        /// Why.
        reason: String,
        /// The frame's sequence number, if it had one.
        seq: Option<u64>,
    },
    /// A numbered frame skipped ahead: frames in between are missing.
    #[error("frame {got} arrived but {expected} was expected")]
    Gap {
        /// The next sequence number the session expects.
        expected: u64,
        /// What arrived.
        got: u64,
    },
}

impl InputError {
    /// The refusal as the wire carries it (`{"error":{"kind",…}}`, gRPC `Refused`).
    pub(crate) fn info(&self) -> ErrorInfo {
        match self {
            Self::TooLarge { limit, size, seq } => ErrorInfo::too_large(*limit, *size, *seq),
            Self::BadFrame { seq, .. } => ErrorInfo {
                seq: *seq,
                ..ErrorInfo::new(kind::BAD_FRAME, self)
            },
            Self::Policy { seq, .. } => ErrorInfo {
                seq: *seq,
                ..ErrorInfo::new(kind::POLICY, self)
            },
            Self::Gap { expected, got } => ErrorInfo {
                expected: Some(*expected),
                got: Some(*got),
                ..ErrorInfo::new(kind::GAP, self)
            },
            Self::Closed => ErrorInfo::new(kind::CLOSED, self),
        }
    }

    /// The wire `kind` of this refusal (the `kind` label of `conduit_gateway_refusals_total`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => kind::FRAME_TOO_LARGE,
            Self::BadFrame { .. } => kind::BAD_FRAME,
            Self::Policy { .. } => kind::POLICY,
            Self::Gap { .. } => kind::GAP,
            Self::Closed => kind::CLOSED,
        }
    }

    /// Whether only the one frame was refused and the session goes on.
    pub(crate) fn is_per_frame(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::BadFrame { .. } | Self::Policy { .. }
        )
    }
}

/// What [`Session::attach`] tells a client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attached {
    /// This connection's generation (for detach and polls).
    pub generation: u64,
    /// The highest client frame sequence number the session accepted: resend everything after it.
    pub in_seq: u64,
}

/// A token bucket: `rate` frames per second, bursts up to `burst`.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(per_second.max(1)),
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Take a token at `now`, or say how long to wait for one (and take nothing).
    pub(crate) fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// One session: a CLI process, its replay ring and at most one attached client.
#[derive(Debug)]
pub struct Session {
    id: String,
    owner: TokenId,
    /// The owner's label (see [`crate::auth`]), for the conversations its CLI reports.
    label: String,
    pid: Option<u32>,
    created: SystemTime,
    capacity: usize,
    /// The replay byte budget of this session.
    max_bytes: usize,
    /// The gateway-wide one.
    budget: Arc<ReplayBudget>,
    state: Mutex<State>,
    /// Bumped on every change a waiter may care about (new frame, ack, end, attach).
    events: watch::Sender<u64>,
    input: mpsc::Sender<WriterInput>,
    /// Serialises numbered input so that check, write and `in_seq` update are one step even when
    /// a replaced connection and its successor both deliver.
    input_order: tokio::sync::Mutex<()>,
    max_frame: usize,
    /// What the client's frames may do (see [`crate::control_policy`]).
    policy: Arc<crate::policy::Policy>,
    /// The gateway's plugins on this session (see [`crate::plugins`]).
    plugins: Option<Arc<crate::plugins::SessionPlugins>>,
    /// Gateway-side protocol extensions.
    extensions: Option<claude_conduit::extension::Extensions>,
    closing: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pump: Mutex<Option<JoinHandle<()>>>,
    /// Counted in `conduit_gateway_sessions` while it exists; its figures are logged when it
    /// goes (see [`crate::metrics`]).
    pub(crate) live: crate::metrics::LiveSession,
}

#[derive(Debug)]
struct State {
    ring: VecDeque<(u64, Bytes)>,
    /// Bytes of the frames in `ring` (also counted in the gateway-wide [`ReplayBudget`]).
    ring_bytes: usize,
    last_seq: u64,
    acked: u64,
    end: Option<Termination>,
    attached: u64,
    /// The generation [`SessionManager::kick`] dropped (its socket goes without a close frame).
    kicked: u64,
    next_generation: u64,
    detached_since: Option<Instant>,
    last_activity: Instant,
    /// The highest client frame sequence number accepted.
    in_seq: u64,
    rate: Option<RateLimiter>,
    /// The CLI is being closed because the gateway shuts down.
    shutting_down: bool,
    /// The worker that ran the session stopped (`--redis`): its name.
    lost: Option<String>,
}

/// What [`SessionManager::install`] needs besides the connection.
struct Installed {
    /// The per-frame limit.
    max_frame: usize,
    /// The session's id when it has one already (a Redis session's).
    id: Option<String>,
    /// The gateway's plugins for this session (`None` where the CLI runs elsewhere).
    plugins: Option<Arc<crate::plugins::SessionPlugins>>,
}

impl State {
    /// A new session's state: nothing sent yet, no client yet (the grace period runs).
    fn new(rate: Option<RateLimiter>) -> Self {
        let now = Instant::now();
        Self {
            ring: VecDeque::new(),
            ring_bytes: 0,
            last_seq: 0,
            acked: 0,
            end: None,
            attached: 0,
            kicked: 0,
            next_generation: 0,
            detached_since: Some(now),
            last_activity: now,
            in_seq: 0,
            rate,
            shutting_down: false,
            lost: None,
        }
    }

    /// Whether the reaper closes this session at `now`: its client has been gone longer than
    /// `grace`, or nothing happened for longer than `idle` (client attached or not).
    fn expired(&self, now: Instant, grace: Duration, idle: Duration) -> bool {
        let detached_too_long = self.attached == 0
            && self
                .detached_since
                .is_some_and(|t| now.saturating_duration_since(t) > grace);
        detached_too_long || now.saturating_duration_since(self.last_activity) > idle
    }

    fn oldest_seq(&self) -> u64 {
        self.ring.front().map_or(self.last_seq + 1, |(s, _)| *s)
    }

    /// Number `frame` and keep it in the ring.
    fn push(&mut self, frame: Bytes, budget: &ReplayBudget) {
        self.last_seq += 1;
        self.ring_bytes += frame.len();
        budget.take(frame.len());
        self.ring.push_back((self.last_seq, frame));
        self.last_activity = Instant::now();
    }

    /// Drop the oldest frame (the caller checked that it may go).
    fn pop(&mut self, budget: &ReplayBudget) {
        if let Some((_, f)) = self.ring.pop_front() {
            self.ring_bytes -= f.len();
            budget.give(f.len());
        }
    }

    /// Drop the acked frames at the front while `more` says room is needed.
    fn pop_acked_while(&mut self, budget: &ReplayBudget, more: impl Fn(&Self) -> bool) {
        while self.ring.front().is_some_and(|(s, _)| *s <= self.acked) && more(self) {
            self.pop(budget);
        }
    }
}

/// The gateway-wide replay byte budget: the bytes every session's ring holds, together.
#[derive(Debug)]
pub(crate) struct ReplayBudget {
    limit: usize,
    used: AtomicUsize,
    /// Bumped whenever bytes are given back (pumps waiting for room watch it).
    freed: watch::Sender<u64>,
    /// A pump waits for gateway-wide room: the reaper then drops acked frames everywhere.
    starved: AtomicBool,
}

impl ReplayBudget {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            freed: watch::channel(0).0,
            starved: AtomicBool::new(false),
        }
    }

    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Give back `n` bytes; wakes the pumps waiting for gateway-wide room, if any (a busy
    /// session frees a frame per frame it keeps: waking nobody is what it costs then).
    fn give(&self, n: usize) {
        if n > 0 {
            // SeqCst with the load of `starved`, against a pump's store of `starved` and its
            // second look at `used` (see `pump_task`): one of the two sees the other.
            self.used.fetch_sub(n, Ordering::SeqCst);
            if self.starved.load(Ordering::SeqCst) {
                self.wake();
            }
        }
    }

    /// Wake the pumps waiting for gateway-wide room.
    fn wake(&self) {
        self.freed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Whether `n` more bytes would go over the limit.
    fn over(&self, n: usize) -> bool {
        self.used.load(Ordering::SeqCst).saturating_add(n) > self.limit
    }
}

/// The frames of one look at the replay ring, oldest first, read in place (no list is built).
pub(crate) type RingFrames<'a> = std::collections::vec_deque::Iter<'a, (u64, Bytes)>;

/// Frames a client connection took from the ring in one look: what it made of them, how many
/// there were, their bytes and the last one's sequence number.
#[derive(Debug)]
pub(crate) struct Taken<F> {
    pub(crate) out: F,
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
    pub(crate) last: u64,
}

/// What a client connection should do next (see [`Session::poll_outbound`]).
#[derive(Debug)]
pub(crate) enum Outbound<F = Vec<(u64, Bytes)>> {
    /// Frames after the cursor, as the caller took them (see [`Session::poll_outbound_with`]).
    Frames(Taken<F>),
    End(EndInfo),
    /// The gateway is shutting down (after every frame was sent): the client should reconnect
    /// later, to this gateway or another (WebSocket 1001, gRPC `UNAVAILABLE`).
    ShuttingDown,
    /// The worker running the session stopped (after every frame was sent; `--redis`):
    /// WebSocket 4502, SSE `lost`, gRPC `DATA_LOSS`.
    Lost(claude_conduit::transport::relay::wire::Lost),
    Replaced,
    Dropped,
    Wait,
}

/// Why a resume was refused.
#[derive(Debug)]
pub(crate) enum AttachError {
    TooOld { after: u64, oldest: u64 },
    Ahead { after: u64, last: u64 },
}

impl Session {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The CLI's process id.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.events.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// A snapshot for the HTTP API.
    pub fn info(&self) -> SessionInfo {
        let st = self.lock();
        SessionInfo {
            id: self.id.clone(),
            pid: self.pid,
            created_unix_ms: self
                .created
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            attached: st.attached != 0,
            last_seq: st.last_seq,
            acked: st.acked,
            oldest_seq: st.oldest_seq(),
            ended: st.end.is_some(),
            exit_code: st.end.as_ref().and_then(|t| t.code),
        }
    }

    /// Attach a client that has seen every frame up to `after`. Returns its generation.
    pub(crate) fn attach(&self, after: u64) -> Result<Attached, AttachError> {
        let generation = {
            let mut st = self.lock();
            if after > st.last_seq {
                return Err(AttachError::Ahead {
                    after,
                    last: st.last_seq,
                });
            }
            let oldest = st.oldest_seq();
            if after + 1 < oldest {
                return Err(AttachError::TooOld { after, oldest });
            }
            st.acked = st.acked.max(after);
            st.next_generation += 1;
            st.attached = st.next_generation;
            st.detached_since = None;
            st.last_activity = Instant::now();
            Attached {
                generation: st.attached,
                in_seq: st.in_seq,
            }
        };
        self.bump();
        Ok(generation)
    }

    /// The client of `generation` went away.
    pub(crate) fn detach(&self, generation: u64) {
        let mut st = self.lock();
        if st.attached == generation {
            st.attached = 0;
            st.detached_since = Some(Instant::now());
        }
    }

    /// The client acked every frame up to `seq`.
    pub(crate) fn ack(&self, seq: u64) {
        {
            let mut st = self.lock();
            st.acked = st.acked.max(seq.min(st.last_seq));
            st.last_activity = Instant::now();
        }
        self.bump();
    }

    /// Up to `max` frames after `cursor`, or the end, or whether this client was replaced.
    pub(crate) fn poll_outbound(&self, generation: u64, cursor: u64, max: usize) -> Outbound {
        self.poll_outbound_with(generation, cursor, max, |frames| frames.cloned().collect())
    }

    /// [`poll_outbound`](Self::poll_outbound), handing the frames to `take` while the ring is
    /// locked: a front that encodes them into a buffer of its own reads them in place instead
    /// of holding a reference to each (no reference counts touched per frame). `take` runs only
    /// when there are frames, and must be quick (the CLI's reader waits for the lock).
    pub(crate) fn poll_outbound_with<F>(
        &self,
        generation: u64,
        cursor: u64,
        max: usize,
        take: impl FnOnce(RingFrames<'_>) -> F,
    ) -> Outbound<F> {
        let st = self.lock();
        if st.attached != generation {
            return if st.kicked == generation {
                Outbound::Dropped
            } else {
                Outbound::Replaced
            };
        }
        let oldest = st.oldest_seq();
        if cursor < st.last_seq {
            // `cursor + 1 >= oldest` holds: frames after the cursor are unacked, never evicted.
            let start = usize::try_from((cursor + 1).saturating_sub(oldest))
                .unwrap_or(usize::MAX)
                .min(st.ring.len());
            let frames = st
                .ring
                .range(start..st.ring.len().min(start.saturating_add(max)));
            return Outbound::Frames(Taken {
                frames: frames.len(),
                bytes: frames.clone().map(|(_, f)| f.len()).sum(),
                last: frames.clone().next_back().map_or(cursor, |(seq, _)| *seq),
                out: take(frames),
            });
        }
        match &st.end {
            Some(_) if st.lost.is_some() => {
                Outbound::Lost(claude_conduit::transport::relay::wire::Lost {
                    session: self.id.clone(),
                    worker: st.lost.clone().unwrap_or_default(),
                })
            }
            Some(_) if st.shutting_down => Outbound::ShuttingDown,
            Some(t) => Outbound::End(t.into()),
            None => Outbound::Wait,
        }
    }

    /// The gateway's frame-size limit for this session.
    pub(crate) fn max_frame_bytes(&self) -> usize {
        self.max_frame
    }

    /// The highest client frame sequence number accepted so far.
    pub(crate) fn in_seq(&self) -> u64 {
        self.lock().in_seq
    }

    /// Pass a client frame (or end of input) to the CLI. Waits while the CLI is not reading, and
    /// while the session is over its frame-rate limit (throttling: nothing is dropped).
    pub(crate) async fn to_cli(&self, input: Input) -> Result<(), InputError> {
        let result = self.pass_to_cli(input).await;
        if let Err(e) = &result {
            crate::metrics::refused(e.kind());
        }
        result
    }

    async fn pass_to_cli(&self, input: Input) -> Result<(), InputError> {
        let (seq, frame) = match input {
            Input::EndInput => {
                let _order = self.input_order.lock().await;
                self.lock().last_activity = Instant::now();
                return self
                    .input
                    .send(WriterInput::EndInput)
                    .await
                    .map_err(|_| InputError::Closed);
            }
            Input::Frame { seq, frame } => (seq, frame),
        };
        let _order = self.input_order.lock().await;
        if let Some(seq) = seq {
            let expected = self.lock().in_seq + 1;
            if seq < expected {
                return Ok(()); // Accepted before a reconnect: skip.
            }
            if seq > expected {
                return Err(InputError::Gap { expected, got: seq });
            }
        }
        if frame.len() > self.max_frame {
            if let Some(seq) = seq {
                self.lock().in_seq = seq;
            }
            return Err(InputError::TooLarge {
                limit: self.max_frame,
                size: frame.len(),
                seq,
            });
        }
        // The CLI ends the session on a line that is not a JSON object: never forward one.
        if !is_json_object(&frame) {
            if let Some(seq) = seq {
                self.lock().in_seq = seq;
            }
            return Err(InputError::BadFrame {
                reason: "a frame must be one JSON object".into(),
                seq,
            });
        }
        loop {
            let wait = {
                let mut st = self.lock();
                st.last_activity = Instant::now();
                st.rate.as_mut().and_then(|r| r.take(Instant::now()))
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => break,
            }
        }
        // Protocol extensions see the client's frame first; what they pass on (or replace it
        // with) is what the control-frame policy judges.
        let frame = match &self.extensions {
            Some(ext) => {
                let (frame, reply) = ext.intercept(Direction::SdkToCli, frame);
                let queued = reply.map(|r| self.answer_for_cli(r));
                match frame {
                    Some(f) => f,
                    None => {
                        if let Some(seq) = seq {
                            self.lock().in_seq = seq;
                        }
                        self.bump();
                        return match queued {
                            Some(Err(message)) => Err(InputError::Policy { message, seq }),
                            _ => Ok(()),
                        };
                    }
                }
            }
            None => frame,
        };
        match crate::control_policy::check(&self.policy, &frame) {
            Verdict::Pass => {}
            Verdict::Answer(reply) => {
                let queued = self.answer_for_cli(reply);
                if let Some(seq) = seq {
                    self.lock().in_seq = seq;
                }
                self.bump();
                return queued.map_err(|message| InputError::Policy { message, seq });
            }
            Verdict::Refuse(message) => {
                if let Some(seq) = seq {
                    self.lock().in_seq = seq;
                }
                self.bump();
                return Err(InputError::Policy { message, seq });
            }
        }
        let frames = match &self.plugins {
            Some(p) => match p.client_frame(frame) {
                Ok(frames) => frames,
                Err((message, answer)) => {
                    tracing::warn!(session = %self.id, %message, "refused a client frame that would bypass the gateway's plugins");
                    let queued = answer.map(|a| self.answer_for_cli(a));
                    if let Some(seq) = seq {
                        self.lock().in_seq = seq;
                    }
                    self.bump();
                    return match queued {
                        Some(queued) => {
                            queued.map_err(|message| InputError::Policy { message, seq })
                        }
                        None => Err(InputError::Policy { message, seq }),
                    };
                }
            },
            None => vec![frame],
        };
        for frame in frames {
            self.input
                .send(WriterInput::Frame(frame))
                .await
                .map_err(|_| InputError::Closed)?;
        }
        if let Some(seq) = seq {
            self.lock().in_seq = seq;
            self.bump(); // Connections ack client frames from here.
        }
        Ok(())
    }

    /// A CLI frame, before it is numbered: the gateway's plugins answer their own requests
    /// (written back to the CLI, never shown to the client), then the protocol extensions run
    /// (a reply goes back to the CLI). `None`: not for the client.
    fn cli_frame(&self, frame: Bytes) -> Option<Bytes> {
        let frame = match &self.plugins {
            Some(p) => match p.cli_frame(frame) {
                crate::plugins::FromCli::Forward(f) => f,
                crate::plugins::FromCli::Swallow => return None,
                crate::plugins::FromCli::Answer(id, answer) => {
                    let (input, p) = (self.input.clone(), p.clone());
                    tokio::spawn(async move {
                        let reply = answer.await;
                        let _ = input.send(WriterInput::Frame(reply)).await;
                        p.answered(&id);
                    });
                    return None;
                }
            },
            None => frame,
        };
        match &self.extensions {
            Some(ext) => {
                let (frame, reply) = ext.intercept(Direction::CliToSdk, frame);
                if let Some(reply) = reply {
                    let input = self.input.clone();
                    tokio::spawn(async move {
                        let _ = input.send(WriterInput::Frame(reply)).await;
                    });
                }
                frame
            }
            None => Some(frame),
        }
    }

    /// Number `frame` into the CLI → client stream as if the CLI had written it (the gateway's
    /// answer to a refused control request), so that it reaches the client and survives a
    /// resume. Never waits: past [`ANSWER_SLACK`] frames over the ring's capacity (a client that
    /// sends refused requests without reading) the answer is not queued and the error says so.
    fn answer_for_cli(&self, frame: Bytes) -> Result<(), String> {
        let message = String::from_utf8_lossy(&frame).into_owned();
        let mut st = self.lock();
        if st.ring.len() >= self.capacity + ANSWER_SLACK {
            return Err(format!(
                "a control request was refused and its answer could not be queued (the client \
                 is not reading): {message}"
            ));
        }
        st.push(frame, &self.budget);
        Ok(())
    }

    /// A frame of `size` bytes over the limit that a front already discarded as it streamed (the
    /// HTTP front never holds it): numbered like [`Session::to_cli`] numbers one (a duplicate is
    /// skipped, a gap refused) and refused with [`InputError::TooLarge`].
    pub(crate) async fn refuse_oversize(
        &self,
        seq: Option<u64>,
        size: usize,
    ) -> Result<(), InputError> {
        let _order = self.input_order.lock().await;
        if let Some(seq) = seq {
            let expected = self.lock().in_seq + 1;
            if seq < expected {
                return Ok(());
            }
            if seq > expected {
                return Err(InputError::Gap { expected, got: seq });
            }
            self.lock().in_seq = seq;
        }
        Err(InputError::TooLarge {
            limit: self.max_frame,
            size,
            seq,
        })
    }

    /// Ask the writer to close the CLI gracefully.
    pub(crate) fn request_close(&self) {
        self.closing.send_replace(true);
        self.bump();
    }

    /// Close the CLI and wait (bounded) until its process is gone and the pump has ended.
    async fn close(&self, grace: Duration) {
        self.request_close();
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        let pump = self.pump.lock().ok().and_then(|mut p| p.take());
        let wait = async {
            if let Some(w) = writer {
                let _ = w.await;
            }
            if let Some(p) = pump {
                let _ = p.await;
            }
        };
        if tokio::time::timeout(grace + Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            tracing::warn!(session = %self.id, "the CLI did not end in time after close");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.budget.give(st.ring_bytes);
    }
}

/// The sessions of one gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: GatewayConfig,
    /// The allowlisted part of the gateway's environment (see [`crate::tenancy`]).
    env: crate::config::EnvVars,
    state: Arc<StateDir>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions being created, per token: they count against the limit until they are in
    /// `sessions` or have failed. Locked only while `sessions` is held, or alone.
    reserved: Mutex<HashMap<TokenId, usize>>,
    shutting_down: AtomicBool,
    budget: Arc<ReplayBudget>,
    /// `conduit serve --redis`: sessions are served by workers (see [`crate::scale`]).
    redis: Option<crate::scale::RedisBackend>,
}

impl SessionManager {
    /// A manager for `config`; starts the reaper task (needs a tokio runtime).
    pub fn new(config: GatewayConfig) -> Self {
        let redis = match &config.redis {
            Some(settings) => match crate::scale::RedisBackend::new(settings.clone()) {
                Ok(b) => Some(b),
                Err(e) => {
                    // `Gateway::bind` checked the URL already; a manager built without it
                    // refuses every session instead.
                    tracing::error!(error = %e, "redis backend unusable");
                    None
                }
            },
            None => None,
        };
        let state = Arc::new(StateDir::new(
            config.state_dir_path(),
            config.tokens.any_user(),
        ));
        let all: Vec<(String, String)> = match &config.environment {
            Some(vars) => vars.0.clone(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        };
        let mut env: Vec<(String, String)> = all
            .iter()
            .filter(|(k, _)| crate::tenancy::env_allowed(k))
            .cloned()
            .collect();
        if config.cli_telemetry {
            env.extend(crate::tenancy::telemetry_env(&all));
        }
        let env = crate::config::EnvVars(env);
        let manager = Self {
            inner: Arc::new(Inner {
                env,
                state,
                sessions: Mutex::new(HashMap::new()),
                reserved: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                budget: Arc::new(ReplayBudget::new(config.replay_bytes_total)),
                redis,
                config,
            }),
        };
        let weak = Arc::downgrade(&manager.inner);
        let tick = manager
            .inner
            .config
            .grace
            .min(manager.inner.config.idle_timeout)
            .div_f64(4.0)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let manager = SessionManager { inner };
                if manager.inner.shutting_down.load(Ordering::Relaxed) {
                    break;
                }
                manager.reap().await;
            }
        });
        manager
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn new_id(&self) -> String {
        claude_conduit::remote::new_session_id()
    }

    fn reserved(&self) -> MutexGuard<'_, HashMap<TokenId, usize>> {
        self.inner
            .reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take one of `owner`'s session slots before anything is spawned: live sessions and
    /// sessions being created count, in one critical section, so concurrent creates cannot
    /// overshoot the limit. Dropping the reservation gives the slot back.
    fn reserve(&self, owner: TokenId) -> Result<Reservation<'_>, GatewayError> {
        let limit = self.inner.config.max_sessions_per_token;
        let sessions = self.sessions();
        let live = sessions
            .values()
            .filter(|s| s.owner == owner && s.lock().end.is_none())
            .count();
        let mut reserved = self.reserved();
        let pending = reserved.entry(owner).or_insert(0);
        if live + *pending >= limit {
            return Err(GatewayError::TooManySessions { limit });
        }
        *pending += 1;
        Ok(Reservation {
            manager: self,
            owner,
            held: true,
        })
    }

    /// Start a CLI for `owner` with `request` over the gateway's options template (with
    /// `--redis`: ask a worker to, see [`crate::scale`]).
    pub async fn create(
        &self,
        owner: TokenId,
        request: &SessionRequest,
    ) -> Result<SessionInfo, GatewayError> {
        let label = self.inner.config.tokens.label(owner);
        self.create_labeled(owner, &label, request).await
    }

    /// [`SessionManager::create`] for the token label `label` (a worker's sessions come with
    /// the label their gateway gave them; `owner` then only counts this manager's sessions).
    pub async fn create_labeled(
        &self,
        owner: TokenId,
        label: &str,
        request: &SessionRequest,
    ) -> Result<SessionInfo, GatewayError> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(GatewayError::ShuttingDown);
        }
        let config = &self.inner.config;
        let reservation = self.reserve(owner)?;
        let label = label.to_owned();
        if let Some(redis) = &self.inner.redis {
            let (id, conn) = redis
                .open(&label, request, config.max_sessions_per_token)
                .await?;
            let max_frame = config.options.max_frame_bytes();
            return self
                // Plugins act where the CLI runs: on the workers (`conduit worker --plugins`).
                .install(
                    owner,
                    label,
                    reservation,
                    conn,
                    Installed {
                        max_frame,
                        id: Some(id),
                        plugins: None,
                    },
                )
                .await;
        }
        if config.redis.is_some() {
            return Err(GatewayError::Redis(
                "the Redis backend is unusable (see the log)".into(),
            ));
        }
        let sandboxed;
        let template = if config.sandbox {
            let others: Vec<String> = (0..config.tokens.len())
                .map(|i| config.tokens.label(TokenId(i)))
                .filter(|l| *l != label)
                .collect();
            sandboxed = crate::tenancy::sandbox_settings(
                &config.options,
                self.inner.state.path(),
                &others,
                &config.protected,
            )
            .map_err(|message| {
                tracing::error!(error = %message, "the sandboxed session template cannot be built");
                GatewayError::Config(ConfigError::Invalid {
                    key: "sandbox",
                    message,
                })
            })?;
            &sandboxed
        } else {
            &config.options
        };
        let prepared = config.policy.prepare(template, request)?;
        for (flag, id) in &prepared.conversations {
            if self.inner.state.owner(id).is_some_and(|o| o != label) {
                tracing::warn!(token = %label, flag = %flag, "refused another token's conversation");
                return Err(GatewayError::InvalidOptions(format!(
                    "`--{flag}`: conversation {id} belongs to another token"
                )));
            }
        }
        let state_error = |e: std::io::Error| {
            tracing::error!(token = %label, error = %e, "cannot prepare a session's directory");
            GatewayError::StateDir(e)
        };
        let user = match config
            .tokens
            .user(owner)
            .filter(|_| config.tokens.label(owner) == label)
        {
            Some(name) => Some(OsUser::lookup(name).map_err(state_error)?),
            None => None,
        };
        // The allowlisted environment (never the gateway's whole one), then the template's.
        let mut env = self.inner.env.0.clone();
        let mut b = prepared.options.to_builder();
        if let Some(u) = &user {
            env.retain(|(k, _)| k != "HOME" && k != "USER");
            env.push(("HOME".into(), u.home.to_string_lossy().into_owned()));
            env.push(("USER".into(), u.name.clone()));
            b = b.user(&u.name);
        }
        // The session's trace (the span of the request creating it), for the CLI's telemetry.
        if let Some(tp) = claude_conduit::telemetry::traceparent() {
            env.push(("TRACEPARENT".into(), tp));
        }
        b = b.base_env(env);
        // No cwd from the client or the template: the token's own work directory.
        if prepared.options.cwd().is_none() {
            b = b.cwd(
                self.inner
                    .state
                    .work_dir(&label, user.as_ref())
                    .map_err(state_error)?,
            );
        }
        let plugins = config
            .plugins
            .as_ref()
            .and_then(crate::plugins::SessionPlugins::new);
        if let Some(p) = &plugins {
            for server in p.servers() {
                b = b.sdk_mcp_server(server.clone());
            }
        }
        let options = b.build();
        let spawn_error = |e: claude_conduit::Error| {
            tracing::error!(token = %label, error = %e, "cannot start a session's CLI");
            GatewayError::Spawn(e)
        };
        let transport = options.subprocess_transport().map_err(spawn_error)?;
        let conn = transport.connect().await.map_err(spawn_error)?;
        // The CLI has started in the opened directory: the descriptor may go.
        drop(prepared.cwd);
        self.install(
            owner,
            label,
            reservation,
            conn,
            Installed {
                max_frame: options.max_frame_bytes(),
                id: None,
                plugins,
            },
        )
        .await
    }

    /// A started connection to a CLI (a child, or a worker's through Redis) as a session: its
    /// writer and pump tasks, its place in the table. `id`: the session's id when it has one
    /// already (a Redis session's).
    async fn install<S: FrameSender, R: FrameReceiver>(
        &self,
        owner: TokenId,
        label: String,
        mut reservation: Reservation<'_>,
        conn: claude_conduit::transport::Connection<S, R>,
        installed: Installed,
    ) -> Result<SessionInfo, GatewayError> {
        let Installed {
            max_frame,
            id,
            plugins,
        } = installed;
        let config = &self.inner.config;
        let (input_tx, input_rx) = mpsc::channel(64);
        let (closing, closing_rx) = watch::channel(false);
        let id = id.unwrap_or_else(|| self.new_id());
        let session = Arc::new(Session {
            live: crate::metrics::LiveSession::new(id.clone()),
            id,
            owner,
            label: label.clone(),
            pid: conn.info.pid,
            created: SystemTime::now(),
            capacity: config.replay_frames,
            max_bytes: config.replay_bytes,
            budget: self.inner.budget.clone(),
            state: Mutex::new(State::new(
                config
                    .frame_rate
                    .map(|(rate, burst)| RateLimiter::new(rate, burst, Instant::now())),
            )),
            events: watch::channel(0).0,
            input: input_tx,
            input_order: tokio::sync::Mutex::new(()),
            max_frame,
            policy: Arc::new(config.policy.clone()),
            extensions: crate::plugins::SessionPlugins::session_extensions(
                config.extensions.as_ref(),
                plugins.as_ref(),
            ),
            plugins,
            closing,
            writer: Mutex::new(None),
            pump: Mutex::new(None),
        });
        // The session's span: a child of the request that created it; ends with its tasks.
        let span =
            tracing::info_span!("gateway.session", session = %session.id, pid = ?session.pid);
        let writer = tokio::spawn(
            writer_task(
                conn.sender,
                input_rx,
                closing_rx.clone(),
                config.close_grace,
            )
            .instrument(span.clone()),
        );
        let pump = tokio::spawn(
            pump_task(
                session.clone(),
                conn.receiver,
                closing_rx,
                self.inner.state.clone(),
            )
            .instrument(span),
        );
        *session
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(writer);
        *session
            .pump
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pump);
        tracing::info!(session = %session.id, token = %label, pid = ?session.pid, "session created");
        let info = session.info();
        {
            let mut sessions = self.sessions();
            sessions.insert(session.id.clone(), session);
            reservation.release();
        }
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            // Raced with shutdown: do not leave a CLI behind.
            self.delete(owner, &info.id).await;
            return Err(GatewayError::ShuttingDown);
        }
        Ok(info)
    }

    /// The sessions `owner` holds.
    pub fn list(&self, owner: TokenId) -> Vec<SessionInfo> {
        let sessions: Vec<_> = self
            .sessions()
            .values()
            .filter(|s| s.owner == owner)
            .cloned()
            .collect();
        let mut infos: Vec<_> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by_key(|i| i.created_unix_ms);
        infos
    }

    /// `owner`'s session `id`.
    pub fn get(&self, owner: TokenId, id: &str) -> Option<Arc<Session>> {
        self.sessions()
            .get(id)
            .filter(|s| s.owner == owner)
            .cloned()
    }

    /// Close `owner`'s session `id` and wait until its CLI is gone. False if there is none.
    pub async fn delete(&self, owner: TokenId, id: &str) -> bool {
        let session = {
            let mut sessions = self.sessions();
            match sessions.get(id) {
                Some(s) if s.owner == owner => sessions.remove(id),
                _ => None,
            }
        };
        match session {
            Some(s) => {
                tracing::info!(session = %s.id, "session deleted");
                s.close(self.inner.config.close_grace).await;
                true
            }
            None => false,
        }
    }

    /// Disconnect the client attached to session `id` abruptly (the session lives on for the
    /// grace period). For operators and fault drills.
    pub fn kick(&self, id: &str) -> bool {
        let Some(s) = self.sessions().get(id).cloned() else {
            return false;
        };
        {
            let mut st = s.lock();
            st.kicked = st.attached;
            st.attached = 0;
            st.detached_since = Some(Instant::now());
        }
        s.bump();
        true
    }

    /// Close sessions whose client has been gone longer than the grace period, or that have
    /// been idle longer than the idle timeout.
    async fn reap(&self) {
        let config = &self.inner.config;
        let budget = &self.inner.budget;
        if budget.starved.swap(false, Ordering::SeqCst) {
            // A session waits for gateway-wide room: frames acked anywhere make it.
            let all: Vec<_> = self.sessions().values().cloned().collect();
            for s in all {
                s.lock().pop_acked_while(budget, |_| true);
            }
            // The waiting pumps look again (and say so again if there is still no room).
            budget.wake();
        }
        let now = Instant::now();
        let expired: Vec<_> = self
            .sessions()
            .values()
            .filter(|s| s.lock().expired(now, config.grace, config.idle_timeout))
            .map(|s| (s.owner, s.id.clone()))
            .collect();
        for (owner, id) in expired {
            tracing::info!(session = %id, "reaping session");
            self.delete(owner, &id).await;
        }
    }

    /// Close every session's CLI and refuse new ones.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let all: Vec<_> = self.sessions().drain().map(|(_, s)| s).collect();
        for s in &all {
            s.lock().shutting_down = true;
        }
        let grace = self.inner.config.close_grace;
        futures::future::join_all(all.iter().map(|s| s.close(grace))).await;
    }

    /// Bytes the replay rings of every session hold together (at most about the gateway-wide
    /// replay budget: see [`GatewayConfig::replay_bytes_total`]).
    pub fn replay_bytes(&self) -> usize {
        self.inner.budget.used.load(Ordering::Relaxed)
    }

    /// How many sessions exist.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    /// True when there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Process ids of every live session's CLI.
    pub fn pids(&self) -> Vec<u32> {
        self.sessions().values().filter_map(|s| s.pid).collect()
    }
}

/// A session slot taken by [`SessionManager::reserve`]; given back when released or dropped.
struct Reservation<'a> {
    manager: &'a SessionManager,
    owner: TokenId,
    held: bool,
}

impl Reservation<'_> {
    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            let mut reserved = self.manager.reserved();
            if let Some(n) = reserved.get_mut(&self.owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    reserved.remove(&self.owner);
                }
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Client → CLI: write frames; on `closing`, close the CLI gracefully.
async fn writer_task<S: FrameSender>(
    mut sender: S,
    mut input: mpsc::Receiver<WriterInput>,
    mut closing: watch::Receiver<bool>,
    grace: Duration,
) {
    loop {
        if *closing.borrow_and_update() {
            break;
        }
        tokio::select! {
            _ = closing.changed() => {}
            msg = input.recv() => match msg {
                Some(WriterInput::Frame(frame)) => {
                    tokio::select! {
                        r = sender.send(frame) => if let Err(e) = r {
                            tracing::debug!(error = %e, "writing to the CLI failed");
                        },
                        _ = closing.changed() => {}
                    }
                }
                Some(WriterInput::EndInput) => {
                    let _ = sender.end_input().await;
                }
                None => break,
            },
        }
    }
    let _ = sender.close(grace).await;
}

/// CLI → ring: number frames, wait for room (acks), record the end.
async fn pump_task<R: FrameReceiver>(
    session: Arc<Session>,
    mut receiver: R,
    closing: watch::Receiver<bool>,
    state: Arc<StateDir>,
) {
    let mut events = session.subscribe();
    let mut freed = session.budget.freed.subscribe();
    // Frames pushed since the last wake-up of the connection: one wake-up per batch of frames
    // that were already there to read, not one per frame.
    let mut unannounced = 0usize;
    let end = loop {
        let item = if unannounced == 0 {
            receiver.recv().await
        } else if unannounced < PUMP_BATCH
            && let Some(item) = receiver.recv().now_or_never()
        {
            item
        } else {
            session.bump();
            unannounced = 0;
            receiver.recv().await
        };
        match item {
            Ok(Received::Frame(frame)) => {
                // The conversation this session's CLI runs belongs to its token (item: another
                // token may not `--resume` it).
                if let Some(id) = crate::tenancy::init_session_id(&frame) {
                    state.record(&id, &session.label);
                }
                let Some(frame) = session.cli_frame(frame) else {
                    continue;
                };
                if frame.starts_with(br#"{"type":"result""#) {
                    session.live.turn();
                }
                let mut frame = Some(frame);
                while let Some(f) = frame.take() {
                    events.borrow_and_update();
                    freed.borrow_and_update();
                    {
                        let mut st = session.lock();
                        let (len, budget) = (f.len(), &*session.budget);
                        // Clients ack every ACK_EVERY frames: the byte budgets hold back a
                        // session only once that many frames wait for an ack.
                        let waiting = |st: &State| st.last_seq - st.acked >= ACK_EVERY;
                        let full = |st: &State| {
                            st.ring.len() >= session.capacity
                                || (st.ring_bytes + len > session.max_bytes && waiting(st))
                        };
                        let over = |st: &State| budget.over(len) && waiting(st);
                        // Room from frames the client acked: for this session's frame and
                        // byte budgets, and for the gateway-wide one.
                        st.pop_acked_while(budget, |st| full(st) || budget.over(len));
                        let fits = st.ring.is_empty() || !(full(&st) || over(&st));
                        // A closing session has no reader left: stop keeping frames.
                        if fits || *closing.borrow() {
                            while !st.ring.is_empty() && full(&st) {
                                st.pop(budget);
                            }
                            st.push(f, budget);
                            unannounced += 1;
                            continue;
                        }
                        if !full(&st) {
                            // Only the gateway-wide budget is in the way. Say so, then look
                            // again: room freed before `give` could see the flag is found here.
                            budget.starved.store(true, Ordering::SeqCst);
                            if !over(&st) {
                                frame = Some(f);
                                continue;
                            }
                        }
                    }
                    frame = Some(f);
                    // Full of unacked frames: let the connection send them, then wait for an
                    // ack (or for the session to close).
                    // (Our own bump wakes this loop once more: it then finds the ring still
                    // full and waits. Marking the bump seen here instead would also swallow an
                    // ack that landed since the check above, and stall until the next ping.)
                    if unannounced > 0 {
                        session.bump();
                        unannounced = 0;
                    }
                    tokio::select! {
                        r = events.changed() => if r.is_err() { break },
                        _ = freed.changed() => {}
                    }
                }
            }
            Ok(Received::Bad(e)) => {
                tracing::warn!(session = %session.id, error = %e, "frame skipped");
            }
            Ok(Received::End) => break receiver.termination().unwrap_or_default(),
            // Outcomes a newer SDK may add: nothing to deliver.
            Ok(other) => tracing::warn!(session = %session.id, ?other, "frame skipped"),
            Err(e) => {
                if let claude_conduit::Error::SessionLost { worker, .. } = &e {
                    session.lock().lost = Some(worker.clone());
                }
                let mut t = Termination::default();
                t.stderr_tail = e.to_string();
                break t;
            }
        }
    };
    tracing::info!(session = %session.id, code = ?end.code, signal = ?end.signal, "CLI ended");
    session.lock().end = Some(end);
    session.bump();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grace period and idle timeout on tokio's paused clock: exact, no sleeping.
    #[tokio::test(start_paused = true)]
    async fn the_reaper_counts_grace_and_idle_time_on_the_runtime_clock() {
        let (grace, idle) = (Duration::from_secs(60), Duration::from_secs(1800));
        let tick = Duration::from_millis(1);
        let mut st = State::new(None);
        tokio::time::advance(grace).await;
        assert!(
            !st.expired(Instant::now(), grace, idle),
            "at the grace period"
        );
        tokio::time::advance(tick).await;
        assert!(
            st.expired(Instant::now(), grace, idle),
            "past the grace period"
        );
        // An attached client keeps it, until nothing happens for the idle timeout.
        st.attached = 1;
        assert!(!st.expired(Instant::now(), grace, idle));
        tokio::time::advance(idle - grace - tick).await;
        assert!(
            !st.expired(Instant::now(), grace, idle),
            "at the idle timeout"
        );
        tokio::time::advance(tick).await;
        assert!(st.expired(Instant::now(), grace, idle), "idle");
        // Traffic resets the idle clock.
        st.push(Bytes::from_static(b"{}"), &ReplayBudget::new(1 << 20));
        assert!(!st.expired(Instant::now(), grace, idle));
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 3, t0);
        for _ in 0..3 {
            assert_eq!(r.take(t0), None);
        }
        let wait = r.take(t0).expect("the burst is spent");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // A tenth of a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.take(t1), None);
        assert!(r.take(t1).is_some());
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(r.take(t2), None);
        }
        assert!(r.take(t2).is_some());
    }
}
