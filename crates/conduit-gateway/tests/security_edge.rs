//! Attacks on the gateway's edge, each against the real gateway on 127.0.0.1 with `mock-claude`:
//! client frames past the policy, unauthenticated gRPC bodies, slow and idle clients, replay
//! memory, oversize WebSocket messages. (The same control-frame attacks with the real CLI are in
//! `control_frames_cli.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use claude_conduit_proto::ConduitClient;
use claude_conduit_proto::v1;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod support;
use support::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// One HTTP/1.1 request on its own connection: the status and the body as JSON.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer \
         {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http reply");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn create(addr: SocketAddr) -> String {
    let (status, created) = http(addr, "POST", "/v1/sessions", Some(&json!({}))).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

async fn socket(addr: SocketAddr, id: &str, after: u64) -> Ws {
    let mut req = format!("ws://{addr}/v1/sessions/{id}/stream?after={after}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

fn numbered(seq: u64, frame: &Value) -> WsMessage {
    let mut b = BytesMut::new();
    b.put_u64(seq);
    b.put_slice(frame.to_string().as_bytes());
    WsMessage::Binary(b.freeze())
}

fn user(text: &str) -> Value {
    json!({"type":"user","message":{"role":"user","content":text},
           "parent_tool_use_id":null,"session_id":""})
}

fn control(id: &str, request: Value) -> Value {
    json!({"type":"control_request","request_id":id,"request":request})
}

/// What a WebSocket client reads: CLI frames with their numbers, and the text messages.
#[derive(Default)]
struct Read {
    frames: Vec<(u64, Value)>,
    texts: Vec<Value>,
}

/// Read until `done` holds (acking as a client must), within the test deadline.
async fn read_until(ws: &mut Ws, read: &mut Read, done: impl Fn(&Read) -> bool) {
    while !done(read) {
        match tokio::time::timeout(T, ws.next()).await.expect("in time") {
            Some(Ok(WsMessage::Binary(b))) => {
                let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
                read.frames
                    .push((seq, serde_json::from_slice(&b[8..]).unwrap()));
                if seq % 16 == 0 {
                    let ack = json!({ "ack": seq }).to_string();
                    ws.send(WsMessage::Text(ack.into())).await.unwrap();
                }
            }
            Some(Ok(WsMessage::Text(t))) => read.texts.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(_)) => {}
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

fn results(read: &Read) -> usize {
    read.frames
        .iter()
        .filter(|(_, f)| f["type"] == "result")
        .count()
}

// ---------------------------------------------------------------------------------------------
// Item 2: control frames past the option policy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_control_frames_never_reach_the_cli_and_the_answer_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cli = recording_cli(dir.path(), &mock_claude());
    let gw = start(config(&[]).cli_path(&cli)).await;
    let id = create(gw.addr).await;
    let mut ws = socket(gw.addr, &id, 0).await;
    let mut read = Read::default();
    read_until(&mut ws, &mut read, |r| !r.texts.is_empty()).await; // hello
    let settings = control(
        "req_settings",
        json!({"subtype":"apply_flag_settings","settings":{"permissions":{"allow":["Bash"]}}}),
    );
    let bypass = control(
        "req_mode",
        json!({"subtype":"set_permission_mode","mode":"bypassPermissions"}),
    );
    let stdio = control(
        "req_mcp",
        json!({"subtype":"mcp_set_servers","servers":{"x":{"type":"stdio","command":"sh"}}}),
    );
    let env = json!({"type":"update_environment_variables","variables":{"PATH":"/tmp/evil"}});
    ws.send(numbered(1, &settings)).await.unwrap();
    ws.send(numbered(2, &bypass)).await.unwrap();
    ws.send(numbered(3, &stdio)).await.unwrap();
    ws.send(numbered(4, &env)).await.unwrap();
    ws.send(numbered(5, &user("still here"))).await.unwrap();
    read_until(&mut ws, &mut read, |r| {
        results(r) == 1 && r.texts.iter().any(|t| t["error"]["kind"] == "policy")
    })
    .await;

    // Each refused request got a control_response error from the gateway, naming the rule,
    // numbered into the stream like a CLI frame.
    let answer = |rid: &str| {
        read.frames
            .iter()
            .find(|(_, f)| f["response"]["request_id"] == rid)
            .cloned()
            .unwrap_or_else(|| panic!("no answer to {rid}"))
    };
    for (rid, rule) in [
        ("req_settings", "--settings"),
        ("req_mode", "--permission-mode"),
        ("req_mcp", "allow_external_mcp"),
    ] {
        let (_, f) = answer(rid);
        assert_eq!(f["type"], "control_response");
        assert_eq!(f["response"]["subtype"], "error");
        let error = f["response"]["error"].as_str().unwrap();
        assert!(
            error.contains("gateway policy") && error.contains(rule),
            "{error}"
        );
    }
    // The frame that is not a control request: a typed refusal with its number.
    let refusal = read
        .texts
        .iter()
        .find(|t| t["error"]["kind"] == "policy")
        .unwrap();
    assert_eq!(refusal["error"]["seq"], 4);
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("update_environment_variables")
    );
    let seqs: Vec<u64> = read.frames.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    drop(ws);

    // Nothing of them reached the CLI's stdin; the user turn did.
    let log = stdin_log(dir.path());
    assert!(log.contains("still here"), "{log}");
    for leaked in [
        "apply_flag_settings",
        "set_permission_mode",
        "mcp_set_servers",
        "update_environment_variables",
    ] {
        assert!(!log.contains(leaked), "{leaked} reached the CLI: {log}");
    }

    // The answers are in the replay ring: a resume from 0 gets them again, in place.
    let mut ws = socket(gw.addr, &id, 0).await;
    let mut again = Read::default();
    let last = *seqs.last().unwrap();
    read_until(&mut ws, &mut again, |r| {
        r.frames.last().is_some_and(|(s, _)| *s == last)
    })
    .await;
    assert_eq!(again.frames, read.frames);
    drop(ws);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_front_refuses_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let cli = recording_cli(dir.path(), &mock_claude());
    let gw = start(config(&[]).cli_path(&cli)).await;
    let id = create(gw.addr).await;
    let body = format!(
        "{}\n{}\n",
        control(
            "r1",
            json!({"subtype":"update_settings","source":"localSettings","settings":{}})
        ),
        json!({"type":"bash_command","command":"id"})
    );
    let req = format!(
        "POST /v1/sessions/{id}/frames HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: \
         Bearer {TOKEN}\r\nConduit-Seq: 1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let reply: Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(reply["error"]["kind"], "policy");
    assert_eq!(reply["error"]["seq"], 2);
    assert_eq!(reply["accepted"], 1); // The control request was answered by the gateway.
    assert_eq!(reply["in_seq"], 2);
    let log = stdin_log(dir.path());
    assert!(
        !log.contains("update_settings") && !log.contains("bash_command"),
        "{log}"
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Item 3: unauthenticated gRPC is refused before its body is read.

/// The peak resident memory of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// This test binary, run again as a child that only serves a gateway (see
/// `gateway_child_process`): its memory is the gateway's.
struct Child {
    process: tokio::process::Child,
    grpc: SocketAddr,
    /// Kept open until the child ends (it prints its test result there).
    _out: tokio::io::BufReader<tokio::process::ChildStdout>,
}

async fn gateway_child() -> Child {
    let exe = std::env::current_exe().unwrap();
    let _ = mock_claude(); // Built before the child needs it.
    let mut process = tokio::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "gateway_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONDUIT_EDGE_CHILD", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(process.stdout.take().unwrap());
    let mut line = String::new();
    let grpc = loop {
        line.clear();
        let n = tokio::time::timeout(
            T,
            tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(n > 0, "the child gateway ended before it listened");
        // libtest prints the test's name on the same line.
        if let Some(a) = line.split("GRPC_ADDR=").nth(1) {
            break a.trim().parse().unwrap();
        }
    };
    Child {
        process,
        grpc,
        _out: lines,
    }
}

/// Not a test of its own: the gateway process of
/// `unauthenticated_grpc_bodies_cost_the_gateway_no_memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by unauthenticated_grpc_bodies_cost_the_gateway_no_memory as a child process"]
async fn gateway_child_process() {
    if std::env::var_os("CONDUIT_EDGE_CHILD").is_none() {
        return;
    }
    let gw = start(config(&[])).await;
    println!("GRPC_ADDR={}", gw.grpc());
    // Serve until the parent closes our stdin.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    gw.shutdown().await;
}

async fn grpc_client(addr: SocketAddr) -> ConduitClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    ConduitClient::new(channel)
}

fn create_request(bytes: usize, token: Option<&str>) -> tonic::Request<v1::CreateSessionRequest> {
    let mut r = tonic::Request::new(v1::CreateSessionRequest {
        args: vec![format!("--model={}", "x".repeat(bytes))],
        cwd: None,
    });
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_grpc_bodies_cost_the_gateway_no_memory() {
    const MIB: usize = 1 << 20;
    let mut child = gateway_child().await;
    let pid = child.process.id().unwrap();
    // Warm up (connections, one small authenticated call), then take the baseline.
    let mut client = grpc_client(child.grpc).await;
    let listed = client
        .list_sessions(tonic::Request::new(v1::ListSessionsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(listed.code(), tonic::Code::Unauthenticated);
    let before = peak_rss(pid);

    // Three parallel unauthenticated 100 MiB calls, each on its own connection.
    let calls = (0..3).map(|_| {
        let addr = child.grpc;
        tokio::spawn(async move {
            let mut c = grpc_client(addr).await;
            c.create_session(create_request(100 * MIB, Some("not-a-token")))
                .await
                .unwrap_err()
        })
    });
    for status in futures::future::join_all(calls).await {
        let status = status.unwrap();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let grown = peak_rss(pid).saturating_sub(before);
    eprintln!(
        "gateway peak RSS: {} MiB before, grew by {} MiB",
        before / MIB as u64,
        grown / MIB as u64
    );
    assert!(
        grown < 100 * MIB as u64,
        "the gateway's peak RSS grew by {} MiB",
        grown / MIB as u64
    );
    // An authenticated unary call over the unary limit: refused from its prefix.
    let big = client
        .create_session(create_request(2 * MIB, Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(big.code(), tonic::Code::ResourceExhausted, "{big:?}");
    assert!(big.message().contains("limit"), "{big:?}");
    drop(child.process.stdin.take());
    let _ = tokio::time::timeout(T, child.process.wait()).await;
}

// ---------------------------------------------------------------------------------------------
// Item 4: slow clients.

/// True when the peer closed the connection (end of file or a reset) within the test deadline.
async fn closed_by_peer(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(25), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_headers_and_silent_grpc_connections_are_closed() {
    let gw = start(
        config(&[])
            .header_timeout(Duration::from_secs(2))
            .grpc_first_bytes_timeout(Duration::from_secs(2)),
    )
    .await;
    let mut conns = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        conns.push(s);
        conns.push(TcpStream::connect(gw.grpc()).await.unwrap());
    }
    let closed = futures::future::join_all(conns.into_iter().map(closed_by_peer)).await;
    assert!(closed.iter().all(|c| *c), "{closed:?}");
    // The gateway still answers.
    assert_eq!(http(gw.addr, "GET", "/health", None).await.0, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_closes_but_websocket_and_sse_streams_stay_open() {
    let gw = start(
        config(&[])
            .header_timeout(Duration::from_secs(1))
            .keepalive_idle(Duration::from_secs(1)),
    )
    .await;
    // A keep-alive connection idle after its request is closed.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(s).await);

    let id = create(gw.addr).await;
    // An SSE stream, idle well past the keep-alive timeout.
    let mut sse = TcpStream::connect(gw.addr).await.unwrap();
    let get = format!(
        "GET /v1/sessions/{id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    sse.write_all(get.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: hello") {
        let n = tokio::time::timeout(T, sse.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = http(
        gw.addr,
        "POST",
        &format!("/v1/sessions/{id}/frames"),
        Some(&user("after a pause")),
    )
    .await;
    assert_eq!(status, 200);
    while !String::from_utf8_lossy(&seen).contains("\"type\":\"result\"") {
        let n = tokio::time::timeout(T, sse.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the SSE stream was closed");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(sse);

    // An upgraded WebSocket, idle as long.
    let id = create(gw.addr).await;
    let mut ws = socket(gw.addr, &id, 0).await;
    let mut read = Read::default();
    read_until(&mut ws, &mut read, |r| !r.texts.is_empty()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    ws.send(numbered(1, &user("after a pause"))).await.unwrap();
    read_until(&mut ws, &mut read, |r| results(r) == 1).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_a_clear_refusal() {
    let gw = start(config(&[]).max_connections(4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // Once the gateway has accepted the four, the fifth is refused.
    let mut refused = None;
    for _ in 0..50 {
        let (status, body) = http(gw.addr, "GET", "/health", None).await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = refused.expect("a 503 over the cap");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many connections"),
        "{body}"
    );
    let mut client = grpc_client(gw.grpc()).await;
    let refused = client
        .list_sessions(tonic::Request::new(v1::ListSessionsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        if http(gw.addr, "GET", "/health", None).await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "connections are accepted again once others closed");
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Item 5: the replay ring is bounded in bytes.

const FRAME_TEXT: &str = "1048576"; // 1 MiB of text per assistant frame.

/// Watch the gateway's replay bytes until the CLI has been held back (no new frame for a while);
/// returns the most seen and the sessions' last sequence numbers.
async fn held_back(gw: &Running, ids: &[String]) -> (usize, Vec<u64>) {
    let mut most = 0;
    let mut last = Vec::new();
    let mut still = 0;
    for _ in 0..600 {
        most = most.max(gw.manager.replay_bytes());
        let now: Vec<u64> = gw
            .manager
            .list(claude_conduit_gateway::auth::TokenId(0))
            .into_iter()
            .filter(|i| ids.contains(&i.id))
            .map(|i| i.last_seq)
            .collect();
        still = if now == last && now.iter().all(|s| *s > 0) {
            still + 1
        } else {
            0
        };
        last = now;
        if still == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(still, 20, "the sessions never stopped growing: {last:?}");
    (most.max(gw.manager.replay_bytes()), last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_attaches_holds_at_most_the_replay_budget() {
    const MIB: usize = 1 << 20;
    let gw = start(
        config(&[
            ("MOCK_CLAUDE_MESSAGES", "60"),
            ("MOCK_CLAUDE_TEXT_BYTES", FRAME_TEXT),
        ])
        .replay_bytes(24 * MIB)
        .replay_bytes_total(40 * MIB),
    )
    .await;
    let ids = [create(gw.addr).await, create(gw.addr).await];
    for id in &ids {
        let (status, _) = http(
            gw.addr,
            "POST",
            &format!("/v1/sessions/{id}/frames"),
            Some(&user("go")),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (most, last) = held_back(&gw, &ids).await;
    // Per session at most 24 MiB, together at most 40 MiB (plus a frame's JSON around its
    // 1 MiB of text): not the 124 MiB the CLIs wrote.
    assert!(most <= 41 * MIB, "the rings held {most} bytes");
    assert!(last.iter().all(|s| *s < 30), "{last:?}");

    // A client that then attaches gets every frame, once, in order.
    for id in &ids {
        let mut ws = socket(gw.addr, id, 0).await;
        let mut read = Read::default();
        read_until(&mut ws, &mut read, |r| results(r) == 1).await;
        let seqs: Vec<u64> = read.frames.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=62).collect::<Vec<u64>>());
        let assistant = read
            .frames
            .iter()
            .filter(|(_, f)| f["type"] == "assistant")
            .count();
        assert_eq!(assistant, 60);
        assert!(gw.manager.replay_bytes() <= 41 * MIB);
    }
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Item 6: WebSocket messages over the frame limit are refused from their header.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_websocket_message_is_refused_before_its_payload() {
    const LIMIT: usize = 64 * 1024;
    let gw = start(config(&[]).max_frame_bytes_limit(LIMIT)).await;
    let id = create(gw.addr).await;
    let mut ws = socket(gw.addr, &id, 0).await;
    let mut read = Read::default();
    read_until(&mut ws, &mut read, |r| !r.texts.is_empty()).await;
    // A binary frame header announcing 600 KiB, and only 1 KiB of it: the gateway must not
    // wait for (or buffer) the rest.
    let len: u64 = 600 * 1024;
    let mut raw = vec![0x82u8, 0x80 | 127];
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(&[1, 2, 3, 4]); // Mask key.
    raw.extend_from_slice(&[0u8; 1024]);
    let tcp: &mut TcpStream = match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => unreachable!("plain ws"),
    };
    tcp.write_all(&raw).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(msg) = ws.next().await {
            if let Ok(WsMessage::Close(Some(f))) = msg {
                return Some((u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("the gateway closed the socket without waiting for the payload")
    .expect("a close frame");
    assert_eq!(close.0, 1009, "{close:?}");
    assert!(close.1.contains("too big"), "{close:?}");
    // The session lives on: a new connection resumes it.
    let mut ws = socket(gw.addr, &id, 0).await;
    ws.send(numbered(1, &user("after the refusal")))
        .await
        .unwrap();
    let mut read = Read::default();
    read_until(&mut ws, &mut read, |r| results(r) == 1).await;
    gw.shutdown().await;
}
