"""Unary calls that have no Session operation (ListStreams, ListServers),
over grpcio."""

from __future__ import annotations

from typing import Any

import grpc

from . import _address, _api
from ._errors import translate_rpc_error
from .v1 import streammgr_pb2 as pb
from .v1 import streammgr_pb2_grpc as pb_grpc

__all__ = ["list_streams", "list_servers"]


def _channel(addr: _address.DaemonAddress) -> grpc.aio.Channel:
    if addr.kind == "tls":
        from ._session import _tls_files

        return grpc.aio.secure_channel(addr.grpc_target(), grpc.ssl_channel_credentials(*_tls_files()))
    return grpc.aio.insecure_channel(addr.grpc_target())


async def _unary(method: str, req: Any, address: str | None) -> Any:
    addr = _api.current_address(address)
    async with _channel(addr) as ch:
        stub = pb_grpc.StreamServiceStub(ch)  # type: ignore[no-untyped-call]
        try:
            return await getattr(stub, method)(req, metadata=tuple(_address.metadata()) or None, timeout=30)
        except grpc.aio.AioRpcError as e:
            raise translate_rpc_error(e) from e


async def list_streams(address: str | None = None) -> pb.ListStreamsResponse:
    """The daemon's ListStreams: the streams this caller may use."""
    resp: pb.ListStreamsResponse = await _unary("ListStreams", pb.ListStreamsRequest(), address)
    return resp


async def list_servers(address: str | None = None) -> pb.ListServersResponse:
    """The daemon's ListServers."""
    resp: pb.ListServersResponse = await _unary("ListServers", pb.ListServersRequest(), address)
    return resp
