//! The `claude` CLI as a child process.
//!
//! Process hygiene, in one place:
//! * the child runs in its **own process group**, so the CLI and everything it starts (MCP
//!   servers, shells) can be signalled together;
//! * **stderr is always drained** (to an optional callback and to `tracing`), keeping a bounded
//!   tail for error messages — a child blocked on a full stderr pipe never hangs a session;
//! * the child's **exit (waitpid) is the death signal**, not EOF on stdout: a grandchild that
//!   inherited the pipes can keep them open forever. After the exit, the group gets SIGTERM, then
//!   SIGKILL, and the frames still in the pipe are drained before the stream ends;
//! * [`FrameSender::close`] is graceful (end input, wait, SIGTERM the group, SIGKILL);
//! * dropping both halves kills the group;
//! * the CLI starts some tools in **new sessions** (the Bash tool's shell is `setsid`), out of
//!   reach of a group signal and reparented to init when the CLI dies. So every child is started
//!   with a per-connection tag in its environment ([`PROCESS_TAG_ENV`]), which its descendants
//!   inherit; on Linux, cleanup also signals every process of ours whose environment carries the
//!   tag (a `/proc` scan, only at exit/close, never on the frame path). A descendant that
//!   scrubs its environment escapes this net; nothing else does short of cgroups.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::process::{ChildStdin, Command};
use tokio::sync::watch;

use super::{
    Connection, ConnectionInfo, FrameReceiver, FrameSender, Received, Termination, Transport,
    TransportMetrics,
};
use crate::codec::{DEFAULT_MAX_FRAME_BYTES, FrameCodec, FrameReader};
use crate::error::{Error, Result};

/// The CLI version this SDK release is tested against (installed by `scripts/install-cli.sh`).
pub const PINNED_CLI_VERSION: &str = "2.1.330";

/// How much of stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// The longest stderr line passed to the callback; longer lines are cut.
const STDERR_MAX_LINE: usize = 64 * 1024;
/// After the child exits, how long to keep reading frames still in the pipe.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(3);
/// After SIGTERM, how long the group gets before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// Read buffer of the stdout reader.
const READ_CAPACITY: usize = 64 * 1024;

/// The environment variable that tags a connection's process tree (see the module docs).
pub const PROCESS_TAG_ENV: &str = "CLAUDE_CONDUIT_PROCESS_TAG";

/// A callback that receives each stderr line of the CLI.
pub type StderrCallback = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs a `claude` (or compatible) executable and speaks frames over its stdin/stdout.
///
/// Usually built for you by [`crate::Options`]; build one by hand to run any program that speaks
/// stream-json.
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::transport::{SubprocessTransport, Transport};
/// let t = SubprocessTransport::new("/usr/local/bin/claude")
///     .args(["--output-format", "stream-json", "--verbose", "--input-format", "stream-json"]);
/// let conn = t.connect().await?;
/// println!("pid {:?}", conn.info.pid);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SubprocessTransport {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    stderr: Option<StderrCallback>,
    max_frame: usize,
    user: Option<(u32, u32)>,
}

impl std::fmt::Debug for SubprocessTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Environment values may hold secrets: show names only.
        f.debug_struct("SubprocessTransport")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

