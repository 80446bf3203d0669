//! The read hub: ONE blocking reader connection per process (per Redis and read mode) for every
//! session stream the process reads, instead of one per session (docs/SCALE.md, "Connections").
//!
//! ```text
//! Subscription (session A: keys a1 a2) ◄─┐
//! Subscription (session B: keys b1)    ◄─┼─ hub task ══ XREAD[GROUP] … BLOCK ms STREAMS a1 a2 b1 … ══► Redis
//! Subscription (session C: …)          ◄─┘     ▲ CLIENT UNBLOCK <hub's client id> (from the command
//!                                              │ connection) when the set of streams changes
//! ```
//!
//! One task owns the blocking connection and issues one `XREAD` (the worker: explicit ids) or
//! `XREADGROUP GROUP g c` (the client: `0` replays the pending entries, then `>`) covering all
//! registered streams, and hands each stream's entries, a batch at a time, to its session's
//! bounded channel. Registering (or a drained channel) wakes a blocked read with `CLIENT UNBLOCK`.
//!
//! Backpressure: a session whose channel is full is left out of the reads until it takes a
//! batch; nothing is dropped, since every stream's position is explicit (the last id handed
//! over; for a group, a history read from there replays what was delivered but not handed
//! over). Other sessions are never held back. A dropped hub connection is reconnected with
//! backoff and every stream resumes after the last id it handed over: no loss, no duplicates.
//! A stream whose key or group is gone (`NOGROUP`) ends only its own subscription
//! ([`HubEvent::Gone`]). The hub only reads: sequencing and acks stay in the relay core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redis::Value;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::{Entry, Streams, blocking_connection, split_read, text};

/// Entries per stream per read (`COUNT`).
pub const COUNT: usize = 256;
/// Batches a subscription's channel holds (at most `CHANNEL` × [`COUNT`] entries wait in it).
pub const CHANNEL: usize = 4;

/// How the hub reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// `XREAD`: each stream from the last id handed over (starts at `0-0`).
    Plain,
    /// `XREADGROUP GROUP group consumer`: each stream's pending entries first (from `0`), then
    /// new ones (`>`). Every stream must have the group.
    Group {
        /// The consumer group (the same on every stream).
        group: String,
        /// The consumer.
        consumer: String,
    },
}

/// What a subscription receives.
#[derive(Debug)]
pub enum HubEvent {
    /// Entries of the subscription's key number `.0` (in order, ids ascending).
    Entries(usize, Vec<Entry>),
    /// The key `.0` (or its consumer group) does not exist: that stream is no longer read.
    Gone(usize),
    /// The reply for key `.0` could not be read (`.1` says why): that stream is no longer read.
    Failed(usize, String),
}

struct Reg {
    keys: Vec<String>,
    /// Per key: the id the next read passes (`>` for new entries of a group).
    cursors: Vec<String>,
    /// Per key: the last id handed over (where a group's history read resumes).
    delivered: Vec<Option<String>>,
    /// Per key: no longer read (gone or failed).
    dead: Vec<bool>,
    /// An event for a full channel, handed over once it has room (then the stream is dead).
    last_word: Option<HubEvent>,
    tx: mpsc::Sender<HubEvent>,
    paused: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    regs: HashMap<u64, Reg>,
    next: u64,
    /// Bumped whenever the set of streams to read changes.
    generation: u64,
}

struct Shared {
    client: redis::Client,
    cmd: ConnectionManager,
    mode: ReadMode,
    block: Duration,
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The set of streams changed: the hub re-plans (waking a blocked read).
    fn touch(&self) {
        self.state().generation += 1;
        self.changed.notify_one();
    }
}

struct Inner {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}

/// A read hub (cheap to clone; the task and its connection end when the last clone and the last
/// subscription are dropped).
#[derive(Clone)]
pub struct ReadHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReadHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHub")
            .field("mode", &self.inner.shared.mode)
            .field("streams", &self.streams())
            .finish_non_exhaustive()
    }
}

