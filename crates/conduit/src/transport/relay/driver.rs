//! The one client driver: a task that owns the connection of any [`Wire`], keeps the
//! [`SeqState`] across reconnects and follows the [`ReconnectPolicy`]; the [`GatewaySender`] and
//! [`GatewayReceiver`] halves talk to it through bounded channels, so backpressure reaches the
//! connection.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::wire::{ErrorInfo, Hello, kind};
use super::{Accept, Failure, ReconnectPolicy, SeqState};
use crate::error::{Error, GatewayErrorKind, Result};
use crate::transport::{
    Connection, ConnectionInfo, FrameReceiver, FrameSender, Received, Termination, TransportMetrics,
};

/// How long a fresh connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failed connection may stay silent while the driver takes what it still delivers.
const DRAIN_WAIT: Duration = Duration::from_millis(250);
/// Messages queued between the halves and the driver.
const QUEUE: usize = 64;
/// Frames handed to the receiving half in one event: a busy stream costs the channel (and a
/// wake of the reader) once per batch, not per frame. With [`EVENTS`] events queued at most
/// 256 frames wait between the driver and the reader (the connection holds the rest).
const EVENT_FRAMES: usize = 64;
/// Events queued toward the receiving half.
const EVENTS: usize = 4;
/// Frames up to this size are copied into the driver's own buffer on wires that ask for it
/// ([`WireConn::REPACK`]); larger ones are handed over as they came.
const PACK_MAX: usize = 4 * 1024;
/// The first buffer such frames are copied into after a pause of the stream; each next one
/// (when the last has no room left) is twice as large, up to [`PACK_BYTES`]. A quiet stream's
/// frame pins no more than tungstenite's own 8 KiB read buffer did (for a client that keeps its
/// messages), a busy stream soon copies into large buffers.
const PACK_START: usize = 8 * 1024;
/// The largest buffer frames are copied into.
const PACK_BYTES: usize = 32 * 1024;
/// Messages taken in at most before the driver acks and looks at the sending half again.
const DRAIN_MAX: usize = 1024;
/// How long a delivered frame goes unacked at most: a quiet stream acks its last few frames
/// (fewer than [`ACK_EVERY`](super::ACK_EVERY)) after this, so the gateway keeps no frames
/// of an idle session (nor the read buffer they share).
pub(crate) const IDLE_ACK: Duration = Duration::from_millis(25);

/// What arrives from the gateway on a connection.
#[derive(Debug)]
pub(crate) enum Incoming {
    Hello(Hello),
    Frame(u64, Bytes),
    InAck(u64),
    /// The gateway refused one of our frames; the stream goes on.
    Refused(Error),
    End(Termination),
}

/// What the driver sends to the gateway.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(u64, Bytes),
    Ack(u64),
    EndInput,
    Close,
}

/// One wire (WebSocket, HTTP + server-sent events, gRPC): how to open a connection to the
/// session that resumes after a sequence number. Adapters only encode and decode; sequencing,
/// acks, resends and reconnects are the driver's.
pub(crate) trait Wire: Send + Sync + 'static {
    /// An open connection.
    type Conn: WireConn;
    /// Open a connection resuming after gateway frame `after`.
    fn open(&self, after: u64) -> impl Future<Output = Result<Self::Conn, Failure>> + Send;
}

