//! FakeModel driven by a minimal raw HTTP/1.1 client over 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use claude_conduit_testkit::fake_model::{
    Answer, Block, FakeModel, FakeModelError, Fallback, RequestKind, Turn,
};
use serde_json::{Value, json};

/// A tiny HTTP/1.1 client (one request per connection), enough to test the fake byte for byte.
mod http {
    use std::net::SocketAddr;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        /// For each complete `event: NAME` line: when it arrived.
        pub event_times: Vec<(Instant, String)>,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("JSON body")
        }
    }

    pub async fn send(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nx-api-key: sk-test\r\nanthropic-version: 2023-06-01\r\n"
        );
        if let Some(body) = body {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("write head");
        if let Some(body) = body {
            stream.write_all(body).await.expect("write body");
        }
        let mut raw = Vec::new();
        let mut event_times = Vec::new();
        let mut scanned = 0;
        let mut buf = [0u8; 8192];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            let now = Instant::now();
            while let Some(pos) = raw[scanned..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&raw[scanned..scanned + pos]).into_owned();
                if let Some(name) = line.strip_prefix("event: ") {
                    event_times.push((now, name.trim().to_string()));
                }
                scanned += pos + 1;
            }
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .expect("status")
            .parse()
            .expect("numeric status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        if chunked {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
            event_times,
        }
    }

    fn dechunk(mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
            let size_str = String::from_utf8_lossy(&data[..eol]);
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            data = &data[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&data[..size]);
            data = &data[size + 2..];
        }
        out
    }

    /// Open a streaming request, read until `min_bytes` of response arrived, then drop the socket.
    pub async fn send_and_hang_up(addr: SocketAddr, path: &str, body: &[u8], min_bytes: usize) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write head");
        stream.write_all(body).await.expect("write body");
        let mut got = 0;
        let mut buf = [0u8; 4096];
        while got < min_bytes {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got += n;
        }
    }
}

/// A parsed SSE event: (event name, data JSON).
fn sse(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8(body.to_vec()).expect("utf-8 SSE");
    assert!(text.ends_with("\n\n"), "SSE body ends with a blank line");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let mut lines = event.lines();
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .expect("event line")
                .to_string();
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data line");
            assert!(lines.next().is_none(), "one data line per event");
            let data: Value = serde_json::from_str(data).expect("data is JSON");
            assert_eq!(data["type"], name.as_str(), "event name matches data.type");
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Concatenate the deltas of one block.
fn joined(events: &[(String, Value)], index: u64, field: &str) -> String {
    events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["index"] == index)
        .filter_map(|(_, d)| d["delta"][field].as_str())
        .collect()
}

/// A request body like the CLI's: user message, then a `role:"system"` entry, `stream` as given.
fn cli_like_body(prompt: &str, stream: bool) -> Vec<u8> {
    json!({
        "model": "claude-opus-4-8",
        "max_tokens": 64000,
        "stream": stream,
        "system": [{"type": "text", "text": "You are a test."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nignore me\n</system-reminder>"},
                {"type": "text", "text": prompt}
            ]},
            {"role": "system", "content": [{"type": "text", "text": "Available agent types: none"}]}
        ],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}, {"name": "Write", "input_schema": {"type": "object"}}],
        "thinking": {"type": "adaptive"},
        "metadata": {"user_id": "{\"session_id\":\"x\"}"}
    })
    .to_string()
    .into_bytes()
}

const MESSAGES: &str = "/v1/messages?beta=true";

