#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::executor::block_on;
use serde_json::{Map, Value, json};

use super::policy::{AllowList, Chain, DenyList, Policy, PolicyHandler, ReadOnly, Rule, Verdict};
use super::*;
use crate::Error;

const ALLOW: &str = include_str!("../../tests/fixtures/transcripts/permission_allow.jsonl");
const ALLOW_MODIFIED: &str =
    include_str!("../../tests/fixtures/transcripts/permission_allow_modified.jsonl");
const DENY: &str = include_str!("../../tests/fixtures/transcripts/permission_deny.jsonl");
const SDK_MCP: &str = include_str!("../../tests/fixtures/transcripts/sdk_mcp.jsonl");
const LARGE: &str = include_str!("../../tests/fixtures/transcripts/large_tool_output.jsonl");

/// The `can_use_tool` request body the CLI sent and, when recorded, the `response` payload the
/// SDK answered with.
fn exchange(transcript: &str) -> (Map<String, Value>, Option<Value>) {
    let mut request: Option<(String, Map<String, Value>)> = None;
    for line in transcript.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let Some(raw) = entry.get("raw").and_then(Value::as_str) else {
            continue;
        };
        let frame: Value = serde_json::from_str(raw).unwrap();
        match (entry["dir"].as_str(), frame["type"].as_str()) {
            (Some("cli->sdk"), Some("control_request"))
                if frame["request"]["subtype"] == "can_use_tool" =>
            {
                let id = frame["request_id"].as_str().unwrap().to_owned();
                let body = frame["request"].as_object().unwrap().clone();
                request = Some((id, body));
            }
            (Some("sdk->cli"), Some("control_response")) => {
                if let Some((id, body)) = &request
                    && frame["response"]["request_id"] == id.as_str()
                {
                    return (body.clone(), Some(frame["response"]["response"].clone()));
                }
            }
            _ => {}
        }
    }
    let (_, body) = request.expect("no can_use_tool request in the transcript");
    (body, None)
}

fn bash(command: &str) -> PermissionRequest {
    PermissionRequest::new("Bash", json!({ "command": command }))
}

fn tool(name: &str, input: Value) -> PermissionRequest {
    PermissionRequest::new(name, input)
}

fn rule(s: &str) -> Rule {
    Rule::parse(s).unwrap()
}

// ----- the request -----------------------------------------------------------------------------

#[test]
fn parses_a_recorded_can_use_tool_body() {
    let (body, _) = exchange(ALLOW);
    let req = PermissionRequest::from_body(&body).unwrap();
    assert_eq!(req.tool_name, "Bash");
    assert_eq!(
        req.input,
        json!({"command": "touch marker.txt && echo hi", "description": "Create marker file and print hi"})
    );
    assert!(req.tool_use_id.as_deref().unwrap().starts_with("toolu_"));
    assert_eq!(req.display_name.as_deref(), Some("Bash"));
    assert_eq!(
        req.description.as_deref(),
        Some("Create marker file and print hi")
    );
    assert_eq!(
        req.blocked_path.as_deref(),
        Some("/home/user/work/work/marker.txt")
    );
    assert_eq!(req.decision_reason, None);
    assert_eq!(req.mcp_server, None);
    assert_eq!(req.raw, body);
    assert_eq!(
        req.suggestions,
        vec![
            PermissionUpdate::AddRules {
                rules: vec![PermissionRuleValue::new(
                    "Bash",
                    Some("touch marker.txt && echo hi".into())
                )],
                behavior: PermissionBehavior::Allow,
                destination: PermissionDestination::LocalSettings,
            },
            PermissionUpdate::AddDirectories {
                directories: vec!["/home/user/work/work".into()],
                destination: PermissionDestination::Session,
            },
            PermissionUpdate::SetMode {
                mode: "acceptEdits".into(),
                destination: PermissionDestination::Session,
            },
        ]
    );
    // Every suggestion goes back on the wire exactly as it came.
    let wire: Vec<Value> = req
        .suggestions
        .iter()
        .map(PermissionUpdate::to_value)
        .collect();
    assert_eq!(Value::Array(wire), body["permission_suggestions"]);
}

