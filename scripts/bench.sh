#!/usr/bin/env bash
# `make bench`: release builds of command-svc, query-redis-svc and the bench tool, a private
# mesh on free ports (own database, exchange, queues, key prefix), then bench/ against it.
#   BENCH_ARGS="--clients 64 --seconds 20" make bench
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${AUTH_JWT_SECRET:?}"
admin="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/install-grpcurl.sh >/dev/null

cargo build --release -p command-svc -p query-redis-svc -p bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
db="bench_$$"
export RUN_DIR="$root/target/bench-mesh" BIN_DIR="$root/target/release" QUIET=1
export DATABASE_URL="${admin%/*}/$db" RABBITMQ_EXCHANGE="bench.events.$$" QUEUE_PREFIX="bench.$$."
export REDIS_KEY_PREFIX="bench$$:" MONGODB_DATABASE="bench_$$" RUST_LOG=warn
export COMMAND_ADDR="127.0.0.1:$(free_port)" REDIS_QUERY_ADDR="127.0.0.1:$(free_port)" MONGO_QUERY_ADDR="127.0.0.1:$(free_port)"
export METRICS_LISTEN="127.0.0.1:0"
# RebuildReadModel{wait:true} over everything the bench wrote takes longer than the default.
export REQUEST_TIMEOUT_MS=120000
trap 'cleanup' EXIT
# Keys earlier test and bench runs left in Redis would slow this run's rebuild (a generation drop
# scans the keyspace).
scripts/clean-test-redis.sh
cold_pid=
cleanup() {
  scripts/clean-test-redis.sh "$REDIS_KEY_PREFIX*" >/dev/null 2>&1 || true
  [ -n "$cold_pid" ] && kill -TERM "$cold_pid" 2>/dev/null && wait "$cold_pid" 2>/dev/null
  scripts/mesh.sh stop >/dev/null || true
  scripts/clean-test-broker.sh >/dev/null 2>&1 || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
}
# The machine's limit first, while nothing else holds PostgreSQL connections: pgbench, one
# durable INSERT per transaction, at the load's concurrency.
psql "$admin" -qc "CREATE DATABASE $db"
clients=$(grep -oE -- '--clients[ =][0-9]+' <<<"${BENCH_ARGS:-}" | grep -oE '[0-9]+$' || echo 64)
seconds=$(grep -oE -- '--seconds[ =][0-9]+' <<<"${BENCH_ARGS:-}" | grep -oE '[0-9]+$' || echo 10)
reference_tps=$(target/release/bench --reference-only --database-url "$DATABASE_URL" --clients "$clients" --seconds "$seconds")
echo "pgbench reference: $reference_tps tps at $clients clients"

# The MongoDB read model is not part of these figures (its test server is far slower than a
# real MongoDB and would only take CPU from what is measured).
# (Measured: with it running, the test server's Python processes took ~15% of the CPU under load.)
WITHOUT_MONGO=1 BIN_DIR="$root/target/release" scripts/mesh.sh start

# A second command-svc on the same database whose memory holds none of the courses: the
# cold-start figure's replica.
COLD_ADDR="127.0.0.1:$(free_port)"
GRPC_LISTEN="$COLD_ADDR" RELAY_BATCH_SIZE=500 target/release/command-svc >"$RUN_DIR/command-svc-cold.log" 2>&1 &
cold_pid=$!
for _ in $(seq 1 300); do
  .tools/bin/grpcurl -plaintext -max-time 1 "$COLD_ADDR" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.1
done

# shellcheck disable=SC2086
target/release/bench --command "http://$COMMAND_ADDR" --catalog "http://$REDIS_QUERY_ADDR" \
  --exchange "$RABBITMQ_EXCHANGE" --reference-tps "$reference_tps" --cold-command "http://$COLD_ADDR" \
  --catalog-pid-file "$RUN_DIR/query-redis-svc.pid" ${BENCH_ARGS:-}
