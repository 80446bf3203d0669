//! [`Policy`]: what a remote client may set on the sessions it creates.
//!
//! A client's [`SessionRequest`] carries CLI flags (`--flag=value` / `--flag`) and a working
//! directory. The gateway starts from its own options template (CLI path, environment, limits)
//! and adds the flags the policy accepts; anything else refuses the whole request with
//! [`GatewayError::InvalidOptions`] naming the flag (HTTP 400, gRPC `INVALID_ARGUMENT`).
//!
//! Flags the template sets are the operator's: a client flag of the same name is refused unless
//! the policy marks it [overridable](Policy::overridable_flag) (then it comes later on the command
//! line and wins). A client flag with exactly the template's value, or with the SDK's default
//! value (`--system-prompt=`), is dropped instead: it asks for nothing.
//!
//! # Default policy
//!
//! | flags | rule |
//! |---|---|
//! | `model`, `fallback-model`, `system-prompt`, `append-system-prompt`, `betas`, `tools`, `allowedTools`, `disallowedTools`, `json-schema` (JSON), `thinking` (`adaptive`/`disabled`), `max-thinking-tokens`, `thinking-display`, `effort`, `max-turns`, `max-budget-usd`, `task-budget` (numbers), `setting-sources` (`user`,`project`,`local`) | allowed |
//! | `include-partial-messages`, `include-hook-events`, `replay-user-messages`, `no-session-persistence`, `strict-mcp-config`, `fork-session` | allowed, no value |
//! | `resume`, `session-id`, `resume-session-at`, `resume-drops-turn` | allowed when the value is an id (letters, digits, `-`, `_`; no paths) |
//! | `permission-prompt-tool` | only `stdio` (the client's own permission callback) |
//! | `permission-mode` | one of [`Policy::permission_modes`] (default `default`, `acceptEdits`, `plan`, `dontAsk`); `bypassPermissions` only with [`Policy::allow_dangerously_skip_permissions`] |
//! | `dangerously-skip-permissions`, `allow-dangerously-skip-permissions` | only with [`Policy::allow_dangerously_skip_permissions`] |
//! | `mcp-config` | inline JSON whose servers are all `{"type":"sdk",…}` (in-process servers, which run in the client); anything else (external servers, a path) only with [`Policy::allow_external_mcp`] |
//! | `add-dir` | a directory under one of the [cwd roots](Policy::cwd_root) (none by default: refused) |
//! | everything else (`settings`, `system-prompt-file`, `plugin-dir`, `continue`, `mcp-config` paths, unknown flags, …) | refused unless named in [`Policy::allow_flag`] |
//!
//! `continue` is refused by default because it resumes the most recent conversation in the
//! working directory, which may be another client's.
//!
//! The working directory: without cwd roots (the default) a client cannot set it and the
//! template's is used. With roots, it must be an absolute path that lies under a root once `.`
//! and `..` are resolved on the string (checked before anything on disk is looked at), of an
//! existing directory reached without any symbolic link; see [`crate::dirs`] for how it is
//! opened once and handed to the CLI without a race.
//!
//! [`Policy::deny_flag`] removes a flag from everything above (it is then always refused).
//!
//! The rules come from the SDK's flag table ([`claude_conduit::options::flags::FLAGS`]), the one
//! [`Options::argv`] writes from: each flag's arity and [`RemoteRule`]. The stream-json flags
//! (`output-format`, `input-format`, `verbose`) are [`RemoteRule::Fixed`]: the gateway sets them
//! itself and never takes them from a client, whatever [`Policy::allow_flag`] says.

use std::collections::BTreeSet;
use std::path::PathBuf;

use claude_conduit::Options;
use claude_conduit::options::PermissionMode;
use claude_conduit::options::flags::{self, Arity, Flag, RemoteRule};
use claude_conduit::remote::SessionRequest;
use serde_json::Value;

use crate::GatewayError;
use crate::dirs::{self, PinnedDir};

/// The permission modes a client may pick by default.
pub const DEFAULT_PERMISSION_MODES: [PermissionMode; 4] = [
    PermissionMode::Default,
    PermissionMode::AcceptEdits,
    PermissionMode::Plan,
    PermissionMode::DontAsk,
];

