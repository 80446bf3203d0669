//! One conformance suite for the gateway's wires, generated per wire by a macro: the same
//! behaviour through the SDK's WebSocket, HTTP and gRPC clients against the real gateway with
//! `mock-claude` (connect and a firehose that needs acks, cut and resume at the transport and at
//! the `Client` level, end of input across a cut, per-frame refusals, auth, health, shutdown).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use claude_conduit::remote::{Remote, SessionRequest};
use claude_conduit::transport::grpc::GrpcTransport;
use claude_conduit::transport::http::HttpTransport;
use claude_conduit::transport::websocket::WebSocketTransport;
use claude_conduit::transport::{
    Connection, FrameReceiver, FrameSender, GatewayTransport, Received, Transport,
};
use claude_conduit::{Client, Error, GatewayErrorKind, Message, Options};
use futures::StreamExt;
use serde_json::Value;

mod support;
use support::*;

/// How the gateway under test runs its sessions: its own CLIs, or workers through Redis
/// (`conduit serve --redis`).
trait Deployment {
    async fn start(config: claude_conduit_gateway::GatewayConfig) -> Running;
}

/// The gateway runs the CLIs.
struct Local;
impl Deployment for Local {
    async fn start(config: claude_conduit_gateway::GatewayConfig) -> Running {
        start(config).await
    }
}

/// A real redis-server and a worker run them (docs/SCALE.md).
struct ThroughRedis;
impl Deployment for ThroughRedis {
    async fn start(config: claude_conduit_gateway::GatewayConfig) -> Running {
        start_scaled(config).await
    }
}

/// The SDK transports, opened the same way.
trait Wire: Transport + Sized + std::fmt::Debug {
    /// `scheme://addr` of `gw` for this wire.
    fn url(gw: &Running) -> String;
    async fn open(remote: &Remote) -> claude_conduit::Result<Self>;
}

impl Wire for WebSocketTransport {
    fn url(gw: &Running) -> String {
        format!("ws://{}", gw.addr)
    }
    async fn open(remote: &Remote) -> claude_conduit::Result<Self> {
        Self::open_session(remote, &SessionRequest::default()).await
    }
}

impl Wire for HttpTransport {
    fn url(gw: &Running) -> String {
        format!("http://{}", gw.addr)
    }
    async fn open(remote: &Remote) -> claude_conduit::Result<Self> {
        Self::open_session(remote, &SessionRequest::default()).await
    }
}

impl Wire for GrpcTransport {
    fn url(gw: &Running) -> String {
        gw.grpc_url()
    }
    async fn open(remote: &Remote) -> claude_conduit::Result<Self> {
        Self::open_session(remote, &SessionRequest::default()).await
    }
}

const USER: &[u8] = br#"{"type":"user","message":{"role":"user","content":"go"},"parent_tool_use_id":null,"session_id":"default"}"#;

/// The one session of `TOKEN` on `gw`.
fn session_id(gw: &Running) -> String {
    gw.only_session().id
}

/// Receive until the stream ends: the frames' `type`s, per-frame errors, and the end.
async fn drain<R: FrameReceiver>(
    rx: &mut R,
    mut on_frame: impl FnMut(usize),
) -> (Vec<String>, Vec<Error>, claude_conduit::Result<()>) {
    let mut types = Vec::new();
    let mut refusals = Vec::new();
    let end = loop {
        match tokio::time::timeout(T, rx.recv()).await.expect("in time") {
            Ok(Received::Frame(frame)) => {
                let v: Value = serde_json::from_slice(&frame).expect("a JSON frame");
                types.push(v["type"].as_str().unwrap_or_default().to_owned());
                on_frame(types.len());
            }
            Ok(Received::Bad(e)) => refusals.push(e),
            Ok(Received::End) => break Ok(()),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break Err(e),
        }
    };
    (types, refusals, end)
}

/// A connection to a new session of `TOKEN` on `gw` over `W`.
async fn connected<W: Wire>(gw: &Running) -> Connection<W::Sender, W::Receiver> {
    let remote = Remote::parse(&W::url(gw), TOKEN).unwrap();
    W::open(&remote)
        .await
        .expect("open")
        .connect()
        .await
        .expect("connect")
}

