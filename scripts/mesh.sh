#!/usr/bin/env bash
# Starts or stops the mesh's services in the background (logs and pids in .run/).
#   scripts/mesh.sh start|stop
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="$root/.run"
mkdir -p "$run"
: "${AUTH_JWT_SECRET:?}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/courses}"
COMMAND_ADDR="${COMMAND_ADDR:-127.0.0.1:50051}"

stop_one() {
  local pidfile="$run/$1.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    echo "stopped $1"
  fi
  rm -f "$pidfile"
}

wait_serving() { # name addr
  for _ in $(seq 1 300); do
    if "$root/.tools/bin/grpcurl" -plaintext -max-time 1 "$2" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
      return 0
    fi
    sleep 0.1
  done
  echo "$1 did not become healthy; see $run/$1.log" >&2
  tail -20 "$run/$1.log" >&2
  exit 1
}

start_one() { # name addr command...
  local name=$1 addr=$2; shift 2
  stop_one "$name"
  GRPC_LISTEN="$addr" nohup "$@" >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  wait_serving "$name" "$addr"
  echo "started $name on $addr (log: .run/$name.log)"
}

case "${1:-start}" in
  start)
    db="${DATABASE_URL##*/}"
    psql "${DATABASE_URL%/*}/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
      || psql "${DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE \"$db\""
    start_one command-svc "$COMMAND_ADDR" "$root/target/debug/command-svc"
    cat <<MSG

The mesh is up. Call it with grpcurl (reflection is on, no .proto files needed):

  export PATH="$root/.tools/bin:\$PATH" AUTH_JWT_SECRET='$AUTH_JWT_SECRET'
  grpcurl -plaintext $COMMAND_ADDR list
  TOKEN=\$(target/debug/command-svc token --sub \$(cat /proc/sys/kernel/random/uuid))
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" \\
    -d '{"title":"Rust","description":"Ownership","category":"Programming"}' \\
    $COMMAND_ADDR course.v1.CourseCommandService/CreateCourse

The full tour of the ten use cases: scripts/walkthrough.sh $COMMAND_ADDR
Stop everything with: make stop
MSG
    ;;
  stop)
    stop_one command-svc
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
