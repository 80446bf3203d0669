//! End to end with the REAL pinned `claude` CLI against the test kit's FakeModel.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//!
//! No API key, no network: the CLI talks to a fake Messages API on 127.0.0.1.

mod common;

use std::time::Duration;

use claude_conduit::{Client, Error, query};
use claude_conduit_suite::{RealCli, Subprocess, collect, types};
use claude_conduit_testkit::Turn;
use futures::StreamExt;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_query_streams_init_assistant_result_and_ends() {
    let h = RealCli::start(&Subprocess, vec![Turn::text("Hello from the fake model.")]).await;
    let items = collect(query("say hi", h.options().build()), T).await;
    let t = types(&items);
    assert!(items.iter().all(Result::is_ok), "{t:?}");
    assert_eq!(t.first().map(String::as_str), Some("system/init"), "{t:?}");
    assert_eq!(
        t.last().map(String::as_str),
        Some("result/success"),
        "{t:?}"
    );
    let text: String = items
        .iter()
        .filter_map(|m| m.as_ref().ok()?.as_assistant().map(|a| a.text()))
        .collect();
    assert_eq!(text, "Hello from the fake model.");
    let result = items
        .last()
        .and_then(|m| m.as_ref().ok())
        .and_then(|m| m.as_result().cloned());
    let result = result.expect("result");
    assert!(!result.is_error);
    assert_eq!(result.result.as_deref(), Some("Hello from the fake model."));
    assert!(result.turn_cost_usd.is_some());
    // The CLI sent exactly one model request, carrying our prompt.
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].last_user_text.as_deref(), Some("say hi"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_turn_session_keeps_context_and_costs_per_turn() {
    let h = RealCli::start(
        &Subprocess,
        vec![Turn::text("one"), Turn::text("two"), Turn::text("three")],
    )
    .await;
    let client = Client::connect(h.options().build()).await.expect("connect");
    assert_eq!(client.cli_version(), Some("2.1.330"));
    assert!(client.pid().is_some());
    let mut texts = Vec::new();
    let mut cumulative = Vec::new();
    let mut per_turn = Vec::new();
    for prompt in ["first", "second", "third"] {
        client.send(prompt).await.expect("send");
        let items = collect(client.receive_response(), T).await;
        assert!(items.iter().all(Result::is_ok), "{:?}", types(&items));
        for m in items.iter().flatten() {
            if let Some(a) = m.as_assistant() {
                texts.push(a.text());
            }
            if let Some(r) = m.as_result() {
                cumulative.push(r.total_cost_usd.unwrap_or_default());
                per_turn.push(r.turn_cost_usd.unwrap_or_default());
            }
        }
    }
    assert_eq!(texts, vec!["one", "two", "three"]);
    // Context: the third model request carries the whole conversation.
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 3);
    let last = &reqs[2];
    let convo = serde_json::to_string(last.messages()).unwrap_or_default();
    assert!(convo.contains("first") && convo.contains("second") && convo.contains("third"));
    // total_cost_usd is cumulative; the per-turn figures add up to it.
    let sum: f64 = per_turn.iter().sum();
    assert!(
        (sum - cumulative[2]).abs() < 1e-9,
        "{per_turn:?} vs {cumulative:?}"
    );
    assert!(cumulative.windows(2).all(|w| w[1] >= w[0]));
    let end = client.disconnect().await.expect("disconnect");
    assert_eq!(end.and_then(|t| t.code), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bash_tool_call_runs_and_its_result_reaches_the_model() {
    let h = RealCli::start(&Subprocess, vec![
        Turn::tool_use(
            "Bash",
            json!({"command": "echo conduit-e2e > marker.txt && echo done", "description": "write a file"}),
        ),
        Turn::text("Wrote the file."),
    ])
    .await;
    let items = collect(
        query(
            "write the marker",
            h.options().allowed_tools(["Bash"]).build(),
        ),
        T,
    )
    .await;
    let t = types(&items);
    assert!(items.iter().all(Result::is_ok), "{t:?}");
    let tool_use = items
        .iter()
        .flatten()
        .filter_map(|m| m.as_assistant())
        .flat_map(|a| a.tool_uses().cloned().collect::<Vec<_>>())
        .next()
        .expect("a tool_use");
    assert_eq!(tool_use.name, "Bash");
    let tool_result = items
        .iter()
        .flatten()
        .filter_map(|m| m.as_user())
        .flat_map(|u| u.tool_results().cloned().collect::<Vec<_>>())
        .next()
        .expect("a tool_result");
    assert_eq!(tool_result.tool_use_id, tool_use.id);
    assert!(!tool_result.is_error);
    let written = std::fs::read_to_string(h.env.cwd().join("marker.txt")).unwrap_or_default();
    assert_eq!(written.trim(), "conduit-e2e");
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1]
            .tool_result_text(&tool_use.id)
            .unwrap_or_default()
            .contains("done")
    );
    assert_eq!(t.last().map(String::as_str), Some("result/success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_during_a_turn_ends_it_and_the_session_goes_on() {
    let h = RealCli::start(
        &Subprocess,
        vec![
            Turn::text("too slow to finish").delay(Duration::from_secs(60)),
            Turn::text("after the interrupt"),
        ],
    )
    .await;
    let client = Client::connect(h.options().build()).await.expect("connect");
    client.send("take your time").await.expect("send");
    let mut stream = Box::pin(client.receive_response());
    // Wait until the turn is running (system/init arrives right after the user line).
    let first = tokio::time::timeout(T, stream.next())
        .await
        .expect("init in time");
    assert!(
        matches!(first, Some(Ok(ref m)) if m.subtype() == Some("init")),
        "{first:?}"
    );
    h.model
        .wait_for_message_requests(1, T)
        .await
        .expect("the turn reached the model");
    client.interrupt().await.expect("interrupt reply");
    let rest = collect(stream, T).await;
    let result = rest
        .iter()
        .flatten()
        .find_map(|m| m.as_result().cloned())
        .expect("the interrupted turn still ends with a result");
    assert!(result.is_error);
    assert_eq!(result.subtype, "error_during_execution");
    client
        .send("are you there?")
        .await
        .expect("send after interrupt");
    let items = collect(client.receive_response(), T).await;
    let text: String = items
        .iter()
        .flatten()
        .filter_map(|m| m.as_assistant().map(|a| a.text()))
        .collect();
    assert_eq!(text, "after the interrupt");
    client.disconnect().await.expect("disconnect");
}

#[allow(clippy::expect_used)]
async fn api_error_result(turn: Turn, status: u64) {
    let h = RealCli::start(&Subprocess, vec![turn]).await;
    let items = collect(query("hello", h.options().build()), T).await;
    assert!(items.iter().all(Result::is_ok), "{:?}", types(&items));
    let result = items
        .iter()
        .flatten()
        .find_map(|m| m.as_result().cloned())
        .expect("a result");
    assert!(result.is_error, "{result:?}");
    assert_eq!(result.api_error_status, Some(status));
    // The synthetic assistant message names the failure.
    let assistant_error = items
        .iter()
        .flatten()
        .filter_map(|m| m.as_assistant())
        .any(|a| a.is_error());
    assert!(assistant_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_529_surfaces_as_an_error_result_not_a_crash() {
    api_error_result(Turn::overloaded().times(5), 529).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_401_surfaces_as_an_error_result_not_a_crash() {
    api_error_result(Turn::unauthorized().times(5), 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_killed_mid_turn_is_process_exited_and_leaves_no_process_behind() {
    // The model starts a long Bash command (a grandchild of ours), then we kill the CLI.
    // (The CLI refuses long foreground `sleep` commands, so wait in python.)
    let marker = format!("time.sleep(47.{})", std::process::id());
    let h = RealCli::start(&Subprocess, vec![Turn::tool_use(
        "Bash",
        json!({"command": format!("python3 -c 'import time; {marker}'"), "description": "wait"}),
    )])
    .await;
    let client = Client::connect(h.options().allowed_tools(["Bash"]).build())
        .await
        .expect("connect");
    let pid = client.pid().expect("pid");
    client.send("run it").await.expect("send");
    let deadline = tokio::time::Instant::now() + T;
    while !common::process_with_cmdline(&marker) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Bash tool never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let items = collect(client.receive_messages(), T).await;
    match items.last() {
        Some(Err(Error::ProcessExited {
            signal,
            code,
            stderr_tail,
        })) => {
            assert_eq!(*signal, Some(9), "code {code:?}, stderr {stderr_tail}");
        }
        other => panic!(
            "expected ProcessExited last, got {other:?} in {:?}",
            types(&items)
        ),
    }
    // The CLI's own children (the Bash tool's shell and its sleep) are gone too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while common::process_with_cmdline(&marker) || common::group_alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pending and new control requests fail at once, typed.
    assert!(matches!(
        client.interrupt().await,
        Err(Error::ProcessExited { .. }) | Err(Error::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_typed_control_method_is_answered_by_the_real_cli() {
    let h = RealCli::start(&Subprocess, vec![Turn::text("ready")]).await;
    let client = Client::connect(h.options().build()).await.expect("connect");
    client.send("hello").await.expect("send");
    let _ = collect(client.receive_response(), T).await;

    let receipt = client.interrupt().await.expect("interrupt");
    assert!(receipt.still_queued.is_empty());
    client
        .set_max_thinking_tokens(Some(1024))
        .await
        .expect("thinking");
    client
        .set_permission_mode(claude_conduit::options::PermissionMode::Plan)
        .await
        .expect("mode");
    client
        .set_model(Some("claude-sonnet-4-5"))
        .await
        .expect("model");
    client.set_model(None).await.expect("model back to default");
    let status = client.mcp_status().await.expect("mcp status");
    assert!(status.servers.is_empty());
    let usage = client.get_context_usage().await.expect("context usage");
    assert!(usage.total_tokens > 0 && usage.max_tokens > 0, "{usage:?}");
    assert!(!usage.categories.is_empty());
    let rewind = client
        .rewind_files("00000000-0000-0000-0000-000000000000", true)
        .await
        .expect("rewind");
    assert!(
        !rewind.can_rewind && rewind.error.is_some(),
        "checkpointing is off: {rewind:?}"
    );
    let set = client
        .mcp_set_servers(json!({}))
        .await
        .expect("mcp_set_servers");
    assert!(set.added.is_empty());
    match client.mcp_reconnect("nope").await {
        Err(Error::ControlError {
            subtype, message, ..
        }) => {
            assert_eq!(subtype, "mcp_reconnect");
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("expected a typed refusal, got {other:?}"),
    }
    assert!(matches!(
        client.mcp_toggle("nope", false).await,
        Err(Error::ControlError { .. })
    ));
    client.stop_task("no-such-task").await.expect("stop_task");
    let models = client.list_models().await.expect("models");
    assert!(!models.is_empty());
    let version = client.get_binary_version().await.expect("version");
    assert_eq!(version.version, "2.1.330");
    assert!(
        client
            .get_session_cost()
            .await
            .expect("cost")
            .contains("cost")
    );
    assert!(client.get_usage().await.expect("usage").is_object());
    assert!(client.get_settings().await.expect("settings").is_object());
    client
        .apply_flag_settings(json!({}))
        .await
        .expect("apply settings");
    assert!(
        client
            .list_permission_rules()
            .await
            .expect("rules")
            .is_object()
    );
    assert!(client.get_hooks_listing().await.expect("hooks").is_object());
    assert!(client.reload_plugins().await.expect("plugins").is_object());
    assert!(client.reload_skills().await.expect("skills").is_object());
    client.rename_session("conduit test").await.expect("rename");
    assert!(
        !client
            .cancel_async_message("no-such-message")
            .await
            .expect("cancel")
    );
    assert!(
        client
            .file_suggestions("x")
            .await
            .expect("suggestions")
            .is_object()
    );
    let styles = client.reload_output_styles().await.expect("styles");
    assert!(styles.iter().any(|s| s == "default"), "{styles:?}");
    client.background_tasks().await.expect("background");
    assert!(matches!(
        client.get_task_output("no-such-task").await,
        Err(Error::ControlError { .. })
    ));
    // A subtype the pinned CLI does not support is a typed refusal.
    match client.control("set_color", json!({"color": "red"})).await {
        Err(Error::ControlError { message, .. }) => {
            assert!(message.contains("Unsupported"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // An unknown subtype is a typed error carrying the CLI's text.
    match client.control("bogus_subtype", json!({})).await {
        Err(Error::ControlError { message, .. }) => {
            assert!(message.contains("bogus_subtype"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    client.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_continues_a_previous_session() {
    let h = RealCli::start(
        &Subprocess,
        vec![Turn::text("first answer"), Turn::text("second answer")],
    )
    .await;
    let first = collect(query("remember the word pelican", h.options().build()), T).await;
    let session_id = first
        .iter()
        .flatten()
        .find_map(|m| m.as_result().and_then(|r| r.session_id.clone()))
        .expect("session id");
    let second = collect(
        query(
            "what was the word?",
            h.options().resume(session_id.clone()).build(),
        ),
        T,
    )
    .await;
    let resumed_id = second
        .iter()
        .flatten()
        .find_map(|m| m.as_result().and_then(|r| r.session_id.clone()));
    assert_eq!(resumed_id.as_deref(), Some(session_id.as_str()));
    // The CLI's own store lists the session, readable without a CLI.
    let store = claude_conduit::store::SessionStore::at(h.env.home().join(".claude"));
    let listed = store.list(h.env.cwd()).expect("list sessions");
    let info = listed
        .iter()
        .find(|s| s.session_id == session_id)
        .expect("the session is listed");
    assert_eq!(
        info.first_prompt.as_deref(),
        Some("remember the word pelican")
    );
    let stored = store.messages(h.env.cwd(), &session_id).expect("messages");
    assert!(stored.len() >= 4, "both turns stored: {}", stored.len());
    // The second process sent the first conversation to the model.
    let reqs = h.model.message_requests();
    let convo = serde_json::to_string(reqs[1].messages()).unwrap_or_default();
    assert!(
        convo.contains("pelican") && convo.contains("first answer"),
        "{convo}"
    );
}
