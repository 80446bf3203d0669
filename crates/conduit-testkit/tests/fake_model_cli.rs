//! End to end: the REAL pinned `claude` CLI against the FakeModel.
//!
//! The first run installs the CLI with npm (see `ensure_pinned_cli`); later runs reuse it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use claude_conduit_testkit::cli::{CliEnv, PINNED_CLI_VERSION, ensure_pinned_cli};
use claude_conduit_testkit::fake_model::{Answer, FakeModel, RequestKind, Turn};
use serde_json::{Value, json};

const CLI_TIMEOUT: Duration = Duration::from_secs(120);

async fn pinned_cli() -> std::path::PathBuf {
    tokio::task::spawn_blocking(ensure_pinned_cli)
        .await
        .unwrap()
        .expect("the pinned claude CLI (npm install)")
}

/// Run `claude -p PROMPT --output-format stream-json --verbose EXTRA...`; returns the stdout lines.
async fn run_oneshot(fake: &FakeModel, prompt: &str, extra: &[&str]) -> (Vec<Value>, CliEnv) {
    let cli = pinned_cli().await;
    let env = fake.cli_env_with(cli).unwrap();
    let started = Instant::now();
    let out = tokio::time::timeout(
        CLI_TIMEOUT,
        env.tokio_command()
            .args(["-p", prompt, "--output-format", "stream-json", "--verbose"])
            .args(extra)
            .output(),
    )
    .await
    .expect("the CLI finished in time")
    .expect("the CLI ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "claude exited with {} after {:?}\n--- stderr ---\n{stderr}",
        out.status,
        started.elapsed()
    );
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("non-JSON stdout line {l:?}: {e}"))
        })
        .collect();
    assert!(
        out.status.success(),
        "claude failed: {}\nstdout:\n{stdout}",
        out.status
    );
    // The env (and its scratch cwd) stays alive for the caller's checks.
    (lines, env)
}

fn result_line(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("no result line in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_oneshot_text() {
    let fake = FakeModel::start([Turn::text("Hello from the fake model.")])
        .await
        .unwrap();
    let t0 = Instant::now();
    let (lines, _env) = run_oneshot(&fake, "say hi", &[]).await;
    eprintln!("one-shot text run took {:?}", t0.elapsed());

    assert_eq!(lines[0]["type"], "system");
    assert_eq!(lines[0]["subtype"], "init");
    let result = result_line(&lines);
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "Hello from the fake model.");
    let assistant = lines
        .iter()
        .find(|l| l["type"] == "assistant")
        .expect("assistant line");
    assert_eq!(
        assistant["message"]["content"][0],
        json!({"type": "text", "text": "Hello from the fake model."})
    );

    // Every request the CLI made hit a route the fake serves (2.1.197 also sent `HEAD /` first).
    let log = fake.requests();
    let routes: Vec<(String, String)> = log
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    eprintln!("requests: {routes:?}");
    assert!(
        log.iter().all(|r| r.kind != RequestKind::Other),
        "{routes:?}"
    );
    let msgs = fake.message_requests();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert!(m.path.starts_with("/v1/messages"));
    assert!(m.stream);
    assert_eq!(m.last_user_text.as_deref(), Some("say hi"));
    assert!(m.tool_names.iter().any(|t| t == "Bash"));
    assert_eq!(m.turn, Some(0));
    assert!(m.header("user-agent").unwrap_or("").contains("claude-cli/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_runs_a_tool_and_sends_the_result_back() {
    let fake = FakeModel::start([
        Turn::tool_use(
            "Bash",
            json!({"command": "echo hi > out.txt", "description": "Write hi to out.txt"}),
        ),
        Turn::text("Wrote out.txt."),
    ])
    .await
    .unwrap();
    let t0 = Instant::now();
    let (lines, env) = run_oneshot(&fake, "write the file", &["--allowedTools", "Bash"]).await;
    eprintln!("one-shot tool run took {:?}", t0.elapsed());

    let result = result_line(&lines);
    assert_eq!(result["is_error"], false, "{result:#}");
    assert_eq!(result["result"], "Wrote out.txt.");
    assert_eq!(
        std::fs::read_to_string(env.cwd().join("out.txt")).unwrap(),
        "hi\n"
    );

    let msgs = fake.message_requests();
    assert_eq!(msgs.len(), 2);
    let Answer::Message { tool_use_ids, .. } = &msgs[0].answer else {
        panic!("first answer {:?}", msgs[0].answer)
    };
    let results = msgs[1].tool_results();
    assert_eq!(results.len(), 1, "{:#?}", msgs[1].messages());
    assert_eq!(results[0]["tool_use_id"], tool_use_ids[0].as_str());
    assert_ne!(results[0]["is_error"], true, "{:#}", results[0]);
    assert_eq!(msgs[1].last_user_text.as_deref(), Some("write the file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_reports_an_injected_api_error() {
    let fake = FakeModel::start([Turn::overloaded()]).await.unwrap();
    let cli = pinned_cli().await;
    let env = fake.cli_env_with(cli).unwrap(); // CLAUDE_CODE_MAX_RETRIES=0: no retry
    let out = tokio::time::timeout(
        CLI_TIMEOUT,
        env.tokio_command()
            .args([
                "-p",
                "say hi",
                "--output-format",
                "stream-json",
                "--verbose",
            ])
            .output(),
    )
    .await
    .expect("the CLI finished in time")
    .expect("the CLI ran");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error result makes the CLI exit 1"
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let result = result_line(&lines);
    assert_eq!(result["is_error"], true);
    assert_eq!(result["api_error_status"], 529);
    assert!(
        result["result"].as_str().unwrap().contains("529"),
        "{result:#}"
    );
    assert_eq!(fake.message_requests().len(), 1);
}

#[test]
fn install_script_pins_the_same_version() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-cli.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("CLAUDE_CLI_VERSION="))
        .expect("CLAUDE_CLI_VERSION= line");
    assert_eq!(
        line.trim_start_matches("CLAUDE_CLI_VERSION=")
            .trim_matches('"'),
        PINNED_CLI_VERSION
    );
}
