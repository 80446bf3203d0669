//! A scriptable fake of the Anthropic Messages API, good enough to drive the **real** `claude` CLI
//! offline.
//!
//! [`FakeModel`] listens on `127.0.0.1` (a free port) and answers each `POST /v1/messages` with the
//! next scripted [`Turn`], streamed in the Anthropic SSE format (`message_start`, `ping`,
//! `content_block_start` / `content_block_delta` / `content_block_stop`, `message_delta`,
//! `message_stop`). It also serves `POST /v1/messages/count_tokens`, `HEAD` and `GET` on any path,
//! accepts `?beta=true` everywhere, and records every request in a log ([`LoggedRequest`]).
//!
//! The server runs on its own thread with its own Tokio runtime, so it keeps answering even while
//! the test blocks (for example on `std::process::Command::output`).
//!
//! ```no_run
//! use claude_conduit_testkit::fake_model::{FakeModel, Turn};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let fake = FakeModel::builder()
//!     .turn(Turn::tool_use("Bash", json!({"command": "echo hi > out.txt", "description": "write"})))
//!     .turn(Turn::text("Done."))
//!     .start()
//!     .await?;
//! let env = fake.cli_env()?; // scratch HOME + cwd, ANTHROPIC_BASE_URL, pinned CLI path
//! let out = env
//!     .tokio_command()
//!     .args(["-p", "write the file", "--output-format", "stream-json", "--verbose"])
//!     .args(["--allowedTools", "Bash"])
//!     .output()
//!     .await?;
//! assert!(out.status.success());
//! assert_eq!(fake.message_requests().len(), 2);
//! # Ok(()) }
//! ```

mod log;
mod server;
mod turn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::cli::{CliEnv, CliError, ensure_pinned_cli};

pub use log::{Answer, LoggedRequest, RequestKind};
pub use turn::{Block, DEFAULT_CHUNK_CHARS, Fallback, Turn};

use server::Shared;

/// Errors of the fake server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakeModelError {
    /// The server could not be started (runtime, thread or socket).
    #[error("could not start the fake model server: {0}")]
    Start(#[source] std::io::Error),
    /// The server thread ended before it reported its address.
    #[error("the fake model server thread ended before it was ready")]
    StartAborted,
    /// A `wait_for_*` call timed out.
    #[error("timed out after {timeout:?} waiting for {wanted} {what}; got {got}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How many were wanted.
        wanted: usize,
        /// How many had arrived.
        got: usize,
        /// The timeout.
        timeout: Duration,
    },
}

/// Builder for a [`FakeModel`]; get one from [`FakeModel::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct FakeModelBuilder {
    turns: Vec<Turn>,
    fallback: Fallback,
}

impl FakeModelBuilder {
    /// Append one turn to the script.
    pub fn turn(mut self, turn: Turn) -> Self {
        self.turns.push(turn);
        self
    }

    /// Append several turns to the script.
    pub fn turns(mut self, turns: impl IntoIterator<Item = Turn>) -> Self {
        self.turns.extend(turns);
        self
    }

    /// What to answer once no scripted turn applies (default [`Fallback::Echo`]).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Shorthand for `fallback(Fallback::Text(text))`.
    pub fn fallback_text(self, text: impl Into<String>) -> Self {
        self.fallback(Fallback::Text(text.into()))
    }

    /// Start the server on `127.0.0.1`, port 0, and wait until it listens.
    pub async fn start(self) -> Result<FakeModel, FakeModelError> {
        let (ready_rx, handle) = self.spawn()?;
        match ready_rx.await {
            Ok(Ok(addr)) => Ok(handle.ready(addr)),
            Ok(Err(err)) => Err(FakeModelError::Start(err)),
            Err(_) => Err(FakeModelError::StartAborted),
        }
    }

    /// Like [`start`](Self::start), for synchronous code. Do not call it from inside an async
    /// runtime (use `start().await` there).
    pub fn start_blocking(self) -> Result<FakeModel, FakeModelError> {
        // `blocking_recv` panics inside a runtime; refuse instead.
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(FakeModelError::Start(std::io::Error::other(
                "FakeModelBuilder::start_blocking called inside an async runtime; use start().await",
            )));
        }
        let (ready_rx, handle) = self.spawn()?;
        match ready_rx.blocking_recv() {
            Ok(Ok(addr)) => Ok(handle.ready(addr)),
            Ok(Err(err)) => Err(FakeModelError::Start(err)),
            Err(_) => Err(FakeModelError::StartAborted),
        }
    }

    #[allow(clippy::type_complexity)]
    fn spawn(
        self,
    ) -> Result<(oneshot::Receiver<std::io::Result<SocketAddr>>, Starting), FakeModelError> {
        let shared = Arc::new(Shared::new(self.turns, self.fallback));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-model".into())
            .spawn(move || serve_thread(thread_shared, ready_tx, shutdown_rx))
            .map_err(FakeModelError::Start)?;
        Ok((
            ready_rx,
            Starting {
                shared,
                shutdown_tx,
                thread,
            },
        ))
    }
}

