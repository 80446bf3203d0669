//! Every metric the SDK and the gateway record: name, type, labels (also in
//! `docs/OBSERVABILITY.md`). Names follow the Prometheus conventions: a `conduit_` prefix,
//! base units (seconds, bytes), `_total` on counters.

/// Counter `{wire, direction}`: frames moved by a transport (`direction` = `in` | `out`).
pub const TRANSPORT_FRAMES: &str = "conduit_transport_frames_total";
/// Counter `{wire, direction}`: bytes moved by a transport, newlines included.
pub const TRANSPORT_BYTES: &str = "conduit_transport_bytes_total";
/// Counter `{wire}`: transport errors (per-frame and connection).
pub const TRANSPORT_ERRORS: &str = "conduit_transport_errors_total";
/// Counter `{wire}`: reconnects of the network transports.
pub const TRANSPORT_RECONNECTS: &str = "conduit_transport_reconnects_total";
/// Histogram `{wire}`: how long `connect()` took (spawn for `subprocess`), seconds.
pub const TRANSPORT_CONNECT: &str = "conduit_transport_connect_seconds";

/// Counter: sessions the SDK connected.
pub const SESSIONS: &str = "conduit_sessions_total";
/// Counter: turns (results) the SDK received.
pub const TURNS: &str = "conduit_turns_total";
/// Histogram: from a user message sent to the first message back, seconds.
pub const FIRST_MESSAGE: &str = "conduit_turn_first_message_seconds";
/// Histogram: from a user message sent to its result, seconds.
pub const TURN_LATENCY: &str = "conduit_turn_seconds";
/// Counter `{tool}`: tool calls the CLI asked permission for or ran hooks for (see
/// [`super::tool_label`] for the bound on `tool`).
pub const TOOL_CALLS: &str = "conduit_tool_calls_total";
/// Counter `{outcome}`: permission decisions (`allow` | `deny` | `error`).
pub const PERMISSION_DECISIONS: &str = "conduit_permission_decisions_total";
/// Histogram `{kind}`: callback latency (`permission` | `hook` | `mcp_tool`), seconds.
pub const CALLBACK_LATENCY: &str = "conduit_callback_seconds";
/// Counter `{kind}`: tokens from result frames (`input` | `output` | `cache_read` |
/// `cache_creation`).
pub const TOKENS: &str = "conduit_tokens_total";
/// Histogram: cost of each turn in USD (its `_sum` is the total cost).
pub const TURN_COST: &str = "conduit_turn_cost_usd";

/// Gauge `{process}`: resident memory, bytes (`process` = `self` | `children`).
pub const PROCESS_RSS: &str = "conduit_process_resident_memory_bytes";
/// Gauge `{process}`: CPU time used so far (user + system), seconds.
pub const PROCESS_CPU: &str = "conduit_process_cpu_seconds";
/// Gauge: live child processes of this process (the CLIs it runs).
pub const PROCESS_CHILDREN: &str = "conduit_process_children";

/// Gauge: live gateway sessions.
pub const GATEWAY_SESSIONS: &str = "conduit_gateway_sessions";
/// Counter: gateway sessions created.
pub const GATEWAY_SESSIONS_CREATED: &str = "conduit_gateway_sessions_created_total";
/// Counter: gateway sessions ended (the CLI exited or was closed).
pub const GATEWAY_SESSIONS_ENDED: &str = "conduit_gateway_sessions_ended_total";
/// Histogram: gateway session lifetime, seconds.
pub const GATEWAY_SESSION_DURATION: &str = "conduit_gateway_session_seconds";
/// Counter `{direction, front}`: frames relayed (`in` = client → CLI, `out` = CLI → client;
/// `front` = `ws` | `http` | `grpc`).
pub const GATEWAY_FRAMES: &str = "conduit_gateway_frames_total";
/// Counter `{direction, front}`: bytes of the frames relayed.
pub const GATEWAY_BYTES: &str = "conduit_gateway_bytes_total";
/// Counter `{kind}`: client frames refused (`frame_too_large` | `policy` | `bad_frame`).
pub const GATEWAY_REFUSALS: &str = "conduit_gateway_refusals_total";
/// Counter `{front}`: requests without a valid token.
pub const GATEWAY_AUTH_FAILURES: &str = "conduit_gateway_auth_failures_total";
/// Counter: CLI turns relayed by the gateway (`result` frames).
pub const GATEWAY_TURNS: &str = "conduit_gateway_turns_total";

/// Gauge `{worker}`: sessions running on a `conduit worker` (`worker` = its name: one value
/// per worker process).
pub const WORKER_SESSIONS: &str = "conduit_worker_sessions";
/// Counter `{worker}`: session requests the worker read from the sessions stream and started.
pub const WORKER_TAKEN: &str = "conduit_worker_sessions_taken_total";
/// Counter `{worker}`: session requests the worker claimed (`XAUTOCLAIM`) from a worker that
/// read them and did not start them, and started.
pub const WORKER_CLAIMED: &str = "conduit_worker_sessions_claimed_total";
/// Counter `{worker}`: session requests the worker refused (bad request, policy, limit).
pub const WORKER_REFUSED: &str = "conduit_worker_sessions_refused_total";
/// Counter `{worker}`: sessions the worker ended because their data was gone from Redis or
/// an entry of their input stream was malformed.
pub const WORKER_LOST: &str = "conduit_worker_sessions_lost_total";
/// Counter `{worker}`: `XADD` pipelines of CLI frames (one per batch the session hands over).
pub const WORKER_XADD_BATCHES: &str = "conduit_worker_xadd_batches_total";
/// Counter `{worker}`: CLI frames added to Redis by those pipelines.
pub const WORKER_XADD_FRAMES: &str = "conduit_worker_xadd_frames_total";

