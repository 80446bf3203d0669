//! The callback suite: permission callbacks, hooks, in-process MCP tools and structured output,
//! end to end with the REAL pinned `claude` CLI against the test kit's FakeModel, on any
//! [`Backend`].
//!
//! Every test asserts behaviour and order (what ran, what the model saw in its next request, in
//! which order frames came), never timing. Deadlines only turn a hang into a failure. Each test
//! is a `pub async fn(&dyn Backend)`; [`callback_tests!`](crate::callback_tests) makes them
//! `#[tokio::test]`s of a test file.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Backend, RealCli, collect, types};
use claude_conduit::hooks::{HookEvent, HookInput, HookMatcher, HookOutput};
use claude_conduit::mcp::{SdkMcpServer, SdkTool, ToolError, ToolOutput};
use claude_conduit::message::ResultMessage;
use claude_conduit::permission::{PermissionDecision, PermissionRequest};
use claude_conduit::schemars;
use claude_conduit::{Client, Error, Message, query};
use claude_conduit_testkit::Turn;
use claude_conduit_testkit::fake_model::LoggedRequest;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;

const T: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A Bash tool_use input.
fn bash(command: &str) -> Value {
    json!({"command": command, "description": "conduit callback test"})
}

/// The (single) result of a turn; panics with the frame types when there is none.
fn result_of(items: &[Result<Message, Error>]) -> ResultMessage {
    assert!(items.iter().all(Result::is_ok), "{:?}", types(items));
    items
        .iter()
        .flatten()
        .find_map(|m| m.as_result().cloned())
        .unwrap_or_else(|| panic!("no result in {:?}", types(items)))
}

/// Ids of the tool_use blocks the assistant sent, in order.
fn tool_use_ids(items: &[Result<Message, Error>]) -> Vec<String> {
    items
        .iter()
        .flatten()
        .filter_map(|m| m.as_assistant())
        .flat_map(|a| a.tool_uses().map(|t| t.id.clone()).collect::<Vec<_>>())
        .collect()
}

/// The assistant text of a turn.
fn assistant_text(items: &[Result<Message, Error>]) -> String {
    items
        .iter()
        .flatten()
        .filter_map(|m| m.as_assistant().map(|a| a.text()))
        .collect()
}

/// The raw `tool_result` block answering `tool_use_id` in a model request.
fn tool_result_block(req: &LoggedRequest, tool_use_id: &str) -> Option<Value> {
    req.messages()
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == tool_use_id)
        .cloned()
}

/// The whole `messages` array of a request as JSON text, for "does the model see X" checks.
fn messages_text(req: &LoggedRequest) -> String {
    serde_json::to_string(req.messages()).unwrap_or_default()
}

/// Position of the first frame matching `pred`.
fn position(items: &[Result<Message, Error>], pred: impl Fn(&Message) -> bool) -> Option<usize> {
    items.iter().position(|i| i.as_ref().is_ok_and(&pred))
}

/// A callback that never answers: it says when it was entered, and whether its future was
/// dropped (cancelled) or ever completed.
#[derive(Clone, Default)]
struct Parked {
    entered: Arc<Notify>,
    dropped: Arc<AtomicBool>,
    completed: Arc<AtomicBool>,
}

/// Sets its flag when dropped: proves a callback future was dropped (cancelled).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Parked {
    /// The callback's body: park forever (answering `never` if it ever woke up).
    async fn park<T>(self, never: T) -> T {
        let _guard = SetOnDrop(self.dropped.clone());
        self.entered.notify_one();
        std::future::pending::<()>().await;
        self.completed.store(true, Ordering::SeqCst);
        never
    }

    /// Sends `prompt` on `client`, waits until the callback parks, interrupts the turn and
    /// returns its frames: the turn ends with `error_during_execution`.
    async fn interrupt_turn(&self, client: &Client, prompt: &str) -> Vec<Result<Message, Error>> {
        client.send(prompt).await.expect("send");
        let mut stream = Box::pin(client.receive_response());
        let consumer = tokio::spawn(async move {
            let mut items = Vec::new();
            while let Some(item) = stream.next().await {
                items.push(item);
            }
            items
        });
        tokio::time::timeout(T, self.entered.notified())
            .await
            .expect("the callback was called");
        assert!(
            !self.dropped.load(Ordering::SeqCst),
            "parked, not dropped yet"
        );
        client
            .interrupt()
            .await
            .expect("the interrupt succeeds while a callback is pending");
        let items = tokio::time::timeout(T, consumer)
            .await
            .expect("turn ended")
            .expect("join");
        let result = result_of(&items);
        assert!(result.is_error, "{result:?}");
        assert_eq!(result.subtype, "error_during_execution", "{result:?}");
        items
    }

    /// The CLI withdrew the request (control_cancel_request): the callback future was dropped
    /// while the session is still alive, and it never completed. Then the session goes on: the
    /// next prompt gets the model's next answer, `after the interrupt`.
    async fn dropped_and_the_session_goes_on(&self, client: Client) {
        let dropped = self.dropped.clone();
        eventually("the pending callback future is dropped", || {
            dropped.load(Ordering::SeqCst)
        })
        .await;
        assert!(!self.completed.load(Ordering::SeqCst));
        client.send("are you there?").await.expect("send");
        let next = collect(client.receive_response(), T).await;
        assert!(result_of(&next).is_success());
        assert_eq!(assistant_text(&next), "after the interrupt");
        client.disconnect().await.expect("disconnect");
    }
}

