//! Callbacks over the in-process memory transport: the test plays the CLI, so it can interleave
//! frames exactly (a permission request parked while 1000 frames stream, a cancel, a flood of
//! requests) and look at every frame the SDK sends back.
//!
//! Assertions are about behaviour and order; deadlines only turn hangs into failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use claude_conduit::hooks::{HookEvent, HookMatcher, HookOutput};
use claude_conduit::permission::{PermissionDecision, PermissionRequest};
use claude_conduit::transport::MemoryTransport;
use claude_conduit::transport::Termination;
use claude_conduit::transport::memory::{MemoryPeer, assistant_text, result_success, system_init};
use claude_conduit::{Client, Options};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;

const T: Duration = Duration::from_secs(60);

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Connects a client over a memory pair, answering `initialize` as the CLI would.
async fn connect(options: Options) -> (Client, MemoryPeer) {
    let (transport, mut peer) = MemoryTransport::pair(64);
    let connecting = tokio::spawn(Client::connect_with(transport, options));
    let init = tokio::time::timeout(T, peer.recv_json())
        .await
        .expect("initialize in time")
        .expect("initialize frame");
    assert_eq!(init["type"], "control_request");
    assert_eq!(init["request"]["subtype"], "initialize");
    peer.send_json(&json!({"type": "control_response", "response": {
        "subtype": "success", "request_id": init["request_id"], "response": {"commands": []}}}))
        .await
        .expect("reply");
    let client = connecting.await.expect("join").expect("connect");
    (client, peer)
}

/// The next frame the SDK sent, within the deadline.
async fn next_frame(peer: &mut MemoryPeer) -> Value {
    tokio::time::timeout(T, peer.recv_json())
        .await
        .expect("a frame from the SDK in time")
        .expect("the SDK's input is open")
}

fn can_use_tool(request_id: &str, tool_use_id: &str) -> Value {
    json!({"type": "control_request", "request_id": request_id, "request": {
        "subtype": "can_use_tool", "tool_name": "Bash", "display_name": "Bash",
        "input": {"command": "touch x"}, "tool_use_id": tool_use_id,
        "permission_suggestions": []}})
}

