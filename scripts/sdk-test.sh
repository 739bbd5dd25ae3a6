#!/usr/bin/env bash
# Proves each client SDK against a live mesh: generates the SDKs, starts a PRIVATE mesh
# (scripts/mesh.sh with free ports, a fresh PostgreSQL database, its own exchange, queues, Redis
# key prefix and MongoDB database), runs the Python, TypeScript and Rust walkthrough examples and
# checks the JSON summary each prints as its last line (as seen by BOTH query services), then
# audits both read models against the event store (scripts/audit.sh, `make audit`). Stops the
# mesh and removes everything it created on exit.
#
#   AUTH_JWT_SECRET=... scripts/sdk-test.sh            (make test runs it)
#   SDK_TEST_LANGS="python typescript" scripts/sdk-test.sh   to run a subset
#
# The binaries come from `cargo build --workspace --bins` (a no-op after scripts/test.sh built
# them). query-mongo-svc is required: if it is missing, mesh.sh skips it and the examples fail.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${AUTH_JWT_SECRET:?set AUTH_JWT_SECRET (the Makefile exports a development secret)}"
export AUTH_JWT_SECRET
langs="${SDK_TEST_LANGS:-python typescript rust}"
admin="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
log() { printf '[sdk-test] %s\n' "$*"; }
free_ports() { # three distinct free TCP ports on 127.0.0.1
  python3 -c 'import socket; s=[socket.socket() for _ in range(3)]; [x.bind(("127.0.0.1", 0)) for x in s]; print(*[x.getsockname()[1] for x in s])'
}

# Tools and servers the mesh needs (each script is idempotent and quick when already done).
scripts/install-grpcurl.sh
scripts/install-python-tools.sh
scripts/ensure-mongo.sh
scripts/sdk-generate.sh
# SDK_TEST_NO_BUILD=1 uses the binaries already in target/debug (while iterating on the SDKs).
[ -n "${SDK_TEST_NO_BUILD:-}" ] || cargo build --workspace --bins
[ -x "${BIN_DIR:-target/debug}/query-mongo-svc" ] \
  || log "WARNING: query-mongo-svc is not built; mesh.sh skips it and every example will FAIL at its query-mongo-svc step"