/// Waits (bounded) until `done()` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A permission callback that records every request and answers with `decide`.
fn recording(
    log: Arc<Mutex<Vec<PermissionRequest>>>,
    decide: impl Fn(&PermissionRequest) -> PermissionDecision + Send + Sync + 'static,
) -> impl Fn(PermissionRequest) -> futures::future::Ready<PermissionDecision> + Send + Sync + 'static
{
    move |req: PermissionRequest| {
        let decision = decide(&req);
        log.lock().unwrap().push(req);
        futures::future::ready(decision)
    }
}

// ---------------------------------------------------------------------------------------------
// Permission callback
// ---------------------------------------------------------------------------------------------

pub async fn permission_allow_runs_the_tool_and_its_result_reaches_the_model(
    backend: &dyn Backend,
) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch allowed.txt && echo ran-allowed")),
            Turn::text("The file is there."),
        ],
    )
    .await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let options = h
        .options()
        .can_use_tool(recording(asked.clone(), |_| PermissionDecision::allow()))
        .build();
    let items = collect(query("make the file", options), T).await;
    let result = result_of(&items);
    assert!(result.is_success(), "{result:?}");
    assert!(result.permission_denials.is_empty());

    // The callback was asked exactly once, about this very call.
    let ids = tool_use_ids(&items);
    assert_eq!(ids.len(), 1);
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].tool_name, "Bash");
    assert_eq!(
        asked[0].input_str("command"),
        Some("touch allowed.txt && echo ran-allowed")
    );
    assert_eq!(asked[0].tool_use_id.as_deref(), Some(ids[0].as_str()));

    // The tool ran, and its output reached the model's next request.
    assert!(h.env.cwd().join("allowed.txt").exists());
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 2);
    let block = tool_result_block(&reqs[1], &ids[0]).expect("tool_result in the next request");
    assert_ne!(block["is_error"], true, "{block}");
    assert!(
        reqs[1]
            .tool_result_text(&ids[0])
            .unwrap_or_default()
            .contains("ran-allowed")
    );

    // Order: tool_use, then its tool_result, then the final text, then the result (last).
    let tool_use = position(&items, |m| {
        m.as_assistant().is_some_and(|a| a.tool_uses().count() > 0)
    });
    let tool_result = position(&items, |m| m.as_user().is_some_and(|u| u.is_tool_result()));
    let final_text = position(&items, |m| {
        m.as_assistant()
            .is_some_and(|a| a.text() == "The file is there.")
    });
    let t = types(&items);
    assert!(
        tool_use.is_some() && tool_use < tool_result && tool_result < final_text,
        "order: {t:?}"
    );
    assert_eq!(t.last().map(String::as_str), Some("result/success"));
}

pub async fn permission_allow_with_modified_input_runs_the_rewritten_command(
    backend: &dyn Backend,
) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch original.txt && echo original")),
            Turn::text("done"),
        ],
    )
    .await;
    let rewrite = |req: &PermissionRequest| {
        let mut input = req.input.clone();
        input["command"] = json!("touch rewritten.txt && echo rewritten");
        PermissionDecision::allow_with_input(input)
    };
    let asked = Arc::new(Mutex::new(Vec::new()));
    let options = h
        .options()
        .can_use_tool(recording(asked.clone(), rewrite))
        .build();
    let items = collect(query("make the file", options), T).await;
    assert!(result_of(&items).is_success());
    assert_eq!(asked.lock().unwrap().len(), 1);

    // What ran is the callback's command, not the model's.
    assert!(h.env.cwd().join("rewritten.txt").exists());
    assert!(!h.env.cwd().join("original.txt").exists());
    let id = tool_use_ids(&items).remove(0);
    let reqs = h.model.message_requests();
    let text = reqs[1].tool_result_text(&id).unwrap_or_default();
    assert!(
        text.contains("rewritten") && !text.contains("original"),
        "{text}"
    );
}

