#!/usr/bin/env bash
# Regenerates the Python stubs of proto/ into services/flashsale_api (generated code only).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$py"):$PATH"
out=services
rm -rf "$out/flashsale_api"
"$py" -m grpc_tools.protoc -Iproto \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  proto/flashsale_api/v1/*.proto
for d in "$out/flashsale_api" "$out/flashsale_api/v1"; do
  echo '"""Generated from proto/ by scripts/gen_proto.sh; do not edit."""' > "$d/__init__.py"
done
