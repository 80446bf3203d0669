//! Sessions served by `conduit worker`s through Redis Streams (docs/SCALE.md): the client
//! transport ([`RedisTransport`], for trusted internal clients and for `conduit serve --redis`)
//! and the wire both sides share ([`Keys`], the entry ids and fields, [`parse_read`]).
//!
//! ```text
//! client ─► RedisTransport ══XADD {p}:sessions══► worker (consumer group `workers`)
//!        ─► XADD {p}:s:{id}:in  0-<seq> ═══════════► worker ─► CLI stdin
//!        ◄─ XREADGROUP {p}:s:{id}:out 0-<seq> ◄═════ worker ◄─ CLI stdout
//!        ─► XACK + XTRIM MINID (acks) ══════════════► worker frees its ring
//! ```
//!
//! The stream id of a frame is its relay sequence number (`0-<seq>`), so the sequencing,
//! acks, resends and reconnects are the relay core's (`transport::relay`): this module is one
//! more `Wire` adapter. The client's frames are confirmed as soon as Redis holds them (an
//! `XADD` with an id at or below the stream's top is a frame Redis already has). A worker
//! refreshes a heartbeat key per session; a session whose heartbeat expired while it ran ends
//! with [`Error::SessionLost`], never a hang.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use tokio::sync::OnceCell;

use self::hub::{HubEvent, Subscription};
use super::relay::wire::{End, ErrorInfo, Hello};
use super::relay::{Failure, Incoming, Outgoing, ReconnectPolicy, Wire, WireConn, refusal_error};
use super::{Connection, Termination, Transport};
use crate::error::{Error, GatewayErrorKind, Result};
use crate::remote::SessionRequest;

pub mod hub;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "conduit";
/// The consumer group of workers on the sessions stream.
pub const WORKERS_GROUP: &str = "workers";
/// The consumer group (and its one consumer) of the client on a session's out-stream.
pub const CLIENT_GROUP: &str = "client";
/// The id of the end of the CLI's input in the in-stream (after every frame `0-<seq>`).
pub const END_INPUT_ID: &str = "1-0";
/// The id of a close request in the in-stream.
pub const CLOSE_ID: &str = "1-1";
/// The id of the session's end in the out-stream.
pub const END_ID: &str = "1-0";
/// Field of a frame entry: the frame's bytes.
pub const FIELD_FRAME: &str = "f";
/// Field of a session request (in the sessions stream): the requester's W3C `traceparent`
/// (feature `otel`, when the request was made in a sampled trace), so the worker's
/// `worker.session` span joins the caller's trace.
pub const FIELD_TRACEPARENT: &str = "traceparent";
/// The longest `traceparent` a worker accepts (version 00 is 55 characters).
pub const MAX_TRACEPARENT: usize = 64;
/// Field of the end entry: the wire's `End` as JSON.
pub const FIELD_END: &str = "end";
/// Field of a refusal entry: the wire's `ErrorInfo` as JSON.
pub const FIELD_ERROR: &str = "err";
/// Field of an ack entry: the highest acked sequence number.
pub const FIELD_ACK: &str = "ack";
/// Field of a control entry of the in-stream (`end_input`, `close`).
pub const FIELD_CONTROL: &str = "c";
/// Meta fields: the worker running the session, the CLI's pid, the frame limit, the state.
pub mod meta {
    /// The worker's name.
    pub const WORKER: &str = "worker";
    /// The CLI's process id on the worker's host.
    pub const PID: &str = "pid";
    /// The worker's frame-size limit.
    pub const MAX_FRAME: &str = "max_frame";
    /// `running`, `ended`, `refused`.
    pub const STATE: &str = "state";
    /// Why a session was refused (the wire's `ErrorInfo` as JSON).
    pub const ERROR: &str = "error";
    /// The token label the session belongs to.
    pub const OWNER: &str = "owner";
}

/// The keys of a deployment (`prefix`) and of one session in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    id: String,
}

