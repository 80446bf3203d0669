//! `mock-claude`: a fast, std-only stand-in for the `claude` CLI in SDK (stream-json) mode.
//!
//! The mock speaks the same NDJSON protocol as `claude --output-format stream-json --verbose
//! --input-format stream-json`: one JSON object per line on stdin, one compact JSON object per
//! line on stdout. It exists for tests and benchmarks of the SDK, so it answers instantly, it
//! pre-builds its frames once (only the per-frame uuid and the per-turn message id are patched
//! in place), writes through one locked, 256 KiB-buffered stdout, and flushes only when it is
//! about to wait (for input, a sleep, a blocking stderr write) or exit.
//!
//! Run it with the `mock-claude` binary of this crate, or call [`run`] from another binary (the
//! SDK's CLI exposes it as a hidden `conduit mock-claude` subcommand).
//!
//! # Command line
//!
//! Every argument is ignored (the SDK passes real `claude` flags such as `--output-format
//! stream-json --verbose --input-format stream-json --system-prompt=`), except `-v` /
//! `--version`, which prints [`VERSION_LINE`] and exits 0.
//!
//! # Protocol
//!
//! | stdin line | what the mock does |
//! |---|---|
//! | `control_request` `initialize` | `control_response` success; `response` is a small object shaped like the real CLI's (`commands`, `agents`, `output_style`, `available_output_styles`, `models`, `account`, `pid`, `claude_code_version`) |
//! | `control_request` `interrupt`, `set_model`, `set_max_thinking_tokens` | success with no `response` field (`set_model` changes the model named by later frames; `null` restores the default) |
//! | `control_request` `set_permission_mode` | success, `response: {"mode": <mode>}`; later `system/init` frames report the mode |
//! | `control_request` `mcp_status` | success, `response: {"mcpServers": []}` |
//! | `control_request` with any other subtype | `{"subtype":"error","request_id":…,"error":"Unsupported control request subtype: X"}` |
//! | `user` | one turn: `system/init` (at every turn, like the real CLI), `N` `assistant` frames (one text block of `B` ASCII bytes each, same `message.id` within a turn), then a `result` frame (`subtype:"success"`, `is_error:false`, `num_turns:1`, `total_cost_usd` growing by 0.001 per completed turn) |
//! | `control_response`, `control_cancel_request`, `keep_alive`, any other JSON, blank lines | ignored |
//! | a line that is not JSON | `Error parsing streaming input line: …` on stderr, exit 1 (like the real CLI) |
//! | end of stdin | flush, exit 0, or 1 if the last `result` was an error |
//!
//! A `user` line that arrives while a turn is still running (only possible in the delay, hang and
//! permission modes below) is queued and answered after that turn. An `interrupt` that arrives
//! while no turn is running is answered with a plain success. A broken stdout pipe ends the
//! process quietly, with the same exit code as end of stdin.
//!
//! # Environment knobs
//!
//! All are optional. Numbers are decimal; a flag is on unless it is empty, `0` or `false`. An
//! invalid number makes the mock print an error and exit 2.
//!
//! | variable | effect |
//! |---|---|
//! | [`MOCK_CLAUDE_MESSAGES`](ENV_MESSAGES)`=N` | assistant frames per turn (default 1) |
//! | [`MOCK_CLAUDE_TEXT_BYTES`](ENV_TEXT_BYTES)`=B` | text bytes per assistant frame (default 32); plain ASCII filler that needs no JSON escaping, so the `text` field is exactly `B` bytes |
//! | [`MOCK_CLAUDE_STDERR_BYTES`](ENV_STDERR_BYTES)`=N` | write `N` bytes of filler lines to stderr before answering each `user` message. The write blocks while nobody drains stderr, and then the turn never comes |
//! | [`MOCK_CLAUDE_CRASH_AFTER`](ENV_CRASH_AFTER)`=K` | after `K` assistant frames of a turn (`0`: right after `system/init`), flush stdout, print `mock-claude: simulated crash …` on stderr and exit 3, with no `result` |
//! | [`MOCK_CLAUDE_UNKNOWN_FRAMES`](ENV_UNKNOWN_FRAMES)`=1` | after the first assistant frame of each turn, emit `{"type":"mock_unknown_type","x":1}` and a `system` frame with subtype `mock_unknown_subtype` |
//! | [`MOCK_CLAUDE_MALFORMED`](ENV_MALFORMED)`=1` | after assistant frame `ceil(N/2)` of each turn, emit the line `{"type":"assistant", this is not json`, then go on normally |
//! | [`MOCK_CLAUDE_GRANDCHILD`](ENV_GRANDCHILD)`=1` | at start, spawn `sleep 300` with the mock's stdout and stderr inherited (so it holds the pipes open after the mock exits) and print `mock-claude: grandchild pid N` on stderr |
//! | [`MOCK_CLAUDE_DELAY_MS`](ENV_DELAY_MS)`=D` | flush, then wait `D` ms before each assistant frame. Control requests are answered during the wait (stdin is then read by a second thread); an `interrupt` ends the turn |
//! | [`MOCK_CLAUDE_HANG`](ENV_HANG)`=1` | after the first assistant frame of a turn, produce no more output for that turn, but keep reading stdin and answering control requests. An `interrupt` ends the turn. End of stdin during a hang does **not** end the process (it must be killed) |
//! | [`MOCK_CLAUDE_INTERRUPT_FLOOD`](ENV_INTERRUPT_FLOOD)`=N` | when an `interrupt` arrives, write `N` assistant frames before its `control_response` |
//! | [`MOCK_CLAUDE_CAN_USE_TOOL`](ENV_CAN_USE_TOOL)`=1` | after `system/init` of each turn, send `control_request` `can_use_tool` (`tool_name:"Bash"`, `input:{"command":"touch x"}`, `tool_use_id:"toolu_<turn>"`, `permission_suggestions:[]`, a uuid `request_id`) and wait for the matching `control_response`, answering other requests meanwhile. The first assistant frame's text then becomes `permission: allow`, `permission: deny: <message>` or `permission: error: <error>` (the other frames keep the filler). A deny with `interrupt:true` ends the turn like an interrupt |
//!
//! An interrupted turn (by `interrupt` during a delay, hang or permission wait, or by a deny with
//! `interrupt:true`) ends like the real CLI's: the `control_response` (preceded, during a
//! permission wait, by a `control_cancel_request` for the pending `can_use_tool`), then a `user`
//! frame with the text `[Request interrupted by user]` (`… for tool use]` after a deny), then a
//! `result` with `subtype:"error_during_execution"` and `is_error:true`.