/// An open connection of a [`Wire`].
pub(crate) trait WireConn: Send + 'static {
    /// The next message. Cancel-safe. An `Err` ends the connection.
    fn recv(&mut self) -> impl Future<Output = Result<Incoming, Failure>> + Send;
    /// Send one message (waits for room).
    fn send(&mut self, out: Outgoing) -> impl Future<Output = Result<(), Failure>> + Send;
    /// Whether the driver copies this wire's small frames ([`PACK_MAX`] bytes at most) into a
    /// buffer of its own before handing them over. For a wire whose frames share small read
    /// buffers of the wire's library (tungstenite's): those buffers then go back to the
    /// allocator on the driver's thread, at once, and what travels to the reader (and to the
    /// thread that drops the messages) is one buffer per [`PACK_BYTES`], not one per few frames.
    /// Freeing memory on another thread than the one that allocated it contends on the
    /// allocator's locks; that, measured, was the WebSocket client's largest cost on a busy
    /// stream (docs/PERFORMANCE.md).
    const REPACK: bool = false;

    /// Leave politely (a close frame, …), after the session ended or nobody reads any more.
    fn finish(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// The error for a refusal the gateway sent about one of our frames.
pub(crate) fn refusal_error(info: ErrorInfo) -> Error {
    if info.kind == kind::FRAME_TOO_LARGE {
        let n = |v: Option<u64>| v.and_then(|v| usize::try_from(v).ok()).unwrap_or(0);
        return Error::FrameTooLarge {
            limit: n(info.limit),
            size: n(info.size),
        };
    }
    Error::gateway(GatewayErrorKind::from_wire(&info.kind), None, info.message)
}

/// What the sending half asks the driver to do.
#[derive(Debug)]
enum Out {
    Frame(Bytes),
    EndInput,
    /// Close the session; answered once it went out.
    Close(oneshot::Sender<()>),
}

/// What the driver hands the receiving half.
#[derive(Debug)]
enum Event {
    /// Frames in order: what one read batch delivered (at most [`EVENT_FRAMES`]).
    Frames(Vec<Bytes>),
    Refused(Error),
    End(Termination),
    Failed(Error),
}

/// Open `wire` (resuming from the start), wait for its hello and start the driver.
pub(crate) async fn connect<W: Wire>(
    wire: W,
    max_frame: usize,
    policy: ReconnectPolicy,
    description: String,
) -> Result<Connection<GatewaySender, GatewayReceiver>> {
    let started = Instant::now();
    let mut seq = SeqState::new();
    let name = crate::transport::metrics::wire_label(std::any::type_name::<W>());
    let (conn, hello) = greet_traced(&wire, &mut seq, name, 0)
        .await
        .map_err(Failure::into_error)?;
    let metrics = Arc::new(TransportMetrics::default());
    metrics.set_connect_time(started.elapsed());
    // The gateway's limit is known before the first send.
    let limit = match usize::try_from(hello.max_frame_bytes) {
        Ok(l) if l > 0 => l,
        _ => max_frame,
    };
    let limit = Arc::new(AtomicUsize::new(limit));
    let (out_tx, out_rx) = mpsc::channel(QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENTS);
    tokio::spawn(
        Driver {
            wire,
            seq,
            policy,
            metrics: metrics.clone(),
            out: out_rx,
            out_open: true,
            events: ev_tx,
            delivered: Vec::new(),
            pack: Pack::default(),
            limit: limit.clone(),
            name,
        }
        .run(conn, hello)
        // Reconnects carry the trace of the span that connected.
        .in_current_span(),
    );
    Ok(Connection {
        sender: GatewaySender {
            tx: Some(out_tx),
            input_ended: false,
            metrics: metrics.clone(),
            limit,
        },
        receiver: GatewayReceiver {
            rx: ev_rx,
            batch: Vec::new().into_iter(),
            ended: None,
        },
        metrics,
        info: ConnectionInfo {
            description,
            ..ConnectionInfo::default()
        },
    })
}

/// [`greet`] in a `conduit.transport.connect` span (`wire`, `attempt`: 0 for the first
/// connection, n for the n-th try of a reconnect; `outcome`: `ok` | `retry` | `fatal`).
async fn greet_traced<W: Wire>(
    wire: &W,
    seq: &mut SeqState,
    name: &'static str,
    attempt: u32,
) -> Result<(W::Conn, Hello), Failure> {
    let span = tracing::info_span!(
        "conduit.transport.connect",
        wire = name,
        attempt,
        outcome = tracing::field::Empty,
    );
    let r = greet(wire, seq).instrument(span.clone()).await;
    if !span.is_disabled() {
        let outcome = match &r {
            Ok(_) => "ok",
            Err(Failure::Transient(_)) => "retry",
            Err(Failure::Fatal(_)) => "fatal",
        };
        span.record("outcome", outcome);
    }
    r
}

/// Open a connection resuming after what `seq` delivered and read its hello.
async fn greet<W: Wire>(wire: &W, seq: &mut SeqState) -> Result<(W::Conn, Hello), Failure> {
    let mut conn = wire.open(seq.resume_after()).await?;
    seq.on_connect();
    match tokio::time::timeout(HELLO_TIMEOUT, conn.recv()).await {
        Ok(Ok(Incoming::Hello(h))) => Ok((conn, h)),
        Ok(Ok(other)) => Err(Failure::Fatal(Error::gateway(
            GatewayErrorKind::Protocol,
            None,
            format!("expected a hello, got {other:?}"),
        ))),
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure::Transient(Error::gateway(
            GatewayErrorKind::Unavailable,
            None,
            "no hello from the gateway in time",
        ))),
    }
}