impl Keys {
    /// The keys of session `id` under `prefix`.
    pub fn new(prefix: &str, id: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            id: id.to_owned(),
        }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream of session requests (read by the workers' consumer group).
    pub fn sessions(prefix: &str) -> String {
        format!("{prefix}:sessions")
    }

    /// The session's meta hash (worker, pid, state).
    pub fn meta(&self) -> String {
        format!("{}:s:{}", self.prefix, self.id)
    }

    /// Client → worker: frames `0-<seq>`, then end of input `1-0` / close `1-1`.
    pub fn input(&self) -> String {
        format!("{}:s:{}:in", self.prefix, self.id)
    }

    /// Worker → client: frames `0-<seq>`, then the end `1-0`.
    pub fn output(&self) -> String {
        format!("{}:s:{}:out", self.prefix, self.id)
    }

    /// Worker → client: refusals of client frames (the session goes on).
    pub fn refusals(&self) -> String {
        format!("{}:s:{}:ref", self.prefix, self.id)
    }

    /// Client → worker: acks (wakes the worker; the out-stream's group has the XACKs).
    pub fn acks(&self) -> String {
        format!("{}:s:{}:ack", self.prefix, self.id)
    }

    /// The worker's heartbeat for this session (expires unless refreshed).
    pub fn heartbeat(&self) -> String {
        format!("{}:s:{}:hb", self.prefix, self.id)
    }

    /// Every key of the session (to expire them once it ended).
    pub fn all(&self) -> [String; 6] {
        [
            self.meta(),
            self.input(),
            self.output(),
            self.refusals(),
            self.acks(),
            self.heartbeat(),
        ]
    }
}

/// A stream entry: its id and fields (`None`: the entry was deleted while pending).
pub type Entry = (String, Option<Vec<(String, Value)>>);

/// The entries of an `XREAD`/`XREADGROUP` reply, per stream (RESP2 arrays or RESP3 maps).
pub fn parse_read(v: Value) -> std::result::Result<Vec<(String, Vec<Entry>)>, String> {
    split_read(v)?
        .into_iter()
        .map(|(key, entries)| entries.map(|e| (key, e)))
        .collect()
}

/// A read reply's streams, each with its entries or why they cannot be read.
pub(crate) type Streams = Vec<(String, std::result::Result<Vec<Entry>, String>)>;

/// A read reply split per stream: a stream whose entries do not parse is an error of its own
/// (the read hub fails that stream's session only); a reply of the wrong shape fails whole.
pub(crate) fn split_read(v: Value) -> std::result::Result<Streams, String> {
    let streams: Vec<(Value, Value)> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(m) => m,
        Value::Array(a) => a
            .into_iter()
            .map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let e = kv.pop().unwrap_or(Value::Nil);
                    let k = kv.pop().unwrap_or(Value::Nil);
                    Ok((k, e))
                }
                other => Err(format!("unexpected stream in a read reply: {other:?}")),
            })
            .collect::<std::result::Result<_, _>>()?,
        other => return Err(format!("unexpected read reply: {other:?}")),
    };
    streams
        .into_iter()
        .map(|(k, entries)| {
            let key = text(&k).ok_or("a stream name that is not text")?;
            let entries = match entries {
                Value::Array(a) => a.into_iter().map(parse_entry).collect(),
                Value::Nil => Ok(Vec::new()),
                other => Err(format!("unexpected entries of {key}: {other:?}")),
            };
            Ok((key, entries))
        })
        .collect()
}

/// One `[id, [field, value, …]]` entry (fields `nil` for a deleted pending entry).
pub fn parse_entry(v: Value) -> std::result::Result<Entry, String> {
    let Value::Array(mut idf) = v else {
        return Err(format!("unexpected stream entry: {v:?}"));
    };
    if idf.len() != 2 {
        return Err(format!("unexpected stream entry of {} parts", idf.len()));
    }
    let fields = idf.pop().unwrap_or(Value::Nil);
    let id = text(&idf[0]).ok_or("an entry id that is not text")?;
    let fields = match fields {
        Value::Nil => None,
        Value::Array(a) => {
            let mut out = Vec::with_capacity(a.len() / 2);
            let mut it = a.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((text(&k).unwrap_or_default(), v));
            }
            Some(out)
        }
        Value::Map(m) => Some(
            m.into_iter()
                .map(|(k, v)| (text(&k).unwrap_or_default(), v))
                .collect(),
        ),
        other => return Err(format!("unexpected fields of entry {id}: {other:?}")),
    };
    Ok((id, fields))
}

/// A text reply (bulk or simple string).
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The bytes of field `name` of an entry (moved out, no copy).
pub fn take_field(fields: &mut [(String, Value)], name: &str) -> Option<Bytes> {
    fields
        .iter_mut()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| match std::mem::take(v) {
            Value::BulkString(b) => Some(Bytes::from(b)),
            Value::SimpleString(s) => Some(Bytes::from(s)),
            _ => None,
        })
}

