"""install() / uninstall(): unmodified asyncio code goes through the daemon."""

from __future__ import annotations

import asyncio
import asyncio.streams
import socket

import streammgr
from conftest import stream_ids

ORIGINALS = {name: getattr(asyncio, name) for name in
             ("open_connection", "start_server", "open_unix_connection", "start_unix_server")}


# The documentation's echo server and client, as a library would have them.
async def handle_echo(reader, writer):
    data = await reader.read(100)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def tcp_echo_client(message, port):
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(message.encode())
    await writer.drain()
    data = await reader.read(100)
    writer.close()
    await writer.wait_closed()
    return data.decode(), writer


async def test_install_routes_asyncio_through_the_daemon(daemon) -> None:
    streammgr.install(daemon.address)
    try:
        assert streammgr.installed()
        for name in ORIGINALS:
            assert getattr(asyncio, name) is not ORIGINALS[name]
            assert getattr(asyncio.streams, name) is getattr(asyncio, name)
        served = []

        async def cb(r, w):
            served.append(w)
            await handle_echo(r, w)

        server = await asyncio.start_server(cb, '127.0.0.1', 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            got, writer = await tcp_echo_client('Hello World!', port)
            assert got == 'Hello World!'
        ids = await stream_ids(daemon.address)
        assert isinstance(writer, streammgr.StreamWriter)
        assert writer.transport.stream_id in ids
        assert served[0].transport.stream_id in ids
    finally:
        streammgr.uninstall()
    for name, fn in ORIGINALS.items():
        assert getattr(asyncio, name) is fn
        assert getattr(asyncio.streams, name) is fn
    assert not streammgr.installed()


async def test_install_keeps_real_sockets_local(daemon) -> None:
    streammgr.install(daemon.address)
    try:
        rsock, wsock = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=rsock)
        assert not isinstance(writer, streammgr.StreamWriter)  # asyncio's own
        wsock.send(b"abc")
        assert await reader.read(100) == b"abc"
        writer.close()
        await writer.wait_closed()
        wsock.close()
    finally:
        streammgr.uninstall()


async def test_install_uses_env_address(daemon, monkeypatch) -> None:
    monkeypatch.setenv("STREAMMGR_ADDR", daemon.address)
    streammgr.install()
    try:
        assert streammgr.current_address().path == daemon.sock
        server = await asyncio.start_server(handle_echo, '127.0.0.1', 0)
        async with server:
            got, writer = await tcp_echo_client('via env', server.sockets[0].getsockname()[1])
        assert got == 'via env'
        assert writer.transport.stream_id in await stream_ids(daemon.address)
    finally:
        streammgr.uninstall()


def test_address_resolution(monkeypatch, tmp_path) -> None:
    from streammgr._address import parse_address, resolve_address

    monkeypatch.delenv("STREAMMGR_ADDR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert resolve_address(None).path == "/run/user/1000/streammgrd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    import os
    assert resolve_address(None).path == f"/tmp/streammgrd-{os.getuid()}/streammgrd.sock"
    monkeypatch.setenv("STREAMMGR_ADDR", "unix:///tmp/x.sock")
    assert resolve_address(None).path == "/tmp/x.sock"
    assert resolve_address("127.0.0.1:7000").kind == "tcp"
    assert resolve_address("127.0.0.1:7000").port == 7000
    assert parse_address("https://[::1]:443").host == "::1"
    assert parse_address("https://[::1]:443").kind == "tls"
    assert parse_address("unix:@abstract").path == "\0abstract"