/// A gateway whose turns are long enough to cut in the middle (300 messages 2 ms apart),
/// through a replay ring of 64.
async fn long_turns<D: Deployment>() -> Running {
    D::start(
        config(&[
            ("MOCK_CLAUDE_MESSAGES", "300"),
            ("MOCK_CLAUDE_DELAY_MS", "2"),
        ])
        .replay_frames(64),
    )
    .await
}

/// Every assistant message of mock-claude's turn of `n`, then its result.
fn assert_turn(types: &[String], n: usize) {
    let assistants = types.iter().filter(|t| *t == "assistant").count();
    assert_eq!(assistants, n, "{types:?}");
    assert_eq!(
        types.last().map(String::as_str),
        Some("result"),
        "{types:?}"
    );
}

/// A long turn through a small replay ring: it only completes if the client acks.
async fn firehose<W: Wire, D: Deployment>() {
    let gw = D::start(config(&[("MOCK_CLAUDE_MESSAGES", "2000")]).replay_frames(64)).await;
    let conn = connected::<W>(&gw).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (types, refusals, end) = drain(&mut rx, |_| {}).await;
    end.expect("a clean end");
    assert!(refusals.is_empty(), "{refusals:?}");
    assert_turn(&types, 2000);
    assert_eq!(rx.termination().and_then(|t| t.code), Some(0));
    gw.shutdown().await;
}

/// The connection is cut twice mid-turn: every frame arrives once, in order.
async fn cut_and_resume<W: Wire, D: Deployment>() {
    let gw = long_turns::<D>().await;
    let conn = connected::<W>(&gw).await;
    let metrics = conn.metrics.clone();
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    let id = session_id(&gw);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (types, _, end) = drain(&mut rx, |n| {
        if n == 40 || n == 160 {
            assert!(gw.manager.kick(&id));
        }
    })
    .await;
    end.expect("a clean end");
    assert_turn(&types, 300);
    assert!(metrics.snapshot().reconnects >= 1);
    gw.shutdown().await;
}

/// A whole SDK session (`Client::connect` with the wire's URL) cut twice mid-turn: every
/// assistant message arrives once, in order, and the session answers the next turn.
async fn client_session_across_cuts<W: Wire>() {
    let gw = long_turns::<Local>().await;
    let options = Options::builder().transport(W::url(&gw), TOKEN).build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("connect");
    let id = session_id(&gw);
    client.send("go").await.expect("send");
    let mut stream = client.receive_response();
    let mut items = Vec::new();
    let mut kicks = 0;
    let consume = async {
        while let Some(m) = stream.next().await {
            let m = m.expect("no errors");
            if m.as_assistant().is_some() && [30, 150].contains(&assistant_seqs(&items).len()) {
                assert!(gw.manager.kick(&id));
                kicks += 1;
            }
            items.push(m);
        }
    };
    tokio::time::timeout(T, consume).await.expect("in time");
    drop(stream);
    assert_eq!(kicks, 2);
    let seqs = assistant_seqs(&items);
    assert_eq!(seqs.len(), 300);
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "order or duplicates"
    );
    assert!(items.last().and_then(Message::as_result).is_some());
    let m = client.metrics().snapshot();
    assert!(m.reconnects >= 1, "{m:?}");
    let items = turn(&client, "again").await;
    assert_eq!(assistant_seqs(&items).len(), 300);
    assert!(items.last().and_then(Message::as_result).is_some());
    client.disconnect().await.expect("disconnect");
    gw.shutdown().await;
}

/// The gateway's health, through the wire's own check (no token needed).
async fn health<W: Wire + GatewayTransport>() {
    let gw = start(config(&[])).await;
    let anonymous = Remote::parse(&W::url(&gw), "").unwrap();
    W::health(&anonymous).await.expect("healthy");
    gw.shutdown().await;
    let e = W::health(&anonymous).await.expect_err("nobody there");
    assert_eq!(e.gateway_kind(), Some(GatewayErrorKind::Unavailable), "{e}");
}

