//! Frame parsing speed: `Message::parse` on real CLI frames taken from the test fixtures, next to
//! plain `serde_json` baselines on the same bytes.
//!
//! `cargo bench -p claude-conduit --bench parse` (throughput is in frames per second).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use claude_conduit::message::{AssistantMessage, Message, Usage};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

const FIXTURES: &[&str] = &[
    include_str!("../tests/fixtures/transcripts/control_misc.jsonl"),
    include_str!("../tests/fixtures/transcripts/full.jsonl"),
    include_str!("../tests/fixtures/transcripts/partial_messages.jsonl"),
];

/// Every frame the CLI wrote in the fixtures above.
fn cli_frames() -> Vec<String> {
    FIXTURES
        .iter()
        .flat_map(|f| f.lines())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["dir"] == "cli->sdk" && r["truncated"].is_null())
        .filter_map(|r| r["raw"].as_str().map(str::to_owned))
        .collect()
}

/// The first frame matching `pred`.
fn pick(frames: &[String], what: &str, pred: impl Fn(&Value, usize) -> bool) -> Bytes {
    let raw = frames
        .iter()
        .find(|raw| pred(&serde_json::from_str(raw).unwrap(), raw.len()))
        .unwrap_or_else(|| panic!("no {what} frame in the fixtures"));
    Bytes::from(raw.clone())
}

fn bench_parse(c: &mut Criterion) {
    let frames = cli_frames();
    let cases = [
        (
            "assistant_text",
            pick(&frames, "assistant text", |v, len| {
                v["type"] == "assistant"
                    && v["message"]["content"][0]["type"] == "text"
                    && (450..=600).contains(&len)
            }),
        ),
        (
            "assistant_tool_use",
            pick(&frames, "tool_use", |v, _| {
                v["type"] == "assistant" && v["message"]["content"][0]["type"] == "tool_use"
            }),
        ),
        (
            "user_tool_result",
            pick(&frames, "tool_result", |v, len| {
                v["type"] == "user" && v.get("tool_use_result").is_some() && len < 2000
            }),
        ),
        (
            "result",
            pick(&frames, "result", |v, _| v["type"] == "result"),
        ),
        (
            "system_init",
            pick(&frames, "init", |v, _| v["subtype"] == "init"),
        ),
        (
            "stream_event_text_delta",
            pick(&frames, "text delta", |v, _| {
                v["event"]["delta"]["type"] == "text_delta"
            }),
        ),
    ];

    let mut group = c.benchmark_group("parse");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, raw) in &cases {
        Message::parse(raw.clone()).expect("fixture frame parses");
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/{}B", raw.len()), |b| {
            b.iter(|| Message::parse(black_box(raw.clone())).unwrap())
        });
    }
    group.finish();

    // Baselines on the assistant text frame: a generic JSON tree; the typed assistant view
    // without the frame-type dispatch; the same fields borrowed from the input (no allocation:
    // the floor for typed parsing with serde_json); a pure syntax scan.
    let raw = &cases[0].1;
    let text = std::str::from_utf8(raw).unwrap();
    let mut group = c.benchmark_group("baseline_assistant_text");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    group.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(raw)).unwrap())
    });
    group.bench_function("assistant_message_direct", |b| {
        b.iter(|| serde_json::from_str::<AssistantMessage>(black_box(text)).unwrap())
    });
    group.bench_function("borrowed_fields_floor", |b| {
        b.iter(|| serde_json::from_str::<borrowed::Frame<'_>>(black_box(text)).unwrap())
    });
    group.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(raw)).unwrap())
    });
    group.finish();
}

/// The assistant frame's fields borrowed from the input: what typed parsing costs without
/// allocating the strings.
mod borrowed {
    #![allow(dead_code)]

    use super::Usage;

    #[derive(serde::Deserialize)]
    pub struct Frame<'a> {
        #[serde(borrow)]
        message: Message<'a>,
        parent_tool_use_id: Option<&'a str>,
        session_id: Option<&'a str>,
        uuid: Option<&'a str>,
        request_id: Option<&'a str>,
    }

    #[derive(serde::Deserialize)]
    struct Message<'a> {
        id: &'a str,
        model: &'a str,
        role: &'a str,
        #[serde(borrow)]
        content: Vec<Block<'a>>,
        stop_reason: Option<&'a str>,
        usage: Option<Usage>,
    }

    #[derive(serde::Deserialize)]
    struct Block<'a> {
        r#type: &'a str,
        text: &'a str,
    }
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
