//! Black-box tests of the `mock-claude` binary over plain std pipes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_mock-claude");
/// The flags the SDK passes; the mock must ignore them.
const REAL_FLAGS: &[&str] = &[
    "--output-format",
    "stream-json",
    "--verbose",
    "--system-prompt=",
    "--input-format",
    "stream-json",
];

/// A running mock with its stdout read line by line on a thread.
struct Mock {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<Receiver<Vec<u8>>>,
}

/// Spawns the mock with `env`; stderr is drained into a channel.
fn spawn(env: &[(&str, &str)]) -> Mock {
    let (mut mock, stderr) = spawn_raw(env);
    mock.stderr = Some(drain(stderr));
    mock
}

/// Spawns the mock with `env`, leaving its stderr pipe to the caller.
fn spawn_raw(env: &[(&str, &str)]) -> (Mock, ChildStderr) {
    let mut cmd = Command::new(BIN);
    cmd.args(REAL_FLAGS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOCK_CLAUDE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn mock-claude");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stdin = child.stdin.take();
    (
        Mock {
            child,
            stdin,
            lines,
            stderr: None,
        },
        stderr,
    )
}

fn drain(mut stderr: ChildStderr) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn user(text: &str) -> Value {
    json!({"type":"user","message":{"role":"user","content":text},"parent_tool_use_id":null,"session_id":"default"})
}

fn control(id: &str, request: Value) -> Value {
    json!({"type":"control_request","request_id":id,"request":request})
}

impl Mock {
    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, v: &Value) {
        self.send_line(&v.to_string());
    }

    fn close(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, without its newline.
    fn line(&self) -> String {
        let mut line = self
            .lines
            .recv_timeout(TIMEOUT)
            .expect("a stdout line in time");
        assert!(line.ends_with('\n'), "line without newline");
        line.pop();
        line
    }

    fn json(&self) -> Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {e}: {line:.300}"))
    }

    /// The next frame, which must have this `type` (and `subtype`, if given).
    fn expect(&self, ty: &str, subtype: Option<&str>) -> Value {
        let v = self.json();
        assert_eq!(v["type"], ty, "unexpected frame {v:.300}");
        if let Some(s) = subtype {
            assert_eq!(v["subtype"], s, "unexpected frame {v:.300}");
        }
        v
    }

    fn expect_response(&self, id: &str) -> Value {
        let v = self.expect("control_response", None);
        assert_eq!(v["response"]["request_id"], id);
        v["response"].clone()
    }

    /// Asserts that stdout stays quiet for `d`.
    fn quiet_for(&self, d: Duration) {
        match self.lines.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(line) => panic!("unexpected output: {line:.300}"),
            Err(RecvTimeoutError::Disconnected) => panic!("stdout closed"),
        }
    }

    /// Asserts that stdout has ended.
    fn stdout_ends(&self) {
        match self.lines.recv_timeout(TIMEOUT) {
            Err(RecvTimeoutError::Disconnected) => {}
            Ok(line) => panic!("unexpected output: {line:.300}"),
            Err(RecvTimeoutError::Timeout) => panic!("stdout still open"),
        }
    }

    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < TIMEOUT, "mock did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stderr text, read until `pred` accepts it (or the timeout fails the test).
    fn stderr_until(&self, pred: impl Fn(&str) -> bool) -> String {
        let rx = self.stderr.as_ref().expect("stderr drained");
        let mut all = Vec::new();
        let start = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&all).into_owned();
            if pred(&text) {
                return text;
            }
            let left = TIMEOUT.saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(chunk) => all.extend_from_slice(&chunk),
                Err(_) => panic!("stderr never matched; got {text:.500}"),
            }
        }
    }

    /// All of stderr, once it has closed.
    fn stderr_all(&self) -> Vec<u8> {
        let rx = self.stderr.as_ref().expect("stderr drained");
        let mut all = Vec::new();
        loop {
            match rx.recv_timeout(TIMEOUT) {
                Ok(chunk) => all.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Disconnected) => return all,
                Err(RecvTimeoutError::Timeout) => panic!("stderr still open"),
            }
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text_of(v: &Value) -> &str {
    v["message"]["content"][0]["text"]
        .as_str()
        .expect("text block")
}

#[test]
fn version_flags() {
    for flag in ["-v", "--version"] {
        let out = Command::new(BIN)
            .args(["--output-format", "stream-json", flag])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"2.1.330 (Claude Code) [mock]\n");
    }
}