/// What a remote client may set. The [`Default`] is the safe policy described in the module
/// docs; loosen it with the setters.
#[derive(Debug, Clone)]
pub struct Policy {
    cwd_roots: Vec<PathBuf>,
    permission_modes: Vec<PermissionMode>,
    allowed_flags: BTreeSet<String>,
    denied_flags: BTreeSet<String>,
    allow_dangerously_skip_permissions: bool,
    allow_external_mcp: bool,
    /// The control subtypes clients may send (`None`: the default list of
    /// [`crate::control_policy`]).
    control_subtypes: Option<BTreeSet<String>>,
    overridable: BTreeSet<String>,
}

/// A request checked against the policy: the options, the opened working directory (kept open
/// until the CLI has started) and the conversation ids the request names.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) options: Options,
    pub(crate) cwd: Option<PinnedDir>,
    /// `(flag, id)` for `--resume` and `--session-id`.
    pub(crate) conversations: Vec<(String, String)>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            cwd_roots: Vec::new(),
            permission_modes: DEFAULT_PERMISSION_MODES.to_vec(),
            allowed_flags: BTreeSet::new(),
            denied_flags: BTreeSet::new(),
            allow_dangerously_skip_permissions: false,
            allow_external_mcp: false,
            control_subtypes: None,
            overridable: BTreeSet::new(),
        }
    }
}

fn refuse(message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidOptions(message.into())
}

fn not_allowed(name: &str) -> GatewayError {
    refuse(format!(
        "flag `--{name}` is not allowed by this gateway's policy"
    ))
}

