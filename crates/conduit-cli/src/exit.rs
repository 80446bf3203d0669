//! Exit codes, and the one place where an SDK error becomes an exit code and a message.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the turn ended with a success result (or the command did its work) |
//! | 1 | the session ended with an error result (not logged in, API error, max turns, …) |
//! | 2 | bad command line, invalid options, or options the gateway's policy refused |
//! | 3 | no usable `claude` CLI (not found, or not executable): `conduit install-cli` |
//! | 4 | runtime failure: the CLI died, a connection failed, a file could not be read, … |

use std::fmt::Write as _;

use claude_conduit::{Error, GatewayErrorKind};

/// Exit code: the turn ended with a success result.
pub const EXIT_OK: u8 = 0;
/// Exit code: the turn ended with an error result.
pub const EXIT_ERROR_RESULT: u8 = 1;
/// Exit code: bad command line, invalid or refused options.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no usable claude CLI.
pub const EXIT_CLI_NOT_FOUND: u8 = 3;
/// Exit code: the process or the transport failed.
pub const EXIT_FAILURE: u8 = 4;

/// What a failed command reports: its exit code, one message, and hints on how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// The message (without the `conduit:` prefix).
    pub message: String,
    /// One line each, printed as `hint: …`.
    pub hints: Vec<String>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Print `prefix: message` and the hints on stderr; returns the exit code.
    pub fn report(&self, prefix: &str) -> u8 {
        eprintln!("{prefix}: {}", self.message);
        for h in &self.hints {
            eprintln!("hint: {h}");
        }
        self.code
    }
}

/// Where the error happened: a local CLI, or a gateway at `via`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The gateway URL (`--via`), if any.
    pub via: Option<&'a str>,
}

/// The operator's policy refusing a session's options: `Error::Gateway { kind: Refused, .. }`
/// from `POST /v1/sessions` (WebSocket, HTTP) or `CreateSession` (gRPC). The reason is the
/// gateway's words, without the SDK's context prefix.
fn gateway_refusal(e: &Error, ctx: Context<'_>) -> Option<String> {
    ctx.via?;
    match e {
        Error::Gateway {
            kind: GatewayErrorKind::Refused,
            message,
            ..
        } => {
            let reason = ["creating a session: ", "CreateSession: "]
                .iter()
                .find_map(|p| message.strip_prefix(p))
                .unwrap_or(message);
            Some(reason.to_owned())
        }
        _ => None,
    }
}

pub use claude_conduit::remote::redact_url;

fn is_tls(url: &str) -> bool {
    let scheme = url.split("://").next().unwrap_or_default();
    ["wss", "https", "grpcs", "rediss"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
}

/// `error: cause: cause…`, each distinct message once (a wrapper that repeats its source's text,
/// as gRPC's "tcp connect error" does, is shown once).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut seen = vec![out.clone()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !text.is_empty() && !seen.iter().any(|t| t.contains(&text)) {
            let _ = write!(out, ": {text}");
            seen.push(text);
        }
        cur = s.source();
    }
    out
}

/// The exit code, message and hints for `e`.
pub fn classify(e: &Error, ctx: Context<'_>) -> Failure {
    if let Some(reason) = gateway_refusal(e, ctx) {
        let reason = reason
            .strip_prefix("invalid session options: ")
            .unwrap_or(&reason);
        return Failure::new(EXIT_USAGE, format!("gateway refused the options: {reason}"));
    }
    match e {
        Error::CliNotFound { .. } => Failure::new(EXIT_CLI_NOT_FOUND, e.to_string()).hint(
            "install the pinned claude CLI with `conduit install-cli` (needs npm), or pass \
                 --cli PATH / set CONDUIT_CLAUDE_CLI",
        ),
        Error::Spawn { path, source } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Failure::new(
                EXIT_CLI_NOT_FOUND,
                format!("cannot run {}: {source}", path.display()),
            )
            .hint("give the path of the claude executable with --cli, or run `conduit install-cli`")
        }
        Error::InvalidOptions(_) | Error::CwdNotFound(_) => Failure::new(EXIT_USAGE, e.to_string()),
        // The worker running the session stopped: said as is (docs/SCALE.md).
        Error::SessionLost { .. } => Failure::new(EXIT_FAILURE, e.to_string()),
        _ => connection_failure(e, ctx),
    }
}

/// Runtime failures, with the URL named and the cause chain kept when a gateway is involved.
fn connection_failure(e: &Error, ctx: Context<'_>) -> Failure {
    let text = chain(e);
    let Some(via) = ctx.via else {
        return Failure::new(EXIT_FAILURE, text);
    };
    let shown = redact_url(via);
    let mut f = Failure::new(EXIT_FAILURE, format!("gateway {shown}: {text}"));
    if text.contains("UnknownIssuer") || text.contains("CaUsedAsEndEntity") {
        f = f.hint(
            "the gateway's certificate is not trusted: set CONDUIT_TLS_CA to the PEM file of the \
             CA that signed it (a self-signed certificate needs CA:FALSE, see docs/GATEWAY.md)",
        );
    }
    if !is_tls(via) && looks_like_tls_on_the_other_end(&text) {
        f = f.hint(
            "the server did not answer plain HTTP: if it serves TLS, use wss://, https:// or \
             grpcs://",
        );
    }
    f
}

