//! SDK behaviour against `mock-claude`, the fast stand-in CLI: floods, huge frames, bad frames,
//! crashes, stderr floods, grandchildren, backpressure.
//!
//! These live in the test kit's package because cargo gives the mock binary's path
//! (`CARGO_BIN_EXE_mock-claude`) only to tests of the package that builds it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use claude_conduit::options::OptionsBuilder;
use claude_conduit::{Client, Error, Message, MessageKind, Options, query};
use futures::StreamExt;

const T: Duration = Duration::from_secs(60);

fn mock(knobs: &[(&str, &str)]) -> OptionsBuilder {
    let mut b = Options::builder().cli_path(env!("CARGO_BIN_EXE_mock-claude"));
    for (k, v) in knobs {
        b = b.env(*k, *v);
    }
    b
}

async fn run(prompt: &str, o: Options) -> Vec<Result<Message, Error>> {
    tokio::time::timeout(T, query(prompt, o).collect::<Vec<_>>())
        .await
        .expect("query did not finish in time")
}

/// The counter in the last 12 hex digits of a mock uuid.
fn seq(m: &Message) -> u64 {
    let uuid = m.uuid().unwrap_or_default();
    u64::from_str_radix(&uuid[uuid.len().saturating_sub(12)..], 16).unwrap_or(0)
}

fn assistants(items: &[Result<Message, Error>]) -> Vec<&Message> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .filter(|m| m.as_assistant().is_some())
        .collect()
}

