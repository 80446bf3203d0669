#!/usr/bin/env bash
# The Python venv of the wire-client tests (crates/conduit-gateway/tests/python/): the pinned
# packages of scripts/python-requirements.txt in ~/.cache/claude-conduit/py-<hash>/. Prints the
# venv's python on stdout. Idempotent: a venv whose requirements are unchanged is reused.
# Installs python3-venv with apt-get when the interpreter cannot make venvs and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

req=scripts/python-requirements.txt
py=$(command -v python3 || true)
if [ -z "$py" ]; then
  echo "python3 not found" >&2
  exit 1
fi
hash=$(sha256sum "$req" | cut -c1-12)
venv="${CONDUIT_PY_VENV:-$HOME/.cache/claude-conduit/py-$hash}"
mkdir -p "$(dirname "$venv")"
# One installer at a time (tests may call this script in parallel).
exec 9>"$venv.lock"
flock 9
if [ -x "$venv/bin/python" ] && [ -f "$venv/.complete" ]; then
  echo "$venv/bin/python"
  exit 0
fi

if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -qq install -y python3-venv >/dev/null
    py=/usr/bin/python3
  else
    echo "python3 cannot create venvs (python3-venv missing, and apt-get needs root)" >&2
    exit 1
  fi
fi

rm -rf "$venv.tmp"
"$py" -m venv "$venv.tmp" >&2
"$venv.tmp/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
touch "$venv.tmp/.complete"
rm -rf "$venv"
mv "$venv.tmp" "$venv"
echo "$venv/bin/python"
