"""get_extra_info('socket').setsockopt() / getsockopt(): the same answers
and errors as asyncio's own socket (most tests run with both), done by the
daemon on its socket."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct

import pytest

import streammgr
from conftest import Impl, Peer, wait_until

TCP, SOL = socket.IPPROTO_TCP, socket.SOL_SOCKET


async def test_tcp_options_like_a_real_socket(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    s = w.get_extra_info("socket")
    assert s.getsockopt(TCP, socket.TCP_NODELAY) == 1  # asyncio sets it; so does the daemon
    s.setsockopt(TCP, socket.TCP_NODELAY, 0)
    assert s.getsockopt(TCP, socket.TCP_NODELAY) == 0
    s.setsockopt(TCP, socket.TCP_NODELAY, 5)  # any true value reads back as 1
    assert s.getsockopt(TCP, socket.TCP_NODELAY) == 1
    assert s.getsockopt(TCP, socket.TCP_NODELAY, 4) == struct.pack("i", 1)
    s.setsockopt(SOL, socket.SO_KEEPALIVE, True)
    assert s.getsockopt(SOL, socket.SO_KEEPALIVE) == 1
    for opt, v in ((socket.TCP_KEEPIDLE, 77), (socket.TCP_KEEPINTVL, 9), (socket.TCP_KEEPCNT, 4)):
        s.setsockopt(TCP, opt, v)
        assert s.getsockopt(TCP, opt) == v
    s.setsockopt(TCP, socket.TCP_KEEPCNT, struct.pack("i", 6))  # a buffer, as the C call takes it
    assert s.getsockopt(TCP, socket.TCP_KEEPCNT) == 6
    s.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 1, 3))
    assert s.getsockopt(SOL, socket.SO_LINGER) == 1
    assert s.getsockopt(SOL, socket.SO_LINGER, 8) == struct.pack("ii", 1, 3)
    s.setsockopt(SOL, socket.SO_LINGER, struct.pack("ii", 0, 0))
    assert s.getsockopt(SOL, socket.SO_LINGER) == 0
    s.setsockopt(SOL, socket.SO_RCVBUF, 1000)
    assert s.getsockopt(SOL, socket.SO_RCVBUF) == 2304  # Linux: twice, at least its minimum
    s.setsockopt(SOL, socket.SO_SNDBUF, 1 << 16)
    assert s.getsockopt(SOL, socket.SO_SNDBUF) == 2 << 16
    assert s.getsockopt(SOL, socket.SO_TYPE) == socket.SOCK_STREAM
    assert s.getsockopt(SOL, socket.SO_DOMAIN) == socket.AF_INET
    assert s.getsockopt(SOL, socket.SO_PROTOCOL) == socket.IPPROTO_TCP
    # The data still flows, with the options set.
    w.write(b"ping")
    assert await pr.readexactly(4) == b"ping"
    w.close()
    await w.wait_closed()
    pw.close()


async def test_bad_values_raise_as_a_real_socket(impl: Impl, peer: Peer) -> None:
    r, w = await impl.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    s = w.get_extra_info("socket")
    for level, opt, v in ((TCP, socket.TCP_KEEPIDLE, 0), (TCP, socket.TCP_KEEPIDLE, 32768),
                          (TCP, socket.TCP_KEEPINTVL, -1), (TCP, socket.TCP_KEEPCNT, 128),
                          (SOL, socket.SO_LINGER, 1), (SOL, socket.SO_LINGER, b"\x01" * 7),
                          (TCP, socket.TCP_NODELAY, b"\x01")):
        with pytest.raises(OSError) as e:
            s.setsockopt(level, opt, v)
        assert e.value.errno == errno.EINVAL, (opt, v)
    for v in ("1", 1.5, 2**40, None):
        with pytest.raises(TypeError, match="a bytes-like object is required"):
            s.setsockopt(TCP, socket.TCP_NODELAY, v)
    with pytest.raises(OSError) as e:
        s.setsockopt(TCP, socket.TCP_NODELAY, None, 4)
    assert e.value.errno == errno.EFAULT
    with pytest.raises(TypeError):
        s.getsockopt("tcp", socket.TCP_NODELAY)
    with pytest.raises(OSError, match="buflen out of range"):
        s.getsockopt(TCP, socket.TCP_NODELAY, 1025)
    for fn in (lambda: s.getsockopt(TCP, 999), lambda: s.setsockopt(TCP, 999, 1)):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.ENOPROTOOPT
    w.close()
    await w.wait_closed()
    # Closed: EBADF, as asyncio's socket after close.
    for fn in (lambda: s.getsockopt(TCP, socket.TCP_NODELAY), lambda: s.setsockopt(TCP, socket.TCP_NODELAY, 1)):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EBADF
    pw.close()


async def test_unix_options_are_the_daemons_answers(impl: Impl, tmpdir_short: str) -> None:
    path = f"{tmpdir_short}/s"
    srv = await asyncio.start_unix_server(lambda r, w: None, path)
    r, w = await impl.open_unix_connection(path)
    s = w.get_extra_info("socket")
    for fn in (lambda: s.setsockopt(TCP, socket.TCP_NODELAY, 1), lambda: s.getsockopt(TCP, socket.TCP_NODELAY)):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EOPNOTSUPP
    s.setsockopt(SOL, socket.SO_KEEPALIVE, 1)
    assert s.getsockopt(SOL, socket.SO_KEEPALIVE) == 1
    assert s.getsockopt(SOL, socket.SO_PROTOCOL) == 0
    assert s.getsockopt(SOL, socket.SO_DOMAIN) == socket.AF_UNIX
    w.close()
    await w.wait_closed()
    srv.close()
    await srv.wait_closed()


async def test_set_without_waiting_and_applied_by_the_daemon(sm: Impl, peer: Peer) -> None:
    # TCP_NODELAY, keep-alive and SO_LINGER go out as Session operations
    # without a wait, before the writes made after them; the daemon's
    # socket reports them afterwards.
    r, w = await sm.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    t = w.transport
    session = t._session
    ops: list[str] = []
    start = session.start

    def record(op: str, *a, **k):  # type: ignore[no-untyped-def]
        ops.append(op)
        return start(op, *a, **k)

    session.start = record  # type: ignore[method-assign]
    s = w.get_extra_info("socket")
    s.setsockopt(TCP, socket.TCP_NODELAY, 0)
    s.setsockopt(TCP, socket.TCP_KEEPIDLE, 42)
    w.write(b"after")
    assert ops[:3] == ["set_sock_opt", "set_sock_opt", "write"]
    del session.start
    assert await pr.readexactly(5) == b"after"
    await wait_until(lambda: not s._opts._pending, what="the answers")
    s._opts._known.clear()  # ask the daemon's socket itself
    assert s.getsockopt(TCP, socket.TCP_NODELAY) == 0
    assert s.getsockopt(TCP, socket.TCP_KEEPIDLE) == 42
    w.close()
    pw.close()


async def test_listening_socket_options_are_refused(sm: Impl) -> None:
    srv = await sm.start_server(lambda r, w: None, "127.0.0.1", 0)
    with pytest.raises(OSError) as e:
        srv.sockets[0].setsockopt(SOL, socket.SO_KEEPALIVE, 1)
    assert e.value.errno == errno.EOPNOTSUPP
    srv.close()
    await srv.wait_closed()


async def test_pair_options(sm: Impl, daemon) -> None:
    a, b = streammgr.socketpair(address=daemon.address)
    r, w = await sm.open_connection(sock=a)
    s = w.get_extra_info("socket")
    with pytest.raises(OSError) as e:
        s.setsockopt(TCP, socket.TCP_NODELAY, 1)
    assert e.value.errno == errno.EOPNOTSUPP
    s.setsockopt(SOL, socket.SO_KEEPALIVE, 1)
    assert s.getsockopt(SOL, socket.SO_KEEPALIVE) == 1
    w.close()
    b.close()
