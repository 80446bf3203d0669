//! The CLI's own session store: list past sessions and read their transcripts, without a CLI.
//!
//! The CLI keeps one JSON-lines file per session in
//! `<config dir>/projects/<sanitized cwd>/<session id>.jsonl`, where the config dir is
//! `$CLAUDE_CONFIG_DIR` or `~/.claude` and the sanitized cwd is the absolute working directory
//! with every character that is not ASCII alphanumeric replaced by `-`. Resume one with
//! [`OptionsBuilder::resume`](crate::options::OptionsBuilder::resume) (same cwd and home).
//!
//! Entries of other kinds (queue operations, attachments, request blobs, …) are skipped; the
//! store's format is the CLI's and may change, so everything here is lenient: lines that do not
//! parse are ignored.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::error::{Error, Result};

/// Paths longer than this are cut in the store's directory names (the CLI then appends a
/// hash this SDK does not reproduce; such directories are found by prefix).
const MAX_DIR_NAME: usize = 200;

/// Facts about one stored session.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredSession {
    /// The session id (pass it to `resume`).
    pub session_id: String,
    /// The transcript file.
    pub path: PathBuf,
    /// The working directory the session ran in.
    pub cwd: Option<String>,
    /// The first prompt of the session.
    pub first_prompt: Option<String>,
    /// The last prompt of the session.
    pub last_prompt: Option<String>,
    /// A title set for the session (`rename_session`), if any.
    pub title: Option<String>,
    /// The first timestamp in the transcript (RFC 3339, as the CLI wrote it).
    pub created: Option<String>,
    /// The transcript file's modification time.
    pub modified: Option<SystemTime>,
    /// User and assistant messages in the main conversation.
    pub message_count: usize,
    /// The session's cost as the CLI last recorded it (USD).
    pub total_cost_usd: Option<f64>,
    /// The git branch at the start, if the CLI recorded one.
    pub git_branch: Option<String>,
}

/// Where the CLI keeps sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStore {
    config_dir: PathBuf,
}

impl SessionStore {
    /// The store of the current user: `$CLAUDE_CONFIG_DIR`, else `$HOME/.claude`.
    pub fn from_env() -> Result<Self> {
        let dir = std::env::var_os("CLAUDE_CONFIG_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".claude")))
            .ok_or_else(|| {
                Error::InvalidOptions("neither CLAUDE_CONFIG_DIR nor HOME is set".into())
            })?;
        Ok(Self::at(dir))
    }

    /// The store in a given config directory (e.g. `<scratch home>/.claude`).
    pub fn at(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: config_dir.into(),
        }
    }

    /// The directory holding the sessions of working directory `cwd`.
    pub fn project_dir(&self, cwd: &Path) -> PathBuf {
        self.config_dir.join("projects").join(sanitize(cwd))
    }

    /// Sessions that ran in `cwd`, newest first.
    pub fn list(&self, cwd: &Path) -> Result<Vec<StoredSession>> {
        let dir = self.project_dir(cwd);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::transport("reading the session store", e)),
        };
        let mut out: Vec<StoredSession> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .filter_map(|p| read_info(&p).ok())
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.modified));
        Ok(out)
    }

    /// One session's facts.
    pub fn info(&self, cwd: &Path, session_id: &str) -> Result<StoredSession> {
        read_info(&self.session_path(cwd, session_id)?)
    }

    /// The user and assistant messages of a session's main conversation, in order, as the CLI
    /// stored them (`{"type":"user"|"assistant","message":{…},"uuid",…}`).
    pub fn messages(&self, cwd: &Path, session_id: &str) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(self.session_path(cwd, session_id)?)
            .map_err(|e| Error::transport("reading a session transcript", e))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(is_conversation_message)
            .collect())
    }

    fn session_path(&self, cwd: &Path, session_id: &str) -> Result<PathBuf> {
        // Session ids are UUIDs; refuse anything that could walk out of the directory.
        if session_id.is_empty()
            || !session_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::InvalidOptions(format!(
                "not a session id: {session_id:?}"
            )));
        }
        Ok(self.project_dir(cwd).join(format!("{session_id}.jsonl")))
    }
}

