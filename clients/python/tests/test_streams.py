"""StreamReader / StreamWriter over real sockets, each test run with plain
asyncio and through the daemon: the same assertions hold for both."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys

import pytest

import streammgr
from conftest import Impl, Peer, echo_handler, wait_until


async def test_echo_open_connection(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    w.write(b"Hello World!")
    await w.drain()
    assert await pr.readexactly(12) == b"Hello World!"
    pw.write(b"back")
    await pw.drain()
    assert await r.read(100) == b"back"
    assert isinstance(r, asyncio.StreamReader) and isinstance(w, asyncio.StreamWriter)
    w.close()
    await w.wait_closed()
    assert await pr.read() == b""
    pw.close()


async def test_echo_start_server_and_open_connection(impl: Impl) -> None:
    srv = await impl.start_server(echo_handler, "127.0.0.1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        r, w = await impl.open_connection("127.0.0.1", port)
        for msg in (b"a", b"bc" * 1000, b"x" * 200_000):
            w.write(msg)
            await w.drain()
            assert await r.readexactly(len(msg)) == msg
        w.write_eof()
        assert await r.read() == b""
        assert r.at_eof()
        w.close()
        await w.wait_closed()


async def test_unix_echo(impl: Impl, tmpdir_short: str) -> None:
    path = os.path.join(tmpdir_short, "echo.sock")
    srv = await impl.start_unix_server(echo_handler, path)
    async with srv:
        assert srv.sockets[0].getsockname() == path
        r, w = await impl.open_unix_connection(path)
        assert w.get_extra_info("peername") == path
        w.writelines([b"one ", b"two\n"])
        assert await r.readline() == b"one two\n"
        w.close()
        await w.wait_closed()


async def test_unix_relative_path(impl: Impl, tmpdir_short: str) -> None:
    old = os.getcwd()
    os.chdir(tmpdir_short)
    try:
        srv = await impl.start_unix_server(echo_handler, "rel.sock")
        async with srv:
            assert os.path.exists(os.path.join(tmpdir_short, "rel.sock"))
            r, w = await impl.open_unix_connection("rel.sock")
            w.write(b"x\n")
            assert await r.readline() == b"x\n"
            w.close()
            await w.wait_closed()
    finally:
        os.chdir(old)


async def test_read_variants(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    assert await r.read(0) == b""
    pw.write(b"line1\nline2\nrest-of-it")
    await pw.drain()
    assert await r.readline() == b"line1\n"
    assert await r.readuntil(b"\n") == b"line2\n"
    assert await r.readexactly(4) == b"rest"
    assert await r.read(1) == b"-"
    pw.write(b"more")
    pw.close()
    assert await r.read() == b"of-itmore"
    assert r.at_eof()
    assert await r.read(10) == b""
    assert await r.readline() == b""
    with pytest.raises(asyncio.IncompleteReadError) as ei:
        await r.readexactly(1)
    assert ei.value.partial == b"" and ei.value.expected == 1
    assert r.exception() is None
    w.close()
    await w.wait_closed()


async def test_readexactly_incomplete(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    pw.write(b"12345")
    pw.write_eof()
    with pytest.raises(asyncio.IncompleteReadError) as ei:
        await r.readexactly(10)
    assert ei.value.partial == b"12345"
    assert ei.value.expected == 10
    w.close()
    pw.close()


async def test_readuntil_incomplete_and_multibyte(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    pw.write(b"aaa\r")
    await pw.drain()
    await wait_until(lambda: len(r._buffer) == 4 or not impl.daemon and len(r._buffer) == 4, what="4 bytes held")
    pw.write(b"\nbbb")
    pw.write_eof()
    assert await r.readuntil(b"\r\n") == b"aaa\r\n"
    with pytest.raises(asyncio.IncompleteReadError) as ei:
        await r.readuntil(b"\r\n")
    assert ei.value.partial == b"bbb" and ei.value.expected is None
    with pytest.raises(ValueError):
        await r.readuntil(b"")
    w.close()
    pw.close()


@pytest.mark.skipif(sys.version_info < (3, 13), reason="asyncio's tuple separators are 3.13's")
async def test_readuntil_tuple_asyncio_313(impl: Impl, peer: Peer) -> None:
    await _tuple_separators(impl, peer)


async def test_readuntil_tuple_streammgr(sm: Impl, peer: Peer) -> None:
    # streammgr takes tuples on every version, as 3.13 does.
    await _tuple_separators(sm, peer)


async def _tuple_separators(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    pw.write(b"first;second\r\nthird|")
    await pw.drain()
    assert await r.readuntil((b"\r\n", b";")) == b"first;"
    assert await r.readuntil((b"|", b"\r\n")) == b"second\r\n"
    assert await r.readuntil((b"||", b"|")) == b"third|"
    with pytest.raises(ValueError):
        await r.readuntil(())
    w.close()
    pw.close()


async def test_readline_limit_over_socket(impl: Impl, peer: Peer) -> None:
    # CPython's test_readline_limit: a line over the limit raises ValueError
    # and is dropped; the next line reads normally.
    r, w = await impl.open_connection("127.0.0.1", peer.port, limit=7)
    pr, pw = await peer.accept()
    pw.write(b"1234567890\nabc\n")
    await pw.drain()
    with pytest.raises(ValueError):
        await r.readline()
    assert await r.readline() == b"abc\n"
    pw.write(b"12345678")  # over the limit, no newline yet
    await pw.drain()
    with pytest.raises(ValueError):
        await r.readline()
    pw.write(b"z\n")
    await pw.drain()
    assert await r.readline() == b"z\n"
    w.close()
    pw.close()


async def test_readuntil_limit_over_socket(impl: Impl, peer: Peer) -> None:
    # LimitOverrunError leaves the data buffered: it can be read again.
    r, w = await impl.open_connection("127.0.0.1", peer.port, limit=5)
    pr, pw = await peer.accept()
    pw.write(b"0123456789;")
    await pw.drain()
    await wait_until(lambda: len(r._buffer) >= 11, what="11 bytes held")
    with pytest.raises(asyncio.LimitOverrunError) as ei:
        await r.readuntil(b";")
    assert ei.value.consumed == 10
    assert "Separator is found, but chunk is longer than limit" in str(ei.value)
    assert await r.readexactly(11) == b"0123456789;"
    pw.write(b"abcdefgh")
    await pw.drain()
    await wait_until(lambda: len(r._buffer) >= 8, what="8 bytes held")
    with pytest.raises(asyncio.LimitOverrunError) as ei:
        await r.readuntil(b";")
    assert ei.value.consumed == 8
    assert "Separator is not found, and chunk exceed the limit" in str(ei.value)
    assert await r.read(100) == b"abcdefgh"
    w.close()
    pw.close()


async def test_limit_validation(impl: Impl, peer: Peer) -> None:
    with pytest.raises(ValueError):
        await impl.open_connection("127.0.0.1", peer.port, limit=0)


async def test_readexactly_larger_than_limit(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port, limit=1024)
    pr, pw = await peer.accept()
    data = os.urandom(300_000)
    pw.write(data)
    await pw.drain()
    assert await r.readexactly(len(data)) == data
    w.close()
    pw.close()


async def test_async_iteration(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    pw.write(b"a\nb\nc")
    pw.close()
    assert [line async for line in r] == [b"a\n", b"b\n", b"c"]
    w.close()


async def test_concurrent_read_is_refused(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    t = asyncio.ensure_future(r.read(10))
    await wait_until(lambda: r._waiter is not None, what="a waiting read")
    with pytest.raises(RuntimeError, match="already waiting for incoming data"):
        await r.read(10)
    pw.write(b"x")
    assert await t == b"x"
    w.close()
    pw.close()


async def test_write_eof_half_close(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    assert w.can_write_eof()
    w.write(b"request")
    w.write_eof()
    w.write_eof()  # a second one does nothing
    with pytest.raises(RuntimeError, match="write_eof"):
        w.write(b"more")
    assert await pr.read() == b"request"
    assert not w.is_closing()
    pw.write(b"response")
    pw.close()
    assert await r.read() == b"response"
    w.close()
    await w.wait_closed()


async def test_close_wait_closed_is_closing(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    assert not w.is_closing()
    w.write(b"last words")
    w.close()
    assert w.is_closing()
    w.write(b"dropped")  # asyncio drops writes after close
    await w.wait_closed()
    await w.wait_closed()  # twice is fine
    assert await pr.read() == b"last words"
    with pytest.raises(ConnectionResetError):
        await w.drain()
    pw.close()


async def test_buffered_bytes_readable_after_close(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    pw.write(b"already here")
    await pw.drain()
    await wait_until(lambda: len(r._buffer) == 12, what="bytes held")
    w.close()
    await w.wait_closed()
    assert await r.read() == b"already here"
    assert r.at_eof()
    pw.close()


async def test_get_extra_info(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    assert w.get_extra_info("peername") == ("127.0.0.1", peer.port)
    sockname = w.get_extra_info("sockname")
    assert sockname[0] == "127.0.0.1" and sockname[1] > 0
    # What the peer sees is where our socket is (the daemon's socket).
    assert pw.get_extra_info("peername") == sockname
    s = w.get_extra_info("socket")
    assert s.family == socket.AF_INET and s.type == socket.SOCK_STREAM
    assert s.getsockname() == sockname and s.getpeername() == ("127.0.0.1", peer.port)
    assert w.get_extra_info("no-such-thing") is None
    assert w.get_extra_info("no-such-thing", 42) == 42
    assert w.get_extra_info("sslcontext") is None
    assert w.get_extra_info("peercert") is None
    assert w.transport.get_extra_info("peername") == ("127.0.0.1", peer.port)
    w.close()
    pw.close()


async def test_transport_write_buffer_limits(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    t = w.transport
    assert t.get_write_buffer_limits() == (16384, 65536)
    t.set_write_buffer_limits(high=1000)
    assert t.get_write_buffer_limits() == (250, 1000)
    with pytest.raises(ValueError):
        t.set_write_buffer_limits(high=1, low=2)
    assert t.get_write_buffer_size() == 0
    assert t.is_reading()
    w.write(b"x" * 10)
    await w.drain()
    assert await pr.readexactly(10) == b"x" * 10
    w.close()
    pw.close()


async def test_write_type_error(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    await peer.accept()
    with pytest.raises(TypeError):
        w.write("text")  # type: ignore[arg-type]
    w.write(bytearray(b"ok"))
    w.write(memoryview(b"ok"))
    w.close()


async def test_drain_waits_for_a_slow_peer(impl: Impl, peer: Peer) -> None:
    # The peer does not read: drain() must block once the buffers fill, and
    # return once the peer reads everything; no byte lost or reordered.
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    chunk = os.urandom(64 * 1024)
    total = 0
    blocked = False
    for i in range(400):  # up to 25 MiB
        w.write(chunk)
        total += len(chunk)
        try:
            await asyncio.wait_for(asyncio.shield(w.drain()), 0.2)
        except TimeoutError:
            blocked = True
            break
    assert blocked, "drain() never waited for the peer"
    drain = asyncio.ensure_future(w.drain())
    got = bytearray()
    while len(got) < total:
        got += await pr.read(1 << 20)
    await asyncio.wait_for(drain, 10)
    assert len(got) == total
    assert bytes(got[: len(chunk)]) == chunk and bytes(got[-len(chunk):]) == chunk
    w.close()
    pw.close()


async def test_big_write_then_drain(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    data = os.urandom(5 * 1024 * 1024)
    w.write(data)  # one write far above every buffer cap
    reader = asyncio.ensure_future(pr.readexactly(len(data)))
    await w.drain()
    assert await asyncio.wait_for(reader, 30) == data
    w.close()
    pw.close()


def _reset(pw: asyncio.StreamWriter) -> None:
    s = pw.get_extra_info("socket")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pw.transport.abort()


async def test_peer_reset(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    pw.write(b"hidden by the reset")
    await pw.drain()
    _reset(pw)
    with pytest.raises(ConnectionResetError):
        while True:
            if not await r.read(100):
                raise AssertionError("EOF instead of the reset")
    assert isinstance(r.exception(), ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        await r.read(1)
    # A write error surfaces at the next drain().
    w.write(b"x")
    with pytest.raises(ConnectionResetError):
        await w.drain()
    assert w.is_closing()
    with pytest.raises(ConnectionResetError):
        await w.wait_closed()


async def test_write_error_surfaces_at_drain(impl: Impl, peer: Peer) -> None:
    # The peer goes away without our reader noticing first: the write fails
    # in the background, and the next drain() raises.
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    _reset(pw)

    async def write_until_error() -> None:
        for _ in range(1000):
            w.write(b"y" * 1000)
            await w.drain()
            await asyncio.sleep(0.001)

    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        await asyncio.wait_for(write_until_error(), 10)


async def test_connection_refused(impl: Impl) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    with pytest.raises(ConnectionRefusedError) as ei:
        await impl.open_connection("127.0.0.1", port)
    assert ei.value.errno == 111


async def test_unix_no_such_socket(impl: Impl, tmpdir_short: str) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        await impl.open_unix_connection(os.path.join(tmpdir_short, "none.sock"))
    assert ei.value.errno == 2


async def test_dns_error(impl: Impl) -> None:
    with pytest.raises(socket.gaierror):
        await impl.open_connection("no-such-host.invalid", 80)


async def test_address_in_use(impl: Impl, peer: Peer) -> None:
    with pytest.raises(OSError) as ei:
        await impl.start_server(echo_handler, "127.0.0.1", peer.port)
    assert ei.value.errno == 98


async def test_argument_errors(impl: Impl, peer: Peer) -> None:
    with pytest.raises(ValueError):
        await impl.open_connection("127.0.0.1", peer.port, server_hostname="x")
    with pytest.raises(ValueError):
        await impl.open_connection("127.0.0.1", peer.port, ssl_handshake_timeout=1)
    with pytest.raises(TypeError):
        await impl.open_connection("127.0.0.1", peer.port, no_such_argument=1)
    with pytest.raises(ValueError):
        await impl.open_connection()


async def test_wait_for_timeout_loses_nothing(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r.read(10), 0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r.readexactly(3), 0.05)
    pw.write(b"ab")
    await pw.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r.readexactly(3), 0.2)
    pw.write(b"cdef")
    await pw.drain()
    assert await r.readexactly(3) == b"abc"
    assert await r.read(10) == b"def"
    w.close()
    pw.close()


async def test_wait_for_racing_data_loses_nothing(impl: Impl, peer: Peer) -> None:
    # Data arrives while reads keep timing out at random moments: every
    # byte is received exactly once, in order.
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    expected = b"".join(b"%06d," % i for i in range(3000))

    async def send() -> None:
        for i in range(0, len(expected), 700):
            pw.write(expected[i : i + 700])
            await pw.drain()
            await asyncio.sleep(0)
        pw.close()

    sender = asyncio.ensure_future(send())
    got = bytearray()
    timeouts = 0
    while True:
        try:
            chunk = await asyncio.wait_for(r.read(333), 0.0005 * (1 + timeouts % 3))
        except TimeoutError:
            timeouts += 1
            continue
        if not chunk:
            break
        got += chunk
    await sender
    assert bytes(got) == expected
    w.close()


async def test_cancelled_read_keeps_reading_ahead(sm: Impl, peer: Peer, daemon) -> None:
    # Through the daemon: a timed-out read leaves its daemon read in flight
    # as read-ahead (asyncio's transport keeps reading the socket too), so
    # bytes that come later reach reader._buffer without another wait, and
    # polling with short timeouts costs no operation per poll.
    r, w = await sm.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    t = w.transport
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(r.read(10), 0.05)
    call = t._read_call
    assert call is not None and not call.cancelling
    for _ in range(20):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.readline(), 0.001)
    assert t._read_call is call  # the same read: no operation per poll
    pw.write(b"after the timeout")
    await pw.drain()
    await wait_until(lambda: bytes(r._buffer) == b"after the timeout", what="read-ahead after the timeout")
    assert await r.read(100) == b"after the timeout"
    w.close()
    pw.close()


async def test_buffer_holds_bytes_already_received(sm: Impl, peer: Peer) -> None:
    # Read-ahead: bytes the peer sent are in reader._buffer before any read.
    r, w = await sm.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    pw.write(b"pushed")
    await pw.drain()
    await wait_until(lambda: bytes(r._buffer) == b"pushed", what="read-ahead")
    assert await r.read(3) == b"pus"
    assert bytes(r._buffer) == b"hed"
    w.close()
    pw.close()


async def test_reader_pauses_above_twice_the_limit(sm: Impl, peer: Peer) -> None:
    r, w = await sm.open_connection("127.0.0.1", peer.port, limit=1000)
    pr, pw = await peer.accept()
    pw.write(b"z" * 500_000)
    await wait_until(lambda: r._paused, what="the reader paused")
    held = len(r._buffer)
    assert 2000 < held < 400_000
    assert await r.readexactly(500_000) == b"z" * 500_000
    w.close()
    pw.close()


async def test_sock_argument(sm: Impl) -> None:
    a, b = socket.socketpair()
    try:
        with pytest.raises(streammgr.SockNotSupported):
            await sm.open_connection(sock=a)
        with pytest.raises(streammgr.SockNotSupported):
            await sm.start_server(echo_handler, sock=a)
        with pytest.raises(streammgr.SockNotSupported):
            await sm.open_unix_connection(sock=a)
    finally:
        a.close()
        b.close()


async def test_socketpair(daemon) -> None:
    # asyncio's socketpair example, with the pair the daemon's.
    rsock, wsock = streammgr.socketpair(address=daemon.address)
    reader, writer = await streammgr.open_connection(sock=rsock, address=daemon.address)
    asyncio.get_running_loop().call_soon(wsock.send, "abc".encode())
    assert await reader.read(100) == b"abc"
    writer.write(b"back")
    await writer.drain()
    await wait_until(lambda: _recv(wsock) == b"back" or None, what="wsock.recv")
    wsock.shutdown(socket.SHUT_WR)
    assert await reader.read() == b""
    writer.close()
    wsock.close()
    await writer.wait_closed()


_got: dict[int, bytearray] = {}


def _recv(s: streammgr.PairSocket) -> bytes:
    buf = _got.setdefault(id(s), bytearray())
    try:
        buf += s.recv(100)
    except BlockingIOError:
        pass
    return bytes(buf)


async def test_daemon_unreachable(tmpdir_short: str) -> None:
    with pytest.raises(OSError) as ei:
        await streammgr.open_connection("127.0.0.1", 80, address="unix:" + os.path.join(tmpdir_short, "no.sock"))
    assert "streammgrd" in str(ei.value)


async def test_many_streams_one_session(sm: Impl) -> None:
    srv = await sm.start_server(echo_handler, "127.0.0.1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]

        async def one(i: int) -> None:
            r, w = await sm.open_connection("127.0.0.1", port)
            for j in range(5):
                msg = b"%d-%d\n" % (i, j)
                w.write(msg)
                assert await r.readline() == msg
            w.close()
            await w.wait_closed()

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(60))), 60)


async def test_port_as_string(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", str(peer.port))
    await peer.accept()
    assert w.get_extra_info("peername")[1] == peer.port
    w.close()
