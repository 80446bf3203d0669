//! `plugin.toml`: what a plugin is, what it needs and how it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// The manifest's file name in a plugin's directory.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Which runtime runs a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// A Rhai script (`entry` = the script file), cargo feature `rhai`.
    Rhai,
    /// A coprocessor: any program speaking JSON lines on stdin/stdout (`entry` = the command).
    Process,
    /// A Rust plugin registered in code (`entry` = the name it was registered under).
    Native,
}

impl Runtime {
    /// `"rhai"`, `"process"` or `"native"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Rhai => "rhai",
            Runtime::Process => "process",
            Runtime::Native => "native",
        }
    }
}

/// What a failing call of the plugin (a script error, a limit hit, a coprocessor that is down,
/// crashed or timed out) counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// No opinion (fail open): logged, counted and reported; the CLI goes on as without it.
    #[default]
    Ignore,
    /// Fail closed: a `PreToolUse` (or `PermissionRequest`) call denies, with the error as the
    /// reason. Other events get no opinion.
    Deny,
}

/// `entry`: one string (a script, a native name, or a program without arguments) or a command
/// with arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// One string.
    One(String),
    /// A program and its arguments.
    Command(Vec<String>),
}

impl Entry {
    /// The program (or script, or native name) and the arguments.
    pub fn split(&self) -> (&str, &[String]) {
        match self {
            Entry::One(s) => (s.as_str(), &[]),
            Entry::Command(v) => match v.split_first() {
                Some((first, rest)) => (first.as_str(), rest),
                None => ("", &[]),
            },
        }
    }
}

/// `[limits]`: resource limits. Rhai uses the first six, coprocessors the last three.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Rhai: operations per call.
    pub max_operations: u64,
    /// Rhai: function call depth.
    pub max_call_depth: usize,
    /// Rhai: bytes of one string.
    pub max_string_size: usize,
    /// Rhai: items of one array.
    pub max_array_size: usize,
    /// Rhai: entries of one object map.
    pub max_map_size: usize,
    /// Rhai: wall time of one call, in milliseconds.
    pub max_wall_ms: u64,
    /// Coprocessor: address space in MiB (`RLIMIT_AS`; 0 = unlimited).
    pub memory_mb: u64,
    /// Coprocessor: CPU seconds (`RLIMIT_CPU`; 0 = unlimited).
    pub cpu_secs: u64,
    /// Coprocessor: open files (`RLIMIT_NOFILE`; 0 = unlimited).
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 1_000_000,
            max_call_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
            max_wall_ms: 1_000,
            memory_mb: 1024,
            cpu_secs: 0,
            open_files: 256,
        }
    }
}

/// `[contributes]`: what the plugin declares it contributes. Optional; when given, init fails
/// if the plugin does not provide what it declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Declared {
    /// CLI hook events (`PreToolUse`, …).
    pub hooks: Vec<String>,
    /// MCP tool names.
    pub tools: Vec<String>,
    /// A `can_use_tool` permission policy.
    pub can_use_tool: bool,
    /// Frame types it handles as a protocol extension.
    pub frames: Vec<String>,
}

/// `[[messages]]`: a custom message type the plugin declares, with a JSON Schema file and an
/// optional handler (a protocol extension for frames of that type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageType {
    /// The frame's `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Only frames with this `subtype`.
    #[serde(default)]
    pub subtype: Option<String>,
    /// A JSON Schema file (relative to the plugin's directory) frames of this type must pass.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Rhai: the function handling frames of this type (`fn name(frame, direction)`).
    #[serde(default)]
    pub handler: Option<String>,
}

impl MessageType {
    /// `type` or `type/subtype`.
    pub fn name(&self) -> String {
        match &self.subtype {
            Some(s) => format!("{}/{s}", self.type_),
            None => self.type_.clone(),
        }
    }
}