/// The store's directory name for a working directory.
pub fn sanitize(cwd: &Path) -> String {
    let s: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.chars().take(MAX_DIR_NAME).collect()
}

fn is_conversation_message(v: &Value) -> bool {
    matches!(v["type"].as_str(), Some("user" | "assistant"))
        && !v["isSidechain"].as_bool().unwrap_or(false)
        && v.get("message").is_some()
}

fn prompt_text(v: &Value) -> Option<String> {
    let content = &v["message"]["content"];
    if let Some(s) = content.as_str() {
        return Some(s.to_owned());
    }
    let text: String = content
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    (!text.is_empty()).then_some(text)
}

fn read_info(path: &Path) -> Result<StoredSession> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::transport("reading a session transcript", e))?;
    let session_id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut info = StoredSession {
        session_id,
        path: path.to_path_buf(),
        cwd: None,
        first_prompt: None,
        last_prompt: None,
        title: None,
        created: None,
        modified: std::fs::metadata(path).and_then(|m| m.modified()).ok(),
        message_count: 0,
        total_cost_usd: None,
        git_branch: None,
    };
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if info.created.is_none() {
            info.created = v["timestamp"].as_str().map(str::to_owned);
        }
        match v["type"].as_str() {
            Some("user") | Some("assistant") if is_conversation_message(&v) => {
                info.message_count += 1;
                if info.cwd.is_none() {
                    info.cwd = v["cwd"].as_str().map(str::to_owned);
                }
                if info.git_branch.is_none() {
                    info.git_branch = v["gitBranch"].as_str().map(str::to_owned);
                }
                if v["type"] == "user"
                    && v.get("toolUseResult").is_none()
                    && info.first_prompt.is_none()
                {
                    info.first_prompt = prompt_text(&v);
                }
            }
            Some("last-prompt") => info.last_prompt = v["lastPrompt"].as_str().map(str::to_owned),
            Some("custom-title") | Some("summary") | Some("ai-title") => {
                let t = v["customTitle"]
                    .as_str()
                    .or_else(|| v["title"].as_str())
                    .or_else(|| v["summary"].as_str());
                if let Some(t) = t {
                    info.title = Some(t.to_owned());
                }
            }
            Some("cost-state") => info.total_cost_usd = v["totalCostUSD"].as_f64(),
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_matches_the_cli_directory_names() {
        assert_eq!(
            sanitize(Path::new("/tmp/sesstest/my.proj_dir")),
            "-tmp-sesstest-my-proj-dir"
        );
    }

    #[test]
    fn reads_a_recorded_store() -> Result<()> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let tmp = std::env::temp_dir().join(format!("conduit-store-{}", std::process::id()));
        let store = SessionStore::at(&tmp);
        let cwd = Path::new("/tmp/sesstest/my.proj_dir");
        let dir = store.project_dir(cwd);
        std::fs::create_dir_all(&dir).map_err(|e| Error::transport("mkdir", e))?;
        let id = "86c191ab-c7b1-4d37-94af-92975528263e";
        std::fs::copy(
            fixtures.join(format!("session_store/{id}.jsonl")),
            dir.join(format!("{id}.jsonl")),
        )
        .map_err(|e| Error::transport("copy", e))?;
        let list = store.list(cwd)?;
        assert_eq!(list.len(), 1);
        let s = &list[0];
        assert_eq!(s.session_id, id);
        assert_eq!(s.first_prompt.as_deref(), Some("hello there"));
        assert_eq!(s.last_prompt.as_deref(), Some("hello there"));
        assert_eq!(s.cwd.as_deref(), Some("/tmp/sesstest/my.proj_dir"));
        assert_eq!(s.message_count, 2);
        assert!(s.total_cost_usd.is_some_and(|c| c > 0.0));
        let msgs = store.messages(cwd, id)?;
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1]["type"], "assistant");
        assert!(store.messages(cwd, "../../etc/passwd").is_err());
        assert!(store.list(Path::new("/no/such/project"))?.is_empty());
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(())
    }
}