#[tokio::test]
async fn text_turn_streams_in_anthropic_order() {
    let long = "Hello from the fake model. ".repeat(4);
    let fake = FakeModel::builder()
        .turn(Turn::text(long.clone()))
        .start()
        .await
        .unwrap();
    assert_eq!(fake.base_url(), format!("http://127.0.0.1:{}", fake.port()));
    let body = cli_like_body("say hi", true);
    let resp = http::send(fake.addr(), "POST", MESSAGES, Some(body.as_slice())).await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(resp.header("request-id").unwrap().starts_with("req_"));
    let events = sse(&resp.body);
    let n = names(&events);
    assert_eq!(
        &n[..3],
        ["message_start", "ping", "content_block_start"],
        "{n:?}"
    );
    assert_eq!(
        &n[n.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let deltas = n.iter().filter(|&&x| x == "content_block_delta").count();
    assert!(
        deltas >= long.len() / 24,
        "text is chunked finely: {deltas} deltas"
    );
    let start = &events[0].1["message"];
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-opus-4-8");
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["content"], json!([]));
    assert_eq!(
        start["usage"]["input_tokens"],
        (body.len() / 4) as u64,
        "bytes/4"
    );
    assert_eq!(
        events[2].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(joined(&events, 0, "text"), long);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() >= long.len() as u64 / 4);

    let log = fake.requests();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, MESSAGES);
    assert_eq!(r.kind, RequestKind::Messages);
    assert_eq!(r.model.as_deref(), Some("claude-opus-4-8"));
    assert!(r.stream);
    assert_eq!(r.message_count, 2);
    assert_eq!(r.last_user_text.as_deref(), Some("say hi"));
    assert_eq!(r.tool_names, ["Bash", "Write"]);
    assert_eq!(r.header("X-Api-Key"), Some("sk-test"));
    assert_eq!(r.body_bytes, body.len());
    assert_eq!(r.turn, Some(0));
    assert_eq!(r.system_text().as_deref(), Some("You are a test."));
    assert!(!r.disconnected);
    assert_eq!(
        r.answer,
        Answer::Message {
            blocks: vec!["text".into()],
            stop_reason: "end_turn".into(),
            tool_use_ids: vec![],
        }
    );
}

