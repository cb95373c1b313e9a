#!/usr/bin/env python3
"""asyncio's read exceptions, back from streammgrd.

1. readuntil() over the reader's limit: the daemon answers RESOURCE_EXHAUSTED
   (reason LIMIT_OVERRUN, detail streammgr.v1.LimitOverrunError{consumed})
   and the client raises asyncio.LimitOverrunError; the data stays buffered.
2. readexactly() past EOF: the daemon answers incomplete = true with the
   partial bytes and the client raises asyncio.IncompleteReadError.
3. Offsets: asyncio.wait_for(reader.read(n), t) that times out loses
   nothing (the reader's offset stays, the next read gets the bytes the
   peer sends later); a read at an offset already read is answered again
   (what the client's retry does after a lost answer); offsets outside
   what the daemon keeps are OUT_OF_RANGE (OFFSET_BEHIND, OFFSET_AHEAD);
   a write retried at the same offset is accepted once.

    .venv/bin/python errors_demo.py unix:/tmp/streammgrd.sock
"""

import argparse
import asyncio

import streammgr_client as sm


async def demo(client: sm.Client) -> None:
    (reader, writer), (peer_reader, peer_writer) = await client.open_pair(limit=8)
    async with sm.aborting(writer, peer_writer):  # on a failure or Ctrl-C, abort both
        await read_errors(reader, writer, peer_writer)
    (reader, writer), (peer_reader, peer_writer) = await client.open_pair()
    async with sm.aborting(writer, peer_writer):
        await offsets(reader, writer, peer_writer)


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


async def offsets(reader: sm.StreamReader, writer: sm.StreamWriter, peer_writer: sm.StreamWriter) -> None:
    # A read that times out: asyncio cancels it, the reader's offset stays.
    try:
        await asyncio.wait_for(reader.read(100), 0.05)
        raise SystemExit("read: expected a timeout, nothing was sent")
    except TimeoutError:
        print(f"Read timed out after 50 ms: offset still {reader.offset}")
    await peer_writer.write(b"late data")
    print(f"Peer sent {b'late data'!r} after the timeout")
    before = reader.offset
    data = await reader.readexactly(9)
    print(f"Next read at offset {before}: {data!r}, next offset {reader.offset}: nothing lost")

    # An answer lost on the way: the client retries at the offset it had,
    # and the daemon answers with the same bytes.
    reader.offset = 0
    print(f"Read again at offset 0 (a lost answer): {await reader.readexactly(9)!r} replayed")
    await peer_writer.write(b"more")
    at = reader.offset
    data = await reader.readexactly(4)
    print(f"Read {data!r} at offset {at}: the bytes before {at} are acknowledged, next offset {reader.offset}")
    at = reader.offset
    for offset, key in ((0, "earliest_offset"), (99, "next_offset")):
        reader.offset = offset
        try:
            await reader.read(100)
            raise SystemExit(f"read at offset {offset}: expected OUT_OF_RANGE")
        except sm.StreammgrError as e:
            print(f"Read at offset {offset}: {e.grpc_code.name} {e.reason} {key}={e.metadata[key]}")
    reader.offset = at

    # A write retried at the same offset (its answer lost) is accepted once.
    offset = peer_writer.offset
    for attempt in ("", " again (a retry)"):
        peer_writer.offset = offset
        await peer_writer.write(b"once")
        print(f"Write {b'once'!r} at offset {offset}{attempt}: next offset {peer_writer.offset}")
    await peer_writer.close()
    await peer_writer.wait_closed()
    print(f"Received to EOF: {await reader.read()!r}")

    await writer.close()
    await writer.wait_closed()


async def main(args: argparse.Namespace) -> None:
    async with sm.Client(args.address) as client:
        await demo(client)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sm.add_address_argument(parser)
    sm.run(main(sm.parse_args(parser)))