#[test]
fn initialize_reply() {
    let mut m = spawn(&[]);
    m.send(&control(
        "req_1_ab",
        json!({"subtype":"initialize","hooks":null}),
    ));
    let r = m.expect_response("req_1_ab");
    assert_eq!(r["subtype"], "success");
    let p = &r["response"];
    assert_eq!(p["pid"], m.child.id());
    assert_eq!(p["claude_code_version"], "2.1.330");
    assert_eq!(p["output_style"], "default");
    assert_eq!(p["available_output_styles"], json!(["default"]));
    for key in ["commands", "agents", "models"] {
        assert_eq!(p[key], json!([]), "{key}");
    }
    // A second initialize also succeeds.
    m.send(&control("req_2", json!({"subtype":"initialize"})));
    assert_eq!(m.expect_response("req_2")["subtype"], "success");
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
}

#[test]
fn turn_counts_sizes_and_result() {
    let mut m = spawn(&[
        ("MOCK_CLAUDE_MESSAGES", "5"),
        ("MOCK_CLAUDE_TEXT_BYTES", "1000"),
    ]);
    let mut uuids = std::collections::HashSet::new();
    let mut session = None;
    for turn in 1..=3u64 {
        m.send(&user("hello"));
        let init = m.expect("system", Some("init"));
        let sid = init["session_id"].as_str().unwrap().to_owned();
        assert_eq!(session.get_or_insert_with(|| sid.clone()), &sid);
        assert_eq!(init["claude_code_version"], "2.1.330");
        assert!(uuids.insert(init["uuid"].as_str().unwrap().to_owned()));
        let mut len = None;
        let mut msg_id = None;
        for _ in 0..5 {
            let line = m.line();
            assert_eq!(
                *len.get_or_insert(line.len()),
                line.len(),
                "fixed-size frames"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["type"], "assistant");
            let text = text_of(&v);
            assert_eq!(text.len(), 1000);
            assert!(text.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
            assert_eq!(v["message"]["role"], "assistant");
            assert_eq!(v["message"]["stop_reason"], Value::Null);
            assert_eq!(v["parent_tool_use_id"], Value::Null);
            assert_eq!(v["session_id"], sid.as_str());
            let id = v["message"]["id"].as_str().unwrap().to_owned();
            assert_eq!(
                msg_id.get_or_insert_with(|| id.clone()),
                &id,
                "one message id per turn"
            );
            assert!(
                uuids.insert(v["uuid"].as_str().unwrap().to_owned()),
                "unique uuids"
            );
        }
        let r = m.expect("result", Some("success"));
        assert_eq!(r["is_error"], false);
        assert_eq!(r["num_turns"], 1);
        assert_eq!(r["session_id"], sid.as_str());
        assert_eq!(r["total_cost_usd"].as_f64(), Some(turn as f64 / 1000.0));
        assert!(r["result"].is_string());
        assert!(r["usage"].is_object());
        assert!(r["duration_ms"].is_u64());
        assert!(uuids.insert(r["uuid"].as_str().unwrap().to_owned()));
    }
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
}

#[test]
fn defaults_and_eof_right_after_user() {
    let mut m = spawn(&[]);
    m.send(&user("one"));
    m.close();
    m.expect("system", Some("init"));
    let a = m.expect("assistant", None);
    assert_eq!(text_of(&a).len(), 32);
    m.expect("result", Some("success"));
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
}

#[test]
fn ten_megabyte_messages() {
    const B: usize = 10_000_000;
    let mut m = spawn(&[
        ("MOCK_CLAUDE_MESSAGES", "3"),
        ("MOCK_CLAUDE_TEXT_BYTES", "10000000"),
    ]);
    let start = Instant::now();
    m.send(&user("big"));
    m.close();
    m.expect("system", Some("init"));
    for _ in 0..3 {
        assert_eq!(text_of(&m.expect("assistant", None)).len(), B);
    }
    m.expect("result", Some("success"));
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn zero_messages_and_zero_bytes() {
    let mut m = spawn(&[("MOCK_CLAUDE_MESSAGES", "0")]);
    m.send(&user("x"));
    m.expect("system", Some("init"));
    m.expect("result", Some("success"));
    m.close();
    m.stdout_ends();
    let mut m = spawn(&[("MOCK_CLAUDE_TEXT_BYTES", "0")]);
    m.send(&user("x"));
    m.expect("system", Some("init"));
    assert_eq!(text_of(&m.expect("assistant", None)), "");
    m.expect("result", Some("success"));
}

#[test]
fn control_subtypes() {
    let mut m = spawn(&[]);
    for (id, req) in [
        ("i", json!({"subtype":"interrupt"})),
        (
            "m",
            json!({"subtype":"set_model","model":"claude-sonnet-4-5"}),
        ),
        (
            "t",
            json!({"subtype":"set_max_thinking_tokens","max_thinking_tokens":1024}),
        ),
    ] {
        m.send(&control(id, req));
        let r = m.expect_response(id);
        assert_eq!(r["subtype"], "success");
        assert!(r.get("response").is_none(), "{id}: no response field");
    }
    m.send(&control(
        "p",
        json!({"subtype":"set_permission_mode","mode":"acceptEdits"}),
    ));
    assert_eq!(
        m.expect_response("p")["response"],
        json!({"mode":"acceptEdits"})
    );
    m.send(&control("s", json!({"subtype":"mcp_status"})));
    assert_eq!(m.expect_response("s")["response"], json!({"mcpServers":[]}));
    m.send(&control("b", json!({"subtype":"bogus_subtype"})));
    assert_eq!(
        m.expect_response("b"),
        json!({"subtype":"error","request_id":"b","error":"Unsupported control request subtype: bogus_subtype"})
    );
    // Later frames reflect the model and mode.
    m.send(&user("x"));
    let init = m.expect("system", Some("init"));
    assert_eq!(init["model"], "claude-sonnet-4-5");
    assert_eq!(init["permissionMode"], "acceptEdits");
    assert_eq!(
        m.expect("assistant", None)["message"]["model"],
        "claude-sonnet-4-5"
    );
    m.expect("result", Some("success"));
}

#[test]
fn ignored_input_lines() {
    let mut m = spawn(&[]);
    for line in [
        "",
        "   ",
        r#"{"type":"keep_alive"}"#,
        r#"{"type":"control_cancel_request","request_id":"nope"}"#,
        r#"{"type":"control_response","response":{"subtype":"success","request_id":"unknown"}}"#,
        r#"{"type":"something_new","x":[1,2]}"#,
        "42",
        "[1,2,3]",
    ] {
        m.send_line(line);
    }
    m.quiet_for(Duration::from_millis(200));
    m.send(&user("still alive"));
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    m.expect("result", Some("success"));
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
}

#[test]
fn non_json_input_exits_1() {
    let mut m = spawn(&[]);
    m.send(&user("first"));
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    m.expect("result", Some("success"));
    m.send_line("this is not json");
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(1));
    let err = String::from_utf8(m.stderr_all()).unwrap();
    assert!(
        err.contains("Error parsing streaming input line: this is not json"),
        "{err}"
    );
}

#[test]
fn crash_after_k_frames() {
    let mut m = spawn(&[
        ("MOCK_CLAUDE_MESSAGES", "5"),
        ("MOCK_CLAUDE_CRASH_AFTER", "2"),
    ]);
    m.send(&user("x"));
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    m.expect("assistant", None);
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(3));
    let err = String::from_utf8(m.stderr_all()).unwrap();
    assert!(err.contains("mock-claude: simulated crash"), "{err}");
}

