"""The Session transport: reconnecting with offsets, the grpcio transport,
HPACK, the per-session limits, and cleanup when the loop ends."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys

import pytest

import streammgr
from streammgr import _hpack, _session
from conftest import Impl, Peer, echo_handler, stream_ids, wait_until


class Proxy:
    """A Unix-socket proxy to the daemon whose connections can be cut."""

    def __init__(self, target: str, path: str):
        self.target = target
        self.path = path
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.connections = 0

    async def start(self) -> "Proxy":
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connections += 1
            ur, uw = await asyncio.open_unix_connection(self.target)
            self.pairs.append((w, uw))

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                except (ConnectionError, OSError):
                    pass
                finally:
                    dst.transport.abort()

            await asyncio.gather(pipe(r, uw), pipe(ur, w))

        self.server = await asyncio.start_unix_server(handle, self.path)
        return self

    def cut(self) -> None:
        for a, b in self.pairs:
            a.transport.abort()
            b.transport.abort()
        self.pairs.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def proxy(daemon, tmpdir_short: str):
    p = await Proxy(daemon.sock, os.path.join(tmpdir_short, "proxy.sock")).start()
    yield p
    await p.close()


async def test_reconnect_loses_and_duplicates_nothing(proxy: Proxy) -> None:
    # An echo peer; the gRPC connection is cut at random moments while
    # bytes flow both ways: every byte arrives exactly once, in order.
    srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r, w = await streammgr.open_connection("127.0.0.1", port, address="unix:" + proxy.path)
    rnd = random.Random(7)
    sent = bytearray()
    got = bytearray()
    n = 4000

    async def writer() -> None:
        for i in range(n):
            line = b"%06d %s\n" % (i, b"x" * rnd.randrange(0, 300))
            sent.extend(line)
            w.write(line)
            if i % 7 == 0:
                await w.drain()
            if i % 400 == 200:
                proxy.cut()
            await asyncio.sleep(0)
        await w.drain()

    async def reader() -> None:
        while len(got) < len(sent) or not wt.done():
            got.extend(await asyncio.wait_for(r.read(5000), 20))

    wt = asyncio.ensure_future(writer())
    await asyncio.wait_for(asyncio.gather(wt, reader()), 60)
    assert bytes(got) == bytes(sent)
    assert proxy.connections >= 5
    w.close()
    await w.wait_closed()
    srv.close()
    await srv.wait_closed()


async def test_reconnect_while_a_read_waits(proxy: Proxy, peer: Peer) -> None:
    r, w = await streammgr.open_connection("127.0.0.1", peer.port, address="unix:" + proxy.path)
    pr, pw = await peer.accept()
    t = asyncio.ensure_future(r.readexactly(6))
    await wait_until(lambda: r._waiter is not None, what="a waiting read")
    pw.write(b"abc")
    await pw.drain()
    await wait_until(lambda: len(r._buffer) == 3, what="first bytes")
    proxy.cut()
    pw.write(b"def")
    await pw.drain()
    assert await asyncio.wait_for(t, 20) == b"abcdef"
    w.write(b"still works")
    await w.drain()
    assert await pr.readexactly(11) == b"still works"
    w.close()
    pw.close()


async def test_open_during_a_cut_fails_cleanly(proxy: Proxy, peer: Peer) -> None:
    # An Open is not repeated (it would open a second connection): a cut
    # while it is in flight fails it; the next one works.
    await streammgr.list_streams("unix:" + proxy.path)
    opening = asyncio.ensure_future(streammgr.open_connection("127.0.0.1", peer.port, address="unix:" + proxy.path))
    await asyncio.sleep(0)
    await wait_until(lambda: proxy.pairs, what="the session connected")
    proxy.cut()
    try:
        r, w = await opening
        w.close()
    except ConnectionResetError:
        pass
    r, w = await streammgr.open_connection("127.0.0.1", peer.port, address="unix:" + proxy.path)
    w.close()
    await w.wait_closed()


async def test_grpcio_transport(daemon, monkeypatch, peer: Peer) -> None:
    monkeypatch.setenv("STREAMMGR_TRANSPORT", "grpcio")
    srv = await streammgr.start_server(echo_handler, "127.0.0.1", 0, address=daemon.address)
    async with srv:
        r, w = await streammgr.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1], address=daemon.address)
        assert type(_session.get_session(streammgr.current_address(daemon.address))._conn).__name__ == "GrpcioCall"
        for msg in (b"grpcio\n", b"y" * 300_000 + b"\n"):
            w.write(msg)
            assert await r.readexactly(len(msg)) == msg
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.read(1), 0.05)
        w.write(b"after\n")
        assert await r.readline() == b"after\n"
        w.close()
        await w.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        s = __import__("socket").socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        await streammgr.open_connection("127.0.0.1", port, address=daemon.address)


async def test_blocking_limit_backlog(sm: Impl, monkeypatch) -> None:
    # More waiting reads than the session lets in flight: the rest wait
    # here, and every one completes.
    monkeypatch.setattr(_session, "MAX_BLOCKING", 8)
    monkeypatch.setattr(_session, "MAX_SPECULATIVE", 4)
    srv = await sm.start_server(echo_handler, "127.0.0.1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        conns = [await sm.open_connection("127.0.0.1", port) for _ in range(20)]
        reads = [asyncio.ensure_future(r.readline()) for r, _ in conns]
        await asyncio.sleep(0)
        for i, (_, w) in enumerate(conns):
            w.write(b"%d\n" % i)
        assert await asyncio.wait_for(asyncio.gather(*reads), 20) == [b"%d\n" % i for i in range(20)]
        for _, w in conns:
            w.close()
            await w.wait_closed()


def test_streams_closed_when_the_loop_ends(daemon, peer_port_server) -> None:
    # A program that ends without closing its stream: asyncio.run() shuts
    # down async generators, and streammgr closes what is still open.
    code = f"""
