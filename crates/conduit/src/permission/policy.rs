//! Built-in, synchronous permission policies in the CLI's permission-rule syntax.
//!
//! A [`Policy`] looks at a [`PermissionRequest`] and returns a [`Verdict`]: allow, deny with a
//! message, or abstain. [`PolicyHandler`] turns a policy into a [`PermissionHandler`]; requests
//! the policy abstains on go to a fallback handler (by default: deny).
//!
//! | policy | allows | denies | abstains |
//! |---|---|---|---|
//! | [`AllowList`] | calls a rule covers | — | everything else |
//! | [`DenyList`] | — | calls a rule touches (message names the rule) | everything else |
//! | [`ReadOnly`] | read-only tools, clearly read-only Bash commands | everything else | never |
//! | [`Chain`] | as its first policy that does not abstain | as that policy | when all abstain |
//! | any `Fn(&PermissionRequest) -> Verdict` closure | as it returns | as it returns | as it returns |
//!
//! **Deny over allow.** Put the deny list first: `Chain(vec![Box::new(deny), Box::new(allow)])`.
//!
//! These policies run in the SDK, *after* the CLI's own evaluation: they only see calls the CLI
//! would have asked a human about. They are a convenience, not a sandbox: for hard limits use
//! the CLI's `disallowed_tools`, permission mode and sandbox settings, which apply before any
//! prompt.
//!
//! # Rules
//!
//! A [`Rule`] is written as in Claude Code settings:
//!
//! * `Bash`, `Read`, `mcp__server__tool`: the whole tool (`Bash()` and `Bash(*)` too).
//! * `mcp__server__*` or `mcp__server`: every tool of an MCP server.
//! * `Tool(pattern)`: the tool, when the pattern matches the call's primary input:
//!   * `Bash`: the `command`. `*` matches any text; a trailing ` *` also matches the bare
//!     command (`git *` covers `git` and `git status`, not `gitk`); the legacy `prefix:*` form
//!     means the same as `prefix *`. A compound command (`a && b`, `a | b`, `a; b`) is covered
//!     only when **every** part is covered, a command with `$(…)`, backticks, a subshell or a
//!     here-document is never covered, and a part that redirects output into a file is covered
//!     only by a pattern that itself contains `>`.
//!   * `Read`, `Write`, `Edit`, `MultiEdit`, `Glob`, `Grep`, `LS`, `NotebookEdit`,
//!     `NotebookRead`: the path (`file_path`, `notebook_path` or `path`), gitignore-style: `*`
//!     matches within one path segment, `**` any number of segments, and a pattern that
//!     matches a directory covers everything below it. `//abs/path` and `/abs/path` are
//!     absolute, `~/path` is under `$HOME`, and a relative pattern (`*.env`, `src/**`) matches
//!     at any depth. Paths are normalized (`.`, `..`) before matching; symlinks are not
//!     resolved.
//!   * `WebFetch`: the `url`; `domain:example.com` (or `domain:*.example.com`) matches the
//!     URL's host.
//!   * `WebSearch`: the `query`.
//!   * any other tool: the whole input as compact JSON text, `*` matching any text.
//!
//! A rule with content never matches a call whose primary input is missing.
//!
//! Write `\(` and `\)` for literal parentheses inside the content.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use futures::future::{BoxFuture, ready};

use super::shell::{self, SimpleCommand};
use super::{PermissionDecision, PermissionHandler, PermissionRequest};
use crate::Error;

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

/// A permission rule in the CLI's syntax: `Bash`, `Bash(git *)`, `Read(//etc/**)`,
/// `WebFetch(domain:example.com)`, `mcp__server__tool`, `mcp__server__*`.
///
/// See the [module documentation](self) for how each tool's content is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    source: String,
    tool: ToolPattern,
    content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ToolPattern {
    /// One tool, by exact name.
    Exact(String),
    /// Every tool whose name starts with this prefix (`mcp__server__`).
    Server(String),
}

fn invalid(rule: &str, why: &str) -> Error {
    Error::InvalidOptions(format!("invalid permission rule `{rule}`: {why}"))
}

