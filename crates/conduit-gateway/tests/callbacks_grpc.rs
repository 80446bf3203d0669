//! The whole callback suite of the SDK (permission callbacks, hooks, in-process MCP tools,
//! structured output) with the REAL pinned `claude` CLI and FakeModel — through a real gateway
//! over gRPC (`grpc://`). Same tests as `crates/conduit/tests/e2e_callbacks.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The transport the suite runs over.
const SCHEME: &str = "grpc";

#[path = "remote_common/mod.rs"]
mod common;

include!("../../conduit/tests/suite/callbacks.rs");
