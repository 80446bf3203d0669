//! JSON-RPC dispatch of one tunnelled MCP message, with rmcp's model types for every payload.
//!
//! Why not an rmcp server over an in-memory transport: each `mcp_message` must yield exactly one
//! answer, the CLI repeats `initialize` with the same ids (0 and 1) on a live session, ids may
//! repeat, and notifications need an ack the server would never send. A per-message dispatch is
//! stateless and has none of these problems; rmcp still provides the protocol types.

use std::sync::Arc;

use rmcp::model::{
    CallToolResult, ContentBlock, ErrorCode, ErrorData, Implementation, InitializeResult,
    ListToolsResult, MetaObject, ProtocolVersion, ServerCapabilities, Tool, ToolsCapability,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::tool::{SdkTool, ToolAnnotations, ToolContent, ToolOutput};

/// `_meta` key raising the CLI's inline size limit for one tool's results.
const MAX_RESULT_SIZE_META: &str = "anthropic/maxResultSizeChars";

/// What the dispatch needs of a server (so this module does not depend on `server`, which
/// calls it).
#[derive(Clone, Copy)]
pub(super) struct ServerView<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub instructions: Option<&'a str>,
    pub tools: &'a [SdkTool],
}

impl ServerView<'_> {
    fn tool(&self, name: &str) -> Option<&SdkTool> {
        self.tools.iter().find(|t| t.name() == name)
    }
}

pub(super) async fn dispatch(server: ServerView<'_>, message: Value) -> Value {
    let Value::Object(message) = message else {
        return error(
            Value::Null,
            invalid_request("a JSON-RPC message must be an object"),
        );
    };
    let id = message.get("id").cloned();
    let id_for_error = match &id {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return error(id_for_error, invalid_request("`jsonrpc` must be \"2.0\""));
    }
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return error(id_for_error, invalid_request("missing `method`"));
    };
    let id = match id {
        // A notification: nothing to answer, but the CLI waits for a control_response.
        None => return json!({"jsonrpc": "2.0", "result": {}}),
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(_) => {
            return error(
                Value::Null,
                invalid_request("`id` must be a string or a number"),
            );
        }
    };
    let params = match message.get("params") {
        Some(Value::Object(params)) => params.clone(),
        _ => Map::new(),
    };
    let result = match method {
        "initialize" => to_value(&initialize(server, &params)),
        "ping" => Ok(json!({})),
        "tools/list" => to_value(&list_tools(server)),
        "tools/call" => call_tool(server, &params).await,
        other => Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("method not found: {other}"),
            None,
        )),
    };
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(data) => error(id, data),
    }
}

fn error(id: Value, data: ErrorData) -> Value {
    let data = serde_json::to_value(&data)
        .unwrap_or_else(|_| json!({"code": data.code.0, "message": data.message.as_ref() as &str}));
    json!({"jsonrpc": "2.0", "id": id, "error": data})
}

fn invalid_request(why: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_REQUEST,
        format!("invalid JSON-RPC request: {why}"),
        None,
    )
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(value).map_err(|e| {
        ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            format!("could not serialize the result: {e}"),
            None,
        )
    })
}

/// The client's version when this server knows it and it still has an `initialize` handshake,
/// else the newest such version.
fn negotiate(requested: Option<&str>) -> ProtocolVersion {
    let latest = ProtocolVersion::LATEST_WITH_INITIALIZE;
    ProtocolVersion::known_up_to(&latest)
        .iter()
        .find(|v| Some(v.as_str()) == requested)
        .cloned()
        .unwrap_or(latest)
}

fn initialize(server: ServerView<'_>, params: &Map<String, Value>) -> InitializeResult {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    // (`ServerCapabilities::builder()` needs rmcp's `macros` feature; the fields are public.)
    let mut capabilities = ServerCapabilities::default();
    capabilities.tools = Some(ToolsCapability::default());
    let mut result = InitializeResult::new(capabilities)
        .with_protocol_version(negotiate(requested))
        .with_server_info(Implementation::new(server.name, server.version));
    if let Some(instructions) = server.instructions {
        result = result.with_instructions(instructions);
    }
    result
}

fn list_tools(server: ServerView<'_>) -> ListToolsResult {
    let mut result = ListToolsResult::with_all_items(server.tools.iter().map(to_tool).collect());
    // `resultType` belongs to protocol 2026-07-28, which has no `initialize`: never negotiated.
    result.result_type = None;
    result
}

fn to_tool(tool: &SdkTool) -> Tool {
    let mut out = Tool::new(
        tool.name().to_owned(),
        tool.description().to_owned(),
        Arc::new(tool.input_schema().clone()),
    );
    if let Some(a) = tool.tool_annotations() {
        out = out.with_annotations(to_annotations(a));
    }
    if let Some(chars) = tool.result_size_limit() {
        let mut meta = Map::new();
        meta.insert(MAX_RESULT_SIZE_META.into(), json!(chars));
        out = out.with_meta(MetaObject(meta));
    }
    out
}

fn to_annotations(a: &ToolAnnotations) -> rmcp::model::ToolAnnotations {
    rmcp::model::ToolAnnotations::from_raw(
        a.title.clone(),
        a.read_only_hint,
        a.destructive_hint,
        a.idempotent_hint,
        a.open_world_hint,
    )
}

async fn call_tool(
    server: ServerView<'_>,
    params: &Map<String, Value>,
) -> Result<Value, ErrorData> {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err(ErrorData::new(
            ErrorCode::INVALID_PARAMS,
            "tools/call needs a string `name`",
            None,
        ));
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(arguments) => arguments.clone(),
    };
    let output = match server.tool(name) {
        Some(tool) => tool.call(arguments).await.unwrap_or_else(ToolOutput::from),
        None => {
            let known: Vec<&str> = server.tools.iter().map(SdkTool::name).collect();
            ToolOutput::text(format!(
                "unknown tool `{name}` on MCP server `{}` (its tools: {})",
                server.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
            .with_is_error(true)
        }
    };
    call_result(output)
}

fn call_result(output: ToolOutput) -> Result<Value, ErrorData> {
    let mut result = if output.is_error {
        CallToolResult::error(Vec::new())
    } else {
        CallToolResult::success(Vec::new())
    };
    result.result_type = None;
    let content = output
        .content
        .into_iter()
        .map(|block| match block {
            ToolContent::Text(text) => to_value(&ContentBlock::text(text)),
            ToolContent::Image { data, mime_type } => {
                to_value(&ContentBlock::image(data, mime_type))
            }
            ToolContent::Raw(value) => Ok(value),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut result = to_value(&result)?;
    if let Value::Object(map) = &mut result {
        map.insert("content".into(), Value::Array(content));
    }
    Ok(result)
}
