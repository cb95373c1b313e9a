#!/usr/bin/env python3
"""16-byte echo round trips: CPython asyncio directly, and the same through
streammgrd with the streammgr package.

Both talk to one local asyncio echo server (asyncio.start_server, run in a
process of its own by default, --echo inproc to run it in this event loop)
and do ROUNDS round trips of PAYLOAD bytes: write(), await drain(),
await readexactly(). Prints p50 and mean of each and the ratios
(streammgr / asyncio).

The daemon: --address, else $STREAMMGR_ADDR; with neither, one is started
for the run on a temporary Unix socket ($STREAMMGR_BIN, or built with
`go build` from the repository).

    .venv/bin/python bench_echo.py [--rounds 2000] [--payload 16] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import streammgr

ECHO_SERVER = r"""
import asyncio, sys
async def echo(r, w):
    try:
        while d := await r.read(65536):
            w.write(d)
            await w.drain()
    except ConnectionError:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


async def rounds(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes, n: int) -> list[float]:
    clock = time.perf_counter
    size = len(payload)
    out = []
    for _ in range(n):
        t0 = clock()
        writer.write(payload)
        await writer.drain()
        await reader.readexactly(size)
        out.append(clock() - t0)
    return out


def start_daemon() -> tuple[subprocess.Popen[bytes], str, str]:
    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.mkdtemp(prefix="sm")
    binary = os.environ.get("STREAMMGR_BIN")
    if not binary:
        binary = os.path.join(tmp, "streammgrd")
        subprocess.run(["go", "build", "-o", binary, "./cmd/streammgrd"], cwd=os.path.join(here, "..", ".."),
                       check=True)
    sock = os.path.join(tmp, "d.sock")
    proc = subprocess.Popen([binary, "--listen", "unix:" + sock], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("streammgrd did not start")
        time.sleep(0.01)
    return proc, "unix:" + sock, tmp


async def echo_inproc() -> tuple[int, asyncio.AbstractServer]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while d := await r.read(65536):
                w.write(d)
                await w.drain()
        except ConnectionError:
            pass
        w.close()

    srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    return srv.sockets[0].getsockname()[1], srv


def fmt(ts: list[float]) -> tuple[float, float]:
    return statistics.median(ts) * 1e6, statistics.mean(ts) * 1e6


async def run_once(address: str, port: int, payload: bytes, n: int) -> tuple[list[float], list[float]]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await rounds(r, w, payload, min(200, n))  # warm-up
    direct = await rounds(r, w, payload, n)
    w.close()
    await w.wait_closed()
    r2, w2 = await streammgr.open_connection("127.0.0.1", port, address=address)
    await rounds(r2, w2, payload, min(200, n))
    through = await rounds(r2, w2, payload, n)
    w2.close()
    await w2.wait_closed()
    return direct, through


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default=os.environ.get("STREAMMGR_ADDR"))
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--payload", type=int, default=16)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--echo", choices=("process", "inproc"), default="process")
    args = p.parse_args()
    daemon = tmp = None
    address = args.address
    if not address:
        daemon, address, tmp = start_daemon()
    echo_proc = srv = None
    try:
        if args.echo == "process":
            echo_proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
            assert echo_proc.stdout is not None
            port = int(echo_proc.stdout.readline())
        else:
            port, srv = await echo_inproc()
        payload = b"x" * args.payload
        print(f"{args.rounds} round trips of {args.payload} bytes, echo server: {args.echo}, "
              f"daemon: {address}, Python {sys.version.split()[0]}")
        for i in range(args.runs):
            direct, through = await run_once(address, port, payload, args.rounds)
            d50, dmean = fmt(direct)
            t50, tmean = fmt(through)
            print(f"run {i + 1}: asyncio direct  p50 {d50:7.1f} us  mean {dmean:7.1f} us")
            print(f"run {i + 1}: via streammgrd p50 {t50:7.1f} us  mean {tmean:7.1f} us")
            print(f"run {i + 1}: ratio p50 {t50 / d50:.2f}x  mean {tmean / dmean:.2f}x")
    finally:
        if srv is not None:
            srv.close()
        if echo_proc is not None:
            echo_proc.kill()
            echo_proc.wait()
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
