//! # claude-conduit
//!
//! Claude Code, driven from Rust, over any transport.
//!
//! The SDK speaks the real `claude` CLI protocol: stream-json frames in both directions plus the
//! control protocol (initialize, interrupt, permission and hook callbacks, in-process MCP tools).
//!
//! Layers, one module each (see `docs/ARCHITECTURE.md`):
//! [`message`] (typed frames) · [`codec`] (line framing) · [`transport`] (moving frames) ·
//! `protocol` (the control engine, internal) · [`options`] (what to run) · [`session`] (`query`, `Client`) ·
//! [`error`].

#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod message;

pub use error::{Error, GatewayErrorKind, GatewayStatus, Result};
pub use message::{Message, MessageKind};
pub mod options;
pub mod transport;
pub use options::Options;
mod protocol;
pub mod remote;
pub mod session;
pub use session::{Client, Messages, Prompt, Query, query, query_with_transport};
pub mod events;
pub mod extension;
pub mod hooks;
pub mod mcp;
pub mod middleware;
pub mod permission;
#[cfg(feature = "plugins")]
pub mod plugin;
pub mod store;
pub mod telemetry;

/// The `schemars` this SDK's typed tools use (`SdkTool::typed`), so that you need not depend on
/// it yourself. A derive through this path names it:
///
/// ```
/// use claude_conduit::schemars::JsonSchema;
///
/// #[derive(serde::Deserialize, JsonSchema)]
/// #[schemars(crate = "claude_conduit::schemars")]
/// struct Add {
///     a: f64,
///     b: f64,
/// }
/// # let tool = claude_conduit::mcp::SdkTool::typed("add", "Add", |x: Add| async move {
/// #     Ok(claude_conduit::mcp::ToolOutput::text((x.a + x.b).to_string()))
/// # });
/// # assert_eq!(tool.input_schema()["required"], serde_json::json!(["a", "b"]));
/// ```
#[cfg(feature = "mcp")]
pub use schemars;

/// The offline test kit (`FakeModel`, `CliEnv`, the pinned CLI), for
/// [`OptionsBuilder::testkit`](options::OptionsBuilder::testkit). Cargo feature `testkit`.
#[cfg(feature = "testkit")]
pub use claude_conduit_testkit as testkit;

/// The README's code, compiled as doctests so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
