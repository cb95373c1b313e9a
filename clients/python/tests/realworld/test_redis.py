"""redis-py 8.1's asyncio client, unmodified, through the daemon
(streammgr.install()), against a real redis-server: every answer
byte-exact, cancelled reads (get_message(timeout=0), short timeouts,
wait_for) losing nothing, and no stream left in the daemon afterwards (the
``installed`` fixture)."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest
import redis.asyncio as aredis

import streammgr
from conftest import wait_until

from .conftest import RedisServer


def client(srv: RedisServer, **kw: Any) -> aredis.Redis:
    return aredis.Redis(host="127.0.0.1", port=srv.port, **kw)


def through_daemon(r: aredis.Redis) -> None:
    """Every connection of r's pool is a daemon stream."""
    pool = r.connection_pool
    conns = list(pool._available_connections) + list(pool._in_use_connections)
    assert conns
    for c in conns:
        if c._writer is not None:
            assert isinstance(c._writer, streammgr.StreamWriter), c._writer


async def test_connect_sets_socket_options(installed, redis_server: RedisServer) -> None:
    # redis-py sets TCP_NODELAY and keep-alive (SO_KEEPALIVE, TCP_KEEPIDLE
    # 30, TCP_KEEPINTVL 5, TCP_KEEPCNT 3) on every connection: the daemon
    # applies them to its socket.
    r = client(redis_server, single_connection_client=True)
    assert await r.ping() is True
    conn = r.connection
    sock = conn._writer.get_extra_info("socket")
    assert isinstance(sock, streammgr.DaemonSocket)
    want = {(socket.IPPROTO_TCP, socket.TCP_NODELAY): 1, (socket.SOL_SOCKET, socket.SO_KEEPALIVE): 1,
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE): 30, (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL): 5,
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT): 3}
    opts = sock._opts
    await wait_until(lambda: not opts._pending, what="the daemon's answers to setsockopt")
    for (level, opt), value in want.items():
        assert sock.getsockopt(level, opt) == value
    # What the daemon's socket reports, asked afresh.
    for (level, opt), value in want.items():
        opts._known.clear()
        assert sock.getsockopt(level, opt) == value
    await r.aclose()


async def test_set_get_10000_byte_exact(installed, redis_server: RedisServer) -> None:
    rng = random.Random(14)
    sizes = [0, 1, 2, 65535, 65536]
    while len(sizes) < 10_000:
        sizes.append(rng.randint(0, 65536) if len(sizes) % 20 == 0 else rng.randint(0, 600))
    values = {f"sg:{i}": rng.randbytes(n) for i, n in enumerate(sizes)}
    r = client(redis_server, max_connections=16)
    keys = list(values)

    async def worker(part: list[str]) -> None:
        for k in part:
            assert await r.set(k, values[k]) is True
            got = await r.get(k)
            assert got == values[k], f"{k}: {len(got or b'')} bytes, want {len(values[k])}"

    await asyncio.gather(*(worker(keys[i::16]) for i in range(16)))
    through_daemon(r)
    # Read back once more, all of them, from other connections.
    got = await r.mget(keys[:2000])
    assert got == [values[k] for k in keys[:2000]]
    await r.aclose()


async def test_100_pipelines_of_100(installed, redis_server: RedisServer) -> None:
    rng = random.Random(100)
    r = client(redis_server, max_connections=4)
    expected: dict[str, bytes] = {}

    async def pipeline(i: int) -> None:
        async with r.pipeline(transaction=False) as p:
            batch = {f"pl:{i}:{j}": rng.randbytes(rng.randint(0, 2000)) for j in range(100)}
            for k, v in batch.items():
                p.set(k, v)
            assert await p.execute() == [True] * 100
        expected.update(batch)

    for first in range(0, 100, 4):
        await asyncio.gather(*(pipeline(i) for i in range(first, first + 4)))
    assert len(expected) == 10_000
    keys = list(expected)
    for first in range(0, 10_000, 100):
        async with r.pipeline(transaction=False) as p:
            for k in keys[first:first + 100]:
                p.get(k)
            assert await p.execute() == [expected[k] for k in keys[first:first + 100]]
    through_daemon(r)
    await r.aclose()


async def test_mget_1000_keys(installed, redis_server: RedisServer) -> None:
    rng = random.Random(1000)
    values = {f"mg:{i}": rng.randbytes(rng.randint(0, 3000)) for i in range(1000)}
    r = client(redis_server)
    assert await r.mset(values) is True
    keys = list(values)
    assert await r.mget(keys) == [values[k] for k in keys]
    assert await r.mget(keys + ["mg:missing"]) == [values[k] for k in keys] + [None]
    await r.aclose()


async def test_2mib_set(installed, redis_server: RedisServer) -> None:
    # One write larger than the daemon's --max-write-buffer (1 MiB): split
    # and flow-controlled here, never refused.
    big = random.Random(2).randbytes(2 << 20)
    r = client(redis_server)
    assert await r.set("big", big) is True
    assert await r.strlen("big") == len(big)
    assert await r.get("big") == big
    # A few at once, each on its own connection.
    bigs = [random.Random(i).randbytes((2 << 20) + i) for i in range(3)]
    assert await asyncio.gather(*(r.set(f"big:{i}", b) for i, b in enumerate(bigs))) == [True] * 3
    assert await asyncio.gather(*(r.get(f"big:{i}") for i in range(3))) == bigs
    await r.aclose()