fn last_result(items: &[Result<Message, Error>]) -> Option<&Message> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .find(|m| m.is_result())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_2000_frames_to_a_slow_consumer_loses_nothing_and_keeps_order() {
    let o = mock(&[("MOCK_CLAUDE_MESSAGES", "2000")])
        .message_buffer(16)
        .build();
    let mut stream = query("go", o);
    let mut seqs = Vec::new();
    let mut results = 0;
    let consume = async {
        while let Some(item) = stream.next().await {
            let m = item.expect("no errors");
            if m.as_assistant().is_some() {
                seqs.push(seq(&m));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if m.is_result() {
                results += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), consume)
        .await
        .expect("in time");
    assert_eq!(seqs.len(), 2000);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "order broken");
    assert_eq!(results, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_is_answered_while_the_message_stream_is_not_drained() {
    // The mock hangs mid-turn; on interrupt it first writes 5000 frames, then the reply.
    let o = mock(&[
        ("MOCK_CLAUDE_HANG", "1"),
        ("MOCK_CLAUDE_INTERRUPT_FLOOD", "5000"),
    ])
    .message_buffer(8)
    .build();
    let client = Client::connect(o).await.expect("connect");
    client.send("go").await.expect("send");
    // Nobody reads messages while we wait for the reply.
    tokio::time::timeout(Duration::from_secs(30), client.interrupt())
        .await
        .expect("interrupt reply must not wait for the consumer")
        .expect("interrupt ok");
    let items: Vec<_> = tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
        .await
        .expect("drain");
    let a = assistants(&items);
    assert_eq!(a.len(), 1 + 5000, "first frame + flood");
    assert!(a.windows(2).all(|w| seq(w[1]) > seq(w[0])), "order kept");
    let r = last_result(&items)
        .and_then(Message::as_result)
        .expect("result");
    assert!(r.is_error);
    assert_eq!(r.subtype, "error_during_execution");
    client.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_floods_of_200k_and_2m_do_not_hang_and_reach_the_callback() {
    for bytes in ["200000", "2000000"] {
        let seen = Arc::new(Mutex::new(0usize));
        let counter = seen.clone();
        let o = mock(&[("MOCK_CLAUDE_STDERR_BYTES", bytes)])
            .on_stderr(move |line| *counter.lock().unwrap() += line.len() + 1)
            .build();
        let items = run("go", o).await;
        assert!(
            last_result(&items).is_some(),
            "turn finished with {bytes} bytes of stderr"
        );
        let got = *seen.lock().unwrap();
        assert!(
            got >= bytes.parse::<usize>().unwrap(),
            "callback saw {got} of {bytes} bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_10_mb_and_100_mb_arrive_whole() {
    for bytes in [10_000_000usize, 100_000_000] {
        let o = mock(&[("MOCK_CLAUDE_TEXT_BYTES", &bytes.to_string())]).build();
        let items = run("go", o).await;
        let a = assistants(&items);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].as_assistant().map(|x| x.text().len()), Some(bytes));
        assert!(last_result(&items).is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_limit_frame_is_a_typed_error_and_the_stream_goes_on() {
    let o = mock(&[
        ("MOCK_CLAUDE_MESSAGES", "3"),
        ("MOCK_CLAUDE_TEXT_BYTES", "5000"),
    ])
    .max_frame_bytes(4096)
    .build();
    let items = run("go", o).await;
    let too_large = items
        .iter()
        .filter(|i| matches!(i, Err(Error::FrameTooLarge { limit: 4096, size }) if *size > 5000))
        .count();
    assert_eq!(too_large, 3);
    assert!(
        last_result(&items).is_some(),
        "the turn still ends with its result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frame_types_mid_stream_are_kept_not_fatal() {
    let o = mock(&[
        ("MOCK_CLAUDE_MESSAGES", "3"),
        ("MOCK_CLAUDE_UNKNOWN_FRAMES", "1"),
    ])
    .build();
    let items = run("go", o).await;
    assert!(items.iter().all(Result::is_ok));
    let unknown = items
        .iter()
        .flatten()
        .find(|m| m.type_name() == "mock_unknown_type");
    let unknown = unknown.expect("unknown type delivered");
    assert!(matches!(unknown.kind(), MessageKind::Unknown { .. }));
    assert_eq!(
        unknown.to_value().ok().map(|v| v["x"].clone()),
        Some(serde_json::json!(1))
    );
    assert!(
        items
            .iter()
            .flatten()
            .any(|m| m.subtype() == Some("mock_unknown_subtype"))
    );
    assert_eq!(assistants(&items).len(), 3);
    assert!(last_result(&items).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_mid_stream_is_a_decode_error_and_the_stream_goes_on() {
    let o = mock(&[
        ("MOCK_CLAUDE_MESSAGES", "4"),
        ("MOCK_CLAUDE_MALFORMED", "1"),
    ])
    .build();
    let items = run("go", o).await;
    let pos = items
        .iter()
        .position(|i| matches!(i, Err(Error::Decode { excerpt, .. }) if excerpt.contains("this is not json")))
        .expect("a decode error with the excerpt");
    let before = assistants(&items[..pos]).len();
    let after = assistants(&items[pos..]).len();
    assert_eq!((before, after), (2, 2));
    assert!(last_result(&items).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_holding_the_pipes_neither_hangs_the_session_nor_survives_it() {
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let o = mock(&[("MOCK_CLAUDE_GRANDCHILD", "1")])
        .on_stderr(move |l| sink.lock().unwrap().push_str(l))
        .build();
    let items = run("go", o).await;
    assert!(last_result(&items).is_some());
    let text = stderr.lock().unwrap().clone();
    let pid: i32 = text
        .split("grandchild pid ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("grandchild pid on stderr");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
        // A zombie (reaped by init) still answers kill(0) briefly; check its state.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.contains(") Z") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "grandchild {pid} survived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_turn_is_process_exited_with_code_and_stderr_tail() {
    let o = mock(&[
        ("MOCK_CLAUDE_MESSAGES", "5"),
        ("MOCK_CLAUDE_CRASH_AFTER", "2"),
    ])
    .build();
    let items = run("go", o).await;
    assert_eq!(assistants(&items).len(), 2);
    match items.last() {
        Some(Err(Error::ProcessExited {
            code, stderr_tail, ..
        })) => {
            assert_eq!(*code, Some(3));
            assert!(stderr_tail.contains("simulated crash"), "{stderr_tail}");
        }
        other => panic!("expected ProcessExited, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_request_without_a_handler_is_denied_with_an_explanation() {
    let o = mock(&[("MOCK_CLAUDE_CAN_USE_TOOL", "1")]).build();
    let items = run("go", o).await;
    let text = assistants(&items)[0]
        .as_assistant()
        .map(|a| a.text())
        .unwrap_or_default();
    assert!(
        text.starts_with("permission: deny: No permission handler"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_turns_a_stalled_turn_into_a_typed_error() {
    let o = mock(&[("MOCK_CLAUDE_HANG", "1")])
        .idle_timeout(Duration::from_millis(300))
        .build();
    let items = run("go", o).await;
    assert!(
        matches!(items.last(), Some(Err(Error::Idle { .. }))),
        "{items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_client_ends_the_cli() {
    let o = mock(&[("MOCK_CLAUDE_HANG", "1")]).build();
    let client = Client::connect(o).await.expect("connect");
    let pid = client.pid().expect("pid") as i32;
    client.send("go").await.expect("send");
    drop(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CLI {pid} survived its client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_methods_work_during_a_live_receive_stream() {
    let o = mock(&[("MOCK_CLAUDE_MESSAGES", "2")]).build();
    let client = Client::connect(o).await.expect("connect");
    assert_eq!(client.cli_version(), Some("2.1.330"));
    let stream = client.receive_messages();
    client
        .set_permission_mode(claude_conduit::options::PermissionMode::AcceptEdits)
        .await
        .expect("set mode");
    client.set_model(Some("claude-x")).await.expect("set model");
    let err = client.control("bogus_subtype", serde_json::json!({})).await;
    assert!(
        matches!(err, Err(Error::ControlError { ref subtype, .. }) if subtype == "bogus_subtype")
    );
    client.send("go").await.expect("send");
    client.end_input().await.expect("end input");
    let items: Vec<_> = tokio::time::timeout(T, stream.collect::<Vec<_>>())
        .await
        .expect("end");
    let init = items
        .iter()
        .flatten()
        .find(|m| m.subtype() == Some("init"))
        .expect("init");
    let v = init.to_value().expect("json");
    assert_eq!(v["permissionMode"], "acceptEdits");
    assert_eq!(v["model"], "claude-x");
    assert_eq!(client.termination().and_then(|t| t.code), Some(0));
}
