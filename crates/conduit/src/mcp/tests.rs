use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::*;

/// The `add` tool of the `sdk_mcp` recording (Python SDK, `create_sdk_mcp_server("probe")`).
fn probe_server() -> SdkMcpServer {
    let add = SdkTool::new(
        "add",
        "Add two integers and return the sum.",
        json!({
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        }),
        |args: Value| async move {
            let a = args["a"].as_i64().ok_or("a is not an integer")?;
            let b = args["b"].as_i64().ok_or("b is not an integer")?;
            Ok(ToolOutput::text(format!("{a} + {b} = {}", a + b)))
        },
    );
    SdkMcpServer::builder("probe")
        .version("1.0.0")
        .tool(add)
        .build()
}

fn body(server_name: &str, message: Value) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "subtype": "mcp_message",
        "server_name": server_name,
        "message": message,
    }) else {
        unreachable!()
    };
    map
}

fn call(id: Value, name: &str, arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    })
}

/// `result` of a response, asserting there is one.
fn result(response: &Value) -> &Value {
    assert!(
        response.get("error").is_none(),
        "unexpected error: {response}"
    );
    &response["result"]
}

/// The text of the first content block of a `tools/call` result.
fn text(response: &Value) -> &str {
    result(response)["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

fn is_error(response: &Value) -> bool {
    result(response)["isError"] == json!(true)
}

// ---- replay of transcripts/sdk_mcp.jsonl ---------------------------------------------------

/// `(request message, recorded mcp_response)` in the order of the recording, from its
/// `control_request mcp_message` lines and the Python SDK's answers.
fn recording() -> Vec<(Value, Value)> {
    let initialize = json!({"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"claude-code","title":"Claude Code","version":"2.1.197","description":"Anthropic's agentic coding tool","websiteUrl":"https://claude.com/claude-code"}},"jsonrpc":"2.0","id":0});
    let initialize_answer = json!({"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": false}}, "serverInfo": {"name": "probe", "version": "1.0.0"}}});
    let initialized = json!({"method":"notifications/initialized","jsonrpc":"2.0"});
    let ack = json!({"jsonrpc": "2.0", "result": {}});
    let list = json!({"method":"tools/list","jsonrpc":"2.0","id":1});
    let list_answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "add", "description": "Add two integers and return the sum.", "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}]}});
    let call = json!({"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2},"_meta":{"claudecode/toolUseId":"toolu_63dec2453d604f5d83c26482","progressToken":2}},"jsonrpc":"2.0","id":2});
    let call_answer = json!({"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text", "text": "1 + 2 = 3"}]}});
    vec![
        // First handshake, during the SDK's own initialize.
        (initialize.clone(), initialize_answer.clone()),
        (initialized.clone(), ack.clone()),
        (list.clone(), list_answer.clone()),
        // Second handshake at the first turn, same ids.
        (initialize, initialize_answer),
        (initialized, ack),
        (list, list_answer),
        (call, call_answer),
    ]
}

#[tokio::test]
async fn replays_the_recorded_sdk_mcp_session() {
    let servers = HashMap::from([("probe".to_owned(), probe_server())]);
    for (request, recorded) in recording() {
        let answer = answer(&servers, &body("probe", request.clone()))
            .await
            .unwrap()
            .unwrap();
        let ours = &answer["mcp_response"];
        assert_eq!(ours["jsonrpc"], "2.0");
        assert_eq!(ours.get("id"), recorded.get("id"), "id of {request}");
        match request["method"].as_str().unwrap() {
            "initialize" => {
                let (ours, recorded) = (&ours["result"], &recorded["result"]);
                assert_eq!(ours["protocolVersion"], recorded["protocolVersion"]);
                assert_eq!(ours["serverInfo"], recorded["serverInfo"]);
                assert_eq!(ours["capabilities"], json!({"tools": {}}));
                assert!(recorded["capabilities"]["tools"].is_object());
            }
            "tools/list" => assert_eq!(ours, &recorded),
            "tools/call" => {
                assert_eq!(ours["result"]["content"], recorded["result"]["content"]);
                assert_eq!(ours["result"]["isError"], false);
            }
            _ => assert_eq!(ours, &recorded),
        }
    }
}

