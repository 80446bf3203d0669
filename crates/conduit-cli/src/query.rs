//! `conduit query`: one prompt, printed as text or as the SDK's typed frames.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use claude_conduit::hooks::{HookEvent, Hooks};
use claude_conduit::message::{ContentBlock, MessageKind};
use claude_conduit::options::PermissionMode;
use claude_conduit::permission::policy::Rule;
use claude_conduit::{Client, Error, Message, Options};

use crate::exit::{self, Context};
use futures::StreamExt;

mod ask;
mod layered;
mod permissions;
mod show_hooks;

use permissions::{PermissionFlags, parse_rule};

use crate::exit::{EXIT_ERROR_RESULT, EXIT_FAILURE, EXIT_OK};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The assistant's text as it streams, one line per tool call, a summary line.
    Text,
    /// Every non-control frame, in order, one JSON object per line, as typed and re-serialized
    /// by the SDK.
    Json,
}

/// Arguments of `conduit query`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = PERMISSIONS_HELP)]
pub struct QueryArgs {
    /// The prompt.
    pub prompt: String,
    /// The claude executable (default: CONDUIT_CLAUDE_CLI, the pinned copy, PATH, usual places).
    #[arg(long, value_name = "PATH")]
    pub cli: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The model to use.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Permission mode: default, acceptEdits, plan, bypassPermissions, dontAsk, auto.
    #[arg(long, value_name = "M")]
    pub permission_mode: Option<String>,
    /// System prompt (default: empty, as the official SDKs).
    #[arg(long, value_name = "S")]
    pub system_prompt: Option<String>,
    /// Stop after this many agentic turns (1 or more).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = crate::args::number::<u32>(1..=u64::from(u32::MAX)))]
    pub max_turns: Option<u32>,
    /// Working directory of the CLI.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Tools allowed without asking, comma-separated permission rules (e.g. `Read,Bash(git *)`).
    #[arg(long, value_name = "L", value_delimiter = ',')]
    pub allowed_tools: Vec<String>,
    /// Tools removed from the model's context, comma-separated.
    #[arg(long, value_name = "L", value_delimiter = ',')]
    pub disallowed_tools: Vec<String>,
    /// Stream partial messages (text appears token by token; JSON output includes stream_event).
    #[arg(long)]
    pub include_partial: bool,
    /// Allow tool calls matching this permission rule (repeatable), e.g. `Bash(git *)`, `Read`,
    /// `Write(src/**)`, `mcp__server__*`.
    ///
    /// Checked by conduit when the CLI asks whether a call may run, after --deny and
    /// --read-only, so a --deny rule wins over it (unlike --allowed-tools, which the CLI
    /// applies before anything else).
    #[arg(long = "allow", value_name = "PATTERN", value_parser = parse_rule)]
    pub allow: Vec<Rule>,
    /// Deny tool calls matching this permission rule (repeatable), e.g. `Bash(rm *)`.
    ///
    /// Checked first, before every tool call, including the ones --allowed-tools, the
    /// permission mode or the CLI's auto-approval of read-only commands would let run. For
    /// Bash, a rule denies a command when any part of it matches (`a && rm -rf b`,
    /// `sudo rm x`). The model is told the call was denied and the turn goes on.
    #[arg(long = "deny", value_name = "PATTERN", value_parser = parse_rule)]
    pub deny: Vec<Rule>,
    /// Read-only session: allow read-only tools (Read, Glob, Grep, …) and clearly read-only
    /// Bash commands (ls, cat, grep, git status/log/diff/show, …), deny everything else.
    ///
    /// Decides every request the CLI asks about, so it cannot be combined with --allow or
    /// --ask, nor with a permission mode that lets writes through without asking
    /// (acceptEdits, bypassPermissions, auto).
    #[arg(long)]
    pub read_only: bool,
    /// Ask on the terminal about each tool call no rule decides: y = yes, n = no (the
    /// default), a = always (for the rest of this command).
    ///
    /// The request (tool, reason, input) is shown on stderr and the answer is read from stdin.
    /// When stdin is not a terminal, answers are read from it one per line
    /// (`printf 'y\nn\n' | conduit query --ask …`) and, once it runs out, from the terminal
    /// (/dev/tty); with no answer to be had the call is denied.
    #[arg(long)]
    pub ask: bool,
    /// Print one line to stderr for each hook event, e.g.
    /// `[hook] PreToolUse Bash {"command":"ls"}`.
    ///
    /// Registers a match-all hook for PreToolUse, PostToolUse, PostToolUseFailure,
    /// UserPromptSubmit, Stop, SubagentStart, SubagentStop, PreCompact, Notification,
    /// SessionStart and SessionEnd; the hooks change nothing.
    #[arg(long)]
    pub show_hooks: bool,
    /// After the session, print a short table of its metrics to stderr: turns, turn latency
    /// percentiles, tool calls, permission decisions, frames and bytes, tokens, cost.
    #[arg(long)]
    pub stats: bool,
    /// Run the session on a conduit gateway (`conduit serve`) instead of a local CLI:
    /// `ws://HOST:PORT`, `wss://…`, `http://…` / `https://…` (server-sent events) or
    /// `grpc://HOST:PORT`. Callbacks (--allow, --ask, hooks) still run here.
    #[arg(long, value_name = "URL", value_parser = crate::args::gateway_url)]
    pub via: Option<String>,
    /// File holding the gateway's bearer token (first non-comment line); default: the
    /// `CONDUIT_TOKEN` environment variable.
    #[arg(long, value_name = "F", requires = "via")]
    pub token_file: Option<PathBuf>,
    /// Write every frame of the session, both ways and control frames included, to FILE as
    /// JSON Lines: `{"ts":"<RFC 3339>","dir":"sdk->cli"|"cli->sdk","frame":{…}}` (appends).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Replace matches of this regular expression with `[REDACTED]` in every frame sent to the
    /// CLI and in every audited frame (repeatable), e.g. `--redact 'sk-[A-Za-z0-9_-]{20,}'`.
    #[arg(long, value_name = "REGEX")]
    pub redact: Vec<String>,
    /// Stop the query after SECS seconds (the CLI is ended; exit code 4).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Retry up to N times when the CLI fails before anything has streamed (never after).
    #[arg(long, value_name = "N")]
    pub retries: Option<usize>,
    /// Run the plugins in DIR (each subdirectory with a `plugin.toml`; see docs/PLUGINS.md) in
    /// this session: their hook handlers and MCP tools. Any plugin problem is an error (exit 2).
    /// Not the claude CLI's `--plugin-dir`.
    #[arg(long = "plugins", value_name = "DIR")]
    pub plugins: Option<PathBuf>,
}

