#!/usr/bin/env bash
# Every check and test of the workspace, as CI runs it (`.ci/run` calls this script).
#
# Needs: the Rust toolchain (rust-version in Cargo.toml), Node.js + npm (the pinned `claude` CLI
# is installed with npm by scripts/install-cli.sh into ~/.cache/claude-conduit/cli/<version>).
# No API key and no network beyond the package registries: end-to-end tests run the real CLI
# against the test kit's fake Messages API on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== pinned claude CLI"
scripts/install-cli.sh >/dev/null

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "all checks passed"
