//! Issue 9, part A, with the REAL pinned `claude` CLI behind the gateway (FakeModel, no network):
//! `--resume` across a token's sessions in its work directory, another token's conversation
//! refused, and the forced sandbox keeping a Bash tool away from the token file and the state
//! directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use claude_conduit::{Message, Options, query};
use claude_conduit_gateway::GatewayConfig;
use claude_conduit_gateway::auth::{TokenId, Tokens};
use claude_conduit_testkit::{Block, CliEnv, FakeModel, Turn};
use futures::StreamExt;
use serde_json::json;

mod support;
use support::{OTHER, T, TOKEN, loopback};

struct RealGateway {
    model: FakeModel,
    _env: CliEnv,
    gw: support::Running,
}

/// The pinned CLI's environment as the gateway's options template (no cwd: sessions start in
/// their token's work directory), `adjust` applied to the config.
async fn real_gateway(
    turns: Vec<Turn>,
    state: &Path,
    adjust: impl FnOnce(GatewayConfig) -> GatewayConfig,
) -> RealGateway {
    let model = FakeModel::start(turns).await.expect("fake model");
    // The CLI is installed on first use (npm): off the runtime's threads.
    let env = tokio::task::block_in_place(|| model.cli_env()).expect("the pinned CLI's env");
    let template = Options::builder()
        .cli_path(env.cli_path())
        .envs(env.envs())
        .build();
    let config = GatewayConfig::new()
        .listen(loopback())
        .token(TOKEN)
        .token(OTHER)
        .options(template)
        .close_grace(Duration::from_secs(2))
        .state_dir(state);
    let gw = support::start(adjust(config)).await;
    RealGateway {
        model,
        _env: env,
        gw,
    }
}

async fn run(prompt: &str, options: Options) -> Vec<Result<Message, claude_conduit::Error>> {
    tokio::time::timeout(Duration::from_secs(120), query(prompt, options).collect())
        .await
        .expect("the query ended in time")
}

