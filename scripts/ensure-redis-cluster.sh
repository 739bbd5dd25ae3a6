#!/usr/bin/env bash
# Makes sure a three-node Redis Cluster answers on loopback (ports REDIS_CLUSTER_PORTS, default
# 7001-7003; no replicas, nothing kept on disk): the second Redis layout the query-redis-svc test
# suite runs against (`TEST_REDIS_URL=redis-cluster://127.0.0.1:7001?node=...`). Idempotent: a
# cluster that already reports `cluster_state:ok` is left alone. Prints the URL to use.
set -euo pipefail
ports=(${REDIS_CLUSTER_PORTS:-7001 7002 7003})
base="${REDIS_CLUSTER_DIR:-/var/lib/redis-cluster}"

log() { printf '[ensure-redis-cluster] %s\n' "$*" >&2; }

state() { redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p'; }

url="redis-cluster://127.0.0.1:${ports[0]}"
for port in "${ports[@]:1}"; do url="$url$([ "$port" = "${ports[1]}" ] && echo '?' || echo '&')node=127.0.0.1:$port"; done

if [ "$(state "${ports[0]}")" = ok ]; then echo "$url"; exit 0; fi

command -v redis-server >/dev/null || { log "redis-server is missing (scripts/ensure-services.sh installs it)"; exit 1; }
for port in "${ports[@]}"; do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then continue; fi
  mkdir -p "$base/$port"
  # A node that never joined a cluster starts from an empty config.
  rm -f "$base/$port/nodes.conf"
  log "starting cluster node on $port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
    --cluster-config-file "$base/$port/nodes.conf" --cluster-node-timeout "${REDIS_CLUSTER_NODE_TIMEOUT:-5000}" \
    --save "" --appendonly no --dir "$base/$port" --logfile "$base/$port/redis.log"
done
for port in "${ports[@]}"; do
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
known=$(redis-cli -p "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
if [ "${known:-1}" -lt "${#ports[@]}" ]; then
  log "creating the cluster"
  nodes=(); for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
fi
for _ in $(seq 1 300); do
  ok=1
  for port in "${ports[@]}"; do [ "$(state "$port")" = ok ] || ok=0; done
  if [ "$ok" = 1 ]; then echo "$url"; exit 0; fi
  sleep 0.1
done
log "the cluster did not reach cluster_state:ok"; exit 1
