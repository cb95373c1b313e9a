"""write() larger than the daemon's --max-write-buffer: split and
flow-controlled here, never refused to the program, every byte delivered
once and in order; a peer that stops reading for a while costs a few
operations, not a spin."""

from __future__ import annotations

import asyncio
import os

import pytest

import streammgr
from conftest import Peer


@pytest.mark.parametrize("cap", [16384, 100_000])
async def test_writes_over_the_cap(make_daemon, peer: Peer, cap: int) -> None:
    d = make_daemon("--max-write-buffer", str(cap))
    r, w = await streammgr.open_connection("127.0.0.1", peer.port, address=d.address)
    pr, pw = await peer.accept()
    t = w.transport
    session = t._session
    counts: dict[str, int] = {}
    start = session.start

    def count(op: str, *a, **k):  # type: ignore[no-untyped-def]
        counts[op] = counts.get(op, 0) + 1
        return start(op, *a, **k)

    session.start = count  # type: ignore[method-assign]
    data = os.urandom(4 << 20)
    expected = data + b"".join(data[i * 1000:(i + 1) * 1000 + 50_000] for i in range(20))
    w.write(data)  # one write, 256 times the cap
    for i in range(20):
        w.write(data[i * 1000:(i + 1) * 1000 + 50_000])
    assert t.get_write_buffer_size() > 0
    got = bytearray()
    # Read a part, then stop reading while the writer waits: the daemon's
    # buffer stays full and its drain does not wait (the cap is under the
    # 64 KiB high-water mark, or close to it).
    while len(got) < 1 << 20:
        got += await pr.read(65536)
    stalled = dict(counts)
    await asyncio.sleep(0.5)  # the stall itself (nothing to wait for: the peer is idle on purpose)
    during = {k: v - stalled.get(k, 0) for k, v in counts.items()}
    assert during.get("drain", 0) + during.get("write", 0) < 60, during
    drain = asyncio.ensure_future(w.drain())
    while len(got) < len(expected):
        got += await pr.read(65536)
    await asyncio.wait_for(drain, 30)
    assert bytes(got) == expected
    assert not t.is_closing() and r.exception() is None
    w.write(b"still open")
    assert await pr.readexactly(10) == b"still open"
    del session.start
    w.close()
    await w.wait_closed()
    pw.close()