fn flag_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Policy {
    /// The safe default (see the module docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Let clients set their working directory (and `--add-dir`) to directories under `root`
    /// (may be called more than once).
    pub fn cwd_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.cwd_roots.push(root.into());
        self
    }

    /// Replace the cwd roots.
    pub fn cwd_roots<I: IntoIterator<Item = P>, P: Into<PathBuf>>(mut self, roots: I) -> Self {
        self.cwd_roots = roots.into_iter().map(Into::into).collect();
        self
    }

    /// The permission modes a client may ask for (replaces the default set).
    /// `bypassPermissions` counts only with [`Policy::allow_dangerously_skip_permissions`].
    pub fn permission_modes(mut self, modes: impl IntoIterator<Item = PermissionMode>) -> Self {
        self.permission_modes = modes.into_iter().collect();
        self
    }

    /// Allow this flag (name without `--`) with any value, e.g. `settings` or `continue`. Flags
    /// with a rule of their own (`permission-mode`, `permission-prompt-tool`, `mcp-config`,
    /// `add-dir`, the dangerous ones) keep their rule: use the dedicated setters.
    pub fn allow_flag(mut self, name: impl Into<String>) -> Self {
        self.allowed_flags
            .insert(name.into().trim_start_matches('-').to_owned());
        self
    }

    /// Always refuse this flag (name without `--`), even one the default allows.
    pub fn deny_flag(mut self, name: impl Into<String>) -> Self {
        self.denied_flags
            .insert(name.into().trim_start_matches('-').to_owned());
        self
    }

    /// Allow `bypassPermissions` and the `--dangerously-skip-permissions` flags. Off by default:
    /// a client could then run any tool on the gateway's machine without being asked.
    pub fn allow_dangerously_skip_permissions(mut self, on: bool) -> Self {
        self.allow_dangerously_skip_permissions = on;
        self
    }

    /// Allow MCP servers other than in-process SDK ones (`--mcp-config` with stdio, SSE or HTTP
    /// servers, or a path). Off by default: a stdio server is a program the gateway runs.
    pub fn allow_external_mcp(mut self, on: bool) -> Self {
        self.allow_external_mcp = on;
        self
    }

    /// The `control_request` subtypes clients may send (replaces the default list, those the
    /// SDK's typed methods send: [`DEFAULT_CONTROL_SUBTYPES`](crate::control_policy::DEFAULT_CONTROL_SUBTYPES)).
    /// The rules of [`crate::control_policy`] for particular subtypes (`apply_flag_settings` as
    /// `--settings`, …) apply whatever the list says.
    pub fn control_subtypes<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        subtypes: I,
    ) -> Self {
        self.control_subtypes = Some(subtypes.into_iter().map(Into::into).collect());
        self
    }

    /// The operator's list of control subtypes, if one replaces the default.
    pub fn allowed_control_subtypes(&self) -> Option<&BTreeSet<String>> {
        self.control_subtypes.as_ref()
    }

    /// Whether MCP servers other than in-process SDK ones are allowed.
    pub fn external_mcp_allowed(&self) -> bool {
        self.allow_external_mcp
    }

    /// Let clients replace this flag (name without `--`) when the options template sets it
    /// (e.g. `model`); the client's value comes later on the command line. Flags the template
    /// sets are refused otherwise.
    pub fn overridable_flag(mut self, name: impl Into<String>) -> Self {
        self.overridable
            .insert(name.into().trim_start_matches('-').to_owned());
        self
    }

    /// True when clients may pass `name` with any value through [`Policy::allow_flag`] (and it
    /// is not denied).
    pub fn allows_flag(&self, name: &str) -> bool {
        self.allowed_flags.contains(name) && !self.denied_flags.contains(name)
    }

    /// The configured cwd roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.cwd_roots
    }

    /// A one-line description for logs (`cwd roots: 1, modes: default,plan, …`).
    pub fn summary(&self) -> String {
        let modes: Vec<&str> = self.modes().iter().map(|m| m.as_str()).collect();
        let mut s = format!(
            "cwd roots: {}, permission modes: {}",
            self.cwd_roots.len(),
            modes.join(",")
        );
        if !self.allowed_flags.is_empty() {
            let extra: Vec<&str> = self.allowed_flags.iter().map(String::as_str).collect();
            s.push_str(&format!(", extra flags: {}", extra.join(",")));
        }
        if self.allow_external_mcp {
            s.push_str(", external MCP allowed");
        }
        if self.allow_dangerously_skip_permissions {
            s.push_str(", DANGEROUSLY SKIPPING PERMISSIONS allowed");
        }
        s
    }

    /// The permission modes actually accepted.
    fn modes(&self) -> Vec<PermissionMode> {
        let mut modes: Vec<PermissionMode> = self
            .permission_modes
            .iter()
            .copied()
            .filter(|m| *m != PermissionMode::BypassPermissions)
            .collect();
        if self.allow_dangerously_skip_permissions {
            modes.push(PermissionMode::BypassPermissions);
        }
        modes
    }

    /// The session options for `request` over `template`, or why the request is refused. The
    /// working directory is the checked directory's path (the gateway itself spawns from the
    /// opened directory, see [`crate::dirs`]).
    pub fn apply(
        &self,
        template: &Options,
        request: &SessionRequest,
    ) -> Result<Options, GatewayError> {
        let p = self.prepare(template, request)?;
        Ok(match &p.cwd {
            Some(dir) => p.options.to_builder().cwd(dir.real_path()).build(),
            None => p.options,
        })
    }

    /// [`Policy::apply`] for spawning: the cwd is the opened directory (`/proc/self/fd/N` on
    /// Linux, with `PWD` set to its path), which must stay open until the CLI has started.
    pub(crate) fn prepare(
        &self,
        template: &Options,
        request: &SessionRequest,
    ) -> Result<Prepared, GatewayError> {
        let template_argv = template
            .argv()
            .map_err(|e| GatewayError::InvalidOptions(e.to_string()))?;
        let default_argv = Options::default().argv().unwrap_or_default();
        let template_flags: BTreeSet<&str> = template_argv
            .iter()
            .filter(|a| !default_argv.contains(a))
            .map(|a| flag_of(a))
            .collect();
        let mut b = template.to_builder();
        let flags = request
            .flags()
            .map_err(|e| GatewayError::InvalidOptions(e.to_string()))?;
        let mut conversations = Vec::new();
        for (name, value) in flags {
            let value = self.check_flag(name, value)?;
            if template_flags.contains(name) {
                let arg = match &value {
                    Some(v) => format!("--{name}={v}"),
                    None => format!("--{name}"),
                };
                if template_argv.contains(&arg) || default_argv.contains(&arg) {
                    continue; // The template's own value, or the SDK's "not set".
                }
                if !self.overridable.contains(name) {
                    return Err(refuse(format!(
                        "flag `--{name}` is set by this gateway's session template and is not \
                         overridable"
                    )));
                }
            }
            if let (true, Some(v)) = (matches!(name, "resume" | "session-id"), &value) {
                conversations.push((name.to_owned(), v.clone()));
            }
            b = b.extra_arg(name, value);
        }
        let cwd = match &request.cwd {
            Some(cwd) => {
                let dir = dirs::open_under(&self.cwd_roots, "cwd", cwd)?;
                b = b
                    .cwd(dir.spawn_path())
                    .env("PWD", dir.real_path().to_string_lossy());
                Some(dir)
            }
            None => None,
        };
        let options = b.build();
        options
            .argv()
            .map_err(|e| GatewayError::InvalidOptions(e.to_string()))?;
        Ok(Prepared {
            options,
            cwd,
            conversations,
        })
    }

    /// Check one flag; returns the value to pass (perhaps rewritten, e.g. a canonical path).
    pub fn check_flag(
        &self,
        name: &str,
        value: Option<&str>,
    ) -> Result<Option<String>, GatewayError> {
        if !flag_name_ok(name) {
            return Err(refuse(format!("`--{name}` is not a valid flag name")));
        }
        if self.denied_flags.contains(name) {
            return Err(refuse(format!(
                "flag `--{name}` is refused by this gateway's policy"
            )));
        }
        // Every flag the SDK knows is judged by its row of the SDK's flag table (the same table
        // `Options::argv` writes from); other names only when the operator allows them.
        let Some(flag) = flags::lookup(name) else {
            return if self.allowed_flags.contains(name) {
                Ok(value.map(str::to_owned))
            } else {
                Err(not_allowed(name))
            };
        };
        let value = match (flag.arity, value) {
            (Arity::Switch, Some(_)) => {
                return Err(refuse(format!("flag `--{name}` takes no value")));
            }
            (Arity::Value, None) => {
                return Err(refuse(format!(
                    "flag `--{name}` needs a value (`--{name}=…`)"
                )));
            }
            (Arity::Switch, None) => None,
            (Arity::Value, Some(v)) => Some(v),
        };
        self.check_rule(flag, value)
    }

    /// Apply `flag`'s remote rule to `value` (present exactly when the flag takes one).
    fn check_rule(&self, flag: &Flag, value: Option<&str>) -> Result<Option<String>, GatewayError> {
        let name = flag.name;
        let v = value.unwrap_or_default();
        let owned = |v: &str| Ok(Some(v.to_owned()));
        match flag.remote {
            RemoteRule::Any => Ok(value.map(str::to_owned)),
            RemoteRule::WholeNumber => {
                v.parse::<u64>()
                    .map_err(|_| refuse(format!("`--{name}` must be a whole number, not `{v}`")))?;
                owned(v)
            }
            RemoteRule::NonNegative => match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => owned(v),
                _ => Err(refuse(format!(
                    "`--{name}` must be a non-negative number, not `{v}`"
                ))),
            },
            RemoteRule::Json => {
                serde_json::from_str::<Value>(v)
                    .map_err(|e| refuse(format!("`--{name}` is not JSON: {e}")))?;
                owned(v)
            }
            RemoteRule::OneOf(allowed) => {
                if allowed.contains(&v) {
                    owned(v)
                } else {
                    Err(refuse(format!(
                        "`--{name}` may only be {} on this gateway, not `{v}`",
                        allowed.join(" or ")
                    )))
                }
            }
            RemoteRule::ListOf(allowed) => {
                if v.split(',')
                    .filter(|s| !s.is_empty())
                    .all(|s| allowed.contains(&s))
                {
                    owned(v)
                } else {
                    Err(refuse(format!(
                        "`--{name}` may list only {}, not `{v}`",
                        allowed.join(", ")
                    )))
                }
            }
            RemoteRule::Id => {
                let ok = !v.is_empty()
                    && v.len() <= 128
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if ok {
                    owned(v)
                } else {
                    Err(refuse(format!(
                        "`--{name}` must be a session or message id (letters, digits, `-`, `_`)"
                    )))
                }
            }
            RemoteRule::PermissionMode => {
                let mode: PermissionMode = v
                    .parse()
                    .map_err(|e: claude_conduit::Error| refuse(format!("`--{name}`: {e}")))?;
                if self.modes().contains(&mode) {
                    owned(v)
                } else {
                    let hint = if mode == PermissionMode::BypassPermissions {
                        " (needs allow_dangerously_skip_permissions)"
                    } else {
                        ""
                    };
                    Err(refuse(format!(
                        "`--{name}={v}` is not allowed by this gateway's policy{hint}"
                    )))
                }
            }
            RemoteRule::SdkMcpConfig => {
                if !self.allow_external_mcp {
                    check_sdk_only_mcp(v)?;
                }
                owned(v)
            }
            RemoteRule::Directory => {
                let dir = dirs::open_under(&self.cwd_roots, &format!("--{name}"), v)?;
                let real = dir
                    .real_path()
                    .to_str()
                    .ok_or_else(|| refuse(format!("`--{name}`: {v} is not UTF-8 once resolved")))?;
                owned(real)
            }
            RemoteRule::Dangerous if self.allow_dangerously_skip_permissions => {
                Ok(value.map(str::to_owned))
            }
            RemoteRule::Dangerous => Err(refuse(format!(
                "flag `--{name}` is not allowed by this gateway's policy (needs \
                 allow_dangerously_skip_permissions)"
            ))),
            RemoteRule::Refused if self.allowed_flags.contains(name) => {
                Ok(value.map(str::to_owned))
            }
            // `Refused`, `Fixed` (the gateway sets the stream-json flags itself), and any rule
            // a newer SDK adds until this policy knows it.
            _ => Err(not_allowed(name)),
        }
    }
}