pub async fn permission_deny_reaches_the_model_as_an_error_and_is_listed_in_the_result(
    backend: &dyn Backend,
) {
    const WHY: &str = "conduit test policy forbids touching files";
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch denied.txt && echo hi")),
            Turn::text("Understood, I will not."),
        ],
    )
    .await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let options = h
        .options()
        .can_use_tool(recording(asked.clone(), |_| PermissionDecision::deny(WHY)))
        .build();
    let items = collect(query("make the file", options), T).await;
    let result = result_of(&items);
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(!h.env.cwd().join("denied.txt").exists());

    // The model's next request carries the denial as an error tool_result.
    let id = tool_use_ids(&items).remove(0);
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 2, "the turn goes on after a plain deny");
    let block = tool_result_block(&reqs[1], &id).expect("tool_result");
    assert_eq!(block["is_error"], true, "{block}");
    assert!(
        reqs[1]
            .tool_result_text(&id)
            .unwrap_or_default()
            .contains(WHY),
        "{block}"
    );
    // So does the user frame the SDK sees.
    let seen = items
        .iter()
        .flatten()
        .filter_map(|m| m.as_user())
        .flat_map(|u| u.tool_results().cloned().collect::<Vec<_>>())
        .find(|r| r.tool_use_id == id)
        .expect("tool_result frame");
    assert!(seen.is_error);

    // The turn still succeeds and lists the denial.
    assert!(result.is_success(), "{result:?}");
    assert_eq!(result.permission_denials.len(), 1, "{result:?}");
    let denial = &result.permission_denials[0];
    assert_eq!(denial.tool_name, "Bash");
    assert_eq!(denial.tool_use_id, id);
    assert_eq!(denial.tool_input["command"], "touch denied.txt && echo hi");
}

pub async fn permission_deny_with_interrupt_ends_the_turn_and_the_session_goes_on(
    backend: &dyn Backend,
) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch never.txt && echo hi")),
            Turn::text("after the interrupt"),
        ],
    )
    .await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let options = h
        .options()
        .can_use_tool(recording(asked.clone(), |_| {
            PermissionDecision::deny_and_interrupt("stop right there")
        }))
        .build();
    let client = Client::connect(options).await.expect("connect");
    client.send("make the file").await.expect("send");
    let items = collect(client.receive_response(), T).await;
    let result = result_of(&items);
    assert_eq!(result.subtype, "error_during_execution", "{result:?}");
    assert!(result.is_error);
    assert_eq!(result.terminal_reason.as_deref(), Some("aborted_tools"));
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(!h.env.cwd().join("never.txt").exists());
    // The turn stopped: no model call after the denial.
    assert_eq!(h.model.message_requests().len(), 1);

    // The session answers the next prompt.
    client.send("still there?").await.expect("send again");
    let next = collect(client.receive_response(), T).await;
    assert!(result_of(&next).is_success());
    assert_eq!(assistant_text(&next), "after the interrupt");
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].last_user_text.as_deref(), Some("still there?"));
    client.disconnect().await.expect("disconnect");
}

/// Runs the same Bash `command` twice in one turn, answering every permission request with
/// `allow_always(request.suggestions)`; returns the requests asked and the harness.
async fn same_command_twice_with_allow_always(
    backend: &dyn Backend,
    command: &str,
) -> (Vec<PermissionRequest>, RealCli, Vec<Result<Message, Error>>) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash(command)),
            Turn::tool_use("Bash", bash(command)),
            Turn::text("ran it twice"),
        ],
    )
    .await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let options = h
        .options()
        .can_use_tool(recording(asked.clone(), |req| {
            PermissionDecision::allow_always(req.suggestions.clone())
        }))
        .build();
    let items = collect(query("run it twice", options), T).await;
    let result = result_of(&items);
    assert!(result.is_success(), "{result:?}");
    assert!(result.permission_denials.is_empty(), "{result:?}");
    // Both calls ran: each tool_result reached the model without error.
    let ids = tool_use_ids(&items);
    assert_eq!(ids.len(), 2);
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 3);
    for (req, id) in [(&reqs[1], &ids[0]), (&reqs[2], &ids[1])] {
        let block = tool_result_block(req, id).expect("tool_result");
        assert_ne!(block["is_error"], true, "{block}");
    }
    let asked = asked.lock().unwrap().clone();
    (asked, h, items)
}

