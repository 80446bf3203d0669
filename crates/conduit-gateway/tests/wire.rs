//! The wire as docs/WIRE.md describes it, spoken by hand against the real gateway with
//! `mock-claude`: the documented exchange, the refusals that leave the session going, the one
//! error body, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use claude_conduit::transport::relay::wire::{ErrorBody, kind};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod support;
use support::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One raw HTTP/1.1 request; the status and the raw body.
async fn raw_http(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let req = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

async fn create(addr: SocketAddr) -> String {
    let (status, body) = raw_http(
        addr,
        &format!(
            "POST /v1/sessions HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json"
        ),
        "{}",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn socket(addr: SocketAddr, id: &str) -> Ws {
    let mut req = format!("ws://{addr}/v1/sessions/{id}/stream?after=0")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.expect("ws").0
}

async fn next(ws: &mut Ws) -> WsMessage {
    tokio::time::timeout(T, ws.next())
        .await
        .expect("a message in time")
        .expect("open")
        .expect("ok")
}

async fn next_text(ws: &mut Ws) -> Value {
    match next(ws).await {
        WsMessage::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn numbered(seq: u64, frame: &str) -> WsMessage {
    let mut b = seq.to_be_bytes().to_vec();
    b.extend_from_slice(frame.as_bytes());
    WsMessage::Binary(b.into())
}

const USER: &str = r#"{"type":"user","message":{"role":"user","content":"hi"},"parent_tool_use_id":null,"session_id":"default"}"#;

/// Read CLI frames (checking their numbers) until the `end`; returns their types, the end and
/// the close code.
async fn until_end(ws: &mut Ws) -> (Vec<String>, Value, u16) {
    let mut last = 0;
    let mut types = Vec::new();
    loop {
        match next(ws).await {
            WsMessage::Binary(b) => {
                let seq = u64::from_be_bytes(b[..8].try_into().unwrap());
                assert_eq!(seq, last + 1);
                last = seq;
                let v: Value = serde_json::from_slice(&b[8..]).unwrap();
                types.push(v["type"].as_str().unwrap().to_owned());
            }
            WsMessage::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if let Some(end) = v.get("end") {
                    let end = end.clone();
                    let code = match next(ws).await {
                        WsMessage::Close(Some(f)) => u16::from(f.code),
                        other => panic!("expected a close, got {other:?}"),
                    };
                    return (types, end, code);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The exchange at the end of docs/WIRE.md, message for message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_exchange_runs_against_the_gateway() {
    let doc = include_str!("../../../docs/WIRE.md");
    assert!(doc.contains(&format!("binary 00 00 00 00 00 00 00 01 {USER}")));
    let gw = start(config(&[])).await;
    let id = create(gw.addr).await;
    let mut ws = socket(gw.addr, &id).await;
    let hello = next_text(&mut ws).await;
    assert_eq!(
        hello,
        json!({"hello": {"in_seq": 0, "max_frame_bytes": 268_435_456, "session": id}})
    );
    ws.send(numbered(1, USER)).await.unwrap();
    ws.send(WsMessage::Text(r#"{"end_input":true}"#.into()))
        .await
        .unwrap();
    let (types, end, code) = until_end(&mut ws).await;
    assert_eq!(
        types.first().map(String::as_str),
        Some("system"),
        "{types:?}"
    );
    assert!(types.iter().any(|t| t == "assistant"), "{types:?}");
    assert_eq!(
        types.last().map(String::as_str),
        Some("result"),
        "{types:?}"
    );
    assert_eq!(end, json!({"code": 0, "signal": null, "stderr_tail": ""}));
    assert_eq!(code, 1000);
    gw.shutdown().await;
}

/// Non-objects, malformed control messages and short binary messages are refused with a typed
/// `bad_frame`, never reach the CLI, and the session goes on (the turn after them completes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_refused_and_the_session_goes_on() {
    let gw = start(config(&[])).await;
    let id = create(gw.addr).await;
    let mut ws = socket(gw.addr, &id).await;
    next_text(&mut ws).await;
    let bad = [
        WsMessage::Text("[1,2]".into()),
        WsMessage::Text(r#"{"ack":"x"}"#.into()),
        WsMessage::Text("not json".into()),
        WsMessage::Binary(vec![0, 1, 2].into()),
        numbered(1, "42"),
        numbered(2, "{\"type\":"),
    ];
    let n = bad.len();
    for m in bad {
        ws.send(m).await.unwrap();
    }
    for _ in 0..n {
        let v = next_text(&mut ws).await;
        assert_eq!(v["error"]["kind"], kind::BAD_FRAME, "{v}");
    }
    // The refused numbered frames took their numbers: the next one is 3.
    ws.send(numbered(3, USER)).await.unwrap();
    ws.send(WsMessage::Text(r#"{"end_input":true}"#.into()))
        .await
        .unwrap();
    let (types, end, _) = until_end(&mut ws).await;
    assert_eq!(
        types.last().map(String::as_str),
        Some("result"),
        "{types:?}"
    );
    assert_eq!(end["code"], 0, "the CLI never saw a bad line: {end}");
    gw.shutdown().await;
}

/// Every error answer is `{"error":{"kind","message"}}`, axum's own rejections included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_body_is_the_one_json_shape() {
    let gw = start(config(&[])).await;
    let id = create(gw.addr).await;
    let auth = format!("Authorization: Bearer {TOKEN}");
    let cases = [
        (
            "GET /v1/sessions HTTP/1.1".to_owned(),
            "",
            401,
            kind::UNAUTHORIZED,
        ),
        (
            format!("GET /v1/sessions/nope HTTP/1.1\r\n{auth}"),
            "",
            404,
            kind::NOT_FOUND,
        ),
        (
            format!("GET /v1/nothing-here HTTP/1.1\r\n{auth}"),
            "",
            404,
            kind::NOT_FOUND,
        ),
        (
            format!("POST /v1/sessions HTTP/1.1\r\n{auth}\r\nContent-Type: text/plain"),
            "{}",
            415,
            kind::BAD_BODY,
        ),
        (
            format!("POST /v1/sessions HTTP/1.1\r\n{auth}\r\nContent-Type: application/json"),
            r#"{"model":"x"}"#,
            422,
            kind::BAD_BODY,
        ),
        (
            format!("GET /v1/sessions/{id}/events?after=x HTTP/1.1\r\n{auth}"),
            "",
            400,
            kind::BAD_REQUEST,
        ),
        (
            format!(
                "POST /v1/sessions/{id}/frames HTTP/1.1\r\n{auth}\r\nContent-Type: application/x-ndjson\r\nConduit-Seq: 1"
            ),
            "[1]\n",
            400,
            kind::BAD_FRAME,
        ),
    ];
    for (head, body, status, want) in cases {
        let (got, text) = raw_http(gw.addr, &head, body).await;
        assert_eq!(got, status, "{head}: {text}");
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error: ErrorBody = serde_json::from_value(parsed.clone())
            .unwrap_or_else(|e| panic!("{head}: {text}: {e}"));
        assert_eq!(error.error.kind, want, "{head}: {text}");
        assert!(!error.error.message.is_empty(), "{head}: {text}");
    }
    gw.shutdown().await;
}

/// Gateway shutdown is "come back later" (1001), not a normal end of the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_going_away() {
    let gw = start(config(&[])).await;
    let id = create(gw.addr).await;
    let mut ws = socket(gw.addr, &id).await;
    next_text(&mut ws).await;
    let stopping = tokio::spawn(gw.shutdown());
    let code = loop {
        match next(&mut ws).await {
            WsMessage::Close(Some(f)) => break u16::from(f.code),
            WsMessage::Text(t) => assert!(!t.as_str().contains("\"end\""), "{t}"),
            _ => {}
        }
    };
    assert_eq!(code, 1001);
    stopping.await.unwrap();
}
