#!/usr/bin/env python3
"""asyncio's read exceptions through streammgrd, and the daemon's answers beneath.

1. With streammgr, as asyncio raises them: readuntil() over the reader's
   limit raises asyncio.LimitOverrunError (the data stays buffered),
   readexactly() past EOF asyncio.IncompleteReadError, and a read given up
   by asyncio.wait_for loses nothing.
2. The same on the wire, with the daemon's unary RPCs (the stubs come with
   the streammgr package), as streammgr sends them for you: ReadUntil over
   the limit answers RESOURCE_EXHAUSTED (reason LIMIT_OVERRUN, detail
   streammgr.v1.LimitOverrunError{consumed}), and every read and write
   carries an offset: a read that times out loses nothing (the next read
   at the same offset gets the bytes the peer sends later), a read at an
   offset already read is answered again (what a retry after a lost answer
   does), offsets outside what the daemon keeps are OUT_OF_RANGE
   (OFFSET_BEHIND, OFFSET_AHEAD), a write retried at the same offset is
   accepted once.

    .venv/bin/python errors_demo.py unix:/tmp/streammgrd.sock
"""

import argparse
import asyncio
import os
import signal
import sys
import time

import grpc
from google.rpc import error_details_pb2, status_pb2

import streammgr
from streammgr.v1 import streammgr_pb2 as pb
from streammgr.v1 import streammgr_pb2_grpc


async def asyncio_errors(address):
    # A connected pair made by the daemon; our end's reader has a limit of 8.
    rsock, wsock = streammgr.socketpair(address=address)
    reader, writer = await streammgr.open_connection(sock=rsock, limit=8, address=address)
    peer_reader, peer_writer = await streammgr.open_connection(sock=wsock, address=address)

    chunk = b'0123456789ABCDEF'  # 16 bytes, no newline, limit 8
    peer_writer.write(chunk)
    await peer_writer.drain()
    try:
        await reader.readuntil(b'\n')
        raise SystemExit('readuntil: expected LimitOverrunError')
    except asyncio.LimitOverrunError as e:
        print(f'readuntil() over the limit: asyncio.LimitOverrunError consumed={e.consumed}')
        print(f'  raised {type(e).__module__}.{type(e).__name__}({e.args[0]!r}, consumed={e.consumed})')

    # Nothing was lost: the bytes are still there.
    kept = await reader.readexactly(len(chunk))
    print(f'data kept: {kept!r}')

    # A read given up by wait_for: the bytes the peer sends later all come.
    try:
        await asyncio.wait_for(reader.read(100), 0.05)
        raise SystemExit('read: expected a timeout, nothing was sent')
    except TimeoutError:
        pass
    peer_writer.write(b'late data')
    data = await reader.readexactly(9)
    print(f'wait_for(reader.read(100), 0.05) timed out; the next read got {data!r}: nothing lost')

    peer_writer.write(b'abc')
    peer_writer.close()  # the peer closes: EOF after "abc"
    await peer_writer.wait_closed()
    try:
        await reader.readexactly(10)
        raise SystemExit('readexactly: expected IncompleteReadError')
    except asyncio.IncompleteReadError as e:
        print(f'ReadExactly past EOF: incomplete partial={e.partial!r} expected={e.expected}')
        print(f'  raised {type(e).__module__}.{type(e).__name__}: {e}')

    writer.close()
    await writer.wait_closed()


def status(e):
    """A failed call's gRPC code name, ErrorInfo reason and metadata, and the
    LimitOverrunError detail, from its grpc-status-details-bin trailer."""
    reason, metadata, overrun = '', {}, None
    for key, value in e.trailing_metadata() or ():
        if key != 'grpc-status-details-bin':
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(pb.LimitOverrunError.DESCRIPTOR):
                overrun = pb.LimitOverrunError()
                detail.Unpack(overrun)
    return e.code().name, reason, metadata, overrun


async def close(stub, *ids):
    for sid in ids:
        await stub.Close(pb.CloseRequest(stream_id=sid))
        await stub.WaitClosed(pb.WaitClosedRequest(stream_id=sid))