impl Rule {
    /// Parses a rule.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for an empty rule, an empty or invalid tool name, an unbalanced
    /// parenthesis (`Bash(git *`, `Bash)`, `Bash(a))`), or text after the closing parenthesis.
    pub fn parse(rule: &str) -> Result<Rule, Error> {
        let source = rule.trim();
        if source.is_empty() {
            return Err(invalid(rule, "the rule is empty"));
        }
        let (tool, content) = match source.find('(') {
            None => {
                if source.contains(')') {
                    return Err(invalid(source, "unbalanced parenthesis: `)` without `(`"));
                }
                (source, None)
            }
            Some(open) => {
                let Some(inner) = source[open + 1..].strip_suffix(')') else {
                    return Err(invalid(
                        source,
                        "unbalanced parenthesis: the rule must end with the `)` that closes \
                         its content, as in `Bash(git *)`",
                    ));
                };
                check_balanced(source, inner)?;
                let content = inner.replace("\\(", "(").replace("\\)", ")");
                (&source[..open], Some(content))
            }
        };
        let tool = tool.trim_end();
        if tool.is_empty() {
            return Err(invalid(source, "the tool name is empty"));
        }
        let tool = parse_tool(source, tool)?;
        // `Tool()` and `Tool(*)` are the whole tool, as in the CLI.
        let content = content.filter(|c| !c.trim().is_empty() && c.trim() != "*");
        Ok(Rule {
            source: source.to_owned(),
            tool,
            content,
        })
    }

    /// The rule as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The tool part as written: `Bash`, `mcp__server__*`, ….
    pub fn tool_name(&self) -> &str {
        match self.source.find('(') {
            Some(open) => self.source[..open].trim_end(),
            None => &self.source,
        }
    }

    /// The content pattern (escapes removed); `None` when the rule covers the whole tool.
    pub fn content(&self) -> Option<&str> {
        self.content.as_deref()
    }

    /// Whether this rule **covers** the call: the tool matches and, for a rule with content,
    /// the pattern matches the call's primary input. For Bash, every part of a compound
    /// command must match, and commands the reader cannot see through (substitutions,
    /// subshells, here-documents) never match. This is the allow-list semantics.
    pub fn matches(&self, req: &PermissionRequest) -> bool {
        self.check(req, Mode::Covers)
    }

    /// Whether this rule **touches** the call: like [`matches`](Self::matches), except that for
    /// Bash it is enough that *one* part of a compound command (including the inside of
    /// `$(…)`, backticks and subshells) matches, after skipping leading environment
    /// assignments and wrappers such as `sudo`, `env`, `nohup`, `xargs`, and with a command
    /// path reduced to its file name (`/bin/rm` → `rm`). This is the deny-list semantics; it is
    /// best-effort and can be evaded by a determined shell user.
    pub fn matches_any_part(&self, req: &PermissionRequest) -> bool {
        self.check(req, Mode::Touches)
    }

    fn tool_matches(&self, tool_name: &str) -> bool {
        match &self.tool {
            ToolPattern::Exact(t) => t == tool_name,
            ToolPattern::Server(prefix) => {
                tool_name.len() > prefix.len() && tool_name.starts_with(prefix.as_str())
            }
        }
    }

    fn check(&self, req: &PermissionRequest, mode: Mode) -> bool {
        if !self.tool_matches(&req.tool_name) {
            return false;
        }
        let Some(pattern) = &self.content else {
            return true;
        };
        match subject(req) {
            Subject::Command(cmd) => match mode {
                Mode::Covers => bash_covers(pattern, cmd),
                Mode::Touches => bash_touches(pattern, cmd),
            },
            Subject::Path(path) => path_matches(pattern, path),
            Subject::Url(url) => url_matches(pattern, url),
            Subject::Text(text) => wildcard(pattern, &text),
            Subject::Missing => false,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Rule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Rule::parse(s)
    }
}

fn check_balanced(source: &str, inner: &str) -> Result<(), Error> {
    let mut depth = 0usize;
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    invalid(
                        source,
                        "unbalanced parenthesis in the content (write `\\)` for a literal `)`)",
                    )
                })?;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(invalid(
            source,
            "unbalanced parenthesis in the content (write `\\(` for a literal `(`)",
        ));
    }
    Ok(())
}

