//! Issue 9, part A, as attacks on the real gateway (127.0.0.1, `mock-claude` behind a `--cli`
//! wrapper that records each session's argv, cwd, environment, uid and stdin, as the attack
//! did): secrets in the session's environment and directory, the cwd race, the session-limit
//! race, information leaks, template flags, other tokens' conversations, short tokens, `user`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_conduit::Options;
use claude_conduit_gateway::auth::{TokenId, Tokens};
use claude_conduit_gateway::policy::Policy;
use claude_conduit_gateway::session::SessionRequest;
use claude_conduit_gateway::{GatewayConfig, GatewayError};
use serde_json::json;

mod support;
use support::*;

/// What the wrapper recorded for one session.
#[derive(Debug)]
struct Record {
    cwd: PathBuf,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    env_text: String,
    uid: u32,
}

impl Record {
    /// The arguments that start with `prefix`, in order.
    fn args_of(&self, prefix: &str) -> Vec<&str> {
        self.argv
            .iter()
            .map(String::as_str)
            .filter(|a| a.starts_with(prefix))
            .collect()
    }
}

/// A `--cli` wrapper in `dir` (which must exist) that records `<dir>/<pid>.{cwd,argv,env,uid,
/// stdin}` and runs mock-claude with the same arguments.
fn recorder(dir: &Path) -> PathBuf {
    let script = dir.join("record-cli.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nrec='{}'/$$\npwd -P > \"$rec.cwd\"\nprintf '%s\\n' \"$@\" > \"$rec.argv\"\n\
             env > \"$rec.env\"\nid -u > \"$rec.uid.tmp\" && mv \"$rec.uid.tmp\" \"$rec.uid\"\n\
             tee \"$rec.stdin\" | '{}' \"$@\"\n",
            dir.display(),
            mock_claude().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The record of the session whose wrapper has process id `pid` (waits until it is written).
async fn record(dir: &Path, pid: u32) -> Record {
    let base = dir.join(pid.to_string());
    let uid_file = base.with_extension("uid");
    tokio::time::timeout(T, async {
        while !uid_file.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the wrapper wrote its record");
    let read = |ext: &str| std::fs::read_to_string(base.with_extension(ext)).unwrap();
    let env_text = read("env");
    Record {
        cwd: PathBuf::from(read("cwd").trim()),
        argv: read("argv").lines().map(str::to_owned).collect(),
        env: env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        env_text,
        uid: read("uid").trim().parse().unwrap(),
    }
}

/// The gateway's environment for the attack: this process's plus secrets a gateway holds.
fn gateway_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.extend([
        ("CONDUIT_TOKENS".into(), format!("{TOKEN},{OTHER}")),
        ("CONDUIT_TOKEN_FILE".into(), "/etc/conduit/tokens".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "aws-secret-value".into()),
        ("ANTHROPIC_API_KEY".into(), "sk-operator-key".into()),
    ]);
    env
}

/// Gateway with the recorder as its CLI, the two tokens, a fresh state directory.
fn recording_config(rec: &Path, state: &Path) -> GatewayConfig {
    GatewayConfig::new()
        .listen(loopback())
        .token(TOKEN)
        .token(OTHER)
        .options(
            Options::builder()
                .cli_path(recorder(rec))
                .env("OPERATOR_SET", "from-the-template")
                .build(),
        )
        .close_grace(Duration::from_secs(2))
        .state_dir(state)
        .environment(gateway_env())
}

fn label(token: &str) -> String {
    Tokens::from_comma_list(token).unwrap().label(TokenId(0))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn create(
    gw: &Running,
    owner: usize,
    req: &SessionRequest,
) -> Result<claude_conduit_gateway::SessionInfo, GatewayError> {
    gw.manager.create(TokenId(owner), req).await
}

// Item 1 (High): the session's environment and directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_env_holds_no_token_and_no_conduit_variable_and_its_cwd_is_its_tokens() {
    let rec = tempfile::tempdir().unwrap();
    let st = tempfile::tempdir().unwrap();
    let state = st.path().join("state");
    let gw = start(recording_config(rec.path(), &state)).await;
    // The state directory need not exist before the first session.
    assert!(!state.exists());
    let a1 = create(&gw, 0, &SessionRequest::default()).await.unwrap();
    let a2 = create(&gw, 0, &SessionRequest::default()).await.unwrap();
    let b1 = create(&gw, 1, &SessionRequest::default()).await.unwrap();
    let (r1, r2, rb) = (
        record(rec.path(), a1.pid.unwrap()).await,
        record(rec.path(), a2.pid.unwrap()).await,
        record(rec.path(), b1.pid.unwrap()).await,
    );
    for r in [&r1, &r2, &rb] {
        assert!(!r.env_text.contains(TOKEN), "a token in the session's env");
        assert!(!r.env_text.contains(OTHER), "a token in the session's env");
        let conduit: Vec<_> = r.env.keys().filter(|k| k.starts_with("CONDUIT_")).collect();
        assert!(
            conduit.is_empty(),
            "CONDUIT_* in the session's env: {conduit:?}"
        );
        assert!(!r.env_text.contains("aws-secret-value"));
        // The allowlist and the operator's own variables do pass.
        assert!(r.env.contains_key("PATH"));
        assert_eq!(r.env["ANTHROPIC_API_KEY"], "sk-operator-key");
        assert_eq!(r.env["OPERATOR_SET"], "from-the-template");
        assert_ne!(
            r.cwd,
            std::env::current_dir().unwrap().canonicalize().unwrap()
        );
    }
    // One work directory per token, under the state directory, named by the token's label.
    let canon = state.canonicalize().unwrap();
    assert_eq!(r1.cwd, canon.join("work").join(label(TOKEN)));
    assert_eq!(r2.cwd, r1.cwd);
    assert_eq!(rb.cwd, canon.join("work").join(label(OTHER)));
    assert_eq!(r1.env["PWD"], r1.cwd.to_str().unwrap());
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&r1.cwd), 0o700);
    // No token in any path under the state directory.
    let mut stack = vec![state.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let s = p.to_string_lossy();
            assert!(!s.contains(TOKEN) && !s.contains(OTHER), "{s}");
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tokens_name_their_directory_and_a_template_cwd_wins() {
    let rec = tempfile::tempdir().unwrap();
    let st = tempfile::tempdir().unwrap();
    let tokens = Tokens::from_lines(&format!("# named\nalice {TOKEN}\n{OTHER}\n")).unwrap();
    let gw = start(recording_config(rec.path(), st.path()).tokens(tokens)).await;
    let a = create(&gw, 0, &SessionRequest::default()).await.unwrap();
    let r = record(rec.path(), a.pid.unwrap()).await;
    assert_eq!(r.cwd, st.path().canonicalize().unwrap().join("work/alice"));
    gw.shutdown().await;

    let fixed = tempfile::tempdir().unwrap();
    let config = recording_config(rec.path(), st.path());
    let template = Options::builder()
        .cli_path(recorder(rec.path()))
        .cwd(fixed.path())
        .build();
    let gw = start(config.options(template)).await;
    let a = create(&gw, 0, &SessionRequest::default()).await.unwrap();
    let r = record(rec.path(), a.pid.unwrap()).await;
    assert_eq!(r.cwd, fixed.path().canonicalize().unwrap());
    gw.shutdown().await;
}

// Item 12: short tokens are refused at start, naming the rule, never showing the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_under_16_bytes_are_refused_at_start() {
    let config = support::config(&[]).token("fifteen-bytes!!");
    let e = claude_conduit_gateway::Gateway::bind(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 16 bytes"), "{e}");
    assert!(!e.contains("fifteen-bytes!!"), "{e}");
    let ok = support::config(&[]).token("sixteen-bytes!!!");
    claude_conduit_gateway::Gateway::bind(ok).await.unwrap();
}

// Item 8: the session limit holds under concurrent creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_creates_with_a_limit_of_two_never_leave_more_than_two() {
    let gw = start(support::config(&[]).max_sessions_per_token(2)).await;
    // Refused creates give their slot back.
    for _ in 0..5 {
        let r = SessionRequest::with_args(["--settings={}"]);
        assert!(matches!(
            create(&gw, 0, &r).await,
            Err(GatewayError::InvalidOptions(_))
        ));
    }
    for round in 0..3 {
        let req = SessionRequest::default();
        let results = futures::future::join_all((0..40).map(|_| create(&gw, 0, &req))).await;
        let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(GatewayError::TooManySessions { limit: 2 })))
            .count();
        assert_eq!(ok.len(), 2, "round {round}: {results:?}");
        assert_eq!(refused, 38, "round {round}");
        assert_eq!(gw.manager.list(TokenId(0)).len(), 2, "round {round}");
        for s in ok {
            assert!(gw.manager.delete(TokenId(0), &s.id).await);
        }
    }
    gw.shutdown().await;
}