async def on_the_wire(address):
    target = 'unix-abstract:' + address[len('unix:@'):] if address.startswith('unix:@') else address
    async with grpc.aio.insecure_channel(target) as channel:
        stub = streammgr_pb2_grpc.StreamServiceStub(channel)

        # ReadUntil over the limit is an error, with the details asyncio needs.
        pair = await stub.OpenPair(pb.OpenPairRequest(limit=8))
        sid, peer = pair.first_stream_id, pair.second_stream_id
        try:
            await stub.Write(pb.WriteRequest(stream_id=peer, data=b'0123456789ABCDEF', offset=0))
            await stub.Drain(pb.DrainRequest(stream_id=peer))
            try:
                await stub.ReadUntil(pb.ReadUntilRequest(stream_id=sid, separator=b'\n', offset=0))
                raise SystemExit('ReadUntil: expected RESOURCE_EXHAUSTED')
            except grpc.aio.AioRpcError as e:
                code, reason, _, overrun = status(e)
                print(f'ReadUntil over the limit: {code} {reason} consumed={overrun.consumed}')
                print(f'  message: {e.details()}')
        finally:
            await close(stub, sid, peer)

        # Offsets, on a new pair. Both ends start at 0.
        pair = await stub.OpenPair(pb.OpenPairRequest())
        sid, peer = pair.first_stream_id, pair.second_stream_id
        try:
            await offsets(stub, sid, peer)
        finally:
            await close(stub, sid)


async def offsets(stub, sid, peer):
    read_offset = write_offset = 0

    async def read_exactly(n, offset):
        r = await stub.ReadExactly(pb.ReadExactlyRequest(stream_id=sid, n=n, offset=offset))
        return r.data, r.next_offset

    async def write(data, offset):
        return (await stub.Write(pb.WriteRequest(stream_id=peer, data=data, offset=offset))).next_offset

    # A read with a deadline of our own: DEADLINE_EXCEEDED (or CANCELLED, when
    # the daemon, which got the deadline too, resets the call first), and
    # the offset stays.
    start = time.monotonic()
    try:
        await stub.Read(pb.ReadRequest(stream_id=sid, n=100, offset=read_offset), timeout=0.05)
        raise SystemExit('Read: expected a timeout, nothing was sent')
    except grpc.aio.AioRpcError as e:
        if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            raise
    print(f'Read timed out after {round((time.monotonic() - start) * 1000)} ms: offset still {read_offset}')
    write_offset = await write(b'late data', write_offset)
    print(f"Peer sent {b'late data'!r} after the timeout")
    data, next_offset = await read_exactly(9, read_offset)
    print(f'Next read at offset {read_offset}: {data!r}, next offset {next_offset}: nothing lost')

    # An answer lost on the way: a retry sends the offset it had, and the
    # daemon answers with the same bytes.
    data, read_offset = await read_exactly(9, 0)
    print(f'Read again at offset 0 (a lost answer): {data!r} replayed')
    write_offset = await write(b'more', write_offset)
    at = read_offset
    data, read_offset = await read_exactly(4, at)
    print(f'Read {data!r} at offset {at}: the bytes before {at} are acknowledged, next offset {read_offset}')

    # The bytes before 9 are gone; the stream has not reached 99.
    for offset, key in ((0, 'earliest_offset'), (99, 'next_offset')):
        try:
            await stub.Read(pb.ReadRequest(stream_id=sid, n=100, offset=offset))
            raise SystemExit(f'read at offset {offset}: expected OUT_OF_RANGE')
        except grpc.aio.AioRpcError as e:
            code, reason, metadata, _ = status(e)
            print(f'Read at offset {offset}: {code} {reason} {key}={metadata[key]}')

    # A write retried at the same offset (its answer lost) is accepted once.
    offset = write_offset
    for attempt in ('', ' again (a retry)'):
        write_offset = await write(b'once', offset)
        print(f"Write {b'once'!r} at offset {offset}{attempt}: next offset {write_offset}")
    await close(stub, peer)
    r = await stub.Read(pb.ReadRequest(stream_id=sid, offset=read_offset))  # no n: to EOF
    print(f'Received to EOF: {r.data!r}')


async def main(address):
    print('== asyncio, through streammgr')
    await asyncio_errors(address)
    print('== on the wire')
    await on_the_wire(address)



async def interruptible(coro):
    """Runs coro with SIGTERM cancelling it as Ctrl-C does (asyncio.run does
    that for SIGINT only); on its way out asyncio.run closes the streams
    still open, so none is left in the daemon."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    return await coro


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('address', nargs='?', default=os.environ.get('STREAMMGR_ADDR'),
                        help='streammgrd address, unix:/path or host:port (default $STREAMMGR_ADDR)')
    args = parser.parse_args()
    if not args.address:
        parser.error('no daemon address: pass unix:/path or host:port first, or set STREAMMGR_ADDR')
    try:
        asyncio.run(interruptible(main(args.address)))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM
        sys.exit(130)
