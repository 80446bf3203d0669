//! Logging: which filter applies, and where the lines go.
//!
//! The filter is the first of `--log-level`, `RUST_LOG`, `CONDUIT_LOG`, else the command's
//! default (`warn`; for `serve`, `warn,claude_conduit_gateway=info`: sessions created and ended,
//! authentication failures). Each is a `tracing` filter: a level (`debug`) or directives
//! (`warn,claude_conduit=debug`). Lines go to stderr, coloured only when stderr is a terminal and
//! `NO_COLOR` is unset. Tokens and keys are never logged at any level.

use std::io::IsTerminal;

use claude_conduit::telemetry::otel::Otel;
use tracing_subscriber::EnvFilter;

/// The default filter of every command but `serve`.
pub const DEFAULT: &str = "warn";
/// The default filter of `conduit serve`.
pub const SERVE_DEFAULT: &str = "warn,claude_conduit_gateway=info";

/// Where the filter came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--log-level`.
    Flag,
    /// An environment variable (`RUST_LOG` or `CONDUIT_LOG`).
    Env(&'static str),
    /// The command's default.
    Default,
}

/// The filter text and its source: `--log-level` > `RUST_LOG` > `CONDUIT_LOG` > `default`.
/// Unset or empty variables are skipped.
pub fn choose(
    flag: Option<&str>,
    env: impl Fn(&'static str) -> Option<String>,
    default: &str,
) -> (String, Source) {
    if let Some(f) = flag {
        return (f.to_owned(), Source::Flag);
    }
    for var in ["RUST_LOG", "CONDUIT_LOG"] {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            return (v, Source::Env(var));
        }
    }
    (default.to_owned(), Source::Default)
}

/// `clap` value parser of `--log-level`: a valid filter.
pub fn parse_filter(s: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a log filter ({e}); e.g. `info` or `warn,claude_conduit=debug`"))
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`, `spans`).
    Json,
}

/// Install the subscriber: log lines to stderr in `format`, filtered by the first of
/// `--log-level`, `RUST_LOG`, `CONDUIT_LOG`, `default`; and, when the `OTEL_*` variables name an
/// endpoint, every `info` span (ours and the SDK's) to OpenTelemetry as `service` (the
/// returned handle flushes them: call [`Otel::shutdown`] before exiting). A variable that is
/// not a valid filter is reported and skipped.
pub fn init(
    flag: Option<&str>,
    default: &str,
    format: LogFormat,
    service: &str,
) -> Option<claude_conduit::telemetry::otel::Otel> {
    use tracing_subscriber::prelude::*;
    let env = |k: &'static str| std::env::var(k).ok();
    let (text, source) = choose(flag, env, default);
    let filter = match EnvFilter::builder().parse(&text) {
        Ok(f) => f,
        Err(e) => {
            if let Source::Env(var) = source {
                eprintln!("conduit: ignoring {var}={text:?}: {e}");
            }
            EnvFilter::new(default)
        }
    };
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let otel = match Otel::from_env(service) {
        Ok(o) if o.exporting() => Some(o),
        Ok(_) => None,
        Err(e) => {
            eprintln!("conduit: OpenTelemetry export off: {e}");
            None
        }
    };
    let spans = otel.as_ref().map(|o| {
        o.layer()
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .init();
    otel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'static str, &'a str)]) -> impl Fn(&'static str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn flag_over_rust_log_over_conduit_log_over_default() {
        let both = [("RUST_LOG", "debug"), ("CONDUIT_LOG", "error")];
        assert_eq!(
            choose(Some("trace"), env(&both), DEFAULT),
            ("trace".into(), Source::Flag)
        );
        assert_eq!(
            choose(None, env(&both), DEFAULT),
            ("debug".into(), Source::Env("RUST_LOG"))
        );
        assert_eq!(
            choose(None, env(&[("CONDUIT_LOG", "error")]), DEFAULT),
            ("error".into(), Source::Env("CONDUIT_LOG"))
        );
        assert_eq!(
            choose(None, env(&[("RUST_LOG", " ")]), SERVE_DEFAULT),
            (SERVE_DEFAULT.into(), Source::Default)
        );
    }

    #[test]
    fn bad_flag_values_are_refused() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("warn,claude_conduit=debug").is_ok());
        assert!(parse_filter("loud=[").is_err());
    }
}