fn parse_tool(source: &str, tool: &str) -> Result<ToolPattern, Error> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if let Some(rest) = tool.strip_prefix("mcp__") {
        let (server, tool_part) = match rest.split_once("__") {
            Some((s, t)) => (s, Some(t)),
            None => (rest, None),
        };
        if server.is_empty() || !server.chars().all(valid_char) {
            return Err(invalid(source, "invalid MCP server name in the tool name"));
        }
        return match tool_part {
            None | Some("*") => Ok(ToolPattern::Server(format!("mcp__{server}__"))),
            Some(t) if !t.is_empty() && t.chars().all(valid_char) => {
                Ok(ToolPattern::Exact(tool.to_owned()))
            }
            Some(_) => Err(invalid(
                source,
                "invalid MCP tool name (use `mcp__server__tool` or `mcp__server__*`)",
            )),
        };
    }
    if tool.chars().all(valid_char) {
        Ok(ToolPattern::Exact(tool.to_owned()))
    } else if tool.contains('*') {
        Err(invalid(
            source,
            "`*` in a tool name is only allowed as `mcp__server__*`",
        ))
    } else {
        Err(invalid(
            source,
            "the tool name may only contain letters, digits, `_`, `-` and `.`",
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Covers,
    Touches,
}

enum Subject<'a> {
    Command(&'a str),
    Path(&'a str),
    Url(&'a str),
    Text(String),
    Missing,
}

const PATH_TOOLS: &[&str] = &[
    "Read",
    "Write",
    "Edit",
    "MultiEdit",
    "Glob",
    "Grep",
    "LS",
    "NotebookEdit",
    "NotebookRead",
];

fn subject(req: &PermissionRequest) -> Subject<'_> {
    let field = |k: &str| req.input_str(k);
    let found = match req.tool_name.as_str() {
        "Bash" => field("command").map(Subject::Command),
        t if PATH_TOOLS.contains(&t) => field("file_path")
            .or_else(|| field("notebook_path"))
            .or_else(|| field("path"))
            .map(Subject::Path),
        "WebFetch" => field("url").map(Subject::Url),
        "WebSearch" => field("query").map(|q| Subject::Text(q.to_owned())),
        _ => Some(Subject::Text(
            serde_json::to_string(&req.input).unwrap_or_default(),
        )),
    };
    found.unwrap_or(Subject::Missing)
}

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

/// `*` matches any run of characters (including none); everything else is literal.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A Bash content pattern against one simple command's text.
fn bash_pattern(pattern: &str, text: &str) -> bool {
    let pattern = pattern.trim();
    if let Some(prefix) = pattern.strip_suffix(":*") {
        return wildcard(prefix, text) || wildcard(&format!("{prefix} *"), text);
    }
    if wildcard(pattern, text) {
        return true;
    }
    pattern
        .strip_suffix(" *")
        .is_some_and(|head| wildcard(head.trim_end(), text))
}

/// Allow semantics for one part: the pattern matches the part's text, and the part writes no
/// file unless the pattern itself mentions a redirection.
fn bash_covers_part(pattern: &str, cmd: &SimpleCommand, src: &str) -> bool {
    (pattern.contains('>') || !cmd.writes_file()) && bash_pattern(pattern, cmd.text(src))
}

/// The simple commands of `command` when it has no opaque construct; `None` otherwise.
fn plain_parts(command: &str) -> Option<Vec<SimpleCommand>> {
    let script = shell::parse(command);
    (script.is_plain() && !script.commands.is_empty()).then_some(script.commands)
}

/// Allow semantics: every part covered, nothing opaque.
fn bash_covers(pattern: &str, command: &str) -> bool {
    plain_parts(command)
        .is_some_and(|parts| parts.iter().all(|c| bash_covers_part(pattern, c, command)))
}

/// Words skipped before the command name when looking for the real command (deny semantics).
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "nohup", "time", "command", "builtin", "exec", "nice", "xargs",
    "timeout", "{", "}", "!", "if", "then", "elif", "else", "do", "while", "until",
];

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The texts a deny pattern is tried against for one simple command.
fn deny_candidates(cmd: &SimpleCommand, src: &str) -> Vec<String> {
    let mut out = vec![cmd.text(src).to_owned()];
    let first = cmd
        .words
        .iter()
        .position(|w| !(is_assignment(&w.text) || WRAPPERS.contains(&w.text.as_str())));
    if let Some(k) = first {
        let w = &cmd.words[k];
        let rest = src.get(w.end..cmd.end).unwrap_or("");
        out.push(src.get(w.start..cmd.end).unwrap_or("").trim().to_owned());
        let name = w.text.rsplit('/').next().unwrap_or(&w.text);
        out.push(format!("{name}{rest}").trim().to_owned());
        // The words alone, quotes removed.
        let words: Vec<&str> = cmd.words[k..].iter().map(|w| w.text.as_str()).collect();
        let mut joined = words.join(" ");
        if let Some(stripped) = joined.strip_prefix(w.text.as_str()) {
            joined = format!("{name}{stripped}");
        }
        out.push(joined);
    }
    out
}

/// Deny semantics: any part (inside substitutions too) touched.
fn bash_touches(pattern: &str, command: &str) -> bool {
    let script = shell::parse(command);
    if bash_pattern(pattern, command.trim()) {
        return true;
    }
    script.commands.iter().any(|c| {
        deny_candidates(c, command)
            .iter()
            .any(|t| bash_pattern(pattern, t))
    })
}

/// Lexically normalized path segments, and whether the path is absolute.
fn normalize(path: &str) -> (bool, Vec<&str>) {
    let absolute = path.starts_with('/');
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => match segs.last() {
                Some(&last) if last != ".." => {
                    segs.pop();
                }
                _ if absolute => {}
                _ => segs.push(".."),
            },
            s => segs.push(s),
        }
    }
    (absolute, segs)
}