/// A parsed `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name (letters, digits, `-`, `_`; it names its MCP server too).
    pub name: String,
    /// Its version (semver).
    pub version: semver::Version,
    /// Its runtime.
    pub runtime: Runtime,
    /// Script file, command, or native name.
    pub entry: Entry,
    /// One line about it.
    #[serde(default)]
    pub description: Option<String>,
    /// Plugins it needs: name → semver requirement (`"^1.2"`).
    #[serde(default)]
    pub depends: BTreeMap<String, semver::VersionReq>,
    /// A JSON Schema for its configuration (inline), validated before init.
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// The event-bus priority of its hook handlers (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// What a failing call counts as.
    #[serde(default)]
    pub on_error: OnError,
    /// Per call (hook or tool), milliseconds (coprocessors; Rhai uses `limits.max_wall_ms`).
    #[serde(default = "default_call_ms")]
    pub timeout_ms: u64,
    /// Initialize, milliseconds.
    #[serde(default = "default_init_ms")]
    pub init_timeout_ms: u64,
    /// Cleanup, milliseconds.
    #[serde(default = "default_init_ms")]
    pub cleanup_timeout_ms: u64,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// What it declares it contributes.
    #[serde(default)]
    pub contributes: Declared,
    /// Custom message types.
    #[serde(default)]
    pub messages: Vec<MessageType>,
}

fn default_call_ms() -> u64 {
    10_000
}
fn default_init_ms() -> u64 {
    5_000
}

/// A problem with a manifest, at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// Its line (1-based; 1 when the whole file is meant).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Manifest {
    /// Parse `text` (the contents of `file`, named in errors).
    pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
        let err = |line: usize, message: String| ManifestError {
            file: file.to_owned(),
            line,
            message,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            err(line, e.message().trim().to_owned())
        })?;
        let line_of = |key: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(key))
                .map_or(1, |i| i + 1)
        };
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !valid_name(&manifest.name) {
            return Err(err(
                line_of("name"),
                format!(
                    "plugin name `{}`: use 1 to 64 letters, digits, `-` or `_`",
                    manifest.name
                ),
            ));
        }
        if manifest.entry.split().0.is_empty() {
            return Err(err(line_of("entry"), "`entry` is empty".into()));
        }
        if let Some(schema) = &manifest.config
            && !matches!(schema, toml::Value::Table(_))
        {
            return Err(err(
                line_of("config"),
                "`config` must be a table (a JSON Schema)".into(),
            ));
        }
        for h in &manifest.contributes.hooks {
            if crate::hooks::HookEvent::known(h).is_none() {
                return Err(err(
                    line_of("hooks"),
                    format!("`contributes.hooks`: unknown hook event `{h}`"),
                ));
            }
        }
        for m in &manifest.messages {
            if m.type_.is_empty() {
                return Err(err(
                    line_of("[[messages]]"),
                    "`messages`: an empty `type`".into(),
                ));
            }
            if m.handler.is_some() && manifest.runtime != Runtime::Rhai {
                return Err(err(
                    line_of("handler"),
                    format!(
                        "`messages` `{}`: `handler` names a Rhai function; a {} plugin handles \
                         frames in code (native) or in its hello (process)",
                        m.name(),
                        manifest.runtime.as_str()
                    ),
                ));
            }
            if let Some(schema) = &m.schema
                && (schema.is_absolute()
                    || schema
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir)))
            {
                return Err(err(
                    line_of("schema"),
                    format!(
                        "`messages` `{}`: `schema` must be a path inside the plugin's directory",
                        m.name()
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// Read and parse `dir/plugin.toml`.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let file = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| ManifestError {
            file: file.clone(),
            line: 1,
            message: format!("cannot read: {e}"),
        })?;
        Manifest::parse(&text, &file)
    }

    /// The configuration schema as JSON.
    pub fn config_schema(&self) -> Option<Value> {
        self.config
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
    }

    /// A minimal manifest for code (native plugins registered without a file).
    pub fn new(name: impl Into<String>, version: semver::Version, runtime: Runtime) -> Manifest {
        let name = name.into();
        Manifest {
            entry: Entry::One(name.clone()),
            name,
            version,
            runtime,
            description: None,
            depends: BTreeMap::new(),
            config: None,
            priority: 0,
            on_error: OnError::Ignore,
            timeout_ms: default_call_ms(),
            init_timeout_ms: default_init_ms(),
            cleanup_timeout_ms: default_init_ms(),
            limits: Limits::default(),
            contributes: Declared::default(),
            messages: Vec::new(),
        }
    }

    /// Add a dependency (builder style, for code).
    pub fn depends_on(mut self, name: impl Into<String>, req: semver::VersionReq) -> Manifest {
        self.depends.insert(name.into(), req);
        self
    }

    pub(crate) fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
    pub(crate) fn init_timeout(&self) -> Duration {
        Duration::from_millis(self.init_timeout_ms.max(1))
    }
    pub(crate) fn cleanup_timeout(&self) -> Duration {
        Duration::from_millis(self.cleanup_timeout_ms.max(1))
    }
}