#[test]
fn unknown_and_malformed_frames() {
    let mut m = spawn(&[
        ("MOCK_CLAUDE_MESSAGES", "4"),
        ("MOCK_CLAUDE_UNKNOWN_FRAMES", "1"),
        ("MOCK_CLAUDE_MALFORMED", "1"),
    ]);
    m.send(&user("x"));
    m.close();
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    assert_eq!(m.json(), json!({"type":"mock_unknown_type","x":1}));
    m.expect("system", Some("mock_unknown_subtype"));
    m.expect("assistant", None);
    let bad = m.line();
    assert_eq!(bad, r#"{"type":"assistant", this is not json"#);
    assert!(serde_json::from_str::<Value>(&bad).is_err());
    m.expect("assistant", None);
    m.expect("assistant", None);
    m.expect("result", Some("success"));
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
}

#[test]
fn grandchild_pid_is_printed() {
    let mut m = spawn(&[("MOCK_CLAUDE_GRANDCHILD", "1")]);
    let err = m.stderr_until(|s| s.contains("grandchild pid ") && s.ends_with('\n'));
    let pid: u32 = err
        .split("mock-claude: grandchild pid ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {err:?}"));
    assert_ne!(pid, m.child.id());
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    m.send(&user("x"));
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    m.expect("result", Some("success"));
    m.close();
    assert_eq!(m.wait().code(), Some(0));
    // The grandchild still holds stdout open after the mock exits.
    m.quiet_for(Duration::from_millis(100));
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    if cfg!(target_os = "linux") {
        assert!(alive, "grandchild {pid} not running");
    }
    m.stdout_ends();
}

