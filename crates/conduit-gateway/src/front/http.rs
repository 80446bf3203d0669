//! The plain-HTTP front: frames in with `POST`, frames out as server-sent events, for clients
//! that cannot hold a WebSocket.
//!
//! | route | body / headers | reply |
//! |---|---|---|
//! | `GET /v1/sessions/{id}/events[?after=N]` | `Last-Event-ID: N` resumes like `after` (and wins over it) | `200 text/event-stream`, see below; `410` resume older than the replay ring, `400` resume ahead of the stream |
//! | `POST /v1/sessions/{id}/frames` | JSON lines, one frame per line; optional `Conduit-Seq: N` numbers the first line `N`, the next `N+1`, … | `200 {"accepted":k,"skipped":d,"in_seq":M}` |
//! | `POST /v1/sessions/{id}/ack` | `{"ack":N}` (or `?ack=N`) | `204`: frames up to `N` were received |
//! | `POST /v1/sessions/{id}/end_input` | — | `204`: the CLI's stdin is closed |
//! | `DELETE /v1/sessions/{id}` | — | `204`: close the CLI (see [`crate::server`]); the event stream then ends with `end` |
//!
//! Every route needs the bearer token, like every `/v1` route; an unknown session (or another
//! token's) is `404`.
//!
//! # The event stream
//!
//! Attaching works as for the WebSocket (one client at a time: a newer attach, over either front,
//! replaces the older). The stream is
//!
//! ```text
//! event: hello
//! data: {"session":"…","in_seq":3,"max_frame_bytes":268435456}
//!
//! id: 1
//! data: {"type":"system",…}
//!
//! id: 2
//! data: {"type":"assistant",…}
//!
//! : ping
//!
//! event: end
//! data: {"code":0,"signal":null,"stderr_tail":""}
//! ```
//!
//! * `hello` comes first: `in_seq` is the highest client frame sequence number the session has
//!   accepted (resend what you numbered after it), `max_frame_bytes` the frame-size limit.
//! * Each CLI frame is one event whose `id` is the frame's sequence number (1, 2, 3, …), verbatim
//!   in `data`. CLI frames are single lines; should a frame hold a `\r` or `\n`, it is split into
//!   several `data:` lines as the SSE spec says (a reader joins them with `\n`).
//! * `end` carries how the CLI ended; the stream then closes. `error` with `{"kind":"replaced"}`
//!   means a newer connection took the session over (do not reconnect). A stream that stops
//!   without either was dropped: reconnect with `Last-Event-ID` (or `?after=`) set to the last id
//!   seen, and frames after it are replayed.
//! * A `: ping` comment every ping interval (20 s by default) keeps proxies and dead-peer
//!   detection happy.
//!
//! The client cannot ack on the stream itself: it must `POST …/ack` at least every
//! [`ACK_EVERY`](crate::session::ACK_EVERY) frames, because the replay ring waits for acks when
//! it is full (backpressure: the CLI is not read until the client catches up). A resume's `after`
//! counts as an ack.
//!
//! # Frames in
//!
//! The `POST …/frames` body is read as it streams, one frame per non-blank line (`\r\n` endings
//! are tolerated), so a body may carry any number of frames and memory stays bounded by one
//! frame. With `Conduit-Seq: N`, lines are numbered `N, N+1, …`: frames numbered at or below the
//! session's `in_seq` were accepted before and are skipped (a client can always resend what it
//! is not sure of), a number beyond `in_seq + 1` is a gap and is refused with `409`. Without the
//! header frames are passed on unnumbered. Refusals stop the body there and say how far it got:
//!
//! ```text
//! 413 {"error":{"kind":"frame_too_large","limit":L,"size":S,"seq":N,"message":"…"},"accepted":k,"skipped":d,"in_seq":N}
//! 409 {"error":{"kind":"gap","expected":E,"got":G,"message":"…"},"accepted":k,"skipped":d,"in_seq":M}
//! 403 {"error":{"kind":"policy","seq":N,"message":"…"},"accepted":k,"skipped":d,"in_seq":N}
//! 410 {"error":{"kind":"closed","message":"…"},"accepted":k,"skipped":d,"in_seq":M}
//! 400 {"error":{"kind":"bad_frame","seq":N,"message":"…"},"accepted":k,"skipped":d,"in_seq":N}
//! ```
//!
//! A line that is not one JSON object is refused with `bad_frame` (it never reaches the CLI);
//! like an over-limit frame it takes its sequence number and the session goes on.
//!
//! An over-limit frame is discarded as it streams (never held in memory), still takes its
//! sequence number (`in_seq` moves past it, so the frames after it are not a gap) and the session
//! goes on; the `k` frames before it in the same body were passed to the CLI, the ones after it
//! were not (send them again). A `policy` refusal ([`crate::control_policy`]: a frame type the
//! SDK never sends, not JSON) works the same way; a refused *control request* is not a refusal
//! here: the gateway answers it in the event stream and the body goes on. Sending waits while the CLI is not reading: the `POST` simply
//! takes longer (backpressure).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, BodyDataStream};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use bytes::{BufMut, Bytes, BytesMut};
use claude_conduit::codec::FrameCodec;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use claude_conduit::transport::relay::wire::{self, ErrorInfo, kind};

