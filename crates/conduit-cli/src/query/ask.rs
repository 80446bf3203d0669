//! `--ask`: a person answers the permission requests no rule decides.
//!
//! Each request is shown on stderr (the tool, why the CLI asks, and its input as indented JSON,
//! truncated) followed by `Allow? [y]es / [N]o / [a]lways:`. Answers are read one line at a time:
//!
//! 1. from stdin: typed at the terminal, or — when stdin is a pipe or a file — one answer per
//!    line (`printf 'y\nn\n' | conduit query --ask …`), which is how scripts and tests answer;
//! 2. when piped stdin runs out, from the controlling terminal (`/dev/tty`), if there is one;
//! 3. with neither, the request is denied with a message saying nobody could be asked.
//!
//! `a` (always) allows the call, sends the CLI's "always allow" suggestions back with it — for
//! this session only, never into a settings file — and remembers the rule for the rest of this
//! command, so matching calls are not asked again. The question lists what "always" implies.
//!
//! Requests are asked one at a time, in order. A request the CLI withdraws (an interrupt) is
//! dropped while it waits; the answer being typed then goes to the next request.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::sync::{Arc, Mutex, mpsc};

use claude_conduit::permission::policy::Rule;
use claude_conduit::permission::{
    PermissionBehavior, PermissionDecision, PermissionDestination, PermissionHandler,
    PermissionRequest, PermissionRuleValue, PermissionUpdate,
};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc as tokio_mpsc;

/// At most this many lines of the pretty-printed input are shown.
const MAX_INPUT_LINES: usize = 24;
/// At most this many characters of one line are shown.
const MAX_LINE_CHARS: usize = 300;

/// The `--ask` prompt; a [`PermissionHandler`] (used as the policy's fallback).
#[derive(Clone, Default)]
pub struct Asker {
    /// The answer source, started on the first question (so stdin is not touched unless a
    /// question is actually asked).
    answers: Arc<tokio::sync::Mutex<Option<Answers>>>,
    /// What "always" allowed so far.
    always: Arc<Mutex<Vec<Remembered>>>,
}

/// A call "always" allowed earlier.
enum Remembered {
    /// A rule from the CLI's suggestions (`Bash(npm test:*)`, `Write`, …).
    Rule(Rule),
    /// No suggestion came with the request: exactly this tool with exactly this input.
    Exact(String, Value),
}

impl Remembered {
    fn matches(&self, req: &PermissionRequest) -> bool {
        match self {
            Remembered::Rule(rule) => rule.matches(req),
            Remembered::Exact(tool, input) => *tool == req.tool_name && *input == req.input,
        }
    }

    fn describe(&self) -> String {
        match self {
            Remembered::Rule(rule) => rule.to_string(),
            Remembered::Exact(tool, _) => format!("{tool} with this exact input"),
        }
    }
}

impl Asker {
    /// A prompt that has not asked anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    async fn ask(self, req: PermissionRequest) -> PermissionDecision {
        if let Ok(always) = self.always.lock()
            && let Some(hit) = always.iter().find(|r| r.matches(&req))
        {
            eprintln!(
                "[permission] {} allowed: you answered \"always\" for {}",
                req.tool_name,
                hit.describe()
            );
            return PermissionDecision::allow();
        }
        // One question at a time; the lock is released if the CLI withdraws the request.
        let mut answers = self.answers.lock().await;
        let answers = answers.get_or_insert_with(Answers::start);
        eprint!("{}", question(&req));
        // Says so on the terminal if the CLI withdraws the question while it waits.
        let mut pending = Pending(true);
        let decision = loop {
            let _ = std::io::stderr().flush();
            let Some((line, typed)) = answers.next_line().await else {
                eprintln!();
                let why = answers
                    .failure
                    .clone()
                    .unwrap_or_else(|| NO_ANSWER.to_owned());
                break PermissionDecision::deny(format!(
                    "The tool call was denied: conduit was run with --ask but {why}."
                ));
            };
            if !typed {
                // Echo a piped answer so the transcript reads like a conversation.
                eprintln!("{line}");
            }
            match line.to_ascii_lowercase().as_str() {
                "y" | "yes" => break PermissionDecision::allow(),
                "" | "n" | "no" => {
                    break PermissionDecision::deny(format!(
                        "The user denied this {} call.",
                        req.tool_name
                    ));
                }
                "a" | "always" => break self.allow_always(&req),
                _ => eprint!("Please answer y (yes), n (no) or a (always): "),
            }
        };
        pending.0 = false;
        decision
    }

    fn allow_always(&self, req: &PermissionRequest) -> PermissionDecision {
        let mut remembered: Vec<Remembered> = req
            .suggestions
            .iter()
            .filter_map(|update| match update {
                PermissionUpdate::AddRules {
                    rules,
                    behavior: PermissionBehavior::Allow,
                    ..
                } => Some(rules),
                _ => None,
            })
            .flatten()
            .filter_map(|rule| {
                let text = match &rule.rule_content {
                    Some(content) => format!(
                        "{}({})",
                        rule.tool_name,
                        content.replace('(', "\\(").replace(')', "\\)")
                    ),
                    None => rule.tool_name.clone(),
                };
                Rule::parse(&text).ok().map(Remembered::Rule)
            })
            .collect();
        if remembered.is_empty() {
            remembered.push(Remembered::Exact(req.tool_name.clone(), req.input.clone()));
        }
        let described: Vec<String> = remembered.iter().map(Remembered::describe).collect();
        eprintln!("[permission] allowing {} from now on", described.join(", "));
        if let Ok(mut always) = self.always.lock() {
            always.extend(remembered);
        }
        PermissionDecision::allow_always(req.suggestions.iter().map(for_this_session).collect())
    }
}