fn ws(gw: &support::Running, token: &str) -> claude_conduit::options::OptionsBuilder {
    Options::builder()
        .transport(format!("ws://{}", gw.addr), token)
        .initialize_timeout(T)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_works_across_a_tokens_sessions_and_not_for_another_token() {
    let st = tempfile::tempdir().unwrap();
    let h = real_gateway(
        vec![Turn::text("first answer"), Turn::text("second answer")],
        st.path(),
        |c| c,
    )
    .await;
    let first = run("remember the word pelican", ws(&h.gw, TOKEN).build()).await;
    let id = first
        .iter()
        .flatten()
        .find_map(|m| m.as_result().and_then(|r| r.session_id.clone()))
        .expect("a session id");
    // Another token: refused before any CLI starts.
    let stolen = run(
        "what was the word?",
        ws(&h.gw, OTHER).resume(id.clone()).build(),
    )
    .await;
    let err = stolen
        .iter()
        .find_map(|r| r.as_ref().err())
        .map(ToString::to_string)
        .expect("another token's resume fails");
    assert!(err.contains("another token"), "{err}");
    assert_eq!(h.model.message_requests().len(), 1);
    // The same token, in a new session: the CLI finds the conversation in the token's directory.
    let second = run(
        "what was the word?",
        ws(&h.gw, TOKEN).resume(id.clone()).build(),
    )
    .await;
    assert!(second.iter().all(Result::is_ok), "{second:?}");
    let resumed = second
        .iter()
        .flatten()
        .find_map(|m| m.as_result().and_then(|r| r.session_id.clone()));
    assert_eq!(resumed.as_deref(), Some(id.as_str()));
    let reqs = h.model.message_requests();
    assert_eq!(reqs.len(), 2);
    let convo = serde_json::to_string(reqs[1].messages()).unwrap_or_default();
    assert!(
        convo.contains("pelican") && convo.contains("first answer"),
        "{convo}"
    );
    h.gw.shutdown().await;
}

/// Why the CLI's sandbox cannot run here, if it cannot.
fn sandbox_unavailable() -> Option<String> {
    let bwrap = std::process::Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "true"])
        .output();
    match bwrap {
        Err(e) => {
            return Some(format!(
                "bwrap not found ({e}); scripts/test.sh installs it"
            ));
        }
        Ok(o) if !o.status.success() => {
            return Some(format!(
                "`bwrap --ro-bind / / true` fails here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(_) => {}
    }
    let socat = std::process::Command::new("socat").arg("-V").output();
    match socat {
        Ok(o) if o.status.success() => None,
        _ => Some("socat not found; scripts/test.sh installs it".into()),
    }
}

/// What the Bash tool call `id` gave back, as the model got it.
fn bash_output(h: &RealGateway, id: &str) -> String {
    let reqs = h.model.message_requests();
    reqs.last()
        .and_then(|r| r.tool_result_text(id))
        .unwrap_or_else(|| panic!("no result of {id} in {} requests", reqs.len()))
}

/// The plain command: the CLI's own permission check sees the paths.
const PLAIN: &str = "toolu_sec_env_plain";
/// The same reads with the paths hidden from any static check (rot13, decoded by the shell):
/// only the sandbox stands between them and the files.
const HIDDEN: &str = "toolu_sec_env_hidden";

fn rot13(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => char::from(b'a' + (c as u8 - b'a' + 13) % 26),
            'A'..='Z' => char::from(b'A' + (c as u8 - b'A' + 13) % 26),
            _ => c,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forced_sandbox_keeps_a_bash_tool_from_the_token_file_and_the_state_dir() {
    if let Some(why) = sandbox_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let st = tempfile::tempdir().unwrap();
    let state = st.path().join("state");
    let token_file = st.path().join("tokens.txt");
    std::fs::write(&token_file, format!("{TOKEN}\n{OTHER}\n")).unwrap();
    let tokens = Tokens::from_file(&token_file).unwrap();
    // Something in the state directory's records and in the other token's work directory.
    let other = state.join("work").join(tokens.label(TokenId(1)));
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "other-tenant-secret").unwrap();
    std::fs::create_dir_all(state.join("conversations")).unwrap();
    std::fs::write(state.join("conversations/planted"), "state-record-secret").unwrap();
    let targets = [
        token_file.clone(),
        state.join("conversations/planted"),
        other.join("notes.txt"),
    ];
    let plain: String = targets
        .iter()
        .map(|p| format!("cat {}; ", p.display()))
        .chain(["echo finished-$((6*7))".to_owned()])
        .collect();
    let hidden: String = targets
        .iter()
        .map(|p| {
            let p = rot13(&p.display().to_string());
            format!("cat \"$(echo '{p}' | tr A-Za-z N-ZA-Mn-za-m)\"; ")
        })
        .chain(["echo finished-$((6*7))".to_owned()])
        .collect();
    let turns = || {
        vec![
            Turn::blocks(vec![Block::tool_use_with_id(
                PLAIN,
                "Bash",
                json!({"command": plain, "description": "read the neighbours"}),
            )]),
            Turn::blocks(vec![Block::tool_use_with_id(
                HIDDEN,
                "Bash",
                json!({"command": hidden, "description": "read them again"}),
            )]),
            Turn::text("done"),
        ]
    };
    let secrets = [TOKEN, OTHER, "state-record-secret", "other-tenant-secret"];
    // The attack, without the sandbox: the tool reads everything the gateway's user can.
    let open = real_gateway(turns(), &state, |c| c.tokens(tokens.clone())).await;
    let items = run("look", ws(&open.gw, TOKEN).allowed_tools(["Bash"]).build()).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    for id in [PLAIN, HIDDEN] {
        let out = bash_output(&open, id);
        assert!(out.contains("finished-42"), "{out}");
        for secret in secrets {
            assert!(out.contains(secret), "{id}: {secret} not read: {out}");
        }
    }
    open.gw.shutdown().await;

    // With `sandbox = true`: the CLI refuses the plain reads (deny rules), and the hidden ones
    // run in the sandbox, which does not show the files.
    let boxed = real_gateway(turns(), &state, |c| {
        c.tokens(tokens.clone())
            .protect_file(&token_file)
            .sandbox(true)
    })
    .await;
    let items = run("look", ws(&boxed.gw, TOKEN).allowed_tools(["Bash"]).build()).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let plain_out = bash_output(&boxed, PLAIN);
    let hidden_out = bash_output(&boxed, HIDDEN);
    assert!(
        hidden_out.contains("finished-42"),
        "the sandboxed command did not run: {hidden_out}"
    );
    for out in [&plain_out, &hidden_out] {
        for secret in secrets {
            assert!(
                !out.contains(secret),
                "the sandboxed tool read {secret}: {out}"
            );
        }
    }
    // The client cannot turn it off.
    let e = run(
        "x",
        ws(&boxed.gw, TOKEN)
            .extra_arg("settings", Some(r#"{"sandbox":{"enabled":false}}"#.into()))
            .build(),
    )
    .await;
    assert!(e.iter().any(Result::is_err), "{e:?}");
    boxed.gw.shutdown().await;
}
