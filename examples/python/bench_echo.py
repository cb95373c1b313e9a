"""Echo round trips: plain asyncio against the same round trips through streammgrd.

Both sides talk to one local echo server (plain asyncio, started here) and
send PAYLOAD bytes, then read them back, ROUNDS times:

  asyncio     asyncio.open_connection: write, drain, readexactly
  streammgrd  the same calls through the daemon (streammgr_client)

Usage: .venv/bin/python bench_echo.py ADDR [--rounds N] [--payload BYTES]
Prints round trips per second and the ratio; it is a measurement, not a test.
"""

import argparse
import asyncio
import time

import streammgr_client


async def echo(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def rounds(reader, writer, payload, n, awaited_write):
    start = time.perf_counter()
    for _ in range(n):
        if awaited_write:
            await writer.write(payload)
        else:
            writer.write(payload)
        await writer.drain()
        await reader.readexactly(len(payload))
    return time.perf_counter() - start


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    streammgr_client.add_address_argument(p)
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--payload", type=int, default=4096)
    args = streammgr_client.parse_args(p)
    payload = b"x" * args.payload
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        base = await rounds(r, w, payload, args.rounds, False)
        w.close()
        await w.wait_closed()
        async with streammgr_client.Client(args.address) as c:
            r, w = await c.open_connection("127.0.0.1", port)
            through = await rounds(r, w, payload, args.rounds, True)
            await w.close()
            await w.wait_closed()
    for name, secs in (("asyncio", base), ("streammgrd", through)):
        print(f"{name:10} {args.rounds / secs:9.0f} round trips/s  "
              f"{args.rounds * args.payload / secs / 1e6:7.1f} MB/s")
    print(f"streammgrd takes {through / base:.1f}x the time of in-process asyncio")


if __name__ == "__main__":
    asyncio.run(main())