import asyncio, streammgr
async def main():
    r, w = await streammgr.open_connection("127.0.0.1", {peer_port_server}, address={daemon.address!r})
    w.write(b"unclosed")
    await w.drain()
    print(w.transport.stream_id, flush=True)
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True, cwd="/")
    sid = out.stdout.decode().strip()

    async def state() -> str:
        resp = await streammgr.list_streams(daemon.address)
        return {s.stream_id: s.state for s in resp.streams}[sid]

    assert asyncio.run(state()) in ("closing", "closed")


@pytest.fixture
def peer_port_server():
    # A plain peer in its own thread and loop, for a test that is not async.
    import socket
    import threading

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    stop = threading.Event()

    def serve() -> None:
        s.settimeout(0.1)
        conns = []
        while not stop.is_set():
            try:
                c, _ = s.accept()
                conns.append(c)
            except OSError:
                pass
        for c in conns:
            c.close()

    t = threading.Thread(target=serve)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join()
    s.close()


async def test_list_streams_sees_streams(sm: Impl, daemon, peer: Peer) -> None:
    r, w = await sm.open_connection("127.0.0.1", peer.port)
    assert w.transport.stream_id in await stream_ids(daemon.address)
    w.close()


def test_hpack_rfc7541_examples() -> None:
    # RFC 7541 C.4: requests with Huffman coding, one dynamic table.
    d = _hpack.Decoder()
    assert d.decode(bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")) == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com")]
    assert d.decode(bytes.fromhex("828684be5886a8eb10649cbf")) == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com"),
        (b"cache-control", b"no-cache")]
    assert d.decode(bytes.fromhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")) == [
        (b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
        (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")]
    with pytest.raises(_hpack.HpackError):
        _hpack.Decoder().decode(b"\xff\xff\xff\xff\xff\xff\xff")
    hdrs = [(b":method", b"POST"), (b"x-long", b"v" * 300), (b"authorization", b"Bearer t")]
    assert _hpack.Decoder().decode(_hpack.encode_headers(hdrs)) == hdrs


def test_request_encoding_matches_protobuf() -> None:
    from streammgr.v1 import streammgr_pb2 as pb

    raw = _session.encode_request(5, "read", _session.encode_read(b"s-1", 262144, 0), timeout=1.5)
    m = pb.SessionRequest.FromString(raw)
    assert m.call_id == 5 and m.read.stream_id == "s-1" and m.read.n == 262144
    assert m.read.HasField("offset") and m.read.offset == 0
    assert m.timeout.seconds == 1 and m.timeout.nanos == 500_000_000
    raw = _session.encode_request(1 << 40, "write", _session.encode_write(b"s-2", b"data", 1 << 33))
    m = pb.SessionRequest.FromString(raw)
    assert m.call_id == 1 << 40 and m.write.data == b"data" and m.write.offset == 1 << 33


async def test_daemon_shutdown(make_daemon, peer: Peer) -> None:
    # SIGTERM: the daemon closes its streams and goes away; a waiting read
    # fails with ConnectionResetError within the shutdown timeout and a few
    # re-dials, and the next open says the daemon cannot be reached.
    d = make_daemon("--shutdown-timeout", "1s")
    r, w = await streammgr.open_connection("127.0.0.1", peer.port, address=d.address)
    pr, pw = await peer.accept()  # kept: on 3.13 a collected StreamWriter closes its connection
    reading = asyncio.ensure_future(r.read(10))
    await wait_until(lambda: r._waiter is not None, what="a waiting read")
    d.stop()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reading, 15)
    with pytest.raises(OSError, match="cannot reach streammgrd"):
        await asyncio.wait_for(streammgr.open_connection("127.0.0.1", peer.port, address=d.address), 15)
    pw.close()


async def test_unclosed_writer_is_closed_when_collected(sm: Impl, daemon, peer: Peer) -> None:
    import gc
    import warnings

    r, w = await sm.open_connection("127.0.0.1", peer.port)
    pr, pw = await peer.accept()
    sid = w.transport.stream_id
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del r, w
        gc.collect()
    assert any(issubclass(c.category, ResourceWarning) for c in caught)
    assert await asyncio.wait_for(pr.read(), 10) == b""  # the peer sees the close

    async def state() -> str:
        resp = await streammgr.list_streams(daemon.address)
        return {s.stream_id: s.state for s in resp.streams}[sid]

    await wait_until(lambda: state(), what="listed")
    assert await state() in ("closing", "closed")
    pw.close()


async def test_cancelled_open_leaves_nothing(make_daemon, peer: Peer) -> None:
    # open_connection cancelled at every point of its way (before the
    # daemon connected, as its answer crossed the cancel, after): the
    # Session cancel undoes the open, or the stream answered anyway is
    # aborted; nothing stays in the daemon, and the peer sees each
    # connection closed.
    d = make_daemon("--closed-linger", "100ms")
    for i in range(40):
        task = asyncio.ensure_future(streammgr.open_connection("127.0.0.1", peer.port, address=d.address))
        for _ in range(i * 3):  # a later point each time
            await asyncio.sleep(0)
        if task.done():
            r, w = task.result()
            w.close()
        else:
            task.cancel()
            try:
                r, w = await task
                w.close()
            except asyncio.CancelledError:
                pass
    while not peer.conns.empty():
        pr, pw = peer.conns.get_nowait()
        assert await asyncio.wait_for(pr.read(), 10) == b""  # closed by the daemon
        pw.close()

    async def none_left() -> bool:
        return not (await streammgr.list_streams(d.address)).streams

    await wait_until(none_left, what="no stream left in the daemon")
