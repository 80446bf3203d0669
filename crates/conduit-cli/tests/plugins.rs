//! `conduit query --plugins`, `conduit serve --plugins` and `conduit plugins list|check|new`,
//! run as a user would, with the REAL pinned `claude` CLI and FakeModel: a Rhai plugin denies a
//! Bash `touch` (the file is not created; the model is told why), a coprocessor plugin (the
//! Python example) contributes an MCP tool the model calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use claude_conduit_testkit::{CliEnv, FakeModel, Turn};
use serde_json::json;

mod support;
use support::{CONDUIT, scratch, text};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/plugins");
const TOKEN: &str = "plugins-token-0123456789abcdef";

fn model(turns: Vec<Turn>) -> (FakeModel, CliEnv) {
    let model = FakeModel::builder()
        .turns(turns)
        .start_blocking()
        .expect("fake model");
    let cli = claude_conduit_testkit::ensure_pinned_cli().expect("pinned CLI");
    let env = model.cli_env_with(cli).expect("env");
    (model, env)
}

/// A plugin directory holding copies of the named examples.
fn plugins(dir: &Path, examples: &[&str]) -> PathBuf {
    let out = dir.join("plugins");
    for name in examples {
        let to = out.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(Path::new(EXAMPLES).join(name)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    out
}

fn touch(path: &Path) -> serde_json::Value {
    json!({"command": format!("touch '{}'", path.display()), "description": "make a file"})
}

/// Every tool_result text the model was sent, joined.
fn told(model: &FakeModel) -> String {
    let mut out = Vec::new();
    for r in model.message_requests() {
        for b in r
            .messages()
            .iter()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .filter(|b| b["type"] == "tool_result")
        {
            let id = b["tool_use_id"].as_str().unwrap_or_default();
            out.push(r.tool_result_text(id).unwrap_or_default());
        }
    }
    out.join("\n")
}

fn query(env: &CliEnv, args: &[&str]) -> Output {
    let mut cmd = Command::new(CONDUIT);
    cmd.arg("query")
        .arg("--cli")
        .arg(env.cli_path())
        .arg("--cwd")
        .arg(env.cwd())
        .args(args);
    for k in env.vars_to_remove() {
        cmd.env_remove(k);
    }
    cmd.envs(env.envs());
    cmd.output().expect("run conduit query")
}

/// `conduit query --plugins` with the example `plugin` while the query's own permission callback
/// allows Bash (only the plugin stands in the way): the model's `touch` must not run, and the
/// model must be told `reason`. Returns the plugin directory.
fn query_denies_the_touch(scratch_name: &str, plugin: &str, reason: &str) -> PathBuf {
    let dir = scratch(scratch_name);
    let target = dir.join("touched.txt");
    let (model, env) = model(vec![
        Turn::tool_use("Bash", touch(&target)),
        Turn::text("ok"),
    ]);
    let dir_arg = plugins(&dir, &[plugin]);
    let out = query(
        &env,
        &[
            "--plugins",
            dir_arg.to_str().unwrap(),
            "--allow",
            "Bash",
            "make it",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!target.exists(), "the plugin must stop the tool");
    assert!(told(&model).contains(reason), "{}", told(&model));
    dir_arg
}

#[test]
fn query_with_a_rhai_plugin_denies_the_touch_and_tells_the_model_why() {
    query_denies_the_touch("plugins-query-rhai", "no-touch", "no touching");
}

#[test]
fn query_with_a_coprocessor_plugin_gives_the_model_its_mcp_tool() {
    let dir = scratch("plugins-query-copro");
    let (model, env) = model(vec![
        Turn::tool_use(
            "mcp__word-count__count_words",
            json!({"text": "one two three four"}),
        ),
        Turn::text("counted"),
    ]);
    let dir_arg = plugins(&dir, &["word-count"]);
    let out = query(
        &env,
        &[
            "--plugins",
            dir_arg.to_str().unwrap(),
            "--allow",
            "mcp__word-count__count_words",
            "count",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(told(&model).contains("4 words"), "{}", told(&model));
}

#[test]
fn query_refuses_to_run_with_a_broken_plugin() {
    let dir = scratch("plugins-query-broken");
    let p = dir.join("plugins/bad");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("plugin.toml"),
        "name = \"bad\"\nversion = \"1.0.0\"\nruntime = \"rhai\"\nentry = \"main.rhai\"\nprority = 3\n",
    )
    .unwrap();
    let out = Command::new(CONDUIT)
        .args(["query", "--plugins"])
        .arg(dir.join("plugins"))
        .arg("hi")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad/plugin.toml:5: unknown field `prority`"),
        "{stderr}"
    );
}

/// A `--cli` for the gateway: the real CLI with the test's environment (the gateway passes its
/// CLIs an allowlisted environment only).
fn cli_wrapper(dir: &Path, env: &CliEnv) -> PathBuf {
    let mut script = String::from("#!/bin/sh\n");
    for k in env.vars_to_remove() {
        script.push_str(&format!("unset {k}\n"));
    }
    for (k, v) in env.envs() {
        script.push_str(&format!("export {k}='{v}'\n"));
    }
    script.push_str(&format!("exec '{}' \"$@\"\n", env.cli_path().display()));
    let path = dir.join("claude-env.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `conduit serve --plugins DIR` with the real CLI; its HTTP address.
fn serve(dir: &Path, env: &CliEnv, plugin_dir: &Path, config: Option<&str>) -> support::Serve {
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n")).unwrap();
    let mut cmd = Command::new(CONDUIT);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .arg("--cli")
        .arg(cli_wrapper(dir, env))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--plugins")
        .arg(plugin_dir)
        .env_remove("CONDUIT_TOKENS")
        .env_remove("RUST_LOG")
        .env_remove("CONDUIT_LOG")
        .stderr(std::process::Stdio::piped());
    if let Some(c) = config {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, c).unwrap();
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd.spawn().expect("spawn conduit serve");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = String::new();
    let mut line = String::new();
    // "plugins from …" then "listening on http://…".
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "conduit serve ended: {lines}");
        lines.push_str(&line);
        if line.contains("listening on") {
            break;
        }
    }
    assert!(lines.contains("plugins from"), "{lines}");
    let http = line
        .split("://")
        .nth(1)
        .and_then(|r| r.split([' ', ',', '(']).next())
        .unwrap()
        .to_owned();
    support::Serve {
        child,
        stderr: Some(stderr),
        line: lines,
        http,
        grpc: None,
    }
}

fn query_via(dir: &Path, addr: &str, args: &[&str]) -> Output {
    Command::new(CONDUIT)
        .args(["query", "--via", &format!("ws://{addr}")])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .args(args)
        .env_remove("CONDUIT_TOKEN")
        .current_dir(dir)
        .output()
        .expect("run conduit query --via")
}

#[test]
fn serve_with_plugins_denies_for_a_remote_client_whose_own_hooks_still_run() {
    let dir = scratch("plugins-serve-rhai");
    let target = dir.join("touched.txt");
    let (model, env) = model(vec![
        Turn::tool_use("Bash", touch(&target)),
        Turn::text("ok"),
    ]);
    let gw = serve(&dir, &env, &plugins(&dir, &["no-touch"]), None);
    // The remote client allows Bash itself and has hooks of its own (--show-hooks).
    let out = query_via(
        &dir,
        &gw.http,
        &["--allow", "Bash", "--show-hooks", "make it"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!target.exists(), "the gateway's plugin must stop the tool");
    assert!(told(&model).contains("no touching"), "{}", told(&model));
    assert!(
        stderr.contains("[hook] PreToolUse Bash"),
        "the client's own hook ran too: {stderr}"
    );
    drop(gw);
}

#[test]
fn serve_with_a_configured_coprocessor_gives_remote_sessions_its_mcp_tool_and_policy() {
    let dir = scratch("plugins-serve-copro");
    let target = dir.join("blocked.txt");
    let (model, env) = model(vec![
        Turn::tool_use(
            "mcp__word-count__count_words",
            json!({"text": "through the gateway"}),
        ),
        Turn::text("counted"),
        Turn::tool_use("Bash", touch(&target)),
        Turn::text("tried"),
    ]);
    // `[plugins.word-count]` configures the coprocessor: its block list stops the touch.
    let gw = serve(
        &dir,
        &env,
        &plugins(&dir, &["word-count"]),
        Some("[plugins.word-count]\nblocked = [\"touch\"]\n"),
    );
    let out = query_via(
        &dir,
        &gw.http,
        &[
            "--allow",
            "mcp__word-count__count_words",
            "--allow",
            "Bash",
            "count",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let out = query_via(&dir, &gw.http, &["--allow", "Bash", "touch it"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let told = told(&model);
    assert!(told.contains("3 words"), "{told}");
    assert!(
        told.contains("`touch` is blocked by word-count's config"),
        "{told}"
    );
    assert!(!target.exists());
    drop(gw);
}

#[test]
fn serve_refuses_a_configuration_that_fails_the_plugin_schema() {
    let dir = scratch("plugins-serve-badconfig");
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        "[plugins.word-count]\nblocked = 3\n",
    )
    .unwrap();
    let out = Command::new(CONDUIT)
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(dir.join("tokens"))
        .arg("--config")
        .arg(dir.join("gateway.toml"))
        .arg("--plugins")
        .arg(plugins(&dir, &["word-count"]))
        .env_remove("CONDUIT_TOKENS")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("configuration of `word-count` is invalid at `/blocked`"),
        "{stderr}"
    );
}

#[test]
fn plugins_run_on_workers_and_serve_redis_refuses_them() {
    let dir = scratch("plugins-redis");
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        "[plugins.word-count]\nblocked = 3\n",
    )
    .unwrap();
    // A `--redis` gateway runs no CLI: its plugins would act on nothing, so it says where they go.
    // (Nothing listens on port 1: the refusal comes before any connection.)
    let out = Command::new(CONDUIT)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://127.0.0.1:1",
        ])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .arg("--plugins")
        .arg(plugins(&dir, &["word-count"]))
        .env_remove("CONDUIT_TOKENS")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("give --plugins to `conduit worker`"),
        "{stderr}"
    );
    // A worker loads them (with their `[plugins.NAME]` configuration, checked first).
    let out = Command::new(CONDUIT)
        .args(["worker", "--redis", "redis://127.0.0.1:1", "--config"])
        .arg(dir.join("gateway.toml"))
        .arg("--plugins")
        .arg(plugins(&dir, &["word-count"]))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("conduit worker: plugin:")
            && stderr.contains("configuration of `word-count` is invalid at `/blocked`"),
        "{stderr}"
    );
}

#[test]
fn plugins_new_check_and_list() {
    let dir = scratch("plugins-cli");
    let pdir = dir.join("p");
    std::fs::create_dir_all(&pdir).unwrap();
    for (name, runtime) in [("guard", "rhai"), ("helper", "process")] {
        let out = Command::new(CONDUIT)
            .args(["plugins", "new", name, "--runtime", runtime, "--dir"])
            .arg(&pdir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let check = |d: &Path| {
        Command::new(CONDUIT)
            .args(["plugins", "check"])
            .arg(d)
            .output()
            .unwrap()
    };
    let out = check(&pdir);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = Command::new(CONDUIT)
        .args(["plugins", "list"])
        .arg(&pdir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let guard = stdout.lines().find(|l| l.starts_with("guard")).unwrap();
    assert!(
        guard.contains("rhai") && guard.contains("active") && guard.contains("hook PreToolUse"),
        "{stdout}"
    );
    let helper = stdout.lines().find(|l| l.starts_with("helper")).unwrap();
    assert!(
        helper.contains("process") && helper.contains("tool count_words"),
        "{stdout}"
    );
    // Break things: a syntax error, a missing dependency, an unknown key.
    std::fs::write(
        pdir.join("guard/main.rhai"),
        "fn pre_tool_use(input) {\n  let x = ;\n}\n",
    )
    .unwrap();
    let manifest = pdir.join("helper/plugin.toml");
    let text_m = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text_m}\n[depends]\nghost = \"^2\"\n")).unwrap();
    let out = check(&pdir);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("guard/main.rhai:2: "), "{stdout}");
    assert!(
        stdout.contains("helper/plugin.toml:")
            && stdout.contains("plugin `helper` depends on `ghost` (^2), which is not loaded"),
        "{stdout}"
    );
}

/// The `site-policy` example's `can_use_tool` policy through `conduit query --plugins`: the
/// query's own permission callback (`--allow Bash`) would allow the `touch`; the plugin's deny
/// comes first, the file is not created and the model is told the policy's reason. `plugins
/// check` passes on every example and `plugins list` shows the new contributions.
#[test]
fn query_with_a_rhai_permission_policy_denies_before_the_querys_own_allow() {
    let dir_arg = query_denies_the_touch(
        "plugins-query-policy",
        "site-policy",
        "site policy: \"touch\" is not allowed",
    );
    let out = Command::new(CONDUIT)
        .args(["plugins", "check", EXAMPLES])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = Command::new(CONDUIT)
        .args(["plugins", "list"])
        .arg(&dir_arg)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("site-policy"))
        .unwrap();
    assert!(
        line.contains("can_use_tool")
            && line.contains("message progress")
            && line.contains("frames progress"),
        "{stdout}"
    );
}
