#!/usr/bin/env bash
# Removes the keys test and bench runs left on the local Redis and on the local Redis Cluster of
# the tests (their key prefixes: test.*, e2e.*, bench<pid>:*). A read model's generation drop
# scans the keyspace, so a Redis that keeps hundreds of thousands of stale test keys makes
# rebuilds slower than they are. Best effort.
#   scripts/clean-test-redis.sh [PATTERN...]   (default: the test and bench prefixes)
set -uo pipefail
url="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
command -v redis-cli >/dev/null || exit 0
[ $# -gt 0 ] || set -- 'test.*' 'e2e.*' 'bench[0-9]*:*' 'benchprof:*'
removed=0
# One UNLINK per key, sent as a stream: on a cluster node, keys of different hash slots cannot
# share a command.
clean() { # redis-cli connection arguments...
  local pattern n
  for pattern in "${patterns[@]}"; do
    n=$(redis-cli "$@" --scan --pattern "$pattern" 2>/dev/null | sed 's/^/UNLINK "/; s/$/"/' \
      | redis-cli "$@" 2>/dev/null | awk '{s+=$1} END {print s+0}')
    removed=$((removed + n))
  done
}
patterns=("$@")
if [[ "$url" != redis-cluster://* ]]; then clean -u "$url"; fi
for port in ${REDIS_CLUSTER_PORTS:-7001 7002 7003}; do
  redis-cli -p "$port" ping >/dev/null 2>&1 && clean -p "$port"
done
echo "removed $removed test keys from Redis"