use super::{AppState, error, error_response, no_session};
use crate::auth::TokenId;
use crate::session::{AttachError, Input, InputError, Outbound, Session};

/// The request header that numbers the first frame of a `POST …/frames` body.
pub const SEQ_HEADER: &str = wire::SEQ_HEADER;
/// The resume header of server-sent events.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// Frames taken from the ring per look.
const BATCH: usize = 64;
/// Frames at least this large go out as their own body chunk (no copy); smaller ones are copied
/// into one chunk with their neighbours.
const COPY_BELOW: usize = 64 * 1024;
/// Body chunks queued between the producer task and the connection.
const BODY_CHUNKS: usize = 16;
/// How much of a refused body is read and thrown away (so the reply is not lost to a reset).
const DRAIN_LIMIT: usize = 64 << 20;
/// How long draining a refused body may take.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The routes of this front (the caller adds authentication).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{id}/events", get(events))
        .route("/v1/sessions/{id}/frames", post(frames))
        .route("/v1/sessions/{id}/ack", post(ack))
        .route("/v1/sessions/{id}/end_input", post(end_input))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<u64>,
}

/// `GET /v1/sessions/{id}/events`: attach and stream.
async fn events(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = state.manager.get(owner, &id) else {
        return no_session();
    };
    let after = match headers
        .get(LAST_EVENT_ID)
        .map(|v| v.to_str().map(str::trim))
    {
        Some(Ok("")) | None => q.after.unwrap_or(0),
        Some(Ok(v)) => match v.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    kind::BAD_RESUME,
                    "Last-Event-ID is not a sequence number",
                );
            }
        },
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                kind::BAD_RESUME,
                "Last-Event-ID is not a sequence number",
            );
        }
    };
    let attached = match session.attach(after) {
        Ok(a) => a,
        Err(AttachError::TooOld { after, oldest }) => {
            let message = format!("replay too old: after={after}, oldest kept seq={oldest}");
            return error_response(
                StatusCode::GONE,
                ErrorInfo {
                    after: Some(after),
                    oldest: Some(oldest),
                    ..ErrorInfo::new(kind::REPLAY_TOO_OLD, message)
                },
            );
        }
        Err(AttachError::Ahead { after, last }) => {
            let message = format!("bad resume: after={after} but last seq={last}");
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorInfo {
                    after: Some(after),
                    last: Some(last),
                    ..ErrorInfo::new(kind::BAD_RESUME, message)
                },
            );
        }
    };
    tracing::debug!(session = %session.id(), after, in_seq = attached.in_seq, "event stream attached");
    let hello = wire::Hello {
        in_seq: attached.in_seq,
        max_frame_bytes: session.max_frame_bytes() as u64,
        session: session.id().to_owned(),
    };
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    let keep_alive = state.manager.config().ping_interval;
    tokio::spawn(produce(
        Detach {
            session,
            generation: attached.generation,
        },
        after,
        event("hello", &serde_json::to_string(&hello).unwrap_or_default()),
        keep_alive,
        tx,
    ));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        [("x-accel-buffering", "no")],
        body,
    )
        .into_response()
}

/// The attachment of one event stream; detaches when the stream's producer ends.
struct Detach {
    session: Arc<Session>,
    generation: u64,
}

impl Drop for Detach {
    fn drop(&mut self) {
        self.session.detach(self.generation);
        tracing::debug!(session = %self.session.id(), "event stream detached");
    }
}

type Chunk = Result<Bytes, std::io::Error>;

