"""The package is typed (py.typed): mypy --strict passes on it as installed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import streammgr

PYPROJECT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")


def test_py_typed_and_stubs_installed() -> None:
    pkg = os.path.dirname(streammgr.__file__)
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    assert os.path.exists(os.path.join(pkg, "v1", "streammgr_pb2.pyi"))


def test_mypy_strict() -> None:
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", PYPROJECT, "--cache-dir",
                        "/tmp/streammgr-mypy-cache", "-p", "streammgr"], capture_output=True, text=True, timeout=170,
                       cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr
