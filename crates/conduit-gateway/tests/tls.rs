//! The real gateway over TLS (a self-signed certificate made by rcgen) on 127.0.0.1, port 0, with
//! `mock-claude` as the CLI: HTTPS, plain HTTP refused, full SDK sessions over `wss://`,
//! `https://` and `grpcs://`, plain gRPC refused by the TLS gRPC listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use claude_conduit::remote::{Remote, SessionRequest};
use claude_conduit::transport::GatewayTransport;
use claude_conduit::transport::tls;
use claude_conduit::transport::websocket::WebSocketTransport;
use claude_conduit::{Client, Message, Options};
use claude_conduit_gateway::{GatewayConfig, GatewayError};
use futures::StreamExt;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::*;

/// A self-signed certificate for 127.0.0.1 and localhost: (dir, cert.pem, key.pem).
fn self_signed() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("rcgen");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (dir, cert, key)
}

fn config(cert: &Path, key: &Path) -> GatewayConfig {
    support::config(&[]).tls(cert, key)
}

/// `GET path` over TLS with `config`; the status line's code.
async fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<u16> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&out);
    Ok(text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_health_with_a_trusted_cert_and_plain_http_fails() {
    let (_dir, cert, key) = self_signed();
    let gw = start(config(&cert, &key)).await;
    let trusting = tls::client_config(Some(&cert)).expect("client config");

    let status = tokio::time::timeout(T, https_get(gw.addr, trusting.clone(), "/health", None))
        .await
        .expect("in time")
        .expect("https");
    assert_eq!(status, 200);
    let status = tokio::time::timeout(
        T,
        https_get(gw.addr, trusting.clone(), "/v1/sessions", Some(TOKEN)),
    )
    .await
    .expect("in time")
    .expect("https");
    assert_eq!(status, 200);

    // A client that does not trust the self-signed certificate fails the handshake.
    let webpki_only = tls::client_config(None).unwrap();
    let r = tokio::time::timeout(T, https_get(gw.addr, webpki_only, "/health", None))
        .await
        .expect("in time");
    assert!(r.is_err(), "an untrusted certificate was accepted: {r:?}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("the gateway hangs up on plain HTTP");
    assert!(
        !String::from_utf8_lossy(&out).starts_with("HTTP/"),
        "plain HTTP was served on the TLS port: {:?}",
        String::from_utf8_lossy(&out)
    );

    // The TLS port still works after the failed handshakes.
    let status = tokio::time::timeout(T, https_get(gw.addr, trusting, "/health", None))
        .await
        .expect("in time")
        .expect("https");
    assert_eq!(status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_session_over_wss() {
    let (cert, key) = trust_shared_cert();
    let gw = start(config(cert, key)).await;

    let options = Options::builder()
        .transport(format!("wss://{}", gw.addr), TOKEN)
        .build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .expect("connect over wss:// + initialize");
    assert_eq!(client.cli_version(), Some("2.1.330"));
    for turn in 0..2 {
        client.send("hello").await.expect("send");
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .expect("turn in time")
                .into_iter()
                .map(|m| m.expect("no errors"))
                .collect();
        assert!(
            items.iter().any(|m| m.as_assistant().is_some()),
            "turn {turn}"
        );
        let result = items
            .last()
            .and_then(Message::as_result)
            .expect("result last");
        assert!(!result.is_error);
    }
    tokio::time::timeout(T, client.disconnect())
        .await
        .expect("disconnect in time")
        .expect("disconnect");

    // The hand-written HTTP/1.1 of create_session speaks https:// too.
    let id = tokio::time::timeout(
        T,
        WebSocketTransport::create_session(
            &Remote::parse(&format!("wss://{}", gw.addr), TOKEN).unwrap(),
            &SessionRequest::default(),
        ),
    )
    .await
    .expect("in time")
    .expect("create over https");
    assert!(!id.is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_fail_bind_clearly() {
    let (dir, cert, key) = self_signed();
    let missing = dir.path().join("missing.pem");
    let e = claude_conduit_gateway::Gateway::bind(config(&missing, &key))
        .await
        .unwrap_err();
    assert!(
        matches!(e, GatewayError::Tls(_)) && e.to_string().contains("missing.pem"),
        "{e}"
    );
    // The key file given as the certificate: no certificate in it.
    let e = claude_conduit_gateway::Gateway::bind(config(&key, &key))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("key.pem"), "{e}");
    // The certificate given as the key.
    let e = claude_conduit_gateway::Gateway::bind(config(&cert, &cert))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cert.pem"), "{e}");
}

/// One self-signed certificate for every test that relies on the process-wide client config
/// (they run concurrently): made once, trusted with
/// [`tls::set_default_client_config`]. Returns (cert.pem, key.pem).
fn trust_shared_cert() -> (&'static Path, &'static Path) {
    static SHARED: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, cert, key) = SHARED.get_or_init(|| {
        let shared = self_signed();
        tls::set_default_client_config(tls::client_config(Some(&shared.1)).unwrap());
        shared
    });
    (cert, key)
}

/// A TLS gateway that also serves gRPC (over TLS, with the same certificate); its gRPC address.
async fn start_with_grpc(cert: &Path, key: &Path) -> (Running, SocketAddr) {
    let gw = start(config(cert, key)).await;
    let grpc = gw.grpc();
    (gw, grpc)
}

/// A full SDK session through `url`: connect + initialize, two turns, disconnect.
async fn two_turns(url: String) {
    let options = Options::builder().transport(url.clone(), TOKEN).build();
    let client = tokio::time::timeout(T, Client::connect(options))
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("connect over {url} + initialize: {e}"));
    assert_eq!(client.cli_version(), Some("2.1.330"));
    for turn in 0..2 {
        client.send("hello").await.expect("send");
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .expect("turn in time")
                .into_iter()
                .map(|m| m.expect("no errors"))
                .collect();
        assert!(
            items.iter().any(|m| m.as_assistant().is_some()),
            "{url} turn {turn}"
        );
        let result = items
            .last()
            .and_then(Message::as_result)
            .expect("result last");
        assert!(!result.is_error, "{url}");
    }
    tokio::time::timeout(T, client.disconnect())
        .await
        .expect("disconnect in time")
        .expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_sessions_over_https_and_grpcs() {
    let (cert, key) = trust_shared_cert();
    let (gw, grpc) = start_with_grpc(cert, key).await;
    two_turns(format!("https://{}", gw.addr)).await;
    two_turns(format!("grpcs://{grpc}")).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_grpc_to_a_tls_grpc_listener_fails_clearly() {
    use claude_conduit::transport::grpc::GrpcTransport;

    let (cert, key) = trust_shared_cert();
    let (gw, grpc) = start_with_grpc(cert, key).await;
    let request = SessionRequest::default();

    let r = tokio::time::timeout(
        T,
        GrpcTransport::create_session(
            &Remote::parse(&format!("grpc://{grpc}"), TOKEN).unwrap(),
            &request,
        ),
    )
    .await
    .expect("a plain gRPC client gets an answer in time");
    let e = r.expect_err("plain gRPC was served on the TLS gRPC port");
    assert!(
        e.gateway_kind() == Some(claude_conduit::GatewayErrorKind::Unavailable)
            && e.to_string().contains("connect"),
        "not a connection error: {e:?}"
    );

    // A client that does not trust the certificate fails its handshake (the process default
    // trusts it: use a config without the extra CA through a raw TLS connection).
    let tcp = tokio::net::TcpStream::connect(grpc).await.unwrap();
    let mut untrusting = (*tls::client_config(None).unwrap()).clone();
    untrusting.alpn_protocols = vec![b"h2".to_vec()];
    let handshake = tokio::time::timeout(
        T,
        tokio_rustls::TlsConnector::from(Arc::new(untrusting))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
    )
    .await
    .expect("in time");
    assert!(handshake.is_err(), "an untrusted certificate was accepted");

    // The TLS gRPC listener still works, and negotiates h2.
    let tcp = tokio::net::TcpStream::connect(grpc).await.unwrap();
    let mut trusting = (*tls::client_config(Some(cert)).unwrap()).clone();
    trusting.alpn_protocols = vec![b"h2".to_vec()];
    let stream = tokio::time::timeout(
        T,
        tokio_rustls::TlsConnector::from(Arc::new(trusting))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
    )
    .await
    .expect("in time")
    .expect("TLS to the gRPC listener");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);
    let id = tokio::time::timeout(
        T,
        GrpcTransport::create_session(
            &Remote::parse(&format!("grpcs://{grpc}"), TOKEN).unwrap(),
            &request,
        ),
    )
    .await
    .expect("in time")
    .expect("create over grpcs://");
    assert!(!id.is_empty());
    gw.shutdown().await;
}
