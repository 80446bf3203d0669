#!/bin/bash
# docs/PERFORMANCE.md, "Through Redis": Redis memory and worker RSS per idle session: N `conduit query --via redis://` clients, each
# holding a session whose mock CLI hangs after its first assistant frame.
# FRONT=1: the N clients are `conduit query --via ws://` of ONE `conduit serve --redis` gateway
# (so all N sessions' Redis clients share one process, as behind a gateway tier).
set -u
B=${B:-target/release/conduit}; N=${N:-200}; PORT=${PORT:-6391}; FRONT=${FRONT:-0}; GW=${GW:-8995}
D=$(mktemp -d)
redis-server --port $PORT --bind 127.0.0.1 --save "" --appendonly no --dir $D --daemonize yes --logfile $D/r.log
sleep 0.5
printf '#!/bin/sh\nMOCK_CLAUDE_HANG=1 exec %s mock-claude "$@"\n' "$(realpath $B)" > $D/mock.sh; chmod +x $D/mock.sh
$B worker --redis redis://127.0.0.1:$PORT --cli $D/mock.sh --name m --max-sessions $N --state-dir $D/state 2>$D/w.log & W=$!
G=
if [ "$FRONT" = 1 ]; then
  CONDUIT_TOKENS=bench-token-0123456789abcdef $B serve --redis redis://127.0.0.1:$PORT --listen 127.0.0.1:$GW \
    --max-sessions-per-token $N --state-dir $D/gstate 2>$D/g.log & G=$!
  for t in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$GW/ && break; sleep 0.2; done
fi
sleep 1
info() { redis-cli -p $PORT info memory | tr -d '\r' | awk -F: "/^$1:/{print \$2}"; }
mem0=$(info used_memory); cl0=$(info mem_clients_normal)
rss0=$(awk '/VmRSS/{print $2}' /proc/$W/status)
pids=()
for i in $(seq $N); do
  if [ "$FRONT" = 1 ]; then CONDUIT_TOKEN=bench-token-0123456789abcdef $B query --via ws://127.0.0.1:$GW "hi" >/dev/null 2>&1 & pids+=($!)
  else $B query --via redis://127.0.0.1:$PORT "hi" >/dev/null 2>&1 & pids+=($!); fi
done
for t in $(seq 60); do
  n=$(redis-cli -p $PORT --scan --pattern 'conduit:s:*:hb' | wc -l)
  [ "$n" -ge "$N" ] && break; sleep 0.5
done
sleep 2
mem1=$(info used_memory); cl1=$(info mem_clients_normal)
conns=$(redis-cli -p $PORT info clients | tr -d '\r' | awk -F: '/^connected_clients:/{print $2}')
rss1=$(awk '/VmRSS/{print $2}' /proc/$W/status)
echo "sessions=$n connections=$conns redis used_memory $mem0 -> $mem1 bytes: $(( (mem1-mem0)/n )) B/session, of which client connections $(( (cl1-cl0)/n )), data $(( ((mem1-mem0)-(cl1-cl0))/n ))"
echo "worker RSS $rss0 -> $rss1 KiB: $(( (rss1-rss0)*1024/n )) B/session (CLI processes excluded)"
kill "${pids[@]}" 2>/dev/null; kill $W $G; sleep 1
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
rm -rf $D
