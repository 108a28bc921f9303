#!/usr/bin/env bash
# Latency and log volume of the classroom example while its Redis is down.
#
#   bash benchmarks/redis-outage.sh [SECONDS_PER_PHASE]
#
# One run, four phases against the same process, each measured with wrk
# (2 threads, 16 connections) on GET /api/sessions/2:
#   origin    Redis up, every request with a `Cookie`, which the route
#             does not cache (`Cache-Status: ...; fwd=bypass`): the
#             origin's own latency through the app.
#   hits      Redis up: cache hits.
#   down      Redis killed (SIGKILL) one second before: the breaker is
#             open, every GET goes to the origin.
#   back      Redis restarted (empty), one second later.
# It prints wrk's latency lines for each phase and the number of lines the
# app wrote to stderr during the outage. Needs wrk and redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_PHASE=${1:-10}
DELAY_MS=5
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
REDIS_PORT=$(free_port)
APP_PORT=$(free_port)
URL="http://127.0.0.1:$APP_PORT/api/sessions/2"

start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
}

measure() {
    echo "== $1"
    shift
    wrk -t2 -c16 -d"${SECONDS_PER_PHASE}s" --latency "$@" "$URL" |
        grep -E 'Latency |50%|90%|99%|Requests/sec|Non-2xx|Socket errors'
}

cargo build --release --all-features --example classroom >/dev/null 2>&1
start_redis
RUST_LOG=warn ./target/release/examples/classroom --listen "127.0.0.1:$APP_PORT" \
    --origin-delay-ms "$DELAY_MS" --redis "redis://127.0.0.1:$REDIS_PORT/" \
    >"$WORK/app.out" 2>"$WORK/app.err" &
until curl -sf "$URL" >/dev/null; do sleep 0.05; done

echo "== a request with a cookie: $(curl -si -H 'Cookie: bench=1' "$URL" | grep -i '^cache-status')"
measure origin -H 'Cookie: bench=1'
measure hits

kill -KILL "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
sleep 1
before=$(wc -l <"$WORK/app.err")
measure down
during=$(($(wc -l <"$WORK/app.err") - before))

start_redis
sleep 1
measure back
echo "== stderr lines written during the ${SECONDS_PER_PHASE} s outage phase: $during"
echo "== stderr of the whole run:"
cat "$WORK/app.err"
