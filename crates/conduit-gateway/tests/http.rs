//! The gateway's plain-HTTP front (POST frames, server-sent events) on 127.0.0.1 (port 0), with
//! `mock-claude` as the CLI: raw HTTP checks of the wire and the SDK's `HttpTransport`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use claude_conduit::remote::{Remote, SessionRequest};
use claude_conduit::transport::http::HttpTransport;
use claude_conduit::transport::{
    FrameReceiver, FrameSender, GatewayTransport, Received, Transport,
};
use claude_conduit::{Client, Error, Message, Options};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::*;

/// One HTTP/1.1 request with a raw body; returns the status and the body as JSON (Null when
/// empty or not JSON).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("reply in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http reply");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn create(addr: SocketAddr) -> String {
    let (status, v) = http(addr, "POST", "/v1/sessions", Some(TOKEN), &[], b"").await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn user_line(text: &str) -> String {
    json!({"type": "user", "message": {"role": "user", "content": text},
           "parent_tool_use_id": null, "session_id": ""})
    .to_string()
}

/// `POST …/frames` with these lines, numbered from `seq` when given.
async fn post_frames(addr: SocketAddr, id: &str, seq: Option<u64>, body: &[u8]) -> (u16, Value) {
    let headers: Vec<_> = seq
        .map(|s| ("Conduit-Seq", s.to_string()))
        .into_iter()
        .collect();
    let path = format!("/v1/sessions/{id}/frames");
    http(addr, "POST", &path, Some(TOKEN), &headers, body).await
}

/// One server-sent event as seen on the wire.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    name: Option<String>,
    id: Option<u64>,
    data: String,
}

/// A raw event stream (HTTP/1.0, so the body is not chunked: what arrives is the stream).
struct SseConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl SseConn {
    /// `GET path` with `headers`: the status, and the connection positioned at the body.
    async fn open(addr: SocketAddr, path: &str, headers: &[(&str, String)]) -> (u16, Self) {
        let mut req =
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut conn = Self {
            stream,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(i) = find(&conn.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&conn.buf[..i]).into_owned();
                conn.buf.drain(..i + 4);
                break head;
            }
            assert!(
                conn.fill().await,
                "the connection closed before the headers"
            );
        };
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        if status == 200 {
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: text/event-stream"),
                "{head}"
            );
        }
        (status, conn)
    }

    /// Read more; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(T, self.stream.read(&mut chunk))
            .await
            .expect("data in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The rest of the body (for error replies).
    async fn body(mut self) -> Value {
        while self.fill().await {}
        serde_json::from_slice(&self.buf).unwrap_or(Value::Null)
    }

    /// The next event (comments skipped); `None` at the end of the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(i) = find(&self.buf, b"\n\n") {
                let block = String::from_utf8(self.buf.drain(..i + 2).collect()).unwrap();
                let mut ev = Sse {
                    name: None,
                    id: None,
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if line.is_empty() || line.starts_with(':') {
                        continue;
                    }
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "event" => ev.name = Some(value.to_owned()),
                        "id" => ev.id = Some(value.parse().expect("numeric id")),
                        "data" => {
                            if has_data {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(value);
                            has_data = true;
                        }
                        other => panic!("unexpected field {other:?} in {block:?}"),
                    }
                }
                if has_data {
                    return Some(ev);
                }
                continue;
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "a partial event at the end");
                return None;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn frame_type(ev: &Sse) -> String {
    let v: Value = serde_json::from_str(&ev.data).expect("each frame is JSON, verbatim");
    v["type"].as_str().unwrap_or_default().to_owned()
}

