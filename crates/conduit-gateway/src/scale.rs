//! Scale-out through Redis Streams (docs/SCALE.md): the settings gateways and workers share
//! ([`RedisSettings`]), the gateway's side of `conduit serve --redis` ([`RedisBackend`]: a
//! session is a Redis client of the SDK's relay core, its per-token limits counted in Redis) and
//! `conduit worker` ([`Worker`]: a [`SessionManager`] whose sessions are attached to Redis
//! instead of a WebSocket; the same policy, configuration and environment rule as the gateway).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use claude_conduit::transport::redis::hub::{HubEvent, ReadHub, ReadMode, Subscription};
use claude_conduit::transport::redis::{
    self as wire, CLIENT_GROUP, CLOSE_ID, END_ID, END_INPUT_ID, FIELD_ACK, FIELD_END, FIELD_ERROR,
    FIELD_FRAME, Keys, RedisTransport, WORKERS_GROUP, meta,
};
use claude_conduit::transport::relay::wire::{End, ErrorInfo, kind};
use claude_conduit::transport::{Connection, GatewayReceiver, GatewaySender, Transport};
use redis::Value;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use tokio::sync::watch;

use crate::GatewayError;
use crate::auth::TokenId;
use crate::session::{Input, InputError, Outbound, Session, SessionManager, SessionRequest};

