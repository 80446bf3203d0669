//! Sessions: [`query`] for one-shot use and [`Client`] for multi-turn conversations.
//!
//! Both sit on the protocol engine. Messages reach you through a bounded channel: when you are
//! slow, the CLI is slowed down; nothing is dropped. Control methods take `&self` and work while a
//! receive stream is alive; their replies never wait behind undrained messages.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{BoxStream, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OwnedMutexGuard};

mod connect;
mod control;

pub use control::{
    BinaryVersion, ContextCategory, ContextUsage, InterruptReceipt, McpServerStatus,
    McpSetServersResult, McpStatus, McpToolStatus, ModelInfo, RewindResult,
};

use crate::error::{Error, Result};
use crate::message::{Message, MessageKind, UserContent, UserInput};
use crate::options::{Options, PermissionMode};
use crate::protocol::{Engine, EngineConfig, InboundHandler, MessageRx, Router};
use crate::transport::{ConnectionInfo, Termination, Transport, TransportMetrics};

/// A live session with the CLI: send prompts, receive messages, control the turn.
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::{Client, Options};
/// use futures::StreamExt;
///
/// let client = Client::connect(Options::default()).await?;
/// client.send("What is 2 + 2?").await?;
/// let mut replies = client.receive_response();
/// while let Some(msg) = replies.next().await {
///     let msg = msg?;
///     if let Some(r) = msg.as_result() {
///         println!("turn cost: {:?}", r.turn_cost_usd);
///     }
/// }
/// drop(replies);
/// client.send("And times 3?").await?;
/// # Ok(()) }
/// ```
pub struct Client {
    engine: Engine,
    messages: Arc<Mutex<MessageRx>>,
    server_info: Option<Value>,
    info: ConnectionInfo,
    metrics: Arc<TransportMetrics>,
    control_timeout: Duration,
    close_grace: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("info", &self.info)
            .field("cli_version", &self.cli_version())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Start the `claude` CLI described by `options` and initialize the session.
    ///
    /// With [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport) set to a
    /// gateway URL, creates a session there and connects over the transport the URL names.
    pub async fn connect(options: Options) -> Result<Client> {
        use tracing::Instrument;
        // Span `conduit.session` for the session's life; its child `conduit.connect` covers
        // creating the session (with the `otel` feature its trace context goes to the gateway,
        // whose spans are its children).
        let session = crate::protocol::spans::session_span();
        connect::connect(options, session.clone())
            .instrument(tracing::info_span!(parent: &session, "conduit.connect"))
            .await
    }