struct Starting {
    shared: Arc<Shared>,
    shutdown_tx: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Starting {
    fn ready(self, addr: SocketAddr) -> FakeModel {
        FakeModel {
            shared: self.shared,
            addr,
            shutdown_tx: Some(self.shutdown_tx),
            thread: Some(self.thread),
        }
    }
}

fn serve_thread(
    shared: Arc<Shared>,
    ready_tx: oneshot::Sender<std::io::Result<SocketAddr>>,
    shutdown_rx: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            let _ = ready_tx.send(Err(err));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(l) => l,
            Err(err) => {
                let _ = ready_tx.send(Err(err));
                return;
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(err) => {
                let _ = ready_tx.send(Err(err));
                return;
            }
        };
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared);
        if ready_tx.send(Ok(addr)).is_err() {
            return;
        }
        tracing::debug!(%addr, "fake model listening");
        tokio::select! {
            result = axum::serve(listener, app) => {
                if let Err(err) = result {
                    tracing::warn!(%err, "fake model server stopped");
                }
            }
            _ = shutdown_rx => {}
        }
    });
    // Dropping the runtime cancels every connection task, including hanging streams.
    runtime.shutdown_timeout(Duration::from_millis(200));
}

/// A running fake Anthropic Messages API. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeModel {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown_tx: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeModel {
    /// Start describing a fake: add turns, then [`FakeModelBuilder::start`].
    pub fn builder() -> FakeModelBuilder {
        FakeModelBuilder::default()
    }

    /// Shorthand for `FakeModel::builder().turns(turns).start().await`.
    pub async fn start(turns: impl IntoIterator<Item = Turn>) -> Result<FakeModel, FakeModelError> {
        Self::builder().turns(turns).start().await
    }

    /// `http://127.0.0.1:PORT`: the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Append a turn to the script while the server runs.
    pub fn push_turn(&self, turn: Turn) {
        self.shared.push_turn(turn);
    }

    /// Replace the fallback while the server runs.
    pub fn set_fallback(&self, fallback: Fallback) {
        self.shared.set_fallback(fallback);
    }

    /// How many scripted turns have not been used up yet.
    pub fn pending_turns(&self) -> usize {
        self.shared.pending_turns()
    }

    /// A snapshot of the request log: every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.requests()
    }

    /// The `POST /v1/messages` requests of the log, in order.
    pub fn message_requests(&self) -> Vec<LoggedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.kind == RequestKind::Messages)
            .collect()
    }

    /// Wait until at least `n` requests (of any kind) have arrived; returns the log.
    ///
    /// A request is logged when it arrives, before it is answered: its [`LoggedRequest::answer`]
    /// may still be [`Answer::Pending`].
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<LoggedRequest>, FakeModelError> {
        self.wait_until("requests", n, timeout, |_| true).await
    }

    /// Wait until at least `n` `POST /v1/messages` requests have arrived; returns those requests.
    pub async fn wait_for_message_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<LoggedRequest>, FakeModelError> {
        let all = self
            .wait_until("messages requests", n, timeout, |r| {
                r.kind == RequestKind::Messages
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|r| r.kind == RequestKind::Messages)
            .collect())
    }

    async fn wait_until(
        &self,
        what: &'static str,
        n: usize,
        timeout: Duration,
        filter: impl Fn(&LoggedRequest) -> bool,
    ) -> Result<Vec<LoggedRequest>, FakeModelError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.version.subscribe();
        loop {
            changes.mark_unchanged();
            let log = self.requests();
            let got = log.iter().filter(|r| filter(r)).count();
            if got >= n {
                return Ok(log);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let got = self.requests().iter().filter(|r| filter(r)).count();
                    if got >= n {
                        return Ok(self.requests());
                    }
                    return Err(FakeModelError::Timeout {
                        what,
                        wanted: n,
                        got,
                        timeout,
                    });
                }
            }
        }
    }

    /// A scratch environment for running the real CLI against this fake: a temporary `HOME` and
    /// working directory, `ANTHROPIC_BASE_URL` pointing here, and the pinned CLI (installed with
    /// npm on first use, see [`ensure_pinned_cli`]).
    ///
    /// This may block for a while (npm install) the first time; it resolves the CLI location from
    /// the current environment before any `HOME` override.
    pub fn cli_env(&self) -> Result<CliEnv, CliError> {
        let cli = ensure_pinned_cli()?;
        self.cli_env_with(cli)
    }

    /// Like [`cli_env`](Self::cli_env) with a CLI binary of your choice (no install).
    pub fn cli_env_with(
        &self,
        cli_path: impl Into<std::path::PathBuf>,
    ) -> Result<CliEnv, CliError> {
        CliEnv::new(&self.base_url(), cli_path.into())
    }

    /// Stop the server and wait for its thread to finish. Open streams are cut.
    pub async fn shutdown(mut self) {
        self.signal_shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        // The server thread exits on its own; do not block in drop.
        self.signal_shutdown();
    }
}