/// What a plain-text client sees when the server speaks TLS: no HTTP status line,
/// or an HTTP parser or HTTP/2 framing error.
fn looks_like_tls_on_the_other_end(text: &str) -> bool {
    [
        "no HTTP status line",
        "invalid HTTP version",
        "connection closed before message completed",
        "frame with invalid size",
        "received corrupt message",
        "invalid status",
        "HTTP/1.x",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_session_exits_4_with_its_display_and_urls_hide_passwords() {
        let e = Error::SessionLost {
            session_id: "s1".into(),
            worker: "w1".into(),
        };
        let f = classify(
            &e,
            Context {
                via: Some("redis://u:pw-secret@127.0.0.1:6379"),
            },
        );
        assert_eq!(f.code, EXIT_FAILURE);
        assert_eq!(f.message, "session s1 lost: worker w1 stopped");
        assert_eq!(redact_url("rediss://u:pw-secret@h:1/0"), "rediss://h:1/0");
        let f = classify(
            &Error::Closed,
            Context {
                via: Some("redis://:pw-secret@h:1"),
            },
        );
        assert!(!f.message.contains("pw-secret"), "{}", f.message);
    }

    fn transport(message: &str) -> Error {
        Error::transport(
            "POST /v1/sessions",
            std::io::Error::other(message.to_owned()),
        )
    }

    const WS: Context<'static> = Context {
        via: Some("ws://127.0.0.1:1"),
    };
    const GRPC: Context<'static> = Context {
        via: Some("grpc://127.0.0.1:1"),
    };

    #[test]
    fn refusals_are_usage_errors_with_the_gateways_reason_on_every_transport() {
        // As the SDK's transports type them: `creating a session: …` (WebSocket, HTTP) and
        // `CreateSession: …` (gRPC).
        for (message, ctx) in [
            ("creating a session: the flag --settings is not allowed", WS),
            ("CreateSession: the flag --settings is not allowed", GRPC),
        ] {
            let e = Error::gateway(GatewayErrorKind::Refused, None, message);
            let f = classify(&e, ctx);
            assert_eq!(
                (f.code, f.message.as_str()),
                (
                    EXIT_USAGE,
                    "gateway refused the options: the flag --settings is not allowed"
                )
            );
        }
        // Another kind from the gateway is not a refusal of the options.
        let e = Error::gateway(
            GatewayErrorKind::Unauthorized,
            None,
            "creating a session: no",
        );
        assert_ne!(classify(&e, WS).code, EXIT_USAGE);
        // Locally, an invalid option is not the gateway's doing.
        let f = classify(&Error::InvalidOptions("x".into()), Context::default());
        assert_eq!(
            (f.code, f.message.as_str()),
            (EXIT_USAGE, "invalid options: x")
        );
    }

    #[test]
    fn other_statuses_are_failures_naming_the_gateway() {
        let f = classify(&transport(r#"status 401: {"error":"no"}"#), WS);
        assert_eq!(f.code, EXIT_FAILURE);
        assert!(
            f.message.starts_with("gateway ws://127.0.0.1:1: "),
            "{}",
            f.message
        );
    }

    #[test]
    fn chain_keeps_every_cause_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = Error::transport("connecting", std::io::Error::other(inner));
        assert_eq!(chain(&outer), "transport error (connecting): refused");
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl std::fmt::Display for Repeats {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl std::error::Error for Repeats {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Repeats(std::io::Error::other(Repeats(std::io::Error::other(
            "Connection refused (os error 111)",
        ))));
        assert_eq!(
            chain(&e),
            "tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn tls_hints() {
        let f = classify(
            &transport("invalid peer certificate: UnknownIssuer"),
            Context {
                via: Some("wss://h:1"),
            },
        );
        assert!(
            f.hints.iter().any(|h| h.contains("CONDUIT_TLS_CA")),
            "{f:?}"
        );
        let plain = Error::gateway(
            GatewayErrorKind::Protocol,
            None,
            "creating a session: the reply (7 bytes) has no HTTP status line",
        );
        let f = classify(&plain, WS);
        assert!(f.hints.iter().any(|h| h.contains("wss://")), "{f:?}");
    }

    #[test]
    fn not_executable_is_exit_3_and_says_so() {
        let e = Error::Spawn {
            path: "/etc/passwd".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "it is not executable",
            ),
        };
        let f = classify(&e, Context::default());
        assert_eq!(f.code, EXIT_CLI_NOT_FOUND);
        assert_eq!(f.message, "cannot run /etc/passwd: it is not executable");
    }
}
