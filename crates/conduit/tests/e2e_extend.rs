//! The extension points end to end: the event bus, middleware (ordering, retry, audit,
//! redaction) with the REAL pinned `claude` CLI against the test kit's FakeModel (issue 12), and
//! custom message types and protocol extensions through a session's engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use claude_conduit_suite::{Subprocess, extend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_low_priority_deny_beats_high_priority_allow_for_a_real_pre_tool_use() {
    extend::bus_low_priority_deny_beats_high_priority_allow_for_a_real_pre_tool_use(&Subprocess)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_layers_over_a_real_session_run_before_outside_in_and_after_inside_out() {
    extend::three_layers_over_a_real_session_run_before_outside_in_and_after_inside_out(
        &Subprocess,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_cover_both_ways_and_redaction_comes_first() {
    extend::audit_lines_cover_both_ways_and_redaction_comes_first(&Subprocess).await;
}

mod retry {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use claude_conduit::Error;
    use claude_conduit::middleware::{QueryRequest, QueryService, RetryLayer, RetryPolicy};
    use claude_conduit_testkit::Turn;
    use tower::{Layer, ServiceExt};

    use claude_conduit_suite::{RealCli, Subprocess, collect};

    /// A wrapper around the real CLI that logs each start to `starts`, writes its pid (the CLI's,
    /// after `exec`) to `pid`, and exits 3 without starting the CLI for the first `fail` starts.
    fn wrapper(dir: &Path, real: &Path, fail: usize) -> PathBuf {
        let script = dir.join("claude-wrapper.sh");
        let body = format!(
            "#!/bin/sh\n\
             echo start >> '{starts}'\n\
             n=$(wc -l < '{starts}')\n\
             if [ \"$n\" -le {fail} ]; then echo 'wrapper: failing at start' >&2; exit 3; fi\n\
             echo $$ > '{pid}'\n\
             exec '{real}' \"$@\"\n",
            starts = dir.join("starts").display(),
            pid = dir.join("pid").display(),
            real = real.display(),
        );
        std::fs::write(&script, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    fn starts(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("starts"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_restarts_a_cli_that_failed_at_start() {
        let h = RealCli::start(&Subprocess, vec![Turn::text("second time lucky")]).await;
        let dir = tempfile::tempdir().unwrap();
        let cli = wrapper(dir.path(), &h.env.cli_path(), 2);
        let service = RetryLayer::new(RetryPolicy::new(3).base_delay(Duration::from_millis(10)))
            .layer(QueryService::new());
        let stream = service
            .oneshot(QueryRequest::new("hi", h.options().cli_path(&cli).build()))
            .await
            .expect("started on the third try");
        let items = collect(stream, Duration::from_secs(90)).await;
        assert!(
            items.last().unwrap().as_ref().unwrap().is_result(),
            "{items:?}"
        );
        assert_eq!(starts(dir.path()), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_never_restarts_a_cli_that_died_after_the_first_message() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        // The model's tool call kills the CLI mid-turn, after init and the assistant's tool_use
        // have streamed.
        let h = RealCli::start(
            &Subprocess,
            vec![
                Turn::tool_use(
                    "Bash",
                    claude_conduit_suite::extend::bash(&format!(
                        "kill -9 $(cat '{}')",
                        pid.display()
                    )),
                ),
                Turn::text("never reached"),
            ],
        )
        .await;
        let cli = wrapper(dir.path(), &h.env.cli_path(), 0);
        let service = RetryLayer::new(RetryPolicy::new(5).base_delay(Duration::from_millis(10)))
            .layer(QueryService::new());
        let options = h.options().cli_path(&cli).allowed_tools(["Bash"]).build();
        let stream = service
            .oneshot(QueryRequest::new("go", options))
            .await
            .expect("started");
        let items = collect(stream, Duration::from_secs(90)).await;
        assert!(
            items
                .iter()
                .any(|i| i.as_ref().is_ok_and(|m| m.as_assistant().is_some()))
        );
        assert!(
            matches!(items.last(), Some(Err(Error::ProcessExited { .. }))),
            "{:?}",
            items.last()
        );
        assert_eq!(
            starts(dir.path()),
            1,
            "a query that streamed is never retried"
        );
    }
}

mod custom {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use claude_conduit::extension::{Action, CustomType, Extensions, Invalid};
    use claude_conduit::transport::MemoryTransport;
    use claude_conduit::transport::memory::{
        ScriptedCli, assistant_text, result_success, system_init,
    };
    use claude_conduit::{Error, MessageKind, Options, query_with_transport};
    use futures::StreamExt;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Progress {
        percent: u8,
        label: String,
    }

    #[tokio::test]
    async fn custom_frames_arrive_typed_or_as_a_per_frame_error_and_unknown_ones_raw() {
        let (t, cli) = MemoryTransport::pair(16);
        ScriptedCli::default()
            .on_user(|_, turn| {
                vec![
                    system_init(),
                    json!({"type": "progress", "percent": 40, "label": "build"}),
                    json!({"type": "progress", "percent": "lots", "label": "x"}),
                    json!({"type": "progress", "percent": 120, "label": "x"}),
                    json!({"type": "brand_new", "x": 1}),
                    assistant_text("done"),
                    result_success(turn, 0.0),
                ]
            })
            .spawn(cli);
        let ext =
            Extensions::new().register(CustomType::new::<Progress>("progress").validator(|v| {
                match v["percent"].as_u64() {
                    Some(p) if p > 100 => Err(Invalid::new("/percent", "more than 100")),
                    _ => Ok(()),
                }
            }));
        let options = Options::builder().extensions(ext).build();
        let items: Vec<_> = query_with_transport("hi", options, t).collect().await;
        assert_eq!(items.len(), 7, "{items:?}");
        assert_eq!(
            items[1].as_ref().unwrap().custom::<Progress>(),
            Some(&Progress {
                percent: 40,
                label: "build".into()
            })
        );
        assert!(
            matches!(&items[2], Err(Error::InvalidFrame { type_, path, .. }) if type_ == "progress" && path == "/percent")
        );
        assert!(
            matches!(&items[3], Err(Error::InvalidFrame { message, .. }) if message == "more than 100")
        );
        assert!(
            matches!(items[4].as_ref().unwrap().kind(), MessageKind::Unknown { type_, .. } if type_ == "brand_new")
        );
        assert!(items[6].as_ref().unwrap().is_result(), "the stream went on");
    }

    #[tokio::test]
    async fn a_protocol_extension_answers_swallows_and_falls_back() {
        let (t, mut cli) = MemoryTransport::pair(16);
        let seen_by_cli = Arc::new(Mutex::new(Vec::new()));
        let seen = seen_by_cli.clone();
        tokio::spawn(async move {
            while let Some(frame) = cli.recv_json().await {
                match frame["type"].as_str() {
                    Some("control_request") => {
                        let id = frame["request_id"].clone();
                        let _ = cli.send_json(&json!({"type":"control_response","response":{"subtype":"success","request_id":id,"response":{}}})).await;
                    }
                    Some("user") => {
                        for f in [
                            system_init(),
                            json!({"type": "ping", "n": 7}),
                            json!({"type": "telemetry", "cpu": 3}),
                            json!({"type": "ping", "n": 8, "pass": true}),
                        ] {
                            let _ = cli.send_json(&f).await;
                        }
                    }
                    Some("pong") => {
                        seen.lock().unwrap().push(frame.clone());
                        if frame["n"] == 8 {
                            let _ = cli.send_json(&result_success(1, 0.0)).await;
                        }
                    }
                    _ => {}
                }
            }
        });
        let ext = Extensions::new()
            .handle("ping", |f| {
                let pong = Bytes::from(format!(r#"{{"type":"pong","n":{}}}"#, f.value["n"]));
                if f.value["pass"] == true {
                    Action::ReplyAndPass(pong)
                } else {
                    Action::Reply(pong)
                }
            })
            .handle("telemetry", |_| Action::Swallow);
        let options = Options::builder().extensions(ext).build();
        let items: Vec<_> = query_with_transport("hi", options, t).collect().await;
        let types: Vec<String> = items
            .iter()
            .map(|i| i.as_ref().unwrap().type_name().to_owned())
            .collect();
        // ping 7 answered and dropped, telemetry swallowed, ping 8 answered and passed on.
        assert_eq!(types, ["system", "ping", "result"]);
        let pongs: Vec<_> = seen_by_cli
            .lock()
            .unwrap()
            .iter()
            .map(|f| f["n"].clone())
            .collect();
        assert_eq!(pongs, [json!(7), json!(8)]);
    }
}