/// The sequence number of a frame entry id `0-<seq>` (`None` for any other id).
pub fn frame_seq(id: &str) -> Option<u64> {
    id.strip_prefix("0-")?.parse().ok().filter(|s| *s > 0)
}

/// Whether a Redis error says an `XADD` id is at or below the stream's top: the entry (or a
/// later one) is there already.
pub fn is_id_taken(e: &redis::RedisError) -> bool {
    e.to_string().contains("equal or smaller")
}

/// A Redis failure as the SDK's error: `context` says what was being done. Never includes the
/// URL (it may carry a password).
pub fn redis_error(context: &str, e: &redis::RedisError) -> Error {
    Error::gateway(
        GatewayErrorKind::Unavailable,
        None,
        format!("redis: {context}: {e}"),
    )
}

pub use crate::remote::new_session_id;

/// Open a Redis client for `url` (`redis://[user:password@]host:port[/db]`, `rediss://` with
/// the `tls` feature). The error never repeats the URL.
pub fn client(url: &str) -> Result<redis::Client> {
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(Error::FeatureDisabled("tls"));
    }
    redis::Client::open(url)
        .map_err(|e| Error::InvalidOptions(format!("not a usable Redis URL ({})", e.kind_name())))
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// A reconnecting connection for ordinary commands (5 s per reply).
pub fn manager(client: redis::Client) -> Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(3);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| redis_error("connection manager", &e))
}

/// A connection for blocking reads (no reply timeout: `BLOCK` bounds them).
pub async fn blocking_connection(
    client: &redis::Client,
) -> std::result::Result<MultiplexedConnection, redis::RedisError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(2)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Ask the workers under `prefix` for a session: `request` for the token label `owner`.
/// Returns the new session's id; a worker takes it from the sessions stream.
pub async fn request_session(
    conn: &mut ConnectionManager,
    prefix: &str,
    owner: &str,
    request: &SessionRequest,
) -> Result<String> {
    let id = new_session_id();
    let req = serde_json::to_string(request)
        .map_err(|e| Error::InvalidOptions(format!("session request: {e}")))?;
    session_request_cmd(prefix, &id, owner, &req)
        .query_async::<Value>(conn)
        .await
        .map_err(|e| redis_error("request a session", &e))?;
    Ok(id)
}

/// The `XADD` of a session request: `id`, `owner`, `req` (the JSON [`SessionRequest`]) and,
/// in a sampled trace, the current span's [`FIELD_TRACEPARENT`].
pub fn session_request_cmd(prefix: &str, id: &str, owner: &str, req: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(Keys::sessions(prefix))
        .arg("*")
        .arg("id")
        .arg(id)
        .arg("owner")
        .arg(owner)
        .arg("req")
        .arg(req);
    if let Some(tp) = crate::telemetry::traceparent() {
        cmd.arg(FIELD_TRACEPARENT).arg(tp);
    }
    cmd
}

/// A session served by a `conduit worker` through Redis, as an SDK [`Transport`].
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::remote::SessionRequest;
/// use claude_conduit::transport::redis::RedisTransport;
/// use claude_conduit::{Client, Options};
/// let t = RedisTransport::open_session("redis://127.0.0.1:6379", &SessionRequest::default()).await?;
/// let client = Client::connect_with(t, Options::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTransport {
    url: String,
    session_id: String,
    prefix: String,
    max_frame: usize,
    policy: ReconnectPolicy,
    start_timeout: Duration,
    poll: Duration,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisTransport")
            .field("session_id", &self.session_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The owner label of sessions a trusted internal client starts with [`RedisTransport`].
pub const DIRECT_OWNER: &str = "redis";

impl RedisTransport {
    /// The session `session_id` on the Redis at `url`.
    pub fn new(url: impl Into<String>, session_id: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            session_id: session_id.into(),
            prefix: DEFAULT_PREFIX.into(),
            max_frame: crate::codec::DEFAULT_MAX_FRAME_BYTES,
            policy: ReconnectPolicy::default(),
            start_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(500),
        }
    }

    /// Request a new session (as [`DIRECT_OWNER`]) from the workers on the Redis at `url`.
    pub async fn open_session(url: &str, request: &SessionRequest) -> Result<Self> {
        Self::open_session_as(url, DEFAULT_PREFIX, DIRECT_OWNER, request).await
    }

    /// Request a new session for the token label `owner` under `prefix`.
    pub async fn open_session_as(
        url: &str,
        prefix: &str,
        owner: &str,
        request: &SessionRequest,
    ) -> Result<Self> {
        let mut conn = hub::pool(url)?.cmd.clone();
        let id = request_session(&mut conn, prefix, owner, request).await?;
        Ok(Self::new(url, id).prefix(prefix))
    }

    /// The key prefix (default `conduit`; every gateway and worker of a deployment shares it).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a worker may take to start the session (default 30 s).
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = d;
        self
    }

    /// How often an idle reader checks the worker's heartbeat (default 500 ms).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll = d.max(Duration::from_millis(10));
        self
    }

    /// The reconnect policy.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The per-frame size limit (the worker's, from its meta, applies once known).
    pub fn max_frame_bytes(mut self, limit: usize) -> Self {
        self.max_frame = limit;
        self
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
}

