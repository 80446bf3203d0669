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
