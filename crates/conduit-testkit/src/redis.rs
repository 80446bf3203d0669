//! A real `redis-server` for tests: [`RedisServer`] starts one on a free loopback port with a
//! temporary directory, can restart it on the same port (with or without its data) and stops it
//! when dropped. Never a mock: the Redis scale-out tests (docs/SCALE.md) run against this.
//!
//! `redis-server` comes from the Debian package of that name, which `scripts/test.sh` installs
//! when it is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// `redis-server` is not installed (run `scripts/test.sh`, which installs it).
    #[error("redis-server not found on PATH (scripts/test.sh installs the Debian package)")]
    NotInstalled,
    /// Starting or reaching it failed.
    #[error("redis-server: {0}")]
    Io(#[from] std::io::Error),
    /// It did not answer `PING` in time.
    #[error("redis-server on port {port} did not answer PING within {waited:?}")]
    NotReady {
        /// The port.
        port: u16,
        /// How long we waited.
        waited: Duration,
    },
}

/// How long a fresh server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` child on `127.0.0.1`. Dropping it kills the server and removes its directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
    persistent: bool,
}

impl RedisServer {
    /// A server without persistence (what a restart loses is lost) and without a password.
    pub fn start() -> Result<Self, RedisError> {
        Self::builder().start()
    }

    /// Options: a password, append-only persistence.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `redis://127.0.0.1:<port>` (with `:password@` when one is set).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its append-only file, when persistent).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop the server (SIGKILL: like a crash; a persistent server keeps what it fsynced).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop the server and start it again on the same port. Without persistence every key is
    /// gone afterwards; with it, what was written survives.
    pub fn restart(&mut self) -> Result<(), RedisError> {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        // The port may take a moment to be free again.
        loop {
            match spawn(
                self.port,
                self.dir.path(),
                self.password.as_deref(),
                self.persistent,
            ) {
                Ok(c) => {
                    self.child = Some(c);
                    break;
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        wait_ready(self.port, self.password.as_deref(), self.child.as_mut())
    }

    /// Run one command (`args`, sent as a RESP array) and return the raw reply. For checks in
    /// tests (`INFO memory`, `DBSIZE`, `KEYS *`) without a Redis client crate.
    pub fn command(&self, args: &[&str]) -> Result<String, RedisError> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        if let Some(p) = &self.password {
            s.write_all(&resp(&["AUTH", p]))?;
            read_reply(&mut s)?;
        }
        s.write_all(&resp(args))?;
        read_reply(&mut s)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Options of a [`RedisServer`].
#[derive(Debug, Default, Clone)]
pub struct RedisServerBuilder {
    password: Option<String>,
    persistent: bool,
}

impl RedisServerBuilder {
    /// Require this password (`requirepass`).
    pub fn password(mut self, p: impl Into<String>) -> Self {
        self.password = Some(p.into());
        self
    }

    /// Append-only persistence with an fsync per write: data survives a restart.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Start it on a free loopback port.
    pub fn start(self) -> Result<RedisServer, RedisError> {
        if which("redis-server").is_none() {
            return Err(RedisError::NotInstalled);
        }
        let dir = tempfile::Builder::new()
            .prefix("conduit-redis-")
            .tempdir()?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut child = match spawn(port, dir.path(), self.password.as_deref(), self.persistent)
            {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match wait_ready(port, self.password.as_deref(), Some(&mut child)) {
                Ok(()) => {
                    return Ok(RedisServer {
                        child: Some(child),
                        port,
                        dir,
                        password: self.password,
                        persistent: self.persistent,
                    });
                }
                Err(e) => {
                    // Most likely another process took the port in between: try another.
                    let _ = child.kill();
                    let _ = child.wait();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(RedisError::NotInstalled))
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

fn free_port() -> Result<u16, RedisError> {
    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(l.local_addr()?.port())
}

fn spawn(
    port: u16,
    dir: &Path,
    password: Option<&str>,
    persistent: bool,
) -> Result<Child, RedisError> {
    let mut cmd = Command::new("redis-server");
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "redis.log"]);
    if persistent {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(child)
}

fn wait_ready(
    port: u16,
    password: Option<&str>,
    child: Option<&mut Child>,
) -> Result<(), RedisError> {
    let started = Instant::now();
    let mut child = child;
    while started.elapsed() < READY_TIMEOUT {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(RedisError::Io(std::io::Error::other(format!(
                "exited at start with {status} (port {port} taken?)"
            ))));
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut ok = true;
            if let Some(p) = password {
                ok = s.write_all(&resp(&["AUTH", p])).is_ok() && read_reply(&mut s).is_ok();
            }
            if ok
                && s.write_all(&resp(&["PING"])).is_ok()
                && read_reply(&mut s).is_ok_and(|r| r.starts_with("+PONG"))
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(RedisError::NotReady {
        port,
        waited: started.elapsed(),
    })
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Read one reply: enough for the simple replies tests look at (status, error, integer, one bulk
/// string, or an array of bulk strings), returned as text.
fn read_reply(s: &mut TcpStream) -> Result<String, RedisError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if complete(&buf) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    if text.starts_with('-') {
        return Err(RedisError::Io(std::io::Error::other(
            text.trim().to_owned(),
        )));
    }
    Ok(text)
}

/// Whether `buf` holds one whole reply.
fn complete(buf: &[u8]) -> bool {
    fn one(buf: &[u8], at: usize) -> Option<usize> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(buf.get(at + 1..end)?).ok()?;
        match buf.get(at)? {
            b'+' | b'-' | b':' => Some(end + 2),
            b'$' => {
                let n: i64 = line.parse().ok()?;
                if n < 0 {
                    return Some(end + 2);
                }
                let stop = end + 2 + usize::try_from(n).ok()? + 2;
                (buf.len() >= stop).then_some(stop)
            }
            b'*' => {
                let n: i64 = line.parse().ok()?;
                let mut at = end + 2;
                for _ in 0..n.max(0) {
                    at = one(buf, at)?;
                }
                Some(at)
            }
            _ => None,
        }
    }
    one(buf, 0).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_answers_restarts_and_forgets_without_persistence() {
        let mut r = match RedisServer::start() {
            Ok(r) => r,
            Err(RedisError::NotInstalled) => panic!("redis-server missing: run scripts/test.sh"),
            Err(e) => panic!("{e}"),
        };
        assert!(r.command(&["SET", "k", "v"]).unwrap().starts_with("+OK"));
        assert!(r.command(&["GET", "k"]).unwrap().contains("v"));
        let port = r.port();
        r.restart().unwrap();
        assert_eq!(r.port(), port);
        assert!(r.command(&["GET", "k"]).unwrap().starts_with("$-1"));
    }

    #[test]
    fn a_persistent_server_keeps_its_data_and_a_password_is_required() {
        let mut r = RedisServer::builder()
            .password("s3cret-pw")
            .persistent()
            .start()
            .unwrap();
        assert!(r.url().contains(":s3cret-pw@"));
        r.command(&["SET", "k", "v"]).unwrap();
        r.restart().unwrap();
        assert!(r.command(&["GET", "k"]).unwrap().contains("v"));
        // Without the password the server refuses.
        let mut s = TcpStream::connect(("127.0.0.1", r.port())).unwrap();
        s.write_all(&resp(&["GET", "k"])).unwrap();
        assert!(
            read_reply(&mut s)
                .unwrap_err()
                .to_string()
                .contains("NOAUTH")
        );
    }
}