// Item 9: errors say nothing about the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwd_errors_and_spawn_errors_do_not_leak_host_facts() {
    let root = tempfile::tempdir().unwrap();
    let gw = start(support::config(&[]).policy(Policy::default().cwd_root(root.path()))).await;
    let (s1, b1) = post_session(gw.addr, TOKEN, &json!({"cwd": "/etc"})).await;
    let (s2, b2) = post_session(gw.addr, TOKEN, &json!({"cwd": "/no-such-dir-conduit"})).await;
    assert_eq!((s1, s2), (400, 400));
    let (m1, m2) = (b1["error"].to_string(), b2["error"].to_string());
    assert_eq!(
        m1.replace("/etc", "P"),
        m2.replace("/no-such-dir-conduit", "P"),
        "an existing and a missing host path must get the same answer"
    );
    gw.shutdown().await;

    let secret = "/opt/secret-install-place/bin/claude";
    let gw = start(support::config(&[]).cli_path(secret)).await;
    let (status, body) = post_session(gw.addr, TOKEN, &json!({})).await;
    assert_eq!(status, 500);
    let text = body.to_string();
    assert!(!text.contains("secret-install-place"), "{text}");
    assert!(text.contains("cannot start"), "{text}");
    gw.shutdown().await;
}

// Item 10: a template's flags are the operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_flags_cannot_replace_the_templates_unless_overridable() {
    let rec = tempfile::tempdir().unwrap();
    let st = tempfile::tempdir().unwrap();
    let template = Options::builder()
        .cli_path(recorder(rec.path()))
        .model("operator-model")
        .max_budget_usd(1.0)
        .system_prompt("operator prompt")
        .build();
    let config = recording_config(rec.path(), st.path()).options(template.clone());
    let gw = start(config).await;
    for (arg, flag) in [
        ("--model=client-model", "--model"),
        ("--max-budget-usd=1000", "--max-budget-usd"),
        ("--system-prompt=client prompt", "--system-prompt"),
    ] {
        match create(&gw, 0, &SessionRequest::with_args([arg])).await {
            Err(GatewayError::InvalidOptions(m)) => {
                assert!(m.contains(flag) && m.contains("template"), "{m}");
            }
            other => panic!("{arg} was not refused: {other:?}"),
        }
    }
    // The template's own value, and an SDK client's defaults (`--system-prompt=`), ask for
    // nothing and pass.
    let defaults =
        SessionRequest::from_options(&Options::builder().model("operator-model").build()).unwrap();
    let s = create(&gw, 0, &defaults).await.unwrap();
    let r = record(rec.path(), s.pid.unwrap()).await;
    let models = r.args_of("--model=");
    assert_eq!(models, ["--model=operator-model"]);
    assert!(
        r.argv
            .contains(&"--system-prompt=operator prompt".to_owned())
    );
    assert!(!r.argv.contains(&"--system-prompt=".to_owned()));
    gw.shutdown().await;

    let config = recording_config(rec.path(), st.path())
        .options(template)
        .policy(Policy::default().overridable_flag("model"));
    let gw = start(config).await;
    let s = create(&gw, 0, &SessionRequest::with_args(["--model=client-model"]))
        .await
        .unwrap();
    let r = record(rec.path(), s.pid.unwrap()).await;
    let models = r.args_of("--model=");
    assert_eq!(models, ["--model=operator-model", "--model=client-model"]);
    assert!(
        create(&gw, 0, &SessionRequest::with_args(["--max-budget-usd=9"]))
            .await
            .is_err()
    );
    gw.shutdown().await;
}

