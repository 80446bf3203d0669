//! `conduit worker` and `conduit serve --redis` as real processes against a real redis-server
//! (docs/SCALE.md): a worker killed with SIGKILL mid-session — its CLIs exit, the session ends
//! with `session <id> lost: worker <name> stopped` (exit 4) on every wire, the next session is
//! served by a survivor, also straight through `--via redis://`; with the real CLI, nothing is
//! left running 10 s after the kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claude_conduit_testkit::RedisServer;
use support::{CONDUIT, scratch, serve};

const T: Duration = Duration::from_secs(60);

/// A `conduit worker` process, killed when dropped.
struct WorkerProc {
    name: String,
    child: Child,
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WorkerProc {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }
}

fn worker(dir: &Path, url: &str, name: &str, cli: &Path, extra: &[&str]) -> WorkerProc {
    let mut child = Command::new(CONDUIT)
        .args(["worker", "--redis", url, "--name", name])
        .args(["--heartbeat-ms", "1000", "--claim-idle-ms", "1000"])
        .arg("--cli")
        .arg(cli)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("CONDUIT_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn conduit worker");
    let mut line = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("serving"), "{line}");
    // The rest of its log, for a failing test's diagnosis.
    let log = dir.join(format!("{name}.log"));
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        let _ = std::fs::write(log, rest);
    });
    WorkerProc {
        name: name.to_owned(),
        child,
    }
}

/// A mock CLI that runs a long turn (200 messages, 25 ms apart).
fn slow_mock(dir: &Path) -> PathBuf {
    let path = dir.join("slow-mock.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nMOCK_CLAUDE_MESSAGES=200 MOCK_CLAUDE_DELAY_MS=25 exec '{CONDUIT}' mock-claude \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The session running now and its worker (from the meta hash the worker writes once its CLI
/// runs; waits for it).
fn serving_worker(redis: &RedisServer) -> (String, String) {
    let deadline = Instant::now() + T;
    loop {
        let keys = redis.command(&["KEYS", "conduit:s:*:hb"]).unwrap();
        if let Some(key) = keys.lines().find(|l| l.starts_with("conduit:s:")) {
            let id = key
                .trim_start_matches("conduit:s:")
                .trim_end_matches(":hb")
                .to_owned();
            let meta = format!("conduit:s:{id}");
            let state = redis.command(&["HGET", &meta, "state"]).unwrap();
            let name = redis.command(&["HGET", &meta, "worker"]).unwrap();
            if state.contains("running")
                && let Some(name) = name.lines().nth(1)
            {
                return (id, name.to_owned());
            }
        }
        assert!(Instant::now() < deadline, "no session started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every descendant of `pid` (children, their children, …).
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z')
    })
}

/// SIGKILL the worker and check that every process it started is gone within 10 s.
fn kill_and_check_children(w: &mut WorkerProc) {
    let children = descendants(w.pid());
    assert!(!children.is_empty(), "the worker runs a CLI");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = w.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = children.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the killed worker still running after 10 s: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded) for a child to exit; its status code and stderr.
fn finish(mut c: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + T;
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            let mut err = String::new();
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code(), err);
        }
        assert!(Instant::now() < deadline, "conduit query hangs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_worker_loses_its_session_on_every_wire_and_a_survivor_serves_the_next() {
    let dir = scratch("scale-kill");
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let mock = slow_mock(&dir);
    let mut workers: Vec<WorkerProc> = (0..4)
        .map(|i| {
            worker(
                &dir,
                &url,
                &format!("w{i}"),
                &mock,
                &["--max-sessions", "1"],
            )
        })
        .collect();
    let gw = serve(&dir, &["--redis", &url, "--heartbeat-ms", "1000"], &[]);
    assert!(gw.line.contains("through redis"), "{}", gw.line);
    let token = dir.join("tokens");
    for url in [
        format!("ws://{}", gw.http),
        format!("http://{}", gw.http),
        format!("grpc://{}", gw.grpc.clone().unwrap()),
    ] {
        let query = Command::new(CONDUIT)
            .args(["query", "--via", &url, "--token-file"])
            .arg(&token)
            .arg("a long turn")
            .env_remove("CONDUIT_TOKEN")
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (id, name) = serving_worker(&redis);
        let at = workers.iter().position(|w| w.name == name).unwrap();
        let mut victim = workers.remove(at);
        let killed = Instant::now();
        kill_and_check_children(&mut victim);
        let (code, err) = finish(query);
        assert_eq!(code, Some(4), "{url}: {err}");
        assert!(
            err.contains(&format!("session {id} lost: worker {name} stopped")),
            "{url}: {err}"
        );
        // Within the heartbeat timeout plus polls and reconnects, not after a long hang.
        assert!(killed.elapsed() < Duration::from_secs(20), "{url}");
        // Its key expired with the worker: the next round's session is the only one.
        let hb = format!("conduit:s:{id}:hb");
        let deadline = Instant::now() + T;
        while redis.command(&["EXISTS", &hb]).unwrap().starts_with(":1") {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The survivor serves the next session, also straight through Redis.
    let out = Command::new(CONDUIT)
        .args([
            "query",
            "--output",
            "json",
            "--via",
            &url,
            "after the failures",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"result\""));
    drop(gw);
    drop(workers);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_workers_real_cli_is_gone_within_10_s_and_its_client_gets_session_lost() {
    use claude_conduit::testkit::{CliEnv, FakeModel, ensure_pinned_cli};
    let dir = scratch("scale-kill-real");
    let cli = ensure_pinned_cli().expect("the pinned CLI (scripts/install-cli.sh)");
    let model = FakeModel::builder().start_blocking().expect("fake model");
    let env = CliEnv::new(&model.base_url(), cli.clone()).unwrap();
    // The worker's sessions get the fake model's environment from the shared config file.
    let mut toml = String::from("[env]\n");
    for (k, v) in env.envs() {
        toml.push_str(&format!("{k} = {}\n", serde_json::to_string(&v).unwrap()));
    }
    std::fs::write(dir.join("gw.toml"), toml).unwrap();
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let config = dir.join("gw.toml");
    let mut w = worker(
        &dir,
        &url,
        "real",
        &cli,
        &["--config", config.to_str().unwrap()],
    );
    let gw = serve(
        &dir,
        &[
            "--redis",
            &url,
            "--heartbeat-ms",
            "1000",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let options = claude_conduit::Options::builder()
            .transport(format!("ws://{}", gw.http), "sekrit-token-0123456789abcdef")
            .build();
        let client = tokio::time::timeout(T, claude_conduit::Client::connect(options))
            .await
            .expect("connect in time")
            .expect("a session with the real CLI");
        let (id, name) = serving_worker(&redis);
        assert_eq!(name, "real");
        kill_and_check_children(&mut w);
        let _ = client.query("are you there?").await;
        let mut messages = client.receive_messages();
        let e = loop {
            match tokio::time::timeout(T, futures::StreamExt::next(&mut messages))
                .await
                .expect("an answer, not a hang")
            {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("the stream ended without an error"),
            }
        };
        assert!(
            matches!(&e, claude_conduit::Error::SessionLost { session_id, worker }
                if *session_id == id && worker == "real"),
            "{e}"
        );
    });
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
