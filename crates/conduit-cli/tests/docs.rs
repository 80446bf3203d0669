//! What the docs promise, held to the code: the example gateway configuration parses, the
//! README's exit-code table is `conduit --help`'s, its feature table lists every cargo feature of
//! the SDK, and every row of docs/GATEWAY.md's settings table (flag, `CONDUIT_*` variable, file
//! key) holds for `conduit serve` / `conduit worker` and the TOML file.
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

/// One row of docs/GATEWAY.md's settings table: the flags, `CONDUIT_*` variables and file keys
/// it names.
#[derive(Debug)]
struct SettingRow {
    line: String,
    /// `worker` for a `conduit worker …` row, else `serve`.
    command: &'static str,
    flags: Vec<String>,
    envs: Vec<String>,
    key: Option<String>,
}

/// The backticked words of `cell`.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn gateway_settings() -> Vec<SettingRow> {
    let doc = read("docs/GATEWAY.md");
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.starts_with("| flag | environment | file key | default |"))
        .skip(2);
    let mut rows = Vec::new();
    for line in lines.by_ref().take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split(" | ").collect();
        assert!(cells.len() >= 5, "a short row: {line}");
        let command = if cells[0].contains("`conduit worker ") {
            "worker"
        } else {
            "serve"
        };
        // The option of each backticked cell entry (`--listen ADDR`, `conduit worker --name N`).
        let flags = ticked(cells[0])
            .into_iter()
            .filter_map(|f| {
                f.split_whitespace()
                    .find(|w| w.starts_with("--"))
                    .map(str::to_owned)
            })
            .collect();
        let envs = cells[1]
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("CONDUIT_"))
            .map(str::to_owned)
            .collect();
        // A plain key (`listen`, `policy.cwd_roots`, `redis.url`); tables (`[env]`) are not.
        let key = ticked(cells[2]).into_iter().next().filter(|k| {
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        });
        rows.push(SettingRow {
            line: line.to_owned(),
            command,
            flags,
            envs,
            key,
        });
    }
    assert!(
        rows.len() > 30,
        "the table was not found whole: {} rows",
        rows.len()
    );
    rows
}

/// `conduit ARGS --help`, split into one entry per option: (`--flag`, the entry's text).
fn help_entries(args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let opt = t
            .strip_prefix("-h, ")
            .or_else(|| {
                t.split_once(", ")
                    .map(|(_, r)| r)
                    .filter(|_| t.starts_with('-'))
            })
            .unwrap_or(t);
        if (2..=6).contains(&indent) && opt.starts_with("--") {
            let flag = opt.split([' ', '=', '<']).next().unwrap_or(opt).to_owned();
            entries.push((flag, String::new()));
        } else if let Some((_, body)) = entries.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    entries
}

/// Every row of GATEWAY.md's table holds for `conduit serve` (or `conduit worker` for its rows):
/// its flag exists and reads the row's `CONDUIT_*` variable, its file key is a key of the TOML
/// file; and every `serve` and `worker` flag has a row. (A drift between the three front doors of
/// a setting fails here, naming the row.)
#[test]
fn every_gateway_setting_row_agrees_with_serve_and_the_file() {
    let rows = gateway_settings();
    let global = help_entries(&[]);
    let serve = help_entries(&["serve"]);
    let worker = help_entries(&["worker"]);
    for row in &rows {
        let help = if row.command == "worker" {
            &worker
        } else {
            &serve
        };
        for flag in &row.flags {
            let Some((_, body)) = help.iter().chain(&global).find(|(f, _)| f == flag) else {
                panic!("`conduit {}` has no {flag}: {}", row.command, row.line);
            };
            for env in &row.envs {
                // Comma-separated list variables are read by the flag's own parser.
                assert!(
                    body.contains(&format!("[env: {env}=")),
                    "{flag} does not read {env}: {}",
                    row.line
                );
            }
        }
        if let Some(key) = &row.key {
            let toml = match key.split_once('.') {
                Some((table, k)) => format!("[{table}]\n{k} = \"probe\"\n"),
                None => format!("{key} = \"probe\"\n"),
            };
            // The value's type may be wrong; the key must not be unknown.
            if let Err(e) = GatewayFile::parse(&toml) {
                assert!(!e.contains("unknown field"), "{key}: {e}: {}", row.line);
            }
        }
    }
    let documented: Vec<&String> = rows.iter().flat_map(|r| &r.flags).collect();
    // `--log-level` is a global flag of every command (docs/GATEWAY.md's logging section).
    for (command, help) in [("serve", &serve), ("worker", &worker)] {
        for (flag, _) in help {
            if ["--help", "--log-level"].contains(&flag.as_str()) {
                continue;
            }
            assert!(
                documented.contains(&flag),
                "`conduit {command} {flag}` has no row in docs/GATEWAY.md's table"
            );
        }
    }
}
