"""The Session call over grpcio's asyncio API (STREAMMGR_TRANSPORT=grpcio).

Same interface as _h2.H2Call. Slower (grpcio completes each message on a
poller thread), but it is grpcio's own HTTP/2 stack, for environments where
that matters more than latency.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import grpc

from ._h2 import CODE_CANCELLED, CODE_UNAVAILABLE, CallEnded

_CLOSE = object()


def _identity(b: bytes) -> bytes:
    return b


class GrpcioCall:
    def __init__(self, loop: asyncio.AbstractEventLoop, channel: grpc.aio.Channel, path: str,
                 metadata: list[tuple[str, str]],
                 on_message: Callable[[bytes], None], on_end: Callable[[CallEnded], None]):
        self._loop = loop
        self._channel = channel
        self._on_message = on_message
        self._on_end = on_end
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._ended = False
        self.blocked_bytes = 0
        self.connected: asyncio.Future[None] = loop.create_future()
        method = channel.stream_stream(path, request_serializer=_identity, response_deserializer=_identity)
        self._call = method(self._requests(), metadata=tuple(metadata) or None)
        self._task = loop.create_task(self._run())

    async def _requests(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is _CLOSE:
                return
            yield item

    async def _run(self) -> None:
        try:
            await self._channel.channel_ready()
            if not self.connected.done():
                self.connected.set_result(None)
            async for msg in self._call:
                self._on_message(msg)
                if self._ended:
                    return
            code = await self._call.code()
            details = await self._call.details()
            trailers = await self._call.trailing_metadata()
            raw = b""
            for k, v in trailers or ():
                if k == "grpc-status-details-bin" and isinstance(v, bytes):
                    raw = v
            self._end(CallEnded(code.value[0], details or "", raw))
        except grpc.aio.AioRpcError as e:
            code = e.code().value[0]
            raw = b""
            for k, v in e.trailing_metadata() or ():
                if k == "grpc-status-details-bin" and isinstance(v, bytes):
                    raw = v
            self._end(CallEnded(code, e.details() or "", raw, transport=code == CODE_UNAVAILABLE and not raw))
        except asyncio.CancelledError:
            self._end(CallEnded(CODE_CANCELLED, "closed by the client", transport=True))
            raise
        except Exception as e:  # noqa: BLE001 - anything else ends the call
            self._end(CallEnded(CODE_UNAVAILABLE, f"grpcio transport failed: {e!r}", transport=True))

    def send_message(self, payload: bytes) -> None:
        if not self._ended:
            self._queue.put_nowait(payload)

    def half_close(self) -> None:
        if not self._ended:
            self._queue.put_nowait(_CLOSE)

    def close(self) -> None:
        if not self._ended:
            self._call.cancel()
            self._end(CallEnded(CODE_CANCELLED, "closed by the client", transport=True))
        self._loop.create_task(self._channel.close())

    abort = close

    def _end(self, ended: CallEnded) -> None:
        if self._ended:
            return
        self._ended = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(ended.message))
            self.connected.exception()
        self._on_end(ended)
