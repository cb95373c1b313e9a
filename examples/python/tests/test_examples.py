"""The example scripts, run as programs against a real streammgrd and
ordinary (non-streammgr) peers."""

import asyncio
import http.server
import os
import re
import signal
import subprocess
import sys
import threading

from conftest import EXAMPLES_PY

PYTHON = sys.executable


def script(name):
    return os.path.join(EXAMPLES_PY, name)


def run_example(env, *args, check=True):
    p = subprocess.run([PYTHON, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"{args}: exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def test_socketpair(example_env):
    assert run_example(example_env, script("socketpair.py")).stdout == "Received: b'abc'\n"


def test_errors_demo(example_env):
    out = run_example(example_env, script("errors_demo.py")).stdout
    assert "ReadUntil over the limit: RESOURCE_EXHAUSTED LIMIT_OVERRUN consumed=16" in out
    assert "data kept: b'0123456789ABCDEF'" in out
    assert "ReadExactly past EOF: incomplete partial=b'abc' expected=10" in out
    for line in [
        "Read timed out after 50 ms: offset still 0",
        "Next read at offset 0: b'late data', next offset 9: nothing lost",
        "Read again at offset 0 (a lost answer): b'late data' replayed",
        "Read at offset 0: OUT_OF_RANGE OFFSET_BEHIND earliest_offset=9",
        "Read at offset 99: OUT_OF_RANGE OFFSET_AHEAD next_offset=13",
        "Write b'once' at offset 13 again (a retry): next offset 17",
        "Received to EOF: b'once'",
    ]:
        assert line + "\n" in out, out


def test_echo_client_against_asyncio_server(example_env):
    async def go():
        async def echo(reader, writer):
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            proc = await asyncio.create_subprocess_exec(
                PYTHON, script("echo_client.py"), "--port", str(port),
                env=example_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            return out.decode()

    out = asyncio.run(go())
    assert out == "Send: 'Hello World!'\nReceived: 'Hello World!'\nClose the connection\n"


def test_echo_client_fails_when_refused(example_env):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = run_example(example_env, script("echo_client.py"), "--port", str(port), check=False)
    assert p.returncode != 0
    assert "ConnectionRefusedError" in p.stderr


def test_echo_server_with_plain_asyncio_client(example_env):
    proc = subprocess.Popen(
        [PYTHON, script("echo_server.py"), "--port", "0"],
        env=example_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()
        m = re.fullmatch(r"Serving on \('127\.0\.0\.1', (\d+)\)\n", first)
        assert m, f"first line {first!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        port = int(m.group(1))

        async def talk(message):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(message)
            await writer.drain()
            data = await reader.read()  # the server closes after echoing
            writer.close()
            await writer.wait_closed()
            return data

        async def both():
            return await asyncio.wait_for(asyncio.gather(talk(b"first"), talk(b"second")), 30)

        assert asyncio.run(both()) == [b"first", b"second"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Received 'first' from ('127.0.0.1', " in out
        assert "Send: 'second'" in out
        assert out.count("Close the connection") == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("X-Request-Path", self.path)
        self.send_header("X-Request-Host", self.headers.get("Host", ""))
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_headers(example_env):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        out = run_example(example_env, script("http_headers.py"), f"http://127.0.0.1:{port}/some/path?q=1").stdout
    finally:
        httpd.shutdown()
        httpd.server_close()
    lines = out.splitlines()
    assert re.fullmatch(r"HTTP header> HTTP/1\.[01] 200 OK", lines[0]), lines
    assert "HTTP header> X-Request-Path: /some/path?q=1" in lines
    assert f"HTTP header> X-Request-Host: 127.0.0.1:{port}" in lines
    assert all(line.startswith("HTTP header> ") for line in lines)
