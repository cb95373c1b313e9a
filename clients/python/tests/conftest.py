"""Fixtures: a real streammgrd (binary from $STREAMMGR_BIN, else built with
`go build` from the repository), peers, and the implementations under test.

Many tests run twice, once with plain asyncio and once through the daemon
(the ``impl`` fixture): the same assertions hold for both, which is what
"asyncio's exact semantics" means here.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

import streammgr

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


@pytest.fixture(scope="session")
def daemon_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    env = os.environ.get("STREAMMGR_BIN")
    if env:
        return env
    out = str(tmp_path_factory.mktemp("bin") / "streammgrd")
    subprocess.run(["go", "build", "-o", out, "./cmd/streammgrd"], cwd=REPO, check=True)
    return out


def short_tmpdir() -> str:
    # Unix socket paths are at most 107 bytes: stay short, under /tmp.
    return tempfile.mkdtemp(prefix="sm", dir="/tmp")


class Daemon:
    def __init__(self, binary: str, *args: str, prefix: list[str] | None = None):
        self.prefix = prefix or []
        self.dir = short_tmpdir()
        self.sock = os.path.join(self.dir, "d.sock")
        self.address = "unix:" + self.sock
        self.args = list(args)
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = os.path.join(self.dir, "daemon.log")

    def start(self) -> "Daemon":
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([*self.prefix, self.binary, "--listen", self.address, *self.args],
                                     stdout=self._logf, stderr=self._logf)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streammgrd exited: {open(self.log).read()}")
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(self.sock)
                    break
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() > deadline:
                raise RuntimeError("streammgrd did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(daemon_bin: str):
    d = Daemon(daemon_bin).start()
    yield d
    d.cleanup()


@pytest.fixture
def make_daemon(daemon_bin: str):
    made: list[Daemon] = []

    def make(*args: str, prefix: list[str] | None = None) -> Daemon:
        d = Daemon(daemon_bin, *args, prefix=prefix).start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.cleanup()


@dataclass
class Impl:
    """open_connection & co of one implementation."""

    name: str
    open_connection: Callable[..., Any]
    open_unix_connection: Callable[..., Any]
    start_server: Callable[..., Any]
    start_unix_server: Callable[..., Any]

    @property
    def daemon(self) -> bool:
        return self.name == "streammgr"


def streammgr_impl(address: str) -> Impl:
    return Impl("streammgr",
                functools.partial(streammgr.open_connection, address=address),
                functools.partial(streammgr.open_unix_connection, address=address),
                functools.partial(streammgr.start_server, address=address),
                functools.partial(streammgr.start_unix_server, address=address))


ASYNCIO = Impl("asyncio", asyncio.open_connection, asyncio.open_unix_connection, asyncio.start_server,
               asyncio.start_unix_server)


@pytest.fixture(params=["asyncio", "streammgr"])
def impl(request: pytest.FixtureRequest, daemon: Daemon) -> Impl:
    if request.param == "asyncio":
        return ASYNCIO
    return streammgr_impl(daemon.address)


@pytest.fixture
def sm(daemon: Daemon) -> Impl:
    return streammgr_impl(daemon.address)


@pytest.fixture
def tmpdir_short():
    d = short_tmpdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Polls cond until it is true (a condition, never a guessed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = cond()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Peer:
    """A plain asyncio TCP server in this loop that records its connections
    (the far end of the streams under test)."""

    def __init__(self) -> None:
        self.conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self, **kw: Any) -> "Peer":
        async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self.conns.put((r, w))

        self.server = await asyncio.start_server(cb, "127.0.0.1", 0, **kw)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def accept(self, timeout: float = 10) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.conns.get(), timeout)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        while not self.conns.empty():
            _, w = self.conns.get_nowait()
            w.close()
        await self.server.wait_closed()


@pytest.fixture
async def peer():
    p = await Peer().start()
    yield p
    await p.close()


async def echo_handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except ConnectionError:
        pass
    finally:
        w.close()


async def stream_ids(address: str) -> set[str]:
    resp = await streammgr.list_streams(address)
    return {s.stream_id for s in resp.streams}