impl Transport for RedisTransport {
    type Sender = super::GatewaySender;
    type Receiver = super::GatewayReceiver;

    async fn connect(self) -> Result<Connection<Self::Sender, Self::Receiver>> {
        let pool = hub::pool(&self.url)?;
        let wire = RedisWire {
            cmd: pool.cmd.clone(),
            pool,
            keys: Keys::new(&self.prefix, &self.session_id),
            start_timeout: self.start_timeout,
            poll: self.poll,
            opened: AtomicBool::new(false),
            worker: OnceCell::new(),
        };
        let description = format!("redis session {}", self.session_id);
        super::relay::connect(wire, self.max_frame, self.policy, description).await
    }
}

struct RedisWire {
    /// The process's command connection and read hub for this URL.
    pool: std::sync::Arc<hub::Pool>,
    cmd: ConnectionManager,
    keys: Keys,
    start_timeout: Duration,
    poll: Duration,
    /// A connection was opened before: a missing session now means its data was lost.
    opened: AtomicBool,
    worker: OnceCell<String>,
}

/// Whether a Redis failure is worth a reconnect (the server went away) or not.
fn classify(context: &str, e: &redis::RedisError) -> Failure {
    let err = redis_error(context, e);
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("LOADING")
        || e.code() == Some("TRYAGAIN")
    {
        Failure::Transient(err)
    } else {
        Failure::Fatal(err)
    }
}

fn gone(id: &str) -> Failure {
    Failure::Fatal(Error::gateway(
        GatewayErrorKind::NotFound,
        None,
        format!("session {id} is gone from Redis (ended and expired, or Redis lost its data)"),
    ))
}