pub async fn permission_allow_always_rule_is_not_asked_again_in_the_same_session(
    backend: &dyn Backend,
) {
    // A command that needs approval but writes no file: the CLI suggests exactly one update,
    // an allow rule for this command in localSettings.
    let command = "python3 -c 'print(6*7)'";
    let (asked, h, _items) = same_command_twice_with_allow_always(backend, command).await;
    assert!(!asked.is_empty());
    let kinds: Vec<&str> = asked[0].suggestions.iter().map(|u| u.kind()).collect();
    assert_eq!(kinds, ["addRules"], "{:?}", asked[0].suggestions);
    // The second, identical call was allowed by the rule: the callback ran once.
    assert_eq!(
        asked.len(),
        1,
        "asked again despite allow_always({:?})",
        asked[0].suggestions
    );
    // The update reached the CLI, which stored the rule where the suggestion said (even in
    // this untrusted scratch workspace).
    let local = std::fs::read_to_string(h.env.cwd().join(".claude/settings.local.json"))
        .unwrap_or_default();
    assert!(local.contains("Bash(python3 -c"), "{local}");
    let reqs = h.model.message_requests();
    let ids: Vec<String> = reqs[2]
        .messages()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .filter_map(|b| b["tool_use_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert_eq!(reqs[2].tool_result_text(id).as_deref(), Some("42"));
    }
}

pub async fn permission_allow_always_for_a_file_write_is_not_asked_again_in_the_same_session(
    backend: &dyn Backend,
) {
    // A command that writes a file. CLI 2.1.330 suggests an addRules (localSettings), an
    // addDirectories (session) and a setMode acceptEdits (session). The rule alone does not
    // cover the file write (the CLI asks again, for `blocked_path`); the suggested mode switch
    // does. Echoing all suggestions back, as `allow_always(request.suggestions)` does, means
    // the second identical call is not asked.
    let command = "touch always.txt && echo hi";
    let (asked, h, items) = same_command_twice_with_allow_always(backend, command).await;
    assert!(!asked.is_empty());
    let kinds: Vec<&str> = asked[0].suggestions.iter().map(|u| u.kind()).collect();
    assert!(kinds.contains(&"addRules"), "{kinds:?}");
    assert_eq!(
        asked.len(),
        1,
        "asked again despite allow_always({:?})",
        asked[0].suggestions
    );
    assert!(h.env.cwd().join("always.txt").exists());
    // The mode switch the callback accepted shows up as a status frame, after the first tool
    // call and before its result.
    if kinds.contains(&"setMode") {
        let status = position(&items, |m| m.subtype() == Some("status"));
        let first_result = position(&items, |m| m.as_user().is_some_and(|u| u.is_tool_result()));
        assert!(
            status.is_some() && status < first_result,
            "{:?}",
            types(&items)
        );
    }
}

pub async fn interrupt_while_a_permission_callback_is_pending_cancels_and_drops_it(
    backend: &dyn Backend,
) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch pending.txt && echo hi")),
            Turn::text("after the interrupt"),
        ],
    )
    .await;
    let parked = Parked::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (p, n) = (parked.clone(), calls.clone());
    let options = h
        .options()
        .can_use_tool(move |_req: PermissionRequest| {
            n.fetch_add(1, Ordering::SeqCst);
            p.clone().park(PermissionDecision::allow())
        })
        .build();
    let client = Client::connect(options).await.expect("connect");
    parked.interrupt_turn(&client, "make the file").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!h.env.cwd().join("pending.txt").exists());
    parked.dropped_and_the_session_goes_on(client).await;
}

// ---------------------------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------------------------

/// A permission callback that counts its calls and allows.
fn counting_allow(
    calls: Arc<AtomicUsize>,
) -> impl Fn(PermissionRequest) -> futures::future::Ready<PermissionDecision> + Send + Sync + 'static
{
    move |_req| {
        calls.fetch_add(1, Ordering::SeqCst);
        futures::future::ready(PermissionDecision::allow())
    }
}