/// While `true`, dropping it tells the person the question was withdrawn.
struct Pending(bool);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0 {
            eprintln!(
                "\n[permission] the CLI withdrew this question; the next answer goes to the next one"
            );
        }
    }
}

impl PermissionHandler for Asker {
    fn decide(&self, request: PermissionRequest) -> BoxFuture<'static, PermissionDecision> {
        Box::pin(self.clone().ask(request))
    }
}

const NO_ANSWER: &str = "there was nobody to ask (stdin gave no answer and there is no terminal)";

/// The question shown for `req`, ending with the prompt (no newline).
fn question(req: &PermissionRequest) -> String {
    let mut out = String::from("\n");
    let title = req
        .title
        .clone()
        .unwrap_or_else(|| format!("Claude wants to use {}", req.tool_name));
    out.push_str(&format!("┌ {title}\n"));
    if let Some(d) = &req.description {
        out.push_str(&format!("│ {d}\n"));
    }
    if let Some(reason) = &req.decision_reason {
        out.push_str(&format!(
            "│ why asked: {}\n",
            truncate(reason, MAX_LINE_CHARS)
        ));
    }
    if let Some(path) = &req.blocked_path {
        out.push_str(&format!("│ path: {path}\n"));
    }
    for line in pretty_input(&req.input) {
        out.push_str(&format!("│   {line}\n"));
    }
    if !req.suggestions.is_empty() {
        let what: Vec<String> = req
            .suggestions
            .iter()
            .map(for_this_session)
            .map(|u| describe_update(&u))
            .collect();
        out.push_str(&format!(
            "│ a (always) also: {}\n",
            truncate(&what.join("; "), MAX_LINE_CHARS)
        ));
    }
    out.push_str("└ Allow? [y]es / [N]o / [a]lways: ");
    out
}

/// `update` stored for this session only: "always" must not write the user's settings files
/// (the CLI suggests `localSettings` for rules).
fn for_this_session(update: &PermissionUpdate) -> PermissionUpdate {
    let mut update = update.clone();
    match &mut update {
        PermissionUpdate::AddRules { destination, .. }
        | PermissionUpdate::ReplaceRules { destination, .. }
        | PermissionUpdate::RemoveRules { destination, .. }
        | PermissionUpdate::SetMode { destination, .. }
        | PermissionUpdate::AddDirectories { destination, .. }
        | PermissionUpdate::RemoveDirectories { destination, .. } => {
            *destination = PermissionDestination::Session;
        }
        _ => {}
    }
    update
}

