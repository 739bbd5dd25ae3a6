#!/usr/bin/env bash
# Every test: unit and integration tests (real PostgreSQL, RabbitMQ, Redis and a
# MongoDB-protocol server), the grpcurl walkthrough against a freshly started command-svc, the
# contract checks (buf lint / buf breaking), the three SDK examples against a private mesh, and
# the offline validation of the Kubernetes manifests. Ends with one "N passed, M failed" line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${AUTH_JWT_SECRET:?}"
admin="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
mkdir -p target
passed=0
failed=0
failures=()

# Queues and exchanges the tests create (quorum queues are not free: a broker that keeps
# thousands of them slows to a crawl), removed before and after the run.
scripts/clean-test-broker.sh
scripts/clean-test-redis.sh
trap 'scripts/clean-test-broker.sh >/dev/null 2>&1 || true; scripts/clean-test-redis.sh >/dev/null 2>&1 || true' EXIT

# Databases left by earlier runs of the integration tests.
psql "$admin" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'cmd\_test\_%'" \
  | while read -r db; do psql "$admin" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done

cargo build --workspace --bins

echo "== cargo test"
log="$root/target/test-output.log"
set +e
# Services log to stdout, which the test harness does not capture: keep it to warnings.
RUST_LOG="${RUST_LOG:-warn}" cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# count_results LOG STATUS NAME: adds a cargo test log's results to the totals.
count_results() {
  local p f
  p=$(grep -oE '^test result: .* ([0-9]+) passed' "$1" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
  f=$(grep -oE '; [0-9]+ failed' "$1" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
  if [ "$2" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$2" = 0 ] || failures+=("$3")
}

count_results "$log" "$status" "cargo test"

echo "== cargo test -p query-redis-svc on a three-node Redis Cluster"
# The Redis read model's whole suite again, against a real cluster (scripts/ensure-redis-cluster.sh).
cluster_log="$root/target/test-output-redis-cluster.log"
set +e
cluster_url=$(scripts/ensure-redis-cluster.sh)
status=$?
if [ "$status" = 0 ]; then
  TEST_REDIS_URL="$cluster_url" RUST_LOG="${RUST_LOG:-warn}" cargo test -p query-redis-svc --no-fail-fast 2>&1 | tee "$cluster_log"
  status=${PIPESTATUS[0]}
else
  echo "the Redis Cluster did not come up" >"$cluster_log"
fi
set -e
count_results "$cluster_log" "$status" "query-redis-svc on Redis Cluster"

# check NAME COUNT COMMAND...: runs a scripted suite worth COUNT tests.
check() {
  local name=$1 count=$2; shift 2
  echo "== $name"
  if "$@"; then
    passed=$((passed + count))
  else
    failed=$((failed + count))
    failures+=("$name")
  fi
}

walkthrough() {
  local db="walkthrough_$$" port pid
  psql "$admin" -qc "CREATE DATABASE $db"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  DATABASE_URL="${admin%/*}/$db" GRPC_LISTEN="127.0.0.1:$port" METRICS_LISTEN="127.0.0.1:0" \
    RABBITMQ_EXCHANGE="walkthrough.$$" target/debug/command-svc >target/walkthrough-command-svc.log 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    .tools/bin/grpcurl -plaintext -max-time 1 "127.0.0.1:$port" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
    sleep 0.1
  done
  local ok=0
  scripts/walkthrough.sh "127.0.0.1:$port" >target/walkthrough.log 2>&1 || ok=$?
  kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  if [ "$ok" != 0 ]; then cat target/walkthrough.log; return 1; fi
  tail -1 target/walkthrough.log
}

check "grpcurl walkthrough" 1 walkthrough
check "contract: buf lint and buf breaking" 1 scripts/proto-check.sh
check "client SDKs (Python, TypeScript, Rust) against a private mesh" 3 scripts/sdk-test.sh
check "Kubernetes manifests, compose file and Dockerfile (offline)" 1 scripts/k8s-validate.sh

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed: ${failures[*]}"
fi
echo "cargo tests, walkthrough, contract checks, SDK examples, manifests:"
echo "$passed passed, $failed failed"
[ ${#failures[@]} -eq 0 ]