pub async fn pre_tool_use_hook_deny_blocks_the_tool_and_the_model_sees_the_reason(
    backend: &dyn Backend,
) {
    const WHY: &str = "the PreToolUse hook refuses this command";
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch hooked.txt && echo hi")),
            Turn::text("ok"),
        ],
    )
    .await;
    let seen = Arc::new(Mutex::new(Vec::<(String, Value, Option<String>)>::new()));
    let permission_calls = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let options = h
        .options()
        .can_use_tool(counting_allow(permission_calls.clone()))
        .hook(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash").callback(move |input: HookInput, tool_use_id| {
                let s = s.clone();
                async move {
                    if let HookInput::PreToolUse(pre) = &input {
                        s.lock().unwrap().push((
                            pre.tool_name.clone(),
                            pre.tool_input.clone(),
                            tool_use_id,
                        ));
                    }
                    HookOutput::deny_tool(WHY)
                }
            }),
        )
        .build();
    let items = collect(query("make the file", options), T).await;
    assert!(result_of(&items).is_success());
    let id = tool_use_ids(&items).remove(0);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "Bash");
    assert_eq!(seen[0].1["command"], "touch hooked.txt && echo hi");
    assert_eq!(seen[0].2.as_deref(), Some(id.as_str()));
    // The tool did not run, can_use_tool was never asked, the model got the reason.
    assert!(!h.env.cwd().join("hooked.txt").exists());
    assert_eq!(permission_calls.load(Ordering::SeqCst), 0);
    let reqs = h.model.message_requests();
    let block = tool_result_block(&reqs[1], &id).expect("tool_result");
    assert_eq!(block["is_error"], true, "{block}");
    assert!(
        reqs[1]
            .tool_result_text(&id)
            .unwrap_or_default()
            .contains(WHY),
        "{block}"
    );
}

pub async fn pre_tool_use_hook_allow_skips_the_permission_callback(backend: &dyn Backend) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch hook-allowed.txt && echo ran")),
            Turn::text("ok"),
        ],
    )
    .await;
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let permission_calls = Arc::new(AtomicUsize::new(0));
    let hc = hook_calls.clone();
    let options = h
        .options()
        .can_use_tool(counting_allow(permission_calls.clone()))
        .hook(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash").callback(move |_input, _id| {
                hc.fetch_add(1, Ordering::SeqCst);
                async { HookOutput::allow_tool("fine by the hook") }
            }),
        )
        .build();
    let items = collect(query("make the file", options), T).await;
    assert!(result_of(&items).is_success());
    assert_eq!(hook_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        permission_calls.load(Ordering::SeqCst),
        0,
        "a PreToolUse allow must skip can_use_tool"
    );
    assert!(h.env.cwd().join("hook-allowed.txt").exists());
    let id = tool_use_ids(&items).remove(0);
    let reqs = h.model.message_requests();
    let block = tool_result_block(&reqs[1], &id).expect("tool_result");
    assert_ne!(block["is_error"], true, "{block}");
}

pub async fn post_tool_use_additional_context_reaches_the_next_model_request(
    backend: &dyn Backend,
) {
    const CONTEXT: &str = "POSTTOOL-CONTEXT-7f3a: the file was checked by a hook";
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch post.txt && echo post-output")),
            Turn::text("ok"),
        ],
    )
    .await;
    let seen = Arc::new(Mutex::new(Vec::<(String, Value, String)>::new()));
    let s = seen.clone();
    let options = h
        .options()
        .allowed_tools(["Bash"])
        .hook(
            HookEvent::PostToolUse,
            HookMatcher::new("Bash").callback(move |input: HookInput, _id| {
                let s = s.clone();
                async move {
                    if let HookInput::PostToolUse(post) = &input {
                        s.lock().unwrap().push((
                            post.tool_name.clone(),
                            post.tool_response.clone(),
                            post.tool_use_id.clone(),
                        ));
                    }
                    HookOutput::additional_context(HookEvent::PostToolUse, CONTEXT)
                }
            }),
        )
        .build();
    let items = collect(query("make the file", options), T).await;
    assert!(result_of(&items).is_success());
    let id = tool_use_ids(&items).remove(0);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "Bash");
    assert_eq!(seen[0].2, id);
    assert!(
        seen[0].1.to_string().contains("post-output"),
        "the hook sees the tool's output: {}",
        seen[0].1
    );
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        !messages_text(&reqs[0]).contains("POSTTOOL-CONTEXT-7f3a"),
        "not before the tool ran"
    );
    assert!(
        messages_text(&reqs[1]).contains("POSTTOOL-CONTEXT-7f3a"),
        "the model's next request carries the hook's context"
    );
}