/// What gateways and workers of one deployment share. `Debug` never shows the URL (it may
/// carry a password).
#[derive(Clone)]
pub struct RedisSettings {
    pub(crate) url: String,
    pub(crate) prefix: String,
    /// A session whose worker has not refreshed its heartbeat for this long is lost.
    pub(crate) heartbeat: Duration,
    /// A session request a worker took but did not start for this long goes to another worker.
    pub(crate) claim_idle: Duration,
    /// How long a session's keys stay after it ended.
    pub(crate) session_ttl: Duration,
    /// How long a gateway waits for a worker to start a session.
    pub(crate) start_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .field("claim_idle", &self.claim_idle)
            .field("session_ttl", &self.session_ttl)
            .field("start_timeout", &self.start_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    /// Defaults for `url`: prefix `conduit`, heartbeat timeout 10 s, claim after 10 s idle, keys
    /// kept 1 h after the end, 30 s for a worker to start a session.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: wire::DEFAULT_PREFIX.into(),
            heartbeat: Duration::from_secs(10),
            claim_idle: Duration::from_secs(10),
            session_ttl: Duration::from_secs(3600),
            start_timeout: Duration::from_secs(30),
        }
    }

    /// The key prefix.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }

    /// The heartbeat timeout (workers refresh every third of it).
    pub fn heartbeat(mut self, d: Duration) -> Self {
        self.heartbeat = d.max(Duration::from_millis(100));
        self
    }

    /// The idle time after which another worker claims a session request.
    pub fn claim_idle(mut self, d: Duration) -> Self {
        self.claim_idle = d.max(Duration::from_millis(100));
        self
    }

    /// How long a session's keys stay after it ended.
    pub fn session_ttl(mut self, d: Duration) -> Self {
        self.session_ttl = d.max(Duration::from_secs(1));
        self
    }

    /// How long a gateway waits for a worker to start a session.
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = d;
        self
    }

    /// The key prefix.
    pub fn prefix_name(&self) -> &str {
        &self.prefix
    }

    /// The read poll: a quarter of the heartbeat timeout, between 50 ms and 1 s.
    fn poll(&self) -> Duration {
        (self.heartbeat / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn client(&self) -> Result<redis::Client, GatewayError> {
        wire::client(&self.url).map_err(|e| GatewayError::Redis(e.to_string()))
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Counts a token's live sessions in Redis, atomically, so the limit holds across gateways:
/// drops members whose session ended, expired or lost its worker, then adds the new one if the
/// count allows. A member is also kept while its request waits for a worker (`:pending`).
const TOKEN_LIMIT: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(members) do
  local base = ARGV[3] .. ':s:' .. id
  local st = redis.call('HGET', base, 'state')
  local pending = redis.call('EXISTS', base .. ':pending')
  local beat = redis.call('EXISTS', base .. ':hb')
  local live = (st == 'running' and beat == 1) or (not st and pending == 1)
  if not live then redis.call('SREM', KEYS[1], id) end
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SET', ARGV[3] .. ':s:' .. ARGV[2] .. ':pending', '1', 'PX', ARGV[4])
return 1
";

/// The gateway's side of `conduit serve --redis`: sessions are served by workers.
#[derive(Debug)]
pub(crate) struct RedisBackend {
    settings: RedisSettings,
    cmd: ConnectionManager,
    limit: redis::Script,
}

impl RedisBackend {
    pub(crate) fn new(settings: RedisSettings) -> Result<Self, GatewayError> {
        let cmd =
            wire::manager(settings.client()?).map_err(|e| GatewayError::Redis(e.to_string()))?;
        Ok(Self {
            settings,
            cmd,
            limit: redis::Script::new(TOKEN_LIMIT),
        })
    }

    /// Ask the workers for a session for `label` (at most `limit` live ones across every
    /// gateway) and connect to it once a worker started it.
    pub(crate) async fn open(
        &self,
        label: &str,
        request: &SessionRequest,
        limit: usize,
    ) -> Result<(String, Connection<GatewaySender, GatewayReceiver>), GatewayError> {
        let s = &self.settings;
        let mut cmd = self.cmd.clone();
        let id = wire::new_session_id();
        let took: i64 = self
            .limit
            .key(format!("{}:tok:{label}", s.prefix))
            .arg(limit)
            .arg(&id)
            .arg(&s.prefix)
            .arg(ms(s.start_timeout + Duration::from_secs(5)))
            .invoke_async(&mut cmd)
            .await
            .map_err(|e| unavailable("count the token's sessions", &e))?;
        if took == 0 {
            return Err(GatewayError::TooManySessions { limit });
        }
        let req = serde_json::to_string(request)
            .map_err(|e| GatewayError::InvalidOptions(e.to_string()))?;
        // With the request's trace (the worker's `worker.session` span joins it).
        wire::session_request_cmd(&s.prefix, &id, label, &req)
            .query_async::<Value>(&mut cmd)
            .await
            .map_err(|e| unavailable("request a session", &e))?;
        let t = RedisTransport::new(s.url.clone(), id.clone())
            .prefix(s.prefix.clone())
            .start_timeout(s.start_timeout)
            .poll_interval(s.poll());
        let conn = t.connect().await.map_err(|e| match e.gateway_kind() {
            Some(claude_conduit::GatewayErrorKind::Refused) => {
                GatewayError::InvalidOptions(gateway_message(&e))
            }
            Some(claude_conduit::GatewayErrorKind::TooManySessions) => {
                GatewayError::TooManySessions { limit }
            }
            _ => {
                tracing::error!(session = %id, error = %e, "no worker started the session");
                GatewayError::Spawn(e)
            }
        })?;
        Ok((id, conn))
    }
}

fn gateway_message(e: &claude_conduit::Error) -> String {
    match e {
        claude_conduit::Error::Gateway { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn unavailable(context: &str, e: &redis::RedisError) -> GatewayError {
    tracing::error!(error = %e, "redis: {context}");
    GatewayError::Redis(format!(
        "cannot {context} (the gateway's log has the details)"
    ))
}

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Shared with the gateways.
    pub redis: RedisSettings,
    /// This worker's name (in heartbeats and in [`claude_conduit::Error::SessionLost`]).
    pub name: String,
    /// Sessions this worker runs at once.
    pub max_sessions: usize,
}

/// `conduit worker`: takes session requests from Redis and runs their CLIs as its children,
/// through the gateway's [`SessionManager`] (policy, configuration, environment).
pub struct Worker {
    settings: WorkerSettings,
    manager: SessionManager,
    client: redis::Client,
    cmd: ConnectionManager,
    /// One blocking reader for every session's in- and ack-streams.
    hub: ReadHub,
    live: Arc<Mutex<HashMap<String, Live>>>,
    /// Registered at first use, so a recorder installed after `Worker::new` gets them.
    metrics: std::sync::OnceLock<WorkerMetrics>,
}

/// The worker's metrics, labelled with its name (one label value per worker process: bounded;
/// never a session id). No-ops without an installed recorder.
struct WorkerMetrics {
    sessions: metrics::Gauge,
    taken: metrics::Counter,
    claimed: metrics::Counter,
    refused: metrics::Counter,
    lost: metrics::Counter,
    batches: metrics::Counter,
    frames: metrics::Counter,
}

impl WorkerMetrics {
    fn new(worker: &str) -> Self {
        use claude_conduit::telemetry::names;
        let w = worker.to_owned();
        Self {
            sessions: metrics::gauge!(names::WORKER_SESSIONS, "worker" => w.clone()),
            taken: metrics::counter!(names::WORKER_TAKEN, "worker" => w.clone()),
            claimed: metrics::counter!(names::WORKER_CLAIMED, "worker" => w.clone()),
            refused: metrics::counter!(names::WORKER_REFUSED, "worker" => w.clone()),
            lost: metrics::counter!(names::WORKER_LOST, "worker" => w.clone()),
            batches: metrics::counter!(names::WORKER_XADD_BATCHES, "worker" => w.clone()),
            frames: metrics::counter!(names::WORKER_XADD_FRAMES, "worker" => w),
        }
    }
}

/// A session this worker runs.
#[derive(Clone)]
struct Live {
    session: Arc<Session>,
    /// Why the worker ends it (a malformed entry, lost data); goes into the end's `stderr_tail`.
    fatal: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker with `config` (the gateway's: template, policy, environment, state directory)
    /// and `settings`.
    pub fn new(
        config: crate::config::GatewayConfig,
        settings: WorkerSettings,
    ) -> Result<Self, GatewayError> {
        let client = settings.redis.client()?;
        let cmd = wire::manager(client.clone()).map_err(|e| GatewayError::Redis(e.to_string()))?;
        let config = config.max_sessions_per_token(settings.max_sessions.max(1));
        let hub = ReadHub::new(
            client.clone(),
            cmd.clone(),
            ReadMode::Plain,
            settings.redis.poll(),
        );
        Ok(Self {
            hub,
            manager: SessionManager::new(config),
            metrics: std::sync::OnceLock::new(),
            settings,
            client,
            cmd,
            live: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The sessions' manager (process ids of the CLIs, for tests).
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    fn metrics(&self) -> &WorkerMetrics {
        self.metrics
            .get_or_init(|| WorkerMetrics::new(&self.settings.name))
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serve until `shutdown` resolves; then close every CLI.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let this = Arc::new(self);
        let beat = tokio::spawn(heartbeats(this.clone()));
        tokio::select! {
            () = shutdown => {}
            () = this.clone().take_requests() => {}
        }
        beat.abort();
        this.manager.shutdown().await;
        Ok(())
    }

    /// The main loop: read session requests (and claim stale ones) while there is room.
    async fn take_requests(self: Arc<Self>) {
        let s = &self.settings;
        let sessions = Keys::sessions(&s.redis.prefix);
        let mut block: Option<MultiplexedConnection> = None;
        let mut failures = 0u32;
        let mut last_claim = tokio::time::Instant::now();
        loop {
            if block.is_none() {
                match self.connect_group(&sessions).await {
                    Ok(c) => {
                        block = Some(c);
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "redis: cannot read session requests; retrying");
                        tokio::time::sleep(backoff(failures)).await;
                        continue;
                    }
                }
            }
            if self.live().len() >= s.max_sessions {
                tokio::time::sleep(s.redis.poll()).await;
                continue;
            }
            let Some(conn) = block.as_mut() else { continue };
            let mut entries = Vec::new();
            let claim_every = s.redis.claim_idle / 2;
            let claiming = last_claim.elapsed() >= claim_every;
            let r = if claiming {
                last_claim = tokio::time::Instant::now();
                redis::cmd("XAUTOCLAIM")
                    .arg(&sessions)
                    .arg(WORKERS_GROUP)
                    .arg(&s.name)
                    .arg(ms(s.redis.claim_idle))
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(1)
                    .query_async::<Value>(conn)
                    .await
                    .map(|v| match v {
                        // [next-id, [entries…], [deleted…]]
                        Value::Array(mut parts) if parts.len() >= 2 => {
                            match std::mem::take(&mut parts[1]) {
                                Value::Array(e) => e
                                    .into_iter()
                                    .filter_map(|e| wire::parse_entry(e).ok())
                                    .collect(),
                                _ => Vec::new(),
                            }
                        }
                        _ => Vec::new(),
                    })
            } else {
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(WORKERS_GROUP)
                    .arg(&s.name)
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(ms(s.redis.poll()))
                    .arg("STREAMS")
                    .arg(&sessions)
                    .arg(">")
                    .query_async::<Value>(conn)
                    .await
                    .map(|v| {
                        wire::parse_read(v)
                            .unwrap_or_default()
                            .into_iter()
                            .flat_map(|(_, e)| e)
                            .collect()
                    })
            };
            match r {
                Ok(e) => entries.extend(e),
                Err(e) => {
                    tracing::warn!(error = %e, "redis: reading session requests failed; reconnecting");
                    block = None;
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            }
            for (entry_id, fields) in entries {
                self.clone()
                    .take(&sessions, entry_id, fields, claiming)
                    .await;
            }
        }
    }

    async fn connect_group(
        &self,
        sessions: &str,
    ) -> Result<MultiplexedConnection, redis::RedisError> {
        let mut conn = wire::blocking_connection(&self.client).await?;
        let r = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(sessions)
            .arg(WORKERS_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<Value>(&mut conn)
            .await;
        match r {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
            _ => Ok(conn),
        }
    }

    /// Acknowledge a session request entry: done with it.
    async fn ack(&self, sessions: &str, entry_id: &str) {
        let mut cmd = self.cmd.clone();
        let _ = redis::cmd("XACK")
            .arg(sessions)
            .arg(WORKERS_GROUP)
            .arg(entry_id)
            .query_async::<Value>(&mut cmd)
            .await;
    }

    /// Start the session of one request entry (`claimed`: taken over from another worker by
    /// `XAUTOCLAIM`), unless another worker did.
    async fn take(
        self: Arc<Self>,
        sessions: &str,
        entry_id: String,
        fields: Option<Vec<(String, Value)>>,
        claimed: bool,
    ) {
        let Some(mut fields) = fields else {
            return self.ack(sessions, &entry_id).await;
        };
        let text = |f: &mut Vec<(String, Value)>, k: &str| {
            wire::take_field(f, k).and_then(|b| String::from_utf8(b.to_vec()).ok())
        };
        let (Some(id), Some(owner), Some(req)) = (
            text(&mut fields, "id"),
            text(&mut fields, "owner"),
            text(&mut fields, "req"),
        ) else {
            tracing::warn!(entry = %entry_id, "malformed session request skipped");
            return self.ack(sessions, &entry_id).await;
        };
        // The session's span, in the requester's trace when the request carries one.
        let span = tracing::info_span!(
            "worker.session",
            session = %id,
            worker = %self.settings.name,
            claimed,
            outcome = tracing::field::Empty,
        );
        let traceparent = text(&mut fields, wire::FIELD_TRACEPARENT)
            .filter(|tp| tp.len() <= wire::MAX_TRACEPARENT);
        #[cfg(feature = "otel")]
        if let Some(tp) = &traceparent {
            claude_conduit::telemetry::otel::set_parent(&span, tp);
        }
        #[cfg(not(feature = "otel"))]
        let _ = traceparent;
        use tracing::Instrument;
        self.start(sessions, entry_id, id, owner, req, claimed)
            .instrument(span)
            .await;
    }

    /// [`take`](Self::take) once the entry is read: claim the session, start it, serve it.
    async fn start(
        self: Arc<Self>,
        sessions: &str,
        entry_id: String,
        id: String,
        owner: String,
        req: String,
        claimed: bool,
    ) {
        use tracing::Instrument;
        let cmd = self.cmd.clone();
        let ack = |_| self.ack(sessions, &entry_id);
        let span = tracing::Span::current();
        let keys = Keys::new(&self.settings.redis.prefix, &id);
        // Claim: the heartbeat key, unless a live worker holds it; never restart a session that
        // a worker started before (its client has it as lost).
        // A Redis that just restarted fails the first commands on the old connection (the
        // manager reconnects behind them): those are retried. A request whose claim still
        // cannot be decided stays pending (not acked) for XAUTOCLAIM, never dropped.
        let (name, heartbeat) = (&self.settings.name, ms(self.settings.redis.heartbeat));
        let got = retrying(|| {
            let mut cmd = cmd.clone();
            let key = keys.heartbeat();
            async move {
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(name)
                    .arg("NX")
                    .arg("PX")
                    .arg(heartbeat)
                    .query_async(&mut cmd)
                    .await?;
                if set.is_some() {
                    return Ok(true);
                }
                // Ours already (a retried SET whose first reply was lost)?
                let holder: Option<String> =
                    redis::cmd("GET").arg(&key).query_async(&mut cmd).await?;
                Ok(holder.as_deref() == Some(name.as_str()))
            }
        })
        .await;
        let started = retrying(|| {
            let mut cmd = cmd.clone();
            let key = keys.meta();
            async move {
                redis::cmd("HEXISTS")
                    .arg(key)
                    .arg(meta::WORKER)
                    .query_async::<bool>(&mut cmd)
                    .await
            }
        })
        .await;
        match (got, started) {
            (Ok(true), Ok(false)) => {}
            (Ok(_), Ok(_)) => {
                span.record("outcome", "elsewhere");
                return ack(()).await;
            }
            (Err(e), _) | (_, Err(e)) => {
                span.record("outcome", "pending");
                tracing::warn!(entry = %entry_id, error = %e, "redis: cannot claim a session request; it stays pending");
                return;
            }
        }
        let request = match serde_json::from_str::<SessionRequest>(&req) {
            Ok(r) => r,
            Err(e) => {
                span.record("outcome", "refused");
                self.metrics().refused.increment(1);
                self.refuse(
                    &keys,
                    ErrorInfo::new(kind::BAD_REQUEST, format!("session request: {e}")),
                )
                .await;
                return ack(()).await;
            }
        };
        match self
            .manager
            .create_labeled(TokenId(0), &owner, &request)
            .await
        {
            Ok(info) => {
                let Some(session) = self.manager.get(TokenId(0), &info.id) else {
                    return ack(()).await;
                };
                let live = Live {
                    session,
                    fatal: Arc::new(Mutex::new(None)),
                };
                if let Err(e) = retrying(|| self.announce(&keys, &owner, &live)).await {
                    span.record("outcome", "pending");
                    tracing::warn!(session = %id, error = %e, "redis: cannot start the session");
                    self.manager.delete(TokenId(0), &info.id).await;
                    return;
                }
                self.live().insert(id.clone(), live.clone());
                self.metrics().sessions.increment(1.0);
                if claimed {
                    self.metrics().claimed.increment(1);
                } else {
                    self.metrics().taken.increment(1);
                }
                ack(()).await;
                tracing::info!(session = %id, worker = %self.settings.name, pid = ?info.pid, "session started");
                tokio::spawn(
                    self.clone()
                        .serve(keys, live, info.id)
                        .instrument(span.clone()),
                );
            }
            Err(e) => {
                let info = match &e {
                    GatewayError::InvalidOptions(m) => ErrorInfo::new(kind::REFUSED, m),
                    GatewayError::TooManySessions { .. } => {
                        ErrorInfo::new(kind::TOO_MANY_SESSIONS, &e)
                    }
                    other => ErrorInfo::new(kind::INTERNAL, other),
                };
                tracing::warn!(session = %id, error = %e, "session refused");
                span.record("outcome", "refused");
                self.metrics().refused.increment(1);
                self.refuse(&keys, info).await;
                ack(()).await;
            }
        }
    }

    async fn refuse(&self, keys: &Keys, info: ErrorInfo) {
        let mut cmd = self.cmd.clone();
        let json = serde_json::to_string(&info).unwrap_or_default();
        let mut p = redis::pipe();
        p.cmd("HSET")
            .arg(keys.meta())
            .arg(meta::STATE)
            .arg("refused")
            .arg(meta::ERROR)
            .arg(json)
            .ignore();
        expire_all(&mut p, keys, self.settings.redis.session_ttl);
        let _ = p.query_async::<()>(&mut cmd).await;
    }

    /// Create the session's streams and groups, then say it runs (last: clients wait for it).
    async fn announce(
        &self,
        keys: &Keys,
        owner: &str,
        live: &Live,
    ) -> Result<(), redis::RedisError> {
        let mut cmd = self.cmd.clone();
        for (key, group) in [
            (keys.output(), CLIENT_GROUP),
            (keys.refusals(), CLIENT_GROUP),
            (keys.input(), WORKERS_GROUP),
            (keys.acks(), WORKERS_GROUP),
        ] {
            let r = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg(group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async::<Value>(&mut cmd)
                .await;
            if let Err(e) = r
                && e.code() != Some("BUSYGROUP")
            {
                return Err(e);
            }
        }
        let s = &live.session;
        redis::pipe()
            .cmd("SET")
            .arg(keys.heartbeat())
            .arg(&self.settings.name)
            .arg("PX")
            .arg(ms(self.settings.redis.heartbeat))
            .ignore()
            .cmd("HSET")
            .arg(keys.meta())
            .arg(meta::PID)
            .arg(s.pid().unwrap_or(0))
            .arg(meta::MAX_FRAME)
            .arg(s.max_frame_bytes())
            .arg(meta::OWNER)
            .arg(owner)
            .arg(meta::STATE)
            .arg("running")
            .arg(meta::WORKER)
            .arg(&self.settings.name)
            .ignore()
            .query_async::<()>(&mut cmd)
            .await
    }

    /// Attach the session to Redis: its frames out, the client's frames, acks and controls in;
    /// at the end, the end entry and the keys' expiry.
    async fn serve(self: Arc<Self>, keys: Keys, live: Live, local_id: String) {
        let (done_tx, done_rx) = watch::channel(false);
        let sub = self.hub.subscribe(vec![keys.input(), keys.acks()]);
        let inbound = tokio::spawn(inbound(
            sub,
            self.cmd.clone(),
            keys.clone(),
            live.clone(),
            done_rx,
        ));
        let end = outbound(&self, &keys, &live).await;
        let _ = done_tx.send(true);
        let _ = inbound.await;
        let mut cmd = self.cmd.clone();
        let mut end = end;
        if let Some(why) = live
            .fatal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            end.stderr_tail = why;
        }
        let json = serde_json::to_vec(&end).unwrap_or_default();
        let mut p = redis::pipe();
        p.cmd("XADD")
            .arg(keys.output())
            .arg("NOMKSTREAM")
            .arg(END_ID)
            .arg(FIELD_END)
            .arg(json)
            .ignore()
            .cmd("HSET")
            .arg(keys.meta())
            .arg(meta::STATE)
            .arg("ended")
            .ignore()
            .cmd("DEL")
            .arg(keys.heartbeat())
            .ignore();
        expire_all(&mut p, &keys, self.settings.redis.session_ttl);
        if let Err(e) = p.query_async::<()>(&mut cmd).await {
            tracing::warn!(session = %keys.id(), error = %e, "redis: cannot record the session's end");
        }
        if self.live().remove(keys.id()).is_some() {
            self.metrics().sessions.decrement(1.0);
        }
        let lost = live
            .fatal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if lost {
            self.metrics().lost.increment(1);
        }
        tracing::Span::current().record("outcome", if lost { "lost" } else { "ended" });
        self.manager.delete(TokenId(0), &local_id).await;
        tracing::info!(session = %keys.id(), "session ended");
    }
}

fn expire_all(p: &mut redis::Pipeline, keys: &Keys, ttl: Duration) {
    for k in keys.all() {
        p.cmd("PEXPIRE").arg(k).arg(ms(ttl)).ignore();
    }
}

/// `f` again while it fails for a connection reason (a restarted or unreachable Redis), up to
/// five more times with [`backoff`]; any other outcome at once.
async fn retrying<T, F, Fut>(mut f: F) -> Result<T, redis::RedisError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
{
    let mut failures = 0u32;
    loop {
        match f().await {
            Err(e)
                if failures < 5
                    && (e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.is_timeout()) =>
            {
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
            r => return r,
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50)
        .saturating_mul(2u32.saturating_pow(failures.min(8)))
        .min(Duration::from_secs(2))
}

/// Session → Redis: number-preserving `XADD`s of the ring's frames, until the end.
async fn outbound(worker: &Worker, keys: &Keys, live: &Live) -> End {
    let session = &live.session;
    let Ok(attached) = session.attach(0) else {
        return End::from(&claude_conduit::transport::Termination::default());
    };
    let mut events = session.subscribe();
    let mut cursor = 0u64;
    let mut cmd = worker.cmd.clone();
    let mut failures = 0u32;
    loop {
        events.borrow_and_update();
        match session.poll_outbound(attached.generation, cursor, 256) {
            Outbound::Frames(taken) => {
                let last = taken.last;
                match add_frames(&mut cmd, keys, &taken.out).await {
                    Ok(true) => {
                        worker.metrics().batches.increment(1);
                        worker.metrics().frames.increment(taken.frames as u64);
                        cursor = last;
                        failures = 0;
                    }
                    Ok(false) => {
                        lose(
                            live,
                            "the session's data is gone from Redis (restarted without persistence?)",
                        );
                        session.request_close();
                        cursor = last;
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(session = %keys.id(), error = %e, "redis: cannot add frames; retrying");
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
            }
            Outbound::Wait => {
                if events.changed().await.is_err() {
                    return End::from(&claude_conduit::transport::Termination::default());
                }
            }
            Outbound::End(end) => return end,
            Outbound::ShuttingDown | Outbound::Replaced | Outbound::Dropped | Outbound::Lost(_) => {
                let mut t = claude_conduit::transport::Termination::default();
                t.stderr_tail = format!("worker {} shut down", worker.settings.name);
                return End::from(&t);
            }
        }
    }
}

/// `XADD NOMKSTREAM` each frame with id `0-<seq>`. `Ok(false)`: the stream is gone.
async fn add_frames(
    cmd: &mut ConnectionManager,
    keys: &Keys,
    frames: &[(u64, Bytes)],
) -> Result<bool, redis::RedisError> {
    let out = keys.output();
    let mut p = redis::pipe();
    for (seq, f) in frames {
        p.cmd("XADD")
            .arg(&out)
            .arg("NOMKSTREAM")
            .arg(format!("0-{seq}"))
            .arg(FIELD_FRAME)
            .arg(f.as_ref());
    }
    match p.query_async::<Vec<Value>>(cmd).await {
        Ok(v) => Ok(!v.iter().any(|r| matches!(r, Value::Nil))),
        // Some were there already (a retry after a dropped reply): one by one.
        Err(e) if wire::is_id_taken(&e) => {
            for (seq, f) in frames {
                let r = redis::cmd("XADD")
                    .arg(&out)
                    .arg("NOMKSTREAM")
                    .arg(format!("0-{seq}"))
                    .arg(FIELD_FRAME)
                    .arg(f.as_ref())
                    .query_async::<Value>(cmd)
                    .await;
                match r {
                    Ok(Value::Nil) => return Ok(false),
                    Ok(_) => {}
                    Err(e) if wire::is_id_taken(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn lose(live: &Live, why: &str) {
    let mut f = live
        .fatal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if f.is_none() {
        *f = Some(why.to_owned());
    }
}

/// Redis → session: the client's frames (`0-<seq>`), end of input (`1-0`), close (`1-1`) and
/// acks, through the worker's read hub. A malformed entry ends the session with an error naming
/// it.
async fn inbound(
    mut sub: Subscription,
    mut cmd: ConnectionManager,
    keys: Keys,
    live: Live,
    mut done: watch::Receiver<bool>,
) {
    let session = &live.session;
    let input = keys.input();
    loop {
        if *done.borrow() {
            return;
        }
        let ev = tokio::select! {
            ev = sub.recv() => ev,
            _ = done.changed() => return,
        };
        let (which, entries) = match ev {
            Some(HubEvent::Entries(which, entries)) => (which, entries),
            Some(HubEvent::Failed(_, why)) => {
                lose(&live, &format!("redis: {why}"));
                session.request_close();
                return;
            }
            // A plain read never finds a stream gone; the heartbeats notice lost data.
            Some(HubEvent::Gone(_)) | None => return,
        };
        let is_input = which == 0;
        let mut last_frame = None;
        for (id, fields) in entries {
            let mut fields = fields.unwrap_or_default();
            if !is_input {
                let n = wire::take_field(&mut fields, FIELD_ACK)
                    .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok());
                if let Some(n) = n {
                    session.ack(n);
                }
                continue;
            }
            let bad = |why: &str| format!("malformed entry {id} in {input}: {why}");
            let step = if let Some(seq) = wire::frame_seq(&id) {
                last_frame = Some(seq);
                match wire::take_field(&mut fields, FIELD_FRAME) {
                    Some(frame) => Ok(Some(Input::Frame {
                        seq: Some(seq),
                        frame,
                    })),
                    None => Err(bad("no `f` field")),
                }
            } else if id == END_INPUT_ID {
                Ok(Some(Input::EndInput))
            } else if id == CLOSE_ID {
                session.request_close();
                Ok(None)
            } else {
                Err(bad("not a frame id `0-<seq>`, `1-0` or `1-1`"))
            };
            let input_item = match step {
                Ok(Some(i)) => i,
                Ok(None) => continue,
                Err(why) => {
                    tracing::warn!(session = %keys.id(), "{why}");
                    lose(&live, &why);
                    session.request_close();
                    return;
                }
            };
            match session.to_cli(input_item).await {
                Ok(()) => {}
                Err(e) if e.is_per_frame() => {
                    let json = serde_json::to_vec(&e.info()).unwrap_or_default();
                    let _ = redis::cmd("XADD")
                        .arg(keys.refusals())
                        .arg("NOMKSTREAM")
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(1000)
                        .arg("*")
                        .arg(FIELD_ERROR)
                        .arg(json)
                        .query_async::<Value>(&mut cmd)
                        .await;
                }
                Err(InputError::Gap { expected, got }) => {
                    let why = format!(
                        "malformed entry {id} in {input}: frame {got} arrived, {expected} expected"
                    );
                    lose(&live, &why);
                    session.request_close();
                    return;
                }
                Err(_) => return,
            }
        }
        // Frames the session took are not needed in Redis any more.
        if let Some(seq) = last_frame {
            let _ = redis::cmd("XTRIM")
                .arg(&input)
                .arg("MINID")
                .arg(format!("0-{}", seq + 1))
                .query_async::<Value>(&mut cmd)
                .await;
        }
    }
}

/// Refresh every live session's heartbeat; end sessions whose data is gone from Redis.
async fn heartbeats(worker: Arc<Worker>) {
    let s = &worker.settings;
    let every = s.redis.heartbeat / 3;
    let mut cmd = worker.cmd.clone();
    loop {
        tokio::time::sleep(every).await;
        let live: Vec<(String, Live)> = worker
            .live()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if live.is_empty() {
            continue;
        }
        let mut p = redis::pipe();
        for (id, _) in &live {
            let keys = Keys::new(&s.redis.prefix, id);
            p.cmd("SET")
                .arg(keys.heartbeat())
                .arg(&s.name)
                .arg("PX")
                .arg(ms(s.redis.heartbeat))
                .ignore();
            p.cmd("EXISTS").arg(keys.meta());
        }
        match p.query_async::<Vec<i64>>(&mut cmd).await {
            Ok(exists) => {
                for ((id, l), e) in live.iter().zip(exists) {
                    if e == 0 {
                        tracing::warn!(session = %id, "the session's data is gone from Redis; ending it");
                        lose(
                            l,
                            "the session's data is gone from Redis (restarted without persistence?)",
                        );
                        l.session.request_close();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "redis: heartbeat failed"),
        }
    }
}
