#!/usr/bin/env bash
# Sets up every client of the examples in one command:
#   - Python: examples/python/.venv with the streammgr package of
#     clients/python installed (examples/python/setup.sh);
#   - Node: npm ci in examples/node (links the streammgr package of
#     clients/node), and in clients/node when its dependencies are missing;
#   - grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4,
#     unless a grpcurl is already on PATH or in $(go env GOPATH)/bin (where
#     go install puts it: the scripts find it there; add it to PATH to run
#     grpcurl by hand).
# Needs python3 with its venv module (Debian/Ubuntu: python3-venv), node and
# npm (Node.js 20 or later), and go.
# Usage: examples/setup.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

echo "== Python: examples/python/.venv with clients/python"
"$here/python/setup.sh"

echo "== Node: npm ci in examples/node"
(cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
# The package is linked, not copied: its own dependencies (@grpc/grpc-js,
# @grpc/proto-loader) live in clients/node/node_modules.
if [[ ! -f $here/../clients/node/node_modules/@grpc/grpc-js/package.json ]]; then
  echo "== Node: npm ci in clients/node"
  (cd "$here/../clients/node" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== grpcurl"
if command -v grpcurl >/dev/null 2>&1; then
  echo "grpcurl found: $(command -v grpcurl)"
elif [[ -x $(go env GOPATH)/bin/grpcurl ]]; then
  echo "grpcurl found: $(go env GOPATH)/bin/grpcurl"
else
  go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
  echo "grpcurl installed: $(go env GOPATH)/bin/grpcurl"
  echo "  (the scripts find it there; to run grpcurl yourself: export PATH=\"\$PATH:$(go env GOPATH)/bin\")"
fi
echo "== ready: go test ./examples/"
