//! The WebSocket front: `GET /v1/sessions/{id}/stream[?after=N]` (docs/WIRE.md).
//!
//! The gateway sends `{"hello":{…}}`, then each CLI frame as a binary message `seq (u64,
//! big-endian) ++ frame`, `{"in_ack":N}` every [`ACK_EVERY`] client frames, `{"error":{…}}` for a
//! refused client frame (the session goes on) and `{"end":{…}}` when the CLI exits, followed by
//! close 1000. The client sends numbered frames the same way (seq 0: unnumbered), or a JSON
//! object as a text message (unnumbered), and the control messages `{"ack":N}`,
//! `{"end_input":true}` and `{"close":true}`. A text message that is neither a JSON object nor a
//! valid control message, and a binary message shorter than its sequence number, are refused
//! with `bad_frame`. Closes: 1001 gateway shutting down, 1009 message over the limit plus
//! [`WS_MARGIN`] (refused from its frame header, before its payload is read),
//! 4400 bad resume or a gap in client frame numbers, 4409 replaced, 4410 replay too old.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use claude_conduit::transport::relay::wire::{self, ClientControl, ServerText, TextMessage, close};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;

use super::{AppState, no_session};
use crate::auth::TokenId;
use crate::server::WS_MARGIN;
use crate::session::{ACK_EVERY, AttachError, Input, InputError, Outbound, Session};

/// The WebSocket read buffer per connection (tungstenite allocates it up front; client frames
/// are small, and a larger one grows as needed).
const WS_READ_BUFFER: usize = 4 * 1024;

/// Frames sent per look at the ring.
const BATCH: usize = 64;

#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    after: Option<u64>,
}

/// `GET /v1/sessions/{id}/stream`: upgrade and attach.
pub(crate) async fn stream(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    use tracing::Instrument;
    let tp = headers.get(claude_conduit::telemetry::TRACEPARENT_HEADER);
    let span = crate::metrics::request_span("gateway.attach", tp.map(|v| v.as_bytes()));
    let Some(session) = state.manager.get(owner, &id) else {
        return no_session();
    };
    let config = state.manager.config();
    // Room above the frame limit so that a slightly larger frame gets a typed error (and the
    // connection lives on) instead of a protocol close.
    // The WebSocket limits follow the frame limit: a message larger than it plus a small margin
    // is refused from its frame header, before any of it is read (close 1009). Within the margin
    // a slightly larger frame gets a typed error and the connection lives on.
    let limit = config.max_frame_bytes().saturating_add(WS_MARGIN);
    let (interval, timeout) = (config.ping_interval, config.ping_timeout);
    // A small read chunk (tungstenite's default is 128 KiB, allocated and zero-filled per
    // connection): an idle session costs little, and large client frames still pass (the buffer
    // grows while they do). The write side keeps its default: it is not allocated up front.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| {
            client_connection(session, socket, q.after.unwrap_or(0), interval, timeout)
                .instrument(span)
        })
}