/// End of input asked for while the connection is down still reaches the CLI (once): it
/// finishes its turn and exits 0.
async fn end_of_input_across_a_cut<W: Wire, D: Deployment>() {
    let gw = D::start(config(&[("MOCK_CLAUDE_MESSAGES", "5")])).await;
    let conn = connected::<W>(&gw).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    let id = session_id(&gw);
    tx.send(Bytes::from_static(USER)).await.unwrap();
    assert!(gw.manager.kick(&id));
    tx.end_input().await.unwrap();
    let (types, _, end) = drain(&mut rx, |_| {}).await;
    end.expect("a clean end");
    assert_turn(&types, 5);
    assert_eq!(rx.termination().and_then(|t| t.code), Some(0));
    gw.shutdown().await;
}

/// A frame that is not a JSON object is refused with a typed error and never reaches the CLI;
/// the session goes on.
async fn refusals<W: Wire, D: Deployment>() {
    let gw = D::start(config(&[("MOCK_CLAUDE_MESSAGES", "3")])).await;
    let conn = connected::<W>(&gw).await;
    let (mut tx, mut rx) = (conn.sender, conn.receiver);
    tx.send(Bytes::from_static(b"[1,2,3]")).await.unwrap();
    tx.send(Bytes::from_static(USER)).await.unwrap();
    tx.end_input().await.unwrap();
    let (types, refusals, end) = drain(&mut rx, |_| {}).await;
    end.expect("a clean end");
    assert_turn(&types, 3);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].gateway_kind(), Some(GatewayErrorKind::BadFrame));
    assert!(refusals[0].is_frame_error());
    assert_eq!(rx.termination().and_then(|t| t.code), Some(0));
    gw.shutdown().await;
}

/// A bad token is a typed `Unauthorized`; another token's session does not exist.
async fn auth<W: Wire, D: Deployment>() {
    let gw = D::start(config(&[])).await;
    let bad = Remote::parse(&W::url(&gw), "not-a-token").unwrap();
    let e = W::open(&bad).await.expect_err("refused");
    assert_eq!(
        e.gateway_kind(),
        Some(GatewayErrorKind::Unauthorized),
        "{e}"
    );
    gw.shutdown().await;
}

/// Gateway shutdown is not a normal end: the client gets `Unavailable` once it cannot come back.
async fn shutdown<W: Wire, D: Deployment>() {
    let gw = D::start(config(&[])).await;
    let conn = connected::<W>(&gw).await;
    let mut rx = conn.receiver;
    gw.shutdown().await;
    let (_, _, end) = drain(&mut rx, |_| {}).await;
    let e = end.expect_err("not a clean end");
    assert_eq!(e.gateway_kind(), Some(GatewayErrorKind::Unavailable), "{e}");
}

macro_rules! conformance {
    ($($wire:ident: $transport:ty, $deployment:ty),* $(,)?) => {$(
        mod $wire {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn firehose_needs_acks_and_arrives_whole() {
                firehose::<$transport, $deployment>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cut_and_resume_delivers_every_frame_once_in_order() {
                cut_and_resume::<$transport, $deployment>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_client_session_survives_cuts_and_answers_again() {
                client_session_across_cuts::<$transport>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn health_needs_no_token() {
                health::<$transport>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn end_of_input_survives_a_cut() {
                end_of_input_across_a_cut::<$transport, $deployment>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_bad_frame_is_refused_and_the_session_goes_on() {
                refusals::<$transport, $deployment>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_bad_token_is_unauthorized() {
                auth::<$transport, $deployment>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shutdown_is_unavailable() {
                shutdown::<$transport, $deployment>().await;
            }
        }
    )*};
}

conformance! {
    websocket: WebSocketTransport, Local,
    http: HttpTransport, Local,
    grpc: GrpcTransport, Local,
    redis_websocket: WebSocketTransport, ThroughRedis,
    redis_http: HttpTransport, ThroughRedis,
    redis_grpc: GrpcTransport, ThroughRedis,
}
