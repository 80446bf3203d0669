//! HTTP side of the fake: routing, the script, and Anthropic-format responses.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::log::{Answer, LoggedRequest, RequestKind, last_user_text};
use super::turn::{Block, Fallback, Turn, TurnKind};

/// State shared by the handlers and the [`FakeModel`](super::FakeModel) handle.
#[derive(Debug)]
pub(crate) struct Shared {
    started: Instant,
    script: Mutex<Script>,
    log: Mutex<Vec<LoggedRequest>>,
    /// Bumped on every change of the log, so waiters can wake up.
    pub(crate) version: watch::Sender<u64>,
}

#[derive(Debug)]
struct Script {
    pending: VecDeque<Pending>,
    next_index: usize,
    fallback: Fallback,
}

#[derive(Debug)]
struct Pending {
    index: usize,
    turn: Turn,
    remaining: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these plain collections in a broken state.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(turns: Vec<Turn>, fallback: Fallback) -> Self {
        let mut script = Script {
            pending: VecDeque::new(),
            next_index: 0,
            fallback,
        };
        for turn in turns {
            script.push(turn);
        }
        Shared {
            started: Instant::now(),
            script: Mutex::new(script),
            log: Mutex::new(Vec::new()),
            version: watch::Sender::new(0),
        }
    }

    pub(crate) fn push_turn(&self, turn: Turn) {
        lock(&self.script).push(turn);
    }

    pub(crate) fn pending_turns(&self) -> usize {
        lock(&self.script).pending.len()
    }

    pub(crate) fn set_fallback(&self, fallback: Fallback) {
        lock(&self.script).fallback = fallback;
    }

    pub(crate) fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.log).clone()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn log_push(&self, mut entry: LoggedRequest) -> usize {
        let seq = {
            let mut log = lock(&self.log);
            let seq = log.len();
            entry.seq = seq;
            log.push(entry);
            seq
        };
        self.bump();
        seq
    }

    fn log_update(&self, seq: usize, f: impl FnOnce(&mut LoggedRequest)) {
        {
            let mut log = lock(&self.log);
            if let Some(entry) = log.get_mut(seq) {
                f(entry);
            }
        }
        self.bump();
    }

    /// Take the turn that answers a request with this last user text.
    fn next_turn(&self, last_user_text: Option<&str>) -> (Option<usize>, Turn) {
        let mut script = lock(&self.script);
        let found = script
            .pending
            .iter()
            .position(|p| p.turn.matches(last_user_text));
        if let Some(pos) = found
            && let Some(p) = script.pending.get_mut(pos)
        {
            let index = p.index;
            let turn = p.turn.clone();
            p.remaining = p.remaining.saturating_sub(1);
            if p.remaining == 0 {
                script.pending.remove(pos);
            }
            return (Some(index), turn);
        }
        let turn = match &script.fallback {
            Fallback::Echo => Turn::text(format!("echo: {}", last_user_text.unwrap_or_default())),
            Fallback::Text(text) => Turn::text(text.clone()),
            Fallback::Turn(turn) => (**turn).clone(),
        };
        (None, turn)
    }
}

impl Script {
    fn push(&mut self, turn: Turn) {
        let index = self.next_index;
        self.next_index += 1;
        let remaining = turn.times.max(1);
        self.pending.push_back(Pending {
            index,
            turn,
            remaining,
        });
    }
}

/// Marks the log entry `disconnected` if dropped before the response was completely produced.
struct CompletionGuard {
    shared: Arc<Shared>,
    seq: usize,
    done: bool,
}

impl CompletionGuard {
    fn complete(&mut self) {
        self.done = true;
    }
}

impl Drop for CompletionGuard {
    fn drop(&mut self) {
        if !self.done {
            self.shared.log_update(self.seq, |e| e.disconnected = true);
        }
    }
}

