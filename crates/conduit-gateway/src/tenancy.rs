//! What keeps a session's CLI away from the gateway's secrets and from other tokens' sessions:
//! its environment, its directory, its conversations, and (optionally) Claude Code's sandbox.
//!
//! * **Environment.** A session's CLI starts from an allowlist of the gateway's environment
//!   ([`env_allowed`]: `PATH`, `HOME`, `USER`, `LANG`, `LC_*`, `TERM`, `TMPDIR`, the proxy
//!   variables, `NODE_EXTRA_CA_CERTS`, `ANTHROPIC_*`, `CLAUDE_CODE_*`, `CLAUDE_CONFIG_DIR`,
//!   `DISABLE_*`), plus the operator's `[env]` table (the options template's
//!   variables). `CONDUIT_*` never (it holds `CONDUIT_TOKENS`). The gateway's own OpenTelemetry
//!   settings (`OTEL_*`, which may carry a collector's credentials in
//!   `OTEL_EXPORTER_OTLP_HEADERS`) and `CLAUDE_CODE_ENABLE_TELEMETRY` pass only when the
//!   operator turns on `cli_telemetry` ([`telemetry_env`]). `TRACEPARENT` (the session's trace,
//!   no secret) is always set when the gateway traces.
//! * **State directory**: `work/<label>` is the directory a session of the token
//!   `<label>` starts in when neither the client nor the template sets one (one per token, not
//!   per session: the CLI files conversations by directory, so `--resume` works across a token's
//!   sessions); `conversations/<id>` records which token's session reported the conversation
//!   `<id>` (its `system/init` frame), so that another token cannot `--resume` it. Created with
//!   mode 0700 when first needed. `work` and the state directory itself are 0711 when some token
//!   runs as another OS user (so that user can reach its own work directory, which it owns, but
//!   list nothing).
//! * **Sandbox** ([`sandbox_settings`]): `sandbox.enabled`, no unsandboxed escape, and
//!   `Read(//path/**)` deny rules for the state directory's conversation records, the other
//!   tokens' work directories and the protected files (token files, the config file), merged into
//!   the template's `--settings`. (Not the whole state directory: the session's own work
//!   directory is in it.)

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use claude_conduit::Options;
use serde_json::{Value, json};

/// True for the variables of the gateway's environment a session's CLI inherits.
pub fn env_allowed(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "TERM",
        "TMPDIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "NODE_EXTRA_CA_CERTS",
        "CLAUDE_CONFIG_DIR",
    ];
    const PREFIXES: &[&str] = &["LC_", "ANTHROPIC_", "CLAUDE_CODE_", "DISABLE_"];
    !name.starts_with("CONDUIT_")
        && !is_telemetry_var(name)
        && (EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p)))
}

/// The variables that turn on and configure the CLI's own telemetry (passed only with
/// `cli_telemetry`).
fn is_telemetry_var(name: &str) -> bool {
    name.starts_with("OTEL_") || name == "CLAUDE_CODE_ENABLE_TELEMETRY" || name == "TRACEPARENT"
}

/// With `cli_telemetry` on: the `OTEL_*` variables of `vars` (the gateway's environment) and
/// `CLAUDE_CODE_ENABLE_TELEMETRY=1`, so that the CLI's own telemetry exports where the
/// gateway's does (the CLI's spans join the session's trace through `TRACEPARENT`).
pub fn telemetry_env(vars: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("OTEL_"))
        .cloned()
        .collect();
    out.push(("CLAUDE_CODE_ENABLE_TELEMETRY".into(), "1".into()));
    out
}

/// The allowlisted part of this process's environment (variables that are not UTF-8 are left
/// out).
pub fn allowed_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| env_allowed(k))
        .collect()
}

/// An OS user a token's sessions run as.
#[derive(Debug, Clone)]
pub(crate) struct OsUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: PathBuf,
}

impl OsUser {
    pub(crate) fn lookup(name: &str) -> std::io::Result<Self> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(Self {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            }),
            Ok(None) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no OS user `{name}`"),
            )),
            Err(e) => Err(std::io::Error::from(e)),
        }
    }
}

/// The gateway's state directory (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct StateDir {
    root: PathBuf,
    /// Some token runs as another OS user: `root` and `work` are 0711, not 0700.
    shared: bool,
    /// Conversation id → owner label, as recorded (a cache of `conversations/`).
    owners: Mutex<HashMap<String, String>>,
}