#[tokio::test]
async fn repeated_initialize_is_answered_identically() {
    let server = probe_server();
    let init = recording()[0].0.clone();
    let first = server.handle(init.clone()).await;
    let list = server
        .handle(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    let second = server.handle(init).await;
    assert_eq!(first, second);
    assert_eq!(result(&first)["protocolVersion"], "2025-11-25");
    assert_eq!(result(&list)["tools"][0]["name"], "add");
}

#[tokio::test]
async fn notifications_get_an_ack() {
    let server = probe_server();
    for method in [
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/whatever",
    ] {
        let ack = server
            .handle(json!({"jsonrpc": "2.0", "method": method, "params": {"requestId": 3}}))
            .await;
        assert_eq!(ack, json!({"jsonrpc": "2.0", "result": {}}));
    }
}

#[tokio::test]
async fn negotiates_the_protocol_version() {
    let server = probe_server();
    let mut answers = Vec::new();
    for requested in ["2025-03-26", "2024-11-05", "1999-01-01", "2026-07-28"] {
        let response = server
            .handle(json!({
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": requested, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
            }))
            .await;
        answers.push(result(&response)["protocolVersion"].clone());
    }
    // Unknown versions and the handshake-less 2026 revision get the newest with `initialize`.
    assert_eq!(
        answers,
        ["2025-03-26", "2024-11-05", "2025-11-25", "2025-11-25"]
    );
    // No params at all still works.
    let bare = server
        .handle(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize"}))
        .await;
    assert_eq!(result(&bare)["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn initialize_reports_instructions_and_version() {
    let server = SdkMcpServer::builder("s")
        .version("2.3.4")
        .instructions("use the tools")
        .build();
    let response = server
        .handle(json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {}}))
        .await;
    assert_eq!(response["id"], "init");
    assert_eq!(
        result(&response)["serverInfo"],
        json!({"name": "s", "version": "2.3.4"})
    );
    assert_eq!(result(&response)["instructions"], "use the tools");
}

#[tokio::test]
async fn ping_answers_an_empty_object() {
    let response = probe_server()
        .handle(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
        .await;
    assert_eq!(response, json!({"jsonrpc": "2.0", "id": 9, "result": {}}));
}

// ---- tools ---------------------------------------------------------------------------------

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Search {
    /// What to look for.
    query: String,
    /// How many results.
    limit: Option<u32>,
    tags: Vec<String>,
}

fn search_tool() -> SdkTool {
    SdkTool::typed("search", "Search things", |args: Search| async move {
        Ok(ToolOutput::text(format!(
            "{} x{}",
            args.query,
            args.limit.unwrap_or(10)
        )))
    })
}

#[test]
fn typed_tool_schema_comes_from_schemars() {
    let tool = search_tool();
    let schema = tool.input_schema();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["query", "tags"]));
    let properties = schema["properties"].as_object().unwrap();
    assert_eq!(
        properties.keys().collect::<Vec<_>>(),
        ["limit", "query", "tags"]
    );
    assert_eq!(properties["query"]["type"], "string");
    assert_eq!(properties["query"]["description"], "What to look for.");
    assert_eq!(properties["tags"]["type"], "array");
    // Root title/description are noise for the model.
    assert!(schema.get("title").is_none());
}

#[tokio::test]
async fn typed_tool_runs_and_rejects_invalid_arguments() {
    let server = SdkMcpServer::builder("s").tool(search_tool()).build();
    let ok = server
        .handle(call(
            json!(1),
            "search",
            json!({"query": "rust", "limit": 3, "tags": []}),
        ))
        .await;
    assert_eq!(text(&ok), "rust x3");
    assert!(!is_error(&ok));

    let missing = server
        .handle(call(json!(2), "search", json!({"query": "rust"})))
        .await;
    assert!(is_error(&missing));
    assert!(
        text(&missing).starts_with("invalid arguments: missing field `tags`"),
        "{missing}"
    );

    let wrong_type = server
        .handle(call(json!(3), "search", json!({"query": 5, "tags": []})))
        .await;
    assert!(is_error(&wrong_type));
    assert!(
        text(&wrong_type).starts_with("invalid arguments: invalid type"),
        "{wrong_type}"
    );

    // No `arguments` at all is `{}`.
    let none = server
        .handle(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "search"}}))
        .await;
    assert!(is_error(&none));
    assert!(text(&none).starts_with("invalid arguments: missing field `query`"));
}

