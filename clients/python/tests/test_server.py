"""Server: callbacks, close, close_clients / abort_clients, wait_closed,
serve_forever, start_serving; with plain asyncio and through the daemon."""

from __future__ import annotations

import asyncio
import sys

import pytest

import streammgr
from conftest import Impl, echo_handler, stream_ids, wait_until

PY312 = sys.version_info >= (3, 12)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_plain_callback(impl: Impl) -> None:
    got: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append((r, w))
        w.write(b"hello from a plain callback\n")

    srv = await impl.start_server(cb, "127.0.0.1", 0)
    async with srv:
        r, w = await connect(srv.sockets[0].getsockname()[1])
        assert await r.readline() == b"hello from a plain callback\n"
        assert len(got) == 1
        sr, sw = got[0]
        assert isinstance(sr, asyncio.StreamReader)
        assert sw.get_extra_info("peername") == w.get_extra_info("sockname")
        assert sw.get_extra_info("sockname") == w.get_extra_info("peername")
        sw.close()
        w.close()


async def test_coroutine_callback_runs_as_task(impl: Impl) -> None:
    tasks: list[asyncio.Task] = []

    async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        line = await r.readline()
        w.write(line.upper())
        await w.drain()
        w.close()
        await w.wait_closed()

    srv = await impl.start_server(cb, "127.0.0.1", 0)
    async with srv:
        r, w = await connect(srv.sockets[0].getsockname()[1])
        w.write(b"abc\n")
        assert await r.read() == b"ABC\n"
        assert tasks and tasks[0] is not None
        w.close()


