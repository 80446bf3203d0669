//! The Redis read hub (`transport::redis::hub`, docs/SCALE.md "Connections") against a real
//! `redis-server`: one blocking connection reads many sessions' streams, each subscription gets
//! only its own entries, a new subscription wakes a blocked read, a full subscription does not
//! hold the others back and loses nothing, and a killed hub connection resumes without loss or
//! duplicates. In both read modes: `XREAD` (the worker's) and `XREADGROUP` (the client's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use claude_conduit::transport::redis::hub::{HubEvent, ReadHub, ReadMode, Subscription};
use claude_conduit::transport::redis::{self as wire, CLIENT_GROUP};
use claude_conduit_testkit::RedisServer;
use redis::Value;
use redis::aio::ConnectionManager;

/// Far longer than any wait in these tests: a read that returned, returned because of a change.
const LONG_BLOCK: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(20);

fn modes() -> [ReadMode; 2] {
    [
        ReadMode::Plain,
        ReadMode::Group {
            group: CLIENT_GROUP.into(),
            consumer: CLIENT_GROUP.into(),
        },
    ]
}

fn hub(redis: &RedisServer, mode: ReadMode) -> (ReadHub, ConnectionManager) {
    let client = wire::client(&redis.url()).unwrap();
    let cmd = wire::manager(client.clone()).unwrap();
    (ReadHub::new(client, cmd.clone(), mode, LONG_BLOCK), cmd)
}

/// A stream with the client group (as a worker makes a session's out-stream).
async fn stream(cmd: &mut ConnectionManager, key: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(CLIENT_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<Value>(cmd)
        .await
        .unwrap();
}

/// `XADD key 0-<seq> f <key>/<seq>` for each of `seqs`.
async fn add(cmd: &mut ConnectionManager, key: &str, seqs: std::ops::RangeInclusive<u64>) {
    let mut p = redis::pipe();
    for s in seqs {
        p.cmd("XADD")
            .arg(key)
            .arg(format!("0-{s}"))
            .arg("f")
            .arg(format!("{key}/{s}"))
            .ignore();
    }
    p.query_async::<()>(cmd).await.unwrap();
}

/// The next `n` entries of `sub` (key index, seq), checking each entry's payload names its own
/// stream of `keys`.
async fn take(sub: &mut Subscription, keys: &[String], n: usize) -> Vec<(usize, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        let ev = tokio::time::timeout(T, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} entries came", got.len()))
            .expect("the hub is running");
        let HubEvent::Entries(i, entries) = ev else {
            panic!("entries expected, got {ev:?}");
        };
        for (id, fields) in entries {
            let seq = wire::frame_seq(&id).unwrap();
            let mut fields = fields.unwrap();
            let f = wire::take_field(&mut fields, "f").unwrap();
            assert_eq!(
                f,
                format!("{}/{seq}", keys[i]),
                "an entry of another stream"
            );
            got.push((i, seq));
        }
    }
    got
}

fn seqs(got: &[(usize, u64)], key: usize) -> Vec<u64> {
    got.iter()
        .filter(|(i, _)| *i == key)
        .map(|(_, s)| *s)
        .collect()
}