#[test]
fn parses_mcp_and_decision_reason_type_bodies() {
    let (body, _) = exchange(SDK_MCP);
    let req = PermissionRequest::from_body(&body).unwrap();
    assert_eq!(req.tool_name, "mcp__probe__add");
    assert_eq!(req.display_name.as_deref(), Some("Add"));
    assert_eq!(
        req.suggestions,
        vec![PermissionUpdate::AddRules {
            rules: vec![PermissionRuleValue::new("mcp__probe__add", None)],
            behavior: PermissionBehavior::Allow,
            destination: PermissionDestination::LocalSettings,
        }]
    );

    let (body, _) = exchange(LARGE);
    let req = PermissionRequest::from_body(&body).unwrap();
    assert_eq!(
        req.decision_reason_type.as_deref(),
        Some("subcommandResults")
    );
    assert_eq!(req.suggestions.len(), 2);
}

#[test]
fn parses_optional_context_fields() {
    let body = json!({
        "subtype": "can_use_tool",
        "tool_name": "mcp__calc__add",
        "input": {"a": 1},
        "decision_reason": "ask rule",
        "decision_reason_type": "rule",
        "title": "Allow add?",
        "agent_id": "agent-1",
        "mcp_server": {"name": "calc", "source": "sdk"},
        "default_to_no": true,
    });
    let req = PermissionRequest::from_body(body.as_object().unwrap()).unwrap();
    assert_eq!(req.decision_reason.as_deref(), Some("ask rule"));
    assert_eq!(req.decision_reason_type.as_deref(), Some("rule"));
    assert_eq!(req.title.as_deref(), Some("Allow add?"));
    assert_eq!(req.agent_id.as_deref(), Some("agent-1"));
    assert_eq!(
        req.mcp_server,
        Some(McpServerRef {
            name: "calc".into(),
            source: Some("sdk".into())
        })
    );
    assert_eq!(req.raw["default_to_no"], json!(true));

    // A structured reason is kept as JSON text.
    let body = json!({"tool_name": "X", "decision_reason": {"type": "rule"}});
    let req = PermissionRequest::from_body(body.as_object().unwrap()).unwrap();
    assert_eq!(req.decision_reason.as_deref(), Some(r#"{"type":"rule"}"#));
    assert_eq!(req.input, json!({}));
}

#[test]
fn missing_tool_name_is_an_error() {
    let body = json!({"subtype": "can_use_tool", "input": {}});
    let err = PermissionRequest::from_body(body.as_object().unwrap()).unwrap_err();
    assert!(err.contains("tool_name"), "{err}");
    let body = json!({"tool_name": 3});
    assert!(PermissionRequest::from_body(body.as_object().unwrap()).is_err());
}

// ----- updates ---------------------------------------------------------------------------------

#[test]
fn permission_updates_round_trip_exactly() {
    let values = [
        json!({"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "git *"}], "behavior": "allow", "destination": "localSettings"}),
        json!({"type": "replaceRules", "rules": [{"toolName": "Read"}], "behavior": "deny", "destination": "userSettings"}),
        json!({"type": "removeRules", "rules": [], "behavior": "ask", "destination": "projectSettings"}),
        json!({"type": "setMode", "mode": "acceptEdits", "destination": "session"}),
        json!({"type": "addDirectories", "directories": ["/a", "/b"], "destination": "cliArg"}),
        json!({"type": "removeDirectories", "directories": ["/a"], "destination": "session"}),
        // Open values.
        json!({"type": "addRules", "rules": [{"toolName": "X"}], "behavior": "sometimes", "destination": "cloud"}),
        // Unknown type, extra field, missing field: kept verbatim.
        json!({"type": "setColor", "color": "red"}),
        json!({"type": "setMode", "mode": "plan", "destination": "session", "extra": 1}),
        json!({"type": "setMode", "mode": "plan"}),
        json!({"type": "addRules", "rules": [{"toolName": "X", "other": 1}], "behavior": "allow", "destination": "session"}),
    ];
    for v in values {
        let u: PermissionUpdate = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&u).unwrap(), v, "{u:?}");
        assert_eq!(PermissionUpdate::from_value(v.clone()), u);
    }
    let open: PermissionUpdate = serde_json::from_value(
        json!({"type": "addRules", "rules": [], "behavior": "sometimes", "destination": "cloud"}),
    )
    .unwrap();
    assert_eq!(
        open,
        PermissionUpdate::AddRules {
            rules: vec![],
            behavior: PermissionBehavior::Other("sometimes".into()),
            destination: PermissionDestination::Other("cloud".into()),
        }
    );
    let other = PermissionUpdate::from_value(json!({"type": "setColor"}));
    assert!(matches!(other, PermissionUpdate::Other(_)));
    assert_eq!(other.kind(), "setColor");
    assert!(serde_json::from_value::<PermissionUpdate>(json!("addRules")).is_err());
}

// ----- decisions -------------------------------------------------------------------------------

#[test]
fn allow_answer_equals_the_recorded_sdk_answer() {
    let (body, recorded) = exchange(ALLOW);
    let wire = block_on(answer(
        &|_req: PermissionRequest| async { PermissionDecision::allow() },
        &body,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(Some(wire), recorded);
}

#[test]
fn allow_with_modified_input_equals_the_recorded_sdk_answer() {
    let (body, recorded) = exchange(ALLOW_MODIFIED);
    let handler = |req: PermissionRequest| async move {
        let mut input = req.input.clone();
        input["command"] = json!("echo rewritten-by-sdk");
        PermissionDecision::allow_with_input(input)
    };
    let wire = block_on(answer(&handler, &body)).unwrap().unwrap();
    assert_eq!(Some(wire), recorded);
}

#[test]
fn deny_answer_equals_the_recorded_sdk_answer() {
    let (body, recorded) = exchange(DENY);
    let handler = |_req: PermissionRequest| async {
        PermissionDecision::deny("Denied by probe: not allowed in this test")
    };
    let wire = block_on(answer(&handler, &body)).unwrap().unwrap();
    assert_eq!(Some(wire), recorded);
}

#[test]
fn decision_wire_shapes() {
    let input = json!({"command": "ls"});
    assert_eq!(
        PermissionDecision::allow().to_wire(&input),
        json!({"behavior": "allow", "updatedInput": {"command": "ls"}})
    );
    assert_eq!(
        PermissionDecision::allow_with_input(json!({"command": "ls -la"})).to_wire(&input),
        json!({"behavior": "allow", "updatedInput": {"command": "ls -la"}})
    );
    assert_eq!(
        PermissionDecision::deny("no").to_wire(&input),
        json!({"behavior": "deny", "message": "no"})
    );
    assert_eq!(
        PermissionDecision::deny_and_interrupt("stop").to_wire(&input),
        json!({"behavior": "deny", "message": "stop", "interrupt": true})
    );
    assert!(PermissionDecision::allow().is_allow());
    assert!(!PermissionDecision::deny("x").is_allow());
}

#[test]
fn allow_always_echoes_the_suggestions() {
    let (body, _) = exchange(ALLOW);
    let handler =
        |req: PermissionRequest| async move { PermissionDecision::allow_always(req.suggestions) };
    let wire = block_on(answer(&handler, &body)).unwrap().unwrap();
    assert_eq!(wire["behavior"], "allow");
    assert_eq!(wire["updatedInput"], body["input"]);
    assert_eq!(wire["updatedPermissions"], body["permission_suggestions"]);
    assert_eq!(wire.as_object().unwrap().len(), 3);
}

#[test]
fn answer_reports_unparsable_bodies() {
    let handler = |_req: PermissionRequest| async { PermissionDecision::allow() };
    let body = json!({"subtype": "can_use_tool"});
    let err = block_on(answer(&handler, body.as_object().unwrap())).unwrap_err();
    assert!(err.contains("tool_name"));
}

// ----- handlers --------------------------------------------------------------------------------

#[test]
fn closures_and_arcs_are_handlers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handler = move |req: PermissionRequest| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if req.tool_name == "Read" {
                PermissionDecision::allow()
            } else {
                PermissionDecision::deny("only reads")
            }
        }
    };
    let shared: Arc<dyn PermissionHandler> = Arc::new(handler);
    assert!(block_on(shared.decide(tool("Read", json!({})))).is_allow());
    let arc_of_arc: Arc<Arc<dyn PermissionHandler>> = Arc::new(shared.clone());
    assert_eq!(
        block_on(arc_of_arc.decide(bash("ls"))),
        PermissionDecision::deny("only reads")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    fn takes_handler(_: impl PermissionHandler) {}
    takes_handler(shared);
    takes_handler(|_r: PermissionRequest| async { PermissionDecision::allow() });
}

#[tokio::test]
async fn handlers_are_cancelled_by_drop() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let handler = move |_req: PermissionRequest| {
        let flag = Flag(d.clone());
        async move {
            let _flag = flag;
            futures::future::pending::<()>().await;
            PermissionDecision::allow()
        }
    };
    let task = tokio::spawn(handler.decide(bash("ls")));
    tokio::task::yield_now().await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

// ----- rules -----------------------------------------------------------------------------------

#[test]
fn rule_parsing() {
    let r = rule("Bash(git *)");
    assert_eq!(r.tool_name(), "Bash");
    assert_eq!(r.content(), Some("git *"));
    assert_eq!(r.to_string(), "Bash(git *)");
    assert_eq!(rule("  Read  ").content(), None);
    assert_eq!(rule("Read()").content(), None);
    assert_eq!(rule("Read(*)").content(), None);
    assert_eq!(rule(r"Bash(echo \(hi\))").content(), Some("echo (hi)"));
    assert_eq!(rule("Bash(echo (hi))").content(), Some("echo (hi)"));
    assert_eq!(rule("mcp__srv__*").tool_name(), "mcp__srv__*");
    assert_eq!(
        "WebFetch(domain:example.com)"
            .parse::<Rule>()
            .unwrap()
            .content(),
        Some("domain:example.com")
    );

    for bad in [
        "",
        "   ",
        "Bash(git *",
        "Bash)",
        "Bash(a))",
        "Bash(git *) extra",
        "(git *)",
        "Ba sh",
        "*",
        "Bash*",
        "mcp__",
        "mcp____tool",
        "mcp__srv__to ol",
    ] {
        let err = Rule::parse(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidOptions(_)), "{bad}: {err}");
        assert!(err.to_string().contains("invalid permission rule"), "{err}");
    }
    let err = Rule::parse("Bash(git *").unwrap_err().to_string();
    assert!(err.contains("unbalanced parenthesis"), "{err}");
    assert!(err.contains("Bash(git *"), "{err}");
}

#[test]
fn whole_tool_rules() {
    assert!(rule("Bash").matches(&bash("rm -rf /")));
    assert!(rule("Bash(*)").matches(&bash("anything")));
    assert!(!rule("Bash").matches(&tool("Read", json!({"file_path": "/x"}))));
    assert!(!rule("Bas").matches(&bash("ls")));
}

#[test]
fn bash_rules() {
    let git = rule("Bash(git *)");
    assert!(git.matches(&bash("git status")));
    assert!(git.matches(&bash("git")));
    assert!(git.matches(&bash("git log --oneline | git show")));
    assert!(!git.matches(&bash("rm -rf /")));
    assert!(!git.matches(&bash("gitk")));
    assert!(!git.matches(&bash("git status && rm -rf /")));
    assert!(!git.matches(&bash("git status; rm -rf /")));
    assert!(!git.matches(&bash("git log $(rm -rf /)")));
    assert!(!git.matches(&bash("git log `rm -rf /`")));
    assert!(!git.matches(&bash("git log > out.txt")));
    assert!(git.matches(&bash("git log 2>/dev/null")));
    assert!(!git.matches(&bash("")));
    assert!(!git.matches(&tool("Bash", json!({}))));
    assert!(rule("Bash(git log > *)").matches(&bash("git log > out.txt")));

    // Without the space, `*` runs on.
    assert!(rule("Bash(git*)").matches(&bash("gitk")));
    // Legacy prefix syntax.
    let npm = rule("Bash(npm run test:*)");
    assert!(npm.matches(&bash("npm run test")));
    assert!(npm.matches(&bash("npm run test --watch")));
    assert!(!npm.matches(&bash("npm run testing")));
    // Exact.
    let exact = rule("Bash(npm test)");
    assert!(exact.matches(&bash("npm test")));
    assert!(!exact.matches(&bash("npm test --fix")));
    // Quoted operators are not separators.
    assert!(rule("Bash(echo *)").matches(&bash("echo 'a && rm -rf /'")));
}

#[test]
fn bash_deny_semantics_touch_any_part() {
    let rm = rule("Bash(rm *)");
    for cmd in [
        "rm -rf /",
        "ls && rm -rf /",
        "echo $(rm -rf /)",
        "echo `rm x`",
        "(cd /tmp && rm x)",
        "sudo rm -rf /",
        "FOO=1 rm x",
        "/bin/rm x",
        "'rm' x",
        "find . | xargs rm",
        "if true; then rm x; fi",
    ] {
        assert!(rm.matches_any_part(&bash(cmd)), "{cmd}");
    }
    assert!(!rm.matches_any_part(&bash("ls -la")));
    assert!(!rm.matches_any_part(&bash("echo 'rm x'")));
    assert!(!rm.matches_any_part(&bash("rmdir x")));
}

#[test]
fn path_rules() {
    let read = |p: &str| tool("Read", json!({ "file_path": p }));
    let etc = rule("Read(//etc/**)");
    assert!(etc.matches(&read("/etc/passwd")));
    assert!(etc.matches(&read("/etc/ssh/sshd_config")));
    assert!(!etc.matches(&read("/home/me/etc/x")));
    assert!(etc.matches(&read("/home/me/../../etc/passwd")));
    assert!(!etc.matches(&read("etc/passwd")));

    let single = rule("Edit(/src/*.rs)");
    let edit = |p: &str| {
        tool(
            "Edit",
            json!({ "file_path": p, "old_string": "", "new_string": "" }),
        )
    };
    assert!(single.matches(&edit("/src/main.rs")));
    assert!(!single.matches(&edit("/src/a/main.rs")));
    assert!(!single.matches(&edit("/src/main.py")));

    // Relative patterns match at any depth; a matched directory covers what is below it.
    let env = rule("Read(.env)");
    assert!(env.matches(&read("/project/.env")));
    assert!(env.matches(&read(".env")));
    assert!(!env.matches(&read("/project/.envrc")));
    let star_env = rule("Read(*.env)");
    assert!(star_env.matches(&read("/p/prod.env")));
    let secrets = rule("Read(secrets)");
    assert!(secrets.matches(&read("/p/secrets/key.pem")));
    let deep = rule("Read(/a/**/b)");
    assert!(deep.matches(&read("/a/b")));
    assert!(deep.matches(&read("/a/x/y/b")));
    assert!(!deep.matches(&read("/a/x/y/c")));

    // Other path tools and their fields.
    assert!(
        rule("Glob(/p/**)").matches(&tool("Glob", json!({"pattern": "*.rs", "path": "/p/src"})))
    );
    assert!(!rule("Grep(/p/**)").matches(&tool("Grep", json!({"pattern": "x"}))));
    assert!(rule("NotebookEdit(/n/*.ipynb)").matches(&tool(
        "NotebookEdit",
        json!({"notebook_path": "/n/a.ipynb", "new_source": ""})
    )));
    assert!(rule("Write(/tmp/**)").matches(&tool(
        "Write",
        json!({"file_path": "/tmp/x", "content": ""})
    )));
}

#[test]
fn home_paths() {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let home = home.to_string_lossy().into_owned();
    let r = rule("Read(~/.ssh/**)");
    assert!(r.matches(&tool(
        "Read",
        json!({ "file_path": format!("{home}/.ssh/id_rsa") })
    )));
    assert!(!r.matches(&tool("Read", json!({"file_path": "/root2/.ssh/id_rsa"}))));
}

#[test]
fn web_and_generic_rules() {
    let fetch = |u: &str| tool("WebFetch", json!({ "url": u, "prompt": "summarize" }));
    let dom = rule("WebFetch(domain:example.com)");
    assert!(dom.matches(&fetch("https://example.com/page")));
    assert!(dom.matches(&fetch("https://EXAMPLE.com:8443/x?y")));
    assert!(!dom.matches(&fetch("https://example.com.evil.io/")));
    assert!(!dom.matches(&fetch("https://example.com@evil.io/")));
    assert!(!dom.matches(&fetch("https://sub.example.com/")));
    assert!(rule("WebFetch(domain:*.example.com)").matches(&fetch("https://docs.example.com/")));
    assert!(rule("WebFetch(https://docs.rs/*)").matches(&fetch("https://docs.rs/serde")));

    let search = tool("WebSearch", json!({"query": "rust serde"}));
    assert!(rule("WebSearch(rust *)").matches(&search));
    assert!(!rule("WebSearch(python *)").matches(&search));

    // Any other tool: the input as JSON text.
    let add = tool("mcp__calc__add", json!({"a": 1, "b": 2}));
    assert!(rule(r#"mcp__calc__add(*"a":1*)"#).matches(&add));
    assert!(!rule(r#"mcp__calc__add(*"a":5*)"#).matches(&add));
}

#[test]
fn mcp_rules() {
    let add = tool("mcp__calc__add", json!({"a": 1}));
    let other = tool("mcp__other__add", json!({}));
    assert!(rule("mcp__calc__add").matches(&add));
    assert!(!rule("mcp__calc__sub").matches(&add));
    assert!(rule("mcp__calc__*").matches(&add));
    assert!(rule("mcp__calc").matches(&add));
    assert!(!rule("mcp__calc__*").matches(&other));
    assert!(!rule("mcp__ca__*").matches(&add));
    assert!(!rule("mcp__calc__*").matches(&tool("mcp__calc__", json!({}))));
}

// ----- policies --------------------------------------------------------------------------------

fn verdict(p: &dyn Policy, req: &PermissionRequest) -> Verdict {
    p.evaluate(req)
}

#[test]
fn allow_and_deny_lists() {
    let allow = AllowList::parse(["Read", "Bash(git *)"]).unwrap();
    assert_eq!(verdict(&allow, &bash("git status")), Verdict::Allow);
    assert_eq!(verdict(&allow, &bash("rm x")), Verdict::Abstain);
    assert_eq!(
        verdict(&allow, &tool("Read", json!({"file_path": "/x"}))),
        Verdict::Allow
    );

    let deny = DenyList::parse(["Bash(rm *)"]).unwrap();
    match verdict(&deny, &bash("rm -rf /")) {
        Verdict::Deny(msg) => assert!(msg.contains("`Bash(rm *)`"), "{msg}"),
        v => panic!("{v:?}"),
    }
    assert_eq!(verdict(&deny, &bash("git status")), Verdict::Abstain);

    // Each part of a compound command may be covered by a different rule...
    let two = AllowList::parse(["Bash(git *)", "Bash(cargo *)"]).unwrap();
    assert_eq!(
        verdict(&two, &bash("git pull && cargo build")),
        Verdict::Allow
    );
    // ...but every part must be covered, and opaque commands never are.
    assert_eq!(verdict(&two, &bash("git pull && rm x")), Verdict::Abstain);
    assert_eq!(
        verdict(&two, &bash("git pull && cargo $(rm x)")),
        Verdict::Abstain
    );
    assert_eq!(
        verdict(&two, &bash("git log > f && cargo build")),
        Verdict::Abstain
    );

    assert!(AllowList::parse(["Read", "Bash("]).is_err());
    assert!(DenyList::parse(Vec::<String>::new()).unwrap().0.is_empty());
}

#[test]
fn chain_order_decides() {
    let deny = || Box::new(DenyList::parse(["Bash(git push *)"]).unwrap()) as Box<dyn Policy>;
    let allow = || Box::new(AllowList::parse(["Bash(git *)"]).unwrap()) as Box<dyn Policy>;
    let push = bash("git push origin main");

    // Deny first: deny wins.
    let chain = Chain(vec![deny(), allow()]);
    assert!(matches!(chain.evaluate(&push), Verdict::Deny(_)));
    assert_eq!(chain.evaluate(&bash("git status")), Verdict::Allow);
    assert_eq!(chain.evaluate(&bash("ls")), Verdict::Abstain);

    // Allow first: allow wins.
    let chain = Chain(vec![allow(), deny()]);
    assert_eq!(chain.evaluate(&push), Verdict::Allow);

    assert_eq!(Chain::new().evaluate(&push), Verdict::Abstain);
    let built = Chain::new()
        .with(|_: &PermissionRequest| Verdict::Abstain)
        .with(|r: &PermissionRequest| Verdict::Deny(format!("no {}", r.tool_name)));
    assert_eq!(built.evaluate(&push), Verdict::Deny("no Bash".into()));
    assert_eq!(format!("{built:?}"), "Chain { policies: 2 }");
}

#[test]
fn read_only_tools_and_commands() {
    let ro = ReadOnly;
    for t in [
        "Read",
        "Glob",
        "Grep",
        "LS",
        "WebFetch",
        "WebSearch",
        "NotebookRead",
    ] {
        assert_eq!(ro.evaluate(&tool(t, json!({}))), Verdict::Allow, "{t}");
    }
    for t in ["Write", "Edit", "NotebookEdit", "mcp__calc__add", "Task"] {
        match ro.evaluate(&tool(t, json!({}))) {
            Verdict::Deny(msg) => assert!(msg.contains("read-only") && msg.contains(t), "{msg}"),
            v => panic!("{t}: {v:?}"),
        }
    }
    for cmd in [
        "ls -la",
        "cat a.txt | head -n 5",
        "grep -rn foo src | wc -l",
        "rg foo",
        "find . -name '*.rs'",
        "git status",
        "git log --oneline -5",
        "git diff HEAD~1",
        "git show HEAD",
        "pwd",
        "echo hi",
        "echo 'a > b'",
        "ls && git status",
        "ls nope 2>/dev/null || echo missing",
        "cat < input.txt",
        "tail -f log 2>&1",
        "ls # just a comment",
    ] {
        assert_eq!(ro.evaluate(&bash(cmd)), Verdict::Allow, "{cmd}");
        assert!(ReadOnly::is_read_only_command(cmd), "{cmd}");
    }
    for cmd in [
        "",
        "rm -rf x",
        "touch marker.txt && echo hi",
        "echo hi > file",
        "echo hi >> file",
        "echo hi >&file",
        "ls; rm x",
        "ls && rm x",
        "cat x | tee y",
        "cat x | sh",
        "echo $(rm x)",
        "echo `rm x`",
        "find . -delete",
        "find . -exec rm {} \\;",
        "find . -fprint out",
        "git push",
        "git commit -m x",
        "git -c core.pager=sh log",
        "git diff --output=x",
        "git log --ext-diff",
        "rg --pre ./script foo",
        "(ls)",
        "FOO=1 ls",
        "$CMD",
        "cat <<EOF\nhi\nEOF",
        "echo 'unterminated",
        "sort -o out in",
        "/bin/ls",
        "ls <> file",
    ] {
        match ro.evaluate(&bash(cmd)) {
            Verdict::Deny(msg) => assert!(msg.contains("read-only"), "{msg}"),
            v => panic!("{cmd:?}: {v:?}"),
        }
    }
    match ro.evaluate(&bash(&"x".repeat(1000))) {
        Verdict::Deny(msg) => assert!(msg.len() < 400, "{msg}"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn policy_handler_fallbacks() {
    let allow = AllowList::parse(["Read"]).unwrap();
    let read = tool("Read", json!({"file_path": "/x"}));
    let write = tool("Write", json!({"file_path": "/x", "content": ""}));

    // Default fallback: deny naming the tool.
    let h = PolicyHandler::new(allow.clone());
    assert_eq!(
        block_on(h.decide(read.clone())),
        PermissionDecision::allow()
    );
    assert_eq!(
        block_on(h.decide(write.clone())),
        PermissionDecision::deny("no policy rule allowed Write")
    );

    // Custom fallback, only asked on Abstain.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let h = PolicyHandler::new(allow).fallback(move |req: PermissionRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { PermissionDecision::allow_always(req.suggestions) }
    });
    assert!(block_on(h.decide(read)).is_allow());
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert!(block_on(h.decide(write)).is_allow());
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // Policy denials are plain denials (no interrupt).
    let h = PolicyHandler::new(ReadOnly);
    match block_on(h.decide(bash("rm x"))) {
        PermissionDecision::Deny { message, interrupt } => {
            assert!(message.contains("read-only"));
            assert!(!interrupt);
        }
        d => panic!("{d:?}"),
    }
    assert!(format!("{h:?}").contains("ReadOnly"));
}

#[test]
fn policy_handler_answers_a_recorded_request() {
    let (body, recorded) = exchange(ALLOW);
    // `touch` is not read-only...
    let h = PolicyHandler::new(ReadOnly);
    let wire = block_on(answer(&h, &body)).unwrap().unwrap();
    assert_eq!(wire["behavior"], "deny");
    // ...but an allow rule for the exact command covers it, and the answer is what the
    // recorded SDK sent.
    let h = PolicyHandler::new(AllowList::parse(["Bash(touch *)", "Bash(echo *)"]).unwrap());
    let wire = block_on(answer(&h, &body)).unwrap().unwrap();
    assert_eq!(Some(wire), recorded);
}

#[test]
fn combined_decisions_any_deny_wins_first_input_applies_permissions_join() {
    let mode = |m: &str| PermissionUpdate::SetMode {
        mode: m.into(),
        destination: PermissionDestination::Session,
    };
    let a = PermissionDecision::Allow {
        updated_input: None,
        updated_permissions: vec![mode("acceptEdits")],
    };
    let b = PermissionDecision::Allow {
        updated_input: Some(json!({"command": "b"})),
        updated_permissions: vec![mode("plan")],
    };
    let c = PermissionDecision::allow_with_input(json!({"command": "c"}));
    assert_eq!(
        PermissionDecision::combine([a.clone(), b.clone(), c.clone()]),
        Some(PermissionDecision::Allow {
            updated_input: Some(json!({"command": "b"})),
            updated_permissions: vec![mode("acceptEdits"), mode("plan")],
        })
    );
    // The first deny in order decides the message and `interrupt`, wherever it stands.
    let first = PermissionDecision::deny_and_interrupt("first");
    let second = PermissionDecision::deny("second");
    assert_eq!(
        PermissionDecision::combine([a, first.clone(), b, second.clone(), c]),
        Some(first)
    );
    assert_eq!(PermissionDecision::combine([second.clone()]), Some(second));
    assert_eq!(PermissionDecision::combine(Vec::new()), None);
}