/// The single axum handler: every method and path comes here.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let route = parts.uri.path().trim_end_matches('/');
    let kind = match (&parts.method, route) {
        (&Method::HEAD, _) => RequestKind::Head,
        (&Method::GET, _) => RequestKind::Get,
        (&Method::POST, "/v1/messages") => RequestKind::Messages,
        (&Method::POST, "/v1/messages/count_tokens") => RequestKind::CountTokens,
        _ => RequestKind::Other,
    };

    let body_result = axum::body::to_bytes(body, usize::MAX).await;
    let bytes = body_result.as_ref().cloned().unwrap_or_default();
    let parsed: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    let messages: &[Value] = parsed
        .as_ref()
        .and_then(|b| b.get("messages"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let last_text = last_user_text(messages);
    let entry = LoggedRequest {
        seq: 0,
        at: shared.started.elapsed(),
        method: parts.method.as_str().to_string(),
        path,
        kind,
        headers: header_map(&parts.headers),
        body_bytes: bytes.len(),
        body: parsed.clone(),
        model: parsed
            .as_ref()
            .and_then(|b| b.get("model"))
            .and_then(Value::as_str)
            .map(str::to_string),
        stream: parsed
            .as_ref()
            .and_then(|b| b.get("stream"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        message_count: messages.len(),
        last_user_text: last_text.clone(),
        tool_names: parsed
            .as_ref()
            .and_then(|b| b.get("tools"))
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        turn: None,
        answer: Answer::Pending,
        disconnected: false,
    };
    let stream = entry.stream;
    let model = entry.model.clone();
    let seq = shared.log_push(entry);

    if let Err(err) = body_result {
        return bad_request(&shared, seq, format!("could not read request body: {err}"));
    }

    match kind {
        RequestKind::Head => {
            shared.log_update(seq, |e| e.answer = Answer::Ok);
            StatusCode::OK.into_response()
        }
        RequestKind::Get => {
            shared.log_update(seq, |e| e.answer = Answer::Ok);
            json_response(StatusCode::OK, &json!({}))
        }
        RequestKind::Other => {
            let message = format!("Not found: {} {}", parts.method, parts.uri.path());
            shared.log_update(seq, |e| {
                e.answer = Answer::HttpError {
                    status: 404,
                    error_type: "not_found_error".into(),
                }
            });
            error_response(StatusCode::NOT_FOUND, "not_found_error", &message)
        }
        RequestKind::CountTokens => {
            if !parsed.as_ref().is_some_and(Value::is_object) {
                return bad_request(&shared, seq, "request body must be a JSON object".into());
            }
            let input_tokens = estimate_tokens(bytes.len());
            shared.log_update(seq, |e| e.answer = Answer::CountTokens { input_tokens });
            json_response(StatusCode::OK, &json!({ "input_tokens": input_tokens }))
        }
        RequestKind::Messages => {
            let valid = parsed
                .as_ref()
                .and_then(|b| b.get("messages"))
                .is_some_and(Value::is_array);
            if !valid {
                return bad_request(
                    &shared,
                    seq,
                    "messages: field required (a JSON object with a `messages` array)".into(),
                );
            }
            let (index, turn) = shared.next_turn(last_text.as_deref());
            let ctx = ReplyCtx {
                model: model.unwrap_or_else(|| "claude-fake".to_string()),
                input_tokens: estimate_tokens(bytes.len()),
            };
            answer_messages(shared, seq, index, turn, ctx, stream).await
        }
    }
}

struct ReplyCtx {
    model: String,
    input_tokens: u64,
}

async fn answer_messages(
    shared: Arc<Shared>,
    seq: usize,
    index: Option<usize>,
    turn: Turn,
    ctx: ReplyCtx,
    stream: bool,
) -> Response {
    shared.log_update(seq, |e| e.turn = index);
    let mut guard = CompletionGuard {
        shared: shared.clone(),
        seq,
        done: false,
    };
    if !turn.delay.is_zero() {
        tokio::time::sleep(turn.delay).await;
    }

    match &turn.kind {
        TurnKind::HttpError {
            status,
            error_type,
            message,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            shared.log_update(seq, |e| {
                e.answer = Answer::HttpError {
                    status: status.as_u16(),
                    error_type: error_type.clone(),
                }
            });
            guard.complete();
            error_response(status, error_type, message)
        }
        TurnKind::SseError {
            blocks,
            error_type,
            message,
        } => {
            if !stream {
                let status = match error_type.as_str() {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    _ => 500,
                };
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                shared.log_update(seq, |e| {
                    e.answer = Answer::HttpError {
                        status: status.as_u16(),
                        error_type: error_type.clone(),
                    }
                });
                guard.complete();
                return error_response(status, error_type, message);
            }
            let resolved = resolve_blocks(blocks);
            let mut events = stream_events(&resolved, &ctx, &turn, None);
            events.push(sse_event(
                "error",
                &json!({"type": "error", "error": {"type": error_type, "message": message}}),
            ));
            shared.log_update(seq, |e| {
                e.answer = Answer::SseError {
                    error_type: error_type.clone(),
                }
            });
            sse_response(events, turn.chunk_delay, guard)
        }
        TurnKind::Reply(blocks) => {
            let resolved = resolve_blocks(blocks);
            let stop_reason = turn.stop_reason.clone().unwrap_or_else(|| {
                if resolved.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
                    "tool_use".to_string()
                } else {
                    "end_turn".to_string()
                }
            });
            let answer = Answer::Message {
                blocks: resolved.iter().map(Block::label).collect(),
                stop_reason: stop_reason.clone(),
                tool_use_ids: resolved
                    .iter()
                    .filter_map(|b| match b {
                        Block::ToolUse { id, .. } => id.clone(),
                        _ => None,
                    })
                    .collect(),
            };
            shared.log_update(seq, |e| e.answer = answer);
            if stream {
                let events = stream_events(&resolved, &ctx, &turn, Some(&stop_reason));
                sse_response(events, turn.chunk_delay, guard)
            } else {
                guard.complete();
                let (input_tokens, output_tokens) = usage_of(&resolved, &ctx, &turn);
                let body = json!({
                    "id": format!("msg_fake_{}", random_hex(20)),
                    "type": "message",
                    "role": "assistant",
                    "model": ctx.model,
                    "content": resolved.iter().map(block_json).collect::<Vec<_>>(),
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": output_tokens,
                    },
                });
                json_response(StatusCode::OK, &body)
            }
        }
    }
}

/// Fill in generated tool-use ids and thinking signatures.
fn resolve_blocks(blocks: &[Block]) -> Vec<Block> {
    blocks
        .iter()
        .map(|b| match b {
            Block::ToolUse {
                id: None,
                name,
                input,
            } => Block::ToolUse {
                id: Some(format!("toolu_{}", random_hex(24))),
                name: name.clone(),
                input: input.clone(),
            },
            Block::Thinking {
                thinking,
                signature: None,
            } => Block::Thinking {
                thinking: thinking.clone(),
                signature: Some(format!("fake-signature-{}", random_hex(16))),
            },
            other => other.clone(),
        })
        .collect()
}

fn block_json(block: &Block) -> Value {
    match block {
        Block::Text { text } => json!({"type": "text", "text": text}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Block::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
    }
}

fn usage_of(blocks: &[Block], ctx: &ReplyCtx, turn: &Turn) -> (u64, u64) {
    if let Some(usage) = turn.usage {
        return usage;
    }
    let out_bytes: usize = blocks
        .iter()
        .map(|b| match b {
            Block::Text { text } => text.len(),
            Block::Thinking { thinking, .. } => thinking.len(),
            Block::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
        })
        .sum();
    (ctx.input_tokens, estimate_tokens(out_bytes))
}

/// The SSE events of a reply, each one complete (`event: …\ndata: …\n\n`). With `stop_reason`
/// `None` the closing `message_delta`/`message_stop` are left out.
fn stream_events(
    blocks: &[Block],
    ctx: &ReplyCtx,
    turn: &Turn,
    stop_reason: Option<&str>,
) -> Vec<Bytes> {
    let (input_tokens, output_tokens) = usage_of(blocks, ctx, turn);
    let chunk = turn.chunk_chars.max(1);
    let mut events = vec![
        sse_event(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": format!("msg_fake_{}", random_hex(20)),
                    "type": "message",
                    "role": "assistant",
                    "model": ctx.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            }),
        ),
        sse_event("ping", &json!({"type": "ping"})),
    ];
    for (index, block) in blocks.iter().enumerate() {
        let delta = |delta: Value| {
            sse_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )
        };
        match block {
            Block::Text { text } => {
                events.push(sse_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "text", "text": ""}}),
                ));
                for piece in chunks(text, chunk) {
                    events.push(delta(json!({"type": "text_delta", "text": piece})));
                }
            }
            Block::Thinking {
                thinking,
                signature,
            } => {
                events.push(sse_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                ));
                for piece in chunks(thinking, chunk) {
                    events.push(delta(json!({"type": "thinking_delta", "thinking": piece})));
                }
                events.push(delta(json!({"type": "signature_delta",
                                         "signature": signature.clone().unwrap_or_default()})));
            }
            Block::ToolUse { id, name, input } => {
                events.push(sse_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                ));
                events.push(delta(
                    json!({"type": "input_json_delta", "partial_json": ""}),
                ));
                let input_json = input.to_string();
                for piece in chunks(&input_json, chunk) {
                    events.push(delta(
                        json!({"type": "input_json_delta", "partial_json": piece}),
                    ));
                }
            }
        }
        events.push(sse_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    if let Some(stop_reason) = stop_reason {
        events.push(sse_event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens},
            }),
        ));
        events.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    }
    events
}

