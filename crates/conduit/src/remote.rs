//! Remote sessions: where a conduit gateway is ([`Remote`]) and what a client asks it for
//! ([`SessionRequest`]).
//!
//! [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport) picks the transport by
//! URL; [`Client::connect`](crate::Client::connect) and [`query`](crate::query) then create a
//! session on the gateway and speak to it over the transport the scheme names:
//!
//! | scheme | transport | cargo feature |
//! |---|---|---|
//! | `subprocess` (default) | [`SubprocessTransport`](crate::transport::SubprocessTransport) | — |
//! | `ws://`, `wss://` | `transport::websocket::WebSocketTransport` | `websocket` (+ `tls` for `wss://`) |
//! | `http://`, `https://` | `transport::http::HttpTransport` (POST frames, server-sent events) | `http` (+ `tls` for `https://`) |
//! | `grpc://`, `grpcs://` | `transport::grpc::GrpcTransport` | `grpc` (+ `tls` for `grpcs://`) |
//! | `redis://`, `rediss://` | `transport::redis::RedisTransport` (a trusted internal client; no gateway, no token: credentials are in the URL) | `redis` (+ `tls` for `rediss://`) |
//!
//! The session's CLI runs on the gateway's machine. The client's [`Options`](crate::Options)
//! travel as the CLI flags they produce ([`SessionRequest::args`]) plus the working directory;
//! the gateway checks them against its policy and refuses what it does not allow. The
//! environment, the CLI path and the OS user of the client's options are not sent. Callbacks
//! (permission, hooks, in-process MCP tools) stay in the client: the control protocol runs end
//! to end.
//!
//! This module holds values only: [`Remote`] is parsed once, when
//! [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport) is called, and knows
//! each wire's URL ([`Remote::ws_url`], [`Remote::http_url`], [`Remote::grpc_endpoint`]); every
//! network transport is built from a `Remote` and a session id
//! (`transport::GatewayTransport`). `session::connect` is the one place that decides between the
//! local subprocess and a gateway.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What `POST /v1/sessions` (and gRPC `CreateSession`) carries: the session options a client
/// asks for. [`SessionRequest::from_options`] builds one from [`Options`](crate::Options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionRequest {
    /// CLI flags, each `--name=value` or `--name` (as [`Options::argv`](crate::Options::argv)
    /// writes them, without the fixed stream-json flags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The working directory for the CLI on the gateway's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

impl SessionRequest {
    /// A request with these flags and no working directory.
    pub fn with_args(args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            cwd: None,
        }
    }

    /// Set the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// The flags split into `(name, value)`: `--model=x` → `("model", Some("x"))`,
    /// `--verbose` → `("verbose", None)`. Anything that is not a `--flag` is an error.
    pub fn flags(&self) -> Result<Vec<(&str, Option<&str>)>> {
        self.args
            .iter()
            .map(|a| {
                let body = a
                    .strip_prefix("--")
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        Error::InvalidOptions(format!("not a `--flag` argument: `{a}`"))
                    })?;
                Ok(match body.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (body, None),
                })
            })
            .collect()
    }
}

/// The URL scheme of a [`Remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// WebSocket (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
    /// Plain HTTP: POST frames, server-sent events (`http://`).
    Http,
    /// The same over TLS (`https://`).
    Https,
    /// gRPC (`grpc://`).
    Grpc,
    /// gRPC over TLS (`grpcs://`).
    Grpcs,
    /// `redis://`: Redis Streams, straight to the workers (feature `redis`).
    Redis,
    /// `rediss://`: Redis over TLS.
    Rediss,
}

impl Scheme {
    /// Whether the connection uses TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Wss | Self::Https | Self::Grpcs | Self::Rediss)
    }

    /// The wire the scheme names.
    pub fn wire(self) -> Wire {
        match self {
            Self::Ws | Self::Wss => Wire::WebSocket,
            Self::Http | Self::Https => Wire::Http,
            Self::Grpc | Self::Grpcs => Wire::Grpc,
            Self::Redis | Self::Rediss => Wire::Redis,
        }
    }
}

/// The wires a gateway speaks (docs/WIRE.md), each a transport behind a cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wire {
    /// `transport::websocket` (feature `websocket`).
    WebSocket,
    /// `transport::http` (feature `http`).
    Http,
    /// `transport::grpc` (feature `grpc`).
    Grpc,
    /// Redis Streams (`transport::redis`).
    Redis,
}

