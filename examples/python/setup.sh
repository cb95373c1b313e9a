#!/usr/bin/env bash
# Sets up the Python examples in one command: a virtualenv in .venv with the
# streammgr package of this repository (clients/python; pip builds it, which
# generates its gRPC stubs from proto/).
# Usage: examples/python/setup.sh   (PYTHON=python3.13 to choose the interpreter)
# Needs the interpreter's venv module with pip (Debian/Ubuntu: apt install
# python3-venv, or python3.13-venv for PYTHON=python3.13); Python 3.11+.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
venv_python=$here/.venv/bin/python
# A .venv without a working pip (a `python3 -m venv` that failed half-way,
# python3-venv missing) is made again from scratch.
if [[ ! -x $venv_python ]] || ! "$venv_python" -m pip --version >/dev/null 2>&1; then
  if [[ -e $here/.venv ]]; then
    echo "setup.sh: $here/.venv has no working pip: recreating it"
  fi
  "$python" -m venv --clear "$here/.venv" ||
    { echo "setup.sh: $python -m venv failed: install the venv module (Debian/Ubuntu: apt install python3-venv)" >&2; exit 1; }
fi
# Not an editable install: the examples run the package as a user gets it.
"$venv_python" -m pip install --disable-pip-version-check -q "$here/../../clients/python"
