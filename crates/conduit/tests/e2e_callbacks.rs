//! Permission callbacks, hooks, in-process MCP tools and structured output, end to end with the
//! REAL pinned `claude` CLI against the test kit's FakeModel, on a local subprocess. The tests
//! are the shared callback suite (`claude_conduit_suite::callbacks`); the gateway runs the same
//! ones over each wire (`crates/conduit-gateway/tests/callbacks.rs`).

claude_conduit_suite::callback_tests!(claude_conduit_suite::Subprocess);
