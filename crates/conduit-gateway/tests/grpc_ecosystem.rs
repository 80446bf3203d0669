//! The gRPC ecosystem's services on the gateway's gRPC listener (127.0.0.1, `mock-claude`):
//! `grpc.health.v1.Health` (Check open to probes without a token, Watch and everything else
//! behind the token, `NOT_SERVING` at shutdown) and server reflection (v1 and v1alpha, behind the
//! token) listing the conduit service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use claude_conduit::transport::GatewayTransport;
use claude_conduit::transport::grpc::GrpcTransport;
use claude_conduit::transport::http::HttpTransport;
use claude_conduit::transport::websocket::WebSocketTransport;
use claude_conduit::{Error, GatewayErrorKind};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::{v1, v1alpha};

mod support;
use support::*;

const SERVICE: &str = "conduit.v1.Conduit";

async fn channel(gw: &Running) -> Channel {
    Endpoint::from_shared(format!("http://{}", gw.grpc()))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

fn with_token<M>(message: M) -> Request<M> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_is_open_to_probes_and_says_serving() {
    let gw = start(config(&[])).await;
    let mut health = HealthClient::new(channel(&gw).await);
    for service in ["", SERVICE] {
        let reply = health.check(check(service)).await.expect("no token needed");
        assert_eq!(
            reply.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = health.check(check("nope.v1.Nope")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // The SDK's health check of every wire (no token either).
    let anonymous = |url: String| claude_conduit::remote::Remote::parse(&url, "").unwrap();
    GrpcTransport::health(&anonymous(gw.grpc_url()))
        .await
        .expect("gRPC health");
    WebSocketTransport::health(&anonymous(format!("ws://{}", gw.addr)))
        .await
        .expect("WebSocket listener health");
    HttpTransport::health(&anonymous(gw.url()))
        .await
        .expect("HTTP health");
    gw.shutdown().await;
    let gone = GrpcTransport::health(&anonymous(format!("grpc://{}", gw_closed_addr())))
        .await
        .unwrap_err();
    assert_eq!(
        gone.gateway_kind(),
        Some(GatewayErrorKind::Unavailable),
        "{gone}"
    );
}

/// An address nobody listens on.
fn gw_closed_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The outsider: without a token, only the small Check gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reflection_and_big_checks_need_the_token() {
    let gw = start(config(&[])).await;
    let ch = channel(&gw).await;
    let watch = HealthClient::new(ch.clone()).watch(check("")).await;
    assert_eq!(watch.unwrap_err().code(), Code::Unauthenticated);
    // A probe's request names one service: a big one is refused before it is buffered.
    let big = HealthClient::new(ch.clone())
        .check(check(&"x".repeat(4096)))
        .await
        .unwrap_err();
    assert_eq!(big.code(), Code::ResourceExhausted, "{big:?}");
    let list = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let refused = v1::server_reflection_client::ServerReflectionClient::new(ch.clone())
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // Another route without a token is still refused.
    let sessions = claude_conduit_proto::ConduitClient::new(ch)
        .list_sessions(claude_conduit_proto::v1::ListSessionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(sessions.code(), Code::Unauthenticated);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_conduit_service_and_describes_it() {
    let gw = start(config(&[])).await;
    let ch = channel(&gw).await;

    // v1
    let requests = [
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(SERVICE.into()),
    ]
    .map(|m| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut replies = v1::server_reflection_client::ServerReflectionClient::new(ch.clone())
        .server_reflection_info(with_token(tokio_stream::iter(requests)))
        .await
        .expect("reflection with the token")
        .into_inner();
    let services = match replies.message().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    for name in [SERVICE, "grpc.health.v1.Health"] {
        assert!(services.iter().any(|s| s == name), "{name} in {services:?}");
    }
    match replies.message().await.unwrap().unwrap().message_response {
        Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => {
            let file = &f.file_descriptor_proto[0];
            let text = String::from_utf8_lossy(file);
            assert!(
                text.contains("conduit.proto") && text.contains("Conduit"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }

    // v1alpha (older grpcurl and tools)
    let list = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut replies = v1alpha::server_reflection_client::ServerReflectionClient::new(ch)
        .server_reflection_info(with_token(tokio_stream::iter([list])))
        .await
        .expect("v1alpha reflection with the token")
        .into_inner();
    match replies.message().await.unwrap().unwrap().message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            assert!(l.service.iter().any(|s| s.name == SERVICE), "{l:?}");
        }
        other => panic!("{other:?}"),
    }
    gw.shutdown().await;
}

/// A watcher sees `NOT_SERVING` when shutdown begins, then its stream ends (it does not hold
/// the listener open); afterwards nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_not_serving_at_shutdown() {
    let gw = start(config(&[])).await;
    let grpc = gw.grpc_remote();
    let mut watch = HealthClient::new(channel(&gw).await)
        .watch(with_token(check("")))
        .await
        .expect("watch with the token")
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let shutdown = tokio::spawn(gw.shutdown());
    let next = tokio::time::timeout(T, watch.message())
        .await
        .expect("in time")
        .expect("a status")
        .expect("not the end yet");
    assert_eq!(next.status(), ServingStatus::NotServing);
    let end = tokio::time::timeout(T, watch.message())
        .await
        .expect("in time");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    tokio::time::timeout(T, shutdown)
        .await
        .expect("shutdown is not held by the watcher")
        .unwrap();
    let e: Error = GrpcTransport::health(&grpc).await.unwrap_err();
    assert_eq!(e.gateway_kind(), Some(GatewayErrorKind::Unavailable), "{e}");
}