fn close_message(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn text(message: &ServerText) -> Message {
    Message::Text(message.to_json().into())
}

/// Why the reader of a connection stopped, when the client must be told.
enum ReaderNotice {
    /// A refused frame: the session goes on.
    Refused(InputError),
    /// Close with this code and reason.
    Close(u16, String),
}

/// One attached client: replay after `after`, then live; client frames and acks the other way.
async fn client_connection(
    session: Arc<Session>,
    socket: WebSocket,
    after: u64,
    ping_interval: Duration,
    ping_timeout: Duration,
) {
    let (mut tx, mut rx) = socket.split();
    let attached = match session.attach(after) {
        Ok(a) => a,
        Err(e) => {
            let (code, reason) = match e {
                AttachError::TooOld { after, oldest } => (
                    close::REPLAY_TOO_OLD,
                    format!("replay too old: after={after}, oldest kept seq={oldest}"),
                ),
                AttachError::Ahead { after, last } => (
                    close::BAD_RESUME,
                    format!("bad resume: after={after} but last seq={last}"),
                ),
            };
            let _ = tx.send(close_message(code, reason)).await;
            return;
        }
    };
    let generation = attached.generation;
    tracing::debug!(session = %session.id(), after, in_seq = attached.in_seq, "client attached");
    let hello = ServerText::Hello(wire::Hello {
        in_seq: attached.in_seq,
        max_frame_bytes: session.max_frame_bytes() as u64,
        session: session.id().to_owned(),
    });
    if tx.send(text(&hello)).await.is_err() {
        session.detach(generation);
        return;
    }
    let mut in_acked = attached.in_seq;
    let started = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));

    // Reader: client frames to the CLI, acks to the ring; refusals go to the writer loop below.
    // Boxed: tokio allocates a channel's slots 32 at a time, and notices are rare (an idle
    // session holds 32 pointers instead of 32 notices).
    let (notice_tx, mut notices) = tokio::sync::mpsc::channel::<Box<ReaderNotice>>(8);
    let reader = {
        let session = session.clone();
        let heard = heard.clone();
        let in_counters = crate::metrics::FrontCounters::new("ws");
        async move {
            loop {
                let msg = match rx.next().await {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        if let Some(reason) = too_big(e) {
                            let _ = notice_tx
                                .send(Box::new(ReaderNotice::Close(close::TOO_BIG, reason)))
                                .await;
                        }
                        break;
                    }
                    None => break,
                };
                heard.store(elapsed_ms(started), Ordering::Relaxed);
                let result = match msg {
                    Message::Binary(b) => match wire::split_numbered(b) {
                        Some((seq, frame)) => {
                            let seq = (seq != 0).then_some(seq);
                            in_counters.received(&session.live, frame.len());
                            session.to_cli(Input::Frame { seq, frame }).await
                        }
                        None => Err(InputError::BadFrame {
                            reason: format!(
                                "a binary message starts with its {}-byte sequence number",
                                wire::SEQ_BYTES
                            ),
                            seq: None,
                        }),
                    },
                    Message::Text(t) => handle_text(&session, t.as_str()).await,
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => Ok(()),
                };
                match result {
                    Ok(()) => {}
                    Err(InputError::Closed) => break,
                    Err(e) if e.is_per_frame() => {
                        if notice_tx
                            .send(Box::new(ReaderNotice::Refused(e)))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = notice_tx
                            .send(Box::new(ReaderNotice::Close(
                                close::BAD_RESUME,
                                e.to_string(),
                            )))
                            .await;
                        break;
                    }
                }
            }
        }
    };
    let mut reader = std::pin::pin!(reader);

    let mut events = session.subscribe();
    let mut cursor = after;
    let mut ping = tokio::time::interval(ping_interval);
    ping.reset();
    let mut reader_done = false;
    let counters = crate::metrics::FrontCounters::new("ws");
    loop {
        events.borrow_and_update();
        let in_seq = session.in_seq();
        if in_seq >= in_acked + ACK_EVERY {
            if tx.send(text(&ServerText::InAck(in_seq))).await.is_err() {
                break;
            }
            in_acked = in_seq;
        }
        // The batch is numbered into one buffer while the ring is locked: one allocation per
        // look at the ring, and the ring's frames are only read.
        let outbound = session.poll_outbound_with(generation, cursor, BATCH, |frames| {
            let size = frames.clone().map(|(_, f)| wire::SEQ_BYTES + f.len()).sum();
            let mut numbered = bytes::BytesMut::with_capacity(size);
            frames
                .map(|(seq, f)| wire::numbered_in(&mut numbered, *seq, f))
                .collect::<Vec<Bytes>>()
        });
        match outbound {
            Outbound::Frames(taken) => {
                counters.sent(&session.live, &taken);
                // Queue the batch, then flush once: one write for many small frames.
                let mut failed = false;
                for message in taken.out {
                    if tx.feed(Message::Binary(message)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || tx.flush().await.is_err() {
                    break;
                }
                cursor = taken.last;
                // Let the reader run between batches (acks free ring space).
                if !reader_done {
                    tokio::select! {
                        biased;
                        () = &mut reader => reader_done = true,
                        () = std::future::ready(()) => {}
                    }
                }
                if reader_done {
                    break;
                }
                continue;
            }
            Outbound::End(end) => {
                let _ = tx.send(text(&ServerText::End(end))).await;
                let _ = tx
                    .send(close_message(close::NORMAL, "session ended".into()))
                    .await;
                break;
            }
            Outbound::ShuttingDown => {
                let reason = "the gateway is shutting down".into();
                let _ = tx.send(close_message(close::GOING_AWAY, reason)).await;
                break;
            }
            Outbound::Replaced => {
                let reason = "replaced by a newer connection".into();
                let _ = tx.send(close_message(close::REPLACED, reason)).await;
                break;
            }
            Outbound::Lost(lost) => {
                let reason = lost.close_reason();
                let _ = tx.send(close_message(close::SESSION_LOST, reason)).await;
                break;
            }
            Outbound::Dropped => break,
            Outbound::Wait => {}
        }
        if reader_done {
            break;
        }
        tokio::select! {
            () = &mut reader => reader_done = true,
            r = events.changed() => if r.is_err() { break },
            Some(notice) = notices.recv() => match *notice {
                ReaderNotice::Refused(e) => {
                    if tx.send(text(&ServerText::Error(e.info()))).await.is_err() {
                        break;
                    }
                }
                ReaderNotice::Close(code, reason) => {
                    let _ = tx.send(close_message(code, reason)).await;
                    break;
                }
            },
            _ = ping.tick() => {
                let silent = elapsed_ms(started).saturating_sub(heard.load(Ordering::Relaxed));
                if silent > u64::try_from((ping_interval + ping_timeout).as_millis()).unwrap_or(u64::MAX) {
                    tracing::debug!(session = %session.id(), "client missed its pong: dropping");
                    break;
                }
                if tx.send(Message::Ping(Bytes::from_static(b"conduit"))).await.is_err() {
                    break;
                }
            }
        }
    }
    // The reader may have stopped on something the loop did not get to: say why before going.
    if let Ok(notice) = notices.try_recv()
        && let ReaderNotice::Close(code, reason) = *notice
    {
        let _ = tx.send(close_message(code, reason)).await;
    }
    session.detach(generation);
    tracing::debug!(session = %session.id(), cursor, "client detached");
}

/// The close reason when `e` is a message over the size limit.
fn too_big(e: axum::Error) -> Option<String> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(c)) => Some(format!(
            "message too big: {c} (the gateway's frame limit, from the hello, plus {WS_MARGIN} bytes)"
        )),
        _ => None,
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A text message: a control message, or an unnumbered frame (a JSON object).
async fn handle_text(session: &Session, text: &str) -> Result<(), InputError> {
    match wire::classify_text(text) {
        TextMessage::Control(ClientControl::Ack(n)) => {
            session.ack(n);
            Ok(())
        }
        TextMessage::Control(ClientControl::EndInput(_)) => session.to_cli(Input::EndInput).await,
        TextMessage::Control(ClientControl::Close(_)) => {
            session.request_close();
            Ok(())
        }
        TextMessage::Frame => {
            let frame = Bytes::copy_from_slice(text.as_bytes());
            session.to_cli(Input::Frame { seq: None, frame }).await
        }
        TextMessage::Bad(reason) => Err(InputError::BadFrame { reason, seq: None }),
    }
}
