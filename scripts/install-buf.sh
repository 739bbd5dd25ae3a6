#!/usr/bin/env bash
# Installs the buf CLI pinned in tools/buf/package-lock.json into .tools/buf (npm registry only;
# the @bufbuild/buf package carries the binary for each platform as an optional dependency).
# Prints the path of the buf executable.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.tools/buf"
if ! cmp -s "$root/tools/buf/package-lock.json" "$dir/package-lock.json" || [ ! -x "$dir/node_modules/.bin/buf" ]; then
  mkdir -p "$dir"
  cp "$root/tools/buf/package.json" "$root/tools/buf/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$dir/node_modules/.bin/buf"
