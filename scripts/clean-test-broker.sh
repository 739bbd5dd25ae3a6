#!/usr/bin/env bash
# Removes the queues and exchanges earlier test runs left on the local RabbitMQ (see
# clean-test-broker.py). Best effort: a broker that cannot be listed is left alone.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v rabbitmqctl >/dev/null || exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
timeout 120 rabbitmqctl list_queues name --no-table-headers -q >"$tmp/queues" 2>/dev/null || exit 0
timeout 120 rabbitmqctl list_exchanges name --no-table-headers -q >"$tmp/exchanges" 2>/dev/null || exit 0
"$root/.tools/py/bin/python" "$root/scripts/clean-test-broker.py" "$tmp/queues" "$tmp/exchanges" || true
