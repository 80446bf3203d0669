//! The one place that decides where a session runs: the local `claude` subprocess, or a gateway
//! over the wire its URL names (see [`crate::remote`]).

use crate::error::{Error, Result};
use crate::options::Options;
use crate::remote::{Remote, SessionRequest};
use crate::session::Client;

/// Connect `options`: to the gateway [`Options::remote`] names, else to a local subprocess.
/// `span` is the session's `conduit.session` span.
pub(crate) async fn connect(options: Options, span: tracing::Span) -> Result<Client> {
    match options.remote()? {
        Some(remote) => connect_remote(remote, options, span).await,
        None => {
            let transport = options.subprocess_transport()?;
            Client::connect_in(transport, options, span).await
        }
    }
}

/// Create a session on `remote` for `options` and connect over its wire.
#[cfg_attr(
    not(any(
        feature = "websocket",
        feature = "http",
        feature = "grpc",
        feature = "redis"
    )),
    allow(unused_variables)
)]
async fn connect_remote(remote: Remote, options: Options, span: tracing::Span) -> Result<Client> {
    let request = SessionRequest::from_options(&options)?;
    match remote.wire() {
        #[cfg(feature = "websocket")]
        crate::remote::Wire::WebSocket => {
            open::<crate::transport::websocket::WebSocketTransport>(
                &remote, &request, options, span,
            )
            .await
        }
        #[cfg(feature = "http")]
        crate::remote::Wire::Http => {
            open::<crate::transport::http::HttpTransport>(&remote, &request, options, span).await
        }
        #[cfg(feature = "grpc")]
        crate::remote::Wire::Grpc => {
            open::<crate::transport::grpc::GrpcTransport>(&remote, &request, options, span).await
        }
        #[cfg(feature = "redis")]
        crate::remote::Wire::Redis => {
            // No gateway: the session is requested from the workers through Redis directly, with
            // the credentials of the URL (`OptionsBuilder::transport_url`).
            let url = remote.redis_url().unwrap_or_default();
            let transport =
                crate::transport::redis::RedisTransport::open_session(url, &request).await?;
            Client::connect_in(transport, options, span).await
        }
        #[allow(unreachable_patterns)]
        wire => Err(Error::FeatureDisabled(wire.feature())),
    }
}

#[cfg(any(feature = "websocket", feature = "http", feature = "grpc"))]
async fn open<T: crate::transport::GatewayTransport>(
    remote: &Remote,
    request: &SessionRequest,
    options: Options,
    span: tracing::Span,
) -> Result<Client> {
    let transport = T::open_session(remote, request).await?;
    Client::connect_in(transport, options, span).await
}