# The Rust SDK is the course-proto crate: it must stay usable without any service crate. Its only
# workspace dependency is course-domain (the pure aggregate, used for the conversions).
local_crates="$(cargo tree -p course-proto -e normal --prefix none | grep -F " ($root/" | awk '{print $1}' | sort -u | tr '\n' ' ')"
if [ "$local_crates" != "course-domain course-proto " ]; then
  echo "course-proto must depend on no workspace crate but course-domain; it pulls in: $local_crates" >&2
  exit 1
fi

# Databases left by runs that were killed before their trap ran.
psql "$admin" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'sdk\_test\_%'" | while read -r old; do
  kill -0 "${old#sdk_test_}" 2>/dev/null || psql "$admin" -qc "DROP DATABASE IF EXISTS \"$old\" WITH (FORCE)" >/dev/null
done

id="sdk_test_$$"
failed=0
run="$root/target/sdk-test/$id"
mkdir -p "$run"
export RUN_DIR="$run" QUIET=1
read -r p1 p2 p3 <<<"$(free_ports)"
export COMMAND_ADDR="127.0.0.1:$p1" REDIS_QUERY_ADDR="127.0.0.1:$p2" MONGO_QUERY_ADDR="127.0.0.1:$p3"
export DATABASE_URL="${admin%/*}/$id"
export RABBITMQ_EXCHANGE="$id.events" QUEUE_PREFIX="$id." REDIS_KEY_PREFIX="$id:" MONGODB_DATABASE="$id"
# Prometheus endpoints on ephemeral ports, so the private mesh never collides with `make run`.
export METRICS_LISTEN="127.0.0.1:0"

cleanup() {
  local status=$?
  set +e
  scripts/mesh.sh stop >/dev/null 2>&1
  psql "$admin" -qc "DROP DATABASE IF EXISTS \"$id\" WITH (FORCE)" >/dev/null 2>&1
  redis-cli --scan --pattern "$REDIS_KEY_PREFIX*" 2>/dev/null | xargs -r -n 500 redis-cli del >/dev/null 2>&1
  "$root/.tools/py/bin/python" - "$id" >/dev/null 2>&1 <<'PY'
import sys
import pika
run = sys.argv[1]
connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
for consumer in ("query-redis", "query-mongo"):
    queue = f"{run}.{consumer}.course-events"
    for name in (queue, queue + ".dlq"):
        channel = connection.channel()
        try:
            channel.queue_delete(name)
        except Exception:
            pass
    for name in (queue + ".dlx", queue + ".progress"):
        channel = connection.channel()
        try:
            channel.exchange_delete(name)
        except Exception:
            pass
channel = connection.channel()
channel.exchange_delete(f"{run}.events")
connection.close()
PY
  if [ -x "$root/.tools/mongo/venv/bin/python" ]; then
    "$root/.tools/mongo/venv/bin/python" -c 'import sys; from pymongo import MongoClient; MongoClient("127.0.0.1", 27017, serverSelectionTimeoutMS=2000).drop_database(sys.argv[1])' "$id" >/dev/null 2>&1
  fi
  # The run's logs and outputs are kept only when something failed.
  [ "$status" = 0 ] && [ "$failed" = 0 ] && rm -rf "$run"
  exit "$status"
}
trap cleanup EXIT

log "starting a private mesh: command $COMMAND_ADDR, redis query $REDIS_QUERY_ADDR, mongo query $MONGO_QUERY_ADDR, database $id (logs in ${run#"$root"/})"
scripts/mesh.sh start

# check LANG OUTPUT_FILE: the last line is the summary; every expectation is checked with jq.
check() {
  local lang=$1 out=$2 summary
  summary="$(tail -n 1 "$out")"
  jq -e --arg sdk "$lang" '
    (.sdk == $sdk) and (.course_id | test("^[0-9a-f-]{36}$")) and (.version == 9)
    and (.duplicate_comment_id_equal == true)
    and (.catalog.status == "COURSE_STATUS_ACTIVE") and (.catalog.version == 9)
    and (.catalog.instructor_id == .instructor_id) and (.catalog.section_count == 2)
    and (.catalog.participant_count == 1) and (.catalog.comment_count == 1)
    and (.catalog.participants == [.alice_id])
    and (.details.status == "COURSE_STATUS_ACTIVE") and (.details.version == 9)
    and (.details.instructor_id == .instructor_id) and (.details.sections == ["Intro", "Projections"])
    and (.details.participant_count == 1) and (.details.participants == [.alice_id])
    and (.details.comment_count == 1)
    and (.details.comments == [{author_id: .alice_id, text: "Great start"}])
  ' <<<"$summary" >/dev/null 2>&1
}

passed=0
run_example() { # LANG command...
  local lang=$1; shift
  local out="$run/$lang.out"
  log "== $lang example"
  if "$@" >"$out" 2>"$run/$lang.err" && check "$lang" "$out"; then
    cat "$out"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "SDK EXAMPLE FAILED: $lang (expected a summary line with an ACTIVE course at version 9, 2 sections, 1 participant, 1 comment in both query services)" >&2
    cat "$out" >&2
    tail -n 30 "$run/$lang.err" >&2
  fi
}

# Command affinity: every SDK must send a course to the same replica as the Rust SDK does (the
# vectors of course_proto::affinity's tests: course id, replica among 2, 3 and 5).
vectors='[["00000000-0000-0000-0000-000000000000",[1,1,3]],["01939a5e-6f4b-7c3d-9a2e-5b1c0d8e7f60",[1,1,4]],["ffffffff-ffff-ffff-ffff-ffffffffffff",[1,1,1]],["6ba7b810-9dad-11d1-80b4-00c04fd430c8",[0,0,0]]]'
python_vectors="from course_sdk import replica_for
for course, want in $vectors:
    got = [replica_for(course, n) for n in (2, 3, 5)]
    assert got == want, (course, got, want)"
typescript_vectors="import { replicaFor } from '$root/sdk/typescript/dist/src/index.js';
for (const [course, want] of $vectors) {
  const got = [2, 3, 5].map((n) => replicaFor(course, n));
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(course + ': ' + got + ' != ' + want);
}"
affinity_vectors() { # LANG command...
  local lang=$1; shift
  if "$@"; then
    log "$lang SDK routes the affinity vectors as the Rust SDK does"
  else
    failed=$((failed + 1))
    echo "SDK AFFINITY FAILED: $lang replica_for differs from course_proto::affinity" >&2
  fi
}

for lang in $langs; do
  case "$lang" in
    python)
      # The SDK is installed as a package (not used from the source tree), like a user would.
      .tools/sdk-py/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall ./sdk/python >/dev/null
      rm -rf sdk/python/build
      affinity_vectors python .tools/sdk-py/bin/python -c "$python_vectors"
      run_example python .tools/sdk-py/bin/python sdk/python/examples/walkthrough.py ;;
    typescript)
      affinity_vectors typescript node --input-type=module -e "$typescript_vectors"
      run_example typescript node sdk/typescript/dist/examples/walkthrough.js ;;
    rust)
      run_example rust cargo run --quiet -p course-proto --example walkthrough ;;
    *) echo "unknown SDK language: $lang" >&2; exit 2 ;;
  esac
done

# `make audit` on what the examples wrote: both read models agree with the event store.
log "== make audit (scripts/audit.sh) against this mesh"
if ! scripts/audit.sh; then
  failed=$((failed + 1))
  echo "AUDIT FAILED: a read model differs from the event store, or the audit could not run" >&2
fi

echo "sdk: $passed passed, $failed failed"
[ "$failed" = 0 ]