#[tokio::test]
async fn tool_use_turn_streams_input_json_deltas() {
    let input = json!({"command": "echo hi > out.txt", "description": "Write a file with a rather long description"});
    let fake = FakeModel::start([Turn::tool_use("Bash", input.clone())])
        .await
        .unwrap();
    let resp = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("run it", true).as_slice()),
    )
    .await;
    let events = sse(&resp.body);
    let start = &events[2].1;
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "Bash");
    assert_eq!(start["content_block"]["input"], json!({}));
    let id = start["content_block"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("toolu_") && id.len() > 20, "{id}");
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| &d["delta"])
        .collect();
    assert!(deltas.iter().all(|d| d["type"] == "input_json_delta"));
    assert_eq!(
        deltas[0]["partial_json"], "",
        "first delta is empty like the real API"
    );
    assert!(deltas.len() > 3, "input is streamed in several chunks");
    let streamed: Value = serde_json::from_str(&joined(&events, 0, "partial_json")).unwrap();
    assert_eq!(streamed, input);
    let md = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(md.1["delta"]["stop_reason"], "tool_use");
    match &fake.requests()[0].answer {
        Answer::Message {
            blocks,
            tool_use_ids,
            stop_reason,
        } => {
            assert_eq!(blocks, &["tool_use:Bash"]);
            assert_eq!(tool_use_ids, &[id]);
            assert_eq!(stop_reason, "tool_use");
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn thinking_text_and_tool_in_one_turn() {
    let fake = FakeModel::start([
        Turn::blocks(vec![
            Block::thinking("Let me run it."),
            Block::text("Running echo."),
            Block::tool_use_with_id("toolu_fixed", "Bash", json!({"command": "echo hi"})),
        ]),
        Turn::thinking("Hmm.", "Done.").stop_reason("max_tokens"),
    ])
    .await
    .unwrap();
    let resp = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("go", true).as_slice()),
    )
    .await;
    let events = sse(&resp.body);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(
        starts[0],
        &json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    assert_eq!(starts[1]["type"], "text");
    assert_eq!(starts[2]["id"], "toolu_fixed");
    assert_eq!(joined(&events, 0, "thinking"), "Let me run it.");
    let sig = joined(&events, 0, "signature");
    assert!(!sig.is_empty());
    // The signature delta is the last delta of the thinking block.
    let thinking_deltas: Vec<&Value> = events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["index"] == 0)
        .map(|(_, d)| &d["delta"])
        .collect();
    assert_eq!(thinking_deltas.last().unwrap()["type"], "signature_delta");
    assert_eq!(joined(&events, 1, "text"), "Running echo.");
    let stops: Vec<u64> = events
        .iter()
        .filter(|(n, _)| n == "content_block_stop")
        .map(|(_, d)| d["index"].as_u64().unwrap())
        .collect();
    assert_eq!(stops, [0, 1, 2]);

    let resp = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("again", true).as_slice()),
    )
    .await;
    let events = sse(&resp.body);
    assert_eq!(joined(&events, 1, "text"), "Done.");
    let md = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(md.1["delta"]["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn non_streaming_request_gets_a_json_message() {
    let fake = FakeModel::start([Turn::blocks(vec![
        Block::thinking_with_signature("t", "sig-1"),
        Block::text("plain"),
        Block::tool_use("Read", json!({"file_path": "/x"})),
    ])])
    .await
    .unwrap();
    let mut body: Value = serde_json::from_slice(&cli_like_body("hi", false)).unwrap();
    body.as_object_mut().unwrap().remove("stream");
    let resp = http::send(
        fake.addr(),
        "POST",
        "/v1/messages",
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let msg = resp.json();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(
        msg["content"][0],
        json!({"type": "thinking", "thinking": "t", "signature": "sig-1"})
    );
    assert_eq!(msg["content"][1], json!({"type": "text", "text": "plain"}));
    assert_eq!(msg["content"][2]["name"], "Read");
    assert_eq!(msg["content"][2]["input"], json!({"file_path": "/x"}));
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(!fake.requests()[0].stream);
}

#[tokio::test]
async fn http_errors_repeat_then_recover() {
    let fake = FakeModel::start([
        Turn::overloaded().times(2),
        Turn::unauthorized(),
        Turn::rate_limited(),
        Turn::error(500, "api_error", "boom"),
        Turn::text("recovered"),
    ])
    .await
    .unwrap();
    let body = cli_like_body("hello", true);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = http::send(fake.addr(), "POST", MESSAGES, Some(body.as_slice())).await;
        statuses.push(resp.status);
        if resp.status == 529 {
            assert_eq!(
                resp.json(),
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            );
        }
        if resp.status == 401 {
            assert_eq!(resp.json()["error"]["type"], "authentication_error");
        }
        if resp.status == 429 {
            assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
        }
        if resp.status == 500 {
            assert_eq!(resp.json()["error"]["message"], "boom");
        }
        if resp.status == 200 {
            assert_eq!(joined(&sse(&resp.body), 0, "text"), "recovered");
        }
    }
    assert_eq!(statuses, [529, 529, 401, 429, 500, 200]);
    let log = fake.message_requests();
    assert_eq!(
        log.iter().map(|r| r.turn).collect::<Vec<_>>(),
        [Some(0), Some(0), Some(1), Some(2), Some(3), Some(4)]
    );
    assert_eq!(
        log[0].answer,
        Answer::HttpError {
            status: 529,
            error_type: "overloaded_error".into()
        }
    );
    assert_eq!(fake.pending_turns(), 0);
}

#[tokio::test]
async fn sse_error_event_mid_stream() {
    let fake = FakeModel::start([
        Turn::sse_error("overloaded_error", "Overloaded"),
        Turn::text("partial").then_sse_error("api_error", "stream broke"),
        Turn::sse_error("overloaded_error", "Overloaded"),
    ])
    .await
    .unwrap();
    let resp = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("x", true).as_slice()),
    )
    .await;
    assert_eq!(resp.status, 200);
    let events = sse(&resp.body);
    assert_eq!(names(&events), ["message_start", "ping", "error"]);
    assert_eq!(
        events[2].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    let resp = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("x", true).as_slice()),
    )
    .await;
    let events = sse(&resp.body);
    let n = names(&events);
    assert_eq!(n.last(), Some(&"error"));
    assert!(!n.contains(&"message_stop"));
    assert_eq!(joined(&events, 0, "text"), "partial");
    assert_eq!(events.last().unwrap().1["error"]["type"], "api_error");

    // Non-streaming request with an sse_error turn: a plain HTTP error.
    let resp = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("x", false).as_slice()),
    )
    .await;
    assert_eq!(resp.status, 529);
    let log = fake.message_requests();
    assert_eq!(
        log[0].answer,
        Answer::SseError {
            error_type: "overloaded_error".into()
        }
    );
}