/// The conversation id of a one-turn query through the gateway as `token`.
async fn conversation(gw: &Running, token: &str) -> String {
    let options = Options::builder()
        .transport(format!("ws://{}", gw.addr), token)
        .build();
    let items: Vec<_> = tokio::time::timeout(
        T,
        futures::StreamExt::collect::<Vec<_>>(claude_conduit::query("hi", options)),
    )
    .await
    .expect("in time");
    items
        .iter()
        .flatten()
        .find_map(|m| m.as_result().and_then(|r| r.session_id.clone()))
        .expect("a result with a session id")
}

// Item 11: a token cannot resume another token's conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tokens_conversation_cannot_be_resumed() {
    let st = tempfile::tempdir().unwrap();
    let config = || support::config(&[]).state_dir(st.path());
    let gw = start(config()).await;
    let id = conversation(&gw, TOKEN).await;
    for arg in [format!("--resume={id}"), format!("--session-id={id}")] {
        match create(&gw, 1, &SessionRequest::with_args([arg.as_str()])).await {
            Err(GatewayError::InvalidOptions(m)) => {
                assert!(m.contains("another token"), "{m}");
            }
            other => panic!("{arg} by another token was not refused: {other:?}"),
        }
    }
    let fork = SessionRequest::with_args([format!("--resume={id}"), "--fork-session".into()]);
    assert!(create(&gw, 1, &fork).await.is_err());
    // The owner may.
    let mine = create(
        &gw,
        0,
        &SessionRequest::with_args([format!("--resume={id}")]),
    )
    .await
    .unwrap();
    gw.manager.delete(TokenId(0), &mine.id).await;
    gw.shutdown().await;
    // The record outlives the gateway.
    let gw = start(config()).await;
    let arg = format!("--resume={id}");
    assert!(matches!(
        create(&gw, 1, &SessionRequest::with_args([arg.as_str()])).await,
        Err(GatewayError::InvalidOptions(_))
    ));
    gw.shutdown().await;
}