/// `dir` and its missing parents, the last with `mode` (it is set again if `dir` existed).
fn make_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// A conversation id as the CLI reports it: safe as a file name.
fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl StateDir {
    pub(crate) fn new(root: PathBuf, shared: bool) -> Self {
        Self {
            root,
            shared,
            owners: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    fn outer_mode(&self) -> u32 {
        if self.shared { 0o711 } else { 0o700 }
    }

    /// The work directory of the token `label` (created on first use; owned by `user` when the
    /// token runs as one).
    pub(crate) fn work_dir(&self, label: &str, user: Option<&OsUser>) -> std::io::Result<PathBuf> {
        make_dir(&self.root, self.outer_mode())?;
        let work = self.root.join("work");
        make_dir(&work, self.outer_mode())?;
        let dir = work.join(label);
        make_dir(&dir, 0o700)?;
        if let Some(u) = user {
            std::os::unix::fs::chown(&dir, Some(u.uid), Some(u.gid))?;
        }
        Ok(dir)
    }

    fn conversations(&self) -> PathBuf {
        self.root.join("conversations")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The label of the token whose session reported conversation `id`, if any did.
    pub(crate) fn owner(&self, id: &str) -> Option<String> {
        if !id_ok(id) {
            return None;
        }
        if let Some(o) = self.lock().get(id) {
            return Some(o.clone());
        }
        let owner = std::fs::read_to_string(self.conversations().join(id)).ok()?;
        let owner = owner.trim().to_owned();
        self.lock().insert(id.to_owned(), owner.clone());
        Some(owner)
    }

    /// Record that a session of `label` reported conversation `id`. The first owner stays.
    pub(crate) fn record(&self, id: &str, label: &str) {
        if !id_ok(id) || self.lock().contains_key(id) {
            return;
        }
        let write = || -> std::io::Result<String> {
            make_dir(&self.root, self.outer_mode())?;
            let dir = self.conversations();
            make_dir(&dir, 0o700)?;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(id))
            {
                Ok(mut f) => {
                    f.write_all(label.as_bytes())?;
                    Ok(label.to_owned())
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Ok(std::fs::read_to_string(dir.join(id))?.trim().to_owned())
                }
                Err(e) => Err(e),
            }
        };
        match write() {
            Ok(owner) => {
                if owner != label {
                    tracing::warn!(conversation = id, token = label, owner = %owner,
                        "a session reported a conversation another token owns");
                }
                self.lock().insert(id.to_owned(), owner);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a conversation's owner");
                // Still refuse other tokens for as long as this gateway runs.
                self.lock().insert(id.to_owned(), label.to_owned());
            }
        }
    }
}

/// The `session_id` of a CLI `system/init` frame (cheap test first: most frames are not one).
pub(crate) fn init_session_id(frame: &[u8]) -> Option<String> {
    // Built once: `memmem::find` builds its searcher on every call, for every frame.
    static INIT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"init\""));
    if frame.len() > 1 << 20 || INIT.find(frame).is_none() {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Init {
        #[serde(rename = "type")]
        kind: String,
        subtype: Option<String>,
        session_id: Option<String>,
    }
    let init: Init = serde_json::from_slice(frame).ok()?;
    (init.kind == "system" && init.subtype.as_deref() == Some("init"))
        .then_some(init.session_id)
        .flatten()
}

/// `Read(//abs/path/**)` for a directory, `Read(//abs/path)` for a file.
fn deny_read(path: &Path, dir: bool) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let p = abs.to_string_lossy();
    let p = p.trim_end_matches('/');
    if dir {
        format!("Read(/{p}/**)")
    } else {
        format!("Read(/{p})")
    }
}