/// The bearer token for `--via`: the first non-blank, non-`#` line of `file`, else
/// `CONDUIT_TOKEN`.
pub fn gateway_token(file: Option<&std::path::Path>) -> Result<String, Error> {
    let Some(path) = file else {
        return std::env::var("CONDUIT_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::InvalidOptions("--via needs a token: --token-file F or CONDUIT_TOKEN".into())
            });
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidOptions(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::InvalidOptions(format!(
                "the token file {} holds no token (the first line that is neither blank nor a \
                 `#` comment is the token)",
                path.display()
            ))
        })
}

/// The end of `conduit query --help`.
const PERMISSIONS_HELP: &str = concat!(
    "\
Permissions: the CLI asks conduit about each tool call it does not allow by itself. With any of
--allow, --deny, --read-only or --ask, conduit answers, in this order:
  1. a --deny rule matches       -> denied
  2. --read-only                 -> allowed if read-only, else denied
  3. an --allow rule matches     -> allowed
  4. --ask                       -> you answer y/n/a on the terminal
  5. otherwise                   -> denied, with a message naming the --allow rule to add
A denied call is reported to the model as a denial and the turn goes on. Without any of these
flags conduit installs no permission callback and the CLI applies its own rules.

",
    exit_codes_table!()
);

impl QueryArgs {
    /// Options for the SDK.
    pub fn options(&self) -> Result<Options, Error> {
        let mut b = Options::builder()
            .allowed_tools(self.allowed_tools.iter().cloned())
            .disallowed_tools(self.disallowed_tools.iter().cloned())
            .include_partial_messages(self.include_partial);
        if let Some(p) = &self.cli {
            b = b.cli_path(p);
        }
        if let Some(m) = &self.model {
            b = b.model(m);
        }
        if let Some(m) = &self.permission_mode {
            b = b.permission_mode(m.parse::<PermissionMode>()?);
        }
        if let Some(s) = &self.system_prompt {
            b = b.system_prompt(s);
        }
        if let Some(n) = self.max_turns {
            b = b.max_turns(n);
        }
        if let Some(d) = &self.cwd {
            b = b.cwd(d);
        }
        if let Some(url) = &self.via {
            let scheme = url.split("://").next().unwrap_or_default();
            b = if scheme.eq_ignore_ascii_case("redis") || scheme.eq_ignore_ascii_case("rediss") {
                // Straight to the workers: the credentials are in the URL (docs/SCALE.md).
                b.transport_url(url)
            } else {
                b.transport(url, gateway_token(self.token_file.as_deref())?)
            };
        }
        let permissions = self.permission_flags();
        permissions.check()?;
        if permissions.read_only
            && let Some(mode) = &self.permission_mode
        {
            let mode = mode.parse::<PermissionMode>()?;
            if !matches!(
                mode,
                PermissionMode::Default | PermissionMode::Plan | PermissionMode::DontAsk
            ) {
                return Err(Error::InvalidOptions(format!(
                    "--read-only cannot be enforced with --permission-mode {mode}: the CLI \
                     would run those tool calls without asking"
                )));
            }
        }
        if let Some(handler) = permissions.handler() {
            b = b.can_use_tool(handler);
        }
        let mut hooks = Hooks::new();
        if let Some(matcher) = permissions.deny_hook() {
            hooks.add(HookEvent::PreToolUse, matcher);
        }
        if self.show_hooks {
            hooks = show_hooks::add(hooks);
        }
        if !hooks.is_empty() {
            b = b.hooks(hooks);
        }
        Ok(b.build())
    }