/// Split `text` into pieces of at most `size` characters (never inside a UTF-8 sequence).
/// An empty text gives no pieces.
fn chunks(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, _) in text.char_indices() {
        if count == size {
            out.push(&text[start..i]);
            start = i;
            count = 0;
        }
        count += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn sse_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

struct StreamState {
    events: std::vec::IntoIter<Bytes>,
    delay: Duration,
    first: bool,
    guard: CompletionGuard,
}

fn sse_response(events: Vec<Bytes>, delay: Duration, guard: CompletionGuard) -> Response {
    let state = StreamState {
        events: events.into_iter(),
        delay,
        first: true,
        guard,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        match st.events.next() {
            Some(event) => {
                if !st.first && !st.delay.is_zero() {
                    tokio::time::sleep(st.delay).await;
                }
                st.first = false;
                Some((Ok::<Bytes, Infallible>(event), st))
            }
            None => {
                st.guard.complete();
                None
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_request_id(headers);
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_request_id(headers);
    response
}

fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"type": "error", "error": {"type": error_type, "message": message}}),
    )
}

fn bad_request(shared: &Shared, seq: usize, message: String) -> Response {
    shared.log_update(seq, |e| {
        e.answer = Answer::HttpError {
            status: 400,
            error_type: "invalid_request_error".into(),
        }
    });
    error_response(StatusCode::BAD_REQUEST, "invalid_request_error", &message)
}

fn add_request_id(headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&format!("req_fake_{}", random_hex(24))) {
        headers.insert("request-id", value);
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// Plausible token count for this many bytes (bytes/4, at least 1).
pub(crate) fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64 / 4).max(1)
}

/// `n` random lower-case hex digits (not cryptographic; unique enough for ids).
pub(crate) fn random_hex(n: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(n + 16);
    while out.len() < n {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_on_char_boundaries() {
        assert_eq!(chunks("", 3), Vec::<&str>::new());
        assert_eq!(chunks("abcdefg", 3), vec!["abc", "def", "g"]);
        assert_eq!(chunks("héllo", 2), vec!["hé", "ll", "o"]);
        assert_eq!(chunks("abc", 3), vec!["abc"]);
    }

    #[test]
    fn random_hex_has_requested_length() {
        let a = random_hex(24);
        let b = random_hex(24);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
