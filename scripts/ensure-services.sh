#!/usr/bin/env bash
# Makes sure the infrastructure the mesh and its tests need is answering on this machine:
# PostgreSQL, RabbitMQ and Redis (installed from Debian packages when missing; Redis also as a
# three-node cluster, see scripts/ensure-redis-cluster.sh), and a
# MongoDB-protocol server (see scripts/ensure-mongo.sh). Idempotent: a running service is left
# alone. Addresses are the defaults the services use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

log() { printf '[ensure-services] %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do port_open "$1" "$2" && return 0; sleep 0.1; done
  return 1
}

apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_ready=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 127.0.0.1 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    # A fresh dev install: let loopback connections in without a password, as the defaults expect.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
      sed -i -E 's/^(local\s+all\s+all\s+)\S+/\1trust/' "$hba"
    done
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  wait_port 127.0.0.1 5432 30 || { log "PostgreSQL did not come up"; exit 1; }
}

ensure_redis() {
  if port_open 127.0.0.1 6379; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 127.0.0.1 6379 30 || { log "Redis did not come up"; exit 1; }
}

ensure_rabbitmq() {
  if port_open 127.0.0.1 5672; then return 0; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting RabbitMQ"
  rabbitmq-server -detached
  wait_port 127.0.0.1 5672 120 || { log "RabbitMQ did not come up"; exit 1; }
}

# The read models split their events into partitions with the consistent-hash exchange, a plugin that
# ships with RabbitMQ. Enabling an enabled plugin does nothing; a running node picks it up at once.
enable_rabbitmq_plugins() {
  rabbitmq-plugins enable rabbitmq_consistent_hash_exchange >/dev/null \
    || { log "could not enable rabbitmq_consistent_hash_exchange"; exit 1; }
}

# The test suites create and delete hundreds of quorum queues. RabbitMQ 3.10's file-handle
# accounting (a limit derived from the broker's soft open-file limit, 1024 here) keeps counting
# handles of deleted queues, and once the count passes the limit new connections hang in the
# AMQP handshake (seen with ~930 counted while 35-540 files were really open). The real limit
# still applies; only the broker's own bookkeeping is relaxed. Best effort: not fatal.
relax_rabbitmq_file_handles() {
  rabbitmqctl eval 'file_handle_cache:set_limit(100000).' >/dev/null 2>&1 \
    || log "could not relax RabbitMQ's file-handle accounting (not fatal)"
}

ensure_postgres
ensure_redis
# The query-redis-svc suite also runs against a three-node Redis Cluster on 7001-7003.
"$here/ensure-redis-cluster.sh" >/dev/null
ensure_rabbitmq
enable_rabbitmq_plugins
relax_rabbitmq_file_handles
if [ -x "$here/ensure-mongo.sh" ]; then "$here/ensure-mongo.sh"; fi
log "PostgreSQL, Redis and RabbitMQ are answering"