    /// The permission flags.
    pub fn permission_flags(&self) -> PermissionFlags {
        PermissionFlags {
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            read_only: self.read_only,
            ask: self.ask,
        }
    }
}

/// Run `conduit query`.
pub async fn run(args: QueryArgs) -> ExitCode {
    let collector = if args.stats {
        let config = claude_conduit::telemetry::CollectorConfig::default();
        match claude_conduit::telemetry::Telemetry::builder()
            .collector(config)
            .install()
        {
            Ok(t) => t.collector().cloned(),
            Err(e) => {
                eprintln!("conduit: --stats unavailable: {e}");
                None
            }
        }
    } else {
        None
    };
    // The root span of the query (its trace reaches the gateway with --via and OTEL_*).
    let code =
        tracing::Instrument::instrument(run_query(args), tracing::info_span!("conduit.query"))
            .await;
    if let Some(c) = collector {
        eprint!("{}", crate::stats::table(&c.snapshot()));
    }
    code
}

async fn run_query(args: QueryArgs) -> ExitCode {
    let options = match args.options() {
        Ok(o) => o,
        Err(e) => {
            let ctx = Context { via: None };
            return ExitCode::from(exit::classify(&e, ctx).report("conduit query"));
        }
    };
    let mut plugins = None;
    let options = match &args.plugins {
        None => options,
        Some(dir) => match crate::plugins::start(dir, std::iter::empty()).await {
            Ok((manager, watcher)) => {
                let options = options.to_builder().plugins(&manager).build();
                plugins = Some((manager, watcher));
                options
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("conduit query: plugin: {p}");
                }
                return ExitCode::from(crate::exit::EXIT_USAGE);
            }
        },
    };
    let code = if layered::wanted(&args) {
        layered::run(&args, options).await
    } else {
        let ctx = Context {
            via: args.via.as_deref(),
        };
        run_session(&args.prompt, options, args.output, ctx).await
    };
    if let Some((manager, _watcher)) = plugins {
        manager.shutdown().await;
    }
    ExitCode::from(code)
}

