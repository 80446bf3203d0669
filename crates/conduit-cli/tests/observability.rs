//! Observability end to end, with real processes: `conduit query --via` (the SDK process) and
//! `conduit serve` (the gateway process) exporting OpenTelemetry spans to a real OTLP/HTTP
//! receiver on 127.0.0.1; one query is one trace across both, the CLI gets the session's
//! `TRACEPARENT`, and no span carries a token or API key. Also `serve --log-format json` and
//! `query --stats`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use claude_conduit_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use support::{CONDUIT, scratch, serve, text};

const TOKEN: &str = "sekrit-token-0123456789abcdef";
const API_KEY: &str = "sk-ant-api03-observability-secret-0123456789";

/// Make the gateway's mock CLI (`serve`'s `dir/mock-claude.sh`) record its trace and telemetry
/// variables in `dir/cli-env` before it runs `conduit mock-claude`.
fn record_cli_env(dir: &Path) -> PathBuf {
    let path = dir.join("mock-claude.sh");
    let log = dir.join("cli-env");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             echo \"TRACEPARENT=$TRACEPARENT\" >> '{log}'\n\
             echo \"OTEL_EXPORTER_OTLP_ENDPOINT=$OTEL_EXPORTER_OTLP_ENDPOINT\" >> '{log}'\n\
             echo \"CLAUDE_CODE_ENABLE_TELEMETRY=$CLAUDE_CODE_ENABLE_TELEMETRY\" >> '{log}'\n\
             MOCK_CLAUDE_MESSAGES=3 exec '{CONDUIT}' mock-claude \"$@\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn otel_env(receiver: &OtlpReceiver, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_SERVICE_NAME", service.into()),
        ("ANTHROPIC_API_KEY", API_KEY.into()),
    ]
}

