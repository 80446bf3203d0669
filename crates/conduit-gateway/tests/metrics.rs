//! `GET /metrics` on the real gateway (127.0.0.1, mock-claude): bearer auth unless
//! `metrics_public`, an exposition a Prometheus parser reads, the session and front counters,
//! alert rules from the config, and no secret anywhere in it.
//!
//! One process holds one recorder: every test here shares it, so counts are compared as
//! "at least" or as differences, never as absolute totals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use claude_conduit::remote::SessionRequest;
use claude_conduit::telemetry::AlertRule;
use claude_conduit::transport::GatewayTransport;
use claude_conduit::transport::websocket::WebSocketTransport;
use claude_conduit::{Client, Message, Options};
use claude_conduit_gateway::GatewayConfig;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::*;

const API_KEY: &str = "sk-ant-api03-metrics-secret-0123456789";

fn metrics_config(public: bool) -> GatewayConfig {
    let o = Options::builder()
        .cli_path(mock_claude())
        .env("MOCK_CLAUDE_MESSAGES", "10")
        .env("ANTHROPIC_API_KEY", API_KEY);
    config(&[])
        .options(o.build())
        .metrics_public(public)
        .metrics_interval(Duration::from_millis(50))
        .alert(AlertRule::above(
            "has-sessions",
            "conduit_gateway_sessions",
            0.0,
            Duration::ZERO,
        ))
}

/// `GET /metrics`: status and body.
async fn get_metrics(addr: SocketAddr, token: Option<&str>) -> (u16, String) {
    let mut req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // A chunked body: good enough to strip the chunk sizes for the parser? Ask for the length.
    (status, dechunk(head, body))
}

fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_bearer_token() {
    let gw = start(metrics_config(false)).await;
    let (status, body) = get_metrics(gw.addr, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("conduit_"), "nothing before auth: {body}");
    let (status, _) = get_metrics(gw.addr, Some("wrong-token-0123456789")).await;
    assert_eq!(status, 401);
    let (status, body) = get_metrics(gw.addr, Some(TOKEN)).await;
    assert_eq!(status, 200);
    let scrape = parse(&body);
    assert!(
        value(
            &scrape,
            "conduit_gateway_auth_failures_total",
            &[("front", "http")]
        ) >= 2.0
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_public_serves_without_a_token_and_off_means_404() {
    let gw = start(metrics_config(true)).await;
    let (status, body) = get_metrics(gw.addr, None).await;
    assert_eq!(status, 200, "{body}");
    parse(&body);
    gw.shutdown().await;
    let gw = start(metrics_config(false).metrics(false)).await;
    let (status, _) = get_metrics(gw.addr, Some(TOKEN)).await;
    assert_eq!(status, 404);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_counted_the_alert_fires_and_no_secret_is_exposed() {
    let gw = start(metrics_config(false)).await;
    let before = parse(&get_metrics(gw.addr, Some(TOKEN)).await.1);
    let out_before = value(
        &before,
        "conduit_gateway_frames_total",
        &[("direction", "out"), ("front", "ws")],
    );
    let id = WebSocketTransport::create_session(&gw.ws_remote(), &SessionRequest::default())
        .await
        .unwrap();
    let transport = WebSocketTransport::new(&gw.ws_remote(), id);
    let client = tokio::time::timeout(T, Client::connect_with(transport, Options::default()))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..2 {
        client.send("hello").await.unwrap();
        let items: Vec<Message> =
            tokio::time::timeout(T, client.receive_response().collect::<Vec<_>>())
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.unwrap())
                .collect();
        assert!(items.last().and_then(Message::as_result).is_some());
    }
    // The alert on live sessions fires at a snapshot (every 50 ms here).
    let mut text = String::new();
    for _ in 0..200 {
        text = get_metrics(gw.addr, Some(TOKEN)).await.1;
        if value(
            &parse(&text),
            "conduit_alerts_firing",
            &[("rule", "has-sessions")],
        ) == 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scrape = parse(&text);
    assert_eq!(
        value(
            &scrape,
            "conduit_alerts_firing",
            &[("rule", "has-sessions")]
        ),
        1.0,
        "{text}"
    );
    assert!(value(&scrape, "conduit_gateway_sessions", &[]) >= 1.0);
    assert!(value(&scrape, "conduit_gateway_sessions_created_total", &[]) >= 1.0);
    assert!(value(&scrape, "conduit_gateway_turns_total", &[]) >= 2.0);
    let out = value(
        &scrape,
        "conduit_gateway_frames_total",
        &[("direction", "out"), ("front", "ws")],
    );
    // init + 10 assistant frames + result per turn, and the initialize reply.
    assert!(out - out_before >= 24.0, "{out_before} -> {out}");
    assert!(
        value(
            &scrape,
            "conduit_gateway_frames_total",
            &[("direction", "in"), ("front", "ws")]
        ) >= 3.0
    );
    assert!(
        value(
            &scrape,
            "conduit_process_resident_memory_bytes",
            &[("process", "self")]
        ) > 0.0
    );
    // Prometheus conventions: our prefix, HELP/TYPE from the descriptions.
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.metric.starts_with("conduit_")),
        "{text}"
    );
    assert!(
        text.contains("# TYPE conduit_gateway_sessions gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE conduit_gateway_frames_total counter"),
        "{text}"
    );
    // No secret, no session id.
    for secret in [TOKEN, OTHER, API_KEY] {
        assert!(!text.contains(secret), "secret in the exposition");
    }
    assert!(
        !text.contains(&gw.only_session().id),
        "a session id is a label"
    );
    drop(client);
    gw.shutdown().await;
}
