//! `conduit query` with `--audit`, `--redact`, `--timeout` or `--retries`: the query runs through
//! the SDK's middleware stack (`claude_conduit::middleware`) instead of a bare `Client`.
//!
//! Stack, outermost first: audit → redaction → timeout (whole query, retries included) → retry
//! (only when the CLI failed before anything streamed). Ctrl-C ends the CLI (no interrupt: the
//! query stream has no control handle).

use std::time::{Duration, Instant};

use claude_conduit::Options;
use claude_conduit::middleware::{
    AuditLayer, AuditSink, QueryRequest, QueryService, RedactLayer, RetryLayer, RetryPolicy,
    TimeoutLayer,
};
use futures::StreamExt;
use tower::{ServiceBuilder, ServiceExt};

use super::{Printer, QueryArgs};
use crate::exit::{Context, EXIT_ERROR_RESULT, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// An error's exit code, printed the one way (`crate::exit`), with the gateway named.
fn report_error(e: &claude_conduit::Error, args: &QueryArgs) -> u8 {
    let ctx = Context {
        via: args.via.as_deref(),
    };
    crate::exit::classify(e, ctx).report("conduit")
}

/// Whether any flag asks for the middleware.
pub fn wanted(args: &QueryArgs) -> bool {
    args.audit.is_some()
        || !args.redact.is_empty()
        || args.timeout.is_some()
        || args.retries.is_some()
}

/// Run the query through the layers the flags name; returns the exit code.
pub async fn run(args: &QueryArgs, options: Options) -> u8 {
    let audit = match args.audit.as_deref().map(AuditSink::file).transpose() {
        Ok(sink) => sink.map(AuditLayer::new),
        Err(e) => return report_error(&e, args),
    };
    let redact = match (!args.redact.is_empty())
        .then(|| RedactLayer::new(&args.redact))
        .transpose()
    {
        Ok(layer) => layer,
        Err(e) => return report_error(&e, args),
    };
    let timeout = match args.timeout {
        Some(secs) if !(secs.is_finite() && secs > 0.0) => {
            eprintln!("conduit query: --timeout must be a positive number of seconds");
            return EXIT_USAGE;
        }
        Some(secs) => Some(TimeoutLayer::new().total(Duration::from_secs_f64(secs))),
        None => None,
    };
    let service = ServiceBuilder::new()
        .option_layer(audit)
        .option_layer(redact)
        .option_layer(timeout)
        .option_layer(args.retries.map(|n| RetryLayer::new(RetryPolicy::new(n))))
        .service(QueryService::new());

    let started = Instant::now();
    let request = QueryRequest::new(args.prompt.clone(), options);
    let mut stream = tokio::select! {
        r = service.oneshot(request) => match r {
            Ok(s) => s,
            Err(e) => return report_error(&e, args),
        },
        _ = tokio::signal::ctrl_c() => return EXIT_FAILURE,
    };
    let mut printer = Printer::new(args.output);
    let mut code = EXIT_FAILURE;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(msg)) => {
                    if let Some(r) = msg.as_result() {
                        code = if r.is_error { EXIT_ERROR_RESULT } else { EXIT_OK };
                    }
                    printer.print(&msg, started);
                }
                Some(Err(e)) if e.is_frame_error() => eprintln!("conduit: skipped a frame: {e}"),
                Some(Err(e)) => {
                    printer.finish_line();
                    code = report_error(&e, args);
                    break;
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                printer.finish_line();
                eprintln!("conduit: stopping the CLI");
                break;
            }
        }
    }
    printer.finish_line();
    code
}
