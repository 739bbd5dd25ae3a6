#!/usr/bin/env bash
# `make audit`: compares both read models of `make run` with the event store
# (course.v1.ProjectionAdminService/AuditReadModel, operator role) and prints what differs.
# Exit status: 0 when both agree with the store, 1 when anything differs, 2 when an audit could
# not run. Addresses as in scripts/mesh.sh (REDIS_QUERY_ADDR, MONGO_QUERY_ADDR);
# AUDIT_MAX_DIFFERENCES (100) bounds each service's list.
#
# Development only: the operator token is minted with AUTH_JWT_SECRET; against a deployment set
# OPERATOR_TOKEN to a token the identity provider issued with the operator role.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${BIN_DIR:-$root/target/debug}"
grpcurl="$root/.tools/bin/grpcurl"
REDIS_QUERY_ADDR="${REDIS_QUERY_ADDR:-127.0.0.1:50052}"
MONGO_QUERY_ADDR="${MONGO_QUERY_ADDR:-127.0.0.1:50053}"
max="${AUDIT_MAX_DIFFERENCES:-100}"
if [ -z "${OPERATOR_TOKEN:-}" ]; then
  : "${AUTH_JWT_SECRET:?set AUTH_JWT_SECRET or OPERATOR_TOKEN}"
  OPERATOR_TOKEN=$("$bin/command-svc" token --sub audit --role operator --ttl-secs 600)
fi

status=0
for target in "query-redis-svc $REDIS_QUERY_ADDR" "query-mongo-svc $MONGO_QUERY_ADDR"; do
  read -r name addr <<<"$target"
  if ! out=$("$grpcurl" -plaintext -max-time 120 -rpc-header "authorization: Bearer $OPERATOR_TOKEN" \
    -d "{\"max_differences\":$max}" "$addr" course.v1.ProjectionAdminService/AuditReadModel 2>&1); then
    echo "$name ($addr): the audit could not run: $out" >&2
    status=2
    continue
  fi
  jq -r --arg name "$name" '
    def n(f): (f // 0 | tonumber);
    "\($name): generation \(n(.generation)), audited up to position \(n(.auditedPosition)) (read model at \(n(.readModelPosition))), "
    + "\(n(.coursesInStore)) courses in the store, \(n(.coursesInReadModel)) in the read model; compared: \((.compared // []) | join(", ")); "
    + "\(n(.differenceCount)) differences",
    ((.differences // [])[] | "  DIFFERS \(.courseId) \(.field): store \(.expected // "" | @json), read model \(.actual // "" | @json)"),
    (if n(.differenceCount) > ((.differences // []) | length) then "  ... and \(n(.differenceCount) - (.differences | length)) more" else empty end),
    ((.movedDuringAudit // [])[] | "  moved during the audit (not compared; audit again): \(.)"),
    ((.unauditable // [])[] | "  UNAUDITABLE event at position \(n(.globalPosition)) (course \(.courseId // "unknown")): \(.reason); its course is left out (see ListDeadLetters)")
  ' <<<"$out"
  differences=$(jq -r '(.differenceCount // 0) | tonumber' <<<"$out")
  unauditable=$(jq -r '(.unauditable // []) | length' <<<"$out")
  if { [ "$differences" != 0 ] || [ "$unauditable" != 0 ]; } && [ "$status" = 0 ]; then status=1; fi
done
exit "$status"