/// The flag name of a `--name=value` / `--name` argument.
fn flag_of(arg: &str) -> &str {
    let body = arg.trim_start_matches('-');
    body.split_once('=').map_or(body, |(k, _)| k)
}

/// Refuse an `--mcp-config` value unless it is inline JSON whose every server is `"type":"sdk"`.
fn check_sdk_only_mcp(value: &str) -> Result<(), GatewayError> {
    let external = || {
        refuse(
            "`--mcp-config` may only name in-process SDK servers (`{\"type\":\"sdk\"}`) on this \
             gateway (external MCP servers need allow_external_mcp)",
        )
    };
    if !value.trim_start().starts_with('{') {
        return Err(external());
    }
    let v: Value = serde_json::from_str(value)
        .map_err(|e| refuse(format!("`--mcp-config` is not valid JSON: {e}")))?;
    let servers = v
        .get("mcpServers")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse("`--mcp-config` needs an `mcpServers` object"))?;
    if servers
        .values()
        .all(|s| s.get("type") == Some(&Value::from("sdk")))
    {
        Ok(())
    } else {
        Err(external())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn req(args: &[&str]) -> SessionRequest {
        SessionRequest::with_args(args.iter().copied())
    }

    fn refused(p: &Policy, args: &[&str]) -> String {
        match p.apply(&Options::default(), &req(args)) {
            Err(GatewayError::InvalidOptions(m)) => m,
            other => panic!("{args:?} was not refused: {other:?}"),
        }
    }

    fn argv(p: &Policy, r: &SessionRequest) -> Vec<String> {
        p.apply(&Options::default(), r).unwrap().argv().unwrap()
    }

    #[test]
    fn sdk_defaults_pass() {
        let o = Options::builder()
            .model("m")
            .fallback_model("f")
            .max_turns(3)
            .max_budget_usd(1.5)
            .task_budget(100)
            .allowed_tools(["Read", "Bash(git *)"])
            .disallowed_tools(["WebFetch"])
            .betas(["b"])
            .permission_mode(PermissionMode::AcceptEdits)
            .permission_prompt_tool("stdio")
            .include_partial_messages(true)
            .include_hook_events(true)
            .replay_user_messages(true)
            .persist_session(false)
            .strict_mcp_config(true)
            .resume("0b7b6c1e-4bc3-4f1c-9d6e-2c1f1a0e9b11")
            .fork_session(true)
            .json_schema(serde_json::json!({"type": "object"}))
            .thinking(claude_conduit::options::Thinking::Adaptive)
            .effort(claude_conduit::options::Effort::High)
            .build();
        let r = SessionRequest::from_options(&o).unwrap();
        let a = argv(&Policy::default(), &r);
        for f in [
            "--model=m",
            "--max-turns=3",
            "--permission-mode=acceptEdits",
            "--permission-prompt-tool=stdio",
            "--include-partial-messages",
            "--no-session-persistence",
            "--fork-session",
            "--thinking=adaptive",
            "--effort=high",
        ] {
            assert!(a.iter().any(|x| x == f), "{f} missing from {a:?}");
        }
    }

    #[test]
    fn unknown_and_file_reading_flags_are_refused_by_name() {
        let p = Policy::default();
        for f in [
            "--settings={}",
            "--system-prompt-file=/etc/passwd",
            "--plugin-dir=/tmp",
            "--continue",
            "--debug-to-stderr",
            "--output-format=text",
        ] {
            let m = refused(&p, &[f]);
            let name = f.trim_start_matches("--").split('=').next().unwrap();
            assert!(m.contains(&format!("--{name}")), "{m}");
        }
        assert!(refused(&p, &["model=x"]).contains("not a `--flag`"));
        assert!(refused(&p, &["--a b=1"]).contains("not a valid flag name"));
    }

    #[test]
    fn allow_and_deny_lists() {
        let p = Policy::default()
            .allow_flag("settings")
            .allow_flag("--continue");
        let a = argv(&p, &req(&["--settings={\"a\":1}", "--continue"]));
        assert!(a.contains(&"--settings={\"a\":1}".to_owned()));
        assert!(a.contains(&"--continue".to_owned()));
        let p = Policy::default().deny_flag("model");
        assert!(refused(&p, &["--model=x"]).contains("--model"));
        // A dedicated rule is not bypassed by allow_flag.
        let p = Policy::default().allow_flag("permission-mode");
        assert!(refused(&p, &["--permission-mode=bypassPermissions"]).contains("permission-mode"));
    }

    #[test]
    fn permission_modes() {
        let p = Policy::default();
        for m in ["default", "acceptEdits", "plan", "dontAsk"] {
            let a = argv(&p, &req(&[&format!("--permission-mode={m}")]));
            assert!(a.contains(&format!("--permission-mode={m}")));
        }
        assert!(refused(&p, &["--permission-mode=auto"]).contains("auto"));
        assert!(refused(&p, &["--permission-mode=nonsense"]).contains("unknown permission mode"));
        let m = refused(&p, &["--permission-mode=bypassPermissions"]);
        assert!(m.contains("allow_dangerously_skip_permissions"), "{m}");
        // Listing bypass is not enough; the dangerous switch is.
        let listed = Policy::default().permission_modes([PermissionMode::BypassPermissions]);
        refused(&listed, &["--permission-mode=bypassPermissions"]);
        let only_plan = Policy::default().permission_modes([PermissionMode::Plan]);
        refused(&only_plan, &["--permission-mode=default"]);
        let danger = Policy::default().allow_dangerously_skip_permissions(true);
        argv(&danger, &req(&["--permission-mode=bypassPermissions"]));
        argv(&danger, &req(&["--dangerously-skip-permissions"]));
        argv(&danger, &req(&["--allow-dangerously-skip-permissions"]));
        refused(&p, &["--dangerously-skip-permissions"]);
        refused(&p, &["--allow-dangerously-skip-permissions"]);
    }

    #[test]
    fn permission_prompt_tool_only_stdio() {
        let p = Policy::default();
        argv(&p, &req(&["--permission-prompt-tool=stdio"]));
        assert!(
            refused(&p, &["--permission-prompt-tool=mcp__x__approve"])
                .contains("permission-prompt-tool")
        );
    }

    #[test]
    fn mcp_config_sdk_only_unless_external_allowed() {
        let p = Policy::default();
        let sdk = r#"--mcp-config={"mcpServers":{"probe":{"type":"sdk","name":"probe"}}}"#;
        argv(&p, &req(&[sdk]));
        let stdio = r#"--mcp-config={"mcpServers":{"probe":{"type":"sdk","name":"probe"},"fs":{"type":"stdio","command":"rm"}}}"#;
        assert!(refused(&p, &[stdio]).contains("allow_external_mcp"));
        let untyped = r#"--mcp-config={"mcpServers":{"fs":{"command":"rm"}}}"#;
        refused(&p, &[untyped]);
        assert!(refused(&p, &["--mcp-config=/etc/mcp.json"]).contains("mcp-config"));
        assert!(refused(&p, &["--mcp-config={nope"]).contains("not valid JSON"));
        let open = Policy::default().allow_external_mcp(true);
        argv(&open, &req(&[stdio]));
        argv(&open, &req(&["--mcp-config=/etc/mcp.json"]));
    }

    #[test]
    fn values_are_checked() {
        let p = Policy::default();
        refused(&p, &["--max-turns=lots"]);
        refused(&p, &["--max-budget-usd=-1"]);
        refused(&p, &["--max-budget-usd=NaN"]);
        refused(&p, &["--json-schema={"]);
        refused(&p, &["--thinking=maybe"]);
        refused(&p, &["--setting-sources=user,/etc"]);
        argv(&p, &req(&["--setting-sources=user,project"]));
        refused(&p, &["--include-partial-messages=yes"]);
        refused(&p, &["--model"]);
        assert!(refused(&p, &["--resume=../../etc/x.jsonl"]).contains("--resume"));
        refused(&p, &["--session-id=a/b"]);
        argv(&p, &req(&["--resume-session-at=msg_01ABC-def"]));
    }

    #[test]
    fn cwd_needs_roots_and_stays_under_them() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("proj");
        std::fs::create_dir(&inside).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let inside_s = inside.to_str().unwrap();

        // No roots: cwd and add-dir cannot be set.
        let p = Policy::default();
        let m = p
            .apply(
                &Options::default(),
                &SessionRequest::default().cwd(inside_s),
            )
            .unwrap_err()
            .to_string();
        assert!(m.contains("cwd") && m.contains("no cwd roots"), "{m}");
        assert!(refused(&p, &[&format!("--add-dir={inside_s}")]).contains("add-dir"));

        let p = Policy::default().cwd_root(root.path());
        let o = p
            .apply(
                &Options::default(),
                &SessionRequest::default().cwd(inside_s),
            )
            .unwrap();
        assert_eq!(
            o.cwd(),
            Some(std::fs::canonicalize(&inside).unwrap().as_path())
        );
        // `..` escapes, relative paths, missing directories, files and other trees are refused.
        let escape = format!(
            "{inside_s}/../../{}",
            outside.path().file_name().unwrap().to_str().unwrap()
        );
        for bad in [
            escape.as_str(),
            "relative/dir",
            outside.path().to_str().unwrap(),
            &format!("{inside_s}/missing"),
        ] {
            let r = SessionRequest::default().cwd(bad);
            assert!(
                matches!(
                    p.apply(&Options::default(), &r),
                    Err(GatewayError::InvalidOptions(_))
                ),
                "{bad}"
            );
        }
        let file = inside.join("f");
        std::fs::write(&file, "x").unwrap();
        let r = SessionRequest::default().cwd(file.to_str().unwrap());
        assert!(p.apply(&Options::default(), &r).is_err());
        // A symlink inside the root that points outside is judged by its target.
        let link = inside.join("out");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let r = SessionRequest::default().cwd(link.to_str().unwrap());
        assert!(p.apply(&Options::default(), &r).is_err());
        // add-dir under the root passes, canonicalised.
        let a = argv(&p, &req(&[&format!("--add-dir={inside_s}/.")]));
        let canon = std::fs::canonicalize(&inside).unwrap();
        assert!(
            a.contains(&format!("--add-dir={}", canon.display())),
            "{a:?}"
        );
        refused(&p, &[&format!("--add-dir={}", outside.path().display())]);
    }

    #[test]
    fn template_cwd_is_kept_without_a_request_cwd() {
        let t = Options::builder().cwd("/srv/work").build();
        let o = Policy::default()
            .apply(&t, &SessionRequest::default())
            .unwrap();
        assert_eq!(o.cwd(), Some(Path::new("/srv/work")));
    }

    /// A value the flag's rule accepts and one it refuses (`None`: every value is accepted).
    fn sample_values(flag: &Flag, root: &Path) -> (Option<String>, Option<String>) {
        let (good, bad): (String, Option<&str>) = match flag.remote {
            RemoteRule::Any | RemoteRule::Refused | RemoteRule::Fixed | RemoteRule::Dangerous => {
                ("x".into(), None)
            }
            RemoteRule::WholeNumber => ("12".into(), Some("twelve")),
            RemoteRule::NonNegative => ("0.5".into(), Some("-1")),
            RemoteRule::Json => ("{}".into(), Some("{")),
            RemoteRule::OneOf(values) => (values[0].into(), Some("nope")),
            RemoteRule::ListOf(values) => (values.join(","), Some("nope")),
            RemoteRule::Id => ("abc-1_2".into(), Some("../x")),
            RemoteRule::PermissionMode => ("plan".into(), Some("bypassPermissions")),
            RemoteRule::SdkMcpConfig => (
                r#"{"mcpServers":{"a":{"type":"sdk","name":"a"}}}"#.into(),
                Some("/etc/mcp.json"),
            ),
            RemoteRule::Directory => (root.display().to_string(), Some("/")),
            other => panic!("a new remote rule needs a case here: {other:?}"),
        };
        match flag.arity {
            Arity::Value => (Some(good), bad.map(str::to_owned)),
            Arity::Switch => (None, None),
        }
    }

    #[test]
    fn every_table_flag_is_decided_by_its_rule() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let strict = Policy::default();
        let roots = Policy::default().cwd_root(&root);
        for flag in flags::FLAGS {
            let name = flag.name;
            let (good, bad) = sample_values(flag, &root);
            let good = good.as_deref();
            // The arity comes from the table too.
            let wrong_arity = match flag.arity {
                Arity::Value => None,
                Arity::Switch => Some("x"),
            };
            assert!(
                roots.check_flag(name, wrong_arity).is_err(),
                "--{name} arity"
            );
            let by_default = strict.check_flag(name, good);
            match flag.remote {
                RemoteRule::Fixed => {
                    // Never from a client, whatever the operator allows.
                    let open = Policy::default()
                        .allow_flag(name)
                        .allow_dangerously_skip_permissions(true)
                        .allow_external_mcp(true);
                    assert!(open.check_flag(name, good).is_err(), "--{name}");
                    assert!(by_default.is_err(), "--{name}");
                }
                RemoteRule::Refused => {
                    assert!(by_default.is_err(), "--{name}");
                    let allowed = Policy::default().allow_flag(name);
                    assert_eq!(
                        allowed.check_flag(name, good).unwrap(),
                        good.map(str::to_owned),
                        "--{name}"
                    );
                }
                RemoteRule::Dangerous => {
                    assert!(by_default.is_err(), "--{name}");
                    // `allow_flag` does not bypass a rule of its own.
                    assert!(
                        Policy::default()
                            .allow_flag(name)
                            .check_flag(name, good)
                            .is_err()
                    );
                    let danger = Policy::default().allow_dangerously_skip_permissions(true);
                    assert!(danger.check_flag(name, good).is_ok(), "--{name}");
                }
                RemoteRule::Directory => {
                    assert!(by_default.is_err(), "--{name} without cwd roots");
                    assert!(roots.check_flag(name, good).is_ok(), "--{name}");
                }
                _ => assert!(by_default.is_ok(), "--{name}={good:?}: {by_default:?}"),
            }
            if let Some(bad) = bad {
                let open = roots.clone().allow_flag(name);
                assert!(open.check_flag(name, Some(&bad)).is_err(), "--{name}={bad}");
            }
            let denied = roots.clone().allow_flag(name).deny_flag(name);
            assert!(
                denied.check_flag(name, good).is_err(),
                "deny_flag(--{name})"
            );
        }
    }

    #[test]
    fn gateway_docs_list_every_client_flag() {
        let docs = include_str!("../../../docs/GATEWAY.md");
        let section = docs
            .split("## Policy")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        for flag in flags::FLAGS
            .iter()
            .filter(|f| f.remote != RemoteRule::Fixed)
        {
            assert!(
                section.contains(&format!("`{}`", flag.name)),
                "docs/GATEWAY.md's policy table does not name --{}",
                flag.name
            );
        }
    }
}