impl SubprocessTransport {
    /// Run `program` (no arguments yet).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            stderr: None,
            max_frame: DEFAULT_MAX_FRAME_BYTES,
            user: None,
        }
    }

    /// Run the child as this OS user and group (needs the privilege to switch users).
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Remove an environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Start the child with an empty environment (then add what [`env`](Self::env) sets).
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    /// The child's working directory (checked at connect).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Receive every stderr line of the child (stderr is drained whether or not this is set).
    pub fn on_stderr(mut self, f: StderrCallback) -> Self {
        self.stderr = Some(f);
        self
    }

    /// The per-frame size limit in bytes (default 256 MiB).
    pub fn max_frame_bytes(mut self, limit: usize) -> Self {
        self.max_frame = limit;
        self
    }

    /// The executable this transport runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments this transport passes.
    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }

    /// Ask the executable for its version (`<cli> -v`). This costs a whole CLI start; the SDK
    /// normally reads the version from the initialize reply instead.
    pub async fn probe_version(&self) -> Result<String> {
        let out = Command::new(&self.program)
            .arg("-v")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| Error::Spawn {
                path: self.program.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if self.env_clear {
            cmd.env_clear();
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Transport for SubprocessTransport {
    type Sender = SubprocessSender;
    type Receiver = SubprocessReceiver;

    async fn connect(self) -> Result<Connection<SubprocessSender, SubprocessReceiver>> {
        let started = Instant::now();
        if let Some(dir) = &self.cwd
            && !dir.is_dir()
        {
            return Err(Error::CwdNotFound(dir.clone()));
        }
        let tag = process_tag();
        let mut cmd = self.command();
        cmd.env(PROCESS_TAG_ENV, &tag);
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            path: self.program.clone(),
            source,
        })?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::transport(
                "taking the child's pipes",
                std::io::Error::other("a pipe was not set up"),
            ));
        };
        // The read ends as plain pipes: their readers wait for data without holding a buffer.
        let pipes = stdout
            .into_owned_fd()
            .and_then(pipe::Receiver::from_owned_fd)
            .and_then(|out| Ok((out, pipe::Receiver::from_owned_fd(stderr.into_owned_fd()?)?)));
        let (stdout, stderr) = match pipes {
            Ok(p) => p,
            Err(e) => {
                let _ = child.start_kill();
                return Err(Error::transport("registering the child's pipes", e));
            }
        };
        let group = Arc::new(ProcessGroup {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw),
            tag,
            cleaned_up: AtomicBool::new(false),
        });
        let tail = Arc::new(StderrTail::default());
        let stderr_done = {
            let (tx, rx) = watch::channel(false);
            tokio::spawn(drain_stderr(stderr, self.stderr.clone(), tail.clone(), tx));
            rx
        };
        let (exit_tx, exit_rx) = watch::channel(None);
        {
            // Weak: the halves own the group; dropping both kills it (see `ProcessGroup::drop`).
            let group = Arc::downgrade(&group);
            tokio::spawn(async move {
                let status = child.wait().await.ok();
                let _ = exit_tx.send(Some(status));
                // The leader is gone; anything it left in its group (MCP servers, shells,
                // grandchildren holding our pipes) goes too.
                if let Some(group) = group.upgrade() {
                    group.terminate(TERM_GRACE).await;
                }
            });
        }
        let metrics = Arc::new(TransportMetrics::default());
        metrics.set_connect_time(started.elapsed());
        tracing::debug!(pid, program = %self.program.display(), "claude CLI started");
        Ok(Connection {
            sender: SubprocessSender {
                stdin: Some(stdin),
                buf: BytesMut::new(),
                metrics: metrics.clone(),
                group: group.clone(),
                exit: exit_rx.clone(),
            },
            receiver: SubprocessReceiver {
                frames: FrameReader::new(stdout, FrameCodec::new(self.max_frame), READ_CAPACITY),
                exit: exit_rx,
                drain_until: None,
                stdout_eof: false,
                termination: None,
                tail,
                stderr_done,
                metrics: metrics.clone(),
                _group: group,
            },
            metrics,
            info: ConnectionInfo {
                pid,
                program: Some(self.program.clone()),
                description: format!("subprocess {}", self.program.display()),
            },
        })
    }
}

/// The child's process group; kills it when the last half is dropped.
#[derive(Debug)]
struct ProcessGroup {
    pgid: Option<Pid>,
    /// The value of [`PROCESS_TAG_ENV`] in this connection's process tree.
    tag: String,
    cleaned_up: AtomicBool,
}

impl ProcessGroup {
    /// Signal the group and every tagged process; true if anyone was there.
    fn signal(&self, sig: Signal) -> bool {
        // ESRCH (nobody left in the group) is the normal outcome after a clean exit.
        let group = self.pgid.is_some_and(|pgid| killpg(pgid, sig).is_ok());
        let tagged = tagged_processes(&self.tag);
        for pid in &tagged {
            let _ = nix::sys::signal::kill(*pid, sig);
        }
        group || !tagged.is_empty()
    }

