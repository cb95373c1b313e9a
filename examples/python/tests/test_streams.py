"""The client module against a real streammgrd: asyncio's semantics and
exceptions come back as asyncio would give them."""

import asyncio
import socket

import pytest

import streammgr_client as sm


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_readexactly_past_eof_raises_incomplete_read_error(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            await pw.write(b"abc")
            await pw.close()
            with pytest.raises(asyncio.IncompleteReadError) as ei:
                await r.readexactly(10)
            assert ei.value.partial == b"abc"
            assert ei.value.expected == 10
            assert await r.at_eof()
            await w.close()

    arun(go())


def test_readuntil_over_limit_raises_limit_overrun_and_keeps_data(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair(limit=8)
            await pw.write(b"0123456789ABCDEF")
            await pw.drain()
            with pytest.raises(asyncio.LimitOverrunError) as ei:
                await r.readuntil(b"\n")
            assert ei.value.consumed == 16
            assert ei.value.reason == "LIMIT_OVERRUN"
            assert ei.value.grpc_code.name == "RESOURCE_EXHAUSTED"
            assert await r.readexactly(16) == b"0123456789ABCDEF"
            await w.close()
            await pw.close()

    arun(go())


def test_readuntil_at_eof_has_expected_none(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair()
            await pw.write(b"a|b|c")
            await pw.write_eof()
            assert await r.readuntil(b"|") == b"a|"
            assert await r.readuntil((b"X", b"|")) == b"b|"
            with pytest.raises(asyncio.IncompleteReadError) as ei:
                await r.readuntil(b"|")
            assert ei.value.partial == b"c"
            assert ei.value.expected is None
            await w.close()
            await pw.close()

    arun(go())


def test_readline_too_long_is_value_error_and_lines_iterate(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            (r, w), (_, pw) = await c.open_pair(limit=4)
            await pw.write(b"much too long\none\ntwo\n")
            await pw.write_eof()
            with pytest.raises(ValueError):
                await r.readline()
            assert [line async for line in r] == [b"one\n", b"two\n"]
            await w.close()
            await pw.close()

    arun(go())


def test_connection_refused(daemon_addr):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        async with sm.Client(daemon_addr) as c:
            with pytest.raises(ConnectionRefusedError) as ei:
                await c.open_connection("127.0.0.1", port)
            assert ei.value.reason == "CONNECTION_REFUSED"

    arun(go())


def test_drain_after_abort_is_connection_reset_error(daemon_addr):
    # asyncio: drain() on an aborted transport raises
    # ConnectionResetError('Connection lost').
    async def go():
        async with sm.Client(daemon_addr) as c:
            (_, w), (_, pw) = await c.open_pair()
            await w.abort()
            with pytest.raises(ConnectionResetError) as ei:
                await w.drain()
            assert ei.value.reason == "CONNECTION_LOST"
            assert ei.value.grpc_code is not None
            await pw.close()

    arun(go())


def test_unknown_stream_is_streammgr_error(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            with pytest.raises(sm.StreammgrError) as ei:
                await sm.StreamReader(c, "s-nope").read(1)
            assert ei.value.reason == "STREAM_NOT_FOUND"

    arun(go())


def test_open_connection_to_a_plain_asyncio_server(daemon_addr):
    async def go():
        async def echo(reader, writer):
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, sm.Client(daemon_addr) as c:
            r, w = await c.open_connection("127.0.0.1", port)
            assert await w.get_extra_info("peername") == ("127.0.0.1", port)
            assert await w.can_write_eof()
            await w.write(b"ping")
            await w.drain()
            assert await r.read() == b"ping"  # read to EOF: the server closed
            assert await r.at_eof()
            await w.close()
            await w.wait_closed()
            assert await w.is_closing()

    arun(go())


def test_server_accept_and_serve(daemon_addr):
    async def go():
        async with sm.Client(daemon_addr) as c:
            server = await c.start_server("127.0.0.1", 0)
            host, port = server.sockets[0]
            assert host == "127.0.0.1" and port > 0
            async with server:
                # Accept: one connection, claimed explicitly.
                r1, w1 = await asyncio.open_connection("127.0.0.1", port)
                sr, sw = await server.accept(timeout=10)
                w1.write(b"one")
                assert await sr.readexactly(3) == b"one"
                await sw.close()
                assert await r1.read() == b""
                w1.close()
                # Serve: connections as they arrive.
                r2, w2 = await asyncio.open_connection("127.0.0.1", port)
                async for sr, sw in server.serve():
                    await sw.write(b"two")
                    await sw.close()
                    break
                assert await r2.read() == b"two"
                w2.close()
                with pytest.raises(TimeoutError):
                    await server.accept(timeout=0.05)

    arun(go())
