//! An in-process transport: two bounded channels, for tests and embedding.
//!
//! [`MemoryTransport::pair`] gives the SDK side (a [`Transport`]) and the other end, a
//! [`MemoryPeer`] that plays the CLI. [`ScriptedCli`] runs a small fake CLI on a peer, so the
//! protocol engine and sessions can be unit-tested without a process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    Connection, ConnectionInfo, FrameReceiver, FrameSender, Received, Termination, Transport,
    TransportMetrics,
};
use crate::error::{Error, Result};

/// The SDK side of an in-process connection.
#[derive(Debug)]
pub struct MemoryTransport {
    to_peer: mpsc::Sender<Bytes>,
    from_peer: mpsc::Receiver<Bytes>,
    termination: Arc<Mutex<Option<Termination>>>,
}

/// The far side of a [`MemoryTransport`]: what a CLI would see.
#[derive(Debug)]
pub struct MemoryPeer {
    /// Frames the SDK sent.
    pub rx: mpsc::Receiver<Bytes>,
    /// Send frames to the SDK.
    pub tx: mpsc::Sender<Bytes>,
    termination: Arc<Mutex<Option<Termination>>>,
}

impl MemoryPeer {
    /// End the connection as a process would: the SDK's receive half ends and reports `t`.
    pub fn finish(self, t: Termination) {
        if let Ok(mut slot) = self.termination.lock() {
            *slot = Some(t);
        }
        drop(self.tx);
    }

    /// Send a JSON value as one frame.
    pub async fn send_json(&self, v: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(v).map_err(|e| Error::decode(b"", e))?;
        self.tx
            .send(Bytes::from(bytes))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Receive the next frame the SDK sent, parsed as JSON (`None` once the SDK ended input).
    pub async fn recv_json(&mut self) -> Option<Value> {
        let frame = self.rx.recv().await?;
        serde_json::from_slice(&frame).ok()
    }
}

impl MemoryTransport {
    /// A connected pair; each direction buffers at most `capacity` frames.
    pub fn pair(capacity: usize) -> (MemoryTransport, MemoryPeer) {
        let (a_tx, a_rx) = mpsc::channel(capacity.max(1));
        let (b_tx, b_rx) = mpsc::channel(capacity.max(1));
        let termination = Arc::new(Mutex::new(None));
        (
            MemoryTransport {
                to_peer: a_tx,
                from_peer: b_rx,
                termination: termination.clone(),
            },
            MemoryPeer {
                rx: a_rx,
                tx: b_tx,
                termination,
            },
        )
    }
}

impl Transport for MemoryTransport {
    type Sender = MemorySender;
    type Receiver = MemoryReceiver;

    async fn connect(self) -> Result<Connection<MemorySender, MemoryReceiver>> {
        let metrics = Arc::new(TransportMetrics::default());
        Ok(Connection {
            sender: MemorySender {
                tx: Some(self.to_peer),
                metrics: metrics.clone(),
            },
            receiver: MemoryReceiver {
                rx: self.from_peer,
                termination: self.termination,
                ended: None,
                metrics: metrics.clone(),
            },
            metrics,
            info: ConnectionInfo {
                description: "memory".to_owned(),
                ..ConnectionInfo::default()
            },
        })
    }
}

/// Sending half of a [`MemoryTransport`].
#[derive(Debug)]
pub struct MemorySender {
    tx: Option<mpsc::Sender<Bytes>>,
    metrics: Arc<TransportMetrics>,
}

impl FrameSender for MemorySender {
    async fn send(&mut self, frame: Bytes) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let len = frame.len();
        tx.send(frame).await.map_err(|_| Error::Closed)?;
        self.metrics.frame_sent(len);
        Ok(())
    }

    async fn end_input(&mut self) -> Result<()> {
        self.tx = None;
        Ok(())
    }

    async fn close(mut self, _grace: Duration) -> Result<()> {
        self.end_input().await
    }
}

/// Receiving half of a [`MemoryTransport`].
#[derive(Debug)]
pub struct MemoryReceiver {
    rx: mpsc::Receiver<Bytes>,
    termination: Arc<Mutex<Option<Termination>>>,
    ended: Option<Termination>,
    metrics: Arc<TransportMetrics>,
}