#[tokio::test]
async fn count_tokens_head_get_and_unknown_routes() {
    let fake = FakeModel::start([]).await.unwrap();
    let head = http::send(fake.addr(), "HEAD", "/", None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let get = http::send(fake.addr(), "GET", "/v1/models?beta=true", None).await;
    assert_eq!(get.status, 200);
    let body = cli_like_body("count me", false);
    let count = http::send(
        fake.addr(),
        "POST",
        "/v1/messages/count_tokens?beta=true",
        Some(body.as_slice()),
    )
    .await;
    assert_eq!(count.status, 200);
    assert_eq!(count.json(), json!({"input_tokens": body.len() / 4}));
    let unknown = http::send(fake.addr(), "POST", "/v1/complete", Some(b"{}")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["type"], "not_found_error");

    let log = fake.requests();
    let kinds: Vec<RequestKind> = log.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RequestKind::Head,
            RequestKind::Get,
            RequestKind::CountTokens,
            RequestKind::Other
        ]
    );
    assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(log[0].path, "/");
    assert_eq!(log[1].path, "/v1/models?beta=true");
    assert_eq!(
        log[2].answer,
        Answer::CountTokens {
            input_tokens: (body.len() / 4) as u64
        }
    );
    assert_eq!(log[2].last_user_text.as_deref(), Some("count me"));
    // None of these used up script turns or reached the fallback.
    assert!(log.iter().all(|r| r.turn.is_none()));
}

#[tokio::test]
async fn bad_input_gets_400_not_a_panic() {
    let fake = FakeModel::start([Turn::text("kept")]).await.unwrap();
    for body in [
        &b"not json"[..],
        b"[1,2,3]",
        b"{\"model\":\"x\"}",
        b"{\"messages\":\"nope\"}",
        b"",
    ] {
        let resp = http::send(fake.addr(), "POST", MESSAGES, Some(body)).await;
        assert_eq!(resp.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(resp.json()["type"], "error");
        assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
    }
    let resp = http::send(
        fake.addr(),
        "POST",
        "/v1/messages/count_tokens",
        Some(b"garbage"),
    )
    .await;
    assert_eq!(resp.status, 400);
    // Odd but valid shapes: string content, no user text at all.
    let odd = json!({"messages": [{"role": "assistant", "content": 5}, {"role": "user"}]});
    let resp = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(odd.to_string().as_bytes()),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["content"][0]["text"], "kept");
    assert_eq!(fake.requests().len(), 7);
    assert!(fake.requests()[6].last_user_text.is_none());
}

#[tokio::test]
async fn fallback_echo_fixed_text_and_match_text() {
    let fake = FakeModel::builder()
        .turn(Turn::text("matched").match_text("magic"))
        .start()
        .await
        .unwrap();
    let text_of = |resp: &http::Response| joined(&sse(&resp.body), 0, "text");
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("plain prompt", true).as_slice()),
    )
    .await;
    assert_eq!(text_of(&r), "echo: plain prompt");
    assert_eq!(fake.pending_turns(), 1, "the unmatched turn stays pending");
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("the magic word", true).as_slice()),
    )
    .await;
    assert_eq!(text_of(&r), "matched");
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("the magic word", true).as_slice()),
    )
    .await;
    assert_eq!(text_of(&r), "echo: the magic word");
    let turns: Vec<Option<usize>> = fake.requests().iter().map(|r| r.turn).collect();
    assert_eq!(turns, [None, Some(0), None]);

    fake.set_fallback(Fallback::Text("fixed".into()));
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("x", true).as_slice()),
    )
    .await;
    assert_eq!(text_of(&r), "fixed");
    fake.push_turn(Turn::text("pushed later"));
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("x", true).as_slice()),
    )
    .await;
    assert_eq!(text_of(&r), "pushed later");
    assert_eq!(fake.requests()[4].turn, Some(1));

    let fake2 = FakeModel::builder()
        .fallback(Fallback::Turn(Box::new(Turn::overloaded())))
        .start()
        .await
        .unwrap();
    let r = http::send(
        fake2.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("x", true).as_slice()),
    )
    .await;
    assert_eq!(r.status, 529);
}

#[tokio::test]
async fn tool_results_are_visible_in_the_log() {
    let fake = FakeModel::start([]).await.unwrap();
    let body = json!({
        "model": "m", "stream": true,
        "messages": [
            {"role": "user", "content": "run echo hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "hi"}]},
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"}
            ]}
        ]
    });
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(joined(&sse(&r.body), 0, "text"), "echo: run echo hi");
    let logged = &fake.requests()[0];
    assert_eq!(logged.last_user_text.as_deref(), Some("run echo hi"));
    assert_eq!(logged.tool_results().len(), 1);
    assert_eq!(logged.tool_result_text("toolu_1").as_deref(), Some("hi"));
    assert_eq!(logged.messages().len(), 3);
}