use std::fs::File;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, BufRead, BufReader, BufWriter, Read, StdoutLock, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// What `mock-claude --version` prints.
pub const VERSION_LINE: &str = "2.1.330 (Claude Code) [mock]";
/// The CLI version the mock reports in `initialize` and `system/init`.
pub const CLAUDE_CODE_VERSION: &str = "2.1.330";

/// Assistant frames per turn (default 1).
pub const ENV_MESSAGES: &str = "MOCK_CLAUDE_MESSAGES";
/// Text bytes per assistant frame (default 32).
pub const ENV_TEXT_BYTES: &str = "MOCK_CLAUDE_TEXT_BYTES";
/// Bytes written to stderr before answering each user message.
pub const ENV_STDERR_BYTES: &str = "MOCK_CLAUDE_STDERR_BYTES";
/// Exit with code 3 after this many assistant frames of a turn.
pub const ENV_CRASH_AFTER: &str = "MOCK_CLAUDE_CRASH_AFTER";
/// Emit an unknown frame type and an unknown system subtype in each turn.
pub const ENV_UNKNOWN_FRAMES: &str = "MOCK_CLAUDE_UNKNOWN_FRAMES";
/// Emit one malformed (non-JSON) line in the middle of each turn.
pub const ENV_MALFORMED: &str = "MOCK_CLAUDE_MALFORMED";
/// Spawn a `sleep 300` grandchild that inherits stdout and stderr.
pub const ENV_GRANDCHILD: &str = "MOCK_CLAUDE_GRANDCHILD";
/// Milliseconds to wait before each assistant frame.
pub const ENV_DELAY_MS: &str = "MOCK_CLAUDE_DELAY_MS";
/// Stop producing output after the first assistant frame of a turn, until interrupted.
pub const ENV_HANG: &str = "MOCK_CLAUDE_HANG";
/// Assistant frames written ahead of each `interrupt` reply.
pub const ENV_INTERRUPT_FLOOD: &str = "MOCK_CLAUDE_INTERRUPT_FLOOD";
/// Ask `can_use_tool` at the start of each turn.
pub const ENV_CAN_USE_TOOL: &str = "MOCK_CLAUDE_CAN_USE_TOOL";

/// Model named in assistant frames until `set_model` changes it.
const DEFAULT_MODEL: &str = "claude-opus-4-8";
/// Model named in `system/init` until `set_model` changes it.
const DEFAULT_INIT_MODEL: &str = "claude-opus-4-8[1m]";
const INTERRUPT_MARKER: &str = "[Request interrupted by user]";
const TOOL_INTERRUPT_MARKER: &str = "[Request interrupted by user for tool use]";
const MALFORMED_LINE: &[u8] = b"{\"type\":\"assistant\", this is not json\n";
const UNKNOWN_TYPE_LINE: &[u8] = b"{\"type\":\"mock_unknown_type\",\"x\":1}\n";
const FILLER: &[u8] = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod ";
const OUT_BUFFER: usize = 256 * 1024;
const IN_BUFFER: usize = 64 * 1024;
/// Hex digits of the varying tail of every uuid.
const UUID_TAIL: usize = 12;
/// Hex digits of the per-turn part of `message.id`.
const MSG_ID_DIGITS: usize = 24;