/// The template with Claude Code's sandbox forced on and reads denied of the state directory's
/// records, of the work directories of `other_tokens` (labels) and of `protected` (merged into
/// the template's own `--settings`, if it has inline ones).
pub fn sandbox_settings(
    template: &Options,
    state_dir: &Path,
    other_tokens: &[String],
    protected: &[PathBuf],
) -> Result<Options, String> {
    let argv = template.argv().map_err(|e| e.to_string())?;
    let mut settings = match argv
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("--settings="))
    {
        Some(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(
                    "with the sandbox on, the template's settings must be inline JSON (an object)"
                        .into(),
                );
            }
        },
        None => serde_json::Map::new(),
    };
    let mut deny: Vec<Value> = vec![deny_read(&state_dir.join("conversations"), true).into()];
    deny.extend(
        other_tokens
            .iter()
            .map(|l| Value::from(deny_read(&state_dir.join("work").join(l), true))),
    );
    deny.extend(protected.iter().map(|p| Value::from(deny_read(p, false))));
    let permissions = settings
        .entry("permissions")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("the template's settings.permissions is not an object")?;
    match permissions.entry("deny").or_insert_with(|| json!([])) {
        Value::Array(list) => list.extend(deny),
        _ => return Err("the template's settings.permissions.deny is not a list".into()),
    }
    let mut sandbox = match settings.remove("sandbox") {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    sandbox.insert("enabled".into(), Value::Bool(true));
    sandbox.insert("allowUnsandboxedCommands".into(), Value::Bool(false));
    Ok(template
        .to_builder()
        .settings(Value::Object(settings).to_string())
        .sandbox(Value::Object(sandbox))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_allowlist() {
        for ok in [
            "PATH",
            "HOME",
            "LC_ALL",
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_USE_BEDROCK",
            "DISABLE_TELEMETRY",
            "https_proxy",
        ] {
            assert!(env_allowed(ok), "{ok}");
        }
        for no in [
            "CONDUIT_TOKENS",
            "CONDUIT_TOKEN_FILE",
            "AWS_SECRET_ACCESS_KEY",
            "SSH_AUTH_SOCK",
            "CLAUDE_CONDUIT_PROCESS_TAG",
            "PWD",
            "OLDPWD",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "CLAUDE_CODE_ENABLE_TELEMETRY",
            "TRACEPARENT",
        ] {
            assert!(!env_allowed(no), "{no}");
        }
    }

    #[test]
    fn init_frames_give_the_conversation_id() {
        let f = br#"{"type":"system","subtype":"init","session_id":"abc-1","cwd":"/x"}"#;
        assert_eq!(init_session_id(f).as_deref(), Some("abc-1"));
        assert_eq!(
            init_session_id(br#"{"type":"assistant","subtype":"init","session_id":"x"}"#),
            None
        );
        assert_eq!(
            init_session_id(br#"{"type":"result","session_id":"x"}"#),
            None
        );
    }

    #[test]
    fn state_dir_modes_and_owners() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::new(tmp.path().join("a/state"), false);
        let w = s.work_dir("alice", None).unwrap();
        assert_eq!(w, tmp.path().join("a/state/work/alice"));
        for d in [s.path(), w.as_path()] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        assert_eq!(s.owner("c1"), None);
        s.record("c1", "alice");
        s.record("c1", "bob");
        assert_eq!(s.owner("c1").as_deref(), Some("alice"));
        // Another gateway on the same directory sees it.
        let again = StateDir::new(tmp.path().join("a/state"), false);
        assert_eq!(again.owner("c1").as_deref(), Some("alice"));
        assert_eq!(again.owner("../c1"), None);
    }

    #[test]
    fn sandbox_settings_merge_and_deny() {
        let t = Options::builder()
            .settings(r#"{"permissions":{"deny":["WebFetch"]},"model":"m"}"#)
            .build();
        let o = sandbox_settings(
            &t,
            Path::new("/var/st"),
            &["bob".to_owned()],
            &[PathBuf::from("/etc/tok")],
        )
        .unwrap();
        let argv = o.argv().unwrap();
        let s = argv
            .iter()
            .find_map(|a| a.strip_prefix("--settings="))
            .unwrap();
        let v: Value = serde_json::from_str(s).unwrap();
        assert_eq!(
            v["permissions"]["deny"],
            json!([
                "WebFetch",
                "Read(//var/st/conversations/**)",
                "Read(//var/st/work/bob/**)",
                "Read(//etc/tok)"
            ])
        );
        assert_eq!(v["sandbox"]["enabled"], json!(true));
        assert_eq!(v["sandbox"]["allowUnsandboxedCommands"], json!(false));
        assert_eq!(v["model"], json!("m"));
    }
}