pub async fn user_prompt_submit_hook_sees_the_prompt_and_its_context_reaches_the_model(
    backend: &dyn Backend,
) {
    const CONTEXT: &str = "UPS-CONTEXT-91c2: the user prefers short answers";
    let h = RealCli::start(backend, vec![Turn::text("short answer")]).await;
    let prompts = Arc::new(Mutex::new(Vec::<String>::new()));
    let p = prompts.clone();
    let options = h
        .options()
        .hook(
            HookEvent::UserPromptSubmit,
            HookMatcher::all().callback(move |input: HookInput, _id| {
                let p = p.clone();
                async move {
                    if let HookInput::UserPromptSubmit(u) = &input {
                        p.lock().unwrap().push(u.prompt.clone());
                    }
                    HookOutput::additional_context(HookEvent::UserPromptSubmit, CONTEXT)
                }
            }),
        )
        .build();
    let items = collect(query("what is the hook prompt 42?", options), T).await;
    assert!(result_of(&items).is_success());
    assert_eq!(
        prompts.lock().unwrap().clone(),
        vec!["what is the hook prompt 42?".to_owned()]
    );
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 1);
    assert!(
        messages_text(&reqs[0]).contains("UPS-CONTEXT-91c2")
            || reqs[0]
                .system_text()
                .unwrap_or_default()
                .contains("UPS-CONTEXT-91c2"),
        "the model request carries the hook's context"
    );
}

pub async fn stop_hook_fires_once_after_the_last_assistant_and_before_the_result(
    backend: &dyn Backend,
) {
    let h = RealCli::start(backend, vec![Turn::text("my final words")]).await;
    let fired = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let last_message = Arc::new(Mutex::new(None::<String>));
    let (f, r, c, l) = (
        fired.clone(),
        release.clone(),
        calls.clone(),
        last_message.clone(),
    );
    let options = h
        .options()
        .hook(
            HookEvent::Stop,
            HookMatcher::all().callback(move |input: HookInput, _id| {
                let (f, r, l) = (f.clone(), r.clone(), l.clone());
                c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if let HookInput::Stop(stop) = &input {
                        *l.lock().unwrap() = stop.last_assistant_message.clone();
                    }
                    f.notify_one();
                    // Hold the CLI here until the test has looked at the stream.
                    r.notified().await;
                    HookOutput::default()
                }
            }),
        )
        .build();
    let client = Client::connect(options).await.expect("connect");
    client.send("say your final words").await.expect("send");
    let mut stream = Box::pin(client.receive_response());

    tokio::time::timeout(T, fired.notified())
        .await
        .expect("the Stop hook fired");
    // While the hook is held, the last assistant message must already be out, and no result.
    let mut before = Vec::new();
    loop {
        let item = tokio::time::timeout(T, stream.next())
            .await
            .expect("the assistant message comes before the Stop hook's answer")
            .expect("stream open");
        let m = item.expect("no error");
        assert!(
            !m.is_result(),
            "a result arrived while the Stop hook was still running"
        );
        let done = m
            .as_assistant()
            .is_some_and(|a| a.text() == "my final words");
        before.push(m);
        if done {
            break;
        }
    }
    assert_eq!(
        last_message.lock().unwrap().as_deref(),
        Some("my final words")
    );
    // Give an early answer (a bug) the chance to show: whatever else arrives while the hook is
    // held must not be the result. (A correct run simply finds nothing here.)
    while let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        let m = item.expect("stream open").expect("no error");
        assert!(
            !m.is_result(),
            "a result arrived while the Stop hook was still running"
        );
        assert!(m.as_assistant().is_none(), "assistant after the Stop hook");
    }
    release.notify_one();
    let rest: Vec<_> = collect(stream, T).await;
    let result = result_of(&rest);
    assert!(result.is_success(), "{result:?}");
    assert!(
        rest.iter().flatten().all(|m| m.as_assistant().is_none()),
        "no assistant message after the Stop hook: {:?}",
        types(&rest)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "Stop fires once per turn");
    client.disconnect().await.expect("disconnect");
}