/// Runs the mock CLI on this process's stdin, stdout and stderr, configured from the
/// environment (see the [module documentation](self)), and returns its exit code.
///
/// Returns when stdin ends (0, or 1 if the last `result` was an error), on a non-JSON input line
/// (1), on a simulated crash (3) or on an invalid knob value (2). In hang mode, end of stdin
/// during a hung turn never returns.
pub fn run() -> ExitCode {
    if std::env::args_os()
        .skip(1)
        .any(|a| a == "-v" || a == "--version")
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{VERSION_LINE}");
        let _ = out.flush();
        return ExitCode::SUCCESS;
    }
    let cfg = match Config::from_env() {
        Ok(cfg) => cfg,
        Err(msg) => {
            say(&msg);
            return ExitCode::from(2);
        }
    };
    if cfg.grandchild {
        spawn_grandchild();
    }
    let mut mock = Mock::new(cfg);
    let outcome = mock.serve();
    let flushed = mock.out.flush();
    let normal = u8::from(mock.last_error);
    let code = match outcome {
        Ok(()) => match flushed {
            Ok(()) | Err(Stop::BrokenPipe) => normal,
            Err(Stop::Code(c)) => c,
        },
        Err(Stop::BrokenPipe) => normal,
        Err(Stop::Code(c)) => c,
    };
    ExitCode::from(code)
}

/// Why the mock stops early.
enum Stop {
    /// Exit with this code.
    Code(u8),
    /// The stdout reader went away; exit as if stdin had ended.
    BrokenPipe,
}

fn write_failed(e: io::Error) -> Stop {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Stop::BrokenPipe
    } else {
        say(&format!("stdout write failed: {e}"));
        Stop::Code(1)
    }
}

/// Writes `mock-claude: <msg>` to stderr, ignoring errors.
fn say(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "mock-claude: {msg}");
}

/// Knob values read from the environment.
#[derive(Debug, Clone)]
struct Config {
    messages: u64,
    text_bytes: usize,
    stderr_bytes: usize,
    crash_after: Option<u64>,
    unknown_frames: bool,
    malformed: bool,
    grandchild: bool,
    delay: Option<Duration>,
    hang: bool,
    interrupt_flood: u64,
    can_use_tool: bool,
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let delay_ms: u64 = env_num(ENV_DELAY_MS)?.unwrap_or(0);
        Ok(Self {
            messages: env_num(ENV_MESSAGES)?.unwrap_or(1),
            text_bytes: env_num(ENV_TEXT_BYTES)?.unwrap_or(32),
            stderr_bytes: env_num(ENV_STDERR_BYTES)?.unwrap_or(0),
            crash_after: env_num(ENV_CRASH_AFTER)?,
            unknown_frames: env_flag(ENV_UNKNOWN_FRAMES),
            malformed: env_flag(ENV_MALFORMED),
            grandchild: env_flag(ENV_GRANDCHILD),
            delay: (delay_ms > 0).then(|| Duration::from_millis(delay_ms)),
            hang: env_flag(ENV_HANG),
            interrupt_flood: env_num(ENV_INTERRUPT_FLOOD)?.unwrap_or(0),
            can_use_tool: env_flag(ENV_CAN_USE_TOOL),
        })
    }
}

fn env_num<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid {name}={v:?}: expected a non-negative integer")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("invalid {name}: not UTF-8")),
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// Spawns `sleep 300` holding our stdout and stderr, and reaps it from a thread if it ends first.
fn spawn_grandchild() {
    match Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(mut child) => {
            say(&format!("grandchild pid {}", child.id()));
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => say(&format!("could not spawn the grandchild: {e}")),
    }
}

