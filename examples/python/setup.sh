#!/usr/bin/env bash
# Sets up the Python examples in one command: a virtualenv in .venv with the
# pinned requirements, then the generated stubs (gen.sh).
# Usage: examples/python/setup.sh   (PYTHON=python3.13 to choose the interpreter)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
if [[ ! -x $here/.venv/bin/python ]]; then
  "$python" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
"$here/gen.sh"