#[test]
fn can_use_tool_round_trip() {
    let mut m = spawn(&[
        ("MOCK_CLAUDE_CAN_USE_TOOL", "1"),
        ("MOCK_CLAUDE_MESSAGES", "2"),
    ]);
    let answers = [
        (
            json!({"behavior":"allow","updatedInput":{"command":"touch x"}}),
            "permission: allow",
        ),
        (
            json!({"behavior":"deny","message":"not \"here\""}),
            "permission: deny: not \"here\"",
        ),
    ];
    for (turn, (answer, text)) in answers.into_iter().enumerate() {
        m.send(&user("run it"));
        m.expect("system", Some("init"));
        let req = m.expect("control_request", None);
        let id = req["request_id"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 36);
        assert_eq!(req["request"]["subtype"], "can_use_tool");
        assert_eq!(req["request"]["tool_name"], "Bash");
        assert_eq!(req["request"]["input"], json!({"command":"touch x"}));
        assert_eq!(req["request"]["tool_use_id"], format!("toolu_{}", turn + 1));
        assert_eq!(req["request"]["permission_suggestions"], json!([]));
        // Other requests are served while the permission is pending.
        m.send(&control("s", json!({"subtype":"mcp_status"})));
        m.expect_response("s");
        m.send(&json!({"type":"control_response","response":{"subtype":"success","request_id":"other","response":{"behavior":"allow"}}}));
        m.quiet_for(Duration::from_millis(100));
        m.send(&json!({"type":"control_response","response":{"subtype":"success","request_id":id,"response":answer}}));
        assert_eq!(text_of(&m.expect("assistant", None)), text);
        assert_eq!(text_of(&m.expect("assistant", None)).len(), 32);
        m.expect("result", Some("success"));
    }
    // An error reply.
    m.send(&user("run it"));
    m.expect("system", Some("init"));
    let id = m.expect("control_request", None)["request_id"].clone();
    m.send(&json!({"type":"control_response","response":{"subtype":"error","request_id":id,"error":"boom"}}));
    assert_eq!(
        text_of(&m.expect("assistant", None)),
        "permission: error: boom"
    );
    m.expect("assistant", None);
    m.expect("result", Some("success"));
    // An interrupt while the permission is pending.
    m.send(&user("run it"));
    m.expect("system", Some("init"));
    let id = m.expect("control_request", None)["request_id"].clone();
    m.send(&control("int", json!({"subtype":"interrupt"})));
    let cancel = m.expect("control_cancel_request", None);
    assert_eq!(cancel["request_id"], id);
    m.expect_response("int");
    let marker = m.expect("user", None);
    assert_eq!(text_of(&marker), "[Request interrupted by user]");
    let r = m.expect("result", Some("error_during_execution"));
    assert_eq!(r["is_error"], true);
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(1));
}

#[test]
fn interrupt_flood_comes_before_the_reply() {
    let mut m = spawn(&[
        ("MOCK_CLAUDE_INTERRUPT_FLOOD", "50"),
        ("MOCK_CLAUDE_TEXT_BYTES", "100"),
    ]);
    m.send(&control("int", json!({"subtype":"interrupt"})));
    for _ in 0..50 {
        assert_eq!(text_of(&m.expect("assistant", None)).len(), 100);
    }
    assert_eq!(m.expect_response("int")["subtype"], "success");
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
}