/// Feed one attached stream's body: hello, replay after `after`, live frames, the end.
async fn produce(
    attached: Detach,
    after: u64,
    hello: Bytes,
    keep_alive: Duration,
    tx: mpsc::Sender<Chunk>,
) {
    let session = attached.session.clone();
    let generation = attached.generation;
    if tx.send(Ok(hello)).await.is_err() {
        return;
    }
    let mut events = session.subscribe();
    let mut cursor = after;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    let mut chunks = Vec::new();
    let counters = crate::metrics::FrontCounters::new("http");
    loop {
        events.borrow_and_update();
        // Encoded while the ring is locked: the ring's frames are only read (large ones are
        // passed on as they are).
        let outbound = session.poll_outbound_with(generation, cursor, BATCH, |frames| {
            encode_frames(frames, &mut chunks);
        });
        match outbound {
            Outbound::Frames(taken) => {
                counters.sent(&session.live, &taken);
                cursor = taken.last;
                for chunk in chunks.drain(..) {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Outbound::End(end) => {
                let data = serde_json::to_string(&end).unwrap_or_else(|_| "{}".into());
                let _ = tx.send(Ok(event("end", &data))).await;
                return;
            }
            Outbound::Replaced => {
                let data = ErrorInfo::new(kind::REPLACED, "replaced by a newer connection");
                let data = serde_json::to_string(&data).unwrap_or_default();
                let _ = tx.send(Ok(event("error", &data))).await;
                return;
            }
            Outbound::Lost(lost) => {
                let data = serde_json::to_string(&lost).unwrap_or_default();
                let _ = tx.send(Ok(event("lost", &data))).await;
                return;
            }
            Outbound::ShuttingDown => {
                let data = ErrorInfo::new(kind::UNAVAILABLE, "the gateway is shutting down");
                let data = serde_json::to_string(&data).unwrap_or_default();
                let _ = tx.send(Ok(event("error", &data))).await;
                return;
            }
            Outbound::Dropped => {
                // Kicked: end the body with an error, so the connection breaks like a real drop.
                let _ = tx
                    .send(Err(std::io::Error::other("dropped by the gateway")))
                    .await;
                return;
            }
            Outbound::Wait => {}
        }
        tokio::select! {
            r = events.changed() => if r.is_err() { return },
            () = tx.closed() => return,
            _ = ping.tick() => if tx.send(Ok(Bytes::from_static(b": ping\n\n"))).await.is_err() {
                return;
            },
        }
    }
}

/// `event: <name>` with one `data:` line (`data` must be a single line, as compact JSON is).
fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// An event's bytes around its data at most: `id: ` + 20 digits + `\ndata: ` + `\n\n`.
const EVENT_ENVELOPE: usize = 36;

/// Encode frames as events: small ones copied into shared chunks, large ones passed as they are.
fn encode_frames<'a>(frames: impl Iterator<Item = &'a (u64, Bytes)> + Clone, out: &mut Vec<Bytes>) {
    // Room for the small frames and their envelopes (`id: <seq>\ndata: …\n\n`) at once.
    let room: usize = frames
        .clone()
        .map(|(_, f)| {
            if f.len() < COPY_BELOW {
                f.len() + EVENT_ENVELOPE
            } else {
                EVENT_ENVELOPE
            }
        })
        .sum();
    let mut buf = BytesMut::with_capacity(room);
    let mut digits = itoa::Buffer::new();
    for (seq, frame) in frames {
        buf.put_slice(b"id: ");
        buf.put_slice(digits.format(*seq).as_bytes());
        buf.put_slice(b"\ndata: ");
        if memchr::memchr2(b'\r', b'\n', frame).is_some() {
            put_data_lines(&mut buf, frame);
        } else if frame.len() >= COPY_BELOW {
            out.push(buf.split().freeze());
            out.push(frame.clone());
        } else {
            buf.put_slice(frame);
        }
        buf.put_slice(b"\n\n");
    }
    if !buf.is_empty() {
        out.push(buf.freeze());
    }
}

/// `frame` with each line break (`\r\n`, `\r` or `\n`) turned into a new `data:` line.
fn put_data_lines(buf: &mut BytesMut, frame: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while i < frame.len() {
        match frame[i] {
            b'\r' | b'\n' => {
                buf.put_slice(&frame[start..i]);
                buf.put_slice(b"\ndata: ");
                if frame[i] == b'\r' && frame.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    buf.put_slice(&frame[start..]);
}

/// `POST /v1/sessions/{id}/frames`: JSON lines to the CLI.
async fn frames(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(session) = state.manager.get(owner, &id) else {
        return no_session();
    };
    let mut next = match headers.get(SEQ_HEADER) {
        None => None,
        // 0 is "unnumbered", as on every wire.
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    kind::BAD_REQUEST,
                    "Conduit-Seq must be a sequence number (1, 2, 3, …; 0: unnumbered)",
                );
            }
        },
    };
    let mut codec = FrameCodec::new(session.max_frame_bytes());
    let mut buf = BytesMut::new();
    let mut data = body.into_data_stream();
    let (mut accepted, mut skipped) = (0u64, 0u64);
    let mut eof = false;
    let counters = crate::metrics::FrontCounters::new("http");
    loop {
        let decoded = if eof {
            codec.decode_eof(&mut buf)
        } else {
            codec.decode(&mut buf)
        };
        let item = match decoded {
            Ok(Some(item)) => item,
            Ok(None) if eof => break,
            Ok(None) => {
                match data.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        return error(StatusCode::BAD_REQUEST, kind::BAD_BODY, e);
                    }
                    None => eof = true,
                }
                continue;
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, kind::BAD_BODY, e),
        };
        let seq = next;
        next = next.map(|n| n + 1);
        if seq.is_some_and(|s| s <= session.in_seq()) {
            skipped += 1; // Accepted before (a resend).
            continue;
        }
        let result = match item {
            Ok(frame) => {
                counters.received(&session.live, frame.len());
                session.to_cli(Input::Frame { seq, frame }).await
            }
            Err(claude_conduit::Error::FrameTooLarge { size, .. }) => {
                session.refuse_oversize(seq, size).await
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, kind::BAD_BODY, e),
        };
        if let Err(e) = result {
            drain(&mut data).await;
            return refused(&session, &e, accepted, skipped);
        }
        accepted += 1;
    }
    Json(json!({"accepted": accepted, "skipped": skipped, "in_seq": session.in_seq()}))
        .into_response()
}