    /// Initialize a session over any transport.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> claude_conduit::Result<()> {
    /// use claude_conduit::transport::{MemoryTransport, memory::ScriptedCli};
    /// use claude_conduit::{Client, Options};
    /// use futures::StreamExt;
    ///
    /// let (transport, cli_side) = MemoryTransport::pair(16);
    /// ScriptedCli::default().spawn(cli_side);
    /// let client = Client::connect_with(transport, Options::default()).await?;
    /// for prompt in ["one", "two"] {
    ///     client.send(prompt).await?;
    ///     let turn: Vec<_> = client.receive_response().collect().await;
    ///     let result = turn.last().and_then(|m| m.as_ref().ok()).and_then(|m| m.as_result());
    ///     assert!(result.is_some_and(|r| !r.is_error));
    /// }
    /// client.disconnect().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with<T: Transport>(transport: T, options: Options) -> Result<Client> {
        Self::connect_in(transport, options, crate::protocol::spans::session_span()).await
    }

    /// [`connect_with`](Self::connect_with) in the session span `span`.
    pub(crate) async fn connect_in<T: Transport>(
        transport: T,
        options: Options,
        span: tracing::Span,
    ) -> Result<Client> {
        // Validate before spawning anything.
        options.argv()?;
        let mut hooks = options.callbacks.hooks.clone();
        if let Some(bus) = &options.ext.events {
            bus.add_cli_hooks(&mut hooks);
        }
        let registration = hooks.registration();
        let router = Router {
            permission: options.callbacks.permission_handler(),
            hooks: Arc::new(registration.callbacks),
            mcp: Arc::new(crate::mcp::sdk_servers(&options.callbacks.mcp_servers)),
        };
        let init = options.initialize_request(registration.config);
        Self::connect_with_handler(transport, options, Arc::new(router), init, span).await
    }

    pub(crate) async fn connect_with_handler<T: Transport>(
        transport: T,
        options: Options,
        handler: Arc<dyn InboundHandler>,
        initialize: Value,
        span: tracing::Span,
    ) -> Result<Client> {
        use tracing::Instrument;
        let bus = options.ext.events.clone();
        if let Some(bus) = &bus {
            bus.emit(crate::events::Event::Connect {
                transport: std::any::type_name::<T>(),
            })
            .await;
        }
        let wire = crate::transport::metrics::wire_label(std::any::type_name::<T>());
        span.record("wire", wire);
        // The transport's tasks (the relay driver and its reconnects) run in the session span.
        let conn = transport.connect().instrument(span.clone()).await?;
        conn.metrics.publish_as(wire);
        let ext = options.ext.build(conn.metrics.clone());
        let (engine, rx) = Engine::start(
            conn.sender,
            conn.receiver,
            EngineConfig {
                message_buffer: options.runtime.message_buffer,
                max_concurrent_callbacks: options.runtime.max_concurrent_callbacks,
                idle_timeout: options.runtime.idle_timeout,
                handler,
                ext,
                metrics: Some(conn.metrics.clone()),
                span,
            },
        );
        let messages = Arc::new(Mutex::new(rx));
        let init = engine
            .request("initialize", initialize, options.runtime.initialize_timeout)
            .await;
        let server_info = match init {
            Ok(v) => v,
            Err(e) => {
                // Nothing useful can happen on this connection; end it before reporting.
                let _ = engine.close(Duration::from_millis(200)).await;
                return Err(e);
            }
        };
        if let Some(v) = server_info
            .as_ref()
            .and_then(|i| i.get("claude_code_version"))
            .and_then(Value::as_str)
        {
            engine.set_cli_version(v.to_owned());
        }
        if let Some(bus) = &bus {
            bus.emit(crate::events::Event::Connected {
                info: conn.info.clone(),
                cli_version: engine.cli_version().map(str::to_owned),
            })
            .await;
        }
        Ok(Client {
            engine,
            messages,
            server_info,
            info: conn.info,
            metrics: conn.metrics,
            control_timeout: options.runtime.control_timeout,
            close_grace: options.runtime.close_grace,
        })
    }

    /// Send a user message (text or content blocks).
    pub async fn send(&self, content: impl Into<UserContent>) -> Result<()> {
        self.send_message(UserInput::new(content)).await
    }

    /// Send a user message: the same as [`send`](Self::send), under the name the Python SDK
    /// (`ClaudeSDKClient.query`) gives it. Read the answer with
    /// [`receive_response`](Self::receive_response).
    ///
    /// ```no_run
    /// # async fn demo() -> claude_conduit::Result<()> {
    /// use claude_conduit::{Client, Options};
    /// use futures::StreamExt;
    ///
    /// let client = Client::connect(Options::default()).await?;
    /// client.query("What is 2 + 2?").await?; // = client.send(…)
    /// let mut replies = client.receive_response();
    /// while let Some(msg) = replies.next().await {
    ///     if let Some(a) = msg?.as_assistant() {
    ///         print!("{}", a.text());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn query(&self, content: impl Into<UserContent>) -> Result<()> {
        self.send(content).await
    }

    /// Send a fully specified user message.
    pub async fn send_message(&self, message: UserInput) -> Result<()> {
        self.engine.send_user(message.encode()).await
    }

    /// Every message until the CLI's output ends.
    ///
    /// Only one receive stream reads at a time; a second one waits until the first is dropped.
    pub fn receive_messages(&self) -> Messages {
        receive(self.messages.clone(), false)
    }

    /// Messages up to and including the next `result`.
    pub fn receive_response(&self) -> Messages {
        receive(self.messages.clone(), true)
    }

    /// Change the permission mode for the rest of the session.
    pub async fn set_permission_mode(&self, mode: PermissionMode) -> Result<()> {
        self.control("set_permission_mode", json!({"mode": mode.as_str()}))
            .await
            .map(drop)
    }

    /// Change the model (`None` returns to the default).
    pub async fn set_model(&self, model: Option<&str>) -> Result<()> {
        self.control("set_model", json!({"model": model}))
            .await
            .map(drop)
    }

    /// Send any control request and return the CLI's `response` payload.
    pub async fn control(&self, subtype: &str, fields: Value) -> Result<Option<Value>> {
        self.engine
            .request(subtype, fields, self.control_timeout)
            .await
    }

    /// Tell the CLI no more input follows; it finishes the current turn and exits.
    pub async fn end_input(&self) -> Result<()> {
        self.engine.end_input().await
    }

    /// End the session gracefully: end input, wait for the CLI to exit (bounded), then signal
    /// its process group. Returns how the CLI ended, when known.
    pub async fn disconnect(self) -> Result<Option<Termination>> {
        self.engine.close(self.close_grace).await?;
        // Let the reader see the end (it drains the pipe after the exit).
        let mut rx = self.messages.lock().await;
        let drain = async { while rx.recv().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        Ok(self.engine.termination().cloned())
    }

    /// The CLI's process id (local transports).
    pub fn pid(&self) -> Option<u32> {
        self.info.pid
    }

    /// Facts about the connection.
    pub fn connection_info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The CLI's reply to `initialize` (commands, agents, models, account, …).
    pub fn server_info(&self) -> Option<&Value> {
        self.server_info.as_ref()
    }

    /// The CLI's version, from the initialize reply or the first `system/init`.
    pub fn cli_version(&self) -> Option<&str> {
        self.engine.cli_version()
    }

    /// The session id, once the first `system/init` has arrived.
    pub fn session_id(&self) -> Option<&str> {
        self.engine.session_id()
    }

    /// The transport's counters.
    pub fn metrics(&self) -> &TransportMetrics {
        &self.metrics
    }

    /// How the CLI ended, once it has.
    pub fn termination(&self) -> Option<&Termination> {
        self.engine.termination()
    }
}