/// Pattern segments against path segments; a pattern that is used up matches (the path is at
/// or below what the pattern names).
fn segments_match(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => true,
        Some((&"**", rest)) => (0..=path.len()).any(|k| segments_match(rest, &path[k..])),
        Some((p, rest)) => match path.split_first() {
            Some((s, path_rest)) => wildcard(p, s) && segments_match(rest, path_rest),
            None => false,
        },
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let expanded;
    let pattern = if let Some(abs) = pattern.strip_prefix("//") {
        expanded = format!("/{abs}");
        expanded.as_str()
    } else if pattern == "~" || pattern.starts_with("~/") {
        let Some(home) = std::env::var_os("HOME") else {
            return false;
        };
        expanded = format!("{}{}", home.to_string_lossy(), &pattern[1..]);
        expanded.as_str()
    } else {
        pattern
    };
    let (pat_abs, pat) = normalize(pattern);
    let (path_abs, segs) = normalize(path);
    if pat_abs {
        path_abs && segments_match(&pat, &segs)
    } else {
        (0..=segs.len()).any(|k| segments_match(&pat, &segs[k..]))
    }
}

/// The host of a URL, lowercased, without user info, port or trailing dot.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn url_matches(pattern: &str, url: &str) -> bool {
    match pattern.strip_prefix("domain:") {
        Some(domain) => wildcard(&domain.trim().to_ascii_lowercase(), &url_host(url)),
        None => wildcard(pattern, url),
    }
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/// What a [`Policy`] says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allow the call (with its original input).
    Allow,
    /// Deny the call; the message is fed back to the model.
    Deny(String),
    /// No opinion: let the next policy or the fallback decide.
    Abstain,
}

/// A synchronous permission policy.
///
/// Implemented by the built-in policies and by every
/// `Fn(&PermissionRequest) -> Verdict + Send + Sync` closure.
pub trait Policy: Send + Sync {
    /// Evaluate one request.
    fn evaluate(&self, req: &PermissionRequest) -> Verdict;
}

impl<F> Policy for F
where
    F: Fn(&PermissionRequest) -> Verdict + Send + Sync,
{
    fn evaluate(&self, req: &PermissionRequest) -> Verdict {
        self(req)
    }
}

fn parse_rules<I, S>(rules: I) -> Result<Vec<Rule>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    rules.into_iter().map(|r| Rule::parse(r.as_ref())).collect()
}

/// Allows calls that one of its rules covers ([`Rule::matches`]), and compound Bash commands
/// whose parts are each covered by one of its Bash rules; abstains otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList(pub Vec<Rule>);

impl AllowList {
    /// Parses each rule.
    ///
    /// # Errors
    ///
    /// The first rule that does not parse ([`Rule::parse`]).
    pub fn parse<I, S>(rules: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        parse_rules(rules).map(AllowList)
    }
}

