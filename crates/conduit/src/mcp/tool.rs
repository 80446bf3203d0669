//! Tools of an in-process MCP server: declaration ([`SdkTool`]), results ([`ToolOutput`],
//! [`ToolContent`]), failures ([`ToolError`]) and hints ([`ToolAnnotations`]).

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Map, Value};

/// One block of a tool result, as the model sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ToolContent {
    /// `{"type":"text","text":…}`.
    Text(String),
    /// `{"type":"image","data":<base64>,"mimeType":…}`.
    Image {
        /// Base64-encoded image bytes.
        data: String,
        /// MIME type, such as `image/png`.
        mime_type: String,
    },
    /// Any other MCP content block, sent as given (for example
    /// `{"type":"resource_link",…}`).
    Raw(Value),
}

impl ToolContent {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// An image block from base64 data and its MIME type.
    pub fn image(data: impl Into<String>, mime_type: impl Into<String>) -> Self {
        Self::Image {
            data: data.into(),
            mime_type: mime_type.into(),
        }
    }
}

/// What a tool handler returns: content blocks and whether they describe a failure.
///
/// `is_error: true` still reaches the model (as an error tool result); prefer returning a
/// [`ToolError`] when the message is a single line of text.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ToolOutput {
    /// The content blocks, in order.
    pub content: Vec<ToolContent>,
    /// Marks the result as a tool-level error (`"isError": true`).
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result made of `content`.
    pub fn new(content: Vec<ToolContent>) -> Self {
        Self {
            content,
            is_error: false,
        }
    }

    /// A successful result holding one text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(vec![ToolContent::text(text)])
    }

    /// A successful result holding one image block.
    pub fn image(data: impl Into<String>, mime_type: impl Into<String>) -> Self {
        Self::new(vec![ToolContent::image(data, mime_type)])
    }

    /// A successful result holding one raw MCP content block.
    pub fn raw(block: Value) -> Self {
        Self::new(vec![ToolContent::Raw(block)])
    }

    /// Appends a content block.
    #[must_use]
    pub fn with(mut self, block: ToolContent) -> Self {
        self.content.push(block);
        self
    }

    /// Sets the `isError` flag.
    #[must_use]
    pub fn with_is_error(mut self, is_error: bool) -> Self {
        self.is_error = is_error;
        self
    }
}

impl From<String> for ToolOutput {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<&str> for ToolOutput {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

/// A tool failure the model should see: it becomes
/// `{"content":[{"type":"text","text":<message>}],"isError":true}`, never a JSON-RPC error.
///
/// Build one from anything printable: `.map_err(ToolError::new)?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    message: String,
}

impl ToolError {
    /// A failure with `message` (anything that implements `Display`, errors included).
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The text the model will see.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ToolError {}

impl From<String> for ToolError {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<&str> for ToolError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<ToolError> for ToolOutput {
    fn from(error: ToolError) -> Self {
        Self::text(error.message).with_is_error(true)
    }
}

/// MCP tool annotations: hints for the client, all optional (serialized in camelCase, unset
/// hints omitted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolAnnotations {
    /// A human-readable title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The tool does not modify its environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// The tool may perform destructive updates (meaningful when not read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// Repeating a call with the same arguments has no further effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// The tool talks to an open world of external entities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

impl ToolAnnotations {
    /// No hints set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the title.
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets `readOnlyHint`.
    #[must_use]
    pub fn read_only(mut self, value: bool) -> Self {
        self.read_only_hint = Some(value);
        self
    }

    /// Sets `destructiveHint`.
    #[must_use]
    pub fn destructive(mut self, value: bool) -> Self {
        self.destructive_hint = Some(value);
        self
    }

    /// Sets `idempotentHint`.
    #[must_use]
    pub fn idempotent(mut self, value: bool) -> Self {
        self.idempotent_hint = Some(value);
        self
    }

