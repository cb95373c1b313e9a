"""Offsets and retries against a real streammgrd: a read that times out or
is cancelled loses nothing, a retried write is accepted once, and a call
broken by the transport is retried with the same offset.

The transport failures go through Proxy, a TCP proxy to the daemon in the
test's event loop that the test can stop, break and make swallow answers.
Nothing sleeps to wait for a condition: the tests poll the daemon
(ListStreams) or count attempts."""

import asyncio

import grpc
import pytest

import streammgr_client as sm


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def until(cond, what: str, timeout: float = 30) -> None:
    """Polls the async predicate cond until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def stream_info(client: sm.Client, stream_id: str):
    resp = await client.call("ListStreams", sm.pb.ListStreamsRequest())
    for s in resp.streams:
        if s.stream_id == stream_id:
            return s
    raise AssertionError(f"stream {stream_id} not in ListStreams")


class Proxy:
    """A TCP proxy on 127.0.0.1 to the daemon at daemon_addr.

    down: new connections are accepted and closed at once (counted in
    refused), as a daemon that is not there. hold: the daemon's bytes to
    the client are dropped (an answer lost on the way); only useful before
    breaking the connections. break_all() aborts every proxied connection."""

    def __init__(self, daemon_addr: str):
        self.daemon_addr = daemon_addr
        self.down = False
        self.hold = False
        self.refused = 0
        self.accepted = 0
        self._transports: set[asyncio.Transport] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return "127.0.0.1:%d" % self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._server.close()
        self.break_all()
        await self._server.wait_closed()

    def break_all(self) -> None:
        for t in list(self._transports):
            t.abort()
        self._transports.clear()

    async def _connect(self):
        if self.daemon_addr.startswith("unix:"):
            return await asyncio.open_unix_connection(sm.daemon_target(self.daemon_addr)[len("unix:"):])
        host, _, port = self.daemon_addr.rpartition(":")
        return await asyncio.open_connection(host, int(port))

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            cwriter.transport.abort()
            return
        self.accepted += 1
        dreader, dwriter = await self._connect()
        self._transports |= {cwriter.transport, dwriter.transport}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, held) -> None:
            try:
                while data := await r.read(65536):
                    if not held():
                        w.write(data)
            except (ConnectionError, OSError):
                pass
            finally:
                w.transport.abort()

        await asyncio.gather(
            pipe(creader, dwriter, lambda: False),
            pipe(dreader, cwriter, lambda: self.hold),
        )


async def through_proxy(daemon_addr: str, **client_args):
    """A proxy, a client through it and a direct client."""
    proxy = Proxy(daemon_addr)
    addr = await proxy.start()
    return proxy, sm.Client(addr, retries=30, backoff=0.02, **client_args), sm.Client(daemon_addr)


def test_offsets_advance_with_reads_and_writes(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (pr, pw) = await c.open_pair(limit=8)
            assert (r.offset, w.offset, pr.offset, pw.offset) == (0, 0, 0, 0)
            await pw.write(b"abc")
            await pw.writelines([b"de", b"f|"])
            assert pw.offset == 7
            assert await r.read(2) == b"ab" and r.offset == 2
            assert await r.readuntil(b"|") == b"cdef|" and r.offset == 7
            await pw.write(b"0123456789")
            with pytest.raises(asyncio.LimitOverrunError):
                await r.readuntil(b"|")
            assert r.offset == 7  # nothing consumed
            assert await r.readexactly(10) == b"0123456789" and r.offset == 17
            await pw.write(b"xy")
            await pw.write_eof()
            with pytest.raises(asyncio.IncompleteReadError) as ei:
                await r.readexactly(5)
            assert ei.value.partial == b"xy" and r.offset == 19
            assert (await stream_info(c, r.stream_id)).bytes_in == 19
            assert (await stream_info(c, pw.stream_id)).bytes_out == 19
            await w.close()
            await pw.close()

    arun(go())


def test_taking_over_a_stream_learns_its_offsets(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            await pw.write(b"abcdef")
            assert await r.readexactly(2) == b"ab"
            # Another reader and writer of the same streams, offsets unknown.
            r2, pw2 = sm.StreamReader(c, r.stream_id, offset=None), sm.StreamWriter(c, pw.stream_id, offset=None)
            assert await r2.readexactly(2) == b"cd" and r2.offset == 4
            await pw2.write(b"g")
            assert pw2.offset == 7
            assert await r2.readexactly(3) == b"efg" and r2.offset == 7
            await w.close()
            await pw.close()

    arun(go())


def test_wait_for_timeout_loses_nothing(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.read(100), 0.05)
            assert r.offset == 0
            # The peer sends after the timeout: the next read gets every byte.
            await pw.write(b"after the timeout")
            await until(lambda: arrived(c, r.stream_id, 17), "the bytes to arrive")
            assert await r.read(100) == b"after the timeout"
            assert r.offset == 17
            await w.close()
            await pw.close()

    arun(go())


async def buffered(c: sm.Client, stream_id: str, n: int) -> bool:
    return (await stream_info(c, stream_id)).buffered == n


async def arrived(c: sm.Client, stream_id: str, n: int) -> bool:
    """Whether n bytes reached the daemon: buffered, or consumed by a read
    that was given up on (the daemon keeps them for a read at its offset)."""
    s = await stream_info(c, stream_id)
    return s.buffered + s.bytes_in == n


def test_concurrent_read_is_refused_locally(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            first = asyncio.create_task(r.read(10))
            await asyncio.sleep(0)  # let it start
            with pytest.raises(RuntimeError, match="already waiting"):
                await r.readline()
            await pw.write(b"x")
            assert await first == b"x"
            await w.close()
            await pw.close()

    arun(go())


def test_line_too_long_moves_the_offset(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair(limit=4)
            await pw.write(b"much too long\none\n")
            with pytest.raises(ValueError) as ei:
                await r.readline()
            assert ei.value.reason == "LINE_TOO_LONG"
            assert r.offset == ei.value.next_offset == len(b"much too long\n")
            assert await r.readline() == b"one\n"
            assert r.offset == len(b"much too long\none\n")
            await w.close()
            await pw.close()

    arun(go())


def test_replay_and_offsets_out_of_range(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            await pw.write(b"abcdef")
            await until(lambda: buffered(c, r.stream_id, 6), "the bytes to arrive")
            assert await r.read(3) == b"abc"
            # An answer lost on the way: the same offset reads the same bytes.
            r.offset = 0
            assert await r.read(3) == b"abc"
            assert await r.read(3) == b"def" and r.offset == 6
            r.offset = 0  # acknowledged by the read at 3: gone
            with pytest.raises(sm.StreammgrError) as ei:
                await r.read(3)
            assert (ei.value.grpc_code, ei.value.reason) == (grpc.StatusCode.OUT_OF_RANGE, "OFFSET_BEHIND")
            assert ei.value.metadata["earliest_offset"] == "3"
            assert r.offset == 0  # a failed read leaves it
            r.offset = 99
            with pytest.raises(sm.StreammgrError) as ei:
                await r.read(3)
            assert ei.value.reason == "OFFSET_AHEAD" and ei.value.metadata["next_offset"] == "6"
            await w.close()
            await pw.close()

    arun(go())


def test_retried_write_is_accepted_once(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            await pw.write(b"once")
            pw.offset = 0  # as if the answer had been lost: the retry sends the same offset
            await pw.write(b"once")
            assert pw.offset == 4
            await pw.write(b"!")
            await pw.write_eof()
            assert await r.read() == b"once!"
            await w.close()
            await pw.close()

    arun(go())


async def answer_held(c: sm.Client, direct: sm.Client, proxy, data: bytes):
    """Starts a read through the proxy, which holds back what the daemon
    sends; returns, with the read task, once the daemon has answered it with
    data (written by the peer over the direct client)."""
    (r, w), (_, peer) = await c.open_pair()
    pw = sm.StreamWriter(direct, peer.stream_id)
    proxy.hold = True
    read = asyncio.create_task(r.read(100))
    await pw.write(data)

    async def consumed():
        return (await stream_info(direct, r.stream_id)).bytes_in == len(data)

    await until(consumed, "the daemon to answer the read")
    return r, w, pw, read


def test_read_retried_after_its_answer_is_lost(daemon_addr):
    # The daemon answers the read, the answer never arrives, the connection
    # breaks: the helper retries at the same offset and the daemon replays.
    async def go():
        proxy, c, direct = await through_proxy(daemon_addr)
        async with c, direct:
            r, w, pw, read = await answer_held(c, direct, proxy, b"lost once")
            proxy.hold = False
            proxy.break_all()
            assert await read == b"lost once"
            assert r.offset == 9 and proxy.accepted >= 2
            await pw.write(b", then more")
            assert await r.readexactly(11) == b", then more"
            await w.close()
            await pw.close()
            await proxy.close()

    arun(go())


def test_cancelled_read_after_the_daemon_answered_loses_nothing(daemon_addr):
    async def go():
        proxy, c, direct = await through_proxy(daemon_addr)
        async with c, direct:
            r, w, pw, read = await answer_held(c, direct, proxy, b"consumed, never seen")
            read.cancel()  # as asyncio.wait_for's timeout does
            with pytest.raises(asyncio.CancelledError):
                await read
            assert r.offset == 0
            proxy.hold = False
            proxy.break_all()
            assert await r.read(100) == b"consumed, never seen"
            assert r.offset == 20
            await w.close()
            await pw.close()
            await proxy.close()

    arun(go())


def test_calls_retried_while_the_daemon_is_unreachable(daemon_addr):
    # The proxy goes down (connections broken, new ones refused) while a
    # read waits; it comes back after the helper has retried at least once.
    async def go():
        proxy, c, direct = await through_proxy(daemon_addr)
        async with c, direct:
            (r, w), (_, peer) = await c.open_pair()
            pw = sm.StreamWriter(direct, peer.stream_id)
            await w.write(b"ping")
            proxy.down = True
            proxy.break_all()
            read = asyncio.create_task(r.read(100))

            async def refused():
                return proxy.refused >= 1

            await until(refused, "the helper to retry")
            await pw.write(b"pong")
            proxy.down = False
            assert await read == b"pong"
            assert r.offset == 4
            # Writes are retried too, and accepted once.
            proxy.down = True
            proxy.break_all()
            write = asyncio.create_task(w.write(b"!"))
            refused_before = proxy.refused

            async def refused_again():
                return proxy.refused > refused_before

            await until(refused_again, "the helper to retry the write")
            proxy.down = False
            await write
            assert w.offset == 5
            assert (await stream_info(direct, w.stream_id)).bytes_out == 5
            await w.close()
            await pw.close()
            await proxy.close()

    arun(go())


def test_attempt_timeout_is_retried_then_raised(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr, timeout=0.1, retries=1000, backoff=0.01) as c:
            (r, w), (_, pw) = await c.open_pair()
            attempts = 0
            real = c.stub.Read

            def counting(req, **kw):
                nonlocal attempts
                attempts += 1
                return real(req, **kw)

            c.stub.Read = counting
            read = asyncio.create_task(r.read(100))

            async def retried():
                return attempts >= 2

            await until(retried, "an attempt to time out")
            await pw.write(b"in time")
            assert await read == b"in time" and r.offset == 7
            c.retries = 1
            with pytest.raises(TimeoutError):
                await r.read(100)  # two attempts of 0.1 s, nothing comes
            assert r.offset == 7
            await pw.write(b"!")
            assert await r.read(100) == b"!"
            await w.close()
            await pw.close()

    arun(go())


def test_daemon_errors_are_not_retried(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            attempts = 0
            real = c.stub.Drain

            def counting(req, **kw):
                nonlocal attempts
                attempts += 1
                return real(req, **kw)

            c.stub.Drain = counting
            await w.abort()
            with pytest.raises(ConnectionResetError):  # UNAVAILABLE CONNECTION_LOST
                await w.drain()
            assert attempts == 1
            await pw.close()

    arun(go())


def test_superseded_read_is_retried(daemon_addr):
    # A read with the same offset from elsewhere (as a late copy of an
    # earlier attempt would be) supersedes the waiting read: ABORTED
    # READ_SUPERSEDED, nothing consumed. The helper reads again.
    async def go():
        async with sm.Client(daemon_addr) as c, sm.Client(daemon_addr) as other:
            (r, w), (_, pw) = await c.open_pair()
            attempts = 0
            real = c.stub.Read

            def counting(req, **kw):
                nonlocal attempts
                attempts += 1
                return real(req, **kw)

            c.stub.Read = counting
            read = asyncio.create_task(r.read(100))

            async def waiting():
                return attempts >= 1

            await until(waiting, "the read to start")
            # Until one of them reaches the daemon after the read (it may
            # come first, and is then superseded by the read itself).
            late = sm.pb.ReadRequest(stream_id=r.stream_id, n=100, offset=0)
            while attempts < 2:
                with pytest.raises((sm.StreammgrError, TimeoutError)) as ei:
                    await other.call("Read", late, timeout=1)
                assert getattr(ei.value, "reason", "") in ("READ_SUPERSEDED", "")
            await pw.write(b"for the retry")
            assert await read == b"for the retry" and r.offset == 13
            await w.close()
            await pw.close()

    arun(go())