    fn alive(&self) -> bool {
        self.pgid.is_some_and(|pgid| killpg(pgid, None).is_ok())
            || !tagged_processes(&self.tag).is_empty()
    }

    /// SIGTERM the group, give it `grace`, then SIGKILL whatever is left.
    async fn terminate(&self, grace: Duration) {
        if self.signal(Signal::SIGTERM) {
            let deadline = Instant::now() + grace;
            while self.alive() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if self.alive() {
                self.signal(Signal::SIGKILL);
            }
        }
        self.cleaned_up.store(true, Ordering::Release);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.cleaned_up.load(Ordering::Acquire) {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// A tag unique to one connection (process id, time, a counter).
fn process_tag() -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Processes whose environment holds `PROCESS_TAG_ENV=tag` (Linux `/proc`; empty elsewhere).
/// Only processes we may read (our own user's) are seen, which are the ones we may signal.
fn tagged_processes(tag: &str) -> Vec<Pid> {
    let needle = format!("{PROCESS_TAG_ENV}={tag}");
    let needle = needle.as_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|var| var == needle))
                .unwrap_or(false)
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

/// The bounded tail of stderr.
#[derive(Debug, Default)]
struct StderrTail {
    bytes: Mutex<VecDeque<u8>>,
}

impl StderrTail {
    fn push_line(&self, line: &[u8]) {
        let Ok(mut buf) = self.bytes.lock() else {
            return;
        };
        let line = &line[line.len().saturating_sub(STDERR_TAIL_BYTES)..];
        buf.extend(line);
        buf.push_back(b'\n');
        let excess = buf.len().saturating_sub(STDERR_TAIL_BYTES);
        buf.drain(..excess);
    }

    fn snapshot(&self) -> String {
        match self.bytes.lock() {
            Ok(buf) => {
                let (a, b) = buf.as_slices();
                let mut v = Vec::with_capacity(a.len() + b.len());
                v.extend_from_slice(a);
                v.extend_from_slice(b);
                String::from_utf8_lossy(&v).trim_end().to_owned()
            }
            Err(_) => String::new(),
        }
    }
}

async fn drain_stderr(
    stderr: pipe::Receiver,
    callback: Option<StderrCallback>,
    tail: Arc<StderrTail>,
    done: watch::Sender<bool>,
) {
    // Small to start with: most CLIs write little or nothing to stderr (the buffer grows).
    let mut lines = FrameReader::new(stderr, FrameCodec::new(STDERR_MAX_LINE), STDERR_MAX_LINE);
    while let Some(item) = lines.next().await {
        match item {
            Ok(Ok(line)) => {
                let text = String::from_utf8_lossy(&line);
                tracing::debug!(target: "claude_conduit::cli_stderr", "{text}");
                if let Some(cb) = &callback {
                    cb(&text);
                }
                tail.push_line(&line);
            }
            Ok(Err(Error::FrameTooLarge { size, .. })) => {
                let note = format!("[stderr line of {size} bytes omitted]");
                if let Some(cb) = &callback {
                    cb(&note);
                }
                tail.push_line(note.as_bytes());
            }
            Ok(Err(_)) => {}
            Err(_) => break,
        }
    }
    let _ = done.send(true);
}

/// Sending half of a [`SubprocessTransport`] connection: the CLI's stdin.
#[derive(Debug)]
pub struct SubprocessSender {
    stdin: Option<ChildStdin>,
    buf: BytesMut,
    metrics: Arc<TransportMetrics>,
    group: Arc<ProcessGroup>,
    exit: watch::Receiver<Option<Option<ExitStatus>>>,
}

impl SubprocessSender {
    /// The process id of the CLI.
    pub fn pid(&self) -> Option<u32> {
        self.group.pgid.and_then(|p| u32::try_from(p.as_raw()).ok())
    }

    async fn wait_exit(&mut self, within: Duration) -> bool {
        let exited = tokio::time::timeout(within, self.exit.wait_for(Option::is_some)).await;
        matches!(exited, Ok(Ok(_)))
    }
}

/// Frames up to this size are copied next to their newline and written with one call.
const COALESCE_LIMIT: usize = 64 * 1024;

impl FrameSender for SubprocessSender {
    async fn send(&mut self, frame: Bytes) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Error::Closed);
        };
        let res = if frame.len() <= COALESCE_LIMIT {
            self.buf.clear();
            self.buf.extend_from_slice(&frame);
            self.buf.extend_from_slice(b"\n");
            stdin.write_all(&self.buf).await
        } else {
            match stdin.write_all(&frame).await {
                Ok(()) => stdin.write_all(b"\n").await,
                Err(e) => Err(e),
            }
        };
        match res {
            Ok(()) => {
                self.metrics.frame_sent(frame.len());
                Ok(())
            }
            Err(e) => {
                self.metrics.error();
                Err(Error::transport("writing to the CLI's stdin", e))
            }
        }
    }

    async fn end_input(&mut self) -> Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            // Flushing a pipe whose reader is gone fails; the input is over either way.
            let _ = stdin.shutdown().await;
        }
        Ok(())
    }

    async fn close(mut self, grace: Duration) -> Result<()> {
        self.end_input().await?;
        if !self.wait_exit(grace).await {
            tracing::debug!(
                pid = self.pid(),
                "CLI did not exit after end of input; terminating"
            );
            self.group.terminate(TERM_GRACE).await;
            self.wait_exit(TERM_GRACE).await;
        }
        Ok(())
    }
}