pub async fn a_hook_output_with_continue_false_stops_the_agent_after_the_tool(
    backend: &dyn Backend,
) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch stop.txt && echo hi")),
            Turn::text("never requested"),
        ],
    )
    .await;
    let options = h
        .options()
        .allowed_tools(["Bash"])
        .hook(
            HookEvent::PostToolUse,
            HookMatcher::new("Bash")
                .callback(|_input, _id| async { HookOutput::stop("budget reached in a hook") }),
        )
        .build();
    let items = collect(query("make the file", options), T).await;
    let result = result_of(&items);
    // The tool ran, then the agent stopped: no second model call.
    assert!(h.env.cwd().join("stop.txt").exists());
    assert_eq!(h.model.message_requests().len(), 1);
    assert_eq!(
        result.terminal_reason.as_deref(),
        Some("hook_stopped"),
        "{result:?}"
    );
    assert!(assistant_text(&items).is_empty(), "{:?}", types(&items));
}

pub async fn interrupt_while_a_pre_tool_use_hook_is_pending_cancels_and_drops_it(
    backend: &dyn Backend,
) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("Bash", bash("touch hook-pending.txt && echo hi")),
            Turn::text("after the interrupt"),
        ],
    )
    .await;
    let parked = Parked::default();
    let p = parked.clone();
    let options = h
        .options()
        .allowed_tools(["Bash"])
        .hook(
            HookEvent::PreToolUse,
            HookMatcher::new("Bash")
                .callback(move |_input, _id| p.clone().park(HookOutput::default())),
        )
        .build();
    let client = Client::connect(options).await.expect("connect");
    parked.interrupt_turn(&client, "make the file").await;
    assert!(!h.env.cwd().join("hook-pending.txt").exists());
    parked.dropped_and_the_session_goes_on(client).await;
}

// ---------------------------------------------------------------------------------------------
// In-process (SDK) MCP tools
// ---------------------------------------------------------------------------------------------

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[schemars(crate = "claude_conduit::schemars")]
struct AddArgs {
    /// First addend.
    a: i64,
    /// Second addend.
    b: i64,
}

fn calc_server(calls: Arc<Mutex<Vec<(i64, i64)>>>) -> SdkMcpServer {
    SdkMcpServer::builder("calc")
        .tool(SdkTool::typed::<AddArgs, _, _>(
            "add",
            "Add two integers",
            move |args| {
                let calls = calls.clone();
                async move {
                    calls.lock().unwrap().push((args.a, args.b));
                    Ok(ToolOutput::text(format!("{}", args.a + args.b)))
                }
            },
        ))
        .tool(SdkTool::new(
            "divide",
            "Divide a by b",
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
            |args: Value| async move {
                let b = args["b"].as_f64().unwrap_or(0.0);
                if b == 0.0 {
                    return Err(ToolError::new("division by zero is not allowed"));
                }
                Ok(ToolOutput::text(format!("{}", args["a"].as_f64().unwrap_or(0.0) / b)))
            },
        ))
        .tool(SdkTool::new(
            "explode",
            "Always panics",
            json!({"type": "object", "properties": {}}),
            |_args: Value| async move {
                if std::hint::black_box(true) {
                    panic!("kaboom from the explode tool");
                }
                Ok::<_, ToolError>(ToolOutput::text("unreachable"))
            },
        ))
        .build()
}

pub async fn sdk_mcp_typed_tool_is_called_by_the_model_end_to_end(backend: &dyn Backend) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("mcp__calc__add", json!({"a": 1, "b": 2})),
            Turn::text("The sum is 3."),
        ],
    )
    .await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let options = h
        .options()
        .sdk_mcp_server(calc_server(calls.clone()))
        .allowed_tools(["mcp__calc__add"])
        .build();
    let items = collect(query("add 1 and 2", options), T).await;
    let result = result_of(&items);
    assert!(result.is_success(), "{result:?}");

    // The CLI offered the tool to the model and listed the server as connected.
    // (CLI 2.1.330 defers MCP tools: they are named in the request's deferred-tool list, for
    // ToolSearch, rather than in `tools`; either way the model is told about it.)
    let reqs = h.model.message_requests();
    let offered = reqs[0].tool_names.iter().any(|n| n == "mcp__calc__add")
        || serde_json::to_string(&reqs[0].body)
            .unwrap_or_default()
            .contains("mcp__calc__add");
    assert!(offered, "{:?}", reqs[0].tool_names);
    let init = items
        .iter()
        .flatten()
        .find(|m| m.subtype() == Some("init"))
        .expect("init");
    let init = init.to_value().expect("init json");
    assert!(
        init["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "mcp__calc__add")),
        "{}",
        init["tools"]
    );
    assert!(
        init["mcp_servers"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["name"] == "calc" && s["status"] == "connected")),
        "{}",
        init["mcp_servers"]
    );

    // The Rust handler ran once with the model's arguments; "3" reached the model.
    assert_eq!(calls.lock().unwrap().clone(), vec![(1, 2)]);
    let id = tool_use_ids(&items).remove(0);
    assert_eq!(reqs.len(), 2);
    let block = tool_result_block(&reqs[1], &id).expect("tool_result");
    assert_ne!(block["is_error"], true, "{block}");
    assert_eq!(reqs[1].tool_result_text(&id).as_deref(), Some("3"));
}

