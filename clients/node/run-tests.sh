#!/usr/bin/env bash
# Runs the Node client's tests against a real streammgrd.
#   ./run-tests.sh                 installs the dependencies if needed (npm ci),
#                                  builds the daemon from the repository (go build),
#                                  then runs node --test on test/*.test.js
#   STREAMMGR_BIN=/path/to/streammgrd ./run-tests.sh   uses that daemon instead
# Extra arguments go to node --test (e.g. --test-name-pattern=echo).
set -euo pipefail
cd "$(dirname "$0")"

# Dependencies: npm ci when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# The daemon: built once for the whole run.
if [ -z "${STREAMMGR_BIN:-}" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd ../.. && go build -o "$tmp/streammgrd" ./cmd/streammgrd)
  export STREAMMGR_BIN="$tmp/streammgrd"
fi

# One test file at a time: each starts its own daemon, and the throughput
# figures of pipe.test.js are not shared with the other files' work.
conc=()
if node --help | grep -q -- '--test-concurrency'; then conc=(--test-concurrency=1); fi
node --test "${conc[@]}" "$@" test/*.test.js