async def test_unhandled_exception_reaches_loop_handler(impl: Impl) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict] = []
    loop.set_exception_handler(lambda l, ctx: seen.append(ctx))

    async def bad(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        raise ZeroDivisionError("boom")

    def bad_plain(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        raise KeyError("plain boom")

    try:
        srv = await impl.start_server(bad, "127.0.0.1", 0)
        async with srv:
            r, w = await connect(srv.sockets[0].getsockname()[1])
            w.write(b"go\n")
            await wait_until(lambda: seen, what="the exception handler")
            assert isinstance(seen[0]["exception"], ZeroDivisionError)
            if PY312 or impl.daemon:
                assert seen[0]["message"] == "Unhandled exception in client_connected_cb"
                assert await r.read() == b""  # the connection was closed
            w.close()
        if impl.daemon:
            seen.clear()
            srv = await impl.start_server(bad_plain, "127.0.0.1", 0)
            async with srv:
                r, w = await connect(srv.sockets[0].getsockname()[1])
                await wait_until(lambda: seen, what="the exception handler")
                assert isinstance(seen[0]["exception"], KeyError)
                assert await r.read() == b""
                w.close()
    finally:
        loop.set_exception_handler(None)


async def test_server_attributes(impl: Impl) -> None:
    srv = await impl.start_server(echo_handler, "127.0.0.1", 0)
    assert srv.is_serving()
    assert srv.get_loop() is asyncio.get_running_loop()
    (sock,) = srv.sockets
    host, port = sock.getsockname()
    assert host == "127.0.0.1" and port > 0
    srv.close()
    assert not srv.is_serving()
    assert srv.sockets == ()
    await srv.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await connect(port)


async def test_close_keeps_existing_connections(impl: Impl) -> None:
    srv = await impl.start_server(echo_handler, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r, w = await connect(port)
    w.write(b"before\n")
    assert await r.readline() == b"before\n"
    srv.close()
    w.write(b"after close\n")
    assert await r.readline() == b"after close\n"
    w.close()
    await w.wait_closed()
    await asyncio.wait_for(srv.wait_closed(), 10)


@pytest.mark.skipif(not PY312, reason="close_clients/abort_clients and wait_closed semantics are 3.12's")
async def test_close_clients_asyncio(impl: Impl) -> None:
    await _close_clients(impl)


async def test_close_clients_streammgr(sm: Impl) -> None:
    await _close_clients(sm)


async def _close_clients(impl: Impl) -> None:
    srv = await impl.start_server(echo_handler, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r1, w1 = await connect(port)
    r2, w2 = await connect(port)
    for w, r in ((w1, r1), (w2, r2)):
        w.write(b"x\n")
        assert await r.readline() == b"x\n"
    srv.close()
    waiter = asyncio.ensure_future(srv.wait_closed())
    await asyncio.sleep(0)
    assert not waiter.done()  # connections are still open
    srv.close_clients()
    assert await r1.read() == b""
    assert await r2.read() == b""
    await asyncio.wait_for(waiter, 10)
    w1.close()
    w2.close()
    srv2 = await impl.start_server(echo_handler, "127.0.0.1", 0)
    r3, w3 = await connect(srv2.sockets[0].getsockname()[1])
    w3.write(b"y\n")
    assert await r3.readline() == b"y\n"
    srv2.abort_clients()
    assert await r3.read() == b""
    srv2.close()
    await asyncio.wait_for(srv2.wait_closed(), 10)
    w3.close()


async def test_serve_forever_cancel(impl: Impl) -> None:
    srv = await impl.start_server(echo_handler, "127.0.0.1", 0, start_serving=False)
    port = srv.sockets[0].getsockname()[1]
    assert not srv.is_serving()
    task = asyncio.ensure_future(srv.serve_forever())
    await wait_until(srv.is_serving, what="serving")
    with pytest.raises(RuntimeError):
        await srv.serve_forever()
    r, w = await connect(port)
    w.write(b"z\n")
    assert await r.readline() == b"z\n"
    w.close()
    await w.wait_closed()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not srv.is_serving()
    with pytest.raises(RuntimeError):
        await srv.serve_forever()


async def test_start_serving_later(impl: Impl) -> None:
    srv = await impl.start_server(echo_handler, "127.0.0.1", 0, start_serving=False)
    port = srv.sockets[0].getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await connect(port)
    await srv.start_serving()
    assert srv.is_serving()
    r, w = await connect(port)
    w.write(b"q\n")
    assert await r.readline() == b"q\n"
    w.close()
    srv.close()
    await srv.wait_closed()


async def test_server_several_hosts(sm: Impl) -> None:
    srv = await sm.start_server(echo_handler, ["127.0.0.1", "127.0.0.2"], 0)
    async with srv:
        socks = [s.getsockname() for s in srv.sockets]
        assert sorted(h for h, _ in socks) == ["127.0.0.1", "127.0.0.2"]
        for host, port in socks:
            r, w = await asyncio.open_connection(host, port)
            w.write(b"h\n")
            assert await r.readline() == b"h\n"
            w.close()


async def test_server_through_daemon_listed(sm: Impl, daemon) -> None:
    served: list[asyncio.StreamWriter] = []

    async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        served.append(w)
        await echo_handler(r, w)

    srv = await sm.start_server(cb, "127.0.0.1", 0)
    async with srv:
        r, w = await connect(srv.sockets[0].getsockname()[1])
        w.write(b"hi\n")
        assert await r.readline() == b"hi\n"
        assert served[0].transport.stream_id in await stream_ids(daemon.address)
        resp = await streammgr.list_servers(daemon.address)
        assert any(s.sockets == [f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"] for s in resp.servers)
        w.close()


async def test_unix_server_removes_socket(sm: Impl, tmpdir_short: str) -> None:
    import os

    path = os.path.join(tmpdir_short, "s.sock")
    srv = await sm.start_unix_server(echo_handler, path)
    assert os.path.exists(path)
    r, w = await asyncio.open_unix_connection(path)
    w.write(b"u\n")
    assert await r.readline() == b"u\n"
    w.close()
    srv.close()
    await srv.wait_closed()
    assert not os.path.exists(path)


async def test_server_argument_errors(sm: Impl) -> None:
    with pytest.raises(TypeError):
        await sm.start_server(echo_handler, "127.0.0.1", 0, bogus=True)
    with pytest.raises(ValueError):
        await sm.start_unix_server(echo_handler)