    /// Sets `openWorldHint`.
    #[must_use]
    pub fn open_world(mut self, value: bool) -> Self {
        self.open_world_hint = Some(value);
        self
    }
}

type Handler =
    Arc<dyn Fn(Value) -> BoxFuture<'static, Result<ToolOutput, ToolError>> + Send + Sync>;

/// One tool of an [`SdkMcpServer`](super::SdkMcpServer): name, description, JSON Schema of its
/// input and an async handler.
///
/// Cheap to clone (the handler is shared).
#[derive(Clone)]
pub struct SdkTool {
    name: String,
    description: String,
    input_schema: Arc<Map<String, Value>>,
    annotations: Option<ToolAnnotations>,
    max_result_size_chars: Option<u64>,
    handler: Handler,
}

impl fmt::Debug for SdkTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkTool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("input_schema", &self.input_schema)
            .field("annotations", &self.annotations)
            .field("max_result_size_chars", &self.max_result_size_chars)
            .finish_non_exhaustive()
    }
}

impl SdkTool {
    /// A tool taking raw JSON arguments.
    ///
    /// `input_schema` is either
    /// * a **full JSON Schema** of the arguments: a JSON object with both a `type` and a
    ///   `properties` key, such as
    ///   `{"type":"object","properties":{"a":{"type":"number"}},"required":["a"]}`, used as
    ///   given; or
    /// * the Python SDK's **shorthand**, any other JSON object: property name → type, such as
    ///   `{"a": "number", "b": "number"}`. Each property becomes required; a type is a JSON
    ///   Schema type name (`string`, `number`, `integer`, `boolean`, `object`, `array`, `null`)
    ///   or a Python name for one (`str`, `float`, `int`, `bool`, `dict`, `list`), and a value
    ///   that is itself an object (`{"type":"string","description":"…"}`) is that property's
    ///   schema. `{}` is a tool without arguments.
    ///
    /// Anything that is not a JSON object is replaced by an empty object schema (with a
    /// warning). Before the handler runs, the arguments are checked against the schema's top
    /// level: they must be an object, every `required` property must be present and top-level
    /// properties must have their declared primitive `type`. A failed check becomes an error
    /// result starting with `invalid arguments:`.
    ///
    /// ```
    /// use claude_conduit::mcp::{SdkTool, ToolOutput};
    /// use serde_json::{Value, json};
    ///
    /// let add = SdkTool::new(
    ///     "add",
    ///     "Add two numbers",
    ///     json!({"a": "number", "b": "number"}),
    ///     |args: Value| async move {
    ///         let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
    ///         Ok(ToolOutput::text(sum.to_string()))
    ///     },
    /// );
    /// assert_eq!(add.input_schema()["properties"]["a"], json!({"type": "number"}));
    /// assert_eq!(add.input_schema()["required"], json!(["a", "b"]));
    /// ```
    pub fn new<F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        handler: F,
    ) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
    {
        let name = name.into();
        let schema = match input_schema {
            Value::Object(map) if map.contains_key("type") && map.contains_key("properties") => map,
            Value::Object(shorthand) => schema_from_shorthand(shorthand),
            other => {
                tracing::warn!(
                    tool = %name,
                    schema = %other,
                    "SDK MCP tool input schema is not a JSON object; using an empty object schema"
                );
                empty_object_schema()
            }
        };
        let schema = Arc::new(schema);
        let checked = Arc::clone(&schema);
        Self::from_parts(name, description.into(), schema, move |arguments: Value| {
            let checked = check_arguments(&checked, &arguments);
            let call = checked.map(|()| handler(arguments));
            async move {
                match call {
                    Ok(call) => call.await,
                    Err(problem) => Err(ToolError::new(format!("invalid arguments: {problem}"))),
                }
            }
        })
    }

