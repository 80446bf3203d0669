//! The relay core of the gateway clients: the wire types both sides share ([`wire`]), the
//! sans-IO sequencing state ([`SeqState`]), the reconnect policy ([`ReconnectPolicy`]) and, with
//! a network feature, the one client driver every wire (`websocket`, `http`, `grpc`) plugs into
//! as an adapter that only encodes and decodes (`Wire`), with the one sending half
//! ([`GatewaySender`]) and receiving half ([`GatewayReceiver`]).
//!
//! ```text
//! GatewaySender ─► driver task (SeqState, ReconnectPolicy) ─► Wire adapter ═► gateway
//! GatewayReceiver ◄─ events ◄─┘        ▲ Hello / Frame / InAck / Refused / End ◄═┘
//! ```

pub mod seq;
pub mod wire;

with_wires! {
    mod driver;
}

/// The [`GatewayTransport`](crate::transport::GatewayTransport) items every gateway transport
/// has the same way (`new`, `session_id`, `remote`), and the inherent `max_frame_bytes`: one
/// definition for the three. The struct has `remote`, `session_id`, `max_frame` and the fields
/// given with their initial values; the type's inherent `create_impl`, `health_impl` and
/// `open_impl` are the wire's own parts.
#[cfg(any(feature = "websocket", feature = "http", feature = "grpc"))]
macro_rules! gateway_transport {
    ($ty:ty $(, $field:ident: $value:expr)*) => {
        impl $ty {
            /// The per-frame size limit (default 256 MiB, like the SDK's); the gateway's own
            /// limit (from its hello) applies to what this side sends.
            pub fn max_frame_bytes(mut self, limit: usize) -> Self {
                self.max_frame = limit;
                self
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `Remote`'s Debug leaves the token out.
                f.debug_struct(stringify!($ty))
                    .field("remote", &self.remote)
                    .field("session_id", &self.session_id)
                    .field("max_frame", &self.max_frame)
                    .finish_non_exhaustive()
            }
        }

        impl $crate::transport::GatewayTransport for $ty {
            fn new(
                remote: &$crate::remote::Remote,
                session_id: impl Into<String>,
            ) -> Self {
                Self {
                    remote: remote.clone(),
                    session_id: session_id.into(),
                    max_frame: $crate::codec::DEFAULT_MAX_FRAME_BYTES,
                    $($field: $value,)*
                }
            }

            fn session_id(&self) -> &str {
                &self.session_id
            }

            fn remote(&self) -> &$crate::remote::Remote {
                &self.remote
            }

            fn create_session(
                remote: &$crate::remote::Remote,
                request: &$crate::remote::SessionRequest,
            ) -> impl std::future::Future<Output = $crate::error::Result<String>> + Send {
                Self::create_impl(remote, request)
            }

            fn health(
                remote: &$crate::remote::Remote,
            ) -> impl std::future::Future<Output = $crate::error::Result<()>> + Send {
                Self::health_impl(remote)
            }

            fn open_session(
                remote: &$crate::remote::Remote,
                request: &$crate::remote::SessionRequest,
            ) -> impl std::future::Future<Output = $crate::error::Result<Self>> + Send {
                Self::open_impl(remote, request)
            }
        }
    };
}
#[cfg(any(feature = "websocket", feature = "http", feature = "grpc"))]
pub(crate) use gateway_transport;

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

with_wires! {
    pub use driver::{GatewayReceiver, GatewaySender};
    pub(crate) use driver::{Incoming, Outgoing, Wire, WireConn, connect, refusal_error};
}
pub use seq::{Accept, Resend, SeqState};
pub use wire::ACK_EVERY;

use crate::error::{Error, GatewayErrorKind, GatewayStatus};

/// Reconnect attempts after a dropped connection, before the stream fails (the default policy).
pub const MAX_RECONNECTS: u32 = 5;

/// How a client reconnects after a dropped connection: how many attempts, and how long it waits
/// before each (`base`·2^attempt, at most `max`, times a jitter factor in [0.5, 1.5)). Failures a
/// wire calls fatal ([`Failure::Fatal`]) are never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Attempts per dropped connection (0: never reconnect).
    pub attempts: u32,
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            attempts: MAX_RECONNECTS,
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max);
        let mut h = RandomState::new().build_hasher();
        h.write_u32(attempt);
        let jitter = 0.5 + (h.finish() % 1000) as f64 / 1000.0;
        base.mul_f64(jitter)
    }
}

/// A failure of a connection (or of opening one), as the wire classifies it.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt (a dropped connection, a 5xx, `UNAVAILABLE`, a going-away close).
    Transient(Error),
    /// Retrying cannot help (a bad token, an unknown session, a replay too old, a broken
    /// protocol).
    Fatal(Error),
}