/// Buffered stdout.
struct Out(BufWriter<StdoutLock<'static>>);

impl Out {
    fn new() -> Self {
        Self(BufWriter::with_capacity(OUT_BUFFER, io::stdout().lock()))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.0.write_all(bytes).map_err(write_failed)
    }

    fn flush(&mut self) -> Result<(), Stop> {
        self.0.flush().map_err(write_failed)
    }
}

/// Writes the low `dst.len()` hex digits of `v` (zero-padded) into `dst`.
fn put_hex(dst: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in dst.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Generator of unique uuid-like strings: a random 24-character prefix and a 48-bit tail that
/// counts up (so tests can check the order frames arrive in from the uuids alone).
struct Ids {
    /// `xxxxxxxx-xxxx-4xxx-yxxx-` (24 bytes).
    prefix: String,
    counter: u64,
}

impl Ids {
    fn new() -> Self {
        let (a, b) = (random_u64(), random_u64());
        let prefix = format!(
            "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            8 | ((b >> 62) & 3),
            (b >> 48) & 0xfff
        );
        Self { prefix, counter: 0 }
    }

    fn next_tail(&mut self) -> u64 {
        self.counter += 1;
        self.counter & 0xffff_ffff_ffff
    }

    fn next_uuid(&mut self) -> String {
        let mut tail = [0u8; UUID_TAIL];
        put_hex(&mut tail, self.next_tail());
        let mut s = String::with_capacity(36);
        s.push_str(&self.prefix);
        s.extend(tail.iter().map(|&b| char::from(b)));
        s
    }
}

/// A pre-built frame line whose `uuid` (its last field) is patched before each write.
struct Frame {
    bytes: Vec<u8>,
    uuid_at: usize,
    /// Offset of the per-turn hex digits of `message.id`, for assistant frames.
    msg_id_at: Option<usize>,
}

impl Frame {
    /// Finishes `head`, which must end with `"uuid":"`, with a uuid placeholder and `"}\n`.
    fn finish(mut head: Vec<u8>, ids: &Ids, msg_id_at: Option<usize>) -> Self {
        head.extend_from_slice(ids.prefix.as_bytes());
        let uuid_at = head.len();
        head.extend_from_slice(&[b'0'; UUID_TAIL]);
        head.extend_from_slice(b"\"}\n");
        Self {
            bytes: head,
            uuid_at,
            msg_id_at,
        }
    }

    fn set_msg_id(&mut self, turn: u64) {
        if let Some(at) = self.msg_id_at {
            put_hex(&mut self.bytes[at..at + MSG_ID_DIGITS], turn);
        }
    }

    fn emit(&mut self, out: &mut Out, ids: &mut Ids) -> Result<(), Stop> {
        let at = self.uuid_at;
        put_hex(&mut self.bytes[at..at + UUID_TAIL], ids.next_tail());
        out.put(&self.bytes)
    }
}

/// JSON string literal (with quotes) for `s`.
fn json_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// `"` + `n` bytes of ASCII filler + `"`: a JSON string literal that needs no escapes.
fn filler_literal(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 2);
    v.push(b'"');
    let mut left = n;
    while left > 0 {
        let take = left.min(FILLER.len());
        v.extend_from_slice(&FILLER[..take]);
        left -= take;
    }
    v.push(b'"');
    v
}

/// An assistant frame with one text block whose JSON literal is `text_literal`.
fn assistant_frame(model: &str, session_id: &str, ids: &Ids, text_literal: &[u8]) -> Frame {
    let mut b = Vec::with_capacity(text_literal.len() + 512);
    b.extend_from_slice(b"{\"type\":\"assistant\",\"message\":{\"id\":\"msg_mock_");
    let msg_id_at = b.len();
    b.extend_from_slice(&[b'0'; MSG_ID_DIGITS]);
    b.extend_from_slice(b"\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    b.extend_from_slice(json_str(model).as_bytes());
    b.extend_from_slice(b",\"content\":[{\"type\":\"text\",\"text\":");
    b.extend_from_slice(text_literal);
    b.extend_from_slice(
        b"}],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\
          \"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}},\
          \"parent_tool_use_id\":null,\"session_id\":\"",
    );
    b.extend_from_slice(session_id.as_bytes());
    b.extend_from_slice(b"\",\"uuid\":\"");
    Frame::finish(b, ids, Some(msg_id_at))
}

/// An ISO-8601 UTC timestamp with milliseconds, like `2026-11-22T01:56:50.794Z`.
fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What reading stdin produced.
enum Event {
    Msg(Value),
    Eof,
    Timeout,
}

/// Stdin, read either directly (the fast, single-threaded path) or by a reader thread (delay
/// mode, where input must be served while waiting for a deadline).
enum Input {
    Direct {
        reader: BufReader<Box<dyn Read + Send>>,
        line: Vec<u8>,
        eof: bool,
    },
    Threaded {
        rx: Receiver<Result<Vec<u8>, String>>,
        eof: bool,
    },
}

/// Stdin as a plain file (a duplicate of fd 0) so that no second buffer sits in between.
fn stdin_reader() -> BufReader<Box<dyn Read + Send>> {
    #[cfg(unix)]
    let inner: Box<dyn Read + Send> = {
        use std::os::fd::AsFd;
        match io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(File::from(fd)),
            Err(_) => Box::new(io::stdin()),
        }
    };
    #[cfg(not(unix))]
    let inner: Box<dyn Read + Send> = Box::new(io::stdin());
    BufReader::with_capacity(IN_BUFFER, inner)
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// Parses one input line; `None` for a blank line. A non-JSON line ends the process with 1.
fn parse_line(line: &[u8], out: &mut Out) -> Result<Option<Value>, Stop> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice(line) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let _ = out.flush();
            let text = String::from_utf8_lossy(&line[..line.len().min(1000)]);
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "Error parsing streaming input line: {text}: {e}");
            Err(Stop::Code(1))
        }
    }
}