/// A stream of messages from a [`Client`] (`Send + 'static + Unpin`).
///
/// A plain state machine over the client's receiver rather than a boxed `async` stream: each
/// message is polled straight out of the receiver, with no future built and moved per item.
pub struct Messages {
    state: ReceiveState,
    /// End after the first `result`.
    until_result: bool,
}

enum ReceiveState {
    /// Waiting for the receiver (only one stream reads at a time).
    Locking(futures::future::BoxFuture<'static, OwnedMutexGuard<MessageRx>>),
    Reading(OwnedMutexGuard<MessageRx>),
    Done,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages").finish_non_exhaustive()
    }
}

impl Stream for Messages {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut self.state {
                ReceiveState::Locking(lock) => {
                    let guard = std::task::ready!(lock.as_mut().poll(cx));
                    self.state = ReceiveState::Reading(guard);
                }
                ReceiveState::Reading(rx) => {
                    let item = std::task::ready!(rx.poll_recv(cx));
                    // `is_result` reads the tag and costs nothing; only a frame tagged `result`
                    // (already typed by the receiver, which reads its cost) is looked at
                    // further. Asking every message for its `kind()` would type each one here.
                    let last = match &item {
                        None => true,
                        Some(Ok(m)) => {
                            self.until_result
                                && m.is_result()
                                && matches!(m.kind(), MessageKind::Result(_))
                        }
                        Some(Err(_)) => false,
                    };
                    if last {
                        // Releases the receiver for the next stream.
                        self.state = ReceiveState::Done;
                    }
                    return Poll::Ready(item);
                }
                ReceiveState::Done => return Poll::Ready(None),
            }
        }
    }
}

