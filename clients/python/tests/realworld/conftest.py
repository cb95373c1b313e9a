"""Fixtures of the real-world suite: redis-py and nats-py, unmodified, with
asyncio's stream functions replaced by streammgr's (streammgr.install()),
against real redis-server and nats-server processes started here, through a
streammgrd of this suite's own.

The server binaries are looked for on $PATH and in /usr/bin and /usr/sbin
($STREAMMGR_REDIS_SERVER / $STREAMMGR_NATS_SERVER name others). A missing
one FAILS the tests that need it, with a message saying what to install;
STREAMMGR_SKIP_REALWORLD=1 skips the whole suite instead.

Every test ends by checking, through the daemon's ListStreams, that no
stream is left in the daemon (it runs with --closed-linger 100ms, so a
closed stream's handle goes soon after its socket).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Iterator

import pytest

import streammgr

from conftest import Daemon  # tests/conftest.py

SKIP_ENV = "STREAMMGR_SKIP_REALWORLD"


def _skip_all() -> bool:
    return os.environ.get(SKIP_ENV, "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _skip_all():
        return
    mark = pytest.mark.skip(reason=f"{SKIP_ENV} is set")
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(mark)


def find_binary(name: str, env: str, apt: str) -> str:
    """The server binary, or a test failure saying how to get it."""
    given = os.environ.get(env)
    if given:
        if not os.access(given, os.X_OK):
            pytest.fail(f"${env}={given} is not an executable", pytrace=False)
        return given
    found = shutil.which(name)
    if found is None:
        for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
            p = os.path.join(d, name)
            if os.access(p, os.X_OK):
                found = p
                break
    if found is None:
        pytest.fail(f"{name} not found (on $PATH, /usr/bin, /usr/sbin): the real-world suite needs it. "
                    f"Install it (apt-get install {apt}), name it with ${env}, "
                    f"or set {SKIP_ENV}=1 to skip this suite.", pytrace=False)
    return found


def free_port() -> int:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: str, greet: bytes | None, probe: bytes | None,
                expect: bytes, what: str, timeout: float = 20.0) -> bool:
    """Waits until the server on port answers probe with expect (False if
    the process exited: the port was taken, as a rule)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                got = b""
                if probe is not None:
                    s.sendall(probe)
                while expect not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                if expect in got:
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not become ready on port {port}; log: {open(log).read()[-2000:]}")
        time.sleep(0.02)


def _terminate(proc: "subprocess.Popen[bytes] | None") -> None:
    """SIGTERM a server process still running, SIGKILL it after 10 s, reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    def __init__(self, binary: str):
        self.dir = tempfile.mkdtemp(prefix="smr", dir="/tmp")
        self.unix = os.path.join(self.dir, "redis.sock")
        self.log = os.path.join(self.dir, "redis.log")
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> "RedisServer":
        # redis-server cannot take port 0: pick a free port, and pick again
        # if someone took it first.
        for _ in range(10):
            self.port = free_port()
            args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.unix,
                    "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir,
                    "--logfile", self.log, "--daemonize", "no", "--protected-mode", "no"]
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _wait_ready(self.proc, self.port, self.log, None, b"PING\r\n", b"+PONG", "redis-server"):
                return self
        raise RuntimeError(f"redis-server would not start; log: {open(self.log).read()[-2000:]}")

    def stop(self) -> None:
        _terminate(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class NatsServer:
    MAX_PAYLOAD = 8 << 20

    def __init__(self, binary: str):
        self.dir = tempfile.mkdtemp(prefix="smn", dir="/tmp")
        self.log = os.path.join(self.dir, "nats.log")
        self.conf = os.path.join(self.dir, "nats.conf")
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        with open(self.conf, "w") as f:
            # 2 MiB messages need more than the default 1 MB payload limit.
            f.write(f"max_payload: {self.MAX_PAYLOAD}\nmax_pending: {64 << 20}\n")
        for _ in range(10):
            self.port = free_port()
            args = [self.binary, "-c", self.conf, "-a", "127.0.0.1", "-p", str(self.port), "-l", self.log]
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _wait_ready(self.proc, self.port, self.log, None, None, b"INFO ", "nats-server"):
                return self
        raise RuntimeError(f"nats-server would not start; log: {open(self.log).read()[-2000:]}")

    def stop(self) -> None:
        _terminate(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = find_binary("redis-server", "STREAMMGR_REDIS_SERVER", "redis-server")
    srv = RedisServer(binary).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    binary = find_binary("nats-server", "STREAMMGR_NATS_SERVER", "nats-server")
    srv = NatsServer(binary).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def rw_daemon(daemon_bin: str) -> Iterator[Daemon]:
    """This suite's own daemon, so that its stream count is this suite's."""
    d = Daemon(daemon_bin, "--closed-linger", "100ms").start()
    yield d
    d.cleanup()


def _describe(resp: Any) -> str:
    return ", ".join(f"{s.stream_id} {s.kind} {s.peername} {s.state}" for s in resp.streams)


async def assert_no_streams(address: str, timeout: float = 15.0) -> None:
    """Waits until the daemon lists no stream (fails naming those left)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        resp = await streammgr.list_streams(address)
        if not resp.streams:
            return
        if loop.time() > deadline:
            raise AssertionError(f"streams left in the daemon: {_describe(resp)}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def installed(rw_daemon: Daemon) -> Any:
    """streammgr.install() for the test; afterwards, no stream may be left
    in the daemon."""
    streammgr.install(rw_daemon.address)
    try:
        yield rw_daemon
    finally:
        streammgr.uninstall()
    await assert_no_streams(rw_daemon.address)