    /// A tool whose arguments deserialize into `A`; the input schema is generated from `A` with
    /// schemars (JSON Schema 2020-12, root `title`/`description` removed).
    ///
    /// `A` should be a struct (MCP requires an object schema). Arguments that do not deserialize
    /// become an error result `invalid arguments: <serde error>` the model can act on.
    ///
    /// ```
    /// use claude_conduit::mcp::{SdkTool, ToolOutput};
    ///
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Greet {
    ///     /// Who to greet.
    ///     name: String,
    /// }
    ///
    /// let tool = SdkTool::typed("greet", "Say hello", |args: Greet| async move {
    ///     Ok(ToolOutput::text(format!("hello, {}", args.name)))
    /// });
    /// assert_eq!(tool.input_schema()["required"], serde_json::json!(["name"]));
    /// ```
    #[cfg(feature = "mcp")]
    pub fn typed<A, F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        A: serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
    {
        let name = name.into();
        let schema = Arc::new(input_schema_for::<A>(&name));
        Self::from_parts(name, description.into(), schema, move |arguments: Value| {
            let call = serde_json::from_value::<A>(arguments).map(&handler);
            async move {
                match call {
                    Ok(call) => call.await,
                    Err(error) => Err(ToolError::new(format!("invalid arguments: {error}"))),
                }
            }
        })
    }

    fn from_parts<F, Fut>(
        name: String,
        description: String,
        input_schema: Arc<Map<String, Value>>,
        handler: F,
    ) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
    {
        Self {
            name,
            description,
            input_schema,
            annotations: None,
            max_result_size_chars: None,
            handler: Arc::new(move |arguments| handler(arguments).boxed()),
        }
    }

    /// Sets the MCP annotations (`readOnlyHint`, `destructiveHint`, …) listed by `tools/list`.
    #[must_use]
    pub fn annotations(mut self, annotations: ToolAnnotations) -> Self {
        self.annotations = Some(annotations);
        self
    }

    /// Raises the size (in characters) up to which the CLI keeps this tool's result inline
    /// instead of spilling it to a file; sent as `_meta["anthropic/maxResultSizeChars"]`.
    #[must_use]
    pub fn max_result_size_chars(mut self, chars: u64) -> Self {
        self.max_result_size_chars = Some(chars);
        self
    }

    /// The tool's name inside its server (the CLI calls it `mcp__<server>__<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description shown to the model.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The JSON Schema of the arguments.
    pub fn input_schema(&self) -> &Map<String, Value> {
        &self.input_schema
    }

    /// The annotations, if set.
    pub fn tool_annotations(&self) -> Option<&ToolAnnotations> {
        self.annotations.as_ref()
    }

    /// The `maxResultSizeChars` hint, if set.
    pub fn result_size_limit(&self) -> Option<u64> {
        self.max_result_size_chars
    }

    /// Runs the handler on `arguments` (argument checks included). A panic in the handler is
    /// caught and returned as a [`ToolError`] naming the tool and the panic message.
    pub async fn call(&self, arguments: Value) -> Result<ToolOutput, ToolError> {
        let handler = Arc::clone(&self.handler);
        let run = AssertUnwindSafe(async move { handler(arguments).await });
        match run.catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(ToolError::new(format!(
                "tool `{}` panicked: {}",
                self.name,
                panic_message(panic.as_ref())
            ))),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "non-string panic payload"
    }
}

fn empty_object_schema() -> Map<String, Value> {
    let mut schema = Map::new();
    schema.insert("type".into(), Value::String("object".into()));
    schema.insert("properties".into(), Value::Object(Map::new()));
    schema
}

/// The object schema the Python SDK's `{name: type}` shorthand stands for: every property
/// required, Python type names mapped to JSON Schema ones, object values used as given.
fn schema_from_shorthand(shorthand: Map<String, Value>) -> Map<String, Value> {
    let mut schema = empty_object_schema();
    let required: Vec<Value> = shorthand.keys().cloned().map(Value::String).collect();
    let properties: Map<String, Value> = shorthand
        .into_iter()
        .map(|(key, ty)| {
            let property = match ty {
                Value::String(name) => {
                    let json_name = match name.as_str() {
                        "str" => "string",
                        "float" => "number",
                        "int" => "integer",
                        "bool" => "boolean",
                        "dict" => "object",
                        "list" => "array",
                        "None" => "null",
                        other => other,
                    };
                    serde_json::json!({ "type": json_name })
                }
                Value::Object(map) => Value::Object(map),
                // `null`, numbers, arrays: no constraint on this property.
                _ => Value::Object(Map::new()),
            };
            (key, property)
        })
        .collect();
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    schema
}

/// The input schema of a typed tool: draft 2020-12, root title/description stripped (as rmcp's
/// own `#[tool]` macro does).
#[cfg(feature = "mcp")]
fn input_schema_for<A: schemars::JsonSchema>(tool: &str) -> Map<String, Value> {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<A>();
    match serde_json::to_value(schema) {
        Ok(Value::Object(mut map)) => {
            map.remove("title");
            map.remove("description");
            if map.get("type").and_then(Value::as_str) != Some("object") {
                tracing::warn!(
                    tool,
                    "typed SDK MCP tool input is not an object type; MCP requires an object schema"
                );
            }
            map
        }
        _ => {
            tracing::warn!(
                tool,
                "could not generate an input schema; using an empty one"
            );
            empty_object_schema()
        }
    }
}

/// Shallow check of `arguments` against the top level of an object schema.
fn check_arguments(schema: &Map<String, Value>, arguments: &Value) -> Result<(), String> {
    let Value::Object(arguments) = arguments else {
        return Err(format!(
            "expected a JSON object, got {}",
            json_type(arguments)
        ));
    };
    if let Some(Value::Array(required)) = schema.get("required") {
        let missing: Vec<&str> = required
            .iter()
            .filter_map(Value::as_str)
            .filter(|key| !arguments.contains_key(*key))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing required propert{} {}",
                if missing.len() == 1 { "y" } else { "ies" },
                missing
                    .iter()
                    .map(|key| format!("`{key}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (key, value) in arguments {
            let Some(expected) = properties.get(key).and_then(|p| p.get("type")) else {
                continue;
            };
            let allowed: Vec<&str> = match expected {
                Value::String(t) => vec![t.as_str()],
                Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
                _ => continue,
            };
            if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
                return Err(format!(
                    "property `{key}` should be {}, got {}",
                    allowed.join(" or "),
                    json_type(value)
                ));
            }
        }
    }
    Ok(())
}

fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
