//! Middleware over the in-process scripted CLI (the real CLI and a gateway are in
//! `tests/extend.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};

use super::*;
use crate::transport::memory::{ScriptedCli, assistant_text, system_init};
use crate::transport::{MemoryTransport, Termination};

fn scripted() -> QueryService {
    QueryService::with_transport(|| {
        let (t, cli) = MemoryTransport::pair(16);
        ScriptedCli::default().spawn(cli);
        t
    })
}

/// A transport whose CLI dies before answering `initialize` for the first `fail` connects.
fn failing_first(fail: usize, connects: Arc<AtomicUsize>) -> QueryService {
    QueryService::with_transport(move || {
        let (t, mut cli) = MemoryTransport::pair(16);
        if connects.fetch_add(1, Ordering::SeqCst) < fail {
            tokio::spawn(async move {
                // Read the initialize request, then exit without answering.
                let _ = cli.rx.recv().await;
                cli.finish(Termination {
                    code: Some(3),
                    ..Termination::default()
                });
            });
        } else {
            ScriptedCli::default().spawn(cli);
        }
        t
    })
}

struct Recorder {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl Interceptor for Recorder {
    fn before(&self, req: QueryRequest) -> Result<QueryRequest> {
        self.log
            .lock()
            .unwrap()
            .push(format!("before {}", self.name));
        Ok(req)
    }
    fn after(&self, message: Message) -> Message {
        if message.is_result() {
            self.log
                .lock()
                .unwrap()
                .push(format!("after {}", self.name));
        }
        message
    }
}

#[tokio::test]
async fn before_runs_outside_in_and_after_inside_out() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = |name| {
        InterceptLayer::new(Recorder {
            name,
            log: log.clone(),
        })
    };
    let svc = ServiceBuilder::new()
        .layer(layer("outer"))
        .layer(layer("middle"))
        .layer(layer("inner"))
        .service(scripted());
    let items: Vec<_> = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(items.iter().all(Result::is_ok));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "before outer",
            "before middle",
            "before inner",
            "after inner",
            "after middle",
            "after outer"
        ]
    );
}

struct Recover;
impl Interceptor for Recover {
    fn on_error(&self, error: Error) -> Result<Message> {
        match error {
            Error::ProcessExited { code: Some(3), .. } => Message::parse(bytes::Bytes::from_static(
                br#"{"type":"result","subtype":"success","is_error":false,"result":"from cache"}"#,
            )),
            other => Err(other),
        }
    }
}

#[tokio::test]
async fn on_error_recovers_a_start_failure_with_a_replacement() {
    let connects = Arc::new(AtomicUsize::new(0));
    let svc = InterceptLayer::new(Recover).layer(failing_first(1, connects.clone()));
    let items: Vec<_> = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    let result = items[0].as_ref().unwrap();
    assert_eq!(result.as_result().unwrap().text(), Some("from cache"));
    // Without the layer the start failure is the call's error.
    let err = failing_first(1, Arc::new(AtomicUsize::new(0)))
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ProcessExited { code: Some(3), .. }),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_repeats_a_start_failure_with_backoff_until_it_works() {
    let connects = Arc::new(AtomicUsize::new(0));
    let svc = RetryLayer::new(RetryPolicy::new(3)).layer(failing_first(2, connects.clone()));
    let items: Vec<_> = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(items.last().unwrap().as_ref().unwrap().is_result());
    assert_eq!(connects.load(Ordering::SeqCst), 3);
    // Out of retries: the last error comes out.
    let connects = Arc::new(AtomicUsize::new(0));
    let svc = RetryLayer::new(RetryPolicy::new(1)).layer(failing_first(5, connects.clone()));
    let err = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ProcessExited { .. }));
    assert_eq!(connects.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_never_repeats_a_query_that_failed_after_a_message_streamed() {
    let connects = Arc::new(AtomicUsize::new(0));
    let c = connects.clone();
    let dies_mid_turn = QueryService::with_transport(move || {
        c.fetch_add(1, Ordering::SeqCst);
        let (t, mut cli) = MemoryTransport::pair(16);
        tokio::spawn(async move {
            // Answer initialize, stream two messages of the turn, then die.
            while let Some(frame) = cli.recv_json().await {
                if frame["type"] == "control_request" {
                    let id = frame["request_id"].clone();
                    let _ = cli.send_json(&json!({"type":"control_response","response":{"subtype":"success","request_id":id,"response":{}}})).await;
                } else if frame["type"] == "user" {
                    let _ = cli.send_json(&system_init()).await;
                    let _ = cli.send_json(&assistant_text("half")).await;
                    cli.finish(Termination {
                        code: Some(1),
                        ..Termination::default()
                    });
                    return;
                }
            }
        });
        t
    });
    let svc = RetryLayer::new(RetryPolicy::new(5)).layer(dies_mid_turn);
    let items: Vec<_> = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(items.last(), Some(Err(Error::ProcessExited { .. }))),
        "{items:?}"
    );
    assert_eq!(connects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn timeout_wraps_the_stream_and_ends_it_with_an_error() {
    // The CLI streams its init, then never finishes the turn.
    let stalls = QueryService::with_transport(|| {
        let (t, cli) = MemoryTransport::pair(16);
        ScriptedCli::default()
            .on_user(|_, _| vec![system_init()])
            .spawn(cli);
        t
    });
    let svc = TimeoutLayer::new()
        .idle(Duration::from_millis(200))
        .layer(stalls.clone());
    let items: Vec<_> = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(items[1], Err(Error::Idle { .. })));
    let svc = TimeoutLayer::new()
        .total(Duration::from_millis(300))
        .layer(stalls);
    let items: Vec<_> = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(items.last(), Some(Err(Error::Timeout { .. }))),
        "{items:?}"
    );
    // A quick query is not affected.
    let svc = TimeoutLayer::new()
        .total(Duration::from_secs(60))
        .idle(Duration::from_secs(60))
        .layer(scripted());
    let items: Vec<_> = svc
        .oneshot(QueryRequest::new("hi", Options::default()))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(items.iter().all(Result::is_ok) && items.last().unwrap().as_ref().unwrap().is_result());
}

#[tokio::test]
async fn concurrency_limit_holds_the_slot_until_the_stream_ends() {
    let layer = ConcurrencyLimitLayer::new(1);
    let svc = layer.layer(scripted());
    let first = svc
        .clone()
        .oneshot(QueryRequest::new("one", Options::default()))
        .await
        .unwrap();
    // The second waits while the first stream is alive.
    let mut second = Box::pin(
        svc.clone()
            .oneshot(QueryRequest::new("two", Options::default())),
    );
    assert!(futures::poll!(second.as_mut()).is_pending());
    tokio::task::yield_now().await;
    assert!(futures::poll!(second.as_mut()).is_pending());
    let _ = first.collect::<Vec<_>>().await;
    let second: Vec<_> = second.await.unwrap().collect().await;
    assert!(second.last().unwrap().as_ref().unwrap().is_result());
}