/// Counter `{owner, outcome}`: event bus handler calls (`outcome` = `ok` | `error` | `panic` |
/// `timeout`; `owner` = the name the handler was registered under, bounded like `tool`, or
/// `none`).
pub const HANDLER_CALLS: &str = "conduit_event_handler_calls_total";
/// Histogram `{owner}`: event bus handler latency, seconds (not recorded for sync handlers of
/// the per-frame events `BeforeSend` and `MessageReceived`, see `docs/OBSERVABILITY.md`).
pub const HANDLER_LATENCY: &str = "conduit_event_handler_seconds";

/// Gauge `{rule}`: 1 while an alert rule fires, else 0.
pub const ALERTS_FIRING: &str = "conduit_alerts_firing";

/// Register the descriptions (Prometheus `# HELP`/`# TYPE`) of every metric with the installed
/// recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(TRANSPORT_FRAMES, Unit::Count, "Frames moved by a transport");
    describe_counter!(TRANSPORT_BYTES, Unit::Bytes, "Bytes moved by a transport");
    describe_counter!(TRANSPORT_ERRORS, Unit::Count, "Transport errors");
    describe_counter!(
        TRANSPORT_RECONNECTS,
        Unit::Count,
        "Network transport reconnects"
    );
    describe_histogram!(TRANSPORT_CONNECT, Unit::Seconds, "Transport connect time");
    describe_counter!(SESSIONS, Unit::Count, "Sessions connected by the SDK");
    describe_counter!(TURNS, Unit::Count, "Turns (results) received by the SDK");
    describe_histogram!(
        FIRST_MESSAGE,
        Unit::Seconds,
        "Time from a user message to the first message back"
    );
    describe_histogram!(
        TURN_LATENCY,
        Unit::Seconds,
        "Time from a user message to its result"
    );
    describe_counter!(TOOL_CALLS, Unit::Count, "Tool calls by tool name (bounded)");
    describe_counter!(
        PERMISSION_DECISIONS,
        Unit::Count,
        "Permission decisions by outcome"
    );
    describe_histogram!(CALLBACK_LATENCY, Unit::Seconds, "Callback latency by kind");
    describe_counter!(TOKENS, Unit::Count, "Tokens reported by result frames");
    describe_histogram!(TURN_COST, "Cost of each turn in USD");
    describe_gauge!(PROCESS_RSS, Unit::Bytes, "Resident memory");
    describe_gauge!(PROCESS_CPU, Unit::Seconds, "CPU time used (user + system)");
    describe_gauge!(PROCESS_CHILDREN, Unit::Count, "Live child processes");
    describe_gauge!(GATEWAY_SESSIONS, Unit::Count, "Live gateway sessions");
    describe_counter!(
        GATEWAY_SESSIONS_CREATED,
        Unit::Count,
        "Gateway sessions created"
    );
    describe_counter!(
        GATEWAY_SESSIONS_ENDED,
        Unit::Count,
        "Gateway sessions ended"
    );
    describe_histogram!(
        GATEWAY_SESSION_DURATION,
        Unit::Seconds,
        "Gateway session lifetime"
    );
    describe_counter!(GATEWAY_FRAMES, Unit::Count, "Frames relayed by the gateway");
    describe_counter!(GATEWAY_BYTES, Unit::Bytes, "Bytes relayed by the gateway");
    describe_counter!(
        GATEWAY_REFUSALS,
        Unit::Count,
        "Client frames refused by the gateway"
    );
    describe_counter!(
        GATEWAY_AUTH_FAILURES,
        Unit::Count,
        "Requests without a valid token"
    );
    describe_counter!(GATEWAY_TURNS, Unit::Count, "Turns relayed by the gateway");
    describe_gauge!(WORKER_SESSIONS, Unit::Count, "Sessions running on a worker");
    describe_counter!(
        WORKER_TAKEN,
        Unit::Count,
        "Session requests a worker started"
    );
    describe_counter!(
        WORKER_CLAIMED,
        Unit::Count,
        "Session requests a worker claimed from another and started"
    );
    describe_counter!(
        WORKER_REFUSED,
        Unit::Count,
        "Session requests a worker refused"
    );
    describe_counter!(
        WORKER_LOST,
        Unit::Count,
        "Sessions a worker ended because their Redis data was gone or bad"
    );
    describe_counter!(
        WORKER_XADD_BATCHES,
        Unit::Count,
        "XADD pipelines of CLI frames"
    );
    describe_counter!(WORKER_XADD_FRAMES, Unit::Count, "CLI frames added to Redis");
    describe_counter!(
        HANDLER_CALLS,
        Unit::Count,
        "Event bus handler calls by outcome"
    );
    describe_histogram!(HANDLER_LATENCY, Unit::Seconds, "Event bus handler latency");
    describe_gauge!(ALERTS_FIRING, "1 while an alert rule fires");
}