#[tokio::test]
async fn raw_tool_arguments_are_checked_against_the_schema() {
    let server = probe_server();
    let cases = [
        (
            json!({"a": 1}),
            "invalid arguments: missing required property `b`",
        ),
        (
            json!({}),
            "invalid arguments: missing required properties `a`, `b`",
        ),
        (
            json!({"a": "1", "b": 2}),
            "invalid arguments: property `a` should be number, got a string",
        ),
        (
            json!([1, 2]),
            "invalid arguments: expected a JSON object, got an array",
        ),
    ];
    for (i, (arguments, expected)) in cases.into_iter().enumerate() {
        let response = server.handle(call(json!(i), "add", arguments)).await;
        assert!(is_error(&response), "{response}");
        assert_eq!(text(&response), expected);
    }
}

#[tokio::test]
async fn failing_tool_is_an_error_result_not_a_protocol_error() {
    let tool = SdkTool::new(
        "fail",
        "Always fails",
        json!({"type": "object", "properties": {}}),
        |_| async { Err::<ToolOutput, _>(ToolError::new("disk full")) },
    );
    let server = SdkMcpServer::builder("s").tool(tool).build();
    let response = server.handle(call(json!(7), "fail", json!({}))).await;
    assert_eq!(
        response,
        json!({
            "jsonrpc": "2.0",
            "id": 7,
            "result": {"content": [{"type": "text", "text": "disk full"}], "isError": true},
        })
    );
}