impl Failure {
    /// The error, whichever the class.
    pub fn into_error(self) -> Error {
        match self {
            Self::Transient(e) | Self::Fatal(e) => e,
        }
    }

    /// Whether reconnecting cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal(_))
    }
}

/// The error for an HTTP answer with `status` and `body` (`{"error":{"kind","message"}}`, or an
/// older gateway's `{"error":"text"}`), from `context` (what the client was doing).
pub fn http_error(context: &str, status: u16, body: &[u8]) -> Error {
    let (kind, message) = match serde_json::from_slice::<wire::ErrorBody>(body) {
        Ok(b) => (Some(b.error.kind), b.error.message),
        Err(_) => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(m)) => match m.get("error") {
                Some(serde_json::Value::String(s)) => (None, s.clone()),
                _ => (None, crate::error::excerpt(body, 512)),
            },
            _ => (None, crate::error::excerpt(body, 512)),
        },
    };
    let kind = match kind {
        Some(k) => GatewayErrorKind::from_wire(&k),
        None => match status {
            401 | 403 => GatewayErrorKind::Unauthorized,
            404 => GatewayErrorKind::NotFound,
            410 => GatewayErrorKind::ReplayTooOld,
            429 => GatewayErrorKind::TooManySessions,
            400 | 413 | 415 | 422 => GatewayErrorKind::InvalidRequest,
            500..=599 => GatewayErrorKind::Unavailable,
            _ => GatewayErrorKind::Other,
        },
    };
    Error::gateway(
        kind,
        Some(GatewayStatus::Http(status)),
        format!("{context}: {message}"),
    )
}

/// [`http_error`], classified: 5xx and 429 are worth another attempt, the rest is not.
pub fn http_failure(context: &str, status: u16, body: &[u8]) -> Failure {
    let e = http_error(context, status, body);
    if status >= 500 || status == 429 {
        Failure::Transient(e)
    } else {
        Failure::Fatal(e)
    }
}

/// The error for a WebSocket close code (and its reason) that came without an `end`.
pub fn close_error(code: u16, reason: &str) -> Failure {
    if code == wire::close::SESSION_LOST {
        return Failure::Fatal(wire::Lost::from_close_reason(reason).into_error());
    }
    let kind = match code {
        wire::close::BAD_RESUME => GatewayErrorKind::BadResume,
        wire::close::UNKNOWN_SESSION => GatewayErrorKind::NotFound,
        wire::close::REPLACED => GatewayErrorKind::Replaced,
        wire::close::REPLAY_TOO_OLD => GatewayErrorKind::ReplayTooOld,
        wire::close::TOO_BIG => GatewayErrorKind::InvalidRequest,
        _ => GatewayErrorKind::Unavailable,
    };
    let e = Error::gateway(
        kind,
        Some(GatewayStatus::Close(code)),
        format!("the gateway closed the stream: {reason}"),
    );
    if wire::close::is_fatal(code) {
        Failure::Fatal(e)
    } else {
        Failure::Transient(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let p = ReconnectPolicy::default();
        for k in 0..p.attempts {
            let d = p.delay(k);
            let base = p.base * 2u32.pow(k);
            assert!(d >= base / 2 && d < base * 3 / 2, "{k}: {d:?}");
        }
        assert!(p.delay(40) < p.max * 3 / 2);
    }

    #[test]
    fn http_errors_are_typed_from_the_body_or_the_status() {
        let e = http_error(
            "x",
            400,
            br#"{"error":{"kind":"refused","message":"flag --x is not allowed"}}"#,
        );
        assert_eq!(e.gateway_kind(), Some(GatewayErrorKind::Refused));
        assert!(e.to_string().contains("--x is not allowed"), "{e}");
        let old = http_error("x", 401, br#"{"error":"missing or invalid bearer token"}"#);
        assert_eq!(old.gateway_kind(), Some(GatewayErrorKind::Unauthorized));
        assert_eq!(
            http_error("x", 503, b"").gateway_kind(),
            Some(GatewayErrorKind::Unavailable)
        );
    }

    #[test]
    fn close_codes_are_classified() {
        assert!(close_error(4410, "").is_fatal());
        assert!(close_error(4409, "").is_fatal());
        assert!(!close_error(1001, "").is_fatal());
        assert!(!close_error(1006, "").is_fatal());
        let e = close_error(4404, "").into_error();
        assert_eq!(e.gateway_kind(), Some(GatewayErrorKind::NotFound));
    }
}
