//! The `conduit` binary, run as a user would: `query` and `demo` against the real pinned CLI and
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! the test kit's FakeModel, exit codes, output formats.

use std::process::{Command, Output};

use claude_conduit_testkit::{Block, CliEnv, FakeModel, Turn};

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
    // The banner's box: every line as wide as the others.
    let boxed: Vec<usize> = stderr
        .lines()
        .filter(|l| l.starts_with(['┌', '│', '└']))
        .map(|l| l.chars().count())
        .collect();
    assert!(boxed.len() >= 4, "{stderr}");
    assert!(boxed.iter().all(|w| *w == boxed[0]), "{boxed:?}\n{stderr}");
    // The cost is the fake model's, and the demo says so.
    assert!(stderr.contains("nothing was charged"), "{stderr}");
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

/// `query` with `stdin` piped in (the `--ask` answers).
fn query_with_stdin(env: &CliEnv, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
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
    cmd.envs(env.envs())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run conduit");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for conduit")
}

/// A model that asks Bash to run `command`, then says "Done.".
fn bash_then_done(command: &str) -> FakeModel {
    start(vec![
        Turn::tool_use(
            "Bash",
            serde_json::json!({"command": command, "description": "scripted"}),
        ),
        Turn::text("Done."),
    ])
}

/// The text of the tool result the CLI sent back to the model for the scripted call.
fn tool_result_text(model: &FakeModel) -> String {
    model
        .message_requests()
        .iter()
        .flat_map(|r| {
            r.tool_results()
                .into_iter()
                .map(|b| b["content"].to_string())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_exit_0(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn query_deny_rule_denies_the_call_and_the_turn_goes_on() {
    let model = bash_then_done("touch marker");
    let env = real_cli_env(&model);
    let out = query(&env, &["--deny", "Bash(touch *)", "make a marker"]);
    let (stdout, stderr) = assert_exit_0(&out);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[tool] Bash ") && l.contains("touch marker")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "Done."), "{stdout}");
    assert!(!env.cwd().join("marker").exists(), "the call was denied");
    assert!(stderr.contains("Bash(touch *)"), "{stderr}");
    let result = tool_result_text(&model);
    assert!(
        result.contains("Bash(touch *)"),
        "the model is told: {result}"
    );
}

#[test]
fn query_deny_rule_also_stops_calls_the_cli_would_allow_by_itself() {
    // `--allowed-tools Bash` lets the CLI run any command without asking; the deny rule still
    // applies (through a PreToolUse hook).
    let model = bash_then_done("touch marker");
    let env = real_cli_env(&model);
    let out = query(
        &env,
        &["--allowed-tools", "Bash", "--deny", "Bash(touch *)", "go"],
    );
    assert_exit_0(&out);
    assert!(!env.cwd().join("marker").exists());
    assert!(tool_result_text(&model).contains("Bash(touch *)"));
}

#[test]
fn query_allow_rule_allows_the_call() {
    let model = bash_then_done("touch marker");
    let env = real_cli_env(&model);
    let out = query(&env, &["--allow", "Bash(touch *)", "make a marker"]);
    let (stdout, _) = assert_exit_0(&out);
    assert!(env.cwd().join("marker").exists(), "{stdout}");
}

#[test]
fn query_with_rules_denies_what_no_rule_allows() {
    let model = bash_then_done("touch marker");
    let env = real_cli_env(&model);
    let out = query(&env, &["--allow", "Bash(git *)", "make a marker"]);
    let (_, stderr) = assert_exit_0(&out);
    assert!(!env.cwd().join("marker").exists());
    assert!(stderr.contains("--allow 'Bash(touch *)'"), "{stderr}");
}

#[test]
fn query_read_only_denies_a_writing_command() {
    let model = bash_then_done("touch marker");
    let env = real_cli_env(&model);
    let out = query(&env, &["--read-only", "make a marker"]);
    let (_, stderr) = assert_exit_0(&out);
    assert!(!env.cwd().join("marker").exists(), "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(tool_result_text(&model).contains("read-only"));
}

#[test]
fn query_show_hooks_prints_the_events_on_stderr() {
    let model = bash_then_done("echo hi");
    let env = real_cli_env(&model);
    let out = query(&env, &["--allowed-tools", "Bash", "--show-hooks", "say hi"]);
    let (stdout, stderr) = assert_exit_0(&out);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[hook] PreToolUse Bash {") && l.contains("echo hi")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[hook] PostToolUse Bash")),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("[hook] Stop")),
        "{stderr}"
    );
    assert!(
        !stdout.contains("[hook]"),
        "hook lines go to stderr: {stdout}"
    );
}

#[test]
fn query_ask_reads_the_answer_from_piped_stdin() {
    let model = bash_then_done("touch marker");
    let env = real_cli_env(&model);
    let out = query_with_stdin(&env, &["--ask", "make a marker"], "y\n");
    let (_, stderr) = assert_exit_0(&out);
    assert!(
        stderr.contains("Allow? [y]es / [N]o / [a]lways"),
        "{stderr}"
    );
    assert!(
        stderr.contains("touch marker"),
        "the input is shown: {stderr}"
    );
    assert!(env.cwd().join("marker").exists(), "{stderr}");

    let model = bash_then_done("touch marker2");
    let env = real_cli_env(&model);
    let out = query_with_stdin(&env, &["--ask", "make a marker"], "n\n");
    assert_exit_0(&out);
    assert!(!env.cwd().join("marker2").exists());
    assert!(tool_result_text(&model).contains("denied"));
}

#[test]
fn query_permission_flags_usage_errors_exit_2() {
    let out = conduit()
        .args(["query", "--deny", "Bash(rm *", "hi"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unbalanced parenthesis"), "{stderr}");

    let out = conduit()
        .args(["query", "--read-only", "--allow", "Write", "hi"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));

    let out = conduit()
        .args([
            "query",
            "--read-only",
            "--permission-mode",
            "bypassPermissions",
            "hi",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_explains_the_permission_and_hook_flags() {
    let out = conduit().args(["query", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--allow", "--deny", "--read-only", "--ask", "--show-hooks"] {
        assert!(help.contains(flag), "missing {flag} in help");
    }
    assert!(help.contains("/dev/tty"), "{help}");
}

#[test]
fn query_not_logged_in_says_so_once_and_sums_up_how_to_fix_it() {
    let model = start(vec![Turn::text("unreachable: no credentials")]);
    let mut env = real_cli_env(&model);
    env.remove_var("ANTHROPIC_API_KEY");
    let out = query(&env, &["hello"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    let about_login = all
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("log"))
        .count();
    assert!(
        about_login <= 2,
        "login is mentioned {about_login} times:\n{all}"
    );
    assert!(!all.contains("(success)"), "{all}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary
            .starts_with("-- error: not logged in: set ANTHROPIC_API_KEY or run claude /login · "),
        "{all}"
    );
    assert!(
        model.message_requests().is_empty(),
        "the model was not called"
    );
}

#[test]
fn query_separates_consecutive_assistant_texts() {
    for partial in [false, true] {
        let model = start(vec![Turn::blocks(vec![
            Block::text("First part."),
            Block::text("Second part."),
        ])]);
        let env = real_cli_env(&model);
        let args: &[&str] = if partial {
            &["--include-partial", "two texts"]
        } else {
            &["two texts"]
        };
        let out = query(&env, args);
        let (stdout, _) = assert_exit_0(&out);
        assert!(
            stdout.contains("First part.\n\nSecond part.\n"),
            "partial {partial}: {stdout:?}"
        );
    }
}

#[test]
fn query_cli_that_is_not_executable_says_so() {
    let out = conduit()
        .args(["query", "--cli", "/etc/passwd", "hi"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot run /etc/passwd: it is not executable"),
        "{stderr}"
    );
    assert!(!stderr.contains("not found"), "{stderr}");
}

#[test]
fn query_without_a_cli_offers_install_cli_and_lists_each_place_once() {
    let home = tempfile::tempdir().unwrap();
    let out = conduit()
        .args(["query", "hi"])
        .env_remove("CONDUIT_CLAUDE_CLI")
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("PATH", "/usr/bin:/bin:/usr/bin:/usr/local/bin")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("conduit install-cli"), "{stderr}");
    assert!(!stderr.contains("scripts/install-cli.sh"), "{stderr}");
    let places: Vec<&str> = stderr
        .split("looked in: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .expect("the searched places")
        .split(", ")
        .collect();
    let unique: std::collections::HashSet<&&str> = places.iter().collect();
    assert_eq!(unique.len(), places.len(), "{places:?}");
    assert!(places.contains(&"/usr/local/bin/claude"), "{places:?}");
}

#[test]
fn numeric_arguments_are_checked_with_their_range() {
    for (args, expected) in [
        (
            vec!["query", "--max-turns", "-1", "hi"],
            "expected a whole number from 1 to",
        ),
        (
            vec!["query", "--max-turns", "0", "hi"],
            "expected a whole number from 1 to",
        ),
        (
            vec!["bench", "pingpong", "--turns", "0"],
            "expected a whole number from 1 to 10000000",
        ),
        (
            vec!["bench", "firehose", "--messages", "0"],
            "expected a whole number from 1 to",
        ),
        (
            vec!["bench", "startup", "--rounds", "0"],
            "expected a whole number from 1 to 1000",
        ),
    ] {
        let out = conduit().args(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("-- -1"), "{args:?}: {stderr}");
    }
}

#[test]
fn top_level_help_names_every_command_and_the_exit_codes() {
    let out = conduit().arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for word in [
        "query",
        "demo",
        "install-cli",
        "serve",
        "bench",
        "completions",
        "man",
        "gRPC",
        "Exit codes:",
        "--log-level",
        "RUST_LOG",
        "CONDUIT_LOG",
    ] {
        assert!(help.contains(word), "missing {word}: {help}");
    }
    assert!(!help.contains("later"), "{help}");
    assert!(!help.contains("mock-claude"), "{help}");
}

#[test]
fn completions_and_man_page() {
    for (shell, marker) in [
        ("bash", "_conduit()"),
        ("zsh", "#compdef conduit"),
        ("fish", "complete -c conduit"),
    ] {
        let out = conduit()
            .args(["completions", shell])
            .output()
            .expect("run");
        let script = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("install-cli"),
            "{shell}: subcommands are completed"
        );
    }
    let out = conduit()
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = conduit().arg("man").output().expect("run");
    let page = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(page.contains(".TH conduit"), "{page}");
    assert!(page.contains("install\\-cli"), "{page}");
}

/// `conduit install-cli` with a stand-in `npm` on PATH that "installs" a claude reporting the
/// pinned version: where it goes, the size, the binary's path on stdout; a second run finds it.
#[test]
fn install_cli_says_where_and_how_big() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let version = claude_conduit_testkit::PINNED_CLI_VERSION;
    let npm = bin.join("npm");
    std::fs::write(
        &npm,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = --version ]; then echo 10.0.0; exit 0; fi\n\
             [ \"$1\" = install ] && [ \"$2\" = --prefix ] || exit 9\n\
             mkdir -p \"$3/node_modules/.bin\"\n\
             printf '#!/bin/sh\\necho \"{version} (Claude Code)\"\\n' > \"$3/node_modules/.bin/claude\"\n\
             chmod +x \"$3/node_modules/.bin/claude\"\n\
             head -c 2000000 /dev/zero > \"$3/node_modules/payload\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&npm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = scratch.path().join("cache");
    let run = || {
        conduit()
            .arg("install-cli")
            .env_remove("CONDUIT_CLAUDE_CLI")
            .env("XDG_CACHE_HOME", &cache)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .expect("run")
    };
    let dir = cache.join("claude-conduit/cli").join(version);
    let expected_bin = dir.join("node_modules/.bin/claude");
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), expected_bin.display().to_string());
    assert!(
        stderr.contains(&format!("in {}", dir.display())),
        "{stderr}"
    );
    assert!(stderr.contains("running npm install"), "{stderr}");
    assert!(
        stderr.contains("installed claude") && stderr.contains("(2.0 MB)"),
        "{stderr}"
    );
    let again = run();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("already installed"), "{stderr}");
    assert!(!stderr.contains("running npm install"), "{stderr}");
}