/// Runs one MCP tool call that fails, then a second prompt; returns the tool_result block the
/// model saw and the texts of both turns.
async fn failing_mcp_tool_then_next_prompt(
    backend: &dyn Backend,
    tool: &str,
    args: Value,
) -> (Value, String, String) {
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use(format!("mcp__calc__{tool}"), args),
            Turn::text("that failed"),
            Turn::text("still alive"),
        ],
    )
    .await;
    // Allowed by a permission callback this time (it records what it was asked).
    let asked = Arc::new(Mutex::new(Vec::new()));
    let options = h
        .options()
        .sdk_mcp_server(calc_server(Arc::new(Mutex::new(Vec::new()))))
        .can_use_tool(recording(asked.clone(), |_| PermissionDecision::allow()))
        .build();
    let client = Client::connect(options).await.expect("connect");
    client.send(format!("call {tool}")).await.expect("send");
    let first = collect(client.receive_response(), T).await;
    assert!(result_of(&first).is_success(), "{:?}", types(&first));
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].tool_name, format!("mcp__calc__{tool}"));
    let id = tool_use_ids(&first).remove(0);
    let reqs = h.model.message_requests();
    let block = tool_result_block(&reqs[1], &id).expect("tool_result");
    let text = reqs[1].tool_result_text(&id).unwrap_or_default();
    assert!(!text.is_empty(), "{block}");

    client.send("are you still there?").await.expect("send");
    let second = collect(client.receive_response(), T).await;
    assert!(result_of(&second).is_success(), "{:?}", types(&second));
    client.disconnect().await.expect("disconnect");
    (block, assistant_text(&first), assistant_text(&second))
}

pub async fn sdk_mcp_tool_error_reaches_the_model_as_an_error_result(backend: &dyn Backend) {
    let (block, first, second) =
        failing_mcp_tool_then_next_prompt(backend, "divide", json!({"a": 1, "b": 0})).await;
    assert_eq!(block["is_error"], true, "{block}");
    assert!(
        block
            .to_string()
            .contains("division by zero is not allowed"),
        "{block}"
    );
    assert_eq!(first, "that failed");
    assert_eq!(second, "still alive");
}

pub async fn sdk_mcp_tool_panic_is_an_error_result_and_the_session_survives(backend: &dyn Backend) {
    let (block, first, second) =
        failing_mcp_tool_then_next_prompt(backend, "explode", json!({})).await;
    assert_eq!(block["is_error"], true, "{block}");
    assert!(
        block.to_string().contains("kaboom from the explode tool"),
        "{block}"
    );
    assert_eq!(first, "that failed");
    assert_eq!(second, "still alive");
}

// ---------------------------------------------------------------------------------------------
// Structured output
// ---------------------------------------------------------------------------------------------

pub async fn json_schema_structured_output_comes_back_in_the_result(backend: &dyn Backend) {
    let schema = json!({
        "type": "object",
        "properties": {
            "answer": {"type": "integer"},
            "reason": {"type": "string"}
        },
        "required": ["answer", "reason"]
    });
    let object = json!({"answer": 42, "reason": "six times seven"});
    // The CLI offers a `StructuredOutput` tool whose input schema is ours; the model calls it.
    let h = RealCli::start(
        backend,
        vec![
            Turn::tool_use("StructuredOutput", object.clone()),
            Turn::text("Done."),
        ],
    )
    .await;
    let items = collect(
        query(
            "answer in json",
            h.options().json_schema(schema.clone()).build(),
        ),
        T,
    )
    .await;
    let result = result_of(&items);
    assert!(result.is_success(), "{result:?}");
    assert_eq!(result.structured_output, Some(object));

    let reqs = h.model.message_requests();
    let offered = reqs[0]
        .body
        .as_ref()
        .and_then(|b| b["tools"].as_array())
        .and_then(|tools| tools.iter().find(|t| t["name"] == "StructuredOutput"))
        .cloned()
        .expect("the StructuredOutput tool is offered");
    assert_eq!(offered["input_schema"], schema);
}
