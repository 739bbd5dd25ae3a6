#!/usr/bin/env bash
# Every test: unit and integration tests (real PostgreSQL, RabbitMQ, Redis, MongoDB-protocol
# server), then the grpcurl walkthrough against a freshly started command-svc.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${AUTH_JWT_SECRET:?}"
admin="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# Databases left by earlier runs of the integration tests.
psql "$admin" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'cmd\_test\_%'" \
  | while read -r db; do psql "$admin" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done

cargo build --workspace --bins
log="$root/target/test-output.log"
mkdir -p "$root/target"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '; [0-9]+ failed' "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
if [ "$status" != 0 ]; then
  echo "cargo test failed"
  echo "$passed passed, $failed failed"
  exit "$status"
fi

echo "== grpcurl walkthrough"
db="walkthrough_$$"
psql "$admin" -qc "CREATE DATABASE $db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATABASE_URL="${admin%/*}/$db" GRPC_LISTEN="127.0.0.1:$port" target/debug/command-svc >"$root/target/walkthrough-command-svc.log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; }
trap cleanup EXIT
for _ in $(seq 1 300); do
  .tools/bin/grpcurl -plaintext -max-time 1 "127.0.0.1:$port" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && break
  sleep 0.1
done
scripts/walkthrough.sh "127.0.0.1:$port" >"$root/target/walkthrough.log" 2>&1 || { cat "$root/target/walkthrough.log"; exit 1; }
tail -1 "$root/target/walkthrough.log"
echo "cargo tests and the grpcurl walkthrough:"
echo "$((passed + 1)) passed, $failed failed"
