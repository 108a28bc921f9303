#!/usr/bin/env bash
# Herds over 1, 2 and 4 instances sharing one Redis, with leases (one origin
# call per herd for the fleet) and without (one per instance, as before
# leases), and with waiters notified by pub/sub or polling with a backoff.
#
#   bash benchmarks/fleet-herd.sh [ROUNDS]
#
# Each line of output comes from examples/fleet_herd.rs: origin calls per
# herd of 300 cold requests (origin 50 ms), latency on the instance that
# called the origin and on the others, and Redis's own counts per herd.
# Starts its own redis-server on a free port. Needs redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-20}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done

cargo build --release --features redis --example fleet_herd -q
HERD=target/release/examples/fleet_herd
for instances in 1 2 4; do
    "$HERD" --redis "redis://127.0.0.1:$PORT" --instances "$instances" --rounds "$ROUNDS" --no-leases
    "$HERD" --redis "redis://127.0.0.1:$PORT" --instances "$instances" --rounds "$ROUNDS"
done
"$HERD" --redis "redis://127.0.0.1:$PORT" --instances 4 --rounds "$ROUNDS" --poll
# A key whose response is too large to store: the first herd learns it, the
# later ones pass (one instance, then four: the pass is fleet-wide).
"$HERD" --redis "redis://127.0.0.1:$PORT" --instances 1 --herd 50 --origin-ms 20 --rounds "$ROUNDS" --too-large
"$HERD" --redis "redis://127.0.0.1:$PORT" --instances 4 --herd 50 --origin-ms 20 --rounds "$ROUNDS" --too-large
