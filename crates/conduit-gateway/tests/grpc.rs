//! The gateway's gRPC front on 127.0.0.1 (port 0), with `mock-claude` as the CLI: the raw
//! service (auth, session calls, stream statuses, refusals) and the SDK's `GrpcTransport`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use claude_conduit::transport::GatewayTransport;
use claude_conduit::transport::grpc::GrpcTransport;
use claude_conduit::transport::{FrameReceiver, FrameSender, Received, Transport};
use claude_conduit::{Client, Error, Message, Options};
use claude_conduit_proto::ConduitClient;
use claude_conduit_proto::v1::{self, client_message, server_message};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

mod support;
use support::*;

async fn raw_client(addr: SocketAddr) -> ConduitClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    ConduitClient::new(channel)
}

/// A request with `authorization: <header>` (`None`: no header).
fn req<M>(message: M, header: Option<&str>) -> Request<M> {
    let mut r = Request::new(message);
    if let Some(h) = header {
        r.metadata_mut().insert("authorization", h.parse().unwrap());
    }
    r
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn msg(m: client_message::Msg) -> v1::ClientMessage {
    v1::ClientMessage { msg: Some(m) }
}

fn attach(id: &str, after: u64) -> v1::ClientMessage {
    msg(client_message::Msg::Attach(v1::Attach {
        session_id: id.to_owned(),
        after,
    }))
}

fn frame(seq: u64, data: impl Into<Bytes>) -> v1::ClientMessage {
    msg(client_message::Msg::Frame(v1::Frame {
        seq,
        data: data.into(),
    }))
}

fn user_frame(text: &str) -> Bytes {
    serde_json::json!({"type":"user","message":{"role":"user","content":text},
                       "parent_tool_use_id":null,"session_id":""})
    .to_string()
    .into()
}

/// Open a raw `Stream` call whose first message is `first`.
async fn raw_stream(
    client: &mut ConduitClient<Channel>,
    header: Option<&str>,
    first: v1::ClientMessage,
) -> (
    mpsc::Sender<v1::ClientMessage>,
    Result<Streaming<v1::ServerMessage>, Status>,
) {
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.unwrap();
    let result = tokio::time::timeout(T, client.stream(req(ReceiverStream::new(rx), header)))
        .await
        .expect("in time")
        .map(tonic::Response::into_inner);
    (tx, result)
}

async fn next(rx: &mut Streaming<v1::ServerMessage>) -> server_message::Msg {
    tokio::time::timeout(T, rx.message())
        .await
        .expect("in time")
        .expect("no error")
        .expect("a message")
        .msg
        .expect("a known message")
}

fn process_gone(pid: u32) -> bool {
    // Gone means reaped too: a zombie still has its /proc entry.
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_gone(pid: u32) {
    for _ in 0..100 {
        if process_gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CLI process {pid} still exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_a_valid_bearer_token() {
    let gw = start(config(&[])).await;
    let mut c = raw_client(gw.grpc()).await;
    let wrong = [
        None,
        Some("Bearer wrong".to_owned()),
        Some("Bearer test-token-".to_owned()),
        Some(TOKEN.to_owned()),
    ];
    for header in &wrong {
        let h = header.as_deref();
        let create = c
            .create_session(req(v1::CreateSessionRequest::default(), h))
            .await;
        assert_eq!(create.unwrap_err().code(), Code::Unauthenticated, "{h:?}");
        let list = c.list_sessions(req(v1::ListSessionsRequest {}, h)).await;
        assert_eq!(list.unwrap_err().code(), Code::Unauthenticated);
        let id = v1::SessionId { id: "x".into() };
        let get = c.get_session(req(id.clone(), h)).await;
        assert_eq!(get.unwrap_err().code(), Code::Unauthenticated);
        let close = c.close_session(req(id, h)).await;
        assert_eq!(close.unwrap_err().code(), Code::Unauthenticated);
        let (_tx, stream) = raw_stream(&mut c, h, attach("x", 0)).await;
        assert_eq!(stream.unwrap_err().code(), Code::Unauthenticated);
    }
    assert!(gw.manager.is_empty());
    // The right token: an empty list.
    let list = c
        .list_sessions(req(v1::ListSessionsRequest {}, Some(&bearer(TOKEN))))
        .await
        .expect("list")
        .into_inner();
    assert!(list.sessions.is_empty());
    // The SDK with a wrong token: a clear error, no session.
    let wrong = Options::builder()
        .transport(gw.grpc_url(), "wrong-token")
        .build();
    let Err(err) = tokio::time::timeout(T, Client::connect(wrong))
        .await
        .expect("in time")
    else {
        panic!("a wrong token is refused")
    };
    assert_eq!(
        err.gateway_kind(),
        Some(claude_conduit::GatewayErrorKind::Unauthorized),
        "{err}"
    );
    assert!(gw.manager.is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_get_close_and_the_cli_is_gone() {
    let gw = start(config(&[]).max_sessions_per_token(2)).await;
    let mut c = raw_client(gw.grpc()).await;
    let (me, other) = (bearer(TOKEN), bearer(OTHER));
    let info = c
        .create_session(req(v1::CreateSessionRequest::default(), Some(&me)))
        .await
        .expect("create")
        .into_inner();
    let pid = info.pid.expect("pid");
    assert!(!process_gone(pid));
    assert!(!info.ended);

    let list = c
        .list_sessions(req(v1::ListSessionsRequest {}, Some(&me)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 1);
    assert_eq!(list.sessions[0].id, info.id);
    // Another token sees nothing of it.
    let theirs = c
        .list_sessions(req(v1::ListSessionsRequest {}, Some(&other)))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.sessions.is_empty());
    let id = v1::SessionId {
        id: info.id.clone(),
    };
    let status = c.get_session(req(id.clone(), Some(&other))).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    let got = c
        .get_session(req(id.clone(), Some(&me)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.pid, Some(pid));
    assert!(!got.attached);

    let status = c.close_session(req(id.clone(), Some(&other))).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    c.close_session(req(id.clone(), Some(&me)))
        .await
        .expect("close");
    wait_gone(pid).await;
    let status = c.get_session(req(id.clone(), Some(&me))).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    let status = c.close_session(req(id, Some(&me))).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);

    // Refused options and the per-token limit map to their status codes.
    let bad = v1::CreateSessionRequest {
        args: vec!["model=x".into()],
        cwd: None,
    };
    let status = c.create_session(req(bad, Some(&me))).await;
    assert_eq!(status.unwrap_err().code(), Code::InvalidArgument);
    for _ in 0..2 {
        c.create_session(req(v1::CreateSessionRequest::default(), Some(&me)))
            .await
            .expect("create");
    }
    let status = c
        .create_session(req(v1::CreateSessionRequest::default(), Some(&me)))
        .await;
    assert_eq!(status.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!(gw.manager.len(), 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sdk_session_runs_over_grpc() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "100")])).await;
    let options = Options::builder().transport(gw.grpc_url(), TOKEN).build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("create + connect + initialize over gRPC");
    assert_eq!(client.cli_version(), Some("2.1.330"));
    for turn in 0..2 {
        client.send("hello").await.expect("send");
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .expect("turn in time")
                .into_iter()
                .map(|m| m.expect("no errors"))
                .collect();
        let seqs = assistant_seqs(&items);
        assert_eq!(seqs.len(), 100, "turn {turn}");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "order");
        let result = items
            .last()
            .and_then(Message::as_result)
            .expect("result last");
        assert!(!result.is_error);
    }
    let m = client.metrics().snapshot();
    assert!(m.frames_received >= 204, "{m:?}");
    assert_eq!(m.reconnects, 0);
    let info = gw.only_session();
    assert!(info.attached);
    let pid = info.pid.unwrap();
    let t = tokio::time::timeout(T, client.disconnect())
        .await
        .expect("disconnect in time")
        .expect("disconnect");
    assert_eq!(t.and_then(|t| t.code), Some(0));
    wait_gone(pid).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_client_frame_is_refused_and_the_session_goes_on() {
    const LIMIT: usize = 64 * 1024;
    let gw = start(config(&[]).max_frame_bytes_limit(LIMIT)).await;
    let options = Options::builder().transport(gw.grpc_url(), TOKEN).build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("connect");
    let big = "x".repeat(LIMIT + 10);
    match client.send(big.as_str()).await {
        Err(Error::FrameTooLarge { limit, size }) => {
            assert_eq!(limit, LIMIT);
            assert!(size > LIMIT);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let items = turn(&client, "hello").await;
    let result = items.last().and_then(Message::as_result).expect("result");
    assert!(!result.is_error);
    client.disconnect().await.expect("disconnect");

    // The gateway's own refusal (a client that does not check): `Refused`, numbered, and the
    // next frame is answered.
    let mut c = raw_client(gw.grpc()).await;
    let me = bearer(TOKEN);
    let info = c
        .create_session(req(v1::CreateSessionRequest::default(), Some(&me)))
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = raw_stream(&mut c, Some(&me), attach(&info.id, 0)).await;
    let mut rx = rx.expect("stream");
    let server_message::Msg::Hello(hello) = next(&mut rx).await else {
        panic!("hello first")
    };
    assert_eq!(hello.max_frame_bytes, LIMIT as u64);
    assert_eq!(hello.in_seq, 0);
    tx.send(frame(1, vec![b'x'; LIMIT + 1])).await.unwrap();
    let server_message::Msg::Refused(refused) = next(&mut rx).await else {
        panic!("a refusal")
    };
    assert_eq!(refused.kind, "frame_too_large");
    assert_eq!(
        (refused.limit, refused.size, refused.seq),
        (LIMIT as u64, LIMIT as u64 + 1, 1)
    );
    tx.send(frame(2, user_frame("hi"))).await.unwrap();
    let mut seq = 0;
    loop {
        match next(&mut rx).await {
            server_message::Msg::Frame(f) => {
                assert_eq!(f.seq, seq + 1);
                seq = f.seq;
                let v: serde_json::Value = serde_json::from_slice(&f.data).expect("verbatim JSON");
                if v["type"] == "result" {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // The transport alone: refused locally (limit known from the hello) or by the gateway (a
    // per-frame error on the receiver); either way the stream goes on.
    drop((tx, rx));
    let request = claude_conduit::remote::SessionRequest::default();
    let id = GrpcTransport::create_session(&gw.grpc_remote(), &request)
        .await
        .expect("create");
    let transport = GrpcTransport::new(&gw.grpc_remote(), id);
    let mut conn = tokio::time::timeout(T, transport.connect())
        .await
        .expect("in time")
        .expect("connect");
    match conn.sender.send(Bytes::from(vec![b'x'; LIMIT + 1])).await {
        Err(Error::FrameTooLarge { limit, .. }) => assert_eq!(limit, LIMIT),
        Ok(()) => loop {
            let item = tokio::time::timeout(T, conn.receiver.recv())
                .await
                .expect("in time")
                .expect("no transport error");
            match item {
                Received::Frame(_) => {} // A frame of the CLI's before the refusal.
                Received::Bad(Error::FrameTooLarge { limit, size }) => {
                    assert_eq!((limit, size), (LIMIT, LIMIT + 1));
                    break;
                }
                other => panic!("{other:?}"),
            }
        },
        Err(e) => panic!("{e}"),
    }
    conn.sender.send(user_frame("again")).await.expect("send");
    let mut saw_result = false;
    while !saw_result {
        let f = tokio::time::timeout(T, conn.receiver.recv())
            .await
            .expect("in time")
            .expect("no transport error")
            .frame()
            .expect("a frame");
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap();
        saw_result = v["type"] == "result";
    }
    drop(conn);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_statuses_say_what_went_wrong() {
    let gw = start(config(&[]).replay_frames(64)).await;
    let mut c = raw_client(gw.grpc()).await;
    let me = bearer(TOKEN);
    let (_tx, r) = raw_stream(&mut c, Some(&me), attach("no-such-session", 0)).await;
    assert_eq!(r.unwrap_err().code(), Code::NotFound);
    let info = c
        .create_session(req(v1::CreateSessionRequest::default(), Some(&me)))
        .await
        .unwrap()
        .into_inner();
    // Another token's session does not exist for us.
    let (_tx, r) = raw_stream(&mut c, Some(&bearer(OTHER)), attach(&info.id, 0)).await;
    assert_eq!(r.unwrap_err().code(), Code::NotFound);
    // The first message must be an attach.
    let (_tx, r) = raw_stream(&mut c, Some(&me), frame(1, user_frame("hi"))).await;
    assert_eq!(r.unwrap_err().code(), Code::InvalidArgument);
    // `after` ahead of the stream.
    let (_tx, r) = raw_stream(&mut c, Some(&me), attach(&info.id, 10_000)).await;
    assert_eq!(r.unwrap_err().code(), Code::InvalidArgument);
    // A newer stream takes the session over: the older one ends with ABORTED.
    let (_tx1, r1) = raw_stream(&mut c, Some(&me), attach(&info.id, 0)).await;
    let mut first = r1.expect("first stream");
    assert!(matches!(
        next(&mut first).await,
        server_message::Msg::Hello(_)
    ));
    let (_tx2, r2) = raw_stream(&mut c, Some(&me), attach(&info.id, 0)).await;
    let mut second = r2.expect("second stream");
    assert!(matches!(
        next(&mut second).await,
        server_message::Msg::Hello(_)
    ));
    let status = tokio::time::timeout(T, first.message())
        .await
        .expect("in time")
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    // A client frame number that skips ahead.
    _tx2.send(frame(5, user_frame("hi"))).await.unwrap();
    let status = loop {
        match tokio::time::timeout(T, second.message())
            .await
            .expect("in time")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_shutdown_ends_streams_and_leaves_no_cli_behind() {
    let gw = start(config(&[])).await;
    let mut c = raw_client(gw.grpc()).await;
    let mut pids = Vec::new();
    let mut ids = Vec::new();
    for token in [TOKEN, TOKEN, OTHER] {
        let info = c
            .create_session(req(
                v1::CreateSessionRequest::default(),
                Some(&bearer(token)),
            ))
            .await
            .expect("create")
            .into_inner();
        pids.push(info.pid.unwrap());
        ids.push(info.id);
    }
    // A connected SDK transport is told the gateway went away (`UNAVAILABLE`), not that its
    // session ended; it cannot come back.
    let transport = GrpcTransport::new(&gw.grpc_remote(), ids[0].clone());
    let mut conn = tokio::time::timeout(T, transport.connect())
        .await
        .expect("in time")
        .expect("connect");
    let grpc = gw.grpc();
    gw.shutdown().await;
    for pid in pids {
        wait_gone(pid).await;
    }
    let end = tokio::time::timeout(T, conn.receiver.recv())
        .await
        .expect("in time");
    let e = end.expect_err("not a normal end");
    assert_eq!(
        e.gateway_kind(),
        Some(claude_conduit::GatewayErrorKind::Unavailable),
        "{e}"
    );
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
}

/// Read frames until `results` results have passed; returns the last seq seen.
async fn read_results(rx: &mut Streaming<v1::ServerMessage>, mut last: u64, results: usize) -> u64 {
    let mut seen = 0;
    while seen < results {
        match next(rx).await {
            server_message::Msg::Frame(f) => {
                assert_eq!(f.seq, last + 1);
                last = f.seq;
                let v: serde_json::Value = serde_json::from_slice(&f.data).unwrap();
                if v["type"] == "result" {
                    seen += 1;
                }
            }
            server_message::Msg::InAck(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_frames_resent_after_a_drop_reach_the_cli_exactly_once() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "1")])).await;
    let mut c = raw_client(gw.grpc()).await;
    let me = bearer(TOKEN);
    let info = c
        .create_session(req(v1::CreateSessionRequest::default(), Some(&me)))
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = raw_stream(&mut c, Some(&me), attach(&info.id, 0)).await;
    let mut rx = rx.expect("stream");
    let server_message::Msg::Hello(hello) = next(&mut rx).await else {
        panic!("hello first")
    };
    assert_eq!(hello.in_seq, 0);
    tx.send(frame(1, user_frame("one"))).await.unwrap();
    tx.send(frame(2, user_frame("two"))).await.unwrap();
    let last = read_results(&mut rx, 0, 2).await;
    drop((tx, rx));

    // The new stream learns the gateway has frames up to 2. A client that does not know (its
    // frame was in flight when the stream died) resends 2: skipped, not run twice.
    let (tx, rx) = raw_stream(&mut c, Some(&me), attach(&info.id, last)).await;
    let mut rx = rx.expect("stream");
    let server_message::Msg::Hello(hello) = next(&mut rx).await else {
        panic!("hello first")
    };
    assert_eq!(hello.in_seq, 2);
    tx.send(frame(2, user_frame("two again"))).await.unwrap();
    tx.send(frame(3, user_frame("three"))).await.unwrap();
    tx.send(msg(client_message::Msg::EndInput(v1::EndInput {})))
        .await
        .unwrap();
    // Exactly one more turn (for 3), then the CLI ends on end of input.
    let last = read_results(&mut rx, last, 1).await;
    let mut tail = Vec::new();
    loop {
        match next(&mut rx).await {
            server_message::Msg::Frame(f) => {
                tail.push(serde_json::from_slice::<serde_json::Value>(&f.data).unwrap());
            }
            server_message::Msg::End(end) => {
                assert_eq!(end.code, Some(0), "{end:?}");
                break;
            }
            _ => {}
        }
    }
    assert!(
        tail.iter().all(|v| v["type"] != "result"),
        "a duplicate ran: {tail:?}"
    );
    // After `End` the stream ends with status OK.
    let after_end = tokio::time::timeout(T, rx.message())
        .await
        .expect("in time");
    assert!(matches!(after_end, Ok(None)), "{after_end:?}");
    assert!(gw.only_session().last_seq >= last);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_sent_while_the_stream_is_being_dropped_each_run_once() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "3")])).await;
    let options = Options::builder().transport(gw.grpc_url(), TOKEN).build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("connect");
    let id = gw.only_session().id;
    for turn in 0..8 {
        // Drop the stream from the server side, then send at once: the prompt may go into the
        // dying stream; the transport resends what the gateway did not accept.
        assert!(gw.manager.kick(&id));
        client.send(format!("turn {turn}")).await.expect("send");
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .expect("turn in time")
                .into_iter()
                .map(|m| m.expect("no errors"))
                .collect();
        assert_eq!(assistant_seqs(&items).len(), 3, "turn {turn}");
        assert_eq!(items.iter().filter(|m| m.is_result()).count(), 1);
    }
    let m = client.metrics().snapshot();
    assert!(m.reconnects >= 1, "{m:?}");
    // Exactly 8 turns ran in the CLI: no prompt was lost or doubled.
    client.end_input().await.expect("end input");
    let rest: Vec<_> = tokio::time::timeout(T, client.receive_messages().collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(
        rest.iter()
            .all(|m| !m.as_ref().is_ok_and(|m| m.is_result())),
        "an extra turn ran: {rest:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_process_share_connections_32_to_one() {
    let gw = start(config(&[("MOCK_CLAUDE_MESSAGES", "3")]).max_sessions_per_token(64)).await;
    let port = gw.grpc().port();
    let options = Options::builder().transport(gw.grpc_url(), TOKEN).build();
    let clients: Vec<Client> = futures::future::join_all(
        (0..40).map(|_| tokio::time::timeout(T, Client::connect(options.clone()))),
    )
    .await
    .into_iter()
    .map(|c| c.expect("in time").expect("connect"))
    .collect();
    // 40 sessions: one connection carries 32 of them, a second the other 8.
    assert_eq!(connections_to(port), 2);
    // Every session works over its shared connection, all at once.
    let turns = futures::future::join_all(clients.iter().map(|c| turn(c, "hello"))).await;
    for items in &turns {
        assert_eq!(assistant_seqs(items).len(), 3);
        assert!(items.last().and_then(Message::as_result).is_some());
    }
    assert_eq!(connections_to(port), 2);
    // Sessions that are gone give their share back: a connection nobody uses is let go, but
    // the last one stays for the next session.
    drop(turns);
    for c in clients {
        c.disconnect().await.expect("disconnect");
    }
    eventually("one connection left", || connections_to(port) == 1).await;
    let next = tokio::time::timeout(T, Client::connect(options.clone()))
        .await
        .expect("in time")
        .expect("connect");
    assert_eq!(connections_to(port), 1);
    let items = turn(&next, "again").await;
    assert_eq!(assistant_seqs(&items).len(), 3);
    // Another token's session may share the connection: every call carries its own token.
    let other = Options::builder().transport(gw.grpc_url(), OTHER).build();
    let theirs = tokio::time::timeout(T, Client::connect(other))
        .await
        .expect("in time")
        .expect("connect");
    assert_eq!(connections_to(port), 1);
    let theirs_listed = gw.manager.list(claude_conduit_gateway::auth::TokenId(1));
    assert_eq!(theirs_listed.len(), 1);
    assert!(
        gw.manager
            .list(claude_conduit_gateway::auth::TokenId(0))
            .iter()
            .all(|s| s.id != theirs_listed[0].id),
        "the other token's session is its own"
    );
    drop(theirs);
    drop(next);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_stops_reading_does_not_hold_up_its_connection() {
    // 600 x 32 KiB per turn: far more than the reader's buffers and a stream's window.
    let gw = start(config(&[
        ("MOCK_CLAUDE_MESSAGES", "600"),
        ("MOCK_CLAUDE_TEXT_BYTES", "32768"),
    ]))
    .await;
    let port = gw.grpc().port();
    let options = Options::builder().transport(gw.grpc_url(), TOKEN).build();
    let stalled = tokio::time::timeout(T, Client::connect(options.clone()))
        .await
        .expect("in time")
        .expect("connect");
    let busy = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("connect");
    assert_eq!(
        connections_to(port),
        1,
        "the two sessions share a connection"
    );
    // The first session's turn runs, and nobody reads it: its stream fills up and stops.
    stalled.send("hello").await.expect("send");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The second session's turn, on the same connection, still comes through whole.
    let items = turn(&busy, "hello").await;
    let seqs = assistant_seqs(&items);
    assert_eq!(seqs.len(), 600);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "order");
    // And the first one loses nothing by having waited.
    let seqs = assistant_seqs(&response(&stalled).await);
    assert_eq!(seqs.len(), 600);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "order");
    drop((stalled, busy));
    gw.shutdown().await;
}
