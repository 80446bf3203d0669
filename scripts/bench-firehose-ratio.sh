#!/usr/bin/env bash
# The firehose through each gateway wire next to the subprocess path, in the same rounds
# (docs/PERFORMANCE.md, issue 10's ">= 0.33x" target).
#
#   B=target/release/conduit N=7 scripts/bench-firehose-ratio.sh
#
# Each round runs `conduit bench firehose --messages 100000 --bytes 200 --rounds 1` without
# `--via` (subprocess), then `--via ws`, `--via http`, `--via grpc`, and takes the `sdk` line's
# msgs/s. Prints each wire's figures sorted, the median over the subprocess median, and the
# median of the per-round ratios (each wire over the subprocess figure of its own round).
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${B:-target/release/conduit}")
N=${N:-7}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$N"); do
  for v in sub ws http grpc; do
    via=()
    [ "$v" != sub ] && via=(--via "$v")
    rate=$("$B" bench firehose --messages 100000 --bytes 200 --rounds 1 "${via[@]}" |
      awk '$1 == "sdk" { gsub(",", "", $2); print $2 }')
    echo "$v $rate" >>"$out"
  done
done
python3 - "$out" <<'PY'
import statistics as st, sys
rounds, cur = [], {}
for line in open(sys.argv[1]):
    k, v = line.split()
    cur[k] = float(v)
    if k == "grpc":
        rounds.append(cur)
        cur = {}
sub = st.median(r["sub"] for r in rounds)
for w in ("sub", "ws", "http", "grpc"):
    xs = sorted(r[w] for r in rounds)
    line = f"{w:5} msgs/s " + " ".join(f"{x:,.0f}" for x in xs)
    if w != "sub":
        per = st.median(r[w] / r["sub"] for r in rounds)
        line += f"   median/median {st.median(xs) / sub:.3f}x   per-round median {per:.3f}x"
    print(line)
PY