/// Receiving half of a [`SubprocessTransport`] connection: the CLI's stdout.
#[derive(Debug)]
pub struct SubprocessReceiver {
    frames: FrameReader,
    exit: watch::Receiver<Option<Option<ExitStatus>>>,
    drain_until: Option<tokio::time::Instant>,
    stdout_eof: bool,
    termination: Option<Termination>,
    tail: Arc<StderrTail>,
    stderr_done: watch::Receiver<bool>,
    metrics: Arc<TransportMetrics>,
    _group: Arc<ProcessGroup>,
}

impl SubprocessReceiver {
    fn deliver(&self, item: std::io::Result<Result<Bytes>>) -> Result<Received> {
        match item {
            Ok(Ok(frame)) => {
                self.metrics.frame_received(frame.len());
                Ok(Received::Frame(frame))
            }
            Ok(Err(e)) => {
                if let Error::FrameTooLarge { size, .. } = &e {
                    self.metrics.frame_received(*size);
                }
                self.metrics.error();
                Ok(Received::Bad(e))
            }
            Err(e) => {
                self.metrics.error();
                Err(Error::transport("reading the CLI's stdout", e))
            }
        }
    }

    async fn finish(&mut self) -> Result<Received> {
        // Wait for the exit status (stdout can close before the process is reaped), then give
        // stderr a moment to deliver its last lines so the tail is complete.
        let status =
            match tokio::time::timeout(DRAIN_AFTER_EXIT, self.exit.wait_for(Option::is_some)).await
            {
                Ok(Ok(s)) => s.flatten(),
                _ => None,
            };
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            self.stderr_done.wait_for(|d| *d),
        )
        .await;
        use std::os::unix::process::ExitStatusExt;
        self.termination = Some(Termination {
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            stderr_tail: self.tail.snapshot(),
        });
        Ok(Received::End)
    }
}