fn query_via(dir: &Path, url: &str, env: &[(&'static str, String)]) -> Output {
    let mut cmd = Command::new(CONDUIT);
    cmd.args(["query", "--output", "json", "--via", url])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .arg("hello through the gateway")
        .env_remove("CONDUIT_TOKEN")
        .env_remove("RUST_LOG")
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run conduit query")
}

/// Wait (bounded) until `done` holds for the spans received.
fn spans_until(
    receiver: &OtlpReceiver,
    done: impl Fn(&[ReceivedSpan]) -> bool,
) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = receiver.spans();
        if done(&spans) || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_query_is_one_trace_from_the_sdk_process_through_the_gateway() {
    let dir = scratch("otel-trace");
    let receiver = OtlpReceiver::start().unwrap();
    let gw_env = otel_env(&receiver, "conduit-gateway");
    let gw_env: Vec<(&str, &str)> = gw_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = serve(&dir, &[], &gw_env);
    record_cli_env(&dir);
    let out = query_via(
        &dir,
        &format!("ws://{}", gw.http),
        &otel_env(&receiver, "conduit"),
    );
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{err}");
    // The gateway exports its session span when the session ends: stop it (SIGTERM flushes).
    let logs = gw.stop();
    let spans = spans_until(&receiver, |s| {
        s.iter()
            .any(|x| x.service == "conduit" && x.name == "conduit.query")
            && s.iter().filter(|x| x.service == "conduit-gateway").count() >= 3
    });
    let root = spans
        .iter()
        .find(|s| s.service == "conduit" && s.name == "conduit.query")
        .unwrap_or_else(|| panic!("no conduit.query span: {spans:#?}\n{logs}"));
    assert_eq!(root.parent_span_id, None, "the query is the root");
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let by_id = |id: &str| trace.iter().find(|s| s.span_id == id).copied();
    // Every gateway span of this trace hangs, parent by parent, off the SDK's root.
    let gateway: Vec<&&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.service == "conduit-gateway")
        .collect();
    assert!(gateway.len() >= 3, "create, session, attach: {trace:#?}");
    for g in &gateway {
        let mut at = **g;
        let mut hops = 0;
        while let Some(parent) = at.parent_span_id.as_deref() {
            at = by_id(parent)
                .unwrap_or_else(|| panic!("parent {parent} of {} missing: {trace:#?}", at.name));
            hops += 1;
            assert!(hops < 16);
        }
        assert_eq!(at.span_id, root.span_id, "{} reaches the root", g.name);
    }
    // The first gateway span's parent is a span of the SDK process (the hop over the wire).
    let create = gateway
        .iter()
        .find(|s| {
            s.attributes
                .iter()
                .any(|(_, v)| v == "gateway.create_session")
                || s.name == "gateway.create_session"
        })
        .unwrap_or_else(|| panic!("no create span: {gateway:#?}"));
    let parent = by_id(create.parent_span_id.as_deref().unwrap()).unwrap();
    assert_eq!(
        parent.service, "conduit",
        "parent in the SDK process: {parent:?}"
    );
    let session = gateway
        .iter()
        .find(|s| s.name == "gateway.session")
        .unwrap();
    assert_eq!(
        session.parent_span_id.as_deref(),
        Some(create.span_id.as_str())
    );
    // The CLI got the session's trace (and, with cli_telemetry off, none of the OTEL_* variables).
    let cli_env = std::fs::read_to_string(dir.join("cli-env")).unwrap();
    assert!(
        cli_env.contains(&format!("TRACEPARENT=00-{}-", root.trace_id)),
        "{cli_env}"
    );
    assert!(
        cli_env.contains("OTEL_EXPORTER_OTLP_ENDPOINT=\n"),
        "{cli_env}"
    );
    assert!(
        cli_env.contains("CLAUDE_CODE_ENABLE_TELEMETRY=\n"),
        "{cli_env}"
    );
    // No secret in any span, name or attribute.
    for s in &spans {
        let all = format!("{s:?}");
        assert!(
            !all.contains(TOKEN) && !all.contains(API_KEY),
            "secret in {s:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_telemetry_passes_the_otel_variables_to_sessions() {
    let dir = scratch("otel-cli-telemetry");
    let receiver = OtlpReceiver::start().unwrap();
    let gw_env = otel_env(&receiver, "conduit-gateway");
    let gw_env: Vec<(&str, &str)> = gw_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = serve(&dir, &["--cli-telemetry"], &gw_env);
    record_cli_env(&dir);
    let out = query_via(&dir, &format!("ws://{}", gw.http), &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    drop(gw);
    let cli_env = std::fs::read_to_string(dir.join("cli-env")).unwrap();
    assert!(
        cli_env.contains(&format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT={}\n",
            receiver.endpoint()
        )),
        "{cli_env}"
    );
    assert!(
        cli_env.contains("CLAUDE_CODE_ENABLE_TELEMETRY=1\n"),
        "{cli_env}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_log_format_json_writes_one_object_per_line_with_the_session_figures() {
    let dir = scratch("log-json");
    let gw = serve(
        &dir,
        &["--log-format", "json"],
        &[("ANTHROPIC_API_KEY", API_KEY)],
    );
    let out = query_via(&dir, &format!("ws://{}", gw.http), &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let logs = gw.stop();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let created = lines
        .iter()
        .find(|l| l["fields"]["message"] == "session created");
    assert!(created.is_some(), "{logs}");
    let ended = lines
        .iter()
        .find(|l| l["fields"]["message"] == "session ended")
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(ended["fields"]["turns"], 1, "{ended}");
    assert!(
        ended["fields"]["frames_out"].as_u64().unwrap() >= 5,
        "{ended}"
    );
    assert!(!logs.contains(TOKEN) && !logs.contains(API_KEY));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn query_stats_prints_the_sessions_figures() {
    let dir = scratch("query-stats");
    let mock = support::mock_script(&dir);
    let out = Command::new(CONDUIT)
        .args(["query", "--stats", "--cli"])
        .arg(&mock)
        .arg("hello")
        .current_dir(&dir)
        .output()
        .unwrap();
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{err}");
    let stats = err
        .split("-- stats --")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    let row = |k: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("no {k} row: {stats}"))
            .to_owned()
    };
    assert!(row("turns").ends_with(" 1"), "{stats}");
    assert!(row("turn latency").contains("p95"), "{stats}");
    // initialize reply, init, 3 assistant frames, result: at least 6 frames in.
    let frames = row("frames in/out");
    let fin: f64 = frames.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(fin >= 6.0, "{frames}");
    assert!(row("cost").contains('$'));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// In this process: the SDK's spans (into a SpanStore), the relay driver's reconnect, the Redis
// worker's session span and metrics. One subscriber and one recorder for the whole binary.
// ---------------------------------------------------------------------------------------------

mod in_process {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use claude_conduit::hooks::{HookEvent, HookInput, HookMatcher, HookOutput};
    use claude_conduit::permission::{PermissionDecision, PermissionRequest};
    use claude_conduit::telemetry::otel::{Otel, SpanStore, StoredSpan};
    use claude_conduit::telemetry::{CollectorConfig, Telemetry};
    use claude_conduit::testkit::Turn;
    use claude_conduit::{Client, Message, Options};
    use claude_conduit_gateway::GatewayConfig;
    use claude_conduit_gateway::auth::TokenId;
    use futures::StreamExt;
    use serde_json::json;
    use tokio::sync::Notify;

    use super::{TOKEN, scratch};

    const T: Duration = Duration::from_secs(60);
    const PROMPT: &str = "secret-prompt-text: add the numbers and list the directory";
    const COMMAND: &str = "touch secret-tool-input-7f3a.txt";
    const REDIS_PASSWORD: &str = "redis-pass-0123456789abcdef";

    /// The spans of this process, exported to a store (no OTLP endpoint).
    fn store() -> &'static SpanStore {
        static OTEL: OnceLock<Otel> = OnceLock::new();
        OTEL.get_or_init(|| {
            use tracing_subscriber::prelude::*;
            let otel = Otel::store_only("conduit-test", 500).expect("otel");
            tracing_subscriber::registry()
                .with(otel.layer())
                .try_init()
                .expect("the only subscriber of this test binary");
            otel
        })
        .store()
    }

    /// This process's recorder (installed before any worker registers its handles).
    fn telemetry() -> &'static Telemetry {
        static T: OnceLock<&'static Telemetry> = OnceLock::new();
        T.get_or_init(|| {
            Telemetry::builder()
                .collector(CollectorConfig::default().process(false))
                .prometheus()
                .install()
                .expect("the only recorder of this test binary")
        })
    }

    fn attr<'a>(s: &'a StoredSpan, k: &str) -> Option<&'a str> {
        s.attributes
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// Wait (bounded) until the store holds a span matching `f`; then the whole trace of it.
    async fn trace_of(f: impl Fn(&StoredSpan) -> bool) -> (StoredSpan, Vec<StoredSpan>) {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if let Some(s) = store().spans().into_iter().find(|s| f(s)) {
                let trace = store().trace(&s.trace_id);
                return (s, trace);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such span: {:#?}",
                store().spans()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The one span of `trace` named `name` whose attributes include `with`.
    fn one<'a>(trace: &'a [StoredSpan], name: &str, with: &[(&str, &str)]) -> &'a StoredSpan {
        let found: Vec<&StoredSpan> = trace
            .iter()
            .filter(|s| s.name == name && with.iter().all(|(k, v)| attr(s, k) == Some(*v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {with:?} in {trace:#?}");
        found[0]
    }

    fn parent_of<'a>(trace: &'a [StoredSpan], s: &StoredSpan) -> &'a StoredSpan {
        let id = s
            .parent_span_id
            .as_deref()
            .unwrap_or_else(|| panic!("{s:?} is a root"));
        trace
            .iter()
            .find(|p| p.span_id == id)
            .unwrap_or_else(|| panic!("parent of {} missing: {trace:#?}", s.name))
    }

    /// No span held carries any of `secrets` (names, attribute keys and values).
    fn assert_no_secret(secrets: &[&str]) {
        for s in store().spans() {
            let all = format!("{s:?}");
            for secret in secrets {
                assert!(!all.contains(secret), "{secret} in {s:?}");
            }
        }
    }

    fn calc() -> claude_conduit::mcp::SdkMcpServer {
        use claude_conduit::mcp::{SdkMcpServer, SdkTool, ToolOutput};
        SdkMcpServer::builder("calc")
            .tool(SdkTool::new(
                "add",
                "Add two numbers",
                json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
                |args: serde_json::Value| async move {
                    let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
                    Ok(ToolOutput::text(format!("{sum}")))
                },
            ))
            .build()
    }

    /// The real CLI with FakeModel: one Bash call answered by a permission callback (during
    /// which the SDK sends a control request), one SDK MCP tool call with a PostToolUse hook,
    /// then the answer. The spans: session > turn > {control request, can_use_tool, MCP tool
    /// call, hook}, with the initialize request under the session; fields and outcomes; no
    /// prompt, tool input or key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_yields_session_turn_control_and_callback_spans() {
        let store = store();
        let model = claude_conduit::testkit::FakeModel::builder()
            .turns(vec![
                Turn::tool_use("Bash", json!({"command": COMMAND})),
                Turn::tool_use("mcp__calc__add", json!({"a": 1, "b": 2})),
                Turn::text("3, and the directory is listed."),
            ])
            .start()
            .await
            .expect("fake model");
        let cli = tokio::task::spawn_blocking(claude_conduit::testkit::ensure_pinned_cli)
            .await
            .unwrap()
            .expect("the pinned claude CLI (scripts/install-cli.sh)");
        let env = model.cli_env_with(cli).expect("cli env");
        // The callback parks until the test has sent a control request of its own mid-turn.
        let (asked, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (a, r) = (asked.clone(), release.clone());
        let options = Options::builder()
            .testkit(&env)
            .initialize_timeout(T)
            .sdk_mcp_server(calc())
            .allowed_tools(["mcp__calc__add"])
            .hook(
                HookEvent::PostToolUse,
                HookMatcher::new("mcp__calc__add")
                    .callback(|_input: HookInput, _id| async { HookOutput::default() }),
            )
            .can_use_tool(move |_req: PermissionRequest| {
                let (a, r) = (a.clone(), r.clone());
                async move {
                    a.notify_one();
                    r.notified().await;
                    PermissionDecision::allow()
                }
            })
            .build();
        let client = tokio::time::timeout(T, Client::connect(options))
            .await
            .expect("in time")
            .expect("connect");
        client.send(PROMPT).await.expect("send");
        let mut replies = client.receive_response();
        let mut items: Vec<Message> = Vec::new();
        // While the permission callback is parked (the turn cannot end), a control request.
        let side = async {
            asked.notified().await;
            let status = client.mcp_status().await;
            release.notify_one();
            status
        };
        let consume = async {
            while let Some(m) = replies.next().await {
                items.push(m.expect("no error"));
            }
        };
        let (status, ()) = tokio::time::timeout(T, async { tokio::join!(side, consume) })
            .await
            .expect("turn in time");
        status.expect("mcp_status mid-turn");
        drop(replies);
        let result = items.last().and_then(Message::as_result).expect("a result");
        assert!(!result.is_error, "{result:?}");
        let session_id = client.session_id().expect("session id").to_owned();
        client.disconnect().await.expect("disconnect");

        let (session, trace) = trace_of(|s| {
            s.name == "conduit.session" && attr(s, "session_id") == Some(session_id.as_str())
        })
        .await;
        assert_eq!(attr(&session, "wire"), Some("subprocess"));
        assert!(
            attr(&session, "cli_version").is_some_and(|v| !v.is_empty()),
            "{session:?}"
        );
        let connect = one(&trace, "conduit.connect", &[]);
        assert_eq!(
            connect.parent_span_id.as_deref(),
            Some(session.span_id.as_str())
        );
        let init = one(&trace, "conduit.control", &[("subtype", "initialize")]);
        assert_eq!(parent_of(&trace, init).span_id, session.span_id);
        assert_eq!(attr(init, "outcome"), Some("ok"));
        assert!(attr(init, "request_id").is_some_and(|id| id.starts_with("req_")));

        let turn = one(&trace, "conduit.turn", &[("turn", "1")]);
        assert_eq!(parent_of(&trace, turn).span_id, session.span_id);
        assert_eq!(attr(turn, "is_error"), Some("false"), "{turn:?}");
        assert_eq!(attr(turn, "subtype"), Some("success"));
        let model_turns: u64 = attr(turn, "num_turns").unwrap().parse().unwrap();
        assert_eq!(model_turns, result.num_turns);
        assert!(model_turns >= 3, "{turn:?}");

        let permission = one(&trace, "conduit.permission", &[("tool", "Bash")]);
        assert_eq!(parent_of(&trace, permission).span_id, turn.span_id);
        assert_eq!(attr(permission, "decision"), Some("allow"));
        assert_eq!(attr(permission, "outcome"), Some("ok"));
        let status = one(&trace, "conduit.control", &[("subtype", "mcp_status")]);
        assert_eq!(parent_of(&trace, status).span_id, turn.span_id);
        assert_eq!(attr(status, "outcome"), Some("ok"));
        let tool = one(
            &trace,
            "conduit.mcp_tool",
            &[("server", "calc"), ("tool", "add")],
        );
        assert_eq!(parent_of(&trace, tool).span_id, turn.span_id);
        assert_eq!(attr(tool, "is_error"), Some("false"));
        assert_eq!(attr(tool, "outcome"), Some("ok"));
        let hook = one(&trace, "conduit.hook", &[("event", "PostToolUse")]);
        assert_eq!(parent_of(&trace, hook).span_id, turn.span_id);
        assert_eq!(attr(hook, "outcome"), Some("ok"));
        assert!(attr(hook, "callback_id").is_some_and(|id| id.starts_with("hook_")));
        // The CLI's MCP handshake (initialize, tools/list) before the turn: under the session.
        let handshake: Vec<&StoredSpan> = trace
            .iter()
            .filter(|s| s.name == "conduit.mcp_message")
            .collect();
        assert!(!handshake.is_empty(), "{trace:#?}");
        // Nothing the user or the model said, no tool input, no key.
        let mut secrets = vec![PROMPT, "secret-prompt-text", COMMAND, "secret-tool-input"];
        let keys: Vec<(String, String)> = env.envs();
        secrets.extend(
            keys.iter()
                .filter(|(k, v)| (k.contains("KEY") || k.contains("TOKEN")) && v.len() >= 8)
                .map(|(_, v)| v.as_str()),
        );
        assert_no_secret(&secrets);
        assert!(store.trace_ids().len() <= 500);
    }

    /// A mock-claude script for an in-process gateway (its knobs in the script: the gateway
    /// gives CLIs an allowlisted environment).
    fn long_mock(dir: &std::path::Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("mock-long.sh");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nMOCK_CLAUDE_MESSAGES=300 MOCK_CLAUDE_DELAY_MS=2 exec '{}' mock-claude \"$@\"\n",
                super::CONDUIT
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn gateway_config(dir: &std::path::Path, cli: &std::path::Path) -> GatewayConfig {
        GatewayConfig::new()
            .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .token(TOKEN)
            .options(Options::builder().cli_path(cli).build())
            .close_grace(Duration::from_secs(2))
            .state_dir(dir.join("state"))
            .metrics(false)
    }

    /// The real gateway with mock-claude; the WebSocket connection is cut mid-turn (the
    /// gateway kicks the client): the relay driver's `conduit.transport.reconnect` span, its
    /// attempt's `conduit.transport.connect`, and the gateway's attach span under that attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_connection_yields_a_reconnect_span_in_the_sessions_trace() {
        store();
        let dir = scratch("otel-reconnect");
        let gateway = claude_conduit_gateway::Gateway::bind(gateway_config(&dir, &long_mock(&dir)))
            .await
            .expect("bind");
        let addr = gateway.local_addr();
        let manager = gateway.manager();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(gateway.run(async move {
            let _ = stopped.await;
        }));
        let options = Options::builder()
            .transport(format!("ws://{addr}"), TOKEN)
            .build();
        let client = tokio::time::timeout(T, Client::connect(options))
            .await
            .expect("in time")
            .expect("connect");
        let id = manager.list(TokenId(0)).remove(0).id;
        client.send("go").await.expect("send");
        let mut replies = client.receive_response();
        let mut assistants = 0;
        let consume = async {
            while let Some(m) = replies.next().await {
                let m = m.expect("no error across the cut");
                if m.as_assistant().is_some() {
                    assistants += 1;
                    if assistants == 30 {
                        assert!(manager.kick(&id));
                    }
                }
            }
        };
        tokio::time::timeout(T, consume).await.expect("in time");
        drop(replies);
        assert_eq!(assistants, 300);
        assert!(client.metrics().snapshot().reconnects >= 1);
        client.disconnect().await.expect("disconnect");
        let _ = stop.send(());
        let _ = tokio::time::timeout(T, served).await;

        let (reconnect, trace) = trace_of(|s| {
            s.name == "conduit.transport.reconnect" && attr(s, "outcome") == Some("ok")
        })
        .await;
        assert_eq!(attr(&reconnect, "wire"), Some("ws"));
        let attempts: u32 = attr(&reconnect, "attempts").unwrap().parse().unwrap();
        assert!(attempts >= 1);
        assert!(
            attr(&reconnect, "resume_after")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 30
        );
        let session = parent_of(&trace, &reconnect);
        assert_eq!(session.name, "conduit.session");
        assert_eq!(attr(session, "wire"), Some("ws"));
        // The first connection and the successful attempt, each a connect span with its number.
        let first = one(&trace, "conduit.transport.connect", &[("attempt", "0")]);
        assert_eq!(parent_of(&trace, first).span_id, session.span_id);
        assert_eq!(attr(first, "outcome"), Some("ok"));
        let attempt = attempts.to_string();
        let again = one(
            &trace,
            "conduit.transport.connect",
            &[("attempt", attempt.as_str())],
        );
        assert_eq!(
            again.parent_span_id.as_deref(),
            Some(reconnect.span_id.as_str())
        );
        assert_eq!(attr(again, "outcome"), Some("ok"));
        // The gateway (this process too) attached the resumed connection in the same trace. Its
        // attach span ends when the gateway has seen that connection close, which may come
        // after the client's spans were exported: wait for it.
        let (attach, _) = trace_of(|s| {
            (s.name == "gateway.request" && attr(s, "otel.name") == Some("gateway.attach")
                || s.name == "gateway.attach")
                && s.parent_span_id.as_deref() == Some(again.span_id.as_str())
        })
        .await;
        assert_eq!(attach.trace_id, session.trace_id);
        assert_no_secret(&[TOKEN]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A session through Redis to an in-process worker: the worker's `worker.session` span
    /// joins the client's trace (the session request carries its `traceparent`), the worker's
    /// metrics count it, and no span or metric carries the Redis password.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_through_redis_joins_the_trace_and_is_counted_by_its_worker() {
        use claude_conduit_gateway::scale::{RedisSettings, Worker, WorkerSettings};
        store();
        let telemetry = telemetry();
        let Ok(redis) = claude_conduit_testkit::RedisServer::builder()
            .password(REDIS_PASSWORD)
            .start()
        else {
            panic!("redis-server (scripts/test.sh installs it)");
        };
        let dir = scratch("otel-redis");
        let mock = super::support::mock_script(&dir);
        let worker = Worker::new(
            gateway_config(&dir, &mock),
            WorkerSettings {
                redis: RedisSettings::new(redis.url()).heartbeat(Duration::from_millis(1000)),
                name: "w-obs".into(),
                max_sessions: 4,
            },
        )
        .expect("worker");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        let options = Options::builder().transport_url(redis.url()).build();
        let client = tokio::time::timeout(T, Client::connect(options))
            .await
            .expect("in time")
            .expect("connect");
        client.send("hello").await.expect("send");
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .expect("in time")
                .into_iter()
                .map(|m| m.expect("no error"))
                .collect();
        assert!(items.last().and_then(Message::as_result).is_some());
        let sessions = |snap: &claude_conduit::telemetry::Snapshot| {
            snap.sum("conduit_worker_sessions", &[("worker", "w-obs")])
        };
        assert_eq!(
            sessions(&telemetry.collector().unwrap().snapshot()),
            Some(1.0)
        );
        client.disconnect().await.expect("disconnect");

        let (worker_span, trace) =
            trace_of(|s| s.name == "worker.session" && attr(s, "worker") == Some("w-obs")).await;
        assert_eq!(attr(&worker_span, "claimed"), Some("false"));
        assert_eq!(attr(&worker_span, "outcome"), Some("ended"));
        let session_key = attr(&worker_span, "session").unwrap().to_owned();
        assert!(!session_key.is_empty());
        // Its parent is in the SDK's part of the trace: the connect span that requested it.
        let parent = parent_of(&trace, &worker_span);
        assert_eq!(parent.name, "conduit.connect");
        let sdk_session = parent_of(&trace, parent);
        assert_eq!(sdk_session.name, "conduit.session");
        assert_eq!(attr(sdk_session, "wire"), Some("redis"));
        // The worker's session manager's span is the worker span's child.
        let gw = one(&trace, "gateway.session", &[]);
        assert_eq!(
            gw.parent_span_id.as_deref(),
            Some(worker_span.span_id.as_str())
        );

        // The worker's metrics: taken, frames added in batches; the gauge back to 0.
        let c = telemetry.collector().unwrap();
        let deadline = tokio::time::Instant::now() + T;
        while sessions(&c.snapshot()) != Some(0.0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gauge never back to 0"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let snap = c.snapshot();
        let w = [("worker", "w-obs")];
        assert_eq!(
            snap.sum("conduit_worker_sessions_taken_total", &w),
            Some(1.0)
        );
        assert_eq!(
            snap.sum("conduit_worker_sessions_claimed_total", &w)
                .unwrap_or(0.0),
            0.0
        );
        assert_eq!(
            snap.sum("conduit_worker_sessions_lost_total", &w)
                .unwrap_or(0.0),
            0.0
        );
        let batches = snap.sum("conduit_worker_xadd_batches_total", &w).unwrap();
        let frames = snap.sum("conduit_worker_xadd_frames_total", &w).unwrap();
        // initialize reply, init, 3 assistant messages, result: in at least one batch each way.
        assert!(
            batches >= 1.0 && frames >= 6.0 && frames >= batches,
            "{batches} {frames}"
        );
        // The exposition has them too, and neither it nor any span has the password.
        let text = telemetry.render_prometheus().unwrap();
        assert!(
            text.contains("conduit_worker_sessions_taken_total{worker=\"w-obs\"} 1"),
            "{text}"
        );
        assert!(!text.contains(REDIS_PASSWORD));
        assert!(!text.contains(&session_key), "a session id is a label");
        assert_no_secret(&[REDIS_PASSWORD]);
        let _ = stop.send(());
        let _ = tokio::time::timeout(T, running).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `GET /metrics` of a `conduit worker` process (`--metrics-listen`) with a raw HTTP/1.1
/// request: status and body.
fn get_metrics(addr: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Chunked or not: keep the lines that look like the exposition.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut text = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            text.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        text
    } else {
        body.to_owned()
    };
    (status, body)
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .reduce(|a, b| a + b)
}

/// `conduit worker --metrics-listen`: its own `/metrics` behind the bearer token (an outsider
/// gets 401 and nothing else), counting a session served through Redis (`query --via
/// redis://`); the exposition parses, carries the worker's name as its only worker label, and
/// no token, Redis password or session id.
#[test]
fn a_worker_serves_its_metrics_behind_the_token() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = scratch("worker-metrics");
    let password = "worker-redis-pass-0123456789";
    let redis = claude_conduit_testkit::RedisServer::builder()
        .password(password)
        .start()
        .expect("redis-server (scripts/test.sh installs it)");
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n")).unwrap();
    let mock = support::mock_script(&dir);
    let mut child = Command::new(CONDUIT)
        .args(["worker", "--redis", &redis.url(), "--name", "w-metrics"])
        .arg("--cli")
        .arg(&mock)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-interval-secs",
            "1",
        ])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .env_remove("RUST_LOG")
        .env_remove("CONDUIT_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn conduit worker");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address: {line}"))
        .to_owned();
    // An outsider: 401, no metric, counted nowhere visible to them.
    let (status, body) = get_metrics(&addr, None);
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("conduit_"));
    let (status, _) = get_metrics(&addr, Some("wrong-token-0123456789"));
    assert_eq!(status, 401);

    let out = Command::new(CONDUIT)
        .args(["query", "--via", &redis.url(), "hello through redis"])
        .env_remove("RUST_LOG")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    // The session ends on the worker shortly after the client: wait for the gauge.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (scrape, body) = loop {
        let (status, body) = get_metrics(&addr, Some(TOKEN));
        assert_eq!(status, 200, "{body}");
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("the exposition parses");
        let w = [("worker", "w-metrics")];
        if sample(&scrape, "conduit_worker_sessions_taken_total", &w) == Some(1.0)
            && sample(&scrape, "conduit_worker_sessions", &w) == Some(0.0)
        {
            break (scrape, body);
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let w = [("worker", "w-metrics")];
    assert!(sample(&scrape, "conduit_worker_xadd_batches_total", &w).unwrap() >= 1.0);
    assert!(sample(&scrape, "conduit_worker_xadd_frames_total", &w).unwrap() >= 6.0);
    assert_eq!(
        sample(&scrape, "conduit_worker_sessions_lost_total", &w).unwrap_or(0.0),
        0.0
    );
    // The worker's sessions are gateway sessions of its own manager.
    assert!(sample(&scrape, "conduit_gateway_sessions_created_total", &[]).unwrap() >= 1.0);
    // Only one worker label value; no secret.
    assert!(
        scrape
            .samples
            .iter()
            .filter_map(|s| s.labels.get("worker"))
            .all(|w| w == "w-metrics")
    );
    for secret in [TOKEN, password] {
        assert!(!body.contains(secret), "secret in the exposition");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