impl AllowList {
    /// A compound Bash command whose parts are each covered by some Bash rule of the list
    /// (`Bash(git *)` and `Bash(cargo *)` together cover `git pull && cargo build`).
    fn covers_parts(&self, req: &PermissionRequest) -> bool {
        if req.tool_name != "Bash" {
            return false;
        }
        let Some(command) = req.input_str("command") else {
            return false;
        };
        let patterns: Vec<&str> = self
            .0
            .iter()
            .filter(|r| r.tool_matches("Bash"))
            .filter_map(Rule::content)
            .collect();
        if patterns.is_empty() {
            return false;
        }
        plain_parts(command).is_some_and(|parts| {
            parts
                .iter()
                .all(|c| patterns.iter().any(|p| bash_covers_part(p, c, command)))
        })
    }
}

impl Policy for AllowList {
    fn evaluate(&self, req: &PermissionRequest) -> Verdict {
        if self.0.iter().any(|r| r.matches(req)) || self.covers_parts(req) {
            Verdict::Allow
        } else {
            Verdict::Abstain
        }
    }
}

/// Denies calls that one of its rules touches ([`Rule::matches_any_part`]), with a message
/// naming the rule; abstains otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DenyList(pub Vec<Rule>);

impl DenyList {
    /// Parses each rule.
    ///
    /// # Errors
    ///
    /// The first rule that does not parse ([`Rule::parse`]).
    pub fn parse<I, S>(rules: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        parse_rules(rules).map(DenyList)
    }
}

impl Policy for DenyList {
    fn evaluate(&self, req: &PermissionRequest) -> Verdict {
        match self.0.iter().find(|r| r.matches_any_part(req)) {
            Some(rule) => Verdict::Deny(format!(
                "{} was denied by the permission rule `{rule}`",
                req.tool_name
            )),
            None => Verdict::Abstain,
        }
    }
}

/// Tools [`ReadOnly`] always allows.
pub const READ_ONLY_TOOLS: &[&str] = &[
    "Read",
    "Glob",
    "Grep",
    "LS",
    "WebFetch",
    "WebSearch",
    "NotebookRead",
    "TodoRead",
    "BashOutput",
    "ListMcpResourcesTool",
    "ReadMcpResourceTool",
];

/// Bash commands [`ReadOnly`] accepts (with per-command argument checks).
pub const READ_ONLY_COMMANDS: &[&str] = &[
    "ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "find", "git", "pwd", "echo",
];

/// A read-only session: allows [`READ_ONLY_TOOLS`] and Bash commands that are clearly
/// read-only, denies everything else with a message saying the session is read-only. Never
/// abstains.
///
/// A Bash command is read-only when every part of it (parts joined by `&&`, `||`, `;`, `|`,
/// `&`) is one of [`READ_ONLY_COMMANDS`] — `ls`, `cat`, `head`, `tail`, `wc`, `grep`, `rg`
/// (without `--pre`), `find` (without `-delete`, `-exec`, `-execdir`, `-ok`, `-okdir`,
/// `-fprint*`, `-fls`), `git status|log|diff|show` (no global options, no `--output`,
/// no `--ext-diff`), `pwd`, `echo` — and there is no command or process substitution, subshell,
/// here-document, variable in command position, or redirection other than to `/dev/null`,
/// descriptor duplication (`2>&1`) and input from a file (`<`).
///
/// Like every policy it only sees calls the CLI asks about: it cannot stop what a permission
/// mode (`acceptEdits`, `bypassPermissions`) or an allow rule in settings lets through, so use
/// it with the `default` (or `plan`) permission mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOnly;

impl ReadOnly {
    /// Whether `command` is clearly read-only (see [`ReadOnly`]).
    pub fn is_read_only_command(command: &str) -> bool {
        let script = shell::parse(command);
        script.is_plain()
            && !script.commands.is_empty()
            && script.commands.iter().all(read_only_simple)
    }
}

fn read_only_redirects(cmd: &SimpleCommand) -> bool {
    cmd.redirects.iter().all(|r| {
        let op = r.op.trim_start_matches(|c: char| c.is_ascii_digit());
        let target = r.target.as_ref().map(|w| w.text.as_str()).unwrap_or("");
        match op {
            ">" | ">>" | "&>" | "&>>" | ">|" => target == "/dev/null",
            ">&" | "<&" => shell::is_fd_target(target),
            "<" => !target.is_empty(),
            _ => false,
        }
    })
}