#[tokio::test]
async fn panicking_tool_is_caught() {
    let tool = SdkTool::new("boom", "Panics", json!({}), |_| async {
        if true {
            panic!("kaboom {}", 42);
        }
        Ok(ToolOutput::text("unreachable"))
    });
    fn panics_before_its_future(_: Value) -> std::future::Ready<Result<ToolOutput, ToolError>> {
        panic!("static message")
    }
    let sync_panic = SdkTool::new("boom2", "Panics early", json!({}), panics_before_its_future);
    let server = SdkMcpServer::builder("s")
        .tool(tool)
        .tool(sync_panic)
        .build();
    let response = server.handle(call(json!(1), "boom", json!({}))).await;
    assert!(is_error(&response));
    assert_eq!(text(&response), "tool `boom` panicked: kaboom 42");
    let response = server.handle(call(json!(2), "boom2", json!({}))).await;
    assert!(is_error(&response));
    assert_eq!(text(&response), "tool `boom2` panicked: static message");
    // The server keeps working.
    let list = server
        .handle(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .await;
    assert_eq!(result(&list)["tools"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_tool_is_an_error_result() {
    let response = probe_server()
        .handle(call(json!(5), "subtract", json!({})))
        .await;
    assert!(is_error(&response));
    assert_eq!(
        text(&response),
        "unknown tool `subtract` on MCP server `probe` (its tools: add)"
    );
}

#[tokio::test]
async fn tool_content_kinds() {
    let tool = SdkTool::new("pic", "Returns a picture", json!({}), |_| async {
        Ok(ToolOutput::image("aGk=", "image/png")
            .with(ToolContent::text("caption"))
            .with(ToolContent::Raw(
                json!({"type": "resource_link", "uri": "file:///x", "name": "x"}),
            )))
    });
    let server = SdkMcpServer::builder("s").tool(tool).build();
    let response = server.handle(call(json!(1), "pic", json!({}))).await;
    assert_eq!(
        result(&response)["content"],
        json!([
            {"type": "image", "data": "aGk=", "mimeType": "image/png"},
            {"type": "text", "text": "caption"},
            {"type": "resource_link", "uri": "file:///x", "name": "x"},
        ])
    );
    assert_eq!(result(&response)["isError"], false);
    assert!(result(&response).get("resultType").is_none());
}

#[tokio::test]
async fn output_flagged_as_error() {
    let tool = SdkTool::new("soft", "Soft failure", json!({}), |_| async {
        Ok(ToolOutput::text("nothing found").with_is_error(true))
    });
    let server = SdkMcpServer::builder("s").tool(tool).build();
    let response = server.handle(call(json!(1), "soft", json!({}))).await;
    assert!(is_error(&response));
    assert_eq!(text(&response), "nothing found");
}

#[tokio::test]
async fn tools_list_carries_annotations_and_meta() {
    let tool = SdkTool::new(
        "read",
        "Reads",
        json!({"type": "object", "properties": {}}),
        |_| async { Ok(ToolOutput::text("")) },
    )
    .annotations(
        ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false),
    )
    .max_result_size_chars(500_000);
    let server = SdkMcpServer::builder("s").tool(tool).build();
    let response = server
        .handle(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .await;
    assert_eq!(
        result(&response),
        &json!({"tools": [{
            "name": "read",
            "description": "Reads",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {
                "readOnlyHint": true,
                "destructiveHint": false,
                "idempotentHint": true,
                "openWorldHint": false,
            },
            "_meta": {"anthropic/maxResultSizeChars": 500_000},
        }]})
    );
}

#[test]
fn builder_names_and_replaces_tools() {
    let first = SdkTool::new("a", "first", json!({}), |_| async {
        Ok(ToolOutput::text("1"))
    });
    let second = SdkTool::new("a", "second", json!({}), |_| async {
        Ok(ToolOutput::text("2"))
    });
    let server = SdkMcpServer::builder("srv")
        .tool(first)
        .tools([search_tool(), second])
        .build();
    assert_eq!(server.name(), "srv");
    assert_eq!(server.version(), "1.0.0");
    assert_eq!(server.tool_names(), ["mcp__srv__a", "mcp__srv__search"]);
    assert_eq!(server.tool("a").map(SdkTool::description), Some("second"));
    assert_eq!(server.config_entry(), json!({"type": "sdk", "name": "srv"}));
    let clone = server.clone();
    assert_eq!(clone.tools().len(), 2);
}

#[test]
fn python_shorthand_becomes_an_object_schema_with_every_property_required() {
    let tool = SdkTool::new(
        "t",
        "d",
        json!({"a": "number", "n": "int", "s": "str", "tags": "list",
               "why": {"type": "string", "description": "the reason"}}),
        |_| async { Ok(ToolOutput::text("")) },
    );
    assert_eq!(
        Value::Object(tool.input_schema().clone()),
        json!({
            "type": "object",
            "properties": {
                "a": {"type": "number"},
                "n": {"type": "integer"},
                "s": {"type": "string"},
                "tags": {"type": "array"},
                "why": {"type": "string", "description": "the reason"},
            },
            "required": ["a", "n", "s", "tags", "why"],
        })
    );
}

#[test]
fn an_object_with_type_and_properties_is_a_full_schema_used_as_given() {
    let full = json!({"type": "object", "properties": {"a": {"type": "number"}}, "required": []});
    let tool = SdkTool::new("t", "d", full.clone(), |_| async {
        Ok(ToolOutput::text(""))
    });
    assert_eq!(Value::Object(tool.input_schema().clone()), full);
    // `type` alone is not a full schema: it is the shorthand for one property named `type`.
    let tool = SdkTool::new("t", "d", json!({"type": "string"}), |_| async {
        Ok(ToolOutput::text(""))
    });
    assert_eq!(
        tool.input_schema()["properties"]["type"],
        json!({"type": "string"})
    );
    let none = SdkTool::new("t", "d", json!({}), |_| async { Ok(ToolOutput::text("")) });
    assert_eq!(
        Value::Object(none.input_schema().clone()),
        json!({"type": "object", "properties": {}})
    );
}

#[tokio::test]
async fn shorthand_arguments_are_checked_before_the_handler_runs() {
    let add = SdkTool::new(
        "add",
        "Add two numbers",
        json!({"a": "number", "b": "number"}),
        |args: Value| async move {
            let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
            Ok(ToolOutput::text(sum.to_string()))
        },
    );
    assert_eq!(
        add.call(json!({"a": 1, "b": 2.5})).await,
        Ok(ToolOutput::text("3.5"))
    );
    let bad = add.call(json!({"a": "1", "b": 2})).await;
    assert_eq!(
        bad.map_err(|e| e.message().to_owned()),
        Err("invalid arguments: property `a` should be number, got a string".to_owned())
    );
    let missing = add.call(json!({"a": 1})).await;
    assert_eq!(
        missing.map_err(|e| e.message().to_owned()),
        Err("invalid arguments: missing required property `b`".to_owned())
    );
}

#[test]
fn non_object_schema_is_replaced() {
    let tool = SdkTool::new("t", "d", json!("nope"), |_| async {
        Ok(ToolOutput::text(""))
    });
    assert_eq!(
        Value::Object(tool.input_schema().clone()),
        json!({"type": "object", "properties": {}})
    );
}

// ---- JSON-RPC errors -----------------------------------------------------------------------

#[tokio::test]
async fn unknown_method_is_method_not_found() {
    let response = probe_server()
        .handle(json!({"jsonrpc": "2.0", "id": "r-1", "method": "resources/list"}))
        .await;
    assert_eq!(response["id"], "r-1");
    assert_eq!(response["error"]["code"], -32601);
    assert!(response.get("result").is_none());
}

#[tokio::test]
async fn non_requests_are_invalid_requests() {
    let server = probe_server();
    let cases = [
        (json!("hello"), Value::Null),
        (json!(null), Value::Null),
        (json!({"jsonrpc": "2.0", "id": 4}), json!(4)),
        (
            json!({"jsonrpc": "1.0", "id": 5, "method": "ping"}),
            json!(5),
        ),
        (json!({"id": 6, "method": "ping"}), json!(6)),
        (
            json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}),
            Value::Null,
        ),
        (
            json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
            Value::Null,
        ),
    ];
    for (message, id) in cases {
        let response = server.handle(message.clone()).await;
        assert_eq!(response["error"]["code"], -32600, "{message} -> {response}");
        assert_eq!(response["id"], id, "{message}");
    }
}

#[tokio::test]
async fn tools_call_without_name_is_invalid_params() {
    let response = probe_server()
        .handle(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}))
        .await;
    assert_eq!(response["error"]["code"], -32602);
}

