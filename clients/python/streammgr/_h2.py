"""A minimal HTTP/2 client for one long-lived gRPC call, run by the event
loop itself.

The Session RPC is one bidirectional gRPC stream. grpcio's asyncio API
completes every message on a poller thread and hands it to the event loop,
which costs several thread wake-ups per message; a 16-byte echo through the
daemon took over 5x asyncio's own round trip with it. This module speaks
HTTP/2 (RFC 9113) as an asyncio Protocol on the daemon's socket instead, so
that a message costs one socket read or write by the loop. It does just what
a gRPC client of one call needs: the connection preface and SETTINGS, one
stream's HEADERS (HPACK, _hpack.py), DATA in both directions with flow
control, PING answers, trailers, RST_STREAM and GOAWAY. grpcio's own
transport stays available (STREAMMGR_TRANSPORT=grpcio, _grpcio_transport.py).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import urllib.parse
from collections import deque
from typing import Callable

from ._hpack import Decoder, HpackError, encode_headers

# Frame types.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65535
# What we let the daemon send before it must wait for a WINDOW_UPDATE.
RECV_WINDOW = 16 << 20
STREAM_ID = 1  # the one stream of this connection


# gRPC status codes used here (grpc.StatusCode values).
CODE_CANCELLED = 1
CODE_UNKNOWN = 2
CODE_INTERNAL = 13
CODE_UNAVAILABLE = 14
CODE_UNAUTHENTICATED = 16
CODE_PERMISSION_DENIED = 7
CODE_UNIMPLEMENTED = 12
CODE_RESOURCE_EXHAUSTED = 8


def _frame(typ: int, flags: int, stream: int, payload: bytes) -> bytes:
    n = len(payload)
    return bytes(((n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF, typ, flags)) + stream.to_bytes(4, "big") + payload


class CallEnded(Exception):
    """The gRPC call ended: status code, message and the
    grpc-status-details-bin bytes (a google.rpc.Status), or a transport
    failure (code UNAVAILABLE, transport=True)."""

    def __init__(self, code: int, message: str, details: bytes = b"", transport: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.transport = transport


def _http_status_to_grpc(status: int) -> int:
    return {400: CODE_INTERNAL, 401: CODE_UNAUTHENTICATED, 403: CODE_PERMISSION_DENIED,
            404: CODE_UNIMPLEMENTED, 429: CODE_UNAVAILABLE, 502: CODE_UNAVAILABLE,
            503: CODE_UNAVAILABLE, 504: CODE_UNAVAILABLE}.get(status, CODE_UNKNOWN)


class H2Call(asyncio.Protocol):
    """One HTTP/2 connection carrying one gRPC call.

    on_message(payload) gets each response message (the serialized
    protobuf); on_end(CallEnded) is called once, when the call ends for any
    reason (trailers, reset, connection lost or closed by us)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, authority: str, path: str,
                 metadata: list[tuple[str, str]], scheme: str,
                 on_message: Callable[[bytes], None], on_end: Callable[[CallEnded], None]):
        self._loop = loop
        self._on_message = on_message
        self._on_end = on_end
        self._headers = [
            (b":method", b"POST"), (b":scheme", scheme.encode()), (b":path", path.encode()),
            (b":authority", authority.encode()), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), (b"user-agent", b"streammgr-python"),
        ] + [(k.encode(), v.encode()) for k, v in metadata]
        self._transport: asyncio.Transport | None = None
        self._out = bytearray()
        self._ping_acks = bytearray()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._flush_deferred = False
        self._inbuf = bytearray()
        self._msgbuf = bytearray()
        self._decoder = Decoder()
        self._header_block: bytearray | None = None
        self._header_end_stream = False
        self._headers_seen = False
        self._trailers: dict[str, str] = {}
        # Flow control of what we send.
        self._peer_initial_window = DEFAULT_WINDOW
        self._stream_window = DEFAULT_WINDOW
        self._conn_window = DEFAULT_WINDOW
        self._max_frame = 16384
        self._blocked: deque[bytes] = deque()  # framed gRPC messages waiting for window
        self._blocked_offset = 0  # bytes of _blocked[0] already sent
        self.blocked_bytes = 0
        # Flow control of what we receive.
        self._recv_unacked = 0
        self._started = False  # HEADERS sent
        self._ended = False
        self._half_closed = False
        self._goaway = False
        self.connected = loop.create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        settings = struct.pack(">HIHI", 0x2, 0, 0x4, RECV_WINDOW)  # ENABLE_PUSH 0, INITIAL_WINDOW_SIZE
        self._out += PREFACE + _frame(SETTINGS, 0, 0, settings)
        self._out += _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", RECV_WINDOW - DEFAULT_WINDOW))
        self._flush()
        if not self.connected.done():
            self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionResetError("connection closed"))
        msg = f"connection to streammgrd lost: {exc}" if exc else "connection to streammgrd closed"
        self._end(CallEnded(CODE_UNAVAILABLE, msg, transport=True))

    def pause_writing(self) -> None:  # the daemon reads its socket: nothing to do
        pass

    def resume_writing(self) -> None:
        pass

    # sending

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._flush_deferred = False
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        # One socket write per loop iteration carries every message queued
        # in the previous one. If other callbacks are still ready (a task
        # that another waking task started, as wait_for() does), the write
        # waits one iteration more, once, so that what they send goes in
        # the same write: a request/response then costs one write, not two
        # (the read-ahead and the next request). An idle loop writes now.
        ready = getattr(self._loop, "_ready", None)
        if not self._flush_deferred and ready:
            self._flush_deferred = True
            self._loop.call_soon(self._flush)
            return
        self._flush_scheduled = False
        if self._ping_acks:
            self._out += self._ping_acks
            self._ping_acks.clear()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._out and self._transport is not None:
            self._transport.write(bytes(self._out))
        self._out.clear()

    def _start(self) -> None:
        self._started = True
        self._out += _frame(HEADERS, END_HEADERS, STREAM_ID, encode_headers(self._headers))

    def send_message(self, payload: bytes) -> None:
        """Queues one gRPC message (length-prefixed, uncompressed)."""
        if self._ended or self._half_closed:
            return
        if not self._started:
            self._start()
        msg = b"\x00" + len(payload).to_bytes(4, "big") + payload
        if self._blocked:
            self._blocked.append(msg)
            self.blocked_bytes += len(msg)
        else:
            n = len(msg)
            if n <= self._stream_window and n <= self._conn_window and n <= self._max_frame:
                self._stream_window -= n
                self._conn_window -= n
                self._out += _frame(DATA, 0, STREAM_ID, msg)
            else:
                self._blocked.append(msg)
                self.blocked_bytes += len(msg)
                self._send_blocked()
        self._schedule_flush()

    def _send_blocked(self) -> None:
        while self._blocked:
            room = min(self._stream_window, self._conn_window, self._max_frame)
            if room <= 0:
                return
            msg = self._blocked[0]
            chunk = msg[self._blocked_offset : self._blocked_offset + room]
            self._blocked_offset += len(chunk)
            self._stream_window -= len(chunk)
            self._conn_window -= len(chunk)
            self.blocked_bytes -= len(chunk)
            self._out += _frame(DATA, 0, STREAM_ID, chunk)
            if self._blocked_offset >= len(msg):
                self._blocked.popleft()
                self._blocked_offset = 0
        if self._half_closed and not self._blocked:
            self._out += _frame(DATA, END_STREAM, STREAM_ID, b"")

    def half_close(self) -> None:
        """Ends our side of the call (the daemon's Recv sees EOF)."""
        if self._ended or self._half_closed:
            return
        if not self._started:
            self._start()
        self._half_closed = True
        if not self._blocked:
            self._out += _frame(DATA, END_STREAM, STREAM_ID, b"")
        self._schedule_flush()

    def close(self) -> None:
        """Closes the connection at once."""
        if self._transport is not None:
            self._flush()
            self._transport.close()
        self._end(CallEnded(CODE_CANCELLED, "closed by the client", transport=True))

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._end(CallEnded(CODE_CANCELLED, "closed by the client", transport=True))

    def _end(self, ended: CallEnded) -> None:
        if self._ended:
            return
        self._ended = True
        self._blocked.clear()
        self.blocked_bytes = 0
        self._on_end(ended)

    # receiving

    def data_received(self, data: bytes) -> None:
        buf = self._inbuf
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        pos = 0
        n = len(data)
        try:
            while n - pos >= 9:
                length = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
                end = pos + 9 + length
                if end > n:
                    break
                typ = data[pos + 3]
                flags = data[pos + 4]
                stream = int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
                payload = data[pos + 9 : end]
                pos = end
                if typ == DATA:
                    self._on_data(stream, flags, payload, length)
                else:
                    self._on_frame(typ, flags, stream, payload)
                if self._ended:
                    return
        except (HpackError, ValueError, IndexError) as e:
            self._protocol_error(f"bad frame from streammgrd: {e}")
            return
        if pos < n:
            buf += data[pos:]
        if self._recv_unacked >= RECV_WINDOW // 4:
            inc = struct.pack(">I", self._recv_unacked)
            self._recv_unacked = 0
            self._out += _frame(WINDOW_UPDATE, 0, 0, inc) + _frame(WINDOW_UPDATE, 0, STREAM_ID, inc)
        if self._out:
            # What the callbacks queued (a read-ahead, say) goes out with what
            # the woken tasks write in this loop iteration: one socket write.
            self._schedule_flush()

    def eof_received(self) -> bool | None:
        return False  # close the transport: connection_lost follows

    def _protocol_error(self, message: str) -> None:
        if self._transport is not None:
            self._out += _frame(GOAWAY, 0, 0, struct.pack(">II", 0, 1))  # PROTOCOL_ERROR
            self._flush()
            self._transport.close()
        self._end(CallEnded(CODE_INTERNAL, message, transport=True))

    def _on_data(self, stream: int, flags: int, payload: bytes, length: int) -> None:
        self._recv_unacked += length
        if flags & PADDED:
            pad = payload[0]
            payload = payload[1 : len(payload) - pad]
        if stream != STREAM_ID:
            return
        mb = self._msgbuf
        if mb:
            mb += payload
            payload = bytes(mb)
            mb.clear()
        pos = 0
        n = len(payload)
        on_message = self._on_message
        while n - pos >= 5:
            mlen = int.from_bytes(payload[pos + 1 : pos + 5], "big")
            end = pos + 5 + mlen
            if end > n:
                break
            if payload[pos]:
                self._protocol_error("compressed gRPC message from streammgrd (not negotiated)")
                return
            on_message(payload[pos + 5 : end])
            if self._ended:
                return
            pos = end
        if pos < n:
            mb += payload[pos:]
        if flags & END_STREAM:
            self._finish_without_trailers()

    def _on_frame(self, typ: int, flags: int, stream: int, payload: bytes) -> None:
        if typ == SETTINGS:
            if flags & ACK:
                return
            for i in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack(">HI", payload[i : i + 6])
                if ident == 0x4:
                    delta = value - self._peer_initial_window
                    self._peer_initial_window = value
                    self._stream_window += delta
                elif ident == 0x5:
                    self._max_frame = value
            self._out += _frame(SETTINGS, ACK, 0, b"")
            self._send_blocked()
        elif typ == PING:
            if not flags & ACK:
                # Answered with the next frames we send anyway, or within a
                # few milliseconds: grpc-go's flow-control pings come with
                # nearly every round trip, and a socket write of their own
                # would cost one each time.
                self._ping_acks += _frame(PING, ACK, 0, payload)
                if not self._ack_timer:
                    self._ack_timer = self._loop.call_later(0.002, self._flush)
        elif typ == WINDOW_UPDATE:
            inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if stream == 0:
                self._conn_window += inc
            elif stream == STREAM_ID:
                self._stream_window += inc
            if self._blocked:
                self._send_blocked()
                self._schedule_flush()
        elif typ == HEADERS:
            if flags & PADDED:
                pad = payload[0]
                payload = payload[1 : len(payload) - pad]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._header_block = bytearray(payload)
            self._header_end_stream = bool(flags & END_STREAM)
            self._header_stream = stream
            if flags & END_HEADERS:
                self._on_header_block()
        elif typ == CONTINUATION:
            if self._header_block is None:
                raise ValueError("CONTINUATION without HEADERS")
            self._header_block += payload
            if flags & END_HEADERS:
                self._on_header_block()
        elif typ == RST_STREAM:
            if stream == STREAM_ID:
                code = int.from_bytes(payload[:4], "big")
                grpc_code = CODE_CANCELLED if code == 0x8 else (
                    CODE_RESOURCE_EXHAUSTED if code == 0xB else CODE_UNAVAILABLE)
                self._close_transport()
                self._end(CallEnded(grpc_code, f"streammgrd reset the call (HTTP/2 error {code})",
                                    transport=grpc_code == CODE_UNAVAILABLE))
        elif typ == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            code = int.from_bytes(payload[4:8], "big")
            self._goaway = True
            if last < STREAM_ID or code != 0:
                self._close_transport()
                self._end(CallEnded(CODE_UNAVAILABLE, f"streammgrd closed the connection (GOAWAY {code})",
                                    transport=True))
        elif typ == PUSH_PROMISE:
            raise ValueError("PUSH_PROMISE received with push disabled")
        # PRIORITY and unknown frame types are ignored.

    def _on_header_block(self) -> None:
        block = bytes(self._header_block or b"")
        self._header_block = None
        headers = self._decoder.decode(block)  # always, to keep the table in step
        if self._header_stream != STREAM_ID:
            return
        fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        if not self._headers_seen and ":status" in fields:
            self._headers_seen = True
            status = int(fields[":status"])
            if status != 200:
                self._close_transport()
                self._end(CallEnded(_http_status_to_grpc(status), f"HTTP status {status} from streammgrd"))
                return
            if not self._header_end_stream:
                return
        self._trailers = fields
        if self._header_end_stream:
            self._finish()

    def _finish_without_trailers(self) -> None:
        if self._trailers:
            self._finish()
            return
        self._close_transport()
        self._end(CallEnded(CODE_INTERNAL, "the call ended without trailers", transport=True))

    def _finish(self) -> None:
        t = self._trailers
        try:
            code = int(t.get("grpc-status", str(CODE_UNKNOWN)))
        except ValueError:
            code = CODE_UNKNOWN
        message = urllib.parse.unquote(t.get("grpc-message", ""))
        details = b""
        if "grpc-status-details-bin" in t:
            raw = t["grpc-status-details-bin"]
            try:
                details = base64.b64decode(raw + "=" * (-len(raw) % 4))
            except ValueError:
                details = b""
        self._close_transport()
        self._end(CallEnded(code, message, details))

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._flush()
            self._transport.close()