/// The meta hash as field → text.
async fn read_meta(
    cmd: &mut ConnectionManager,
    keys: &Keys,
) -> std::result::Result<Vec<(String, String)>, redis::RedisError> {
    let v: Value = redis::cmd("HGETALL")
        .arg(keys.meta())
        .query_async(cmd)
        .await?;
    let pairs = match v {
        Value::Map(m) => m,
        Value::Array(a) => {
            let mut it = a.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        _ => Vec::new(),
    };
    Ok(pairs
        .iter()
        .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
        .collect())
}

fn field<'a>(meta: &'a [(String, String)], name: &str) -> Option<&'a str> {
    meta.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Wire for RedisWire {
    type Conn = RedisConn;

    async fn open(&self, _after: u64) -> std::result::Result<RedisConn, Failure> {
        let mut cmd = self.cmd.clone();
        let id = self.keys.id().to_owned();
        let deadline = Instant::now() + self.start_timeout;
        let meta = loop {
            let meta = read_meta(&mut cmd, &self.keys)
                .await
                .map_err(|e| classify("read the session", &e))?;
            if field(&meta, meta::STATE) == Some("refused") {
                let info = field(&meta, meta::ERROR)
                    .and_then(|e| serde_json::from_str::<ErrorInfo>(e).ok())
                    .unwrap_or_else(|| ErrorInfo::new("refused", "the worker refused the session"));
                return Err(Failure::Fatal(Error::gateway(
                    GatewayErrorKind::from_wire(&info.kind),
                    None,
                    info.message,
                )));
            }
            if field(&meta, meta::WORKER).is_some() {
                break meta;
            }
            if self.opened.load(Ordering::Relaxed) {
                return Err(gone(&id));
            }
            if Instant::now() > deadline {
                return Err(Failure::Fatal(Error::gateway(
                    GatewayErrorKind::Unavailable,
                    None,
                    format!(
                        "no worker started session {id} within {:?} (is a `conduit worker` running?)",
                        self.start_timeout
                    ),
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let worker = field(&meta, meta::WORKER).unwrap_or_default().to_owned();
        let _ = self.worker.set(worker.clone());
        let max_frame_bytes = field(&meta, meta::MAX_FRAME)
            .and_then(|m| m.parse().ok())
            .unwrap_or(crate::codec::DEFAULT_MAX_FRAME_BYTES as u64);
        let in_seq = last_frame_id(&mut cmd, &self.keys.input())
            .await
            .map_err(|e| classify("read the input stream", &e))?;
        let sub = self
            .pool
            .hub
            .subscribe(vec![self.keys.output(), self.keys.refusals()]);
        self.opened.store(true, Ordering::Relaxed);
        let mut local = VecDeque::new();
        local.push_back(Incoming::Hello(Hello {
            session: id,
            in_seq,
            max_frame_bytes,
        }));
        Ok(RedisConn {
            local,
            inbox: VecDeque::new(),
            failed: None,
            sub,
            cmd,
            keys: self.keys.clone(),
            worker,
            poll: self.poll,
            heard: tokio::time::Instant::now(),
            acked: 0,
        })
    }
}

/// The sequence number of the last frame a stream got (its last generated id `0-<seq>`; 0 when
/// the stream does not exist or holds only control entries).
pub async fn last_frame_id(
    cmd: &mut ConnectionManager,
    key: &str,
) -> std::result::Result<u64, redis::RedisError> {
    let v: std::result::Result<Value, _> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(cmd)
        .await;
    let v = match v {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such key") => return Ok(0),
        Err(e) => return Err(e),
    };
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(m) => m,
        Value::Array(a) => {
            let mut it = a.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        _ => Vec::new(),
    };
    let last = pairs
        .iter()
        .find(|(k, _)| text(k).as_deref() == Some("last-generated-id"))
        .and_then(|(_, v)| text(v))
        .unwrap_or_default();
    // A control entry (`1-x`) comes after every frame: the frames' last is then unknown here,
    // and the worker has them all anyway; `u64::MAX` would confirm frames never sent, so count
    // only frame ids.
    Ok(frame_seq(&last).unwrap_or(0))
}

fn malformed(stream: &str, id: &str, why: &str) -> Failure {
    Failure::Fatal(Error::gateway(
        GatewayErrorKind::Protocol,
        None,
        format!("malformed entry {id} in {stream}: {why}"),
    ))
}

/// `Some(failure)` when the session cannot go on: its worker stopped heartbeating while it ran,
/// or its data is gone.
async fn liveness(
    cmd: &mut ConnectionManager,
    keys: &Keys,
    worker: &str,
) -> std::result::Result<Option<Failure>, redis::RedisError> {
    let (beat, state): (i64, Option<String>) = redis::pipe()
        .cmd("EXISTS")
        .arg(keys.heartbeat())
        .cmd("HGET")
        .arg(keys.meta())
        .arg(meta::STATE)
        .query_async(cmd)
        .await?;
    Ok(match state.as_deref() {
        None => Some(gone(keys.id())),
        Some("running") if beat == 0 => Some(Failure::Fatal(Error::SessionLost {
            session_id: keys.id().to_owned(),
            worker: worker.to_owned(),
        })),
        _ => None,
    })
}

/// An open connection of the Redis wire.
pub(crate) struct RedisConn {
    /// What this side produces itself: the hello, confirmations of frames Redis holds.
    local: VecDeque<Incoming>,
    /// What came from the session's streams (a hub batch, decoded), not yet taken.
    inbox: VecDeque<Incoming>,
    /// The failure that ends the stream, once `inbox` is taken.
    failed: Option<Failure>,
    /// The session's out- and refusal streams on the process's read hub (pending entries
    /// first, then new ones).
    sub: Subscription,
    cmd: ConnectionManager,
    keys: Keys,
    worker: String,
    /// When nothing came for this long, the worker's heartbeat is checked.
    poll: Duration,
    /// When the streams last gave something (or the heartbeat was last checked).
    heard: tokio::time::Instant,
    acked: u64,
}

impl RedisConn {
    /// Decode a hub event into `inbox` (and `failed`: a malformed entry, a gone stream end the
    /// session; what came before it is still delivered).
    fn take_event(&mut self, ev: HubEvent) {
        let (which, entries) = match ev {
            HubEvent::Entries(which, entries) => (which, entries),
            HubEvent::Gone(_) => {
                self.failed = Some(gone(self.keys.id()));
                return;
            }
            HubEvent::Failed(_, why) => {
                self.failed = Some(Failure::Fatal(Error::gateway(
                    GatewayErrorKind::Protocol,
                    None,
                    format!("redis: {why}"),
                )));
                return;
            }
        };
        let (out, refusals) = (self.keys.output(), self.keys.refusals());
        let mut refused = Vec::new();
        for (id, fields) in entries {
            let Some(mut fields) = fields else { continue };
            let item = if which == 1 {
                let item = match take_field(&mut fields, FIELD_ERROR)
                    .and_then(|b| serde_json::from_slice::<ErrorInfo>(&b).ok())
                {
                    Some(info) => Ok(Incoming::Refused(refusal_error(info))),
                    None => Err(malformed(&refusals, &id, "no `err` field")),
                };
                refused.push(id);
                item
            } else if let Some(seq) = frame_seq(&id) {
                match take_field(&mut fields, FIELD_FRAME) {
                    Some(f) => Ok(Incoming::Frame(seq, f)),
                    None => Err(malformed(&out, &id, "no `f` field")),
                }
            } else if id == END_ID {
                match take_field(&mut fields, FIELD_END)
                    .and_then(|b| serde_json::from_slice::<End>(&b).ok())
                {
                    Some(end) => Ok(Incoming::End(Termination::from(end))),
                    None => Err(malformed(&out, &id, "no valid `end` field")),
                }
            } else {
                Err(malformed(
                    &out,
                    &id,
                    "not a frame id `0-<seq>` nor the end `1-0`",
                ))
            };
            match item {
                Ok(m) => {
                    let end = matches!(m, Incoming::End(_));
                    self.inbox.push_back(m);
                    if end {
                        break;
                    }
                }
                Err(f) => {
                    self.failed = Some(f);
                    break;
                }
            }
        }
        if !refused.is_empty() {
            // Off the receive path (it must stay cancel-safe): a refusal not acked is read
            // again after a reconnect, as any pending entry.
            let mut cmd = self.cmd.clone();
            tokio::spawn(async move {
                let mut x = redis::cmd("XACK");
                x.arg(&refusals).arg(CLIENT_GROUP);
                for id in &refused {
                    x.arg(id);
                }
                let _ = x.query_async::<Value>(&mut cmd).await;
            });
        }
    }
}

impl RedisConn {
    /// `XADD in NOMKSTREAM <id> field value`: `Ok(true)` added or there already, `Ok(false)` the
    /// session's input is gone.
    async fn add_input(
        &mut self,
        id: &str,
        field: &str,
        value: &[u8],
    ) -> std::result::Result<(), Failure> {
        let r = redis::cmd("XADD")
            .arg(self.keys.input())
            .arg("NOMKSTREAM")
            .arg(id)
            .arg(field)
            .arg(value)
            .query_async::<Value>(&mut self.cmd)
            .await;
        match r {
            Ok(Value::Nil) => Err(gone(self.keys.id())),
            Ok(_) => Ok(()),
            Err(e) if is_id_taken(&e) => Ok(()),
            Err(e) => Err(classify("send", &e)),
        }
    }
}

impl WireConn for RedisConn {
    async fn recv(&mut self) -> std::result::Result<Incoming, Failure> {
        loop {
            if let Some(m) = self.local.pop_front() {
                return Ok(m);
            }
            if let Some(m) = self.inbox.pop_front() {
                return Ok(m);
            }
            if let Some(f) = self.failed.take() {
                // Ends the stream; anything later is not read.
                self.failed = Some(Failure::Fatal(Error::Closed));
                return Err(f);
            }
            // Cancel-safe: the hub's `recv` is, and the deadline survives a cancelled call.
            match tokio::time::timeout_at(self.heard + self.poll, self.sub.recv()).await {
                Ok(Some(ev)) => {
                    self.heard = tokio::time::Instant::now();
                    self.take_event(ev);
                }
                Ok(None) => {
                    return Err(Failure::Transient(Error::gateway(
                        GatewayErrorKind::Unavailable,
                        None,
                        "redis: the read hub stopped",
                    )));
                }
                Err(_) => {
                    match liveness(&mut self.cmd, &self.keys, &self.worker).await {
                        Ok(None) => {}
                        Ok(Some(f)) => return Err(f),
                        Err(e) => return Err(classify("check the worker", &e)),
                    }
                    self.heard = tokio::time::Instant::now();
                }
            }
        }
    }

    async fn send(&mut self, out: Outgoing) -> std::result::Result<(), Failure> {
        match out {
            Outgoing::Frame(seq, data) => {
                self.add_input(&format!("0-{seq}"), FIELD_FRAME, &data)
                    .await?;
                // Redis holds it: the worker reads it from there.
                self.local.push_back(Incoming::InAck(seq));
                Ok(())
            }
            Outgoing::EndInput => {
                self.add_input(END_INPUT_ID, FIELD_CONTROL, b"end_input")
                    .await
            }
            Outgoing::Close => self.add_input(CLOSE_ID, FIELD_CONTROL, b"close").await,
            Outgoing::Ack(n) => {
                let mut p = redis::pipe();
                let from = self.acked + 1;
                let mut s = from;
                while s <= n {
                    let to = (s + 999).min(n);
                    let c = p.cmd("XACK").arg(self.keys.output()).arg(CLIENT_GROUP);
                    for k in s..=to {
                        c.arg(format!("0-{k}"));
                    }
                    c.ignore();
                    s = to + 1;
                }
                p.cmd("XTRIM")
                    .arg(self.keys.output())
                    .arg("MINID")
                    .arg(format!("0-{}", n + 1))
                    .ignore();
                p.cmd("XADD")
                    .arg(self.keys.acks())
                    .arg("NOMKSTREAM")
                    .arg("MAXLEN")
                    .arg(16)
                    .arg("*")
                    .arg(FIELD_ACK)
                    .arg(n)
                    .ignore();
                p.query_async::<()>(&mut self.cmd)
                    .await
                    .map_err(|e| classify("ack", &e))?;
                self.acked = self.acked.max(n);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids() {
        let k = Keys::new("p", "abc");
        assert_eq!(k.input(), "p:s:abc:in");
        assert_eq!(k.output(), "p:s:abc:out");
        assert_eq!(k.meta(), "p:s:abc");
        assert_eq!(Keys::sessions("p"), "p:sessions");
        assert_eq!(frame_seq("0-17"), Some(17));
        assert_eq!(frame_seq("0-0"), None);
        assert_eq!(frame_seq("1-0"), None);
        assert_eq!(frame_seq("0-x"), None);
        assert_eq!(new_session_id().len(), 32);
        assert_ne!(new_session_id(), new_session_id());
    }

    #[test]
    fn read_replies_parse_in_both_protocols() {
        let entry = |id: &str, f: &[u8]| {
            Value::Array(vec![
                Value::BulkString(id.as_bytes().to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"f".to_vec()),
                    Value::BulkString(f.to_vec()),
                ]),
            ])
        };
        let resp2 = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"s".to_vec()),
            Value::Array(vec![
                entry("0-1", b"{}"),
                Value::Array(vec![Value::BulkString(b"0-2".to_vec()), Value::Nil]),
            ]),
        ])]);
        let got = parse_read(resp2).unwrap();
        assert_eq!(got[0].0, "s");
        assert_eq!(got[0].1.len(), 2);
        let mut f = got[0].1[0].1.clone().unwrap();
        assert_eq!(take_field(&mut f, "f").unwrap(), "{}");
        assert!(got[0].1[1].1.is_none());
        let resp3 = Value::Map(vec![(
            Value::BulkString(b"s".to_vec()),
            Value::Array(vec![entry("0-3", b"x")]),
        )]);
        assert_eq!(parse_read(resp3).unwrap()[0].1[0].0, "0-3");
        assert!(parse_read(Value::Nil).unwrap().is_empty());
        assert!(parse_read(Value::Int(3)).is_err());
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        let e = client("redis://:pw-secret@[bad").unwrap_err();
        assert!(!e.to_string().contains("pw-secret"), "{e}");
    }
}
