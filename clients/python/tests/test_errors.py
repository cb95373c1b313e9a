"""The daemon's errors as asyncio's exceptions, with ErrorInfo decoded."""

from __future__ import annotations

import asyncio
import errno
import os
import ssl

import grpc
import pytest

import streammgr
from streammgr._errors import ErrorDetails, make_exception
from streammgr._session import get_session
from streammgr._address import parse_address
from streammgr.v1 import streammgr_pb2 as pb
from streammgr.v1 import streammgr_pb2_grpc as pb_grpc
from conftest import Peer


async def test_limit_overrun_and_line_too_long_from_the_daemon(daemon, peer: Peer) -> None:
    # Raw Session operations (no read-ahead), so that the daemon's own
    # ReadUntil / ReadLine meet the limit.
    s = get_session(parse_address(daemon.address))
    opened = await s.request("open", pb.OpenRequest(tcp=pb.TcpAddress(host="127.0.0.1", port=peer.port), limit=10))
    sid = opened.stream_id
    pr, pw = await peer.accept()
    pw.write(b"0123456789abcdef;rest\n")
    await pw.drain()
    with pytest.raises(asyncio.LimitOverrunError) as ei:
        await s.request("read_until", pb.ReadUntilRequest(stream_id=sid, separator=b";", offset=0))
    assert ei.value.consumed == 16
    d = ei.value.streammgr  # type: ignore[attr-defined]
    assert d.reason == "LIMIT_OVERRUN" and d.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert d.limit_overrun.found and d.limit_overrun.next_offset == 0
    with pytest.raises(ValueError) as ei2:
        await s.request("read_line", pb.ReadLineRequest(stream_id=sid, offset=0))
    d2 = ei2.value.streammgr  # type: ignore[attr-defined]
    assert d2.reason == "LINE_TOO_LONG"
    assert d2.limit_overrun.next_offset == 22  # past the dropped line
    # An operation timeout: DEADLINE_EXCEEDED, nothing consumed.
    with pytest.raises(TimeoutError):
        await s.request("read_exactly", pb.ReadExactlyRequest(stream_id=sid, n=5, offset=22), timeout=0.05)
    pw.write(b"ok\n")
    r = await s.request("read_line", pb.ReadLineRequest(stream_id=sid, offset=22))
    assert r.data == b"ok\n" and r.next_offset == 25
    await s.request("abort", pb.AbortRequest(stream_id=sid))
    pw.close()


async def test_offsets_out_of_range(daemon, peer: Peer) -> None:
    s = get_session(parse_address(daemon.address))
    opened = await s.request("open", pb.OpenRequest(tcp=pb.TcpAddress(host="127.0.0.1", port=peer.port)))
    with pytest.raises(streammgr.StreammgrError) as ei:
        await s.request("write", pb.WriteRequest(stream_id=opened.stream_id, data=b"x", offset=5))
    assert ei.value.streammgr.reason == "OFFSET_AHEAD"
    assert ei.value.streammgr.metadata["next_offset"] == "0"
    assert ei.value.streammgr.field_violations[0][0] == "offset"
    await s.request("abort", pb.AbortRequest(stream_id=opened.stream_id))


async def test_unknown_stream(daemon) -> None:
    s = get_session(parse_address(daemon.address))
    with pytest.raises(ConnectionResetError) as ei:
        await s.request("drain", pb.DrainRequest(stream_id="s-0000000000000000"))
    assert ei.value.streammgr.reason == "STREAM_NOT_FOUND"  # type: ignore[attr-defined]


async def test_unary_errors_decoded_with_grpcio_status(daemon) -> None:
    async with grpc.aio.insecure_channel("unix:" + daemon.sock) as ch:
        stub = pb_grpc.StreamServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.Open(pb.OpenRequest(tcp=pb.TcpAddress(host="127.0.0.1", port=1)))
    exc = streammgr._errors.translate_rpc_error(ei.value)
    assert isinstance(exc, ConnectionRefusedError) and exc.errno == errno.ECONNREFUSED
    assert exc.streammgr.metadata["errno"] == str(errno.ECONNREFUSED)  # type: ignore[attr-defined]


