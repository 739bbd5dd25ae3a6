#!/usr/bin/env bash
# Removes the keys test and bench runs left on the local Redis (their key prefixes: test.*, e2e.*,
# bench<pid>:*). A read model's generation drop scans the keyspace, so a Redis that keeps hundreds
# of thousands of stale test keys makes rebuilds slower than they are. Best effort.
#   scripts/clean-test-redis.sh [PATTERN...]   (default: the test and bench prefixes)
set -uo pipefail
url="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
command -v redis-cli >/dev/null || exit 0
[ $# -gt 0 ] || set -- 'test.*' 'e2e.*' 'bench[0-9]*:*' 'benchprof:*'
removed=0
for pattern in "$@"; do
  n=$(redis-cli -u "$url" --scan --pattern "$pattern" 2>/dev/null | xargs -r -n 500 redis-cli -u "$url" unlink 2>/dev/null \
    | awk '{s+=$1} END {print s+0}')
  removed=$((removed + n))
done
echo "removed $removed test keys from Redis"