impl SubprocessReceiver {
    /// Everything but the hot path of [`FrameReceiver::recv`]: reading, the exit signal, the
    /// drain after the exit and the end.
    async fn recv_slow(&mut self) -> Result<Received> {
        loop {
            if self.termination.is_some() {
                return Ok(Received::End);
            }
            if self.stdout_eof {
                return self.finish().await;
            }
            if let Some(deadline) = self.drain_until {
                // The child has exited: read what is still in the pipe, but do not wait for EOF
                // forever (a grandchild may hold the write end).
                return match tokio::time::timeout_at(deadline, self.frames.next()).await {
                    Ok(Some(item)) => self.deliver(item),
                    Ok(None) | Err(_) => {
                        self.stdout_eof = true;
                        self.finish().await
                    }
                };
            }
            let next = {
                let (frames, exit) = (&mut self.frames, &mut self.exit);
                tokio::select! {
                    biased;
                    item = frames.next() => Some(item),
                    _ = exit.wait_for(Option::is_some) => None,
                }
            };
            match next {
                Some(Some(item)) => return self.deliver(item),
                Some(None) => {
                    self.stdout_eof = true;
                    return self.finish().await;
                }
                None => {
                    self.drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
            }
        }
    }
}

type RecvOutput = Result<Received>;

/// The future of [`SubprocessReceiver::recv`]: two words until it has to wait.
///
/// Its first poll takes a frame that an earlier read already brought in, if there is one (the
/// common case: one read brings in many frames), without building the future that reads and
/// watches the exit; that one is built, boxed, only when there is nothing buffered. Frames always
/// come before the exit signal (the slow path's select is biased the same way). Nothing happens
/// before the first poll, so dropping an unpolled `Recv` loses nothing.
struct Recv<'a> {
    rx: Option<&'a mut SubprocessReceiver>,
    slow: Option<futures::future::BoxFuture<'a, RecvOutput>>,
}

impl std::future::Future for Recv<'_> {
    type Output = RecvOutput;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<RecvOutput> {
        if let Some(rx) = self.rx.take() {
            if rx.termination.is_none()
                && !rx.stdout_eof
                && rx.drain_until.is_none()
                && let Some(item) = rx.frames.buffered()
            {
                return std::task::Poll::Ready(rx.deliver(Ok(item)));
            }
            self.slow = Some(Box::pin(rx.recv_slow()));
        }
        match self.slow.as_mut() {
            Some(slow) => slow.as_mut().poll(cx),
            // Only reachable by polling a completed future, which no caller does.
            None => std::task::Poll::Ready(Ok(Received::End)),
        }
    }
}

impl FrameReceiver for SubprocessReceiver {
    fn recv(&mut self) -> impl std::future::Future<Output = RecvOutput> + Send {
        Recv {
            rx: Some(self),
            slow: None,
        }
    }

    fn termination(&self) -> Option<Termination> {
        self.termination.clone()
    }
}

/// Where [`find_cli`] looks, in order, given an optional explicit path.
pub fn cli_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(p.to_path_buf());
        return out;
    }
    if let Some(p) = std::env::var_os("CONDUIT_CLAUDE_CLI").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = pinned_cli_dir() {
        out.push(dir.join("node_modules").join(".bin").join("claude"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|d| d.join("claude")));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = &home {
        out.push(home.join(".npm-global/bin/claude"));
    }
    out.push(PathBuf::from("/usr/local/bin/claude"));
    if let Some(home) = &home {
        for rel in [
            ".local/bin/claude",
            "node_modules/.bin/claude",
            ".yarn/bin/claude",
            ".claude/local/claude",
        ] {
            out.push(home.join(rel));
        }
    }
    unique(out)
}

/// Each place once (PATH often names a directory twice, or one of the usual places), in the
/// order of its first mention.
fn unique(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    paths
}

/// The directory the project's install script puts the pinned CLI in:
/// `$XDG_CACHE_HOME/claude-conduit/cli/<version>` (default `~/.cache/…`).
pub fn pinned_cli_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(
        cache
            .join("claude-conduit")
            .join("cli")
            .join(PINNED_CLI_VERSION),
    )
}

