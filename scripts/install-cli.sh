#!/usr/bin/env bash
# Install the pinned `claude` CLI used by claude-conduit's tests (and by anyone testing their agent
# offline with claude-conduit-testkit's FakeModel).
#
#   scripts/install-cli.sh            # installs if needed; prints the binary's path on the last line
#   CLAUDE=$(scripts/install-cli.sh | tail -n 1)
#
# Installs @anthropic-ai/claude-code@$CLAUDE_CLI_VERSION with npm into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/claude-conduit/cli/$CLAUDE_CLI_VERSION
# and does nothing when that copy already reports the pinned version. The same layout and lock file
# are used by claude_conduit_testkit::cli::ensure_pinned_cli(), which does this from Rust.
# The Rust constant PINNED_CLI_VERSION must match the line below (a test checks it).
set -euo pipefail

CLAUDE_CLI_VERSION="2.1.330"
CLAUDE_CLI_PACKAGE="@anthropic-ai/claude-code"

die() {
    echo "install-cli.sh: error: $*" >&2
    exit 1
}

if [ -n "${XDG_CACHE_HOME:-}" ]; then
    cache="$XDG_CACHE_HOME"
elif [ -n "${HOME:-}" ]; then
    cache="$HOME/.cache"
else
    die "neither XDG_CACHE_HOME nor HOME is set"
fi
base="$cache/claude-conduit/cli"
dir="$base/$CLAUDE_CLI_VERSION"
bin="$dir/node_modules/.bin/claude"

has_pinned() {
    [ -x "$bin" ] || return 1
    local v
    v="$("$bin" --version 2>/dev/null | head -n 1)" || return 1
    [ "${v%% *}" = "$CLAUDE_CLI_VERSION" ]
}

if has_pinned; then
    echo "$bin"
    exit 0
fi

command -v node >/dev/null 2>&1 || die "node is not installed (Node.js and npm are needed to install the claude CLI)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (Node.js and npm are needed to install the claude CLI)"

mkdir -p "$base" "$dir"

do_install() {
    # Another installer (this script or the Rust helper) may have finished while we waited.
    if has_pinned; then
        return 0
    fi
    echo "install-cli.sh: installing $CLAUDE_CLI_PACKAGE@$CLAUDE_CLI_VERSION into $dir" >&2
    # npm's own output goes to stderr so that stdout ends with the path only.
    npm install --prefix "$dir" --no-audit --no-fund "$CLAUDE_CLI_PACKAGE@$CLAUDE_CLI_VERSION" >&2 \
        || die "npm install $CLAUDE_CLI_PACKAGE@$CLAUDE_CLI_VERSION failed"
}

if command -v flock >/dev/null 2>&1; then
    # Same lock file as the Rust side (claude_conduit_testkit::cli::ensure_pinned_cli).
    exec 9>"$base/$CLAUDE_CLI_VERSION.lock"
    flock 9
    do_install
    flock -u 9
else
    do_install
fi

has_pinned || die "$bin does not report version $CLAUDE_CLI_VERSION after the install (got: $("$bin" --version 2>&1 | head -n 1 || true))"
echo "$bin"
