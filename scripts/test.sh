#!/usr/bin/env bash
# Every check and test of the workspace, as CI runs it (`.ci/run` calls this script).
#
# Needs: the Rust toolchain (rust-version in Cargo.toml), Node.js + npm (the pinned `claude` CLI
# is installed with npm by scripts/install-cli.sh into ~/.cache/claude-conduit/cli/<version>),
# bubblewrap, socat and redis-server (installed here with apt-get when missing and we are root),
# Python 3 with venv (python3-venv installed by scripts/python-venv.sh when missing and we are root).
# No API key and no network beyond the package registries: end-to-end tests run the real CLI
# against the test kit's fake Messages API on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== system packages (bubblewrap, socat: the sandbox test; redis-server: the Redis tests)"
# Claude Code's sandbox runs Bash in bubblewrap and proxies through socat; the gateway's
# `sandbox = true` test needs both (it skips, saying why, where bwrap cannot run). The Redis
# scale-out tests (docs/SCALE.md) start a real `redis-server` on a free loopback port.
if ! command -v bwrap >/dev/null || ! command -v socat >/dev/null || ! command -v redis-server >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -qq install -y bubblewrap socat redis-server >/dev/null
  else
    echo "bwrap/socat/redis-server missing and not installable here (needs apt-get as root)"
  fi
fi
# The package starts a system-wide server on port 6379; the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
fi

echo "== pinned claude CLI"
scripts/install-cli.sh >/dev/null

echo "== Python venv of the wire-client tests (websockets, httpx, grpcio; pinned)"
# crates/conduit-gateway/tests/python_clients.rs runs clients written from docs/WIRE.md with it.
scripts/python-venv.sh >/dev/null || echo "python venv failed: tests/python_clients.rs will say so and skip"

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "all checks passed"
