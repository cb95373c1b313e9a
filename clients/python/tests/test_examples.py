"""The four classic asyncio examples of the Python documentation, in
examples/ with only their import lines changed, run against a real daemon;
and the same programs entirely unmodified, run with `python -m streammgr`
(install()).

They use fixed ports (8888, 80): when this runs as root with unshare and
nsenter available, the daemon and the examples run in a network namespace
of their own, so nothing else on the machine can hold those ports.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time

import pytest

import streammgr
from conftest import Daemon, HERE

EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")


@pytest.fixture(scope="module")
def netns():
    """The pid of a process holding a new network namespace (loopback up),
    or None to use the machine's."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        yield None
        return
    p = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && echo ready && exec cat"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None and p.stdin is not None
    if p.stdout.readline() != b"ready\n":
        p.kill()
        p.wait()
        yield None
        return
    yield p.pid
    p.stdin.close()
    p.wait()


def ns(pid: int | None, cmd: list[str]) -> list[str]:
    return ["nsenter", "-t", str(pid), "-n", "--", *cmd] if pid else cmd


@pytest.fixture
def ns_daemon(daemon_bin: str, netns: int | None):
    d = Daemon(daemon_bin, prefix=ns(netns, [])).start()
    yield d
    d.cleanup()


def env_for(d: Daemon) -> dict[str, str]:
    env = dict(os.environ, STREAMMGR_ADDR=d.address, PYTHONUNBUFFERED="1")
    env.pop("STREAMMGR_TRANSPORT", None)
    return env


def start_bg(netns: int | None, cmd: list[str], env: dict[str, str], ready: bytes) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(ns(netns, cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/")
    assert p.stdout is not None
    deadline = time.monotonic() + 30
    seen = b""
    while ready not in seen:
        line = p.stdout.readline()
        if not line or time.monotonic() > deadline:
            p.kill()
            raise AssertionError(f"{cmd} did not get ready: {seen!r}")
        seen += line
    return p


def stop(p: subprocess.Popen[bytes]) -> str:
    p.terminate()
    out, _ = p.communicate(timeout=20)
    return out.decode()


def run(netns: int | None, cmd: list[str], env: dict[str, str]) -> str:
    r = subprocess.run(ns(netns, cmd), env=env, capture_output=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    return r.stdout.decode()


def original(name: str, tmp: str) -> str:
    """The docs' program: the example with its import lines put back."""
    with open(os.path.join(EXAMPLES, name)) as f:
        src = f.read()
    lines = src.splitlines(keepends=True)
    changed = [l for l in lines if "streammgr" in l and not l.startswith("#")]
    assert all(l.startswith("from streammgr import ") for l in changed), changed
    src = src.replace("from streammgr import asyncio", "import asyncio").replace(
        "from streammgr import socket", "import socket")
    path = os.path.join(tmp, "orig_" + name)
    with open(path, "w") as f:
        f.write(src)
    return path


def listing(d: Daemon):
    async def both():
        return await streammgr.list_streams(d.address), await streammgr.list_servers(d.address)

    return asyncio.run(both())


@pytest.mark.parametrize("mode", ["examples", "install"])
def test_echo_server_and_client(ns_daemon: Daemon, netns: int | None, mode: str, tmp_path) -> None:
    env = env_for(ns_daemon)
    if mode == "examples":
        server_cmd = [sys.executable, os.path.join(EXAMPLES, "echo_server.py")]
        client_cmd = [sys.executable, os.path.join(EXAMPLES, "echo_client.py")]
    else:
        server_cmd = [sys.executable, "-m", "streammgr", original("echo_server.py", str(tmp_path))]
        client_cmd = [sys.executable, "-m", "streammgr", original("echo_client.py", str(tmp_path))]
    server = start_bg(netns, server_cmd, env, b"Serving on ('127.0.0.1', 8888)")
    try:
        streams, servers = listing(ns_daemon)
        assert any(list(s.sockets) == ["127.0.0.1:8888"] and s.state == "serving" for s in servers.servers)
        out = run(netns, client_cmd, env)
        assert out.splitlines() == ["Send: 'Hello World!'", "Received: 'Hello World!'", "Close the connection"]
        streams, _ = listing(ns_daemon)
        # Both ends went through the daemon: the client's stream to 8888 and
        # the one the server accepted.
        assert any(s.peername == "127.0.0.1:8888" and s.bytes_out == 12 for s in streams.streams)
        assert any(s.sockname == "127.0.0.1:8888" and s.server_id and s.bytes_in == 12 for s in streams.streams)
    finally:
        out = stop(server)
    assert "Received 'Hello World!' from ('127.0.0.1'," in out


@pytest.mark.parametrize("mode", ["examples", "install"])
def test_http_headers(ns_daemon: Daemon, netns: int | None, mode: str, tmp_path) -> None:
    if netns is None:
        pytest.skip("needs port 80: runs in a network namespace of its own (root, unshare, nsenter)")
    env = env_for(ns_daemon)
    http = start_bg(netns, [sys.executable, "-u", "-m", "http.server", "80", "--bind", "127.0.0.1"], env,
                    b"Serving HTTP")
    try:
        if mode == "examples":
            cmd = [sys.executable, os.path.join(EXAMPLES, "http_headers.py"), "http://127.0.0.1/"]
        else:
            cmd = [sys.executable, "-m", "streammgr", original("http_headers.py", str(tmp_path)), "http://127.0.0.1/"]
        out = run(netns, cmd, env)
    finally:
        stop(http)
    lines = out.splitlines()
    assert lines[0].startswith("HTTP header> HTTP/1.0 200 OK")
    assert any(l.startswith("HTTP header> Server: SimpleHTTP") for l in lines)
    streams, _ = listing(ns_daemon)
    assert any(s.peername == "127.0.0.1:80" for s in streams.streams)


def test_socketpair(ns_daemon: Daemon, netns: int | None) -> None:
    out = run(netns, [sys.executable, os.path.join(EXAMPLES, "socketpair.py")], env_for(ns_daemon))
    assert out.strip() == "Received: abc"
    streams, _ = listing(ns_daemon)
    assert sum(1 for s in streams.streams if s.kind == "pair") == 2


def test_socketpair_unmodified_under_install(ns_daemon: Daemon, netns: int | None, tmp_path) -> None:
    # A socket the program made itself stays its own (install() hands
    # sock= of a real socket to asyncio): the program still works.
    out = run(netns, [sys.executable, "-m", "streammgr", original("socketpair.py", str(tmp_path))],
              env_for(ns_daemon))
    assert out.strip() == "Received: abc"
