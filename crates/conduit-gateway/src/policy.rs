//! [`Policy`]: what a remote client may set on the sessions it creates.
//!
//! A client's [`SessionRequest`] carries CLI flags (`--flag=value` / `--flag`) and a working
//! directory. The gateway starts from its own options template (CLI path, environment, limits)
//! and adds the flags the policy accepts; anything else refuses the whole request with
//! [`GatewayError::InvalidOptions`] naming the flag (HTTP 400, gRPC `INVALID_ARGUMENT`). Flags the
//! template already sets still apply; a client flag given too comes later on the command line.
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
//! template's is used. With roots, it must be an absolute path of an existing directory whose
//! canonical form (symlinks and `..` resolved) lies under the canonical form of a root; the
//! canonical path is what the CLI gets.
//!
//! [`Policy::deny_flag`] removes a flag from everything above (it is then always refused).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use claude_conduit::Options;
use claude_conduit::options::PermissionMode;
use claude_conduit::remote::SessionRequest;
use serde_json::Value;

use crate::GatewayError;

/// Flags allowed with any (or no) value by the default policy.
const ALLOWED_VALUED: &[&str] = &[
    "model",
    "fallback-model",
    "system-prompt",
    "append-system-prompt",
    "betas",
    "tools",
    "allowedTools",
    "disallowedTools",
    "thinking-display",
    "effort",
];

/// Flags without a value allowed by the default policy.
const ALLOWED_SWITCHES: &[&str] = &[
    "include-partial-messages",
    "include-hook-events",
    "replay-user-messages",
    "no-session-persistence",
    "strict-mcp-config",
    "fork-session",
];

/// Flags whose value names a conversation of the CLI's session store.
const SESSION_IDS: &[&str] = &[
    "resume",
    "session-id",
    "resume-session-at",
    "resume-drops-turn",
];

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
        }
    }
}

fn refuse(message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidOptions(message.into())
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

    /// The session options for `request` over `template`, or why the request is refused.
    pub fn apply(
        &self,
        template: &Options,
        request: &SessionRequest,
    ) -> Result<Options, GatewayError> {
        let mut b = template.to_builder();
        let flags = request
            .flags()
            .map_err(|e| GatewayError::InvalidOptions(e.to_string()))?;
        for (name, value) in flags {
            let value = self.check_flag(name, value)?;
            b = b.extra_arg(name, value);
        }
        if let Some(cwd) = &request.cwd {
            b = b.cwd(self.check_dir("cwd", cwd)?);
        }
        let options = b.build();
        options
            .argv()
            .map_err(|e| GatewayError::InvalidOptions(e.to_string()))?;
        Ok(options)
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
        fn needs_value<'v>(name: &str, value: Option<&'v str>) -> Result<&'v str, GatewayError> {
            value.ok_or_else(|| refuse(format!("flag `--{name}` needs a value (`--{name}=…`)")))
        }
        let owned = |v: &str| Ok(Some(v.to_owned()));
        match name {
            "permission-prompt-tool" => match value {
                Some("stdio") => owned("stdio"),
                _ => Err(refuse(
                    "flag `--permission-prompt-tool` may only be `stdio` (the client's permission \
                     callback) on this gateway",
                )),
            },
            "permission-mode" => {
                let v = needs_value(name, value)?;
                let mode: PermissionMode = v.parse().map_err(|e: claude_conduit::Error| {
                    refuse(format!("`--permission-mode`: {e}"))
                })?;
                if self.modes().contains(&mode) {
                    owned(v)
                } else {
                    let hint = if mode == PermissionMode::BypassPermissions {
                        " (needs allow_dangerously_skip_permissions)"
                    } else {
                        ""
                    };
                    Err(refuse(format!(
                        "`--permission-mode={v}` is not allowed by this gateway's policy{hint}"
                    )))
                }
            }
            "dangerously-skip-permissions" | "allow-dangerously-skip-permissions" => {
                if !self.allow_dangerously_skip_permissions {
                    return Err(refuse(format!(
                        "flag `--{name}` is not allowed by this gateway's policy (needs \
                         allow_dangerously_skip_permissions)"
                    )));
                }
                Ok(value.map(str::to_owned))
            }
            "mcp-config" => {
                let v = needs_value(name, value)?;
                if self.allow_external_mcp {
                    return owned(v);
                }
                check_sdk_only_mcp(v)?;
                owned(v)
            }
            "add-dir" => {
                let v = needs_value(name, value)?;
                let dir = self.check_dir("--add-dir", v)?;
                let dir = dir.to_str().ok_or_else(|| {
                    refuse(format!("`--add-dir`: {} is not UTF-8", dir.display()))
                })?;
                owned(dir)
            }
            _ if ALLOWED_VALUED.contains(&name) => owned(needs_value(name, value)?),
            _ if ALLOWED_SWITCHES.contains(&name) => match value {
                None => Ok(None),
                Some(_) => Err(refuse(format!("flag `--{name}` takes no value"))),
            },
            _ if SESSION_IDS.contains(&name) => {
                let v = needs_value(name, value)?;
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
            "max-turns" | "max-thinking-tokens" | "task-budget" => {
                let v = needs_value(name, value)?;
                v.parse::<u64>()
                    .map_err(|_| refuse(format!("`--{name}` must be a whole number, not `{v}`")))?;
                owned(v)
            }
            "max-budget-usd" => {
                let v = needs_value(name, value)?;
                match v.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 0.0 => owned(v),
                    _ => Err(refuse(format!(
                        "`--max-budget-usd` must be a non-negative number, not `{v}`"
                    ))),
                }
            }
            "thinking" => match value {
                Some(v @ ("adaptive" | "disabled" | "enabled")) => owned(v),
                _ => Err(refuse(
                    "`--thinking` must be `adaptive`, `enabled` or `disabled`",
                )),
            },
            "json-schema" => {
                let v = needs_value(name, value)?;
                serde_json::from_str::<Value>(v)
                    .map_err(|e| refuse(format!("`--json-schema` is not JSON: {e}")))?;
                owned(v)
            }
            "setting-sources" => {
                let v = needs_value(name, value)?;
                let ok = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .all(|s| matches!(s, "user" | "project" | "local"));
                if ok {
                    owned(v)
                } else {
                    Err(refuse(format!(
                        "`--setting-sources` may list only user, project and local, not `{v}`"
                    )))
                }
            }
            _ if self.allowed_flags.contains(name) => Ok(value.map(str::to_owned)),
            _ => Err(refuse(format!(
                "flag `--{name}` is not allowed by this gateway's policy"
            ))),
        }
    }

    /// Resolve `dir` (absolute, existing) and check it lies under a cwd root.
    fn check_dir(&self, what: &str, dir: &str) -> Result<PathBuf, GatewayError> {
        if self.cwd_roots.is_empty() {
            return Err(refuse(format!(
                "`{what}` cannot be set on this gateway (no cwd roots configured)"
            )));
        }
        let path = Path::new(dir);
        if !path.is_absolute() {
            return Err(refuse(format!(
                "`{what}` must be an absolute path, not `{dir}`"
            )));
        }
        let real =
            std::fs::canonicalize(path).map_err(|e| refuse(format!("`{what}` {dir}: {e}")))?;
        if !real.is_dir() {
            return Err(refuse(format!("`{what}` {dir} is not a directory")));
        }
        let inside = self
            .cwd_roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .any(|root| real.starts_with(&root));
        if inside {
            Ok(real)
        } else {
            Err(refuse(format!(
                "`{what}` {dir} is outside the directories this gateway allows"
            )))
        }
    }
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
}