// The documented guarantees.
const _: fn() = || {
    fn send_static_unpin<T: Send + Unpin + 'static>() {}
    send_static_unpin::<Messages>();
};

fn receive(messages: Arc<Mutex<MessageRx>>, until_result: bool) -> Messages {
    Messages {
        state: ReceiveState::Locking(Box::pin(messages.lock_owned())),
        until_result,
    }
}

/// What [`query`] sends: one prompt, or a stream of user messages.
pub enum Prompt {
    /// One user message.
    Message(UserInput),
    /// Several user messages, sent as the stream yields them.
    Stream(BoxStream<'static, UserInput>),
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prompt::Message(m) => f.debug_tuple("Message").field(m).finish(),
            Prompt::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Prompt::Message(UserInput::new(s))
    }
}
impl From<String> for Prompt {
    fn from(s: String) -> Self {
        Prompt::Message(UserInput::new(s))
    }
}
impl From<UserInput> for Prompt {
    fn from(m: UserInput) -> Self {
        Prompt::Message(m)
    }
}

impl Prompt {
    /// A prompt made of a stream of user messages.
    pub fn stream(s: impl Stream<Item = UserInput> + Send + 'static) -> Self {
        Prompt::Stream(s.boxed())
    }
}

/// The stream [`query`] returns. `Send + 'static`; dropping it ends the CLI.
pub struct Query {
    inner: BoxStream<'static, Result<Message>>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query").finish_non_exhaustive()
    }
}

impl Query {
    /// A `Query` over any stream of messages (for [middleware](crate::middleware) that
    /// replaces or wraps a query's stream).
    pub fn from_stream(stream: impl Stream<Item = Result<Message>> + Send + 'static) -> Self {
        Query {
            inner: stream.boxed(),
        }
    }
}

