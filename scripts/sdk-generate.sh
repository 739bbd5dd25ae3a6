#!/usr/bin/env bash
# `make sdk`: generates the client SDKs from proto/course/v1 into sdk/ (generated code is not
# committed; see sdk/README.md).
#   sdk/python      grpcio-tools -> src/course/v1/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py
#   sdk/typescript  buf + ts-proto -> src/gen/, then tsc -> dist/
#   Rust            nothing to generate here: the course-proto crate (proto/) compiles the
#                   contracts in its build script.
# Tools are pinned (sdk/python/requirements.txt, sdk/typescript/package-lock.json,
# tools/buf/package-lock.json) and installed from PyPI and npm into .tools/ and
# sdk/typescript/node_modules, only when missing or when a pin changed.
#
#   scripts/sdk-generate.sh [python|typescript|all]     (default: all)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
what="${1:-all}"
log() { printf '[sdk-generate] %s\n' "$*"; }

python_sdk() {
  local venv="$root/.tools/sdk-py" req="$root/sdk/python/requirements.txt"
  if ! cmp -s "$req" "$venv/.requirements"; then
    log "installing the pinned Python tools into .tools/sdk-py"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.requirements"
  fi
  local out="$root/sdk/python/src"
  rm -rf "$out/course"
  mkdir -p "$out/course/v1"
  "$venv/bin/python" -m grpc_tools.protoc -I proto \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" proto/course/v1/*.proto
  printf '"""Generated from proto/course (scripts/sdk-generate.sh). Do not edit."""\n' \
    | tee "$out/course/__init__.py" >"$out/course/v1/__init__.py"
  log "python: $(find "$out/course/v1" -name "*.py*" | wc -l) files in sdk/python/src/course/v1"
}

typescript_sdk() {
  local dir="$root/sdk/typescript"
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.sdk-lock" || [ ! -x "$dir/node_modules/.bin/tsc" ]; then
    log "installing the pinned npm packages into sdk/typescript/node_modules"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$dir/node_modules/.sdk-lock"
  fi
  local buf
  buf="$(scripts/install-buf.sh)"
  rm -rf "$dir/src/gen" "$dir/dist"
  "$buf" generate --template sdk/typescript/buf.gen.yaml
  (cd "$dir" && node_modules/.bin/tsc -p tsconfig.json)
  log "typescript: $(find "$dir/src/gen" -name '*.ts' | wc -l) files in sdk/typescript/src/gen, compiled to sdk/typescript/dist"
}

case "$what" in
  python) python_sdk ;;
  typescript) typescript_sdk ;;
  all) python_sdk; typescript_sdk ;;
  *) echo "usage: $0 [python|typescript|all]" >&2; exit 2 ;;
esac
