//! Permission callbacks against `mock-claude` (`MOCK_CLAUDE_CAN_USE_TOOL=1`): the mock asks
//! `can_use_tool` after `system/init` of every turn and reports the answer as the first
//! assistant frame's text (`permission: allow`, `permission: deny: <message>`,
//! `permission: error: <error>`); a deny with `interrupt` or an `interrupt` while it waits ends
//! the turn like the real CLI (a `control_cancel_request` for the pending request first).
//!
//! Assertions are about behaviour and order; deadlines only turn hangs into failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claude_conduit::options::{OptionsBuilder, PermissionMode};
use claude_conduit::permission::{PermissionDecision, PermissionRequest};
use claude_conduit::{Client, Error, Message, Options, query};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Notify;

const T: Duration = Duration::from_secs(60);

fn mock(knobs: &[(&str, &str)]) -> OptionsBuilder {
    let mut b = Options::builder()
        .cli_path(env!("CARGO_BIN_EXE_mock-claude"))
        .env("MOCK_CLAUDE_CAN_USE_TOOL", "1");
    for (k, v) in knobs {
        b = b.env(*k, *v);
    }
    b
}

async fn collect<S: futures::Stream<Item = Result<Message, Error>>>(
    s: S,
) -> Vec<Result<Message, Error>> {
    tokio::time::timeout(T, s.collect::<Vec<_>>())
        .await
        .expect("stream did not end in time")
}

fn texts(items: &[Result<Message, Error>]) -> Vec<String> {
    items
        .iter()
        .flatten()
        .filter_map(|m| m.as_assistant().map(|a| a.text()))
        .collect()
}