/// Find the `claude` executable: the explicit path if given, else `CONDUIT_CLAUDE_CLI`, the
/// pinned copy in the cache, `PATH`, and well-known install locations.
///
/// An explicit path that exists but cannot be run (not a file, or no execute permission) is an
/// [`Error::Spawn`] with [`std::io::ErrorKind::PermissionDenied`] naming it, not "not found".
pub fn find_cli(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit
        && let Ok(meta) = std::fs::metadata(p)
        && !is_executable(p)
    {
        let why = if meta.is_dir() {
            "it is a directory"
        } else {
            "it is not executable"
        };
        return Err(Error::Spawn {
            path: p.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
        });
    }
    let candidates = cli_candidates(explicit);
    for c in &candidates {
        if is_executable(c) {
            return Ok(c.clone());
        }
    }
    Err(Error::CliNotFound {
        searched: candidates,
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_is_cli_not_found_naming_it() {
        let e = find_cli(Some(Path::new("/nonexistent/claude"))).err();
        match e {
            Some(Error::CliNotFound { searched }) => {
                assert_eq!(searched, vec![PathBuf::from("/nonexistent/claude")]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn explicit_path_that_cannot_run_is_not_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("claude");
        std::fs::write(&file, "not a program").unwrap();
        for (path, why) in [
            (file.as_path(), "it is not executable"),
            (dir.path(), "it is a directory"),
        ] {
            match find_cli(Some(path)) {
                Err(Error::Spawn { path: p, source }) => {
                    assert_eq!(p, path);
                    assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
                    assert_eq!(source.to_string(), why);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn candidates_are_listed_once_each() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            unique(vec![
                p("/a/claude"),
                p("/b/claude"),
                p("/a/claude"),
                p("/c/claude")
            ]),
            vec![p("/a/claude"), p("/b/claude"), p("/c/claude")]
        );
        let all = cli_candidates(None);
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
    }

    #[test]
    fn stderr_tail_is_bounded_and_keeps_the_end() {
        let t = StderrTail::default();
        for i in 0..10_000 {
            t.push_line(format!("line {i}").as_bytes());
        }
        let s = t.snapshot();
        assert!(s.len() <= STDERR_TAIL_BYTES);
        assert!(s.ends_with("line 9999"));
    }

    #[tokio::test]
    async fn missing_cwd_is_a_typed_error() {
        let t = SubprocessTransport::new("/bin/cat").cwd("/nonexistent/dir");
        assert!(matches!(t.connect().await, Err(Error::CwdNotFound(_))));
    }

    #[tokio::test]
    async fn cat_echoes_frames_and_ends_cleanly() -> Result<()> {
        let conn = SubprocessTransport::new("/bin/cat").connect().await?;
        let (mut tx, mut rx) = (conn.sender, conn.receiver);
        tx.send(Bytes::from_static(b"{\"a\":1}")).await?;
        tx.send(Bytes::from_static(b"{\"b\":2}")).await?;
        tx.end_input().await?;
        let a = rx.recv().await?;
        let b = rx.recv().await?;
        assert_eq!(a.frame(), Some(Bytes::from_static(b"{\"a\":1}")));
        assert_eq!(b.frame(), Some(Bytes::from_static(b"{\"b\":2}")));
        assert!(rx.recv().await?.is_end());
        assert_eq!(rx.termination().and_then(|t| t.code), Some(0));
        let m = conn.metrics.snapshot();
        assert_eq!((m.frames_sent, m.frames_received), (2, 2));
        Ok(())
    }

    #[tokio::test]
    async fn exit_is_the_death_signal_even_when_a_grandchild_holds_stdout() -> Result<()> {
        // The shell exits at once with code 7 but leaves `sleep` holding stdout and stderr.
        let conn = SubprocessTransport::new("/bin/sh")
            .args(["-c", "echo '{\"x\":1}'; echo oops >&2; sleep 30 & exit 7"])
            .connect()
            .await?;
        let mut rx = conn.receiver;
        let first = rx.recv().await?;
        assert_eq!(first.frame(), Some(Bytes::from_static(b"{\"x\":1}")));
        let end = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        assert!(matches!(end, Ok(Ok(Received::End))), "{end:?}");
        let t = rx.termination().unwrap_or_default();
        assert_eq!(t.code, Some(7));
        assert!(t.stderr_tail.contains("oops"), "{t:?}");
        Ok(())
    }

    #[tokio::test]
    async fn run_as_switches_the_user_when_privileged() -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            // Switching users needs root; the mapping from the option is tested in `options`.
            return Ok(());
        }
        let conn = SubprocessTransport::new("/bin/sh")
            .args(["-c", "echo \"{\\\"uid\\\":$(id -u)}\""])
            .run_as(65534, 65534)
            .connect()
            .await?;
        let mut rx = conn.receiver;
        let line = rx.recv().await?.frame();
        assert_eq!(line, Some(Bytes::from_static(b"{\"uid\":65534}")));
        Ok(())
    }
}