/// A permission update the CLI suggests for "always", in words.
fn describe_update(update: &PermissionUpdate) -> String {
    let rules = |rules: &[PermissionRuleValue]| {
        rules
            .iter()
            .map(|r| match &r.rule_content {
                Some(c) => format!("{}({c})", r.tool_name),
                None => r.tool_name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match update {
        PermissionUpdate::AddRules {
            rules: r,
            behavior,
            destination,
        } => format!("{behavior} {} ({destination})", rules(r)),
        PermissionUpdate::SetMode { mode, destination } => {
            format!("switch to the {mode} permission mode ({destination})")
        }
        PermissionUpdate::AddDirectories {
            directories,
            destination,
        } => format!(
            "add the directories {} ({destination})",
            directories.join(", ")
        ),
        other => other.to_value().to_string(),
    }
}

/// The input as indented JSON, at most [`MAX_INPUT_LINES`] lines of at most
/// [`MAX_LINE_CHARS`] characters.
fn pretty_input(input: &Value) -> Vec<String> {
    let text = serde_json::to_string_pretty(input).unwrap_or_else(|_| input.to_string());
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = lines
        .iter()
        .take(MAX_INPUT_LINES)
        .map(|l| truncate(l, MAX_LINE_CHARS))
        .collect();
    if lines.len() > MAX_INPUT_LINES {
        out.push(format!("… ({} more lines)", lines.len() - MAX_INPUT_LINES));
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// Lines typed or piped in, read on demand by a thread (reads block; the async side must not).
struct Answers {
    /// Asks the reader thread for one more line.
    want: mpsc::Sender<()>,
    /// Lines from the reader thread, with whether they were typed at a terminal; `None` (or a
    /// closed channel) means no more answers.
    lines: tokio_mpsc::UnboundedReceiver<Option<(String, bool)>>,
    /// A line was asked for and has not arrived yet (its question was withdrawn): the next
    /// question takes it instead of asking for another.
    outstanding: bool,
    /// Why no answer can be read, once that is known.
    failure: Option<String>,
}

impl Answers {
    fn start() -> Self {
        let (want_tx, want_rx) = mpsc::channel();
        let (line_tx, line_rx) = tokio_mpsc::unbounded_channel();
        let failure = std::thread::Builder::new()
            .name("conduit-ask".into())
            .spawn(move || read_answers(&want_rx, &line_tx))
            .err()
            .map(|e| format!("the prompt could not start ({e})"));
        Answers {
            want: want_tx,
            lines: line_rx,
            outstanding: false,
            failure,
        }
    }

    /// The next answer, trimmed, and whether it was typed at a terminal; `None` when there is
    /// none to be had. Cancel-safe.
    async fn next_line(&mut self) -> Option<(String, bool)> {
        if self.failure.is_some() {
            return None;
        }
        if !self.outstanding {
            if self.want.send(()).is_err() {
                self.failure = Some(NO_ANSWER.to_owned());
                return None;
            }
            self.outstanding = true;
        }
        let line = self.lines.recv().await;
        self.outstanding = false;
        match line {
            Some(Some(line)) => Some(line),
            _ => {
                self.failure = Some(NO_ANSWER.to_owned());
                None
            }
        }
    }
}

/// The reader thread: for each request on `want`, one line from stdin — then, once piped stdin
/// is exhausted, from `/dev/tty` — sent on `lines`; `None` when there is nothing left to read.
fn read_answers(
    want: &mpsc::Receiver<()>,
    lines: &tokio_mpsc::UnboundedSender<Option<(String, bool)>>,
) {
    let mut typed = std::io::stdin().is_terminal();
    let mut source: Box<dyn BufRead> = Box::new(std::io::stdin().lock());
    // A terminal on stdin is already the terminal: Ctrl-D there means "no more answers".
    let mut tried_tty = typed;
    while want.recv().is_ok() {
        let line = loop {
            let mut buf = Vec::new();
            match source.read_until(b'\n', &mut buf) {
                Ok(n) if n > 0 => {
                    break Some((String::from_utf8_lossy(&buf).trim().to_owned(), typed));
                }
                _ if !tried_tty => {
                    tried_tty = true;
                    match File::open("/dev/tty") {
                        Ok(tty) => {
                            eprint!("(no more answers on stdin; reading from the terminal) ");
                            source = Box::new(BufReader::new(tty));
                            typed = true;
                        }
                        Err(_) => break None,
                    }
                }
                _ => break None,
            }
        };
        let done = line.is_none();
        if lines.send(line).is_err() || done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_question_shows_the_tool_and_its_input_truncated() {
        let long: String = "x".repeat(1000);
        let req = PermissionRequest::new("Bash", json!({"command": long, "description": "d"}));
        let q = question(&req);
        assert!(q.contains("Claude wants to use Bash"), "{q}");
        assert!(q.contains("\"command\": \"xxx"), "{q}");
        assert!(q.contains('…'), "{q}");
        assert!(
            q.lines().all(|l| l.chars().count() < MAX_LINE_CHARS + 20),
            "{q}"
        );
        assert!(q.ends_with("[a]lways: "), "{q}");
    }

    #[test]
    fn long_inputs_are_cut_to_a_few_lines() {
        let items: Vec<u32> = (0..100).collect();
        let lines = pretty_input(&json!({"items": items}));
        assert_eq!(lines.len(), MAX_INPUT_LINES + 1);
        assert!(lines[MAX_INPUT_LINES].contains("more lines"));
    }

    #[test]
    fn always_remembers_the_suggested_rule_or_the_exact_call() {
        let asker = Asker::new();
        let body = json!({
            "subtype": "can_use_tool",
            "tool_name": "Bash",
            "input": {"command": "npm test"},
            "permission_suggestions": [{
                "type": "addRules",
                "rules": [{"toolName": "Bash", "ruleContent": "npm test:*"}],
                "behavior": "allow",
                "destination": "session"
            }]
        });
        let req = body
            .as_object()
            .map(PermissionRequest::from_body)
            .and_then(Result::ok);
        let Some(req) = req else {
            panic!("request parses");
        };
        let decision = asker.allow_always(&req);
        assert!(decision.is_allow());
        let again = PermissionRequest::new("Bash", json!({"command": "npm test -- --watch"}));
        let always = asker
            .always
            .lock()
            .map(|a| a.iter().any(|r| r.matches(&again)));
        assert_eq!(always.ok(), Some(true));

        let plain = PermissionRequest::new("Write", json!({"file_path": "/tmp/a"}));
        asker.allow_always(&plain);
        let other = PermissionRequest::new("Write", json!({"file_path": "/tmp/b"}));
        let hits = asker.always.lock().map(|a| {
            (
                a.iter().any(|r| r.matches(&plain)),
                a.iter().any(|r| r.matches(&other)),
            )
        });
        assert_eq!(hits.ok(), Some((true, false)));
    }
}
