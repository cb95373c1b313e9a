#!/usr/bin/env bash
# Generates the Python gRPC stubs for streammgr.v1 from ../../proto into
# ./streammgr_pb (git-ignored) with the grpcio-tools of .venv.
# Usage: examples/python/gen.sh   (run setup.sh first, or set PYTHON)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
python=${PYTHON:-$here/.venv/bin/python}
out=$here/streammgr_pb
if [[ ! -x $python ]]; then
  echo "gen.sh: $python not found: run examples/python/setup.sh first" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
# -I proto keeps the import path streammgr/v1/..., so the generated modules are
# the package streammgr.v1 under streammgr_pb/ (streammgr_client.py puts that
# directory on sys.path). google/protobuf/*.proto come with grpcio-tools.
"$python" -m grpc_tools.protoc -I "$proto" \
  --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
  streammgr/v1/streammgr.proto
echo "gen.sh: stubs generated in $out"