impl ReadHub {
    /// A hub reading with `mode` through its own connection from `client`; `cmd` (a command
    /// connection) sends its `CLIENT UNBLOCK`s. A quiet read returns after `block`. The task
    /// starts with the first subscription.
    pub fn new(
        client: redis::Client,
        cmd: ConnectionManager,
        mode: ReadMode,
        block: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    client,
                    cmd,
                    mode,
                    block: block.max(Duration::from_millis(1)),
                    state: Mutex::new(State::default()),
                    changed: Notify::new(),
                }),
                task: Mutex::new(None),
            }),
        }
    }

    /// Read `keys` (a group's from its pending entries, a plain stream's from its start) into a
    /// new subscription. Must be called inside a tokio runtime.
    pub fn subscribe(&self, keys: Vec<String>) -> Subscription {
        let shared = &self.inner.shared;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let paused = Arc::new(AtomicBool::new(false));
        let start = match shared.mode {
            ReadMode::Plain => "0-0",
            ReadMode::Group { .. } => "0",
        };
        let token = {
            let mut st = shared.state();
            let token = st.next;
            st.next += 1;
            st.regs.insert(
                token,
                Reg {
                    cursors: vec![start.to_owned(); keys.len()],
                    delivered: vec![None; keys.len()],
                    dead: vec![false; keys.len()],
                    keys,
                    last_word: None,
                    tx,
                    paused: paused.clone(),
                },
            );
            token
        };
        self.ensure_running();
        shared.touch();
        Subscription {
            rx,
            paused,
            hub: self.inner.clone(),
            token,
        }
    }

    /// The streams the hub reads for its live subscriptions.
    pub fn streams(&self) -> usize {
        let st = self.inner.shared.state();
        st.regs.values().map(|r| r.keys.len()).sum()
    }

    fn ensure_running(&self) {
        let mut task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            *task = Some(tokio::spawn(run(self.inner.shared.clone())));
        }
    }
}

/// A session's streams on a hub: their entries, in order. Dropping it stops reading them.
pub struct Subscription {
    rx: mpsc::Receiver<HubEvent>,
    paused: Arc<AtomicBool>,
    hub: Arc<Inner>,
    token: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next event (`None`: the hub is gone). Cancel-safe.
    pub async fn recv(&mut self) -> Option<HubEvent> {
        let ev = self.rx.recv().await;
        self.resume();
        ev
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<HubEvent> {
        let ev = self.rx.try_recv().ok();
        if ev.is_some() {
            self.resume();
        }
        ev
    }

    /// The channel has room again: read this subscription's streams again.
    fn resume(&self) {
        if self.paused.swap(false, Ordering::AcqRel) {
            self.hub.shared.touch();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let shared = &self.hub.shared;
        let mut st = shared.state();
        st.regs.remove(&self.token);
        st.generation += 1;
    }
}

/// One stream of a planned read.
struct Planned {
    key: String,
    token: u64,
    index: usize,
    cursor: String,
}

/// The streams to read now: of every subscription whose channel has room and that is not
/// paused; a key subscribed twice (a reconnecting session) is read for the newest only. Hands
/// over waiting last words.
fn plan(st: &mut State) -> Vec<Planned> {
    let mut newest: HashMap<String, u64> = HashMap::new();
    for (t, r) in &st.regs {
        for k in &r.keys {
            let e = newest.entry(k.clone()).or_insert(*t);
            *e = (*e).max(*t);
        }
    }
    let mut out = Vec::new();
    for (t, r) in &mut st.regs {
        if r.paused.load(Ordering::Acquire) || r.tx.is_closed() {
            continue;
        }
        // No room for a batch: wait for the session to take one (its `recv` wakes the hub).
        if r.tx.capacity() == 0 {
            r.paused.store(true, Ordering::Release);
            if r.tx.capacity() == 0 {
                continue;
            }
            r.paused.store(false, Ordering::Release);
        }
        if let Some(ev) = r.last_word.take() {
            match r.tx.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => {
                    r.last_word = Some(ev);
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => continue,
            }
        }
        for (i, k) in r.keys.iter().enumerate() {
            if r.dead[i] || newest.get(k) != Some(t) {
                continue;
            }
            out.push(Planned {
                key: k.clone(),
                token: *t,
                index: i,
                cursor: r.cursors[i].clone(),
            });
        }
    }
    out
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(2))
}

/// How one read ended.
enum Outcome {
    Reply(Value),
    /// The connection failed or did not answer: reconnect.
    Broken(String),
    /// A server error for the command (e.g. `NOGROUP`).
    Refused(redis::RedisError),
}

async fn connect(client: &redis::Client) -> Result<(MultiplexedConnection, i64), String> {
    let mut conn = blocking_connection(client)
        .await
        .map_err(|e| e.to_string())?;
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok((conn, id))
}

async fn run(shared: Arc<Shared>) {
    let mut conn: Option<(MultiplexedConnection, i64)> = None;
    let mut failures = 0u32;
    let mut cmd = shared.cmd.clone();
    loop {
        if failures > 0 {
            tokio::time::sleep(backoff(failures)).await;
        }
        let (generation, planned) = {
            let mut st = shared.state();
            (st.generation, plan(&mut st))
        };
        if planned.is_empty() {
            shared.changed.notified().await;
            continue;
        }
        let Some((c, client_id)) = conn.as_mut() else {
            match connect(&shared.client).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "redis read hub: connect failed; retrying");
                    failures += 1;
                }
            }
            continue;
        };
        let client_id = *client_id;
        let mut read = match &shared.mode {
            ReadMode::Plain => redis::cmd("XREAD"),
            ReadMode::Group { group, consumer } => {
                let mut c = redis::cmd("XREADGROUP");
                c.arg("GROUP").arg(group).arg(consumer);
                c
            }
        };
        read.arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(shared.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS");
        for p in &planned {
            read.arg(&p.key);
        }
        for p in &planned {
            read.arg(&p.cursor);
        }
        let outcome = {
            let fut = read.query_async::<Value>(c);
            tokio::pin!(fut);
            let deadline = tokio::time::sleep(shared.block + Duration::from_secs(10));
            tokio::pin!(deadline);
            let mut wake = false;
            loop {
                tokio::select! {
                    biased;
                    r = &mut fut => break match r {
                        Ok(v) => Outcome::Reply(v),
                        Err(e) if e.is_io_error() || e.is_connection_dropped()
                            || e.is_connection_refusal() || e.is_timeout()
                            || e.is_unrecoverable_error() => Outcome::Broken(e.to_string()),
                        Err(e) => Outcome::Refused(e),
                    },
                    () = &mut deadline => break Outcome::Broken("a blocking read did not return in time".into()),
                    () = shared.changed.notified(), if !wake => {
                        wake = shared.state().generation != generation;
                    }
                    () = tokio::time::sleep(Duration::from_millis(1)), if wake => {
                        // 0: not blocked yet (the read is still on its way): try again.
                        let r = redis::cmd("CLIENT").arg("UNBLOCK").arg(client_id)
                            .query_async::<i64>(&mut cmd).await;
                        if matches!(r, Ok(1) | Err(_)) {
                            wake = false;
                        }
                    }
                }
            }
        };
        match outcome {
            Outcome::Reply(v) => {
                failures = 0;
                match split_read(v) {
                    Ok(streams) => dispatch(&shared, &planned, streams),
                    Err(e) => {
                        tracing::warn!(error = %e, "redis read hub: unreadable reply; reconnecting");
                        conn = None;
                        rewind(&shared);
                        failures += 1;
                    }
                }
            }
            Outcome::Broken(e) => {
                tracing::debug!(error = %e, "redis read hub: read failed; reconnecting");
                conn = None;
                rewind(&shared);
                failures += 1;
            }
            Outcome::Refused(e) => {
                if !isolate(&shared, &mut cmd, &planned, &e).await {
                    tracing::warn!(error = %e, "redis read hub: read refused; retrying");
                    failures += 1;
                }
            }
        }
    }
}

