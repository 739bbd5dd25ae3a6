#!/usr/bin/env bash
# Makes sure something speaks the MongoDB wire protocol at 127.0.0.1:27017 (MONGO_PORT).
# Idempotent: when a server (a real mongod, or one started earlier) already answers, it is left
# alone. Otherwise the pinned nx-27017 server (MongoDB protocol over SQLite, from PyPI) is
# installed into .tools/mongo/venv and started in the background; its data, log and pid file
# are in .tools/mongo/<port>/.
#
# The launcher forces neosqlite's Python fallback path before serving: its fast SQL update path
# stores a `$set` bool as 1 and a `$set` DateTime as a string, and ignores `$addToSet` on a
# missing field. That is a defect of the test server only; the services use plain MongoDB
# semantics and run unchanged against a real replica set.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${MONGO_PORT:-27017}"
home="$root/.tools/mongo"
venv="$home/venv"
stamp="$venv/.requirements"
requirements="nx-27017==0.8.1 neosqlite==1.17.2 pymongo==4.20.1"

log() { printf '[ensure-mongo] %s\n' "$*"; }

ping() { # exit 0 when a MongoDB server answers a ping on 127.0.0.1:$port
  if [ -x "$venv/bin/python" ]; then
    "$venv/bin/python" - "$port" <<'PY' >/dev/null 2>&1
import sys
from pymongo import MongoClient
client = MongoClient("127.0.0.1", int(sys.argv[1]), serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
client.admin.command("ping")
PY
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

writable() { # exit 0 when that server also stores and reads a document
  [ -x "$venv/bin/python" ] || return 0
  "$venv/bin/python" - "$port" <<'PY'
import os, sys
from pymongo import MongoClient
from pymongo.errors import OperationFailure
client = MongoClient("127.0.0.1", int(sys.argv[1]), serverSelectionTimeoutMS=2000, timeoutMS=5000)
# A new database each time, as each test makes one (the test server opens a file for it).
name = f"ensure_mongo_{os.getpid()}"
try:
    probe = client[name]["probe"]
    probe.replace_one({"_id": 1}, {"_id": 1, "ok": True}, upsert=True)
    assert probe.find_one({"_id": 1})["ok"], "the document read back differs"
    client.drop_database(name)
except Exception as err:
    if isinstance(err, OperationFailure) and err.code in (13, 18):
        sys.exit(0)  # a mongod that wants credentials (TEST_MONGODB_URI carries them)
    print((str(err) or repr(err)).splitlines()[0][:300], file=sys.stderr)  # what it said
    sys.exit(1)
PY
}

if ping; then
  if ! said="$(writable 2>&1)"; then
    # Seen with a test server whose checkout (and so its data directory) was deleted while
    # it ran: it answers pings, but every test would fail on its first write.
    log "a server answers on 127.0.0.1:$port but cannot store a document ($said); stop it and run this again"
    exit 1
  fi
  exit 0
fi

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$requirements" ]; then
  log "installing $requirements into .tools/mongo/venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements
  echo "$requirements" >"$stamp"
fi

run="$home/$port"
mkdir -p "$run/data"
cat >"$home/launch.py" <<'PY'
"""Starts nx-27017 with neosqlite's update fast path turned off (see scripts/ensure-mongo.sh)."""
import sys

from neosqlite.collection import query_helper

query_helper.set_force_fallback(True)

from nx_27017.nx_27017 import main  # noqa: E402

sys.exit(main())
PY

pidfile="$run/nx-27017.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  log "nx-27017 (pid $(cat "$pidfile")) is running but not answering yet; waiting"
else
  log "starting nx-27017 on 127.0.0.1:$port (data and log in .tools/mongo/$port)"
  # setsid: the server outlives the shell (and the make or CI step) that started it.
  setsid nohup "$venv/bin/python" "$home/launch.py" --host 127.0.0.1 -p "$port" \
    --data-dir "$run/data" --log-file "$run/nx-27017.log" --pid-file "$pidfile" \
    >"$run/nx-27017.out" 2>&1 </dev/null &
fi

for _ in $(seq 1 300); do
  if ping; then
    log "MongoDB protocol answering on 127.0.0.1:$port"
    exit 0
  fi
  sleep 0.1
done
log "nx-27017 did not come up; see .tools/mongo/$port/nx-27017.log and nx-27017.out"
tail -20 "$run/nx-27017.out" >&2 || true
exit 1
