"""Echo round trips: plain asyncio against the same round trips through streammgrd.

Both sides talk to one local echo server (plain asyncio, started here) and
send PAYLOAD bytes, then read them back, ROUNDS times:

  asyncio     asyncio.open_connection: write, drain, readexactly
  streammgrd  the same calls through the daemon (streammgr.open_connection)

Usage: .venv/bin/python bench_echo.py ADDR [--rounds N] [--payload BYTES]
Prints round trips per second and the ratio; it is a measurement, not a test.
"""

import argparse
import asyncio
import os
import time

import streammgr


async def echo(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def rounds(reader, writer, payload, n):
    start = time.perf_counter()
    for _ in range(n):
        writer.write(payload)
        await writer.drain()
        await reader.readexactly(len(payload))
    return time.perf_counter() - start


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("address", nargs="?", default=os.environ.get("STREAMMGR_ADDR"),
                   help="streammgrd address, unix:/path or host:port (default $STREAMMGR_ADDR)")
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--payload", type=int, default=4096)
    args = p.parse_args()
    if not args.address:
        p.error("no daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR")
    payload = b"x" * args.payload
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        base = await rounds(r, w, payload, args.rounds)
        w.close()
        await w.wait_closed()
        r, w = await streammgr.open_connection("127.0.0.1", port, address=args.address)
        through = await rounds(r, w, payload, args.rounds)
        w.close()
        await w.wait_closed()
    for name, secs in (("asyncio", base), ("streammgrd", through)):
        print(f"{name:10} {args.rounds / secs:9.0f} round trips/s  "
              f"{args.rounds * args.payload / secs / 1e6:7.1f} MB/s")
    print(f"streammgrd takes {through / base:.1f}x the time of in-process asyncio")


if __name__ == "__main__":
    asyncio.run(main())
