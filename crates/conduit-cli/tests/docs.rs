//! What the docs promise, held to the code: the example gateway configuration parses, the
//! README's exit-code table is `conduit --help`'s, and its feature table lists every cargo
//! feature of the SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use claude_conduit_gateway::config::GatewayFile;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn the_example_gateway_toml_parses_and_gives_a_config() {
    let path = Path::new(ROOT).join("examples/gateway.toml");
    let file = GatewayFile::load(&path).expect("examples/gateway.toml is a valid config");
    assert_eq!(file.listen, Some("127.0.0.1:8992".parse().unwrap()));
    assert_eq!(file.grpc_listen, Some("127.0.0.1:8993".parse().unwrap()));
    assert_eq!(
        file.token_file,
        Some(Path::new(ROOT).join("examples").join("tokens.txt"))
    );
    assert_eq!(
        file.policy.permission_modes.as_deref(),
        Some(&["default", "acceptEdits", "plan", "dontAsk"].map(String::from)[..])
    );
    // Everything but the token file (which the example only names) makes a configuration.
    let mut without_tokens = file.clone();
    without_tokens.token_file = None;
    without_tokens.to_config().expect("a usable configuration");
}

/// The lines of `text` from the one that starts with `Exit codes:` to the first blank line (or
/// the end of a code block).
fn exit_table(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("Exit codes:"))
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("```"))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_readme_shows_the_exit_codes_of_conduit_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .arg("--help")
        .output()
        .unwrap();
    let help = exit_table(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(help.len(), 6, "{help:?}");
    assert_eq!(exit_table(&read("README.md")), help);
    let query = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["query", "--help"])
        .output()
        .unwrap();
    assert_eq!(exit_table(&String::from_utf8_lossy(&query.stdout)), help);
}

#[test]
fn the_readme_feature_table_lists_every_sdk_feature() {
    let manifest = read("crates/conduit/Cargo.toml");
    let features = manifest
        .split("\n[features]\n")
        .nth(1)
        .expect("a [features] table")
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = features
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
        .map(|l| l.split(" = ").next().unwrap().trim())
        .filter(|n| *n != "default")
        .collect();
    assert!(names.len() >= 6, "{names:?}");
    let readme = read("README.md");
    for name in names {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "README's feature table misses `{name}`"
        );
    }
    assert!(
        readme.contains("claude-conduit = { git = "),
        "dependency snippet"
    );
}
