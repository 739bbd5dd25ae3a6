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
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '; [0-9]+ failed' "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
[ "$status" = 0 ] || failures+=("cargo test")

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