struct Driver<W: Wire> {
    wire: W,
    seq: SeqState,
    policy: ReconnectPolicy,
    metrics: Arc<TransportMetrics>,
    out: mpsc::Receiver<Out>,
    out_open: bool,
    events: mpsc::Sender<Event>,
    /// Frames accepted and not yet handed over (sent as one [`Event::Frames`]).
    delivered: Vec<Bytes>,
    /// Where small frames are copied on a [`WireConn::REPACK`] wire.
    pack: Pack,
    /// The frame-size limit the sending half enforces (the gateway's, once it said).
    limit: Arc<AtomicUsize>,
    /// The wire's metric label (`ws`, `http`, `grpc`, `redis`).
    name: &'static str,
}

impl<W: Wire> Driver<W> {
    async fn run(mut self, mut conn: W::Conn, mut hello: Hello) {
        loop {
            let failure = match self.pump(&mut conn, hello).await {
                Ok(()) => {
                    conn.finish().await;
                    return;
                }
                Err(f) => f,
            };
            // A write can fail because the gateway already finished: it may have sent the rest
            // of the session and ended the call before our last write (a resent end of input
            // after a reconnect). Take what the connection still delivers before reconnecting.
            if matches!(failure, Failure::Transient(_)) && self.drain(&mut conn).await {
                conn.finish().await;
                return;
            }
            drop(conn);
            let failure = match failure {
                Failure::Transient(e) => {
                    tracing::debug!(error = %e, after = self.seq.resume_after(), "gateway connection dropped");
                    match self.reconnect(e).await {
                        Ok(Some((c, h))) => {
                            (conn, hello) = (c, h);
                            continue;
                        }
                        Ok(None) => return, // Nobody reads any more.
                        Err(e) => e,
                    }
                }
                Failure::Fatal(e) => e,
            };
            self.metrics.error();
            if !self.hand_over().await {
                let _ = self.events.send(Event::Failed(failure)).await;
            }
            return;
        }
    }

