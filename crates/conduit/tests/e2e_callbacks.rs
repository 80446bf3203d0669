//! Permission callbacks, hooks, in-process MCP tools and structured output, end to end with the
//! REAL pinned `claude` CLI against the test kit's FakeModel (issue 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]
//!
//! Every test asserts behaviour and order (what ran, what the model saw in its next request, in
//! which order frames came), never timing. Deadlines only turn a hang into a failure.

mod common;

include!("suite/callbacks.rs");