// Item 7 (Linux): a directory swapped for a symlink while sessions start never puts a session
// outside its root.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_symlink_swap_never_puts_a_session_outside_its_root() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let rec = tempfile::tempdir().unwrap();
    let st = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::create_dir(root_path.join("a")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root_path.join("b")).unwrap();
    let config = recording_config(rec.path(), st.path())
        .policy(Policy::default().cwd_root(&root_path))
        .max_sessions_per_token(100);
    let gw = start(config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let stop = stop.clone();
        let swaps = swaps.clone();
        let dir = root_path.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    dir.join("a"),
                    rustix::fs::CWD,
                    dir.join("b"),
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .expect("renameat2 exchange");
                swaps.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        })
    };
    let target = root_path.join("a");
    let req = SessionRequest::default().cwd(target.to_str().unwrap());
    let mut started = Vec::new();
    let mut refused = Vec::new();
    // Until a few sessions started (each attempt finds a directory or a symlink, as the swap
    // goes), within a bounded number of attempts.
    while started.len() < 10 && started.len() + refused.len() < 400 {
        // Every attempt races a swap that has not happened yet when it starts.
        let seen = swaps.load(Ordering::Relaxed);
        while swaps.load(Ordering::Relaxed) == seen {
            tokio::task::yield_now().await;
        }
        match create(&gw, 0, &req).await {
            Ok(s) => started.push(s),
            Err(GatewayError::InvalidOptions(m)) => refused.push(m),
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        !started.is_empty(),
        "no session started at all: {refused:?}"
    );
    for s in &started {
        let r = record(rec.path(), s.pid.unwrap()).await;
        assert!(
            r.cwd.starts_with(&root_path),
            "a session started outside its root: {}",
            r.cwd.display()
        );
        gw.manager.delete(TokenId(0), &s.id).await;
    }
    gw.shutdown().await;
}

// "Also": a token's sessions run as its OS user (needs root and the `nobody` user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_sessions_run_as_its_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("skipped: no `nobody` user on this host");
        return;
    };
    // The mock binary must be reachable by that user.
    let reachable = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "test",
            "-x",
        ])
        .arg(mock_claude())
        .status()
        .is_ok_and(|s| s.success());
    if !reachable {
        eprintln!(
            "skipped: {} is not executable by nobody",
            mock_claude().display()
        );
        return;
    }
    let rec = tempfile::tempdir().unwrap();
    std::fs::set_permissions(rec.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let st = tempfile::tempdir().unwrap();
    let mut tokens = Tokens::default();
    tokens.add_named("nob", TOKEN, Some("nobody".into()));
    tokens.add(OTHER.into());
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let config = recording_config(rec.path(), st.path())
        .tokens(tokens)
        .policy(Policy::default().cwd_root(&root_path));
    let gw = start(config).await;
    // A client cwd is entered through the opened descriptor, after the switch to the user.
    let req = SessionRequest::default().cwd(root_path.to_str().unwrap());
    let s = create(&gw, 0, &req).await.unwrap();
    let r = record(rec.path(), s.pid.unwrap()).await;
    assert_eq!(
        (r.uid, r.cwd.as_path()),
        (nobody.uid.as_raw(), root_path.as_path())
    );
    let s = create(&gw, 0, &SessionRequest::default()).await.unwrap();
    let r = record(rec.path(), s.pid.unwrap()).await;
    assert_eq!(r.uid, nobody.uid.as_raw());
    assert_eq!(r.env["HOME"], nobody.dir.to_str().unwrap());
    assert_eq!(r.env["USER"], "nobody");
    assert_eq!(r.cwd, st.path().canonicalize().unwrap().join("work/nob"));
    // The other token's sessions still run as the gateway's user.
    let s = create(&gw, 1, &SessionRequest::default()).await.unwrap();
    assert_eq!(record(rec.path(), s.pid.unwrap()).await.uid, 0);
    gw.shutdown().await;
}