/// Read and drop what is left of a refused body (bounded), so that the client gets to read the
/// reply instead of a connection reset.
async fn drain(data: &mut BodyDataStream) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = data.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// The reply for a refused frame.
fn refused(session: &Session, e: &InputError, accepted: u64, skipped: u64) -> Response {
    let status = match e {
        InputError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        InputError::BadFrame { .. } => StatusCode::BAD_REQUEST,
        InputError::Gap { .. } => StatusCode::CONFLICT,
        InputError::Policy { .. } => StatusCode::FORBIDDEN,
        InputError::Closed => StatusCode::GONE,
    };
    let body = json!({
        "error": e.info(),
        "accepted": accepted,
        "skipped": skipped,
        "in_seq": session.in_seq(),
    });
    (status, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct AckQuery {
    ack: Option<u64>,
}

/// `POST /v1/sessions/{id}/ack`: `{"ack":N}` or `?ack=N`.
async fn ack(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
    Query(q): Query<AckQuery>,
    body: Bytes,
) -> Response {
    let Some(session) = state.manager.get(owner, &id) else {
        return no_session();
    };
    let from_body = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ack").and_then(Value::as_u64));
    match from_body.or(q.ack) {
        Some(n) => {
            session.ack(n);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            StatusCode::BAD_REQUEST,
            kind::BAD_REQUEST,
            "expected {\"ack\":N} or ?ack=N",
        ),
    }
}

/// `POST /v1/sessions/{id}/end_input`: close the CLI's stdin.
async fn end_input(
    State(state): State<AppState>,
    Extension(owner): Extension<TokenId>,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = state.manager.get(owner, &id) else {
        return no_session();
    };
    match session.to_cli(Input::EndInput).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(&session, &e, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frames: &[(u64, &'static [u8])]) -> Vec<u8> {
        let frames: Vec<_> = frames
            .iter()
            .map(|(s, f)| (*s, Bytes::from_static(f)))
            .collect();
        let mut out = Vec::new();
        encode_frames(frames.iter(), &mut out);
        out.concat()
    }

    #[test]
    fn frames_become_events_with_their_sequence_numbers() {
        assert_eq!(
            encoded(&[(1, b"{\"a\":1}"), (2, b"{}")]),
            b"id: 1\ndata: {\"a\":1}\n\nid: 2\ndata: {}\n\n"
        );
    }

    #[test]
    fn line_breaks_split_into_data_lines() {
        assert_eq!(
            encoded(&[(7, b"a\r\nb\rc\nd\n\ne")]),
            b"id: 7\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \ndata: e\n\n"
        );
    }

    #[test]
    fn large_frames_are_not_copied() {
        let big = Bytes::from(vec![b'x'; COPY_BELOW]);
        let mut out = Vec::new();
        encode_frames(
            [(1, Bytes::from_static(b"{}")), (2, big.clone())].iter(),
            &mut out,
        );
        assert!(
            out.iter()
                .any(|c| c.as_ptr() == big.as_ptr() && c.len() == big.len())
        );
        let joined = out.concat();
        assert!(joined.starts_with(b"id: 1\ndata: {}\n\nid: 2\ndata: xxx"));
        assert!(joined.ends_with(b"xx\n\n"));
    }
}
