//! The real gateway on 127.0.0.1 (port 0) with `mock-claude` as the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use claude_conduit::remote::SessionRequest;
use claude_conduit::transport::GatewayTransport;
use claude_conduit::transport::websocket::WebSocketTransport;
use claude_conduit::{Client, Message, Options};
use claude_conduit_gateway::SessionInfo;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod support;
use support::*;

/// One HTTP/1.1 request; returns the status and the body parsed as JSON (Null when empty).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http reply");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn create(addr: SocketAddr, token: &str) -> (u16, Value) {
    http(addr, "POST", "/v1/sessions", Some(token), Some(&json!({}))).await
}

fn process_gone(pid: u32) -> bool {
    // Gone means reaped too: a zombie still has its /proc entry.
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_gone(pid: u32) {
    for _ in 0..100 {
        if process_gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CLI process {pid} still exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_and_every_other_route_needs_a_valid_token() {
    let gw = start(config(&[])).await;
    let (status, body) = http(gw.addr, "GET", "/health", None, None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let routes = [
        ("GET", "/v1/sessions"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions/x"),
        ("DELETE", "/v1/sessions/x"),
        ("GET", "/v1/sessions/x/stream"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong"), Some("test-token-")] {
            let (status, _) = http(gw.addr, method, path, token, Some(&json!({}))).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
        }
    }
    assert!(gw.manager.is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_get_delete_and_the_cli_is_gone() {
    let gw = start(config(&[])).await;
    let (status, created) = create(gw.addr, TOKEN).await;
    assert_eq!(status, 201, "{created}");
    let info: SessionInfo = serde_json::from_value(created).unwrap();
    let pid = info.pid.expect("pid");
    assert!(!process_gone(pid));

    let (status, list) = http(gw.addr, "GET", "/v1/sessions", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(list["sessions"][0]["id"], info.id);
    // Another token sees nothing of it.
    let (_, other) = http(gw.addr, "GET", "/v1/sessions", Some(OTHER), None).await;
    assert_eq!(other["sessions"], json!([]));
    let path = format!("/v1/sessions/{}", info.id);
    assert_eq!(http(gw.addr, "GET", &path, Some(OTHER), None).await.0, 404);

    let (status, got) = http(gw.addr, "GET", &path, Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(got["pid"], json!(pid));
    assert_eq!(got["attached"], json!(false));

    assert_eq!(
        http(gw.addr, "DELETE", &path, Some(OTHER), None).await.0,
        404
    );
    assert_eq!(
        http(gw.addr, "DELETE", &path, Some(TOKEN), None).await.0,
        204
    );
    wait_gone(pid).await;
    assert_eq!(http(gw.addr, "GET", &path, Some(TOKEN), None).await.0, 404);
    assert_eq!(
        http(gw.addr, "DELETE", &path, Some(TOKEN), None).await.0,
        404
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sdk_session_runs_through_the_gateway() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "100")])).await;
    let id = WebSocketTransport::create_session(&gw.ws_remote(), &SessionRequest::default())
        .await
        .expect("create");
    let transport = WebSocketTransport::new(&gw.ws_remote(), id.clone());
    let client = tokio::time::timeout(T, Client::connect_with(transport, Options::default()))
        .await
        .expect("in time")
        .expect("connect + initialize through the gateway");
    assert_eq!(client.cli_version(), Some("2.1.330"));
    for turn in 0..2 {
        client.send("hello").await.expect("send");
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .expect("turn in time")
                .into_iter()
                .map(|m| m.expect("no errors"))
                .collect();
        let seqs = assistant_seqs(&items);
        assert_eq!(seqs.len(), 100, "turn {turn}");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "order");
        let result = items
            .last()
            .and_then(Message::as_result)
            .expect("result last");
        assert!(!result.is_error);
    }
    let m = client.metrics().snapshot();
    assert!(m.frames_received >= 204, "{m:?}");
    assert_eq!(m.reconnects, 0);
    let info = gw
        .manager
        .get(claude_conduit_gateway::auth::TokenId(0), &id)
        .unwrap()
        .info();
    let pid = info.pid.unwrap();
    let t = tokio::time::timeout(T, client.disconnect())
        .await
        .expect("disconnect in time")
        .expect("disconnect");
    assert_eq!(t.and_then(|t| t.code), Some(0));
    wait_gone(pid).await;
    gw.shutdown().await;
}

async fn raw_socket(
    addr: SocketAddr,
    id: &str,
    after: u64,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{addr}/v1/sessions/{id}/stream?after={after}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

async fn close_code(
    mut ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (u16, String) {
    while let Some(msg) = ws.next().await {
        if let Ok(WsMessage::Close(Some(f))) = msg {
            return (u16::from(f.code), f.reason.to_string());
        }
    }
    panic!("no close frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_before_the_replay_ring_is_a_clear_close_code() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "200")]).replay_frames(64)).await;
    let (_, created) = create(gw.addr, TOKEN).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut ws = raw_socket(gw.addr, &id, 0).await;
    let user = json!({"type":"user","message":{"role":"user","content":"go"},
                      "parent_tool_use_id":null,"session_id":""});
    ws.send(WsMessage::Text(user.to_string().into()))
        .await
        .unwrap();
    let mut last = 0u64;
    while last < 202 {
        let msg = tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let WsMessage::Binary(b) = msg {
            let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
            assert_eq!(seq, last + 1);
            last = seq;
            serde_json::from_slice::<Value>(&b[8..]).expect("a frame, verbatim");
            if seq % 16 == 0 {
                ws.send(WsMessage::Text(json!({"ack": seq}).to_string().into()))
                    .await
                    .unwrap();
            }
        }
    }
    ws.send(WsMessage::Text(json!({"ack": last}).to_string().into()))
        .await
        .unwrap();
    drop(ws);
    // 202 frames (init, 200 assistant, result) through a ring of 64: seq 1 is long gone.
    let (code, reason) = close_code(raw_socket(gw.addr, &id, 0).await).await;
    assert_eq!(
        code,
        claude_conduit_gateway::CLOSE_REPLAY_TOO_OLD,
        "{reason}"
    );
    assert!(reason.contains("replay too old"), "{reason}");
    let (code, _) = close_code(raw_socket(gw.addr, &id, 10_000).await).await;
    assert_eq!(code, claude_conduit_gateway::CLOSE_BAD_RESUME);
    // Resuming within the ring works: a hello (one unnumbered frame was accepted: in_seq 0),
    // then the last frames again, then live.
    let mut ws = raw_socket(gw.addr, &id, last - 2).await;
    let hello = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WsMessage::Text(hello) = hello else {
        panic!("{hello:?}")
    };
    let hello: Value = serde_json::from_str(hello.as_str()).unwrap();
    assert_eq!(hello["hello"]["session"], id.as_str());
    assert_eq!(hello["hello"]["in_seq"], 0);
    assert!(hello["hello"]["max_frame_bytes"].as_u64().unwrap() > 0);
    let msg = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WsMessage::Binary(b) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(u64::from_be_bytes(b[..8].try_into().unwrap()), last - 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_token_are_limited() {
    let gw = start(config(&[]).max_sessions_per_token(2)).await;
    assert_eq!(create(gw.addr, TOKEN).await.0, 201);
    assert_eq!(create(gw.addr, TOKEN).await.0, 201);
    let (status, body) = create(gw.addr, TOKEN).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(create(gw.addr, OTHER).await.0, 201);
    assert_eq!(gw.manager.len(), 3);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_every_cli() {
    let gw = start(config(&[])).await;
    let mut pids = Vec::new();
    for token in [TOKEN, TOKEN, OTHER] {
        let (status, info) = create(gw.addr, token).await;
        assert_eq!(status, 201);
        pids.push(u32::try_from(info["pid"].as_u64().unwrap()).unwrap());
    }
    // A connected client is told to come back later (1001), not that its session ended.
    let (_, list) = http(gw.addr, "GET", "/v1/sessions", Some(TOKEN), None).await;
    let id = list["sessions"][0]["id"].as_str().unwrap().to_owned();
    let mut ws = raw_socket(gw.addr, &id, 0).await;
    let addr = gw.addr;
    gw.shutdown().await;
    for pid in pids {
        wait_gone(pid).await;
    }
    let mut close = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(T, ws.next()).await {
        match msg {
            WsMessage::Text(t) => assert!(!t.as_str().contains("\"end\""), "{t}"),
            WsMessage::Close(f) => close = f.map(|f| u16::from(f.code)),
            _ => {}
        }
    }
    assert_eq!(close, Some(1001));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_session_is_reaped_after_the_grace_period() {
    let gw = start(config(&[]).grace_period(Duration::from_millis(300))).await;
    let (_, info) = create(gw.addr, TOKEN).await;
    let pid = u32::try_from(info["pid"].as_u64().unwrap()).unwrap();
    wait_gone(pid).await;
    assert!(gw.manager.is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_reaped_even_with_a_client_attached() {
    let gw = start(config(&[]).idle_timeout(Duration::from_millis(300))).await;
    let (_, info) = create(gw.addr, TOKEN).await;
    let pid = u32::try_from(info["pid"].as_u64().unwrap()).unwrap();
    let mut ws = raw_socket(gw.addr, info["id"].as_str().unwrap(), 0).await;
    wait_gone(pid).await;
    let mut end = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(T, ws.next()).await {
        if let WsMessage::Text(t) = msg {
            end = Some(serde_json::from_str::<Value>(t.as_str()).unwrap());
        }
    }
    let end = end.expect("an end message");
    assert!(end["end"].get("signal").is_some(), "{end}");
    assert!(gw.manager.is_empty());
    gw.shutdown().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `seq ++ frame`: a numbered client frame.
fn numbered(seq: u64, frame: &Value) -> WsMessage {
    let mut b = seq.to_be_bytes().to_vec();
    b.extend_from_slice(frame.to_string().as_bytes());
    WsMessage::Binary(b.into())
}

fn user_frame(text: &str) -> Value {
    json!({"type":"user","message":{"role":"user","content":text},
           "parent_tool_use_id":null,"session_id":""})
}

/// Read until `results` result frames arrived (acking as we go); returns the last CLI seq and
/// every text message seen.
async fn read_results(ws: &mut Ws, mut last: u64, results: usize) -> (u64, Vec<Value>) {
    let mut seen = 0;
    let mut texts = Vec::new();
    while seen < results {
        let msg = tokio::time::timeout(T, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("ok");
        match msg {
            WsMessage::Binary(b) => {
                let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
                assert_eq!(seq, last + 1, "in order, once");
                last = seq;
                let v: Value = serde_json::from_slice(&b[8..]).unwrap();
                if v["type"] == "result" {
                    seen += 1;
                }
                // The CLI may already have ended (end of input): then the gateway is closing
                // the socket and an ack has nowhere to go.
                let _ = ws
                    .send(WsMessage::Text(json!({"ack": seq}).to_string().into()))
                    .await;
            }
            WsMessage::Text(t) => texts.push(serde_json::from_str(t.as_str()).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    (last, texts)
}

async fn hello(ws: &mut Ws) -> Value {
    let msg = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WsMessage::Text(t) = msg else {
        panic!("expected the hello first, got {msg:?}")
    };
    let v: Value = serde_json::from_str(t.as_str()).unwrap();
    v["hello"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_frames_resent_after_a_drop_reach_the_cli_exactly_once() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "1")])).await;
    let (_, created) = create(gw.addr, TOKEN).await;
    let id = created["id"].as_str().unwrap().to_owned();

    let mut ws = raw_socket(gw.addr, &id, 0).await;
    assert_eq!(hello(&mut ws).await["in_seq"], 0);
    ws.send(numbered(1, &user_frame("one"))).await.unwrap();
    ws.send(numbered(2, &user_frame("two"))).await.unwrap();
    let (last, _) = read_results(&mut ws, 0, 2).await;
    drop(ws);

    // The new connection learns the gateway has frames up to 2. A client that does not know
    // (its frame was in flight when the socket died) resends 2: skipped, not run twice.
    let mut ws = raw_socket(gw.addr, &id, last).await;
    assert_eq!(hello(&mut ws).await["in_seq"], 2);
    ws.send(numbered(2, &user_frame("two again")))
        .await
        .unwrap();
    ws.send(numbered(3, &user_frame("three"))).await.unwrap();
    ws.send(WsMessage::Text(r#"{"end_input":true}"#.into()))
        .await
        .unwrap();
    // Exactly one more turn (for 3), then the CLI ends on end of input.
    let (last, _) = read_results(&mut ws, last, 1).await;
    let mut tail = Vec::new();
    while let Some(Ok(msg)) = tokio::time::timeout(T, ws.next()).await.unwrap() {
        match msg {
            WsMessage::Binary(b) => tail.push(serde_json::from_slice::<Value>(&b[8..]).unwrap()),
            WsMessage::Text(t) => tail.push(serde_json::from_str(t.as_str()).unwrap()),
            WsMessage::Close(_) => break,
            _ => {}
        }
    }
    assert!(
        tail.iter().all(|v| v["type"] != "result"),
        "a duplicate ran: {tail:?}"
    );
    assert!(tail.iter().any(|v| v.get("end").is_some()), "{tail:?}");
    let info = gw
        .manager
        .get(claude_conduit_gateway::auth::TokenId(0), &id)
        .unwrap()
        .info();
    assert!(info.last_seq >= last);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_client_frame_numbers_is_refused_with_a_close_code() {
    let gw = start(config(&[])).await;
    let (_, created) = create(gw.addr, TOKEN).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut ws = raw_socket(gw.addr, &id, 0).await;
    hello(&mut ws).await;
    ws.send(numbered(5, &user_frame("skipped ahead")))
        .await
        .unwrap();
    let (code, reason) = close_code(ws).await;
    assert_eq!(code, claude_conduit_gateway::CLOSE_BAD_RESUME, "{reason}");
    assert!(reason.contains("expected"), "{reason}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_client_frame_is_refused_and_the_session_goes_on() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "1")]).max_frame_bytes_limit(4096)).await;
    // Raw client: the gateway refuses the frame with a typed error and keeps the session.
    let (_, created) = create(gw.addr, TOKEN).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut ws = raw_socket(gw.addr, &id, 0).await;
    assert_eq!(hello(&mut ws).await["max_frame_bytes"], 4096);
    let big = user_frame(&"x".repeat(10_000));
    ws.send(numbered(1, &big)).await.unwrap();
    ws.send(numbered(2, &user_frame("small"))).await.unwrap();
    let (_, mut texts) = read_results(&mut ws, 0, 1).await;
    // The refusal and the CLI's answer to the next frame travel independently: either may come
    // first.
    while !texts.iter().any(|t| t.get("error").is_some()) {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(WsMessage::Text(t))) => texts.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(_)) => {}
            other => panic!("no refusal: {other:?}"),
        }
    }
    let refusal = texts
        .iter()
        .find_map(|t| t.get("error"))
        .expect("a refusal");
    assert_eq!(refusal["kind"], "frame_too_large");
    assert_eq!(refusal["limit"], 4096);
    assert_eq!(refusal["seq"], 1);
    assert!(refusal["size"].as_u64().unwrap() > 10_000);
    drop(ws);

    // SDK client: refused locally with FrameTooLarge (the hello told it the gateway's limit).
    let id = WebSocketTransport::create_session(&gw.ws_remote(), &SessionRequest::default())
        .await
        .expect("create");
    let client = Client::connect_with(
        WebSocketTransport::new(&gw.ws_remote(), id),
        Options::default(),
    )
    .await
    .expect("connect");
    let err = client.send("y".repeat(10_000)).await.unwrap_err();
    assert!(
        matches!(
            err,
            claude_conduit::Error::FrameTooLarge { limit: 4096, .. }
        ),
        "{err:?}"
    );
    client.send("small").await.expect("the session goes on");
    let items: Vec<_> = tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(
        items
            .last()
            .unwrap()
            .as_ref()
            .unwrap()
            .as_result()
            .is_some()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_sent_while_the_connection_is_being_dropped_each_run_once() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "3")])).await;
    let id = WebSocketTransport::create_session(&gw.ws_remote(), &SessionRequest::default())
        .await
        .expect("create");
    let client = Client::connect_with(
        WebSocketTransport::new(&gw.ws_remote(), id.clone()),
        Options::default(),
    )
    .await
    .expect("connect");
    for turn in 0..8 {
        // Drop the socket from the server side, then send at once: the prompt may go into the
        // dying socket; the transport resends what the gateway did not accept.
        assert!(gw.manager.kick(&id));
        client.send(format!("turn {turn}")).await.expect("send");
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .expect("turn in time")
                .into_iter()
                .map(|m| m.expect("no errors"))
                .collect();
        assert_eq!(assistant_seqs(&items).len(), 3, "turn {turn}");
        assert_eq!(items.iter().filter(|m| m.is_result()).count(), 1);
    }
    let m = client.metrics().snapshot();
    assert!(m.reconnects >= 1, "{m:?}");
    // Exactly 8 turns ran in the CLI: no prompt was lost or doubled.
    client.end_input().await.expect("end input");
    let rest: Vec<_> = tokio::time::timeout(T, client.receive_messages().collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(
        rest.iter()
            .all(|m| !m.as_ref().is_ok_and(|m| m.is_result())),
        "an extra turn ran: {rest:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_sessions_each_run_a_turn() {
    const N: usize = 100;
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "5")]).max_sessions_per_token(N)).await;
    let remote = gw.ws_remote();
    let runs = (0..N).map(|i| {
        let remote = remote.clone();
        async move {
            let id = WebSocketTransport::create_session(&remote, &SessionRequest::default())
                .await
                .expect("create");
            let client =
                Client::connect_with(WebSocketTransport::new(&remote, id), Options::default())
                    .await
                    .expect("connect");
            client.send(format!("session {i}")).await.expect("send");
            let items: Vec<Message> = client
                .receive_response()
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .map(|m| m.expect("no errors"))
                .collect();
            assert_eq!(assistant_seqs(&items).len(), 5);
            assert!(items.last().and_then(Message::as_result).is_some());
            client
        }
    });
    let clients = tokio::time::timeout(Duration::from_secs(180), futures::future::join_all(runs))
        .await
        .expect("100 sessions in time");
    assert_eq!(gw.manager.len(), N);
    let pids = gw.manager.pids();
    assert_eq!(pids.len(), N);
    drop(clients);
    gw.shutdown().await;
    for pid in pids {
        wait_gone(pid).await;
    }
}