#[test]
fn hang_serves_control_and_interrupt_ends_turn() {
    let mut m = spawn(&[
        ("MOCK_CLAUDE_HANG", "1"),
        ("MOCK_CLAUDE_MESSAGES", "5"),
        ("MOCK_CLAUDE_INTERRUPT_FLOOD", "3"),
    ]);
    m.send(&user("x"));
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    m.quiet_for(Duration::from_millis(200));
    m.send(&control("s", json!({"subtype":"mcp_status"})));
    m.expect_response("s");
    m.send(&user("queued"));
    m.quiet_for(Duration::from_millis(100));
    m.send(&control("int", json!({"subtype":"interrupt"})));
    for _ in 0..3 {
        m.expect("assistant", None);
    }
    m.expect_response("int");
    let marker = m.expect("user", None);
    assert_eq!(text_of(&marker), "[Request interrupted by user]");
    assert!(marker["timestamp"].as_str().unwrap().ends_with('Z'));
    let r = m.expect("result", Some("error_during_execution"));
    assert_eq!(r["is_error"], true);
    assert_eq!(r["terminal_reason"], "aborted_streaming");
    // The queued user message runs next, and hangs too.
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    m.send(&control("int2", json!({"subtype":"interrupt"})));
    for _ in 0..3 {
        m.expect("assistant", None);
    }
    m.expect_response("int2");
    m.expect("user", None);
    m.expect("result", Some("error_during_execution"));
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(1), "last result was an error");
}

#[test]
fn delay_serves_control_and_interrupt() {
    let mut m = spawn(&[
        ("MOCK_CLAUDE_DELAY_MS", "30"),
        ("MOCK_CLAUDE_MESSAGES", "1000"),
    ]);
    m.send(&user("slow"));
    m.expect("system", Some("init"));
    let start = Instant::now();
    m.expect("assistant", None);
    m.expect("assistant", None);
    assert!(start.elapsed() >= Duration::from_millis(25));
    m.send(&control("s", json!({"subtype":"mcp_status"})));
    loop {
        let v = m.json();
        if v["type"] == "control_response" {
            assert_eq!(v["response"]["request_id"], "s");
            break;
        }
        assert_eq!(v["type"], "assistant");
    }
    m.send(&control("int", json!({"subtype":"interrupt"})));
    let mut streamed = 2;
    loop {
        let v = m.json();
        if v["type"] == "control_response" {
            assert_eq!(v["response"]["request_id"], "int");
            break;
        }
        assert_eq!(v["type"], "assistant");
        streamed += 1;
    }
    assert!(streamed < 1000);
    m.expect("user", None);
    m.expect("result", Some("error_during_execution"));
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(1));
}

#[test]
fn stderr_bytes_drained() {
    let mut m = spawn(&[("MOCK_CLAUDE_STDERR_BYTES", "200000")]);
    for _ in 0..2 {
        m.send(&user("x"));
        m.expect("system", Some("init"));
        m.expect("assistant", None);
        m.expect("result", Some("success"));
    }
    m.close();
    assert_eq!(m.wait().code(), Some(0));
    assert_eq!(m.stderr_all().len(), 400_000);
}

#[test]
fn stderr_bytes_block_until_drained() {
    let (mut m, stderr) = spawn_raw(&[("MOCK_CLAUDE_STDERR_BYTES", "2000000")]);
    m.send(&control("i", json!({"subtype":"initialize"})));
    m.expect_response("i");
    m.send(&user("x"));
    // Nobody reads stderr: the mock is stuck writing it.
    m.quiet_for(Duration::from_millis(500));
    m.stderr = Some(drain(stderr));
    m.expect("system", Some("init"));
    m.expect("assistant", None);
    m.expect("result", Some("success"));
    m.close();
    assert_eq!(m.wait().code(), Some(0));
    assert_eq!(m.stderr_all().len(), 2_000_000);
}

#[test]
fn many_turns_ping_pong() {
    let mut m = spawn(&[]);
    for turn in 1..=200u64 {
        m.send(&user("ping"));
        m.expect("system", Some("init"));
        m.expect("assistant", None);
        let r = m.expect("result", Some("success"));
        assert_eq!(r["total_cost_usd"].as_f64(), Some(turn as f64 / 1000.0));
    }
    m.close();
    m.stdout_ends();
    assert_eq!(m.wait().code(), Some(0));
}

#[test]
fn invalid_knob_exits_2() {
    let out = Command::new(BIN)
        .env("MOCK_CLAUDE_MESSAGES", "lots")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOCK_CLAUDE_MESSAGES"));
}