/// After a dropped connection, a group's streams resume with a history read after the last id
/// handed over (what a lost reply delivered is pending in the group).
fn rewind(shared: &Shared) {
    if shared.mode == ReadMode::Plain {
        return;
    }
    let mut st = shared.state();
    for r in st.regs.values_mut() {
        for (c, d) in r.cursors.iter_mut().zip(&r.delivered) {
            *c = d.clone().unwrap_or_else(|| "0".into());
        }
    }
}

/// Hand each stream's entries to its subscription.
fn dispatch(shared: &Shared, planned: &[Planned], streams: Streams) {
    let group = shared.mode != ReadMode::Plain;
    let mut got: HashMap<String, Result<Vec<Entry>, String>> = streams.into_iter().collect();
    let mut st = shared.state();
    let mut closed = Vec::new();
    for p in planned {
        let Some(r) = st.regs.get_mut(&p.token) else {
            continue;
        };
        let entries = match got.remove(&p.key) {
            Some(Ok(e)) if !e.is_empty() => e,
            Some(Err(why)) => {
                r.dead[p.index] = true;
                say_last(r, HubEvent::Failed(p.index, why));
                continue;
            }
            // Nothing: a group's history is replayed, read new entries from now on.
            _ => {
                if group && r.cursors[p.index] != ">" {
                    r.cursors[p.index] = ">".into();
                }
                continue;
            }
        };
        if r.paused.load(Ordering::Acquire) {
            // An earlier stream of this subscription filled its channel in this round.
            pause(r, p.index, group);
            continue;
        }
        let last = entries.last().map(|(id, _)| id.clone()).unwrap_or_default();
        match r.tx.try_send(HubEvent::Entries(p.index, entries)) {
            Ok(()) => {
                if !group || r.cursors[p.index] != ">" {
                    r.cursors[p.index].clone_from(&last);
                }
                r.delivered[p.index] = Some(last);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                r.paused.store(true, Ordering::Release);
                pause(r, p.index, group);
                // The session took a batch meanwhile: no need to wait for it.
                if r.tx.capacity() > 0 {
                    r.paused.store(false, Ordering::Release);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => closed.push(p.token),
        }
    }
    for t in closed {
        st.regs.remove(&t);
    }
}

/// A stream whose batch did not fit: read it again from the last id handed over.
fn pause(r: &mut Reg, index: usize, group: bool) {
    if group {
        r.cursors[index] = r.delivered[index].clone().unwrap_or_else(|| "0".into());
    }
}

fn say_last(r: &mut Reg, ev: HubEvent) {
    match r.tx.try_send(ev) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(ev)) => r.last_word = Some(ev),
    }
}

