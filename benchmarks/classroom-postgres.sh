#!/usr/bin/env bash
# The classroom example end to end with its data in PostgreSQL, uncached
# and cached.
#
#   bash benchmarks/classroom-postgres.sh [SECONDS_PER_PHASE]
#
# Starts a PostgreSQL server of its own (initdb into a temporary
# directory, a free loopback port, durability off as in the tests; as the
# `postgres` user when run as root, since the server refuses root), runs
# the classroom example (release, `--database`, in-memory response store,
# `--origin-delay-ms 0`: the handler's cost is the database read itself)
# and measures two phases with wrk (2 threads, 16 connections) on
# GET /api/teachers/3/sessions?status=active, which reads the teacher's
# sessions from PostgreSQL:
#   uncached  every request with a `Cookie`, which the route does not
#             cache (`Cache-Status: ...; fwd=bypass`): a database query per
#             request.
#   cached    the same requests without it: hits.
# It prints wrk's latency lines and the Cache-Status of one request of each
# kind. Needs wrk, curl and PostgreSQL's initdb/postgres (looked for in
# $TAGCACHE_POSTGRES_BIN, then the newest /usr/lib/postgresql/*/bin).
# The server on the default port is never used.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_PHASE=${1:-10}
WORK=$(mktemp -d)
PG_PID=
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    # SIGQUIT: an immediate shutdown of the postmaster and its backends.
    if [ -n "$PG_PID" ]; then kill -QUIT "$PG_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

PG_BIN=${TAGCACHE_POSTGRES_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PG_BIN/postgres" ] || { echo "PostgreSQL's postgres not found (set TAGCACHE_POSTGRES_BIN)" >&2; exit 1; }
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PG_PORT=$(free_port)
APP_PORT=$(free_port)
URL="http://127.0.0.1:$APP_PORT/api/teachers/3/sessions?status=active"

as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C --no-sync --no-instructions >"$WORK/initdb.log" 2>&1
as_pg "$PG_BIN/postgres" -D "$WORK/data" -k "$WORK" -p "$PG_PORT" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c autovacuum=off >"$WORK/postgres.log" 2>&1 &
# With runuser the job is runuser; the postmaster's pid is in its pid file.
until [ "$(sed -n 8p "$WORK/data/postmaster.pid" 2>/dev/null | tr -d ' ')" = ready ]; do
    sleep 0.05
done
PG_PID=$(head -1 "$WORK/data/postmaster.pid")

measure() {
    echo "== $1"
    shift
    wrk -t2 -c16 -d"${SECONDS_PER_PHASE}s" --latency "$@" "$URL" |
        grep -E 'Latency |50%|90%|99%|Requests/sec|Non-2xx|Socket errors'
}

cargo build --release --features postgres --example classroom >/dev/null 2>&1
RUST_LOG=warn ./target/release/examples/classroom --listen "127.0.0.1:$APP_PORT" \
    --origin-delay-ms 0 --database "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
    >"$WORK/app.out" 2>"$WORK/app.err" &
until curl -sf "$URL" >/dev/null; do sleep 0.05; done

echo "== uptime: $(uptime)"
echo "== with a cookie: $(curl -si -H 'Cookie: bench=1' "$URL" | grep -i '^cache-status' | tr -d '\r')"
echo "== without:       $(curl -si "$URL" | grep -i '^cache-status' | tr -d '\r')"
measure uncached -H 'Cookie: bench=1'
measure cached
echo "== uptime: $(uptime)"
echo "== stderr of the app:"
cat "$WORK/app.err"