/// Connect, send `prompt`, print the turn, disconnect; returns the exit code.
///
/// Ctrl-C sends an interrupt; a second Ctrl-C ends the CLI.
pub async fn run_session(
    prompt: &str,
    options: Options,
    output: OutputFormat,
    ctx: Context<'_>,
) -> u8 {
    let started = Instant::now();
    let client = match Client::connect(options).await {
        Ok(c) => c,
        Err(e) => return report_error(&e, ctx),
    };
    if let Err(e) = client.send(prompt).await {
        return report_error(&e, ctx);
    }
    let mut printer = Printer::new(output);
    let mut interrupts = 0u32;
    let mut code = EXIT_FAILURE;
    {
        let mut stream = std::pin::pin!(client.receive_response());
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(msg)) => {
                        if let Some(r) = msg.as_result() {
                            code = if r.is_error { EXIT_ERROR_RESULT } else { EXIT_OK };
                        }
                        printer.print(&msg, started);
                    }
                    Some(Err(e)) if e.is_frame_error() => {
                        eprintln!("conduit: skipped a frame: {e}");
                    }
                    Some(Err(e)) => {
                        printer.finish_line();
                        code = report_error(&e, ctx);
                        break;
                    }
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => {
                    interrupts += 1;
                    printer.finish_line();
                    if interrupts == 1 {
                        eprintln!("conduit: interrupting (Ctrl-C again to stop the CLI)");
                        if let Err(e) = client.interrupt().await {
                            eprintln!("conduit: interrupt failed: {e}");
                        }
                    } else {
                        eprintln!("conduit: stopping the CLI");
                        break;
                    }
                }
            }
        }
    }
    printer.finish_line();
    let grace_disconnect = interrupts < 2;
    if grace_disconnect {
        let _ = client.disconnect().await;
    } else {
        drop(client);
    }
    code
}

fn report_error(e: &Error, ctx: Context<'_>) -> u8 {
    exit::classify(e, ctx).report("conduit")
}

/// Prints messages as text or JSON lines.
pub struct Printer {
    format: OutputFormat,
    out: std::io::Stdout,
    /// True while a line of streamed text is open.
    mid_line: bool,
    /// Text already shown token by token for the current assistant message (partial mode).
    streamed_text: bool,
    /// Partial mode: a text block is being streamed.
    in_text_block: bool,
    /// A text block was printed and nothing else since: the next one gets a separator.
    after_text: bool,
    /// The text of the last text block printed (a failed result often repeats it).
    last_text: String,
}

impl Printer {
    /// A printer writing to stdout.
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            out: std::io::stdout(),
            mid_line: false,
            streamed_text: false,
            in_text_block: false,
            after_text: false,
            last_text: String::new(),
        }
    }

    /// Print one message.
    pub fn print(&mut self, msg: &Message, started: Instant) {
        let mut out = self.out.lock();
        if self.format == OutputFormat::Json {
            if !msg.is_control() {
                // Through the SDK's Serialize impl: the typed message re-serialized (it writes
                // the frame it parsed, so unknown fields survive).
                let _ = serde_json::to_writer(&mut out, msg);
                let _ = out.write_all(b"\n");
                let _ = out.flush();
            }
            return;
        }
        match msg.kind() {
            MessageKind::StreamEvent(ev) => {
                if let Some(t) = ev.text_delta() {
                    if !self.in_text_block {
                        separate(&mut out, &mut self.mid_line, self.after_text);
                        self.in_text_block = true;
                        self.last_text.clear();
                    }
                    let _ = out.write_all(t.as_bytes());
                    let _ = out.flush();
                    self.last_text.push_str(t);
                    self.mid_line = !t.ends_with('\n');
                    self.streamed_text = true;
                    self.after_text = true;
                } else if matches!(
                    ev.event_type(),
                    "content_block_start" | "content_block_stop" | "message_start"
                ) {
                    self.in_text_block = false;
                }
            }
            MessageKind::Assistant(a) => {
                for block in a.content() {
                    match block {
                        ContentBlock::Text(t) if !self.streamed_text => {
                            separate(&mut out, &mut self.mid_line, self.after_text);
                            let _ = write!(out, "{}", t.text);
                            self.mid_line = !t.text.ends_with('\n');
                            self.after_text = true;
                            self.last_text.clone_from(&t.text);
                        }
                        ContentBlock::ToolUse(t) => {
                            if self.mid_line {
                                let _ = writeln!(out);
                            }
                            let _ = writeln!(out, "[tool] {} {}", t.name, one_line(&t.input));
                            self.mid_line = false;
                            self.after_text = false;
                        }
                        _ => {}
                    }
                }
                self.streamed_text = false;
                let _ = out.flush();
            }
            MessageKind::Result(r) => {
                if self.mid_line {
                    let _ = writeln!(out);
                    self.mid_line = false;
                }
                let cost = r
                    .turn_cost_usd
                    .or(r.total_cost_usd)
                    .map_or_else(|| "n/a".to_owned(), |c| format!("${c:.4}"));
                let status = if r.is_error {
                    // The CLI's own message, unless the last text block already said it.
                    if let Some(text) = r.result.as_deref()
                        && text.trim() != self.last_text.trim()
                    {
                        let _ = writeln!(out, "{text}");
                    }
                    format!("error: {}", failure_summary(r))
                } else {
                    "ok".to_owned()
                };
                let _ = writeln!(
                    out,
                    "-- {status} · {} turn(s) · cost {cost} · {:.2}s",
                    r.num_turns,
                    started.elapsed().as_secs_f64()
                );
                self.after_text = false;
                let _ = out.flush();
            }
            _ => {}
        }
    }

    /// End an open line of streamed text.
    pub fn finish_line(&mut self) {
        if self.mid_line {
            let _ = writeln!(self.out.lock());
            self.mid_line = false;
        }
    }
}