/// A read the server refused: find the streams that caused it (a `NOGROUP` names its key; else
/// ask about each) and stop reading them. `false`: none found.
async fn isolate(
    shared: &Shared,
    cmd: &mut ConnectionManager,
    planned: &[Planned],
    e: &redis::RedisError,
) -> bool {
    let named = (e.code() == Some("NOGROUP"))
        .then(|| {
            let d = e.detail()?;
            let start = d.find('\'')? + 1;
            let len = d[start..].find('\'')?;
            Some(d[start..start + len].to_owned())
        })
        .flatten();
    let mut bad: Vec<(u64, usize, bool)> = Vec::new();
    match named.and_then(|k| planned.iter().find(|p| p.key == k)) {
        Some(p) => bad.push((p.token, p.index, true)),
        None => {
            for p in planned {
                if let Some(gone) = probe(&shared.mode, cmd, &p.key).await {
                    bad.push((p.token, p.index, gone));
                }
            }
        }
    }
    let mut st = shared.state();
    for (token, index, gone) in &bad {
        if let Some(r) = st.regs.get_mut(token) {
            r.dead[*index] = true;
            let ev = if *gone {
                HubEvent::Gone(*index)
            } else {
                HubEvent::Failed(*index, format!("redis: {e}"))
            };
            say_last(r, ev);
        }
    }
    !bad.is_empty()
}

/// Why `key` cannot be read: `Some(true)` it (or its group) is gone, `Some(false)` it is not a
/// stream, `None` nothing found.
async fn probe(mode: &ReadMode, cmd: &mut ConnectionManager, key: &str) -> Option<bool> {
    let t: String = redis::cmd("TYPE").arg(key).query_async(cmd).await.ok()?;
    match (t.as_str(), mode) {
        ("stream", ReadMode::Plain) | ("none", ReadMode::Plain) => None,
        ("stream", ReadMode::Group { group, .. }) => {
            let groups: Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(key)
                .query_async(cmd)
                .await
                .ok()?;
            let Value::Array(groups) = groups else {
                return None;
            };
            let has = groups.iter().any(|g| {
                let pairs: Vec<(&Value, &Value)> = match g {
                    Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
                    Value::Array(a) => a
                        .chunks(2)
                        .filter_map(|c| Some((c.first()?, c.get(1)?)))
                        .collect(),
                    _ => Vec::new(),
                };
                pairs.iter().any(|(k, v)| {
                    text(k).as_deref() == Some("name") && text(v).as_deref() == Some(group.as_str())
                })
            });
            (!has).then_some(true)
        }
        ("none", _) => Some(true),
        _ => Some(false),
    }
}

/// The process-wide connections of the client side for one Redis URL: one command connection
/// and one read hub (group `client`), shared by every session of the process.
pub struct Pool {
    /// The shared command connection.
    pub cmd: ConnectionManager,
    /// The shared read hub.
    pub hub: ReadHub,
}

/// How long the client's hub blocks when nothing comes (a fallback: changes wake it at once).
const POOL_BLOCK: Duration = Duration::from_secs(2);

static POOLS: Mutex<Vec<(String, Weak<Pool>)>> = Mutex::new(Vec::new());

/// The pool for `url` (made on first use; dropped with the last session holding it).
pub fn pool(url: &str) -> crate::error::Result<Arc<Pool>> {
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    pools.retain(|(_, w)| w.strong_count() > 0);
    if let Some(p) = pools
        .iter()
        .find(|(u, _)| u == url)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(p);
    }
    let client = super::client(url)?;
    let cmd = super::manager(client.clone())?;
    let hub = ReadHub::new(
        client,
        cmd.clone(),
        ReadMode::Group {
            group: super::CLIENT_GROUP.into(),
            consumer: super::CLIENT_GROUP.into(),
        },
        POOL_BLOCK,
    );
    let p = Arc::new(Pool { cmd, hub });
    pools.push((url.to_owned(), Arc::downgrade(&p)));
    Ok(p)
}
