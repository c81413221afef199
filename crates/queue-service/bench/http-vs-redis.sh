#!/usr/bin/env bash
# Entry and status throughput through the service's HTTP API versus
# redis-benchmark running the same Lua scripts with 50 connections on the
# Redis Cluster master that owns the event's slot, in one run.
#
# Usage (from the workspace root, devstack up):
#   cargo build --release -p queue-service --example load
#   crates/queue-service/bench/http-vs-redis.sh [N]
set -euo pipefail
N=${1:-20000}
SEED=${ONSALE__REDIS__URLS:-redis://127.0.0.1:7000}
SEED=${SEED%%,*}; SEED=${SEED#redis://}
LUA="$(cd "$(dirname "$0")/../src/lua" && pwd)"
T='{rb'$$':evt:load-perf}'
KEYS="$T:cfg $T:waiting $T:active $T:sessions $T:stats $T:seq $T:seen $T:rates $T:done"
SLOT=$(redis-cli -h "${SEED%:*}" -p "${SEED#*:}" CLUSTER KEYSLOT "$T")
PORT=$(redis-cli -h "${SEED%:*}" -p "${SEED#*:}" --json CLUSTER SLOTS | python3 -c "
import json,sys
for r in json.load(sys.stdin):
    if r[0] <= $SLOT <= r[1]: print(r[2][1])")
R="redis-cli -p $PORT"
declare -A SHA
for s in enter status configure; do
  SHA[$s]=$($R SCRIPT LOAD "$(cat "$LUA/common.lua"; echo; cat "$LUA/$s.lua")")
done
$R EVALSHA "${SHA[configure]}" 9 $KEYS open 1 0.001 3600 600 75 >/dev/null
echo "slot $SLOT on master :$PORT; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "redis-benchmark (csv: rps,avg,min,p50,p95,p99,max ms):"
for s in enter status; do
  printf '  %-6s ' "$s"
  redis-benchmark -p "$PORT" -c 50 -n "$N" -r "$N" --csv EVALSHA "${SHA[$s]}" 9 $KEYS user:__rand_int__ 2>/dev/null \
    | tail -1 | cut -d, -f2-
done
$R DEL $KEYS >/dev/null
echo "HTTP through queue-service (50 keep-alive clients, same box):"
cargo run -q --release -p queue-service --example load -- "$N" 2>/dev/null | sed 's/^/  /'
