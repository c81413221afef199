#!/usr/bin/env bash
# Redis-side measurements of the waiting room's Lua scripts, without the
# service: memory per waiting fan, redis-benchmark throughput of the entry
# and status scripts (the baseline the HTTP figures are compared with), and
# SLOWLOG while admission, expiry and abandonment run over 300,000 fans.
#
# Usage: crates/loadtest/scripts/redis-scripts.sh PORT   (a throw-away,
# empty, non-cluster redis-server; the scripts touch one hash tag, so one
# node is exactly the work one cluster master does for an event).
#
# The scripts are queue-service's own sources (crates/queue-service/src/lua,
# the files `queue_service::layout::lua` embeds), and the keys follow its
# layout (`layout::EVENT_KEY_NAMES`, in that order) under the prefix `b:`.
set -euo pipefail
PORT=$1
FANS=${FANS:-300000}
R="redis-cli -p $PORT"
LUA="$(cd "$(dirname "$0")/../../queue-service/src/lua" && pwd)"
T='{b:evt:bench}'
KEYS="$T:cfg $T:waiting $T:active $T:sessions $T:stats $T:seq $T:seen $T:rates $T:done"
declare -A SHA
for s in enter status admit configure; do
  SHA[$s]=$($R SCRIPT LOAD "$(for part in common admission_rate replies $s; do cat "$LUA/$part.lua"; echo; done)")
done
quiet() { "$@" 2>&1 | tr '\r' '\n' | grep -E 'requests per second' | tail -1; }
bench() { # name, requests, script args...
  local name=$1 n=$2; shift 2
  redis-benchmark -p "$PORT" -c 50 -n "$n" -r 100000000 --csv EVALSHA "$@" 2>/dev/null | tail -1 | sed "s/^/$name,/"
}
# Loop: one admission tick every 200 ms, calling again while more = 1.
admission_for() { # seconds
  local until=$((SECONDS + $1))
  while ((SECONDS < until)); do
    for _ in 1 2 3 4 5 6 7 8 9 10; do  # as the service: at most 10 calls per tick
      more=$($R EVALSHA "${SHA[admit]}" 9 $KEYS 200 100 50 | tail -1)
      [[ $more == 1 ]] || break
    done
    sleep 0.2
  done
}

$R FLUSHALL >/dev/null
$R CONFIG SET slowlog-log-slower-than 1000 >/dev/null
$R EVALSHA "${SHA[configure]}" 9 $KEYS open 100000 5000 2 300 75 >/dev/null
before=$($R INFO memory | awk -F: '/^used_memory:/{print $2+0}')
echo "== entry: $FANS fans, 50 connections (csv: test,rps,avg,min,p50,p95,p99,max ms)"
bench enter "$FANS" "${SHA[enter]}" 9 $KEYS user:__rand_int__
waiting=$($R ZCARD "$T:waiting")
after=$($R INFO memory | awk -F: '/^used_memory:/{print $2+0}')
echo "waiting=$waiting used_memory_delta=$((after - before)) bytes_per_fan=$(((after - before) / waiting))"
echo "== status, 50 connections (random ids: mostly fans in line)"
bench status 200000 "${SHA[status]}" 9 $KEYS user:__rand_int__
$R SLOWLOG RESET >/dev/null
echo "== admission + expiry (5000/s, 2 s TTL) for 15 s with status load"
admission_for 15 &
bench status-during-admission 200000 "${SHA[status]}" 9 $KEYS user:__rand_int__
wait
echo "stats: $($R HMGET "$T:stats" admitted exited_expired abandoned | tr '\n' ' ') waiting=$($R ZCARD "$T:waiting")"
echo "slowlog >1ms: $($R SLOWLOG LEN) entries; slowest (us):" \
  "$($R --json SLOWLOG GET 1000 | python3 -c 'import json,sys; d=sorted((e[2] for e in json.load(sys.stdin)), reverse=True); print(d[:5])')"
echo "== abandonment: abandon_after 8 s, nobody polls; wait for the grace window"
$R EVALSHA "${SHA[configure]}" 9 $KEYS open 100000 5000 2 8 2 >/dev/null
sleep 18
$R SLOWLOG RESET >/dev/null
admission_for 15 &
bench status-during-abandonment 100000 "${SHA[status]}" 9 $KEYS user:__rand_int__
wait
echo "stats: $($R HMGET "$T:stats" admitted exited_expired abandoned | tr '\n' ' ') waiting=$($R ZCARD "$T:waiting")"
echo "slowlog >1ms: $($R SLOWLOG LEN) entries; slowest (us):" \
  "$($R --json SLOWLOG GET 1000 | python3 -c 'import json,sys; d=sorted((e[2] for e in json.load(sys.stdin)), reverse=True); print(d[:5])')"
