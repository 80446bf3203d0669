#!/usr/bin/env bash
# Heap profile of a gateway holding N idle WebSocket sessions (docs/PERFORMANCE.md).
#
#   B=target/release/conduit N=100 [ACK=1] scripts/heap-idle-sessions.sh   # -> ./massif.out, ./ms.txt
#
# Starts `valgrind --tool=massif` on `conduit serve` (its CLI: the same binary's mock-claude),
# opens N sessions with a Python `websockets` client (POST, stream, one initialize; with ACK=1
# the client acks the reply, as the SDK does), holds them 3 s, stops the gateway with SIGTERM and
# prints the peak with `ms_print`. Needs valgrind and the venv of scripts/python-venv.sh.
set -euo pipefail
out=$PWD
cd "$(dirname "$0")/.."
B=$(realpath "${B:-target/release/conduit}")
N=${N:-100}
ACK=${ACK:-1}
PORT=${PORT:-7781}
py=$(scripts/python-venv.sh)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
ln -s "$B" "$dir/mock-claude"
token=heap-idle-0123456789abcdef
CONDUIT_TOKENS=$token valgrind --tool=massif --massif-out-file="$out/massif.out" \
  "$B" serve --listen "127.0.0.1:$PORT" --cli "$dir/mock-claude" --max-sessions-per-token 100000 \
  2>"$dir/serve.log" &
vg=$!
for _ in $(seq 120); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break
  sleep 0.5
done
"$py" - "http://127.0.0.1:$PORT" "$token" "$N" "$ACK" <<'PY'
import json, struct, sys, time, urllib.request
from websockets.sync.client import connect
http, token, n, ack = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
auth = {"Authorization": f"Bearer {token}"}
init = json.dumps({"type": "control_request", "request_id": "req_1",
                   "request": {"subtype": "initialize", "hooks": None}}).encode()
held = []
for _ in range(n):
    req = urllib.request.Request(f"{http}/v1/sessions", data=b"{}", method="POST",
                                 headers={**auth, "Content-Type": "application/json"})
    sid = json.load(urllib.request.urlopen(req, timeout=30))["id"]
    ws = connect(f"{http.replace('http://', 'ws://')}/v1/sessions/{sid}/stream?after=0",
                 additional_headers=auth, max_size=None, proxy=None)
    json.loads(ws.recv(timeout=30))  # the hello
    ws.send(struct.pack(">Q", 1) + init)
    last = 0
    while True:
        m = ws.recv(timeout=30)
        if isinstance(m, bytes):
            last = struct.unpack(">Q", m[:8])[0]
            if b"control_response" in m:
                break
    if ack:
        ws.send(json.dumps({"ack": last}))
    held.append(ws)
print(f"{n} idle sessions open", flush=True)
time.sleep(3)
PY
kill -TERM "$vg"
wait "$vg" || true
ms_print "$out/massif.out" > "$out/ms.txt"
grep -m1 'Detailed snapshots' "$out/ms.txt"
echo "the tree of each detailed snapshot is in $out/ms.txt"
