#!/usr/bin/env bash
# Tests the Python client against a real streammgrd, on a fresh machine too:
#   - makes clients/python/.venv if it is missing (or has no working pip),
#   - installs the package with its pinned test dependencies
#     (pip install clients/python[test,realworld]; the gRPC stubs are
#     generated from proto/ by the build),
#   - builds the daemon (go build ./cmd/streammgrd) unless $STREAMMGR_BIN
#     names one,
#   - runs pytest on tests/ (arguments are passed on: ./run-tests.sh -k tls).
#     tests/realworld runs redis-py and nats-py through the daemon against
#     redis-server and nats-server (apt-get install redis-server
#     nats-server); without them those tests fail, unless
#     STREAMMGR_SKIP_REALWORLD=1. STREAMMGR_BENCH=1 adds the benchmark
#     (direct vs through the daemon; ./run-tests.sh -s -k bench to see it).
# Needs python3 (3.11 or later) with venv and pip, and Go. PYTHON=python3.13
# chooses the interpreter; VENV=dir another virtualenv.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
venv=${VENV:-$here/.venv}

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "run-tests.sh: creating $venv"
  "$python" -m venv --clear "$venv" ||
    { echo "run-tests.sh: $python -m venv failed (Debian/Ubuntu: apt install python3-venv)" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q "$here[test,realworld]"

tmp=$(mktemp -d /tmp/smtest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
if [[ -z ${STREAMMGR_BIN:-} ]]; then
  (cd "$repo" && go build -o "$tmp/streammgrd" ./cmd/streammgrd)
  export STREAMMGR_BIN=$tmp/streammgrd
fi
unset STREAMMGR_ADDR STREAMMGR_TOKEN STREAMMGR_TRANSPORT
cd "$here"
# The pytest script, not python -m pytest: the working directory must not
# shadow the installed package with the source tree (which has no stubs).
"$venv/bin/pytest" -q -o faulthandler_timeout=120 "$@"
