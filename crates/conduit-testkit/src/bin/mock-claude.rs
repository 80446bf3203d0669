//! `mock-claude`: a fast stand-in for the `claude` CLI's stream-json (SDK) mode.
//!
//! See [`claude_conduit_testkit::mock_claude`] for the protocol and the `MOCK_CLAUDE_*` knobs.

fn main() -> std::process::ExitCode {
    claude_conduit_testkit::mock_claude::run()
}
