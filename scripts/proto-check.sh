#!/usr/bin/env bash
# Contract hygiene of proto/ (buf.yaml at the repository root):
#   1. `buf lint` with the STANDARD rules;
#   2. `buf breaking` (FILE rules: wire, JSON and generated-code compatibility) against the
#      released contract committed as proto/baseline/course-v1.binpb.
# An incompatible change fails here until the baseline is moved on purpose:
#   scripts/proto-check.sh --update-baseline     (what `make proto-baseline` runs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
buf="$(scripts/install-buf.sh)"
baseline=proto/baseline/course-v1.binpb

if [ "${1:-}" = "--update-baseline" ]; then
  "$buf" lint
  "$buf" build --exclude-source-info -o "$baseline"
  echo "baseline moved: $baseline now holds the contract of the working tree; commit it with the .proto change"
  exit 0
fi

"$buf" lint
echo "buf lint: ok"
[ -f "$baseline" ] || { echo "missing $baseline (create it with: scripts/proto-check.sh --update-baseline)" >&2; exit 1; }
"$buf" breaking --against "$baseline"
echo "buf breaking against $baseline: ok"