/// Ends the session cleanly: disconnect, and the peer finishes when the SDK's input ends.
async fn finish(client: Client, mut peer: MemoryPeer) {
    let closing = tokio::spawn(client.disconnect());
    while tokio::time::timeout(T, peer.recv_json())
        .await
        .expect("input ends")
        .is_some()
    {}
    peer.finish(Termination::clean());
    closing.await.expect("join").expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_permission_callback_lets_1000_frames_through_and_answers_when_released() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (e, r, f, d) = (
        entered.clone(),
        release.clone(),
        finished.clone(),
        dropped.clone(),
    );
    let options = Options::builder()
        .message_buffer(16)
        .can_use_tool(move |req: PermissionRequest| {
            let (e, r, f, d) = (e.clone(), r.clone(), f.clone(), d.clone());
            async move {
                let _guard = SetOnDrop(d);
                assert_eq!(req.tool_use_id.as_deref(), Some("toolu_1"));
                e.notify_one();
                r.notified().await;
                f.store(true, Ordering::SeqCst);
                PermissionDecision::deny("released: no")
            }
        })
        .build();
    let (client, mut peer) = connect(options).await;
    client.send("go").await.expect("send");
    let user = next_frame(&mut peer).await;
    assert_eq!(user["type"], "user");

    peer.send_json(&system_init()).await.expect("init");
    peer.send_json(&can_use_tool("perm-1", "toolu_1"))
        .await
        .expect("can_use_tool");
    tokio::time::timeout(T, entered.notified())
        .await
        .expect("the callback was called");

    // 1000 frames while the callback is parked, through a 16-message buffer.
    let tx = peer.tx.clone();
    let flood = tokio::spawn(async move {
        for i in 0..1000 {
            let frame = serde_json::to_vec(&assistant_text(&format!("frame {i}"))).unwrap();
            tx.send(Bytes::from(frame)).await.expect("send frame");
        }
    });
    let mut stream = client.receive_messages();
    let first = tokio::time::timeout(T, stream.next())
        .await
        .expect("init in time")
        .expect("open")
        .expect("ok");
    assert_eq!(first.subtype(), Some("init"));
    for i in 0..1000 {
        let m = tokio::time::timeout(T, stream.next())
            .await
            .unwrap_or_else(|_| panic!("frame {i} never arrived while the callback is parked"))
            .expect("open")
            .expect("ok");
        assert_eq!(
            m.as_assistant().map(|a| a.text()),
            Some(format!("frame {i}"))
        );
        assert!(!finished.load(Ordering::SeqCst) && !dropped.load(Ordering::SeqCst));
    }
    flood.await.expect("flood");
    // Still parked, and nothing was answered yet.
    assert!(!finished.load(Ordering::SeqCst) && !dropped.load(Ordering::SeqCst));
    assert!(
        peer.rx.try_recv().is_err(),
        "no control_response while the callback is parked"
    );

    release.notify_one();
    let answer = next_frame(&mut peer).await;
    assert_eq!(answer["type"], "control_response", "{answer}");
    assert_eq!(answer["response"]["subtype"], "success", "{answer}");
    assert_eq!(answer["response"]["request_id"], "perm-1");
    assert_eq!(
        answer["response"]["response"],
        json!({"behavior": "deny", "message": "released: no"})
    );
    assert!(finished.load(Ordering::SeqCst));

    peer.send_json(&result_success(1, 0.001))
        .await
        .expect("result");
    let last = tokio::time::timeout(T, stream.next())
        .await
        .expect("result in time")
        .expect("open")
        .expect("ok");
    assert!(last.is_result());
    drop(stream);
    finish(client, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_is_dropped_and_never_answered() {
    let dropped = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(Notify::new());
    let (d, e) = (dropped.clone(), entered.clone());
    let options = Options::builder()
        .can_use_tool(move |req: PermissionRequest| {
            let (d, e) = (d.clone(), e.clone());
            async move {
                if req.tool_use_id.as_deref() == Some("toolu_1") {
                    let _guard = SetOnDrop(d);
                    e.notify_one();
                    std::future::pending::<()>().await;
                }
                PermissionDecision::allow_with_input(json!({"command": "touch second"}))
            }
        })
        .build();
    let (client, mut peer) = connect(options).await;
    peer.send_json(&can_use_tool("perm-1", "toolu_1"))
        .await
        .expect("first");
    tokio::time::timeout(T, entered.notified())
        .await
        .expect("the callback was called");
    peer.send_json(&json!({"type": "control_cancel_request", "request_id": "perm-1"}))
        .await
        .expect("cancel");
    let deadline = tokio::time::Instant::now() + T;
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancelled callback future was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The next frame the SDK sends answers the second request, not the cancelled one.
    peer.send_json(&can_use_tool("perm-2", "toolu_2"))
        .await
        .expect("second");
    let answer = next_frame(&mut peer).await;
    assert_eq!(answer["response"]["request_id"], "perm-2", "{answer}");
    assert_eq!(
        answer["response"]["response"]["updatedInput"],
        json!({"command": "touch second"})
    );
    assert!(peer.rx.try_recv().is_err(), "nothing else was sent");
    finish(client, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_permission_callback_does_not_delay_hook_callbacks() {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let (r, e, h) = (release.clone(), entered.clone(), hook_calls.clone());
    let options = Options::builder()
        .can_use_tool(move |_req: PermissionRequest| {
            let (r, e) = (r.clone(), e.clone());
            async move {
                e.notify_one();
                r.notified().await;
                PermissionDecision::allow()
            }
        })
        .hook(
            HookEvent::PostToolUse,
            HookMatcher::all().callback(move |_input, _id| {
                h.fetch_add(1, Ordering::SeqCst);
                async { HookOutput::additional_context(HookEvent::PostToolUse, "from the hook") }
            }),
        )
        .build();
    let (client, mut peer) = connect(options).await;
    peer.send_json(&can_use_tool("perm-1", "toolu_1"))
        .await
        .expect("perm");
    tokio::time::timeout(T, entered.notified())
        .await
        .expect("the callback was called");
    peer.send_json(
        &json!({"type": "control_request", "request_id": "hook-1", "request": {
        "subtype": "hook_callback", "callback_id": "hook_0", "tool_use_id": "toolu_0",
        "input": {"session_id": "s", "transcript_path": "/t", "cwd": "/", "hook_event_name":
            "PostToolUse", "tool_name": "Bash", "tool_input": {}, "tool_response": "ok",
            "tool_use_id": "toolu_0"}}}),
    )
    .await
    .expect("hook");
    let first = next_frame(&mut peer).await;
    assert_eq!(
        first["response"]["request_id"], "hook-1",
        "the hook is answered while the permission callback is parked: {first}"
    );
    assert_eq!(
        first["response"]["response"]["hookSpecificOutput"]["additionalContext"],
        "from the hook"
    );
    release.notify_one();
    let second = next_frame(&mut peer).await;
    assert_eq!(second["response"]["request_id"], "perm-1", "{second}");
    assert_eq!(hook_calls.load(Ordering::SeqCst), 1);
    finish(client, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_fast_permission_requests_are_each_answered_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let options = Options::builder()
        .can_use_tool(move |_req: PermissionRequest| {
            c.fetch_add(1, Ordering::SeqCst);
            futures::future::ready(PermissionDecision::allow())
        })
        .build();
    let (client, mut peer) = connect(options).await;
    const N: usize = 2000;
    let tx = peer.tx.clone();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let frame = serde_json::to_vec(&can_use_tool(&format!("perm-{i}"), "toolu")).unwrap();
            tx.send(Bytes::from(frame)).await.expect("send");
        }
    });
    let answered = Arc::new(Mutex::new(HashSet::new()));
    for n in 0..N {
        let frame = tokio::time::timeout(T, peer.recv_json())
            .await
            .unwrap_or_else(|_| panic!("only {n} of {N} requests were answered"))
            .expect("open");
        assert_eq!(frame["response"]["subtype"], "success", "{frame}");
        let id = frame["response"]["request_id"].as_str().unwrap().to_owned();
        assert!(answered.lock().unwrap().insert(id), "answered twice");
    }
    sender.await.expect("sender");
    assert_eq!(calls.load(Ordering::SeqCst), N);
    finish(client, peer).await;
}