fn result_of(items: &[Result<Message, Error>]) -> claude_conduit::message::ResultMessage {
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    items
        .iter()
        .flatten()
        .find_map(|m| m.as_result().cloned())
        .expect("a result")
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A callback that records requests and answers each with the next scripted decision
/// (the last one repeats).
fn scripted(
    log: Arc<Mutex<Vec<PermissionRequest>>>,
    decisions: Vec<PermissionDecision>,
) -> impl Fn(PermissionRequest) -> futures::future::Ready<PermissionDecision> + Send + Sync + 'static
{
    move |req| {
        let mut log = log.lock().unwrap();
        let n = log.len().min(decisions.len() - 1);
        log.push(req);
        futures::future::ready(decisions[n].clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_is_answered_and_the_request_is_parsed() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let o = mock(&[])
        .can_use_tool(scripted(log.clone(), vec![PermissionDecision::allow()]))
        .build();
    let items = collect(query("go", o)).await;
    assert!(result_of(&items).is_success());
    assert_eq!(texts(&items), ["permission: allow"]);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].tool_name, "Bash");
    assert_eq!(log[0].input, json!({"command": "touch x"}));
    assert_eq!(log[0].tool_use_id.as_deref(), Some("toolu_1"));
    assert_eq!(log[0].display_name.as_deref(), Some("Bash"));
    assert!(log[0].suggestions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_message_is_what_the_cli_gets() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let o = mock(&[])
        .can_use_tool(scripted(
            log.clone(),
            vec![PermissionDecision::deny("not in this test")],
        ))
        .build();
    let items = collect(query("go", o)).await;
    assert!(result_of(&items).is_success());
    assert_eq!(texts(&items), ["permission: deny: not in this test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_with_interrupt_ends_the_turn_and_the_next_turn_is_asked_again() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let o = mock(&[])
        .can_use_tool(scripted(
            log.clone(),
            vec![
                PermissionDecision::deny_and_interrupt("stop"),
                PermissionDecision::allow(),
            ],
        ))
        .build();
    let client = Client::connect(o).await.expect("connect");
    client.send("one").await.expect("send");
    let first = collect(client.receive_response()).await;
    let r = result_of(&first);
    assert!(r.is_error);
    assert_eq!(r.subtype, "error_during_execution");
    assert_eq!(r.terminal_reason.as_deref(), Some("aborted_tools"));
    assert!(
        texts(&first).is_empty(),
        "no assistant frame after the deny"
    );
    let marker = first
        .iter()
        .flatten()
        .filter_map(|m| m.as_user())
        .map(|u| u.text())
        .collect::<Vec<_>>();
    assert_eq!(marker, ["[Request interrupted by user for tool use]"]);

    client.send("two").await.expect("send");
    let second = collect(client.receive_response()).await;
    assert!(result_of(&second).is_success());
    assert_eq!(texts(&second), ["permission: allow"]);
    let ids: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.tool_use_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["toolu_1", "toolu_2"]);
    client.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_becomes_an_error_reply_and_the_session_goes_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let o = mock(&[])
        .can_use_tool(move |_req: PermissionRequest| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("callback blew up");
                }
                PermissionDecision::allow()
            }
        })
        .build();
    let client = Client::connect(o).await.expect("connect");
    client.send("one").await.expect("send");
    let first = collect(client.receive_response()).await;
    assert!(result_of(&first).is_success());
    let text = texts(&first).concat();
    assert!(
        text.starts_with("permission: error:") && text.contains("callback blew up"),
        "{text}"
    );
    client.send("two").await.expect("send");
    let second = collect(client.receive_response()).await;
    assert_eq!(texts(&second), ["permission: allow"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    client.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_callback_blocks_only_its_turn_then_1000_frames_follow_its_release() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let released = Arc::new(AtomicBool::new(false));
    let (e, r, rd) = (entered.clone(), release.clone(), released.clone());
    let o = mock(&[("MOCK_CLAUDE_MESSAGES", "1000")])
        .message_buffer(16)
        .can_use_tool(move |_req: PermissionRequest| {
            let (e, r, rd) = (e.clone(), r.clone(), rd.clone());
            async move {
                e.notify_one();
                r.notified().await;
                rd.store(true, Ordering::SeqCst);
                PermissionDecision::allow()
            }
        })
        .build();
    let client = Client::connect(o).await.expect("connect");
    client.send("go").await.expect("send");
    let mut stream = Box::pin(client.receive_response());
    let init = tokio::time::timeout(T, stream.next())
        .await
        .expect("init")
        .expect("open")
        .expect("ok");
    assert_eq!(init.subtype(), Some("init"));
    tokio::time::timeout(T, entered.notified())
        .await
        .expect("callback called");

    // While the callback is parked, control requests still go through both ways.
    client
        .set_permission_mode(PermissionMode::AcceptEdits)
        .await
        .expect("set_permission_mode while parked");
    client
        .set_model(Some("mock-model-b"))
        .await
        .expect("set_model while parked");
    client.mcp_status().await.expect("mcp_status while parked");
    assert!(!released.load(Ordering::SeqCst));

    release.notify_one();
    let rest = collect(stream).await;
    assert!(result_of(&rest).is_success());
    let t = texts(&rest);
    assert_eq!(t.len(), 1000);
    assert_eq!(t[0], "permission: allow");
    // The result is the last frame.
    assert!(rest.last().unwrap().as_ref().unwrap().is_result());
    client.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_while_parked_drops_the_callback_and_the_next_turn_works() {
    let entered = Arc::new(Notify::new());
    let dropped = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let (e, d, c) = (entered.clone(), dropped.clone(), calls.clone());
    let o = mock(&[])
        .can_use_tool(move |_req: PermissionRequest| {
            let (e, d) = (e.clone(), d.clone());
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    let _guard = SetOnDrop(d);
                    e.notify_one();
                    std::future::pending::<()>().await;
                }
                PermissionDecision::allow()
            }
        })
        .build();
    let client = Client::connect(o).await.expect("connect");
    client.send("one").await.expect("send");
    tokio::time::timeout(T, entered.notified())
        .await
        .expect("callback called");
    client.interrupt().await.expect("interrupt");
    let first = collect(client.receive_response()).await;
    let r = result_of(&first);
    assert!(r.is_error);
    assert_eq!(r.subtype, "error_during_execution");
    let deadline = tokio::time::Instant::now() + T;
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancelled callback future was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.send("two").await.expect("send");
    let second = collect(client.receive_response()).await;
    assert_eq!(texts(&second), ["permission: allow"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    client.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_turn_asks_once_in_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let o = mock(&[("MOCK_CLAUDE_MESSAGES", "3")])
        .can_use_tool(scripted(
            log.clone(),
            vec![
                PermissionDecision::allow(),
                PermissionDecision::deny("second"),
                PermissionDecision::allow_with_input(json!({"command": "touch y"})),
            ],
        ))
        .build();
    let client = Client::connect(o).await.expect("connect");
    let mut firsts = Vec::new();
    for prompt in ["a", "b", "c"] {
        client.send(prompt).await.expect("send");
        let items = collect(client.receive_response()).await;
        assert!(result_of(&items).is_success());
        let t = texts(&items);
        assert_eq!(t.len(), 3);
        firsts.push(t[0].clone());
    }
    assert_eq!(
        firsts,
        [
            "permission: allow",
            "permission: deny: second",
            "permission: allow"
        ]
    );
    let ids: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.tool_use_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["toolu_1", "toolu_2", "toolu_3"]);
    client.disconnect().await.expect("disconnect");
}
