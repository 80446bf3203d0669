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
//!
//! The session's CLI runs on the gateway's machine. The client's [`Options`] travel as the CLI
//! flags they produce ([`SessionRequest::args`]) plus the working directory; the gateway checks
//! them against its policy and refuses what it does not allow. The environment, the CLI path and
//! the OS user of the client's options are not sent. Callbacks (permission, hooks, in-process MCP
//! tools) stay in the client: the control protocol runs end to end.

use serde::{Deserialize, Serialize};

use crate::Options;
use crate::error::{Error, Result};

/// The flags every SDK session passes; the gateway adds them itself.
const FIXED_ARGS: [&str; 3] = [
    "--output-format=stream-json",
    "--verbose",
    "--input-format=stream-json",
];

/// What `POST /v1/sessions` (and gRPC `CreateSession`) carries: the session options a client
/// asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionRequest {
    /// CLI flags, each `--name=value` or `--name` (as [`Options::argv`] writes them, without the
    /// fixed stream-json flags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The working directory for the CLI on the gateway's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

impl SessionRequest {
    /// The request that reproduces `options` on a gateway.
    pub fn from_options(options: &Options) -> Result<Self> {
        let args = options
            .argv()?
            .into_iter()
            .filter(|a| !FIXED_ARGS.contains(&a.as_str()))
            .collect();
        let cwd = match options.cwd() {
            Some(p) => Some(
                p.to_str()
                    .ok_or_else(|| {
                        Error::InvalidOptions(format!("cwd is not UTF-8: {}", p.display()))
                    })?
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Self { args, cwd })
    }

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

/// The wire a [`Remote`] speaks.
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
    /// Straight to the workers through Redis Streams (`redis://`; trusted internal clients,
    /// docs/SCALE.md). Credentials go in the URL; no bearer token.
    Redis,
    /// The same over TLS (`rediss://`).
    Rediss,
}

impl Scheme {
    /// Whether the connection uses TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Wss | Self::Https | Self::Grpcs | Self::Rediss)
    }
}

/// A gateway to run sessions on: its URL and bearer token. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    scheme: Scheme,
    authority: String,
    prefix: String,
    token: String,
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

impl Remote {
    /// Parse `scheme://host:port[/prefix]`. `subprocess` is not a remote (see
    /// [`OptionsBuilder::transport`](crate::options::OptionsBuilder::transport)).
    pub fn parse(url: &str, token: impl Into<String>) -> Result<Self> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::InvalidOptions(format!("transport URL needs a scheme: `{url}`"))
        })?;
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
                return Err(Error::InvalidOptions(format!(
                    "unknown transport scheme `{other}` (ws, wss, http, https, grpc, grpcs, \
                     redis, rediss or subprocess)"
                )));
            }
        };
        if matches!(scheme, Scheme::Redis | Scheme::Rediss) {
            // The Redis URL is the whole address (user and password included): kept as is.
            let host = rest.split('/').next().unwrap_or_default();
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if host.is_empty() {
                return Err(Error::InvalidOptions(
                    "a redis:// transport URL needs a host[:port]".into(),
                ));
            }
            return Ok(Self {
                scheme,
                authority: host.to_owned(),
                prefix: String::new(),
                token: url.to_owned(),
            });
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return Err(Error::InvalidOptions(format!(
                "transport URL needs a host[:port] (and no user info): `{url}`"
            )));
        }
        let path = path.trim_end_matches('/');
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        let token = token.into();
        if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(Error::InvalidOptions(
                "the bearer token must not contain spaces or control characters".into(),
            ));
        }
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            prefix,
            token,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
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

    /// The gateway's HTTP base URL: `http[s]://host:port[/prefix]` (for every scheme).
    pub fn http_base(&self) -> String {
        let s = if self.scheme.is_tls() {
            "https"
        } else {
            "http"
        };
        format!("{s}://{}{}", self.authority, self.prefix)
    }

    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }
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

/// Connect `options` to the gateway `remote` names.
#[cfg_attr(
    not(all(
        feature = "websocket",
        feature = "http",
        feature = "grpc",
        feature = "redis"
    )),
    allow(unused_variables)
)]
pub(crate) async fn connect(remote: Remote, options: Options) -> Result<crate::Client> {
    match remote.scheme() {
        #[cfg(feature = "websocket")]
        Scheme::Ws | Scheme::Wss => {
            let request = SessionRequest::from_options(&options)?;
            let t =
                crate::transport::websocket::WebSocketTransport::open_session(&remote, &request)
                    .await?;
            crate::Client::connect_with(t, options).await
        }
        #[cfg(not(feature = "websocket"))]
        Scheme::Ws | Scheme::Wss => Err(missing_feature("websocket")),
        #[cfg(feature = "http")]
        Scheme::Http | Scheme::Https => {
            let request = SessionRequest::from_options(&options)?;
            let t = crate::transport::http::HttpTransport::open_session(&remote, &request).await?;
            crate::Client::connect_with(t, options).await
        }
        #[cfg(not(feature = "http"))]
        Scheme::Http | Scheme::Https => Err(missing_feature("http")),
        #[cfg(feature = "grpc")]
        Scheme::Grpc | Scheme::Grpcs => {
            let request = SessionRequest::from_options(&options)?;
            let t = crate::transport::grpc::GrpcTransport::open_session(&remote, &request).await?;
            crate::Client::connect_with(t, options).await
        }
        #[cfg(not(feature = "grpc"))]
        Scheme::Grpc | Scheme::Grpcs => Err(missing_feature("grpc")),
        #[cfg(feature = "redis")]
        Scheme::Redis | Scheme::Rediss => {
            let request = SessionRequest::from_options(&options)?;
            // For `redis://` the "token" is the whole URL (see `Remote::parse`).
            let t = crate::transport::redis::RedisTransport::open_session(remote.token(), &request)
                .await?;
            crate::Client::connect_with(t, options).await
        }
        #[cfg(not(feature = "redis"))]
        Scheme::Redis | Scheme::Rediss => Err(missing_feature("redis")),
    }
}

#[cfg(not(all(
    feature = "websocket",
    feature = "http",
    feature = "grpc",
    feature = "redis"
)))]
fn missing_feature(name: &'static str) -> Error {
    Error::FeatureDisabled(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let r = Remote::parse("ws://127.0.0.1:8992", "t").unwrap();
        assert_eq!(r.scheme(), Scheme::Ws);
        assert_eq!(r.http_base(), "http://127.0.0.1:8992");
        let r = Remote::parse("GRPCS://h:1/gw/", "t").unwrap();
        assert_eq!(r.scheme(), Scheme::Grpcs);
        assert_eq!(r.http_base(), "https://h:1/gw");
        assert_eq!(r.prefix(), "/gw");
        for bad in ["127.0.0.1:1", "ftp://h", "ws://", "ws://u@h:1"] {
            assert!(Remote::parse(bad, "t").is_err(), "{bad}");
        }
        assert!(Remote::parse("ws://h:1", "a b").is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let r = Remote::parse("ws://h:1", "s3cr3t-token").unwrap();
        assert!(!format!("{r:?}").contains("s3cr3t"));
        let r = Remote::parse("redis://u:pw-s3cr3t@h:6379/0", "").unwrap();
        assert_eq!(r.scheme(), Scheme::Redis);
        assert_eq!(r.authority(), "h:6379");
        assert!(!format!("{r:?}").contains("s3cr3t"));
        assert!(Remote::parse("rediss://", "").is_err());
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