impl Input {
    fn new(threaded: bool) -> Self {
        if !threaded {
            return Self::Direct {
                reader: stdin_reader(),
                line: Vec::new(),
                eof: false,
            };
        }
        let (tx, rx) = mpsc::sync_channel(256);
        std::thread::spawn(move || {
            let mut reader = stdin_reader();
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        if tx.send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        Self::Threaded { rx, eof: false }
    }

    /// The next JSON message, end of input, or (with a deadline) `Timeout` once it passes.
    /// Flushes `out` before blocking. After end of input, a deadline is slept out.
    fn next(&mut self, out: &mut Out, deadline: Option<Instant>) -> Result<Event, Stop> {
        loop {
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Ok(Event::Timeout);
            }
            let line = match self {
                Self::Direct { eof: true, .. } | Self::Threaded { eof: true, .. } => {
                    return Ok(match deadline {
                        Some(d) => {
                            out.flush()?;
                            sleep_until(d);
                            Event::Timeout
                        }
                        None => Event::Eof,
                    });
                }
                Self::Direct { .. } if deadline.is_some() => {
                    // Not reachable: deadlines are only used in threaded mode. Just sleep.
                    out.flush()?;
                    if let Some(d) = deadline {
                        sleep_until(d);
                    }
                    return Ok(Event::Timeout);
                }
                Self::Direct { reader, line, eof } => {
                    line.clear();
                    // Flush unless a whole line is already buffered (reading it cannot block).
                    if !reader.buffer().contains(&b'\n') {
                        out.flush()?;
                    }
                    match reader.read_until(b'\n', line) {
                        Ok(0) => {
                            *eof = true;
                            continue;
                        }
                        Ok(_) => parse_line(line, out)?,
                        Err(e) => {
                            say(&format!("stdin read failed: {e}"));
                            return Err(Stop::Code(1));
                        }
                    }
                }
                Self::Threaded { rx, eof } => {
                    let got = match rx.try_recv() {
                        Ok(got) => Ok(got),
                        Err(TryRecvError::Disconnected) => Err(true),
                        Err(TryRecvError::Empty) => {
                            out.flush()?;
                            match deadline {
                                None => rx.recv().map_err(|_| true),
                                Some(d) => match rx
                                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                                {
                                    Ok(got) => Ok(got),
                                    Err(RecvTimeoutError::Timeout) => Err(false),
                                    Err(RecvTimeoutError::Disconnected) => Err(true),
                                },
                            }
                        }
                    };
                    match got {
                        Ok(Ok(line)) => parse_line(&line, out)?,
                        Ok(Err(e)) => {
                            say(&format!("stdin read failed: {e}"));
                            return Err(Stop::Code(1));
                        }
                        Err(true) => {
                            *eof = true;
                            continue;
                        }
                        Err(false) => return Ok(Event::Timeout),
                    }
                }
            };
            if let Some(v) = line {
                return Ok(Event::Msg(v));
            }
        }
    }
}

fn kind(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Whether a turn goes on after some input was handled.
enum Flow {
    Continue,
    Interrupted,
}

/// The SDK's answer to `can_use_tool`.
enum Permission {
    /// Text for the first assistant frame.
    Text(String),
    /// An `interrupt` arrived while waiting.
    Interrupted,
    /// `deny` with `interrupt: true`.
    DenyInterrupt,
}

fn permission_text(response: &Value) -> Permission {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    if response["subtype"] == "error" {
        return Permission::Text(format!("permission: error: {}", text(&response["error"])));
    }
    let answer = &response["response"];
    match answer["behavior"].as_str() {
        Some("allow") => Permission::Text("permission: allow".to_owned()),
        Some("deny") if answer["interrupt"] == true => Permission::DenyInterrupt,
        Some("deny") => Permission::Text(format!("permission: deny: {}", text(&answer["message"]))),
        _ => Permission::Text(format!("permission: unknown: {answer}")),
    }
}

struct Mock {
    cfg: Config,
    out: Out,
    input: Input,
    ids: Ids,
    session_id: String,
    /// Set by `set_model`; `None` is the default.
    model: Option<String>,
    permission_mode: String,
    cwd_json: String,
    /// The filler assistant frame, rebuilt only when the model changes.
    assistant: Frame,
    /// The `system/init` frame, rebuilt when the model or permission mode changes.
    init: Option<Frame>,
    turn: u64,
    completed_turns: u64,
    pending_users: u64,
    last_error: bool,
}

impl Mock {
    fn new(cfg: Config) -> Self {
        let session_id = Ids::new().next_uuid();
        let ids = Ids::new();
        let cwd = std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let assistant = assistant_frame(
            DEFAULT_MODEL,
            &session_id,
            &ids,
            &filler_literal(cfg.text_bytes),
        );
        Self {
            input: Input::new(cfg.delay.is_some()),
            out: Out::new(),
            ids,
            session_id,
            model: None,
            permission_mode: "default".to_owned(),
            cwd_json: json_str(&cwd),
            assistant,
            init: None,
            turn: 0,
            completed_turns: 0,
            pending_users: 0,
            last_error: false,
            cfg,
        }
    }

    fn model(&self) -> &str {
        self.model.as_deref().unwrap_or(DEFAULT_MODEL)
    }

    fn cost(&self) -> f64 {
        self.completed_turns as f64 / 1000.0
    }

    /// The main loop: serve stdin until it ends.
    fn serve(&mut self) -> Result<(), Stop> {
        loop {
            if self.pending_users > 0 {
                self.pending_users -= 1;
                self.run_turn()?;
                continue;
            }
            match self.input.next(&mut self.out, None)? {
                Event::Eof => return Ok(()),
                Event::Timeout => {}
                Event::Msg(v) => match kind(&v) {
                    "user" => self.run_turn()?,
                    "control_request" => {
                        self.control_request(&v, None)?;
                    }
                    _ => {}
                },
            }
        }
    }

    /// Handles input that arrives while a turn runs.
    fn in_turn(&mut self, v: &Value, pending_permission: Option<&str>) -> Result<Flow, Stop> {
        match kind(v) {
            "user" => self.pending_users += 1,
            "control_request" if self.control_request(v, pending_permission)? => {
                return Ok(Flow::Interrupted);
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }

    /// Serves input until `deadline` (or, without one, until an interrupt; end of input then
    /// hangs forever).
    fn wait(&mut self, deadline: Option<Instant>) -> Result<Flow, Stop> {
        loop {
            match self.input.next(&mut self.out, deadline)? {
                Event::Timeout => return Ok(Flow::Continue),
                Event::Eof => {
                    self.out.flush()?;
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                Event::Msg(v) => {
                    if let Flow::Interrupted = self.in_turn(&v, None)? {
                        return Ok(Flow::Interrupted);
                    }
                }
            }
        }
    }

    /// Answers a `control_request`; returns whether it was an `interrupt`.
    fn control_request(
        &mut self,
        v: &Value,
        pending_permission: Option<&str>,
    ) -> Result<bool, Stop> {
        let id = v.get("request_id").unwrap_or(&Value::Null).to_string();
        let request = &v["request"];
        match request["subtype"].as_str() {
            Some("initialize") => {
                let payload = format!(
                    "{{\"commands\":[],\"agents\":[],\"output_style\":\"default\",\
                     \"available_output_styles\":[\"default\"],\"models\":[],\"account\":{{}},\
                     \"pid\":{},\"claude_code_version\":\"{CLAUDE_CODE_VERSION}\"}}",
                    std::process::id()
                );
                self.reply_ok(&id, Some(&payload))?;
            }
            Some("interrupt") => {
                for _ in 0..self.cfg.interrupt_flood {
                    self.assistant.emit(&mut self.out, &mut self.ids)?;
                }
                if let Some(pending) = pending_permission {
                    let line = format!(
                        "{{\"type\":\"control_cancel_request\",\"request_id\":{}}}\n",
                        json_str(pending)
                    );
                    self.out.put(line.as_bytes())?;
                }
                self.reply_ok(&id, None)?;
                return Ok(true);
            }
            Some("set_model") => {
                let model = request["model"].as_str().map(str::to_owned);
                if model != self.model {
                    self.model = model;
                    self.init = None;
                    self.assistant = assistant_frame(
                        self.model(),
                        &self.session_id,
                        &self.ids,
                        &filler_literal(self.cfg.text_bytes),
                    );
                    self.assistant.set_msg_id(self.turn);
                }
                self.reply_ok(&id, None)?;
            }
            Some("set_max_thinking_tokens") => self.reply_ok(&id, None)?,
            Some("set_permission_mode") => {
                let mode = &request["mode"];
                if let Some(m) = mode.as_str() {
                    self.permission_mode = m.to_owned();
                    self.init = None;
                }
                self.reply_ok(&id, Some(&format!("{{\"mode\":{mode}}}")))?;
            }
            Some("mcp_status") => self.reply_ok(&id, Some("{\"mcpServers\":[]}"))?,
            other => {
                let error = format!(
                    "Unsupported control request subtype: {}",
                    other.unwrap_or("undefined")
                );
                let line = format!(
                    "{{\"type\":\"control_response\",\"response\":{{\"subtype\":\"error\",\
                     \"request_id\":{id},\"error\":{}}}}}\n",
                    json_str(&error)
                );
                self.out.put(line.as_bytes())?;
            }
        }
        Ok(false)
    }

    fn reply_ok(&mut self, id: &str, payload: Option<&str>) -> Result<(), Stop> {
        let line = match payload {
            Some(p) => format!(
                "{{\"type\":\"control_response\",\"response\":{{\"subtype\":\"success\",\
                 \"request_id\":{id},\"response\":{p}}}}}\n"
            ),
            None => format!(
                "{{\"type\":\"control_response\",\"response\":{{\"subtype\":\"success\",\
                 \"request_id\":{id}}}}}\n"
            ),
        };
        self.out.put(line.as_bytes())
    }

    fn emit_init(&mut self) -> Result<(), Stop> {
        if self.init.is_none() {
            let model = self.model.as_deref().unwrap_or(DEFAULT_INIT_MODEL);
            let head = format!(
                "{{\"type\":\"system\",\"subtype\":\"init\",\"cwd\":{},\"session_id\":\"{}\",\
                 \"tools\":[\"Task\",\"Bash\",\"Edit\",\"Read\",\"Write\"],\"mcp_servers\":[],\
                 \"model\":{},\"permissionMode\":{},\"slash_commands\":[],\
                 \"apiKeySource\":\"none\",\"claude_code_version\":\"{CLAUDE_CODE_VERSION}\",\
                 \"output_style\":\"default\",\"agents\":[],\"skills\":[],\"plugins\":[],\
                 \"fast_mode_state\":\"off\",\"uuid\":\"",
                self.cwd_json,
                self.session_id,
                json_str(model),
                json_str(&self.permission_mode),
            );
            self.init = Some(Frame::finish(head.into_bytes(), &self.ids, None));
        }
        if let Some(init) = &mut self.init {
            init.emit(&mut self.out, &mut self.ids)?;
        }
        Ok(())
    }

    /// Sends `can_use_tool` and serves input until its answer (or an interrupt) arrives.
    fn ask_permission(&mut self) -> Result<Permission, Stop> {
        let request_id = self.ids.next_uuid();
        let line = format!(
            "{{\"type\":\"control_request\",\"request_id\":\"{request_id}\",\"request\":{{\
             \"subtype\":\"can_use_tool\",\"tool_name\":\"Bash\",\"display_name\":\"Bash\",\
             \"input\":{{\"command\":\"touch x\"}},\"tool_use_id\":\"toolu_{}\",\
             \"permission_suggestions\":[]}}}}\n",
            self.turn
        );
        self.out.put(line.as_bytes())?;
        loop {
            match self.input.next(&mut self.out, None)? {
                Event::Eof => {
                    return Ok(Permission::Text(
                        "permission: error: stdin closed before the reply".to_owned(),
                    ));
                }
                Event::Timeout => {}
                Event::Msg(v) => {
                    let response = &v["response"];
                    if kind(&v) == "control_response"
                        && response["request_id"].as_str() == Some(request_id.as_str())
                    {
                        return Ok(permission_text(response));
                    }
                    if let Flow::Interrupted = self.in_turn(&v, Some(&request_id))? {
                        return Ok(Permission::Interrupted);
                    }
                }
            }
        }
    }

    fn crash(&mut self, after: u64) -> Stop {
        let _ = self.out.flush();
        say(&format!("simulated crash after {after} assistant messages"));
        Stop::Code(3)
    }

    /// Writes `MOCK_CLAUDE_STDERR_BYTES` bytes of filler lines to stderr (blocking).
    fn stderr_filler(&mut self) -> Result<(), Stop> {
        self.out.flush()?;
        let line: &[u8] = b"mock-claude: stderr filler line for the undrained-stderr test ......\n";
        let mut buf = Vec::with_capacity(self.cfg.stderr_bytes);
        while buf.len() < self.cfg.stderr_bytes {
            let take = line.len().min(self.cfg.stderr_bytes - buf.len());
            buf.extend_from_slice(&line[..take]);
        }
        let _ = io::stderr().lock().write_all(&buf);
        Ok(())
    }

    fn run_turn(&mut self) -> Result<(), Stop> {
        self.turn += 1;
        let started = Instant::now();
        if self.cfg.stderr_bytes > 0 {
            self.stderr_filler()?;
        }
        self.emit_init()?;
        self.assistant.set_msg_id(self.turn);
        let mut first_text = None;
        if self.cfg.can_use_tool {
            match self.ask_permission()? {
                Permission::Text(t) => first_text = Some(t),
                Permission::Interrupted => return self.aborted(started, false),
                Permission::DenyInterrupt => return self.aborted(started, true),
            }
        }
        let n = self.cfg.messages;
        let malformed_after = if self.cfg.malformed {
            n.div_ceil(2).max(1)
        } else {
            0
        };
        let crash_after = self.cfg.crash_after.unwrap_or(u64::MAX);
        if crash_after == 0 {
            return Err(self.crash(0));
        }
        for i in 1..=n {
            if let Some(delay) = self.cfg.delay {
                self.out.flush()?;
                if let Flow::Interrupted = self.wait(Some(Instant::now() + delay))? {
                    return self.aborted(started, false);
                }
            }
            match first_text.take() {
                Some(text) => {
                    let literal = json_str(&text);
                    let mut frame = assistant_frame(
                        self.model(),
                        &self.session_id,
                        &self.ids,
                        literal.as_bytes(),
                    );
                    frame.set_msg_id(self.turn);
                    frame.emit(&mut self.out, &mut self.ids)?;
                }
                None => self.assistant.emit(&mut self.out, &mut self.ids)?,
            }
            if i == 1 && self.cfg.unknown_frames {
                self.out.put(UNKNOWN_TYPE_LINE)?;
                let line = format!(
                    "{{\"type\":\"system\",\"subtype\":\"mock_unknown_subtype\",\"session_id\":\"{}\",\
                     \"uuid\":\"{}\"}}\n",
                    self.session_id,
                    self.ids.next_uuid()
                );
                self.out.put(line.as_bytes())?;
            }
            if i == malformed_after {
                self.out.put(MALFORMED_LINE)?;
            }
            if i == crash_after {
                return Err(self.crash(i));
            }
            if i == 1 && self.cfg.hang {
                loop {
                    if let Flow::Interrupted = self.wait(None)? {
                        return self.aborted(started, false);
                    }
                }
            }
        }
        self.emit_result(started, n)
    }

    fn emit_result(&mut self, started: Instant, n: u64) -> Result<(), Stop> {
        self.completed_turns += 1;
        self.last_error = false;
        let ms = started.elapsed().as_millis();
        let cost = self.cost();
        let model = json_str(self.model.as_deref().unwrap_or(DEFAULT_INIT_MODEL));
        let line = format!(
            "{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"api_error_status\":null,\
             \"duration_ms\":{ms},\"duration_api_ms\":{ms},\"num_turns\":1,\
             \"result\":\"mock turn {turn}: {n} assistant messages of {b} bytes\",\
             \"stop_reason\":\"end_turn\",\"session_id\":\"{sid}\",\"total_cost_usd\":{cost},\
             \"usage\":{{\"input_tokens\":10,\"cache_creation_input_tokens\":0,\
             \"cache_read_input_tokens\":0,\"output_tokens\":{n},\"service_tier\":\"standard\"}},\
             \"modelUsage\":{{{model}:{{\"inputTokens\":{in_tokens},\"outputTokens\":{n},\
             \"cacheReadInputTokens\":0,\"cacheCreationInputTokens\":0,\"webSearchRequests\":0,\
             \"costUSD\":{cost},\"contextWindow\":200000,\"maxOutputTokens\":64000}}}},\
             \"permission_denials\":[],\"terminal_reason\":\"completed\",\"fast_mode_state\":\"off\",\
             \"uuid\":\"{uuid}\"}}\n",
            turn = self.turn,
            b = self.cfg.text_bytes,
            sid = self.session_id,
            in_tokens = 10 * self.completed_turns,
            uuid = self.ids.next_uuid(),
        );
        self.out.put(line.as_bytes())
    }

    /// Ends an interrupted turn: the marker `user` frame and an error `result`.
    fn aborted(&mut self, started: Instant, tool: bool) -> Result<(), Stop> {
        self.last_error = true;
        let (marker, reason) = if tool {
            (TOOL_INTERRUPT_MARKER, "aborted_tools")
        } else {
            (INTERRUPT_MARKER, "aborted_streaming")
        };
        let user = format!(
            "{{\"type\":\"user\",\"message\":{{\"role\":\"user\",\"content\":[{{\"type\":\"text\",\
             \"text\":\"{marker}\"}}]}},\"parent_tool_use_id\":null,\"session_id\":\"{}\",\
             \"uuid\":\"{}\",\"timestamp\":\"{}\"}}\n",
            self.session_id,
            self.ids.next_uuid(),
            iso_now()
        );
        self.out.put(user.as_bytes())?;
        let result = format!(
            "{{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"duration_ms\":{},\
             \"duration_api_ms\":0,\"is_error\":true,\"num_turns\":1,\"stop_reason\":null,\
             \"session_id\":\"{}\",\"total_cost_usd\":{},\"usage\":{{\"input_tokens\":0,\
             \"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":0}},\
             \"modelUsage\":{{}},\"permission_denials\":[],\"terminal_reason\":\"{reason}\",\
             \"fast_mode_state\":\"off\",\"errors\":[\"[ede_diagnostic] result_type=user \
             last_content_type=n/a stop_reason=null\"],\"uuid\":\"{}\"}}\n",
            started.elapsed().as_millis(),
            self.session_id,
            self.cost(),
            self.ids.next_uuid()
        );
        self.out.put(result.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }

    #[test]
    fn hex_and_uuids() {
        let mut b = [0u8; 6];
        put_hex(&mut b, 0xab_cdef);
        assert_eq!(&b, b"abcdef");
        let mut ids = Ids::new();
        let (a, b) = (ids.next_uuid(), ids.next_uuid());
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
        assert_eq!(&a[..24], &b[..24]);
    }

    #[test]
    fn assistant_frame_is_json_with_exact_text() {
        let mut ids = Ids::new();
        let sid = ids.next_uuid();
        let mut frame = assistant_frame("m\"odel", &sid, &ids, &filler_literal(1000));
        frame.set_msg_id(7);
        let at = frame.uuid_at;
        put_hex(&mut frame.bytes[at..at + UUID_TAIL], ids.next_tail());
        assert_eq!(frame.bytes.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&frame.bytes).unwrap_or_default();
        assert_eq!(
            v["message"]["content"][0]["text"].as_str().map(str::len),
            Some(1000)
        );
        assert_eq!(v["message"]["model"], "m\"odel");
        assert_eq!(v["message"]["id"], "msg_mock_000000000000000000000007");
        assert_eq!(v["session_id"], sid.as_str());
        assert_eq!(v["uuid"].as_str().map(str::len), Some(36));
    }

    #[test]
    fn permission_answers() {
        let text = |v: Value| match permission_text(&v) {
            Permission::Text(t) => t,
            Permission::Interrupted => "interrupted".into(),
            Permission::DenyInterrupt => "deny-interrupt".into(),
        };
        let ok = serde_json::json!({"subtype":"success","response":{"behavior":"allow","updatedInput":{}}});
        assert_eq!(text(ok), "permission: allow");
        let deny =
            serde_json::json!({"subtype":"success","response":{"behavior":"deny","message":"no"}});
        assert_eq!(text(deny), "permission: deny: no");
        let stop = serde_json::json!({"subtype":"success","response":{"behavior":"deny","message":"no","interrupt":true}});
        assert_eq!(text(stop), "deny-interrupt");
        let err = serde_json::json!({"subtype":"error","error":"boom"});
        assert_eq!(text(err), "permission: error: boom");
    }
}
