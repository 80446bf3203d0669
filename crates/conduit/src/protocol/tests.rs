//! Engine tests on the memory transport, with the test playing the CLI.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::*;
use crate::transport::memory::{MemoryPeer, assistant_text, result_success};
use crate::transport::{MemoryTransport, Transport};

async fn engine_with(
    handler: Arc<dyn InboundHandler>,
    buffer: usize,
    idle: Option<Duration>,
) -> (Engine, MessageRx, MemoryPeer) {
    let (t, peer) = MemoryTransport::pair(16);
    let conn = t.connect().await.unwrap_or_else(|_| unreachable!());
    let (e, rx) = Engine::start(
        conn.sender,
        conn.receiver,
        EngineConfig {
            message_buffer: buffer,
            max_concurrent_callbacks: 4,
            idle_timeout: idle,
            handler,
            ext: None,
            metrics: None,
            span: tracing::Span::none(),
        },
    );
    (e, rx, peer)
}

fn cli_request(id: &str, body: Value) -> Value {
    json!({"type":"control_request","request_id":id,"request":body})
}

fn reply_ok(id: &Value, resp: Value) -> Value {
    json!({"type":"control_response","response":{"subtype":"success","request_id":id,"response":resp}})
}

#[tokio::test]
async fn unhandled_inbound_requests_get_defined_answers() {
    let (_e, _rx, mut peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    peer.send_json(&cli_request(
        "a",
        json!({"subtype":"can_use_tool","tool_name":"Bash","input":{}}),
    ))
    .await
    .ok();
    let r = peer.recv_json().await.unwrap_or_default();
    assert_eq!(r["response"]["request_id"], "a");
    assert_eq!(r["response"]["subtype"], "success");
    assert_eq!(r["response"]["response"]["behavior"], "deny");
    assert!(
        r["response"]["response"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("No permission handler")
    );
    for (id, body, needle) in [
        (
            "b",
            json!({"subtype":"hook_callback","callback_id":"hook_9"}),
            "hook_9",
        ),
        (
            "c",
            json!({"subtype":"mcp_message","server_name":"nope","message":{}}),
            "nope",
        ),
        (
            "d",
            json!({"subtype":"bogus"}),
            "Unsupported control request subtype: bogus",
        ),
    ] {
        peer.send_json(&cli_request(id, body)).await.ok();
        let r = peer.recv_json().await.unwrap_or_default();
        assert_eq!(r["response"]["subtype"], "error", "{r}");
        assert_eq!(r["response"]["request_id"], id);
        assert!(
            r["response"]["error"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{r}"
        );
    }
}

/// A handler that parks until released, and panics on `explode`. Each parked request's future
/// reports its id on `dropped` when it is dropped (answered or cancelled).
struct Parking {
    release: Arc<tokio::sync::Notify>,
    dropped: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Parking {
    fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (dropped, rx) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Notify::new());
        (Self { release, dropped }, rx)
    }
}

/// Sends its id when dropped.
struct ReportDrop(String, tokio::sync::mpsc::UnboundedSender<String>);

impl Drop for ReportDrop {
    fn drop(&mut self) {
        let _ = self.1.send(std::mem::take(&mut self.0));
    }
}

impl InboundHandler for Parking {
    fn handle(
        &self,
        req: ControlRequest,
    ) -> BoxFuture<'static, std::result::Result<Option<Value>, String>> {
        let release = self.release.clone();
        let guard = ReportDrop(req.request_id.clone(), self.dropped.clone());
        Box::pin(async move {
            let _guard = guard;
            match req.subtype.as_str() {
                "explode" => panic!("kaboom"),
                "park" => {
                    release.notified().await;
                    Ok(Some(json!({"released": true})))
                }
                _ => Ok(None),
            }
        })
    }
}

// Paused time: the memory transport and the engine run on tokio alone, so the clock only moves
// when every task is idle, and "no answer within 200 ms" means "none while nothing else can
// happen", without a real wait.
#[tokio::test(start_paused = true)]
async fn slow_callbacks_do_not_stall_messages_and_cancel_suppresses_the_answer() {
    let (parking, mut dropped) = Parking::new();
    let release = parking.release.clone();
    let (_e, mut rx, mut peer) = engine_with(Arc::new(parking), 8, None).await;
    peer.send_json(&cli_request("p1", json!({"subtype":"park"})))
        .await
        .ok();
    peer.send_json(&cli_request("p2", json!({"subtype":"park"})))
        .await
        .ok();
    for i in 0..50 {
        peer.send_json(&assistant_text(&format!("m{i}"))).await.ok();
        let m = rx.recv().await;
        assert!(
            matches!(m, Some(Ok(_))),
            "message {i} must flow while callbacks park"
        );
    }
    // The CLI withdraws p1: its callback is dropped (no fixed wait: the drop is observed).
    peer.send_json(&json!({"type":"control_cancel_request","request_id":"p1"}))
        .await
        .ok();
    assert_eq!(dropped.recv().await.as_deref(), Some("p1"));
    // Then p2 is released and answered; p1 never is.
    release.notify_one();
    let r = peer.recv_json().await.unwrap_or_default();
    assert_eq!(r["response"]["request_id"], "p2");
    assert_eq!(r["response"]["response"]["released"], true);
    let next = tokio::time::timeout(Duration::from_millis(200), peer.recv_json()).await;
    assert!(
        next.is_err(),
        "no answer may follow for the cancelled request: {next:?}"
    );
}

#[tokio::test]
async fn a_panicking_callback_is_answered_with_an_error() {
    let (parking, _dropped) = Parking::new();
    let (_e, _rx, mut peer) = engine_with(Arc::new(parking), 8, None).await;
    peer.send_json(&cli_request("x", json!({"subtype":"explode"})))
        .await
        .ok();
    let r = peer.recv_json().await.unwrap_or_default();
    assert_eq!(r["response"]["subtype"], "error");
    assert!(
        r["response"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("kaboom"),
        "{r}"
    );
}

#[tokio::test]
async fn inbound_requests_before_the_initialize_reply_are_served() {
    let (e, _rx, mut peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    let init = tokio::spawn({
        let e = e.clone();
        async move {
            e.request("initialize", json!({}), Duration::from_secs(10))
                .await
        }
    });
    let req = peer.recv_json().await.unwrap_or_default();
    assert_eq!(req["request"]["subtype"], "initialize");
    // Like the CLI with an SDK MCP server: ask first, answer initialize only after our reply.
    peer.send_json(&cli_request(
        "mcp1",
        json!({"subtype":"mcp_message","server_name":"s","message":{}}),
    ))
    .await
    .ok();
    let ans = peer.recv_json().await.unwrap_or_default();
    assert_eq!(ans["response"]["request_id"], "mcp1");
    peer.send_json(&reply_ok(&req["request_id"], json!({"pid": 1})))
        .await
        .ok();
    let got = init.await.ok().and_then(|r| r.ok()).flatten();
    assert_eq!(got, Some(json!({"pid": 1})));
}

#[tokio::test]
async fn pending_requests_fail_at_once_when_the_reader_ends() {
    let (e, _rx, mut peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    let req = tokio::spawn({
        let e = e.clone();
        async move {
            e.request("interrupt", json!({}), Duration::from_secs(600))
                .await
        }
    });
    let _ = peer.recv_json().await;
    peer.finish(Termination {
        code: Some(9),
        signal: None,
        stderr_tail: "dead".into(),
    });
    let r = tokio::time::timeout(Duration::from_secs(5), req).await;
    match r {
        Ok(Ok(Err(Error::ProcessExited {
            code, stderr_tail, ..
        }))) => {
            assert_eq!(code, Some(9));
            assert_eq!(stderr_tail, "dead");
        }
        other => panic!("expected ProcessExited at once, got {other:?}"),
    }
}

#[tokio::test]
async fn control_error_replies_are_typed() {
    let (e, _rx, mut peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    let req = tokio::spawn({
        let e = e.clone();
        async move { e.request("bogus", json!({}), Duration::from_secs(10)).await }
    });
    let r = peer.recv_json().await.unwrap_or_default();
    peer.send_json(
        &json!({"type":"control_response","response":{"subtype":"error",
        "request_id": r["request_id"], "error":"Unsupported control request subtype: bogus",
        "error_code":"unsupported_request"}}),
    )
    .await
    .ok();
    match req.await.ok() {
        Some(Err(Error::ControlError { subtype, code, .. })) => {
            assert_eq!(subtype, "bogus");
            assert_eq!(code.as_deref(), Some("unsupported_request"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_control_reply_is_not_stuck_behind_an_undrained_message_channel() {
    // Buffer of 4 messages, nobody drains; the CLI sends 1000 messages and only then the reply.
    let (e, mut rx, mut peer) = engine_with(Arc::new(DefaultHandler), 4, None).await;
    let req = tokio::spawn({
        let e = e.clone();
        async move {
            e.request("interrupt", json!({}), Duration::from_secs(30))
                .await
        }
    });
    let r = peer.recv_json().await.unwrap_or_default();
    let id = r["request_id"].clone();
    let cli = tokio::spawn(async move {
        for i in 0..1000 {
            peer.send_json(&assistant_text(&format!("m{i}"))).await.ok();
        }
        peer.send_json(&reply_ok(&id, Value::Null)).await.ok();
        peer
    });
    let got = tokio::time::timeout(Duration::from_secs(20), req).await;
    assert!(matches!(got, Ok(Ok(Ok(_)))), "{got:?}");
    // Every message is still delivered, in order.
    let _peer = cli.await;
    for i in 0..1000 {
        let m = rx
            .recv()
            .await
            .and_then(|m| m.ok())
            .and_then(|m| m.to_value().ok());
        let text = m
            .as_ref()
            .map(|v| v["message"]["content"][0]["text"].clone());
        assert_eq!(text, Some(json!(format!("m{i}"))));
    }
}

#[tokio::test]
async fn per_turn_cost_is_derived_from_the_cumulative_total() {
    let (e, mut rx, peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    e.send_user(crate::message::UserInput::new("a").encode())
        .await
        .ok();
    peer.send_json(&result_success(1, 0.25)).await.ok();
    peer.send_json(&result_success(2, 0.75)).await.ok();
    let mut costs = Vec::new();
    for _ in 0..2 {
        if let Some(Ok(m)) = rx.recv().await {
            costs.push(m.as_result().and_then(|r| r.turn_cost_usd));
        }
    }
    assert_eq!(costs, vec![Some(0.25), Some(0.5)]);
}

// Paused time (the engine and the memory transport run on tokio alone): the clock is moved by
// hand, so "not before the timeout, and then at once" is checked without waiting.
#[tokio::test(start_paused = true)]
async fn idle_timeout_turns_a_silent_cli_into_a_typed_error() {
    let idle = Duration::from_millis(100);
    let (e, mut rx, peer) = engine_with(Arc::new(DefaultHandler), 8, Some(idle)).await;
    e.send_user(crate::message::UserInput::new("a").encode())
        .await
        .ok();
    // Frames closer together than the timeout keep the turn alive.
    for i in 0..3 {
        tokio::time::advance(idle * 3 / 4).await;
        peer.send_json(&assistant_text(&format!("m{i}"))).await.ok();
        assert!(matches!(rx.recv().await, Some(Ok(_))), "frame {i}");
    }
    // Silence: nothing just before the timeout, `Idle` once it has passed.
    tokio::time::advance(idle - Duration::from_millis(1)).await;
    assert!(
        futures::FutureExt::now_or_never(rx.recv()).is_none(),
        "no error before the idle timeout"
    );
    tokio::time::advance(Duration::from_millis(2)).await;
    let m = rx.recv().await;
    assert!(
        matches!(m, Some(Err(Error::Idle { after })) if after == idle),
        "{m:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_control_request_times_out_and_is_withdrawn() {
    let (e, _rx, mut peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    let timeout = Duration::from_secs(30);
    let req = tokio::spawn({
        let e = e.clone();
        async move { e.request("interrupt", json!({}), timeout).await }
    });
    let sent = peer.recv_json().await.unwrap_or_default();
    assert_eq!(sent["request"]["subtype"], "interrupt");
    // The CLI never answers. Just before the deadline the request still waits.
    tokio::time::advance(timeout - Duration::from_millis(1)).await;
    assert!(!req.is_finished());
    tokio::time::advance(Duration::from_millis(2)).await;
    match req.await.ok() {
        Some(Err(Error::ControlTimeout { subtype, after })) => {
            assert_eq!(subtype, "interrupt");
            assert_eq!(after, timeout);
        }
        other => panic!("expected ControlTimeout, got {other:?}"),
    }
    // And the CLI is told to forget it.
    let cancel = peer.recv_json().await.unwrap_or_default();
    assert_eq!(cancel["type"], "control_cancel_request");
    assert_eq!(cancel["request_id"], sent["request_id"]);
}

#[tokio::test]
async fn a_cli_that_dies_mid_turn_is_process_exited_and_one_that_finished_is_not() {
    let (e, mut rx, peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    e.send_user(crate::message::UserInput::new("a").encode())
        .await
        .ok();
    peer.send_json(&assistant_text("partial")).await.ok();
    peer.finish(Termination {
        code: Some(3),
        signal: None,
        stderr_tail: "crash".into(),
    });
    assert!(matches!(rx.recv().await, Some(Ok(_))));
    assert!(matches!(
        rx.recv().await,
        Some(Err(Error::ProcessExited { code: Some(3), .. }))
    ));
    assert!(rx.recv().await.is_none());

    let (e, mut rx, peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    e.send_user(crate::message::UserInput::new("a").encode())
        .await
        .ok();
    let mut err = result_success(1, 0.0);
    err["is_error"] = json!(true);
    peer.send_json(&err).await.ok();
    peer.finish(Termination {
        code: Some(1),
        signal: None,
        stderr_tail: String::new(),
    });
    assert!(matches!(rx.recv().await, Some(Ok(_))));
    assert!(
        rx.recv().await.is_none(),
        "an is_error result then exit 1 is a normal end"
    );
}

#[test]
fn frame_type_reads_the_compact_prefix_and_falls_back_to_a_parse() {
    for (frame, want) in [
        (
            &br#"{"type":"control_request","request_id":"a"}"#[..],
            FrameType::Control,
        ),
        (
            br#"{"type":"control_response","response":{}}"#,
            FrameType::Control,
        ),
        (
            br#"{"type":"control_cancel_request","request_id":"a"}"#,
            FrameType::Control,
        ),
        (br#"{"type":"control_requests","x":1}"#, FrameType::Message),
        (br#"{"type":"control_"}"#, FrameType::Message),
        (
            br#"{"type":"result","subtype":"success"}"#,
            FrameType::Result,
        ),
        (br#"{"type":"results"}"#, FrameType::Message),
        (br#"{"type":"assistant","message":{}}"#, FrameType::Message),
        (br#"{"type":"res\u0075lt"}"#, FrameType::Message),
        (br#"{"type":"result"#, FrameType::Message),
        (br#"{ "type": "result" }"#, FrameType::Result),
        (
            br#"{"uuid":"u","type":"control_response"}"#,
            FrameType::Control,
        ),
        (b"not json", FrameType::Message),
    ] {
        assert_eq!(
            frame_type(frame),
            want,
            "{}",
            String::from_utf8_lossy(frame)
        );
    }
}

#[tokio::test]
async fn system_frames_are_typed_only_when_they_carry_a_fact_the_session_keeps() {
    let (e, mut rx, peer) = engine_with(Arc::new(DefaultHandler), 8, None).await;
    let init = |sid: &str| json!({"type":"system","subtype":"init","session_id":sid,"claude_code_version":"9.9.9"});
    peer.send_json(&init("s-1")).await.ok();
    let m = rx
        .recv()
        .await
        .and_then(Result::ok)
        .unwrap_or_else(|| unreachable!());
    assert!(m.is_system());
    assert_eq!(
        (e.session_id(), e.cli_version()),
        (Some("s-1"), Some("9.9.9"))
    );
    // Known already: the next init needs no typing, and the first values stay.
    peer.send_json(&init("s-2")).await.ok();
    let m = rx
        .recv()
        .await
        .and_then(Result::ok)
        .unwrap_or_else(|| unreachable!());
    assert_eq!(m.session_id(), Some("s-2"));
    assert_eq!(e.session_id(), Some("s-1"));
    // Background agent tasks are still tracked.
    peer.send_json(
        &json!({"type":"system","subtype":"task_started","task_id":"t1","task_type":"local_agent"}),
    )
    .await
    .ok();
    rx.recv().await;
    assert!(
        e.shared
            .background_tasks
            .lock()
            .is_ok_and(|s| s.contains("t1"))
    );
    peer.send_json(
        &json!({"type":"system","subtype":"task_notification","task_id":"t1","status":"completed"}),
    )
    .await
    .ok();
    rx.recv().await;
    assert!(e.shared.background_tasks.lock().is_ok_and(|s| s.is_empty()));
    let m = rx.recv().now_or_never();
    assert!(m.is_none(), "nothing else arrived");
    for (raw, matters) in [
        (
            &br#"{"type":"system","subtype":"status","status":null}"#[..],
            false,
        ),
        (br#"{"type":"system","subtype":"init"}"#, false),
        (
            br#"{"type":"system","subtype":"task_updated","task_id":"t"}"#,
            true,
        ),
        (br#"{"type":"system","subtype":"in\u0069t"}"#, true),
        (br#"{"subtype":"init","type":"system"}"#, true),
    ] {
        assert_eq!(
            rx.system_matters(raw),
            matters,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn result_frames_typed_at_once_match_the_validate_path() {
    let frames: [&[u8]; 6] = [
        br#"{"type":"result","subtype":"success","is_error":false,"result":"4","total_cost_usd":0.01,"session_id":"s"}"#,
        // Repeated `type`: `validate` rejects it, so must this.
        br#"{"type":"result","subtype":"success","type":"result"}"#,
        br#"{"type":"result","subtype":"success","typ\u0065":"result"}"#,
        // A field of the wrong shape: typed as Unknown by the validate path, not an error.
        br#"{"type":"result","subtype":7,"is_error":"no"}"#,
        br#"{"type":"result","subtype":"success","x":{"type":"nested"}}"#,
        br#"{"type":"result", oops"#,
    ];
    for raw in frames {
        let fast = validate_or_type(Bytes::from_static(raw));
        let slow = Message::validate(Bytes::from_static(raw));
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.raw(), b.raw());
                assert_eq!(a.is_result(), b.is_result());
                assert_eq!(a.kind(), b.kind(), "{}", String::from_utf8_lossy(raw));
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!(
                "{}: {:?} vs {:?}",
                String::from_utf8_lossy(raw),
                fast.is_ok(),
                slow.is_ok()
            ),
        }
    }
}
