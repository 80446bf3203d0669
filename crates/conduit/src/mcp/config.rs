//! MCP server configurations handed to the CLI with `--mcp-config`.

use std::collections::{BTreeMap, HashMap};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::server::SdkMcpServer;

/// One MCP server for the CLI: an external one it starts or connects to itself, or an in-process
/// [`SdkMcpServer`].
///
/// Serializes to the CLI's `--mcp-config` entry shape:
/// `{"type":"stdio","command":…,"args":[…],"env":{…}}`, `{"type":"sse","url":…,"headers":{…}}`,
/// `{"type":"http","url":…,"headers":{…}}`, `{"type":"sdk","name":…}`. Deserializing accepts
/// the external shapes (a missing `type` means stdio, as in `.mcp.json`) and rejects `sdk`
/// entries, whose tools only exist in code.
#[derive(Debug, Clone)]
pub enum McpServerConfig {
    /// A server the CLI spawns and talks to over stdio.
    Stdio {
        /// Program to run.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables.
        env: BTreeMap<String, String>,
    },
    /// A server reached over server-sent events.
    Sse {
        /// Endpoint URL.
        url: String,
        /// Extra HTTP headers.
        headers: BTreeMap<String, String>,
    },
    /// A server reached over streamable HTTP.
    Http {
        /// Endpoint URL.
        url: String,
        /// Extra HTTP headers.
        headers: BTreeMap<String, String>,
    },
    /// An in-process server, answered through `mcp_message` control requests.
    Sdk(SdkMcpServer),
}

impl McpServerConfig {
    /// A stdio server: `command` with `args`, no extra environment.
    pub fn stdio<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Stdio {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
        }
    }

    /// An SSE server at `url`.
    pub fn sse(url: impl Into<String>) -> Self {
        Self::Sse {
            url: url.into(),
            headers: BTreeMap::new(),
        }
    }

    /// A streamable-HTTP server at `url`.
    pub fn http(url: impl Into<String>) -> Self {
        Self::Http {
            url: url.into(),
            headers: BTreeMap::new(),
        }
    }

    /// Adds an environment variable (stdio servers only; other kinds are returned unchanged).
    #[must_use]
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let Self::Stdio { env, .. } = &mut self {
            env.insert(key.into(), value.into());
        }
        self
    }

    /// Adds an HTTP header (SSE and HTTP servers only; other kinds are returned unchanged).
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let Self::Sse { headers, .. } | Self::Http { headers, .. } = &mut self {
            headers.insert(key.into(), value.into());
        }
        self
    }

    /// The in-process server, for [`McpServerConfig::Sdk`].
    pub fn as_sdk(&self) -> Option<&SdkMcpServer> {
        match self {
            Self::Sdk(server) => Some(server),
            _ => None,
        }
    }

    /// The `--mcp-config` entry; an SDK server is named `sdk_name`.
    fn entry(&self, sdk_name: &str) -> Value {
        match self {
            Self::Stdio { command, args, env } => {
                json!({"type": "stdio", "command": command, "args": args, "env": env})
            }
            Self::Sse { url, headers } => json!({"type": "sse", "url": url, "headers": headers}),
            Self::Http { url, headers } => json!({"type": "http", "url": url, "headers": headers}),
            Self::Sdk(_) => json!({"type": "sdk", "name": sdk_name}),
        }
    }
}

impl From<SdkMcpServer> for McpServerConfig {
    fn from(server: SdkMcpServer) -> Self {
        Self::Sdk(server)
    }
}

impl Serialize for McpServerConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sdk_name = self.as_sdk().map(SdkMcpServer::name).unwrap_or_default();
        self.entry(sdk_name).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for McpServerConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stdio {
            command: String,
            #[serde(default)]
            args: Vec<String>,
            #[serde(default)]
            env: BTreeMap<String, String>,
        }
        #[derive(Deserialize)]
        struct Remote {
            url: String,
            #[serde(default)]
            headers: BTreeMap<String, String>,
        }
        let value = Value::deserialize(deserializer)?;
        let kind = match value.get("type") {
            None => "stdio",
            Some(Value::String(kind)) => kind.as_str(),
            Some(_) => return Err(D::Error::custom("MCP server `type` must be a string")),
        };
        let parsed = match kind {
            "stdio" => serde_json::from_value::<Stdio>(value).map(|s| Self::Stdio {
                command: s.command,
                args: s.args,
                env: s.env,
            }),
            "sse" => serde_json::from_value::<Remote>(value).map(|r| Self::Sse {
                url: r.url,
                headers: r.headers,
            }),
            "http" => serde_json::from_value::<Remote>(value).map(|r| Self::Http {
                url: r.url,
                headers: r.headers,
            }),
            "sdk" => {
                return Err(D::Error::custom(
                    "SDK MCP servers cannot be deserialized: build them with SdkMcpServer::builder",
                ));
            }
            other => {
                return Err(D::Error::custom(format!(
                    "unknown MCP server type `{other}` (expected stdio, sse, http or sdk)"
                )));
            }
        };
        parsed.map_err(D::Error::custom)
    }
}

/// The `--mcp-config` JSON for `servers`: `{"mcpServers":{<name>: <entry>}}`.
///
/// SDK servers appear as `{"type":"sdk","name":<key>}`; the CLI sends that key as the
/// `server_name` of its `mcp_message` requests, so keep it equal to [`SdkMcpServer::name`]
/// (and route with [`sdk_servers`]).
pub fn mcp_config_json(servers: &BTreeMap<String, McpServerConfig>) -> Value {
    let entries: serde_json::Map<String, Value> = servers
        .iter()
        .map(|(name, config)| (name.clone(), config.entry(name)))
        .collect();
    json!({"mcpServers": entries})
}

/// The in-process servers of `servers`, keyed as in the config (what [`answer`](super::answer)
/// routes on).
pub fn sdk_servers(servers: &BTreeMap<String, McpServerConfig>) -> HashMap<String, SdkMcpServer> {
    servers
        .iter()
        .filter_map(|(name, config)| Some((name.clone(), config.as_sdk()?.clone())))
        .collect()
}