#[tokio::test]
async fn ids_are_kept_exactly() {
    let server = probe_server();
    for id in [
        json!(0),
        json!("abc"),
        json!(u64::MAX),
        json!(-3),
        json!(1.5),
        json!(""),
    ] {
        let response = server
            .handle(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}))
            .await;
        assert_eq!(response["id"], id);
        let response = server
            .handle(call(id.clone(), "add", json!({"a": 1, "b": 1})))
            .await;
        assert_eq!(response["id"], id);
        assert_eq!(text(&response), "1 + 1 = 2");
    }
}

// ---- routing -------------------------------------------------------------------------------

#[tokio::test]
async fn answer_routes_by_server_name() {
    let other = SdkMcpServer::builder("other").build();
    let servers = HashMap::from([
        ("probe".to_owned(), probe_server()),
        ("other".to_owned(), other),
    ]);
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let probe = answer(&servers, &body("probe", message.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(probe["mcp_response"]["result"]["tools"][0]["name"], "add");
    let other = answer(&servers, &body("other", message))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other["mcp_response"]["result"]["tools"], json!([]));
}

#[tokio::test]
async fn answer_rejects_unknown_servers() {
    let servers = HashMap::from([("probe".to_owned(), probe_server())]);
    let err = answer(
        &servers,
        &body("nope", json!({"jsonrpc": "2.0", "id": 0, "method": "ping"})),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("unknown MCP server `nope`: "), "{err}");
    assert!(err.contains("probe"), "{err}");

    let err = answer(&HashMap::new(), &body("x", json!({})))
        .await
        .unwrap_err();
    assert!(err.contains("(registered: none)"), "{err}");

    let no_name = Map::from_iter([("message".to_owned(), json!({}))]);
    assert!(answer(&servers, &no_name).await.is_err());
}

#[tokio::test]
async fn answer_without_message_is_an_invalid_request() {
    let servers = HashMap::from([("probe".to_owned(), probe_server())]);
    let no_message = Map::from_iter([("server_name".to_owned(), json!("probe"))]);
    let response = answer(&servers, &no_message).await.unwrap().unwrap();
    assert_eq!(response["mcp_response"]["error"]["code"], -32600);
}

// ---- configuration -------------------------------------------------------------------------

#[test]
fn mcp_config_json_shapes() {
    let servers = BTreeMap::from([
        (
            "fs".to_owned(),
            McpServerConfig::stdio("npx", ["-y", "@mcp/fs"]).with_env("ROOT", "/tmp"),
        ),
        (
            "events".to_owned(),
            McpServerConfig::sse("https://e.example/sse").with_header("Authorization", "Bearer t"),
        ),
        (
            "api".to_owned(),
            McpServerConfig::http("https://a.example/mcp"),
        ),
        ("probe".to_owned(), probe_server().into()),
    ]);
    assert_eq!(
        mcp_config_json(&servers),
        json!({"mcpServers": {
            "fs": {"type": "stdio", "command": "npx", "args": ["-y", "@mcp/fs"], "env": {"ROOT": "/tmp"}},
            "events": {"type": "sse", "url": "https://e.example/sse", "headers": {"Authorization": "Bearer t"}},
            "api": {"type": "http", "url": "https://a.example/mcp", "headers": {}},
            "probe": {"type": "sdk", "name": "probe"},
        }})
    );
    let sdk = sdk_servers(&servers);
    assert_eq!(sdk.len(), 1);
    assert_eq!(sdk["probe"].name(), "probe");
    // The `name` of an SDK entry is its key, which is what the CLI routes on.
    let renamed = BTreeMap::from([("alias".to_owned(), McpServerConfig::Sdk(probe_server()))]);
    assert_eq!(
        mcp_config_json(&renamed)["mcpServers"]["alias"],
        json!({"type": "sdk", "name": "alias"})
    );
}

#[test]
fn mcp_server_config_serde() {
    let sdk = serde_json::to_value(McpServerConfig::from(probe_server())).unwrap();
    assert_eq!(sdk, json!({"type": "sdk", "name": "probe"}));

    let stdio: McpServerConfig = serde_json::from_value(json!({"command": "srv"})).unwrap();
    assert!(
        matches!(&stdio, McpServerConfig::Stdio { command, args, env } if command == "srv" && args.is_empty() && env.is_empty())
    );
    let http: McpServerConfig =
        serde_json::from_value(json!({"type": "http", "url": "u", "headers": {"k": "v"}})).unwrap();
    assert_eq!(
        serde_json::to_value(&http).unwrap(),
        json!({"type": "http", "url": "u", "headers": {"k": "v"}})
    );
    let sse: McpServerConfig = serde_json::from_value(json!({"type": "sse", "url": "u"})).unwrap();
    assert!(matches!(sse, McpServerConfig::Sse { .. }));

    assert!(
        serde_json::from_value::<McpServerConfig>(json!({"type": "sdk", "name": "x"})).is_err()
    );
    assert!(serde_json::from_value::<McpServerConfig>(json!({"type": "ws", "url": "u"})).is_err());
    assert!(serde_json::from_value::<McpServerConfig>(json!({"type": "http"})).is_err());
}

#[test]
fn with_env_and_with_header_ignore_other_kinds() {
    let http = McpServerConfig::http("u").with_env("K", "V");
    assert_eq!(
        serde_json::to_value(&http).unwrap(),
        json!({"type": "http", "url": "u", "headers": {}})
    );
    let stdio = McpServerConfig::stdio("c", Vec::<String>::new()).with_header("K", "V");
    assert_eq!(
        serde_json::to_value(&stdio).unwrap(),
        json!({"type": "stdio", "command": "c", "args": [], "env": {}})
    );
}

#[tokio::test]
async fn tool_call_directly() {
    let tool = search_tool();
    let out = tool
        .call(json!({"query": "q", "tags": ["a"]}))
        .await
        .unwrap();
    assert_eq!(out, ToolOutput::text("q x10"));
    let err = tool.call(json!({})).await.unwrap_err();
    assert!(err.message().starts_with("invalid arguments:"));
    assert_eq!(
        ToolOutput::from(ToolError::from("x")),
        ToolOutput::text("x").with_is_error(true)
    );
}

/// The re-exported `schemars` works for derives without a direct dependency.
#[derive(serde::Deserialize, crate::schemars::JsonSchema)]
#[schemars(crate = "crate::schemars")]
struct ViaReexport {
    #[allow(dead_code)]
    n: u8,
}

#[test]
fn reexported_schemars_derives() {
    let tool = SdkTool::typed("n", "d", |_: ViaReexport| async {
        Ok(ToolOutput::text(""))
    });
    assert_eq!(tool.input_schema()["required"], json!(["n"]));
}