    /// Reconnect per the policy, in a `conduit.transport.reconnect` span (`wire`,
    /// `resume_after`, `attempts`, `outcome`: `ok` | `gave_up` | `fatal` | `abandoned`) whose
    /// children are the attempts. `Ok(None)`: nobody reads any more, stop quietly.
    async fn reconnect(&mut self, last: Error) -> Result<Option<(W::Conn, Hello)>> {
        let span = tracing::info_span!(
            "conduit.transport.reconnect",
            wire = self.name,
            resume_after = self.seq.resume_after(),
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let (r, attempts, outcome) = self.try_reconnect(last).instrument(span.clone()).await;
        span.record("attempts", attempts);
        span.record("outcome", outcome);
        r
    }

    /// The attempts of [`reconnect`](Self::reconnect), how many were made and the outcome.
    async fn try_reconnect(
        &mut self,
        mut last: Error,
    ) -> (Result<Option<(W::Conn, Hello)>>, u32, &'static str) {
        for attempt in 0..self.policy.attempts {
            let (wire, seq, events) = (&self.wire, &mut self.seq, &self.events);
            let delay = self.policy.delay(attempt);
            let name = self.name;
            let greeted = tokio::select! {
                () = events.closed() => return (Ok(None), attempt, "abandoned"),
                g = async {
                    tokio::time::sleep(delay).await;
                    greet_traced(wire, seq, name, attempt + 1).await
                } => g,
            };
            match greeted {
                Ok(c) => {
                    self.metrics.reconnect();
                    return (Ok(Some(c)), attempt + 1, "ok");
                }
                Err(Failure::Fatal(e)) => return (Err(e), attempt + 1, "fatal"),
                Err(Failure::Transient(e)) => last = e,
            }
        }
        let r = Err(Error::gateway_caused(
            GatewayErrorKind::Unavailable,
            None,
            format!(
                "reconnecting to the gateway: gave up after {} attempts",
                self.policy.attempts
            ),
            last,
        ));
        (r, self.policy.attempts, "gave_up")
    }

    /// Take in a hello: the gateway's limit, which of our frames it has; resend the rest, then
    /// an end of input or close asked for before.
    async fn on_hello(&mut self, conn: &mut W::Conn, hello: Hello) -> Result<(), Failure> {
        if let Ok(limit) = usize::try_from(hello.max_frame_bytes)
            && limit > 0
        {
            self.limit.store(limit, Ordering::Relaxed);
        }
        let resend = self.seq.on_hello(hello.in_seq);
        for (seq, frame) in resend.frames {
            conn.send(Outgoing::Frame(seq, frame)).await?;
        }
        if resend.end_input {
            conn.send(Outgoing::EndInput).await?;
        }
        if resend.close {
            conn.send(Outgoing::Close).await?;
        }
        Ok(())
    }

    /// Take in one message from the gateway other than a hello. `Ok(true)`: stop (the session
    /// ended or nobody reads any more).
    async fn take_in(&mut self, m: Incoming) -> Result<bool, Failure> {
        match m {
            Incoming::Frame(seq, data) => match self.seq.accept(seq) {
                Accept::Skip => {}
                Accept::Deliver => {
                    self.metrics.frame_received(data.len());
                    if self.delivered.capacity() == 0 {
                        // Room for a whole event at once (not grown a frame at a time).
                        self.delivered.reserve_exact(EVENT_FRAMES);
                    }
                    let data = if W::Conn::REPACK {
                        self.pack.copy(data)
                    } else {
                        data
                    };
                    self.delivered.push(data);
                    if self.delivered.len() >= EVENT_FRAMES && self.hand_over().await {
                        return Ok(true);
                    }
                }
                Accept::Gap { expected, got } => {
                    return Err(Failure::Fatal(Error::gateway(
                        GatewayErrorKind::Protocol,
                        None,
                        format!("gap in sequence numbers: {got} arrived, {expected} expected"),
                    )));
                }
            },
            Incoming::InAck(n) => self.seq.confirm(n),
            Incoming::Hello(_) => {}
            Incoming::Refused(e) => {
                self.metrics.error();
                if self.hand_over().await || self.events.send(Event::Refused(e)).await.is_err() {
                    return Ok(true);
                }
            }
            Incoming::End(t) => {
                if !self.hand_over().await {
                    let _ = self.events.send(Event::End(t)).await;
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Hand the frames taken in so far to the receiving half. `true`: nobody reads any more.
    async fn hand_over(&mut self) -> bool {
        if self.delivered.is_empty() {
            return false;
        }
        let frames = std::mem::take(&mut self.delivered);
        self.events.send(Event::Frames(frames)).await.is_err()
    }

    /// Take in `first` and then whatever else the connection has ready (what already arrived),
    /// up to [`DRAIN_MAX`] messages, so that the ack that follows covers the whole batch: a
    /// busy stream is acked once per read, not once per [`ACK_EVERY`](super::ACK_EVERY)
    /// frames. The gateway stops sending only with that many frames unacked, and then nothing
    /// more arrives: the drain ends and the ack goes out. `Ok(true)`: stop.
    async fn take_in_ready(
        &mut self,
        conn: &mut W::Conn,
        first: Incoming,
    ) -> Result<bool, Failure> {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(m) = next.take() {
            match m {
                Incoming::Hello(h) => self.on_hello(conn, h).await?,
                m => {
                    if self.take_in(m).await? {
                        return Ok(true);
                    }
                }
            }
            taken += 1;
            if taken < DRAIN_MAX
                && let Some(m) = conn.recv().now_or_never()
            {
                match m {
                    Ok(m) => next = Some(m),
                    Err(f) => {
                        // What was taken in before the failure is delivered all the same.
                        if self.hand_over().await {
                            return Ok(true);
                        }
                        return Err(f);
                    }
                }
            }
        }
        // The stream paused: the room left in the pack buffer goes with the frames that use it.
        self.pack = Pack::default();
        Ok(self.hand_over().await)
    }

    /// After a failure: what the connection still delivers (each read bounded by
    /// [`DRAIN_WAIT`]). `true`: the session ended (or nobody reads) while draining.
    async fn drain(&mut self, conn: &mut W::Conn) -> bool {
        while let Ok(Ok(m)) = tokio::time::timeout(DRAIN_WAIT, conn.recv()).await {
            match self.take_in(m).await {
                Ok(false) => {
                    if self.hand_over().await {
                        return true;
                    }
                }
                Ok(true) => return true,
                Err(_) => return self.hand_over().await,
            }
        }
        self.hand_over().await
    }

    /// Move messages on one connection until it ends. `Ok`: stop (the session ended or nobody
    /// reads any more).
    async fn pump(&mut self, conn: &mut W::Conn, hello: Hello) -> Result<(), Failure> {
        self.on_hello(conn, hello).await?;
        // Armed when a frame goes unacked; when it fires, whatever is unacked is acked.
        let idle_ack = tokio::time::sleep(IDLE_ACK);
        tokio::pin!(idle_ack);
        let mut idle_armed = false;
        loop {
            if let Some(n) = self.seq.take_ack() {
                conn.send(Outgoing::Ack(n)).await?;
            }
            if !idle_armed && self.seq.unacked() {
                idle_ack
                    .as_mut()
                    .reset(tokio::time::Instant::now() + IDLE_ACK);
                idle_armed = true;
            }
            tokio::select! {
                () = &mut idle_ack, if idle_armed => {
                    idle_armed = false;
                    if let Some(n) = self.seq.take_idle_ack() {
                        conn.send(Outgoing::Ack(n)).await?;
                    }
                }
                m = conn.recv() => {
                    if self.take_in_ready(conn, m?).await? {
                        return Ok(());
                    }
                }
                out = self.out.recv(), if self.out_open => match out {
                    Some(Out::Frame(f)) => {
                        let seq = self.seq.push(f.clone());
                        conn.send(Outgoing::Frame(seq, f)).await?;
                    }
                    Some(Out::EndInput) => {
                        if self.seq.end_input() {
                            conn.send(Outgoing::EndInput).await?;
                        }
                    }
                    Some(Out::Close(done)) => {
                        if self.seq.close() {
                            conn.send(Outgoing::Close).await?;
                        }
                        let _ = done.send(());
                    }
                    None => self.out_open = false,
                },
                () = self.events.closed() => return Ok(()),
            }
        }
    }
}

/// The buffer a [`WireConn::REPACK`] wire's small frames are copied into (its unused room),
/// and the size of the next one.
#[derive(Debug)]
struct Pack {
    buf: BytesMut,
    next: usize,
}

impl Default for Pack {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            next: PACK_START,
        }
    }
}

impl Pack {
    /// `frame` copied to the end of the buffer (a new one when it has no room: `next` bytes,
    /// the one after that twice as large, up to [`PACK_BYTES`]), or `frame` itself when it is
    /// larger than [`PACK_MAX`].
    fn copy(&mut self, frame: Bytes) -> Bytes {
        if frame.len() > PACK_MAX {
            return frame;
        }
        if self.buf.capacity() - self.buf.len() < frame.len() {
            self.buf = BytesMut::with_capacity(self.next.max(frame.len()));
            self.next = (self.next * 2).min(PACK_BYTES);
        }
        self.buf.extend_from_slice(&frame);
        self.buf.split().freeze()
    }
}

/// The sending half of a gateway connection (every wire).
#[derive(Debug)]
pub struct GatewaySender {
    tx: Option<mpsc::Sender<Out>>,
    input_ended: bool,
    metrics: Arc<TransportMetrics>,
    limit: Arc<AtomicUsize>,
}

impl FrameSender for GatewaySender {
    /// Send one frame: numbered, kept until the gateway confirms it, resent after a reconnect.
    /// A frame over the gateway's limit is refused here with [`Error::FrameTooLarge`].
    async fn send(&mut self, frame: Bytes) -> Result<()> {
        let tx = match &self.tx {
            Some(tx) if !self.input_ended => tx,
            _ => return Err(Error::Closed),
        };
        let len = frame.len();
        let limit = self.limit.load(Ordering::Relaxed);
        if len > limit {
            return Err(Error::FrameTooLarge { limit, size: len });
        }
        tx.send(Out::Frame(frame))
            .await
            .map_err(|_| Error::Closed)?;
        self.metrics.frame_sent(len);
        Ok(())
    }

    /// End the CLI's input, after the frames sent before. Survives reconnects (resent after
    /// each hello; idempotent on the gateway).
    async fn end_input(&mut self) -> Result<()> {
        if !std::mem::replace(&mut self.input_ended, true)
            && let Some(tx) = &self.tx
        {
            let _ = tx.send(Out::EndInput).await;
        }
        Ok(())
    }

    /// Ask the gateway to close the CLI gracefully (end input, wait, signal, with the
    /// gateway's grace); the receiving half then ends with the CLI's termination. Waits until
    /// the request went out, at most `grace` + 10 s.
    async fn close(mut self, grace: Duration) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(Out::Close(done_tx)).await.is_ok() {
                let _ = tokio::time::timeout(grace + Duration::from_secs(10), done_rx).await;
            }
        }
        Ok(())
    }
}

/// The receiving half of a gateway connection (every wire).
#[derive(Debug)]
pub struct GatewayReceiver {
    rx: mpsc::Receiver<Event>,
    /// The rest of the last [`Event::Frames`].
    batch: std::vec::IntoIter<Bytes>,
    ended: Option<Termination>,
}

impl FrameReceiver for GatewayReceiver {
    async fn recv(&mut self) -> Result<Received> {
        loop {
            if let Some(f) = self.batch.next() {
                if self.batch.len() == 0 {
                    // The batch's memory goes now, not when the next one comes.
                    self.batch = Vec::new().into_iter();
                }
                return Ok(Received::Frame(f));
            }
            if self.ended.is_some() {
                return Ok(Received::End);
            }
            return match self.rx.recv().await {
                Some(Event::Frames(frames)) => {
                    self.batch = frames.into_iter();
                    continue;
                }
                Some(Event::Refused(e)) => Ok(Received::Bad(e)),
                Some(Event::End(t)) => {
                    self.ended = Some(t);
                    Ok(Received::End)
                }
                Some(Event::Failed(e)) => {
                    self.ended = Some(Termination {
                        stderr_tail: e.to_string(),
                        ..Termination::default()
                    });
                    Err(e)
                }
                None => {
                    self.ended = Some(Termination::default());
                    Ok(Received::End)
                }
            };
        }
    }

