//! The floor: the least any program must do to run the same workload over the same pipes.
//!
//! Plain blocking std I/O on the calling thread, no JSON parsing, no channel, no runtime: spawn
//! the CLI (same program, argv and environment as the SDK side), write the `initialize` request,
//! read lines until its `control_response`; then, timed by the caller, write user frames and read
//! lines with a 64 KiB [`BufReader`] (`read_until(b'\n')` into one reused buffer) until each
//! turn's `result` line, counting every line and every byte read (newlines included).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Capacity of the floor's line reader.
pub const READ_BUFFER: usize = 64 * 1024;

/// How long [`Floor::finish`] lets the CLI exit on its own after end of input (the SDK's
/// default close grace is the same).
const FINISH_GRACE: Duration = Duration::from_secs(5);

/// A started CLI whose `initialize` request has been answered.
pub struct Floor {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: BufReader<ChildStdout>,
    line: Vec<u8>,
    /// How long `spawn()` took.
    pub spawn_time: Duration,
}

/// Lines and bytes one turn read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Read {
    /// Lines read, the `result` line included.
    pub lines: u64,
    /// Bytes read, newlines included.
    pub bytes: u64,
}

impl Floor {
    /// Spawn `cmd` (stdin and stdout piped, stderr discarded), write `init` (a frame with its
    /// newline), and read lines until the `control_response` line.
    pub fn start(mut cmd: Command, init: &[u8]) -> Result<Floor> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("floor: spawning {:?}", cmd.get_program()))?;
        let spawn_time = t0.elapsed();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("floor: the child's pipes were not set up");
        };
        let mut floor = Floor {
            child,
            stdin: Some(stdin),
            reader: BufReader::with_capacity(READ_BUFFER, stdout),
            line: Vec::new(),
            spawn_time,
        };
        floor.write(init)?;
        loop {
            let n = floor.read_line()?;
            if n == 0 {
                bail!("floor: the CLI closed stdout before answering initialize");
            }
            if contains(&floor.line, b"\"control_response\"") {
                break;
            }
        }
        Ok(floor)
    }

    /// Write one user frame (with its newline) and read lines until the `result` line.
    pub fn turn(&mut self, user: &[u8]) -> Result<Read> {
        self.write(user)?;
        let mut read = Read::default();
        loop {
            let n = self.read_line()?;
            if n == 0 {
                bail!(
                    "floor: the CLI closed stdout before the result ({} lines read)",
                    read.lines
                );
            }
            read.lines += 1;
            read.bytes += n as u64;
            if is_result(&self.line) {
                return Ok(read);
            }
        }
    }

    /// End input and wait for the CLI to exit; kill it if it has not after [`FINISH_GRACE`].
    /// Not timed.
    pub fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + FINISH_GRACE;
        loop {
            match self
                .child
                .try_wait()
                .context("floor: waiting for the CLI")?
            {
                Some(_) => return Ok(()),
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                None => {
                    let _ = self.child.kill();
                    self.child
                        .wait()
                        .context("floor: waiting for the killed CLI")?;
                    return Ok(());
                }
            }
        }
    }

    fn write(&mut self, frame: &[u8]) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            bail!("floor: input already ended");
        };
        stdin
            .write_all(frame)
            .context("floor: writing to the CLI's stdin")
    }

    /// One line into `self.line` (replacing the previous one); its length, 0 at end of output.
    fn read_line(&mut self) -> Result<usize> {
        self.line.clear();
        self.reader
            .read_until(b'\n', &mut self.line)
            .context("floor: reading the CLI's stdout")
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // After `finish` the CLI has exited and this does nothing; on an error path it makes
        // sure the CLI is not left behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `result` frame, told apart without parsing: the line starts with `{"type":"result"` (the
/// CLI writes `type` first), or, for a CLI that orders keys otherwise, `"type":"result"` occurs in
/// the first 64 bytes.
pub fn is_result(line: &[u8]) -> bool {
    const TYPE_FIRST: &[u8] = b"{\"type\":\"";
    if let Some(rest) = line.strip_prefix(TYPE_FIRST) {
        return rest.starts_with(b"result\"");
    }
    contains(&line[..line.len().min(64)], b"\"type\":\"result\"")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_recognised_without_parsing() {
        assert!(is_result(
            b"{\"type\":\"result\",\"subtype\":\"success\"}\n"
        ));
        assert!(is_result(
            b"{\"subtype\":\"success\",\"type\":\"result\"}\n"
        ));
        assert!(!is_result(
            b"{\"type\":\"assistant\",\"message\":{\"content\":\"\\\"type\\\":\\\"result\\\"\"}}\n"
        ));
        assert!(!is_result(b"{\"type\":\"system\",\"subtype\":\"init\"}\n"));
    }

    #[test]
    fn a_cat_that_answers_is_a_cli_for_the_floor() -> Result<()> {
        // `cat` echoes what the floor writes: the init line carries "control_response" and the
        // user line is a result, so one turn reads exactly one line.
        let mut floor = Floor::start(Command::new("cat"), b"{\"type\":\"control_response\"}\n")?;
        let r = floor.turn(b"{\"type\":\"result\"}\n")?;
        assert_eq!((r.lines, r.bytes), (1, 18));
        floor.finish()
    }
}
