//! The `conduit` binary, run as a user would: `query` and `demo` against the real pinned CLI and
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! the test kit's FakeModel, exit codes, output formats.

use std::process::{Command, Output};

use claude_conduit_testkit::{CliEnv, FakeModel, Turn};

fn conduit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
}

fn real_cli_env(model: &FakeModel) -> CliEnv {
    let cli = claude_conduit_testkit::ensure_pinned_cli().expect("pinned CLI");
    model.cli_env_with(cli).expect("env")
}

fn query(env: &CliEnv, args: &[&str]) -> Output {
    let mut cmd = conduit();
    cmd.arg("query")
        .arg("--cli")
        .arg(env.cli_path())
        .arg("--cwd")
        .arg(env.cwd());
    cmd.args(args);
    for k in env.vars_to_remove() {
        cmd.env_remove(k);
    }
    cmd.envs(env.envs());
    cmd.output().expect("run conduit")
}

fn start(turns: Vec<Turn>) -> FakeModel {
    FakeModel::builder()
        .turns(turns)
        .start_blocking()
        .expect("fake model")
}

#[test]
fn query_text_output_streams_the_answer_and_a_summary_and_exits_0() {
    let model = start(vec![
        Turn::tool_use(
            "Bash",
            serde_json::json!({"command": "echo hi > f.txt", "description": "d"}),
        ),
        Turn::text("All done."),
    ]);
    let env = real_cli_env(&model);
    let out = query(&env, &["--allowed-tools", "Bash", "make a file"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[tool] Bash ") && l.contains("echo hi")),
        "{stdout}"
    );
    assert!(lines.contains(&"All done."), "{stdout}");
    let summary = lines.last().copied().unwrap_or_default();
    assert!(
        summary.starts_with("-- ok · 2 turn(s) · cost $"),
        "{summary}"
    );
}

#[test]
fn query_json_output_is_every_non_control_frame_in_order() {
    let model = start(vec![Turn::text("json please")]);
    let env = real_cli_env(&model);
    let out = query(&env, &["--output", "json", "--include-partial", "hi"]);
    assert_eq!(out.status.code(), Some(0));
    let frames: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"system"));
    assert_eq!(types.last(), Some(&"result"));
    assert!(types.contains(&"stream_event"), "{types:?}");
    assert!(types.contains(&"assistant"));
    assert!(!types.iter().any(|t| t.starts_with("control")), "{types:?}");
}

#[test]
fn query_exit_codes_error_result_usage_and_missing_cli() {
    let model = start(vec![Turn::unauthorized().times(3)]);
    let env = real_cli_env(&model);
    let out = query(&env, &["hello"]);
    assert_eq!(out.status.code(), Some(1), "an is_error result exits 1");

    let out = query(&env, &["--permission-mode", "notAMode", "hello"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad permission mode is a usage error"
    );

    let out = conduit()
        .args(["query", "--cli", "/nonexistent/claude", "hi"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/claude"));

    let out = conduit().args(["query"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "missing prompt");
}

#[test]
fn demo_runs_offline_says_so_and_exits_0() {
    // Make sure the demo does not find real credentials.
    let out = conduit()
        .arg("demo")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("run demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("OFFLINE") && stderr.contains("SCRIPTED"),
        "{stderr}"
    );
    assert!(stdout.contains("[tool] Bash"), "{stdout}");
    assert!(stderr.contains("the tool really ran"), "{stderr}");
}

#[test]
fn help_explains_the_flags() {
    let out = conduit().args(["query", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--cli",
        "--output",
        "--model",
        "--permission-mode",
        "--system-prompt",
        "--max-turns",
        "--cwd",
        "--allowed-tools",
        "--disallowed-tools",
        "--include-partial",
    ] {
        assert!(help.contains(flag), "missing {flag} in help");
    }
}