impl Wire {
    /// The cargo feature of the wire's transport.
    pub fn feature(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Http => "http",
            Self::Grpc => "grpc",
            Self::Redis => "redis",
        }
    }
}

/// A gateway to run sessions on: its URL and bearer token, parsed and checked once. `Debug`
/// never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    scheme: Scheme,
    authority: String,
    prefix: String,
    token: String,
    /// A Redis remote's whole URL (it may carry a password: never in `Debug`).
    redis: Option<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why a transport URL cannot be used: kept (it is `Clone`, unlike [`Error`]) from
/// [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport) until connecting
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadRemote {
    Invalid(String),
    FeatureDisabled(&'static str),
}

impl From<BadRemote> for Error {
    fn from(b: BadRemote) -> Self {
        match b {
            BadRemote::Invalid(m) => Error::InvalidOptions(m),
            BadRemote::FeatureDisabled(f) => Error::FeatureDisabled(f),
        }
    }
}

impl Remote {
    /// Parse `scheme://host:port[/prefix]` (a gRPC URL has no prefix) with the bearer `token`.
    /// `subprocess` is not a remote (see
    /// [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport)). A TLS scheme
    /// without the `tls` cargo feature is [`Error::FeatureDisabled`].
    pub fn parse(url: &str, token: impl Into<String>) -> Result<Self> {
        Ok(Self::checked(url, token.into())?)
    }

    pub(crate) fn checked(url: &str, token: String) -> std::result::Result<Self, BadRemote> {
        let invalid = |m: String| Err(BadRemote::Invalid(m));
        let Some((scheme, rest)) = url.trim().split_once("://") else {
            return invalid(format!("transport URL needs a scheme: `{url}`"));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "grpc" => Scheme::Grpc,
            "grpcs" => Scheme::Grpcs,
            "redis" => Scheme::Redis,
            "rediss" => Scheme::Rediss,
            other => {
                return invalid(format!(
                    "unknown transport scheme `{other}` (ws, wss, http, https, grpc, grpcs, \
                     redis, rediss or subprocess)"
                ));
            }
        };
        if scheme.wire() == Wire::Redis {
            // The Redis URL is the whole address, user and password included: kept as it is
            // (`Remote::redis_url`); `authority` is the host alone, for messages.
            let host = rest.split('/').next().unwrap_or_default();
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if host.is_empty() {
                return invalid("a redis:// transport URL needs a host[:port]".into());
            }
            if scheme.is_tls() && !cfg!(feature = "tls") {
                return Err(BadRemote::FeatureDisabled("tls"));
            }
            return Ok(Self {
                scheme,
                authority: host.to_owned(),
                prefix: String::new(),
                token: String::new(),
                redis: Some(url.trim().to_owned()),
            });
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return invalid(format!(
                "transport URL needs a host[:port] (and no user info): `{url}`"
            ));
        }
        let path = path.trim_end_matches('/');
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        if scheme.wire() == Wire::Grpc && !prefix.is_empty() {
            return invalid(format!("a gRPC gateway URL has no path (got `{prefix}`)"));
        }
        if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return invalid(
                "the bearer token must not contain spaces or control characters".into(),
            );
        }
        if scheme.is_tls() && !cfg!(feature = "tls") {
            return Err(BadRemote::FeatureDisabled("tls"));
        }
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            prefix,
            token,
            redis: None,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The wire the scheme names.
    pub fn wire(&self) -> Wire {
        self.scheme.wire()
    }

    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme.is_tls()
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path prefix the gateway is mounted under (`""` or `/something`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The gateway's HTTP base URL, `http[s]://host:port[/prefix]` (for every scheme: sessions
    /// are created and `/health` answered over HTTP on the WebSocket listener too).
    pub fn http_url(&self) -> String {
        let s = if self.is_tls() { "https" } else { "http" };
        format!("{s}://{}{}", self.authority, self.prefix)
    }

    /// The gateway's WebSocket base URL, `ws[s]://host:port[/prefix]`.
    pub fn ws_url(&self) -> String {
        let s = if self.is_tls() { "wss" } else { "ws" };
        format!("{s}://{}{}", self.authority, self.prefix)
    }

    /// The gateway's gRPC endpoint as HTTP/2 clients name it, `http[s]://host:port`.
    pub fn grpc_endpoint(&self) -> String {
        let s = if self.is_tls() { "https" } else { "http" };
        format!("{s}://{}", self.authority)
    }

    /// The whole `redis[s]://[user:password@]host:port[/db]` URL of a Redis remote (it carries
    /// its own credentials; there is no bearer token); `None` for a gateway.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis.as_deref()
    }
}

/// A new session id: 128 random bits as hex (the gateway's and a Redis session's), unique in
/// this process and unguessable.
pub fn new_session_id() -> String {
    use std::hash::{BuildHasher, Hasher, RandomState};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut id = String::with_capacity(32);
    for salt in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}

/// `url` without its user info (`redis://user:password@host` → `redis://host`): a URL in a
/// message or a `Debug` never shows a password.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    #[test]
    fn redis_urls_keep_their_credentials_out_of_debug() {
        let r = Remote::parse("redis://app:s3cret@127.0.0.1:6379/2", "").unwrap();
        assert_eq!((r.scheme(), r.wire()), (Scheme::Redis, Wire::Redis));
        assert_eq!(r.authority(), "127.0.0.1:6379");
        assert_eq!(r.redis_url(), Some("redis://app:s3cret@127.0.0.1:6379/2"));
        assert_eq!(r.token(), "");
        assert!(!format!("{r:?}").contains("s3cret"));
        assert_eq!(
            redact_url("redis://app:s3cret@127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert!(
            Remote::parse("ws://h:1", "t")
                .unwrap()
                .redis_url()
                .is_none()
        );
        assert!(matches!(
            Remote::parse("redis://", ""),
            Err(Error::InvalidOptions(_))
        ));
    }

    #[test]
    fn parses_urls() {
        let r = Remote::parse("ws://127.0.0.1:8992", "t").unwrap();
        assert_eq!(r.scheme(), Scheme::Ws);
        assert_eq!(r.wire(), Wire::WebSocket);
        assert_eq!(r.http_url(), "http://127.0.0.1:8992");
        assert_eq!(r.ws_url(), "ws://127.0.0.1:8992");
        let r = Remote::parse("HTTP://h:1/gw/", "t").unwrap();
        assert_eq!((r.wire(), r.prefix()), (Wire::Http, "/gw"));
        assert_eq!(r.http_url(), "http://h:1/gw");
        assert_eq!(r.ws_url(), "ws://h:1/gw");
        let r = Remote::parse("grpc://h:2", "t").unwrap();
        assert_eq!(r.grpc_endpoint(), "http://h:2");
        assert_eq!(r.wire(), Wire::Grpc);
        for bad in [
            "127.0.0.1:1",
            "ftp://h",
            "ws://",
            "ws://u@h:1",
            "grpc://h:1/prefix",
        ] {
            assert!(
                matches!(Remote::parse(bad, "t"), Err(Error::InvalidOptions(_))),
                "{bad}"
            );
        }
        assert!(Remote::parse("ws://h:1", "a b").is_err());
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_urls() {
        let r = Remote::parse("GRPCS://h:1/", "t").unwrap();
        assert_eq!((r.scheme(), r.is_tls()), (Scheme::Grpcs, true));
        assert_eq!(r.grpc_endpoint(), "https://h:1");
        let r = Remote::parse("wss://h:1/gw", "t").unwrap();
        assert_eq!(r.ws_url(), "wss://h:1/gw");
        assert_eq!(r.http_url(), "https://h:1/gw");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_urls_need_the_feature() {
        assert!(matches!(
            Remote::parse("wss://h:1", "t"),
            Err(Error::FeatureDisabled("tls"))
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let r = Remote::parse("ws://h:1", "s3cr3t-token").unwrap();
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn request_from_options_drops_fixed_flags() {
        let o = Options::builder()
            .model("m")
            .include_partial_messages(true)
            .cwd("/tmp")
            .build();
        let r = SessionRequest::from_options(&o).unwrap();
        assert_eq!(r.cwd.as_deref(), Some("/tmp"));
        assert!(r.args.contains(&"--model=m".to_owned()));
        assert!(r.args.contains(&"--include-partial-messages".to_owned()));
        assert!(!r.args.iter().any(|a| a.starts_with("--output-format")));
        let flags = r.flags().unwrap();
        assert!(flags.contains(&("model", Some("m"))));
        assert!(flags.contains(&("include-partial-messages", None)));
        assert!(SessionRequest::with_args(["model=x"]).flags().is_err());
        let json = serde_json::to_value(&r).unwrap();
        let back: SessionRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<SessionRequest>(r#"{"model":"x"}"#).is_err());
    }
}
