"""nats-py 2.16, unmodified, through the daemon (streammgr.install()),
against a real nats-server: publish/subscribe and request/reply, with
bursts of 2 MiB, every message in order and byte-exact, and no stream
left in the daemon afterwards (the ``installed`` fixture)."""

from __future__ import annotations

import asyncio
import random

import nats

import streammgr

from .conftest import NatsServer

BURST = 2 << 20


async def connect(srv: NatsServer) -> nats.NATS:
    nc = await nats.connect(srv.url, allow_reconnect=False, pending_size=8 << 20)
    assert isinstance(nc._transport._io_writer, streammgr.StreamWriter)  # through the daemon
    return nc


def burst(seed: int, sizes: list[int]) -> list[bytes]:
    rng = random.Random(seed)
    return [b"%d:" % i + rng.randbytes(n) for i, n in enumerate(sizes)]


async def test_publish_subscribe_2mib_bursts(installed, nats_server: NatsServer) -> None:
    pub = await connect(nats_server)
    sub_nc = await connect(nats_server)
    sub = await sub_nc.subscribe("burst.>")
    await sub_nc.flush()
    rng = random.Random(7)
    for round_, size in enumerate((64, 4096, 65536, BURST // 4)):
        payloads = burst(round_, [size + rng.randint(0, 64) for _ in range(BURST // size)])
        for data in payloads:  # no await in between: one burst
            await pub.publish(f"burst.{round_}", data)
        await pub.flush()
        got = []
        for _ in payloads:
            msg = await sub.next_msg(timeout=15)
            assert msg.subject == f"burst.{round_}"
            got.append(msg.data)
        assert got == payloads  # every message, in order, byte-exact
    # One message of 2 MiB.
    big = random.Random(99).randbytes(BURST)
    await pub.publish("burst.big", big)
    await pub.flush()
    assert (await sub.next_msg(timeout=15)).data == big
    await sub.unsubscribe()
    await pub.close()
    await sub_nc.close()


async def test_request_reply_2mib_bursts(installed, nats_server: NatsServer) -> None:
    service = await connect(nats_server)
    caller = await connect(nats_server)

    async def echo(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(b"re:" + msg.data)

    await service.subscribe("svc.echo", cb=echo)
    await service.flush()
    # Sequential requests.
    for i in range(200):
        data = b"%d" % i * (i % 50)
        assert (await caller.request("svc.echo", data, timeout=10)).data == b"re:" + data
    # A burst of requests in flight at once, 2 MiB in all.
    payloads = burst(3, [16 << 10] * (BURST // (16 << 10)))
    answers = await asyncio.gather(*(caller.request("svc.echo", p, timeout=20) for p in payloads))
    assert [a.data for a in answers] == [b"re:" + p for p in payloads]
    # A 2 MiB request and its 2 MiB answer.
    big = random.Random(5).randbytes(BURST)
    assert (await caller.request("svc.echo", big, timeout=20)).data == b"re:" + big
    await caller.close()
    await service.close()
