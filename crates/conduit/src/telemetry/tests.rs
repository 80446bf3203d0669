use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::events::{Event, EventBus, EventKind, Outcome};

fn collector(history: usize) -> MetricsCollector {
    MetricsCollector::new(
        CollectorConfig::default()
            .history(history)
            .interval(Duration::from_secs(1))
            .process(false),
    )
}

fn gauge(c: &MetricsCollector, name: &'static str) -> metrics::Gauge {
    metrics::with_local_recorder(&c.recorder(), || metrics::gauge!(name))
}

#[tokio::test(start_paused = true)]
async fn the_history_is_bounded_and_queryable_by_time() {
    let c = collector(3);
    let g = gauge(&c, "conduit_gateway_sessions");
    let start = tokio::time::Instant::now();
    for i in 0..5 {
        g.set(f64::from(i));
        c.snapshot();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let all = c.history(..);
    assert_eq!(all.len(), 3, "oldest dropped past the bound");
    let values: Vec<f64> = all
        .iter()
        .map(|s| s.sum("conduit_gateway_sessions", &[]).unwrap())
        .collect();
    assert_eq!(values, [2.0, 3.0, 4.0]);
    let recent = c.history(start + Duration::from_secs(3)..);
    assert_eq!(recent.len(), 2);
    assert_eq!(
        c.latest().unwrap().sum("conduit_gateway_sessions", &[]),
        Some(4.0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_alert_fires_once_after_its_duration_and_resolves_after_its_own() {
    let c = collector(100);
    let g = gauge(&c, "conduit_gateway_sessions");
    c.add_rule(
        AlertRule::above(
            "busy",
            "conduit_gateway_sessions",
            10.0,
            Duration::from_secs(5),
        )
        .resolve_after(Duration::from_secs(3)),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    c.on_alert(move |e| {
        let s = s.clone();
        async move { s.lock().unwrap().push((e.rule, e.state, e.value)) }
    });
    let bus = EventBus::new();
    let on_bus = Arc::new(Mutex::new(0));
    let b = on_bus.clone();
    bus.on(EventKind::Alert, 0, move |e: &Event| {
        assert!(matches!(e, Event::Alert(a) if a.rule == "busy"));
        *b.lock().unwrap() += 1;
        Ok(Outcome::Continue)
    });
    c.attach_bus(&bus);
    let task = c.spawn();
    let tick = |n: u64| tokio::time::sleep(Duration::from_millis(n * 1000 + 10));

    g.set(11.0);
    tick(4).await;
    assert!(c.firing().is_empty(), "above for less than 5 s: not yet");
    g.set(9.0); // a dip resets the clock
    tick(1).await;
    g.set(12.0);
    tick(4).await;
    assert!(c.firing().is_empty());
    tick(2).await;
    assert_eq!(c.firing(), ["busy"]);
    tick(10).await; // still above: no second firing
    g.set(1.0);
    tick(2).await;
    assert_eq!(
        c.firing(),
        ["busy"],
        "below for less than 3 s: still firing"
    );
    tick(2).await;
    assert!(c.firing().is_empty());
    tokio::task::yield_now().await;
    task.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("busy".to_owned(), AlertState::Firing, 12.0),
            ("busy".to_owned(), AlertState::Resolved, 1.0)
        ]
    );
    assert_eq!(*on_bus.lock().unwrap(), 2);
    let firing = c
        .latest()
        .unwrap()
        .sum(names::ALERTS_FIRING, &[("rule", "busy")]);
    assert_eq!(firing, Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn rate_and_percentile_rules() {
    let c = collector(100);
    let (frames, turn) = metrics::with_local_recorder(&c.recorder(), || {
        (
            metrics::counter!(names::TRANSPORT_FRAMES, "wire" => "ws", "direction" => "in"),
            metrics::histogram!(names::TURN_LATENCY),
        )
    });
    c.add_rule(
        AlertRule::above("flood", names::TRANSPORT_FRAMES, 100.0, Duration::ZERO)
            .stat(Stat::Rate)
            .label("wire", "ws"),
    );
    c.add_rule(AlertRule::above("slow", names::TURN_LATENCY, 2.0, Duration::ZERO).stat(Stat::P95));
    c.add_rule(
        AlertRule::above("other-wire", names::TRANSPORT_FRAMES, 0.0, Duration::ZERO)
            .label("wire", "grpc"),
    );
    c.snapshot();
    tokio::time::advance(Duration::from_secs(2)).await;
    frames.increment(150); // 75/s
    for _ in 0..100 {
        turn.record(1.0);
    }
    c.snapshot();
    assert!(c.firing().is_empty());
    tokio::time::advance(Duration::from_secs(2)).await;
    frames.increment(400); // 200/s
    for _ in 0..20 {
        turn.record(5.0);
    }
    c.snapshot();
    let mut firing = c.firing();
    firing.sort();
    assert_eq!(firing, ["flood", "slow"]);
    let h = c
        .latest()
        .unwrap()
        .histogram(names::TURN_LATENCY, &[])
        .unwrap();
    assert_eq!(h.count, 120);
    assert!(
        (h.p50 - 1.0).abs() < 0.05 && (h.p99 - 5.0).abs() < 0.1,
        "{h:?}"
    );
}

#[test]
fn rules_parse_from_toml_and_are_checked() {
    #[derive(serde::Deserialize)]
    struct File {
        alerts: Vec<AlertRule>,
    }
    let f: File = toml::from_str(
        r#"
        [[alerts]]
        name = "slow"
        metric = "conduit_turn_seconds"
        stat = "p95"
        above = 30.0
        for_secs = 60
        labels = { wire = "ws" }
        "#,
    )
    .unwrap();
    assert_eq!(
        f.alerts[0],
        AlertRule::above(
            "slow",
            "conduit_turn_seconds",
            30.0,
            Duration::from_secs(60)
        )
        .stat(Stat::P95)
        .label("wire", "ws")
    );
    assert!(f.alerts[0].validate().is_ok());
    let both: Result<File, _> =
        toml::from_str("[[alerts]]\nname='x'\nmetric='m'\nabove=1.0\nbelow=0.5\n");
    assert!(
        both.unwrap().alerts[0]
            .validate()
            .unwrap_err()
            .contains("exactly one")
    );
    let typo: Result<File, _> =
        toml::from_str("[[alerts]]\nname='x'\nmetric='m'\nabove=1.0\nfor=3\n");
    assert!(typo.is_err(), "unknown keys are refused");
}

#[test]
fn tool_labels_are_bounded() {
    let mut labels = std::collections::HashSet::new();
    for i in 0..(MAX_TOOL_LABELS * 3) {
        labels.insert(tool_label(&format!("tool_bound_test_{i}")));
    }
    labels.insert(tool_label("has space"));
    labels.insert(tool_label(&"x".repeat(65)));
    assert!(labels.len() <= MAX_TOOL_LABELS + 1, "{}", labels.len());
    assert!(labels.contains("other"));
}

/// Event bus handlers are counted by owner and outcome (ok, error, panic, timeout) and timed,
/// except sync handlers of the per-frame events, which are counted only.
#[test]
fn event_bus_handlers_are_counted_by_owner_and_outcome() {
    let c = collector(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let bus = EventBus::with_timeout(Duration::from_millis(20));
    let plugin = bus.owned("audit-plugin");
    plugin.on(EventKind::Connect, 0, |_| Ok(Outcome::Continue));
    plugin.on(EventKind::Connect, 0, |_| Err("refused".into()));
    plugin.on(EventKind::Connect, 0, |_| panic!("handler panic"));
    plugin.on_async(EventKind::Connect, 0, |_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(Outcome::Continue)
    });
    bus.on(EventKind::Connect, 0, |_| Ok(Outcome::Continue));
    plugin.on(EventKind::BeforeSend, 0, |_| Ok(Outcome::Continue));
    metrics::with_local_recorder(&c.recorder(), || {
        rt.block_on(async {
            for _ in 0..2 {
                bus.emit(Event::Connect { transport: "t" }).await;
            }
            for _ in 0..3 {
                bus.emit(Event::BeforeSend {
                    frame: bytes::Bytes::from_static(b"{}"),
                })
                .await;
            }
        })
    });
    let s = c.snapshot();
    let calls = |owner: &str, outcome: &str| {
        s.sum(
            names::HANDLER_CALLS,
            &[("owner", owner), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("audit-plugin", "ok"), Some(2.0 + 3.0));
    assert_eq!(calls("audit-plugin", "error"), Some(2.0));
    assert_eq!(calls("audit-plugin", "panic"), Some(2.0));
    assert_eq!(calls("audit-plugin", "timeout"), Some(2.0));
    assert_eq!(calls("none", "ok"), Some(2.0));
    // Timed: the four Connect handlers twice; the BeforeSend calls are not.
    let timed = |owner: &str| {
        s.histogram(names::HANDLER_LATENCY, &[("owner", owner)])
            .map(|h| h.count)
    };
    assert_eq!(timed("audit-plugin"), Some(8));
    assert_eq!(timed("none"), Some(2));
    assert_eq!(bus.stats().timeouts, 2);
}