#[tokio::test]
async fn delay_and_chunk_delay_spread_the_stream_over_time() {
    let text = "x".repeat(24 * 10); // 10 deltas
    let fake = FakeModel::start([
        Turn::text("late").delay(Duration::from_millis(300)),
        Turn::text(text.clone()).chunk_delay(Duration::from_millis(30)),
    ])
    .await
    .unwrap();
    let t0 = Instant::now();
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("a", true).as_slice()),
    )
    .await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(joined(&sse(&r.body), 0, "text"), "late");

    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("b", true).as_slice()),
    )
    .await;
    assert_eq!(joined(&sse(&r.body), 0, "text"), text);
    let times = &r.event_times;
    assert_eq!(times.first().unwrap().1, "message_start");
    assert_eq!(times.last().unwrap().1, "message_stop");
    // 15 events with 30 ms between them: the stream takes at least ~400 ms.
    let spread = times.last().unwrap().0 - times.first().unwrap().0;
    assert!(spread >= Duration::from_millis(350), "spread {spread:?}");
    let first_delta = times
        .iter()
        .find(|(_, n)| n == "content_block_delta")
        .unwrap()
        .0;
    assert!(first_delta - times[0].0 >= Duration::from_millis(60));
}

#[tokio::test]
async fn client_hang_up_is_logged_as_disconnected() {
    let fake = FakeModel::start([
        Turn::text("y".repeat(2000)).chunk_delay(Duration::from_millis(20)),
        Turn::text("after"),
    ])
    .await
    .unwrap();
    http::send_and_hang_up(fake.addr(), MESSAGES, &cli_like_body("a", true), 200).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.requests()[0].disconnected {
        assert!(Instant::now() < deadline, "disconnect not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server is still fine afterwards.
    let r = http::send(
        fake.addr(),
        "POST",
        MESSAGES,
        Some(cli_like_body("b", true).as_slice()),
    )
    .await;
    assert_eq!(joined(&sse(&r.body), 0, "text"), "after");
    assert!(!fake.requests()[1].disconnected);
}

#[tokio::test]
async fn wait_for_requests_and_timeouts() {
    let fake = FakeModel::start([Turn::text("one")]).await.unwrap();
    let err = fake
        .wait_for_requests(1, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        FakeModelError::Timeout {
            wanted: 1,
            got: 0,
            ..
        }
    ));
    let addr = fake.addr();
    let client = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        http::send(addr, "HEAD", "/", None).await;
        http::send(
            addr,
            "POST",
            MESSAGES,
            Some(cli_like_body("hi", true).as_slice()),
        )
        .await;
    });
    let msgs = fake
        .wait_for_message_requests(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].last_user_text.as_deref(), Some("hi"));
    let all = fake
        .wait_for_requests(2, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(all[0].kind, RequestKind::Head);
    client.await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_the_server_and_cuts_streams() {
    let fake = FakeModel::start([Turn::text("slow").delay(Duration::from_secs(30))])
        .await
        .unwrap();
    let addr = fake.addr();
    let pending = tokio::spawn(async move {
        http::send(
            addr,
            "POST",
            MESSAGES,
            Some(cli_like_body("a", true).as_slice()),
        )
        .await
    });
    fake.wait_for_requests(1, Duration::from_secs(5))
        .await
        .unwrap();
    let t0 = Instant::now();
    fake.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The hanging request's connection was closed without a response.
    let result = tokio::time::timeout(Duration::from_secs(5), pending).await;
    assert!(matches!(result, Ok(Err(_))), "request was cut");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn drop_stops_the_server() {
    let fake = FakeModel::start([]).await.unwrap();
    let addr = fake.addr();
    drop(fake);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn start_blocking_outside_a_runtime() {
    let fake = FakeModel::builder()
        .turn(Turn::text("sync"))
        .start_blocking()
        .unwrap();
    // A blocking std client works because the server has its own thread.
    use std::io::{Read, Write};
    let body = cli_like_body("hi", false);
    let mut s = std::net::TcpStream::connect(fake.addr()).unwrap();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"));
    assert!(out.contains("\"text\":\"sync\""));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async { FakeModel::builder().start_blocking().unwrap_err() });
    assert!(matches!(err, FakeModelError::Start(_)));
}