/// The client id of the hub's blocked connection (its command is `xread` or `xreadgroup`).
fn hub_client_id(redis: &RedisServer) -> Option<String> {
    let list = redis.command(&["CLIENT", "LIST"]).unwrap();
    list.lines()
        .find(|l| l.contains("cmd=xread"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
}

async fn wait_blocked(redis: &RedisServer) -> String {
    for _ in 0..400 {
        if let Some(id) = hub_client_id(redis) {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the hub never blocked in a read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_on_one_hub_each_get_only_their_own_entries() {
    let redis = RedisServer::start().unwrap();
    for (m, mode) in modes().into_iter().enumerate() {
        let (hub, mut cmd) = hub(&redis, mode);
        let mut subs = Vec::new();
        for s in 0..40 {
            let keys = vec![format!("m{m}:s{s}:a"), format!("m{m}:s{s}:b")];
            for k in &keys {
                stream(&mut cmd, k).await;
            }
            subs.push((hub.subscribe(keys.clone()), keys));
        }
        assert_eq!(hub.streams(), 80);
        for (s, (_, keys)) in subs.iter().enumerate() {
            add(&mut cmd, &keys[0], 1..=(s as u64 % 5 + 3)).await;
            add(&mut cmd, &keys[1], 1..=2).await;
        }
        for (s, (sub, keys)) in subs.iter_mut().enumerate() {
            let n = s as u64 % 5 + 3;
            let got = take(sub, keys, n as usize + 2).await;
            assert_eq!(seqs(&got, 0), (1..=n).collect::<Vec<_>>());
            assert_eq!(seqs(&got, 1), vec![1, 2]);
            assert!(sub.try_recv().is_none(), "nothing else for session {s}");
        }
        // A second batch still reaches each one, in order.
        for (_, keys) in &subs {
            add(&mut cmd, &keys[1], 3..=4).await;
        }
        for (sub, keys) in &mut subs {
            assert_eq!(seqs(&take(sub, keys, 2).await, 1), vec![3, 4]);
        }
        drop(subs);
        assert_eq!(hub.streams(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_subscribed_while_the_hub_is_blocked_gets_its_entries_promptly() {
    let redis = RedisServer::start().unwrap();
    for (m, mode) in modes().into_iter().enumerate() {
        let (hub, mut cmd) = hub(&redis, mode);
        let a = vec![format!("w{m}:a")];
        stream(&mut cmd, &a[0]).await;
        let mut sa = hub.subscribe(a.clone());
        // The hub now blocks (for LONG_BLOCK) on `a` alone.
        let before = wait_blocked(&redis).await;
        let b = vec![format!("w{m}:b")];
        stream(&mut cmd, &b[0]).await;
        add(&mut cmd, &b[0], 1..=3).await;
        let mut sb = hub.subscribe(b.clone());
        // Well within LONG_BLOCK: the subscription woke the blocked read.
        assert_eq!(seqs(&take(&mut sb, &b, 3).await, 0), vec![1, 2, 3]);
        // And entries added while it blocks on both reach it too.
        let _ = wait_blocked(&redis).await;
        add(&mut cmd, &b[0], 4..=4).await;
        assert_eq!(seqs(&take(&mut sb, &b, 1).await, 0), vec![4]);
        add(&mut cmd, &a[0], 1..=1).await;
        assert_eq!(seqs(&take(&mut sa, &a, 1).await, 0), vec![1]);
        // One connection all along.
        assert_eq!(wait_blocked(&redis).await, before);
        drop((sa, sb));
        drop(hub);
        // The hub's task and connection end with it.
        for _ in 0..400 {
            if hub_client_id(&redis).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            hub_client_id(&redis).is_none(),
            "the hub's connection outlived it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_channel_does_not_stall_others_and_loses_nothing() {
    let redis = RedisServer::start().unwrap();
    for (m, mode) in modes().into_iter().enumerate() {
        let (hub, mut cmd) = hub(&redis, mode);
        let slow = vec![format!("f{m}:slow")];
        let fast = vec![format!("f{m}:fast")];
        stream(&mut cmd, &slow[0]).await;
        stream(&mut cmd, &fast[0]).await;
        let mut s_slow = hub.subscribe(slow.clone());
        let mut s_fast = hub.subscribe(fast.clone());
        // Far more than the slow one's channel holds, and it reads nothing yet.
        let n = (hub_channel_entries() * 4) as u64;
        add(&mut cmd, &slow[0], 1..=n).await;
        for round in 0..5u64 {
            let (from, to) = (round * 100 + 1, round * 100 + 100);
            add(&mut cmd, &fast[0], from..=to).await;
            let got = take(&mut s_fast, &fast, 100).await;
            assert_eq!(seqs(&got, 0), (from..=to).collect::<Vec<_>>());
        }
        // The slow one drains all of it, in order, once each.
        let got = take(&mut s_slow, &slow, n as usize).await;
        assert_eq!(seqs(&got, 0), (1..=n).collect::<Vec<_>>());
        add(&mut cmd, &slow[0], n + 1..=n + 1).await;
        assert_eq!(seqs(&take(&mut s_slow, &slow, 1).await, 0), vec![n + 1]);
        assert!(s_slow.try_recv().is_none());
    }
}

fn hub_channel_entries() -> usize {
    claude_conduit::transport::redis::hub::CHANNEL * claude_conduit::transport::redis::hub::COUNT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hub_connection_resumes_without_loss_or_duplicates() {
    let redis = RedisServer::start().unwrap();
    for (m, mode) in modes().into_iter().enumerate() {
        let (hub, mut cmd) = hub(&redis, mode);
        let keys = vec![format!("k{m}:a"), format!("k{m}:b")];
        for k in &keys {
            stream(&mut cmd, k).await;
        }
        let mut sub = hub.subscribe(keys.clone());
        let mut got = Vec::new();
        let mut next = 1u64;
        for _ in 0..3 {
            add(&mut cmd, &keys[0], next..=next + 49).await;
            add(&mut cmd, &keys[1], next..=next + 9).await;
            got.extend(take(&mut sub, &keys, 60).await);
            let id = wait_blocked(&redis).await;
            assert_eq!(
                redis
                    .command(&["CLIENT", "KILL", "ID", &id])
                    .unwrap()
                    .trim(),
                ":1"
            );
            // Entries added while the hub is down come after it reconnects.
            add(&mut cmd, &keys[0], next + 50..=next + 59).await;
            got.extend(take(&mut sub, &keys, 10).await);
            next += 60;
            let _ = wait_blocked(&redis).await;
        }
        let a: Vec<u64> = (1..next).collect();
        assert_eq!(seqs(&got, 0), a, "stream a: each entry once, in order");
        let b: Vec<u64> = (0..3).flat_map(|r| r * 60 + 1..=r * 60 + 10).collect();
        assert_eq!(seqs(&got, 1), b, "stream b: each entry once, in order");
        assert!(sub.try_recv().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_its_group_ends_only_its_own_subscription() {
    let redis = RedisServer::start().unwrap();
    let (hub, mut cmd) = hub(
        &redis,
        ReadMode::Group {
            group: CLIENT_GROUP.into(),
            consumer: CLIENT_GROUP.into(),
        },
    );
    let ok = vec!["g:ok".to_owned()];
    stream(&mut cmd, &ok[0]).await;
    let mut s_ok = hub.subscribe(ok.clone());
    let mut s_gone = hub.subscribe(vec!["g:never-made".to_owned()]);
    let ev = tokio::time::timeout(T, s_gone.recv()).await.unwrap();
    assert!(matches!(ev, Some(HubEvent::Gone(0))), "{ev:?}");
    add(&mut cmd, &ok[0], 1..=2).await;
    assert_eq!(seqs(&take(&mut s_ok, &ok, 2).await, 0), vec![1, 2]);
}