fn read_only_simple(cmd: &SimpleCommand) -> bool {
    let Some((name, args)) = cmd.words.split_first() else {
        return false;
    };
    if !read_only_redirects(cmd) {
        return false;
    }
    let args: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    match name.text.as_str() {
        "ls" | "cat" | "head" | "tail" | "wc" | "grep" | "egrep" | "fgrep" | "pwd" | "echo" => true,
        "rg" => !args.iter().any(|a| a.starts_with("--pre")),
        "find" => !args.iter().any(|a| {
            matches!(
                *a,
                "-delete" | "-exec" | "-execdir" | "-ok" | "-okdir" | "-fls"
            ) || a.starts_with("-fprint")
        }),
        "git" => {
            matches!(args.first(), Some(&("status" | "log" | "diff" | "show")))
                && !args
                    .iter()
                    .any(|a| a.starts_with("--output") || *a == "--ext-diff")
        }
        _ => false,
    }
}

/// At most this many characters of a command are quoted in a message.
const QUOTE_LIMIT: usize = 200;

fn quote_command(command: &str) -> String {
    let mut chars = command.chars();
    let head: String = chars.by_ref().take(QUOTE_LIMIT).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

impl Policy for ReadOnly {
    fn evaluate(&self, req: &PermissionRequest) -> Verdict {
        let tool = req.tool_name.as_str();
        if READ_ONLY_TOOLS.contains(&tool) {
            return Verdict::Allow;
        }
        if tool == "Bash" {
            let command = req.input_str("command").unwrap_or("");
            if ReadOnly::is_read_only_command(command) {
                return Verdict::Allow;
            }
            return Verdict::Deny(format!(
                "This session is read-only: the Bash command `{}` is not known to be read-only.",
                quote_command(command)
            ));
        }
        Verdict::Deny(format!(
            "This session is read-only: the tool {tool} is not allowed."
        ))
    }
}

/// Asks each policy in turn; the first verdict that is not [`Verdict::Abstain`] wins. Abstains
/// when every policy abstains (or the chain is empty).
///
/// Put a [`DenyList`] before an [`AllowList`] so that deny rules win.
#[derive(Default)]
pub struct Chain(pub Vec<Box<dyn Policy>>);

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Chain(Vec::new())
    }

    /// Appends `policy` (asked after the ones already in the chain).
    pub fn with(mut self, policy: impl Policy + 'static) -> Self {
        self.0.push(Box::new(policy));
        self
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("policies", &self.0.len())
            .finish()
    }
}

impl Policy for Chain {
    fn evaluate(&self, req: &PermissionRequest) -> Verdict {
        self.0
            .iter()
            .map(|p| p.evaluate(req))
            .find(|v| *v != Verdict::Abstain)
            .unwrap_or(Verdict::Abstain)
    }
}

// ---------------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------------

/// A [`PermissionHandler`] that evaluates a [`Policy`]: [`Verdict::Allow`] allows the call with
/// its original input, [`Verdict::Deny`] denies it (without interrupting the turn), and
/// [`Verdict::Abstain`] hands the request to the fallback handler — by default a denial with
/// the message "no policy rule allowed `<tool>`".
pub struct PolicyHandler<P> {
    policy: P,
    fallback: Option<Arc<dyn PermissionHandler>>,
}

impl<P: Policy + 'static> PolicyHandler<P> {
    /// A handler for `policy` with the default fallback (deny).
    pub fn new(policy: P) -> Self {
        PolicyHandler {
            policy,
            fallback: None,
        }
    }

    /// Sends the requests the policy abstains on to `handler` (a closure, another handler, a
    /// prompt UI, …).
    pub fn fallback(mut self, handler: impl PermissionHandler) -> Self {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<P: fmt::Debug> fmt::Debug for PolicyHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyHandler")
            .field("policy", &self.policy)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

/// The message of the default fallback's denial.
fn no_rule_message(tool: &str) -> String {
    format!("no policy rule allowed {tool}")
}

impl<P: Policy + 'static> PermissionHandler for PolicyHandler<P> {
    fn decide(&self, request: PermissionRequest) -> BoxFuture<'static, PermissionDecision> {
        match self.policy.evaluate(&request) {
            Verdict::Allow => Box::pin(ready(PermissionDecision::allow())),
            Verdict::Deny(message) => Box::pin(ready(PermissionDecision::deny(message))),
            Verdict::Abstain => match &self.fallback {
                Some(handler) => handler.decide(request),
                None => Box::pin(ready(PermissionDecision::deny(no_rule_message(
                    &request.tool_name,
                )))),
            },
        }
    }
}
