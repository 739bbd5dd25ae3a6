#!/usr/bin/env bash
# A virtualenv in .tools/py with the pinned Python packages the tests use: pika (AMQP client)
# and grpcio-tools (protoc for Python classes generated from proto/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/py"
stamp="$venv/.requirements"
requirements="pika==1.4.4 grpcio-tools==1.85.1 protobuf==7.36.2"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$requirements" ]; then exit 0; fi
python3 -m venv "$venv"
# shellcheck disable=SC2086
"$venv/bin/pip" install --quiet --disable-pip-version-check $requirements
echo "$requirements" >"$stamp"
echo "python tools installed in .tools/py"
