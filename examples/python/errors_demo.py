#!/usr/bin/env python3
"""asyncio's read exceptions, back from streammgrd.

1. readuntil() over the reader's limit: the daemon answers RESOURCE_EXHAUSTED
   (reason LIMIT_OVERRUN, detail streammgr.v1.LimitOverrunError{consumed})
   and the client raises asyncio.LimitOverrunError; the data stays buffered.
2. readexactly() past EOF: the daemon answers incomplete = true with the
   partial bytes and the client raises asyncio.IncompleteReadError.

    .venv/bin/python errors_demo.py unix:/tmp/streammgrd.sock
"""

import argparse
import asyncio

import streammgr_client as sm


async def demo(client: sm.Client) -> None:
    (reader, writer), (peer_reader, peer_writer) = await client.open_pair(limit=8)
    async with sm.aborting(writer, peer_writer):  # on a failure or Ctrl-C, abort both
        await read_errors(reader, writer, peer_writer)


async def read_errors(reader: sm.StreamReader, writer: sm.StreamWriter, peer_writer: sm.StreamWriter) -> None:
    chunk = b"0123456789ABCDEF"  # 16 bytes, no newline, limit 8
    await peer_writer.write(chunk)
    await peer_writer.drain()
    try:
        await reader.readuntil(b"\n")
        raise SystemExit("readuntil: expected LimitOverrunError")
    except asyncio.LimitOverrunError as e:
        print(f"ReadUntil over the limit: {e.grpc_code.name} {e.reason} consumed={e.consumed}")
        print(f"  raised {type(e).__module__}.{type(e).__name__}({e.args[0]!r}, consumed={e.consumed})")

    # Nothing was lost: the bytes are still there.
    kept = await reader.readexactly(len(chunk))
    print(f"data kept: {kept!r}")

    await peer_writer.write(b"abc")
    await peer_writer.close()  # the peer closes: EOF after "abc"
    await peer_writer.wait_closed()
    try:
        await reader.readexactly(10)
        raise SystemExit("readexactly: expected IncompleteReadError")
    except asyncio.IncompleteReadError as e:
        print(f"ReadExactly past EOF: incomplete partial={e.partial!r} expected={e.expected}")
        print(f"  raised {type(e).__module__}.{type(e).__name__}: {e}")

    await writer.close()
    await writer.wait_closed()


async def main(args: argparse.Namespace) -> None:
    async with sm.Client(args.address) as client:
        await demo(client)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sm.add_address_argument(parser)
    sm.run(main(sm.parse_args(parser)))
