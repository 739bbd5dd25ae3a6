#!/usr/bin/env bash
# Starts or stops the mesh's three services in the background (logs and pids in $RUN_DIR,
# default .run/). Every address and name can be overridden, so tests can run a private mesh:
#   COMMAND_ADDR REDIS_QUERY_ADDR MONGO_QUERY_ADDR DATABASE_URL RABBITMQ_EXCHANGE
#   REDIS_KEY_PREFIX MONGODB_DATABASE QUEUE_PREFIX RUN_DIR
#   scripts/mesh.sh start|stop
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="${RUN_DIR:-$root/.run}"
bin="${BIN_DIR:-$root/target/debug}"
mkdir -p "$run"
: "${AUTH_JWT_SECRET:?}"
export AUTH_JWT_SECRET
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/courses}"
export RABBITMQ_EXCHANGE="${RABBITMQ_EXCHANGE:-course.events}"
COMMAND_ADDR="${COMMAND_ADDR:-127.0.0.1:50051}"
REDIS_QUERY_ADDR="${REDIS_QUERY_ADDR:-127.0.0.1:50052}"
MONGO_QUERY_ADDR="${MONGO_QUERY_ADDR:-127.0.0.1:50053}"
QUEUE_PREFIX="${QUEUE_PREFIX:-}"
grpcurl="$root/.tools/bin/grpcurl"

stop_one() {
  local pidfile="$run/$1.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    echo "stopped $1"
  fi
  rm -f "$pidfile"
}

wait_serving() { # name addr health-name
  for _ in $(seq 1 600); do
    if "$grpcurl" -plaintext -max-time 1 -d "{\"service\":\"$3\"}" "$2" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
      return 0
    fi
    sleep 0.1
  done
  echo "$1 did not become healthy; see $run/$1.log" >&2
  tail -20 "$run/$1.log" >&2
  exit 1
}

start_one() { # name addr health-name command...
  local name=$1 addr=$2 health=$3; shift 3
  stop_one "$name"
  GRPC_LISTEN="$addr" nohup "$@" >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  wait_serving "$name" "$addr" "$health"
  echo "started $name on $addr (log: $run/$name.log)"
}

case "${1:-start}" in
  start)
    db="${DATABASE_URL##*/}"
    psql "${DATABASE_URL%/*}/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
      || psql "${DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE \"$db\""
    start_one command-svc "$COMMAND_ADDR" course.v1.CourseCommandService "$bin/command-svc"
    # Development only: the query services get a service-role token minted with the dev secret.
    # In a deployment the token is issued to each service and given as EVENT_STORE_TOKEN_FILE.
    EVENT_STORE_TOKEN=$("$bin/command-svc" token --sub query-services --role service --ttl-secs 2592000)
    export EVENT_STORE_TOKEN
    EVENT_STORE_URL="http://$COMMAND_ADDR" QUEUE_NAME="${QUEUE_PREFIX}query-redis.course-events" \
      start_one query-redis-svc "$REDIS_QUERY_ADDR" course.v1.CatalogQueryService "$bin/query-redis-svc"
    # WITHOUT_MONGO=1 (make bench): the MongoDB read model is not started.
    if [ -x "$bin/query-mongo-svc" ] && [ -z "${WITHOUT_MONGO:-}" ]; then
      EVENT_STORE_URL="http://$COMMAND_ADDR" QUEUE_NAME="${QUEUE_PREFIX}query-mongo.course-events" \
        start_one query-mongo-svc "$MONGO_QUERY_ADDR" course.v1.CourseQueryService "$bin/query-mongo-svc"
    fi
    [ -n "${QUIET:-}" ] && exit 0
    cat <<MSG

The mesh is up: command-svc $COMMAND_ADDR, query-redis-svc $REDIS_QUERY_ADDR, query-mongo-svc $MONGO_QUERY_ADDR.
Call it with grpcurl (reflection is on, no .proto files needed):

  export PATH="$root/.tools/bin:\$PATH" AUTH_JWT_SECRET='$AUTH_JWT_SECRET'
  grpcurl -plaintext $COMMAND_ADDR list
  TOKEN=\$(target/debug/command-svc token --sub \$(cat /proc/sys/kernel/random/uuid))
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" \\
    -d '{"title":"Rust","description":"Ownership","category":"Programming"}' \\
    $COMMAND_ADDR course.v1.CourseCommandService/CreateCourse
  grpcurl -plaintext -d '{"page_size":5}' $REDIS_QUERY_ADDR course.v1.CatalogQueryService/ListCourses
  grpcurl -plaintext -d '{"query":"rust"}' $MONGO_QUERY_ADDR course.v1.CourseQueryService/SearchCourses

The full tour of the ten use cases: scripts/walkthrough.sh $COMMAND_ADDR
Stop everything with: make stop
MSG
    ;;
  stop)
    stop_one query-mongo-svc
    stop_one query-redis-svc
    stop_one command-svc
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