async def _pubsub_every_message(srv: RedisServer, poll_timeout: float) -> int:
    """Publishes 400 messages while a subscriber polls with
    get_message(timeout=poll_timeout); returns the polls that found
    nothing."""
    rng = random.Random(int(poll_timeout * 1000))
    pub = client(srv)
    sub = client(srv)
    p = sub.pubsub()
    await p.subscribe("news")
    first = None
    while first is None:
        first = await p.get_message(timeout=1.0)
    assert first["type"] == "subscribe"
    payloads = [b"%d:" % i + rng.randbytes(rng.randint(0, 3000)) for i in range(400)]

    async def publisher() -> None:
        for i, data in enumerate(payloads):
            assert await pub.publish("news", data) == 1
            if i % 40 == 39:
                await asyncio.sleep(0.002)  # lulls, so that polls also find nothing

    task = asyncio.ensure_future(publisher())
    got: list[bytes] = []
    empty = 0
    while len(got) < len(payloads):
        m = await p.get_message(timeout=poll_timeout)
        if m is None:
            empty += 1
            if poll_timeout == 0:
                await asyncio.sleep(0)
            continue
        assert m["type"] == "message" and m["channel"] == b"news"
        got.append(m["data"])
    await task
    assert got == payloads  # every message, in order, byte-exact
    # The connection is still in step: a PING answers PONG, nothing else.
    await p.ping()
    pong = None
    while pong is None:
        pong = await p.get_message(timeout=1.0)
    assert pong["type"] == "pong"
    await p.unsubscribe("news")
    await p.aclose()
    await pub.aclose()
    await sub.aclose()
    return empty


async def test_pubsub_get_message_timeout_0(installed, redis_server: RedisServer) -> None:
    empty = await _pubsub_every_message(redis_server, 0.0)
    assert empty > 0  # polls did find nothing (and were cancelled) along the way


async def test_pubsub_get_message_1ms(installed, redis_server: RedisServer) -> None:
    empty = await _pubsub_every_message(redis_server, 0.001)
    assert empty > 0


async def test_blpop_expiring_and_served(installed, redis_server: RedisServer) -> None:
    r = client(redis_server)
    await r.delete("jobs")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await r.blpop(["jobs"], timeout=0.2) is None  # expired server-side
    assert loop.time() - t0 >= 0.15
    waiting = asyncio.ensure_future(r.blpop(["jobs"], timeout=10))
    await wait_until(lambda: r.connection_pool._in_use_connections, what="BLPOP sent")
    other = client(redis_server)

    async def blocked() -> bool:
        clients = await other.client_list()
        return any(c.get("cmd") == "blpop" for c in clients)

    await wait_until(blocked, what="BLPOP blocked in the server")
    assert await other.rpush("jobs", b"job-1") == 1
    assert await asyncio.wait_for(waiting, 10) == (b"jobs", b"job-1")
    assert await r.llen("jobs") == 0
    await other.aclose()
    await r.aclose()


@pytest.mark.parametrize("single", [False, True], ids=["pool", "single_connection"])
async def test_wait_for_slow_command_then_correct_answers(installed, redis_server: RedisServer,
                                                          single: bool) -> None:
    r = client(redis_server, single_connection_client=single)
    key = f"slow:{single}"
    await r.delete(key)
    assert await r.set("answer", b"42") is True
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.blpop([key], timeout=5), 0.05)
        # The same client answers correctly afterwards: no answer of the
        # abandoned command is taken for another's.
        assert await r.get("answer") == b"42"
        assert await r.rpush(key, b"v") == 1
        assert await r.lpop(key) == b"v"  # the abandoned BLPOP did not take it
        assert await r.echo(b"in step") == b"in step"
    await r.aclose()


async def test_unix_socket(installed, redis_server: RedisServer) -> None:
    # redis-py's Unix connections use open_unix_connection: through the
    # daemon too.
    r = aredis.Redis(unix_socket_path=redis_server.unix)
    values = {f"u:{i}": random.Random(i).randbytes(i * 37) for i in range(200)}
    assert await r.mset(values) is True
    assert await r.mget(list(values)) == list(values.values())
    through_daemon(r)
    await r.aclose()


async def test_get_costs_one_write_and_one_read(installed, redis_server: RedisServer) -> None:
    # A pooled GET is one write operation and the answer of the read
    # already in flight (read-ahead): no drain, no extra round trip; the
    # pool's check for unread bytes (reader._buffer) costs nothing.
    r = client(redis_server)
    assert await r.set("one", b"1") is True
    assert await r.get("one") == b"1"
    conn = next(iter(r.connection_pool._available_connections))
    session = conn._writer.transport._session
    counts: dict[str, int] = {}
    start = session.start

    def count(op: str, *a: Any, **k: Any) -> Any:
        counts[op] = counts.get(op, 0) + 1
        return start(op, *a, **k)

    session.start = count  # type: ignore[method-assign]
    for _ in range(200):
        assert await r.get("one") == b"1"
    del session.start
    assert counts.get("write") == 200 and counts.get("read", 0) <= 201, counts
    assert set(counts) <= {"write", "read"}, counts
    # Bytes the server pushes reach reader._buffer without a read call.
    sub = client(redis_server, single_connection_client=True)
    p = sub.pubsub()
    await p.subscribe("push")
    assert (await p.get_message(timeout=1.0))["type"] == "subscribe"
    reader = p.connection._reader
    assert not reader._buffer
    assert await r.publish("push", b"hello") == 1
    await wait_until(lambda: bytes(reader._buffer).endswith(b"hello\r\n"), what="read-ahead into _buffer")
    assert await p.parse_response(block=False, timeout=0) is not None
    await p.aclose()
    await sub.aclose()
    await r.aclose()
