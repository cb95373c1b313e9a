"""Fixtures for the Python examples' tests.

The tests talk to a real streammgrd: the one at $STREAMMGR_ADDR when set (the
Go end-to-end test sets it), otherwise one built from this repository with
`go build` and started on a Unix socket for the session. A missing daemon or
Go toolchain fails the tests; nothing is skipped.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

EXAMPLES_PY = Path(__file__).resolve().parent.parent
REPO = EXAMPLES_PY.parent.parent


@pytest.fixture(scope="session")
def daemon_addr():
    addr = os.environ.get("STREAMMGR_ADDR")
    if addr:
        yield addr
        return
    go = shutil.which("go")
    if go is None:
        pytest.fail("set STREAMMGR_ADDR to a running streammgrd, or put go on PATH to build one")
    tmp = tempfile.mkdtemp(prefix="sm")  # short: Unix socket paths are limited to 108 bytes
    binary = os.path.join(tmp, "streammgrd")
    subprocess.run([go, "build", "-o", binary, "./cmd/streammgrd"], cwd=REPO, check=True)
    sock = os.path.join(tmp, "d.sock")
    log = open(os.path.join(tmp, "daemon.log"), "wb")
    proc = subprocess.Popen([binary, "--listen", "unix:" + sock], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"streammgrd did not start: see {log.name}")
            time.sleep(0.05)
    yield "unix:" + sock
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def example_env(daemon_addr):
    """Environment for running an example script as a subprocess."""
    env = dict(os.environ)
    env["STREAMMGR_ADDR"] = daemon_addr
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
