//! Scale-out through Redis Streams (docs/SCALE.md) against a real `redis-server` on a free
//! loopback port, workers running `mock-claude`, and the SDK's Redis transport or a gateway in
//! `--redis` mode: load across two workers, a request a dead worker read and another claims,
//! a slow client's backpressure across the broker, a malformed entry, Redis restarts with and
//! without persistence, per-token limits across two gateways, secrets. Killing a worker process
//! is in `crates/conduit-cli/tests/scale.rs` (it needs real processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use claude_conduit::remote::{Remote, SessionRequest};
use claude_conduit::transport::redis::RedisTransport;
use claude_conduit::transport::websocket::WebSocketTransport;
use claude_conduit::transport::{
    Connection, FrameReceiver, FrameSender, GatewayReceiver, GatewaySender, GatewayTransport,
    Received, Transport,
};
use claude_conduit_testkit::RedisServer;
use serde_json::Value;

mod support;
use support::*;

const USER: &[u8] = br#"{"type":"user","message":{"role":"user","content":"go"},"parent_tool_use_id":null,"session_id":"default"}"#;

/// A session straight on the workers through the SDK's Redis transport.
async fn direct(url: &str) -> (String, Connection<GatewaySender, GatewayReceiver>) {
    let t = RedisTransport::open_session(url, &SessionRequest::default())
        .await
        .expect("request a session")
        .poll_interval(Duration::from_millis(100));
    let id = t.session_id().to_owned();
    let conn = tokio::time::timeout(T, t.connect())
        .await
        .expect("started in time")
        .expect("connect");
    (id, conn)
}

/// Receive until the end: the frames' `type`s and how it ended.
async fn drain<R: FrameReceiver>(rx: &mut R) -> (Vec<String>, claude_conduit::Result<()>) {
    let mut types = Vec::new();
    let end = loop {
        match tokio::time::timeout(T, rx.recv()).await.expect("in time") {
            Ok(Received::Frame(frame)) => {
                let v: Value = serde_json::from_slice(&frame).expect("a JSON frame");
                types.push(v["type"].as_str().unwrap_or_default().to_owned());
            }
            Ok(Received::Bad(e)) => panic!("refusal: {e}"),
            Ok(Received::End) => break Ok(()),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break Err(e),
        }
    };
    (types, end)
}

/// A real redis-server and one worker `w1` (up to 8 sessions) whose mock CLI answers each turn
/// with `messages` assistant messages.
fn redis_and_worker(messages: &str) -> (RedisServer, RunningWorker) {
    let redis = RedisServer::start().unwrap();
    let w = spawn_worker(
        config(&[("MOCK_CLAUDE_MESSAGES", messages)]),
        &redis.url(),
        "w1",
        8,
    );
    (redis, w)
}

fn assistants(types: &[String]) -> usize {
    types.iter().filter(|t| *t == "assistant").count()
}

fn hget(redis: &RedisServer, key: &str, field: &str) -> String {
    let r = redis.command(&["HGET", key, field]).unwrap();
    r.lines().nth(1).unwrap_or_default().to_owned()
}

fn int(redis: &RedisServer, args: &[&str]) -> i64 {
    let r = redis.command(args).unwrap();
    r.trim().trim_start_matches(':').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_transport_runs_a_session_on_a_worker_and_its_keys_expire_after() {
    let (redis, w) = redis_and_worker("4");
    let (id, conn) = direct(&redis.url()).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (types, end) = drain(&mut rx).await;
    end.expect("a clean end");
    assert_eq!(assistants(&types), 4, "{types:?}");
    assert_eq!(rx.termination().and_then(|t| t.code), Some(0));
    let meta = format!("conduit:s:{id}");
    assert_eq!(hget(&redis, &meta, "worker"), "w1");
    // Ended: the state says so and every key of the session expires.
    let deadline = tokio::time::Instant::now() + T;
    while hget(&redis, &meta, "state") != "ended" {
        assert!(tokio::time::Instant::now() < deadline, "never marked ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for suffix in ["", ":in", ":out", ":ack", ":ref"] {
        let ttl = int(&redis, &["PTTL", &format!("{meta}{suffix}")]);
        assert!(ttl > 0, "{meta}{suffix} has no expiry: {ttl}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions_across_two_workers() {
    let gw = start_scaled_with(
        config(&[("MOCK_CLAUDE_MESSAGES", "3")]).max_sessions_per_token(256),
        2,
    )
    .await;
    let remote = Remote::parse(&format!("ws://{}", gw.addr), TOKEN).unwrap();
    let runs = (0..200).map(|_| {
        let remote = remote.clone();
        tokio::spawn(async move {
            let t = WebSocketTransport::open_session(&remote, &SessionRequest::default())
                .await
                .expect("create");
            let id = t.session_id().to_owned();
            let conn = t.connect().await.expect("connect");
            let (mut tx, mut rx) = (conn.sender, conn.receiver);
            tx.send(Bytes::from_static(USER)).await.unwrap();
            tx.end_input().await.unwrap();
            let (types, end) = drain(&mut rx).await;
            end.expect("a clean end");
            assert_eq!(assistants(&types), 3, "{types:?}");
            id
        })
    });
    let ids = tokio::time::timeout(T * 3, futures::future::join_all(runs))
        .await
        .expect("200 sessions in time");
    let redis = &gw.scaled.as_ref().unwrap().redis;
    let mut per_worker = std::collections::BTreeMap::new();
    for id in ids {
        let id = id.expect("a session task");
        *per_worker
            .entry(hget(redis, &format!("conduit:s:{id}"), "worker"))
            .or_insert(0) += 1;
    }
    assert_eq!(per_worker.values().sum::<i32>(), 200, "{per_worker:?}");
    assert_eq!(per_worker.len(), 2, "both workers served: {per_worker:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_a_dead_worker_read_is_claimed_and_served_by_another() {
    let redis = RedisServer::start().unwrap();
    // A worker read the request and died before starting it: the entry is pending for it.
    redis
        .command(&[
            "XGROUP",
            "CREATE",
            "conduit:sessions",
            "workers",
            "0",
            "MKSTREAM",
        ])
        .unwrap();
    let id = "feedfacefeedfacefeedfacefeedface";
    redis
        .command(&[
            "XADD",
            "conduit:sessions",
            "*",
            "id",
            id,
            "owner",
            "t",
            "req",
            "{}",
        ])
        .unwrap();
    let read = redis
        .command(&[
            "XREADGROUP",
            "GROUP",
            "workers",
            "ghost",
            "COUNT",
            "1",
            "STREAMS",
            "conduit:sessions",
            ">",
        ])
        .unwrap();
    assert!(read.contains(id), "{read}");
    // A live worker claims it once it has been idle for the claim time (1 s here).
    let w = spawn_worker(
        config(&[("MOCK_CLAUDE_MESSAGES", "2")]),
        &redis.url(),
        "survivor",
        8,
    );
    let t = RedisTransport::new(redis.url(), id).poll_interval(Duration::from_millis(100));
    let conn = tokio::time::timeout(T, t.connect())
        .await
        .expect("in time")
        .expect("claimed and started");
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (types, end) = drain(&mut rx).await;
    end.expect("a clean end");
    assert_eq!(assistants(&types), 2);
    assert_eq!(
        hget(&redis, &format!("conduit:s:{id}"), "worker"),
        "survivor"
    );
    // Nothing is left pending in the workers' group.
    let pending = redis
        .command(&["XPENDING", "conduit:sessions", "workers"])
        .unwrap();
    assert!(pending.starts_with("*4\r\n:0"), "{pending}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_the_worker_back_and_loses_nothing() {
    let redis = RedisServer::start().unwrap();
    let w = spawn_worker(
        config(&[("MOCK_CLAUDE_MESSAGES", "3000")]).replay_frames(64),
        &redis.url(),
        "w1",
        8,
    );
    let (id, conn) = direct(&redis.url()).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    // Read one frame, then nothing for a while: the out-stream stays at most the ring's size
    // (64 unacked frames plus up to 64 gateway answers), and stops growing.
    let first = tokio::time::timeout(T, rx.recv()).await.unwrap();
    assert!(matches!(first, Ok(Received::Frame(_))), "{first:?}");
    let out = format!("conduit:s:{id}:out");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let a = int(&redis, &["XLEN", &out]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = int(&redis, &["XLEN", &out]);
    assert!(a <= 128 && b <= 128, "the out-stream grew: {a}, {b}");
    assert_eq!(a, b, "the worker kept reading its CLI while nobody read");
    // Reading again: every frame arrives, in order (the driver checks the numbers).
    let (types, end) = drain(&mut rx).await;
    end.expect("a clean end");
    assert_eq!(assistants(&types), 3000, "{}", types.len());
    // What was acked is trimmed: far fewer entries than frames remain.
    assert!(int(&redis, &["XLEN", &out]) <= 128);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_entry_ends_only_its_session_with_an_error_naming_the_entry() {
    let (redis, w) = redis_and_worker("3");
    let (bad_id, bad) = direct(&redis.url()).await;
    let (_good_id, good) = direct(&redis.url()).await;
    // An entry numbered like a frame, without the frame's field.
    redis
        .command(&["XADD", &format!("conduit:s:{bad_id}:in"), "0-1", "x", "y"])
        .unwrap();
    let mut bad_rx = bad.receiver;
    let (_, end) = drain(&mut bad_rx).await;
    end.expect("an end, not a hang");
    let tail = bad_rx.termination().unwrap().stderr_tail;
    assert!(tail.contains("malformed entry 0-1"), "{tail}");
    assert!(tail.contains(&format!("conduit:s:{bad_id}:in")), "{tail}");
    // The other session goes on.
    let (mut tx, mut rx) = (good.sender, good.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (types, end) = drain(&mut rx).await;
    end.expect("a clean end");
    assert_eq!(assistants(&types), 3);
    drop(bad.sender);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_out_entry_is_a_typed_error_naming_it() {
    let redis = RedisServer::start().unwrap();
    let w = spawn_worker(config(&[]), &redis.url(), "w1", 8);
    let (id, conn) = direct(&redis.url()).await;
    redis
        .command(&["XADD", &format!("conduit:s:{id}:out"), "0-1", "nof", "x"])
        .unwrap();
    let mut rx = conn.receiver;
    let (_, end) = drain(&mut rx).await;
    let e = end.expect_err("fatal");
    assert!(e.to_string().contains("malformed entry 0-1"), "{e}");
    drop(conn.sender);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_its_data_ends_sessions_clearly_and_new_ones_work() {
    let (mut redis, w) = redis_and_worker("3");
    let (_, conn) = direct(&redis.url()).await;
    let mut rx = conn.receiver;
    redis.restart().unwrap();
    let (_, end) = drain(&mut rx).await;
    let e = end.expect_err("the session's data is gone");
    assert!(e.to_string().contains("gone from Redis"), "{e}");
    drop(conn.sender);
    // The worker reconnected: a new session is served.
    let (_, conn) = direct(&redis.url()).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (types, end) = drain(&mut rx).await;
    end.expect("a clean end");
    assert_eq!(assistants(&types), 3);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_data_survived_a_restart_goes_on() {
    let mut redis = RedisServer::builder().persistent().start().unwrap();
    let w = spawn_worker(
        config(&[
            ("MOCK_CLAUDE_MESSAGES", "400"),
            ("MOCK_CLAUDE_DELAY_MS", "3"),
        ]),
        &redis.url(),
        "w1",
        8,
    );
    let (_, conn) = direct(&redis.url()).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let mut types = Vec::new();
    while types.len() < 50 {
        let Received::Frame(f) = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap() else {
            panic!("a frame expected");
        };
        let v: Value = serde_json::from_slice(&f).unwrap();
        types.push(v["type"].as_str().unwrap_or_default().to_owned());
    }
    redis.restart().unwrap();
    let (rest, end) = drain(&mut rx).await;
    end.expect("the session went on");
    types.extend(rest);
    assert_eq!(assistants(&types), 400, "{}", types.len());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_token_limits_hold_across_two_gateways_and_tokens_stay_apart() {
    let limit_config = || config(&[]).max_sessions_per_token(2);
    let gw1 = start_scaled(limit_config()).await;
    let url = gw1.scaled.as_ref().unwrap().redis.url();
    let gw2 = start(limit_config().redis(redis_settings(&url))).await;
    let (s1, b1) = post_session(gw1.addr, TOKEN, &serde_json::json!({})).await;
    let (s2, _) = post_session(gw2.addr, TOKEN, &serde_json::json!({})).await;
    assert_eq!((s1, s2), (201, 201));
    // The third, on either gateway, is over the token's limit.
    let (s3, b3) = post_session(gw2.addr, TOKEN, &serde_json::json!({})).await;
    assert_eq!(s3, 429, "{b3}");
    assert_eq!(b3["error"]["kind"], "too_many_sessions");
    // Another token is counted apart, and cannot reach TOKEN's session by its id.
    let (s4, _) = post_session(gw1.addr, OTHER, &serde_json::json!({})).await;
    assert_eq!(s4, 201);
    let id = b1["id"].as_str().unwrap();
    let other = Remote::parse(&format!("ws://{}", gw1.addr), OTHER).unwrap();
    let e = WebSocketTransport::new(&other, id)
        .connect()
        .await
        .expect_err("not OTHER's session");
    assert_eq!(
        e.gateway_kind(),
        Some(claude_conduit::GatewayErrorKind::NotFound),
        "{e}"
    );
    gw2.shutdown().await;
    gw1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_never_reaches_a_session_or_a_debug_print() {
    let redis = RedisServer::builder()
        .password("redis-pw-s3cret-xyz")
        .start()
        .unwrap();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    // A `--cli` that writes its environment down, then runs the mock.
    let cli = dir.path().join("claude-env");
    std::fs::write(
        &cli,
        format!(
            "#!/bin/sh\nenv > '{}/env.txt'\nexec '{}' \"$@\"\n",
            dir.path().display(),
            mock_claude().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cfg = config(&[("MOCK_CLAUDE_MESSAGES", "1")]);
    cfg = cfg
        .options(
            claude_conduit::Options::builder()
                .cli_path(&cli)
                .env("MOCK_CLAUDE_MESSAGES", "1")
                .build(),
        )
        // The environment a worker started with `CONDUIT_REDIS_URL` (and a REDIS_URL) has.
        .environment([
            ("CONDUIT_REDIS_URL", url.as_str()),
            ("REDIS_URL", url.as_str()),
            ("PATH", "/usr/bin:/bin"),
        ]);
    let w = spawn_worker(cfg.clone(), &url, "w1", 8);
    let (_, conn) = direct(&url).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (_, end) = drain(&mut rx).await;
    end.expect("a clean end");
    let recorded = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
    assert!(
        recorded.contains("MOCK_CLAUDE_MESSAGES"),
        "the recording ran"
    );
    assert!(!recorded.contains("redis-pw-s3cret-xyz"), "{recorded}");
    let debug = format!(
        "{:?} {:?}",
        cfg.redis(redis_settings(&url)),
        redis_settings(&url)
    );
    assert!(!debug.contains("redis-pw-s3cret-xyz"), "{debug}");
    let t = RedisTransport::new(url.clone(), "x");
    assert!(!format!("{t:?}").contains("redis-pw-s3cret-xyz"));
    w.stop().await;
}