impl FrameReceiver for MemoryReceiver {
    async fn recv(&mut self) -> Result<Received> {
        if self.ended.is_some() {
            return Ok(Received::End);
        }
        match self.rx.recv().await {
            Some(frame) => {
                self.metrics.frame_received(frame.len());
                Ok(Received::Frame(frame))
            }
            None => {
                let t = self
                    .termination
                    .lock()
                    .ok()
                    .and_then(|mut t| t.take())
                    .unwrap_or_else(Termination::clean);
                self.ended = Some(t);
                Ok(Received::End)
            }
        }
    }

    fn termination(&self) -> Option<Termination> {
        self.ended.clone()
    }
}

/// A fake CLI on a [`MemoryPeer`], for unit tests.
///
/// By default it behaves like the real CLI in SDK mode: it answers `initialize` (and every other
/// control request) with success, and answers each user message with `system/init`, one
/// `assistant` text frame echoing the prompt, and a `result`. [`on_user`](Self::on_user) replaces
/// the turn script.
pub struct ScriptedCli {
    on_user: TurnScript,
}

/// Frames for one user message (`turn` counts from 1).
type TurnScript = Box<dyn FnMut(&Value, u32) -> Vec<Value> + Send>;

impl std::fmt::Debug for ScriptedCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedCli").finish_non_exhaustive()
    }
}

impl Default for ScriptedCli {
    fn default() -> Self {
        Self {
            on_user: Box::new(|user, turn| {
                let text = user["message"]["content"].as_str().unwrap_or("").to_owned();
                vec![
                    system_init(),
                    assistant_text(&format!("echo: {text}")),
                    result_success(turn, 0.001 * f64::from(turn)),
                ]
            }),
        }
    }
}

impl ScriptedCli {
    /// Frames to send for each user message (`turn` counts from 1).
    pub fn on_user(mut self, f: impl FnMut(&Value, u32) -> Vec<Value> + Send + 'static) -> Self {
        self.on_user = Box::new(f);
        self
    }

    /// Run the fake CLI on `peer` until the SDK ends its input.
    pub fn spawn(mut self, mut peer: MemoryPeer) -> tokio::task::JoinHandle<MemoryPeer> {
        tokio::spawn(async move {
            let mut turn = 0;
            while let Some(frame) = peer.recv_json().await {
                match frame["type"].as_str() {
                    Some("control_request") => {
                        let id = frame["request_id"].clone();
                        let reply = json!({"type":"control_response","response":{
                            "subtype":"success","request_id":id,"response":{}}});
                        if peer.send_json(&reply).await.is_err() {
                            break;
                        }
                    }
                    Some("user") => {
                        turn += 1;
                        for out in (self.on_user)(&frame, turn) {
                            if peer.send_json(&out).await.is_err() {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            peer
        })
    }
}

/// A `system/init` frame like the CLI's (trimmed).
pub fn system_init() -> Value {
    json!({"type":"system","subtype":"init","cwd":"/tmp","session_id":"mem-session",
           "tools":[],"mcp_servers":[],"model":"fake","permissionMode":"default",
           "claude_code_version":"2.1.330","uuid":"00000000-0000-0000-0000-000000000001"})
}

/// An `assistant` frame with one text block.
pub fn assistant_text(text: &str) -> Value {
    json!({"type":"assistant","message":{"id":"msg_mem","type":"message","role":"assistant",
           "model":"fake","content":[{"type":"text","text":text}],"stop_reason":null,
           "stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}},
           "parent_tool_use_id":null,"session_id":"mem-session",
           "uuid":"00000000-0000-0000-0000-000000000002"})
}

/// A successful `result` frame for turn `turn` with the cumulative cost `total_cost_usd`.
pub fn result_success(turn: u32, total_cost_usd: f64) -> Value {
    json!({"type":"result","subtype":"success","is_error":false,"duration_ms":1,
           "duration_api_ms":1,"num_turns":turn,"result":"ok","stop_reason":"end_turn",
           "session_id":"mem-session","total_cost_usd":total_cost_usd,
           "usage":{"input_tokens":1,"output_tokens":1},"permission_denials":[],
           "uuid":"00000000-0000-0000-0000-000000000003"})
}