impl Stream for Query {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// Run a prompt (or a stream of prompts) and stream every message back until the CLI ends.
///
/// The CLI's input is ended once a result has arrived and nothing else needs it (the prompt
/// stream is exhausted, no callback is running, no background agent task is in flight), as the
/// official SDKs do; the CLI then exits and the stream ends. A CLI that dies mid-turn yields
/// [`Error::ProcessExited`] with its exit code and stderr tail.
///
/// ```no_run
/// # async fn demo() -> claude_conduit::Result<()> {
/// use claude_conduit::{query, MessageKind, Options};
/// use futures::StreamExt;
///
/// let mut stream = query("Say hi", Options::default());
/// while let Some(msg) = stream.next().await {
///     if let MessageKind::Result(r) = msg?.kind() {
///         println!("done, error: {}", r.is_error);
///     }
/// }
/// # Ok(()) }
/// ```
pub fn query(prompt: impl Into<Prompt>, options: Options) -> Query {
    let prompt = prompt.into();
    Query {
        inner: run_query(prompt, async move { Client::connect(options).await }).boxed(),
    }
}

/// [`query`] over an explicit transport.
///
/// Runnable as is, with the in-process [`MemoryTransport`](crate::transport::MemoryTransport)
/// and its scripted fake CLI:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> claude_conduit::Result<()> {
/// use claude_conduit::transport::{MemoryTransport, memory::ScriptedCli};
/// use claude_conduit::{Options, query_with_transport};
/// use futures::StreamExt;
///
/// let (transport, cli_side) = MemoryTransport::pair(16);
/// ScriptedCli::default().spawn(cli_side); // answers `echo: <prompt>`
/// let mut text = String::new();
/// let mut stream = query_with_transport("hi", Options::default(), transport);
/// while let Some(msg) = stream.next().await {
///     if let Some(a) = msg?.as_assistant() {
///         text.push_str(&a.text());
///     }
/// }
/// assert_eq!(text, "echo: hi");
/// # Ok(()) }
/// ```
pub fn query_with_transport<T: Transport>(
    prompt: impl Into<Prompt>,
    options: Options,
    transport: T,
) -> Query {
    let prompt = prompt.into();
    let fut = async move { Client::connect_with(transport, options).await };
    Query {
        inner: run_query(prompt, fut).boxed(),
    }
}

fn run_query(
    prompt: Prompt,
    connect: impl std::future::Future<Output = Result<Client>> + Send + 'static,
) -> impl Stream<Item = Result<Message>> + Send + 'static {
    enum State<F> {
        Start(F, Prompt),
        Running(Box<Running>),
        Done,
    }
    struct Running {
        client: Arc<Client>,
        rx: OwnedMutexGuard<MessageRx>,
        input_done: Arc<std::sync::atomic::AtomicBool>,
        _feeder: Option<tokio::task::JoinHandle<()>>,
    }
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(f) = &self._feeder {
                f.abort();
            }
        }
    }
    use std::sync::atomic::Ordering;

    futures::stream::unfold(
        State::Start(Box::pin(connect), prompt),
        |state| async move {
            let mut run = match state {
                State::Done => return None,
                State::Running(r) => r,
                State::Start(connect, prompt) => {
                    let client = match connect.await {
                        Ok(c) => Arc::new(c),
                        Err(e) => return Some((Err(e), State::Done)),
                    };
                    let rx = client.messages.clone().lock_owned().await;
                    let input_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let feeder = match prompt {
                        Prompt::Message(m) => {
                            if let Err(e) = client.send_message(m).await {
                                return Some((Err(e), State::Done));
                            }
                            input_done.store(true, Ordering::Release);
                            None
                        }
                        Prompt::Stream(mut s) => {
                            let c = client.clone();
                            let done = input_done.clone();
                            Some(tokio::spawn(async move {
                                while let Some(m) = s.next().await {
                                    if c.send_message(m).await.is_err() {
                                        break;
                                    }
                                }
                                done.store(true, Ordering::Release);
                                if c.engine.quiescent() {
                                    let _ = c.end_input().await;
                                }
                            }))
                        }
                    };
                    Box::new(Running {
                        client,
                        rx,
                        input_done,
                        _feeder: feeder,
                    })
                }
            };
            match run.rx.recv().await {
                None => None,
                Some(item) => {
                    let is_result = matches!(&item, Ok(m) if m.is_result());
                    let fatal = matches!(&item, Err(Error::Idle { .. }));
                    if is_result
                        && run.input_done.load(Ordering::Acquire)
                        && run.client.engine.quiescent()
                        && !run.client.engine.input_ended()
                    {
                        let _ = run.client.end_input().await;
                    }
                    if fatal {
                        return Some((item, State::Done));
                    }
                    Some((item, State::Running(run)))
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::transport::MemoryTransport;

    /// `Client::query` is `send` under the Python SDK's name: the same user frame reaches the CLI.
    #[tokio::test]
    async fn query_sends_the_same_user_frame_as_send() {
        let (transport, mut peer) = MemoryTransport::pair(16);
        let connecting = tokio::spawn(Client::connect_with(transport, Options::default()));
        let init = peer.recv_json().await.expect("initialize");
        assert_eq!(init["request"]["subtype"], "initialize");
        peer.send_json(&json!({"type": "control_response", "response": {
            "subtype": "success", "request_id": init["request_id"], "response": {}}}))
            .await
            .expect("reply");
        let client = connecting.await.expect("join").expect("connect");
        client.send("via send").await.expect("send");
        client.query("via query").await.expect("query");
        let sent = peer.recv_json().await.expect("first user frame");
        let queried = peer.recv_json().await.expect("second user frame");
        assert_eq!(sent["type"], "user");
        assert_eq!(queried["type"], "user");
        assert_eq!(sent["message"]["content"], "via send");
        assert_eq!(queried["message"]["content"], "via query");
        drop(client);
    }
}