@pytest.mark.parametrize("reason,cls,err", [
    ("CONNECTION_RESET", ConnectionResetError, errno.ECONNRESET),
    ("CONNECTION_REFUSED", ConnectionRefusedError, errno.ECONNREFUSED),
    ("CONNECTION_ABORTED", ConnectionAbortedError, errno.ECONNABORTED),
    ("BROKEN_PIPE", BrokenPipeError, errno.EPIPE),
    ("NO_SUCH_SOCKET", FileNotFoundError, errno.ENOENT),
    ("ADDRESS_IN_USE", OSError, errno.EADDRINUSE),
    ("CONNECT_TIMEOUT", TimeoutError, errno.ETIMEDOUT),
    ("IO_TIMEOUT", TimeoutError, errno.ETIMEDOUT),
    ("ACCEPT_TIMEOUT", TimeoutError, None),
    ("DESTINATION_DENIED", PermissionError, errno.EACCES),
    ("TOO_MANY_OPEN_FILES", OSError, errno.EMFILE),
    ("CONCURRENT_READ", RuntimeError, None),
    ("WRITE_EOF_UNSUPPORTED", NotImplementedError, None),
    ("QUOTA_EXCEEDED", streammgr.StreammgrError, None),
    ("CONNECTION_LOST", ConnectionResetError, None),
])
def test_reason_mapping(reason: str, cls: type, err: int | None) -> None:
    code = grpc.StatusCode.RESOURCE_EXHAUSTED if reason == "QUOTA_EXCEEDED" else grpc.StatusCode.UNAVAILABLE
    exc = make_exception(ErrorDetails(code, reason, "msg"))
    assert type(exc) is cls
    if err is not None:
        assert exc.errno == err  # type: ignore[attr-defined]
    exc = make_exception(ErrorDetails(grpc.StatusCode.UNAVAILABLE, "CONNECTION_RESET", "m", {"errno": "32"}))
    assert exc.errno == 32  # type: ignore[attr-defined]


def test_tls_mapping() -> None:
    e = make_exception(ErrorDetails(grpc.StatusCode.UNAVAILABLE, "TLS_ERROR",
                                    "tls: failed to verify certificate: x509: certificate signed by unknown authority"))
    assert isinstance(e, ssl.SSLCertVerificationError)
    e = make_exception(ErrorDetails(grpc.StatusCode.UNAVAILABLE, "TLS_ERROR", "tls: handshake failure"))
    assert type(e) is ssl.SSLError
    assert isinstance(make_exception(ErrorDetails(grpc.StatusCode.UNAVAILABLE, "DNS_ERROR", "no such host")),
                      __import__("socket").gaierror)


async def test_token_identity_and_refusal(make_daemon, monkeypatch, tmpdir_short: str, peer: Peer) -> None:
    tokens = os.path.join(tmpdir_short, "tokens")
    with open(tokens, "w") as f:
        f.write("0123456789abcdef-token,alice\n")
    os.chmod(tokens, 0o600)
    d = make_daemon("--token-file", tokens)
    monkeypatch.setenv("STREAMMGR_TOKEN", "0123456789abcdef-token")
    r, w = await streammgr.open_connection("127.0.0.1", peer.port, address=d.address)
    listed = await streammgr.list_streams(d.address)
    assert [s.owner for s in listed.streams if s.stream_id == w.transport.stream_id] == ["alice"]
    w.close()
    await w.wait_closed()
    # The token is sent when the session connects: a new event loop (its
    # own session) with an unknown token is refused.
    monkeypatch.setenv("STREAMMGR_TOKEN", "wrong-token-wrong-token")

    async def refused() -> None:
        with pytest.raises(PermissionError) as ei:
            await streammgr.open_connection("127.0.0.1", peer.port, address=d.address)
        assert ei.value.streammgr.reason == "UNAUTHENTICATED"  # type: ignore[attr-defined]

    await asyncio.to_thread(asyncio.run, refused())