    fn termination(&self) -> Option<Termination> {
        self.ended.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wire over channels: the test plays the gateway.
    struct FakeWire {
        conn: std::sync::Mutex<Option<FakeConn>>,
    }

    struct FakeConn {
        incoming: mpsc::UnboundedReceiver<Incoming>,
        sent: mpsc::UnboundedSender<Outgoing>,
    }

    impl Wire for FakeWire {
        type Conn = FakeConn;

        async fn open(&self, _after: u64) -> Result<FakeConn, Failure> {
            let conn = self.conn.lock().unwrap().take();
            conn.ok_or(Failure::Fatal(Error::Closed))
        }
    }

    impl WireConn for FakeConn {
        async fn recv(&mut self) -> Result<Incoming, Failure> {
            self.incoming
                .recv()
                .await
                .ok_or(Failure::Fatal(Error::Closed))
        }

        async fn send(&mut self, out: Outgoing) -> Result<(), Failure> {
            let _ = self.sent.send(out);
            Ok(())
        }
    }

    /// A driver connected to a fake gateway that said hello: (the gateway's sender of incoming
    /// messages, what the driver sent, the receiving half).
    async fn driven() -> (
        mpsc::UnboundedSender<Incoming>,
        mpsc::UnboundedReceiver<Outgoing>,
        GatewayReceiver,
    ) {
        let (in_tx, incoming) = mpsc::unbounded_channel();
        let (sent, out_rx) = mpsc::unbounded_channel();
        in_tx
            .send(Incoming::Hello(Hello {
                in_seq: 0,
                max_frame_bytes: 1 << 20,
                session: "s".into(),
            }))
            .unwrap();
        let wire = FakeWire {
            conn: std::sync::Mutex::new(Some(FakeConn { incoming, sent })),
        };
        let c = connect(wire, 1 << 20, ReconnectPolicy::default(), "fake".into())
            .await
            .unwrap();
        (in_tx, out_rx, c.receiver)
    }

    fn frame(seq: u64) -> Incoming {
        Incoming::Frame(seq, Bytes::from(format!("{{\"n\":{seq}}}")))
    }

    #[test]
    fn small_frames_are_copied_into_one_shared_buffer_and_large_ones_pass_through() {
        let mut pack = Pack::default();
        let frames: Vec<Bytes> = (0..200u8)
            .map(|i| Bytes::from(vec![i; 600]))
            .collect();
        let packed: Vec<Bytes> = frames
            .iter()
            .map(|f| pack.copy(f.clone()))
            .collect();
        assert_eq!(packed, frames, "same bytes, same order");
        // Consecutive frames sit back to back in the pack buffers, not in the memory they came
        // in; the buffers hold 13, 27, then 54 frames of 600 bytes (8, 16, 32 KiB).
        let starts: Vec<usize> = (0..packed.len())
            .filter(|&i| {
                i == 0
                    || packed[i - 1].as_ptr().wrapping_add(600) != packed[i].as_ptr()
            })
            .collect();
        assert_eq!(starts, [0, 13, 40, 94, 148], "{starts:?}");
        assert_eq!(pack.next, PACK_BYTES);
        assert!(packed.iter().zip(&frames).all(|(p, f)| p.as_ptr() != f.as_ptr()));
        // A frame over PACK_MAX is handed over as it came (no copy).
        let big = Bytes::from(vec![7u8; PACK_MAX + 1]);
        let out = pack.copy(big.clone());
        assert_eq!(out.as_ptr(), big.as_ptr());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_acks_its_last_frames_after_the_idle_delay() {
        let (gateway, mut sent, mut rx) = driven().await;
        for seq in 1..=3 {
            gateway.send(frame(seq)).unwrap();
        }
        for seq in 1..=3 {
            let f = rx.recv().await.unwrap().frame().unwrap();
            assert_eq!(f, format!("{{\"n\":{seq}}}"));
        }
        let arrived = tokio::time::Instant::now();
        // Fewer than ACK_EVERY frames: no ack at once…
        tokio::time::sleep(IDLE_ACK / 2).await;
        assert!(sent.try_recv().is_err(), "acked before the idle delay");
        // …but once the stream has been quiet for IDLE_ACK.
        match tokio::time::timeout(IDLE_ACK * 10, sent.recv()).await {
            Ok(Some(Outgoing::Ack(3))) => {}
            other => panic!("expected Ack(3), got {other:?}"),
        }
        let waited = arrived.elapsed();
        assert!(waited >= IDLE_ACK && waited < IDLE_ACK * 2, "{waited:?}");
        // Nothing more to ack: the timer does not fire again.
        tokio::time::sleep(IDLE_ACK * 4).await;
        assert!(sent.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_is_acked_once_per_read_without_waiting() {
        let (gateway, mut sent, mut rx) = driven().await;
        // 40 frames that arrived together: one read batch, one ack for all of them.
        for seq in 1..=40 {
            gateway.send(frame(seq)).unwrap();
        }
        let t0 = tokio::time::Instant::now();
        for _ in 1..=40 {
            rx.recv().await.unwrap().frame().unwrap();
        }
        match tokio::time::timeout(IDLE_ACK * 10, sent.recv()).await {
            Ok(Some(Outgoing::Ack(40))) => {}
            other => panic!("expected Ack(40), got {other:?}"),
        }
        assert!(t0.elapsed() < IDLE_ACK, "the ack waited for the idle timer");
        tokio::time::sleep(IDLE_ACK * 4).await;
        assert!(sent.try_recv().is_err(), "acked twice");
    }

    #[tokio::test]
    async fn frames_before_an_end_are_delivered_before_it() {
        let (gateway, _sent, mut rx) = driven().await;
        // More frames than one event carries, then the end, all in one read.
        for seq in 1..=(EVENT_FRAMES as u64 * 2 + 5) {
            gateway.send(frame(seq)).unwrap();
        }
        gateway.send(Incoming::End(Termination::clean())).unwrap();
        for seq in 1..=(EVENT_FRAMES as u64 * 2 + 5) {
            let f = rx.recv().await.unwrap().frame().unwrap();
            assert_eq!(f, format!("{{\"n\":{seq}}}"));
        }
        assert!(rx.recv().await.unwrap().is_end());
        assert_eq!(rx.termination(), Some(Termination::clean()));
    }

    #[tokio::test]
    async fn the_receiver_ends_with_the_termination_and_stays_ended() {
        let (tx, rx) = mpsc::channel(4);
        let mut r = GatewayReceiver {
            rx,
            batch: Vec::new().into_iter(),
            ended: None,
        };
        tx.send(Event::Frames(vec![
            Bytes::from_static(b"{}"),
            Bytes::from_static(b"[]"),
        ]))
        .await
        .unwrap();
        tx.send(Event::Refused(Error::FrameTooLarge { limit: 1, size: 2 }))
            .await
            .unwrap();
        tx.send(Event::End(Termination::clean())).await.unwrap();
        assert_eq!(r.recv().await.unwrap().frame().unwrap(), "{}");
        assert_eq!(r.recv().await.unwrap().frame().unwrap(), "[]");
        assert!(matches!(
            r.recv().await.unwrap(),
            Received::Bad(Error::FrameTooLarge { .. })
        ));
        assert!(r.recv().await.unwrap().is_end());
        assert_eq!(r.termination(), Some(Termination::clean()));
        assert!(r.recv().await.unwrap().is_end());
    }
}