fn process_gone(pid: u32) -> bool {
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
async fn the_http_routes_need_a_valid_token_and_the_owner() {
    let gw = start(config(&[])).await;
    let id = create(gw.addr).await;
    let routes = [
        ("GET", format!("/v1/sessions/{id}/events")),
        ("POST", format!("/v1/sessions/{id}/frames")),
        ("POST", format!("/v1/sessions/{id}/ack")),
        ("POST", format!("/v1/sessions/{id}/end_input")),
    ];
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some("test-token-")] {
            let (status, _) = http(gw.addr, method, path, token, &[], b"{\"ack\":1}").await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
        }
        // Another token's session does not exist for it.
        let (status, body) = http(gw.addr, method, path, Some(OTHER), &[], b"{\"ack\":1}").await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    // Nothing reached the session.
    let info = gw.only_session();
    assert!(!info.attached);
    assert_eq!(info.acked, 0);
    assert!(!info.ended);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_sequence_numbers_and_last_event_id_resumes() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "100")]).replay_frames(64)).await;
    let id = create(gw.addr).await;
    let events = format!("/v1/sessions/{id}/events");
    let (status, mut conn) = SseConn::open(gw.addr, &events, &[]).await;
    assert_eq!(status, 200);
    let hello = conn.next().await.expect("hello");
    assert_eq!(hello.name.as_deref(), Some("hello"));
    assert_eq!(hello.id, None);
    let h: Value = serde_json::from_str(&hello.data).unwrap();
    assert_eq!(h["session"], id.as_str());
    assert_eq!(h["in_seq"], 0);
    assert!(h["max_frame_bytes"].as_u64().unwrap() > 0);

    let (status, reply) = post_frames(gw.addr, &id, Some(1), user_line("go").as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"accepted": 1, "skipped": 0, "in_seq": 1}));

    // system/init, 100 assistant frames, the result: ids 1, 2, 3, … Acked every 16 (the ring
    // holds 64 and waits for acks).
    let mut types = Vec::new();
    let ack_path = format!("/v1/sessions/{id}/ack");
    while types.last().map(String::as_str) != Some("result") {
        let ev = conn.next().await.expect("a frame");
        assert_eq!(ev.name, None, "{ev:?}");
        assert_eq!(ev.id, Some(types.len() as u64 + 1));
        types.push(frame_type(&ev));
        if types.len() % 16 == 0 {
            let body = json!({"ack": types.len()}).to_string();
            let (status, _) = http(
                gw.addr,
                "POST",
                &ack_path,
                Some(TOKEN),
                &[],
                body.as_bytes(),
            )
            .await;
            assert_eq!(status, 204);
        }
    }
    let last = types.len() as u64;
    assert_eq!(last, 102);
    assert_eq!(types[0], "system");
    assert!(types[1..101].iter().all(|t| t == "assistant"));
    // The query form of an ack works too.
    let (status, _) = http(
        gw.addr,
        "POST",
        &format!("{ack_path}?ack={}", last - 3),
        Some(TOKEN),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(gw.only_session().acked, last - 3);
    drop(conn);

    // Resume: Last-Event-ID wins over ?after.
    let resume = [("Last-Event-ID", (last - 2).to_string())];
    let (status, mut conn) = SseConn::open(gw.addr, &format!("{events}?after=1"), &resume).await;
    assert_eq!(status, 200);
    let hello = conn.next().await.unwrap();
    assert_eq!(hello.name.as_deref(), Some("hello"));
    assert_eq!(
        serde_json::from_str::<Value>(&hello.data).unwrap()["in_seq"],
        1
    );
    let ids = [conn.next().await.unwrap(), conn.next().await.unwrap()];
    assert_eq!(
        ids.iter().map(|e| e.id).collect::<Vec<_>>(),
        [Some(last - 1), Some(last)]
    );
    assert_eq!(frame_type(&ids[1]), "result");

    // End of input: the CLI exits, the stream says how and closes.
    let (status, _) = http(
        gw.addr,
        "POST",
        &format!("/v1/sessions/{id}/end_input"),
        Some(TOKEN),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    let end = conn.next().await.expect("end event");
    assert_eq!(end.name.as_deref(), Some("end"), "{end:?}");
    let end: Value = serde_json::from_str(&end.data).unwrap();
    assert_eq!(end["code"], 0, "{end}");
    assert!(
        conn.next().await.is_none(),
        "the stream closes after the end"
    );

    // `?after=` alone resumes too: hello, then the end at once.
    let (status, mut conn) = SseConn::open(gw.addr, &format!("{events}?after={last}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(conn.next().await.unwrap().name.as_deref(), Some("hello"));
    assert_eq!(conn.next().await.unwrap().name.as_deref(), Some("end"));

    // Refused resumes: older than the ring holds (410), ahead of the stream (400), not a number.
    let (status, conn) = SseConn::open(gw.addr, &events, &[("Last-Event-ID", "1".into())]).await;
    assert_eq!(status, 410);
    let body = conn.body().await;
    assert_eq!(body["error"]["kind"], "replay_too_old", "{body}");
    let (status, conn) =
        SseConn::open(gw.addr, &events, &[("Last-Event-ID", "100000".into())]).await;
    assert_eq!(status, 400);
    assert_eq!(conn.body().await["error"]["kind"], "bad_resume");
    let (status, _) = SseConn::open(gw.addr, &events, &[("Last-Event-ID", "x".into())]).await;
    assert_eq!(status, 400);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_frames_skip_duplicates_refuse_gaps_and_oversize_and_the_session_lives_on() {
    const LIMIT: usize = 64 * 1024;
    let gw = start(config(&[]).max_frame_bytes_limit(LIMIT)).await;
    let id = create(gw.addr).await;
    let (status, mut conn) =
        SseConn::open(gw.addr, &format!("/v1/sessions/{id}/events"), &[]).await;
    assert_eq!(status, 200);
    let hello: Value = serde_json::from_str(&conn.next().await.unwrap().data).unwrap();
    assert_eq!(hello["max_frame_bytes"], LIMIT);

    let two = format!("{}\n{}\n", user_line("one"), user_line("two"));
    let (status, reply) = post_frames(gw.addr, &id, Some(1), two.as_bytes()).await;
    assert_eq!(
        (status, reply),
        (200, json!({"accepted": 2, "skipped": 0, "in_seq": 2}))
    );
    // The same body again (a resend after a lost reply): skipped, nothing reaches the CLI twice.
    let (status, reply) = post_frames(gw.addr, &id, Some(1), two.as_bytes()).await;
    assert_eq!(
        (status, reply),
        (200, json!({"accepted": 0, "skipped": 2, "in_seq": 2}))
    );
    // A gap.
    let (status, reply) = post_frames(gw.addr, &id, Some(5), user_line("x").as_bytes()).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["kind"], "gap");
    assert_eq!(
        (
            reply["error"]["expected"].as_u64(),
            reply["error"]["got"].as_u64()
        ),
        (Some(3), Some(5))
    );
    assert_eq!(reply["in_seq"], 2);
    // A bad header (0 is "unnumbered", as on every wire; this is not a number).
    let path = format!("/v1/sessions/{id}/frames");
    let bad = [("Conduit-Seq", "three".to_owned())];
    let (status, reply) = http(gw.addr, "POST", &path, Some(TOKEN), &bad, b"{}").await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"]["kind"], "bad_request", "{reply}");
    // Frame 3 passes, frame 4 is over the limit (refused, numbered), frame 5 is not read.
    let huge = user_line(&"x".repeat(LIMIT + 100));
    let body = format!(
        "{}\r\n{huge}\n{}\n",
        user_line("three"),
        user_line("not read")
    );
    let (status, reply) = post_frames(gw.addr, &id, Some(3), body.as_bytes()).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error"]["kind"], "frame_too_large");
    assert_eq!(reply["error"]["limit"], LIMIT);
    assert_eq!(reply["error"]["size"], huge.len());
    assert_eq!(reply["error"]["seq"], 4);
    assert_eq!(
        (reply["accepted"].as_u64(), reply["in_seq"].as_u64()),
        (Some(1), Some(4))
    );
    // The session lives on: frame 5 (sent again) is answered.
    let (status, reply) = post_frames(gw.addr, &id, Some(5), user_line("five").as_bytes()).await;
    assert_eq!(
        (status, reply),
        (200, json!({"accepted": 1, "skipped": 0, "in_seq": 5}))
    );
    // Unnumbered frames pass as they are.
    let (status, reply) = post_frames(gw.addr, &id, None, user_line("six").as_bytes()).await;
    assert_eq!(
        (status, reply),
        (200, json!({"accepted": 1, "skipped": 0, "in_seq": 5}))
    );

    let (status, _) = http(
        gw.addr,
        "POST",
        &format!("/v1/sessions/{id}/end_input"),
        Some(TOKEN),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    // Turns for one, two, three, five, six: five results, then the end.
    let mut results = 0;
    let mut last_id = 0;
    loop {
        let ev = conn.next().await.expect("events until the end");
        if ev.name.as_deref() == Some("end") {
            break;
        }
        assert_eq!(ev.id, Some(last_id + 1));
        last_id += 1;
        if frame_type(&ev) == "result" {
            results += 1;
        }
    }
    assert_eq!(results, 5);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sdk_session_runs_over_http() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "100")])).await;
    let options = Options::builder().transport(gw.url(), TOKEN).build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("health + create + connect + initialize over HTTP");
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
    assert!(m.frames_sent >= 3, "{m:?}");
    assert_eq!(m.reconnects, 0);
    let info = gw.only_session();
    assert!(info.attached);
    let pid = info.pid.unwrap();
    let t = tokio::time::timeout(T, client.disconnect())
        .await
        .expect("disconnect in time")
        .expect("disconnect");
    assert_eq!(t.and_then(|t| t.code), Some(0));
    wait_gone(pid).await;
    assert!(gw.manager.is_empty(), "close deletes the session");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_refuses_an_oversize_frame_locally_and_goes_on() {
    const LIMIT: usize = 64 * 1024;
    let gw = start(config(&[]).max_frame_bytes_limit(LIMIT)).await;
    let remote = Remote::parse(&gw.url(), TOKEN).unwrap();
    let transport = HttpTransport::open_session(&remote, &SessionRequest::default())
        .await
        .expect("open");
    let conn = tokio::time::timeout(T, transport.connect())
        .await
        .expect("in time")
        .expect("connect");
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    let big = Bytes::from(user_line(&"x".repeat(LIMIT)));
    match tx.send(big).await {
        Err(Error::FrameTooLarge { limit, size }) => {
            assert_eq!(limit, LIMIT);
            assert!(size > LIMIT);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    tx.send(Bytes::from(user_line("hello")))
        .await
        .expect("send");
    tx.end_input().await.expect("end input");
    assert!(matches!(
        tx.send(Bytes::from_static(b"{}")).await,
        Err(Error::Closed)
    ));
    let mut types = Vec::new();
    loop {
        let frame = match tokio::time::timeout(T, rx.recv())
            .await
            .expect("in time")
            .expect("no transport error")
        {
            Received::Frame(f) => f,
            Received::End => break,
            other => panic!("no frame errors: {other:?}"),
        };
        let v: Value = serde_json::from_slice(&frame).unwrap();
        types.push(v["type"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(types.first().map(String::as_str), Some("system"));
    assert_eq!(types.last().map(String::as_str), Some("result"));
    assert_eq!(rx.termination().and_then(|t| t.code), Some(0));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_attach_replaces_the_older_event_stream() {
    let gw = start(config(&[])).await;
    let id = create(gw.addr).await;
    let events = format!("/v1/sessions/{id}/events");
    let (_, mut first) = SseConn::open(gw.addr, &events, &[]).await;
    assert_eq!(first.next().await.unwrap().name.as_deref(), Some("hello"));
    let (_, mut second) = SseConn::open(gw.addr, &events, &[]).await;
    assert_eq!(second.next().await.unwrap().name.as_deref(), Some("hello"));
    let refused = first.next().await.expect("an error event");
    assert_eq!(refused.name.as_deref(), Some("error"));
    let v: Value = serde_json::from_str(&refused.data).unwrap();
    assert_eq!(v["kind"], "replaced");
    assert!(first.next().await.is_none());
    assert!(gw.only_session().attached);
    drop(second);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_arrive_whole_over_http() {
    const TEXT: usize = 4_000_000;
    let gw = start(config(&[
        ("MOCK_CLAUDE_MESSAGES", "5"),
        ("MOCK_CLAUDE_TEXT_BYTES", "4000000"),
    ]))
    .await;
    let options = Options::builder().transport(gw.url(), TOKEN).build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("connect");
    // A client frame over axum's default body limit (2 MB) passes too: bodies are streamed.
    let prompt = "y".repeat(3_000_000);
    client.send(prompt.as_str()).await.expect("send");
    let items: Vec<Message> =
        tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
            .await
            .expect("in time")
            .into_iter()
            .map(|m| m.expect("no errors"))
            .collect();
    let sizes: Vec<usize> = items
        .iter()
        .filter(|m| m.as_assistant().is_some())
        .map(|m| m.raw().len())
        .collect();
    assert_eq!(sizes.len(), 5);
    assert!(sizes.iter().all(|&n| n > TEXT), "{sizes:?}");
    assert!(items.last().and_then(Message::as_result).is_some());
    client.disconnect().await.expect("disconnect");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sessions_of_a_process_share_one_pool_for_their_posts() {
    let gw = start(config(&[]).max_sessions_per_token(16)).await;
    let options = Options::builder().transport(gw.url(), TOKEN).build();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(
            tokio::time::timeout(T, Client::connect(options.clone()))
                .await
                .expect("in time")
                .expect("connect"),
        );
    }
    for c in &clients {
        let items = turn(c, "hello").await;
        assert!(items.last().and_then(Message::as_result).is_some());
    }
    // One event stream per session, and the POSTs of all ten (create, initialize, the turns,
    // acks) over a shared pool of a few connections; a client per transport would keep a POST
    // connection per session besides its event stream (20 or more).
    let open = connections_to(gw.addr.port());
    assert!(
        (10..=15).contains(&open),
        "{open} connections for 10 sessions"
    );
    drop(clients);
    gw.shutdown().await;
}