/// Before a text block: end the open line, and leave a blank line after an earlier text block.
fn separate(out: &mut impl Write, mid_line: &mut bool, after_text: bool) {
    if *mid_line {
        let _ = writeln!(out);
        *mid_line = false;
    }
    if after_text {
        let _ = writeln!(out);
    }
}

/// What failed, and how to fix it when we know: the summary line of an error result. Never the
/// bare subtype (`success` is also the subtype of API failures).
pub fn failure_summary(r: &claude_conduit::message::ResultMessage) -> String {
    use claude_conduit::message::ResultSubtype;
    let text = r.result.as_deref().unwrap_or_default();
    if text.contains("Not logged in") {
        return "not logged in: set ANTHROPIC_API_KEY or run claude /login".to_owned();
    }
    if r.api_error_status == Some(401) || text.contains("Invalid API key") {
        return "the API refused the credentials (401): check ANTHROPIC_API_KEY, or run claude \
                /login"
            .to_owned();
    }
    match r.kind() {
        ResultSubtype::ErrorMaxTurns => "the turn limit was reached (--max-turns)".to_owned(),
        ResultSubtype::ErrorMaxBudgetUsd => "the budget limit was reached".to_owned(),
        ResultSubtype::ErrorDuringExecution => "the turn failed during execution".to_owned(),
        ResultSubtype::ErrorMaxStructuredOutputRetries => {
            "no valid structured output after the allowed retries".to_owned()
        }
        _ => match r.api_error_status {
            Some(status) => format!("the API answered with status {status}"),
            None if r.is_api_error() => "the API call failed".to_owned(),
            None => format!("the turn failed ({})", r.subtype),
        },
    }
}

fn one_line(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_conduit::message::ResultMessage;

    fn result(v: serde_json::Value) -> ResultMessage {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn failure_summaries_say_what_failed_never_the_bare_subtype() {
        let cases = [
            (
                serde_json::json!({"subtype": "success", "is_error": true,
                    "result": "Not logged in · Please run /login"}),
                "not logged in: set ANTHROPIC_API_KEY or run claude /login",
            ),
            (
                serde_json::json!({"subtype": "success", "is_error": true,
                    "api_error_status": 401, "result": "Invalid API key"}),
                "the API refused the credentials (401): check ANTHROPIC_API_KEY, or run claude /login",
            ),
            (
                serde_json::json!({"subtype": "success", "is_error": true, "api_error_status": 529}),
                "the API answered with status 529",
            ),
            (
                serde_json::json!({"subtype": "error_max_turns", "is_error": true}),
                "the turn limit was reached (--max-turns)",
            ),
            (
                serde_json::json!({"subtype": "success", "is_error": true}),
                "the API call failed",
            ),
        ];
        for (r, expected) in cases {
            let summary = failure_summary(&result(r));
            assert_eq!(summary, expected);
            assert!(!summary.contains("success"), "{summary}");
        }
    }
}
