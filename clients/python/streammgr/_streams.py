"""StreamReader, StreamWriter and the transport under them, over one daemon
stream handle.

The transport plays the part of asyncio's socket transport: it keeps one
daemon read in flight while the reader is not paused (asyncio's transport
keeps reading the socket), feeds what comes back into the StreamReader
(whose _buffer therefore holds exactly the bytes this process already has),
and turns write() into Session write operations carrying their outbound
offsets, without waiting for them. Flow control is asyncio's: the write
buffer is what the daemon has not confirmed plus what it reports as unsent,
the protocol is paused above the high-water mark, and drain() waits for the
daemon's drain operation. A write error reaches the program as asyncio's
do: the connection is lost with that error, and the next drain() (and
read) raises it.

Reads carry the inbound offset: a read that is answered CANCELLED (the
program's wait_for timed out), or whose answer was lost with a broken
connection, consumed nothing that the next read, from the same offset,
does not get again.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import ssl
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any

from . import _tls
from ._session import Session, encode_read, encode_write, exception_of
from ._sockopt import SockOpts
from .v1 import streammgr_pb2 as pb

log = logging.getLogger("streammgr")

_DEFAULT_LIMIT = 2**16
READ_CHUNK = 256 * 1024
WRITE_CHUNK = 256 * 1024
WRITE_WINDOW = 512 * 1024
_CODE_CANCELLED = 1
_CODE_DEADLINE = 4

# Write refusals that accepted nothing and may succeed once the daemon's
# buffer has drained.
_WRITE_RETRY_REASONS = frozenset({"WRITE_BUFFER_FULL", "MEMORY_BUDGET", "OFFSET_AHEAD"})


def _reason(resp: Any) -> str:
    """The ErrorInfo reason of an error response ("" if none)."""
    return _error_info(resp)[0]


def _error_info(resp: Any) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata of an error response."""
    from google.rpc import error_details_pb2

    for a in getattr(resp.error, "details", ()):
        if a.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            a.Unpack(info)
            return str(info.reason), dict(info.metadata)
    return "", {}


def parse_address(text: str, kind: str) -> Any:
    """"host:port" as Python shows a socket address: (host, port), or
    (host, port, 0, 0) for IPv6; a Unix path stays a string."""
    if kind in ("unix", "pair"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text
    host = host.strip("[]")
    if ":" in host:
        return (host, int(port), 0, 0)
    return (host, int(port))


def _family(addr: Any, kind: str) -> socket.AddressFamily:
    if kind in ("unix", "pair") or isinstance(addr, str):
        return socket.AF_UNIX
    try:
        return socket.AF_INET6 if ipaddress.ip_address(addr[0]).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def _py_value(v: Any) -> Any:
    """google.protobuf.Value to Python, lists as tuples (as getpeercert())."""
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() else n
    if kind == "list_value":
        return tuple(_py_value(x) for x in v.list_value.values)
    if kind == "struct_value":
        return {k: _py_value(x) for k, x in v.struct_value.fields.items()}
    return getattr(v, kind)


class DaemonSocket:
    """What get_extra_info('socket') and Server.sockets give: the daemon
    owns the socket, so this describes it (family, type, addresses) and
    refuses what needs the descriptor (fileno() is -1). A stream's socket
    has setsockopt() and getsockopt(), done by the daemon (see
    streammgr._sockopt); a listening socket's raise OSError(EOPNOTSUPP)."""

    def __init__(self, family: socket.AddressFamily, sockname: Any, peername: Any = None):
        self.family = family
        self.type = socket.SOCK_STREAM
        self.proto = socket.IPPROTO_TCP if family in (socket.AF_INET, socket.AF_INET6) else 0
        self._sockname = sockname
        self._peername = peername
        self._opts: SockOpts | None = None

    def _bind(self, transport: "StreamTransport") -> None:
        self._opts = SockOpts(transport, self.family)

    def fileno(self) -> int:
        return -1

    def gettimeout(self) -> float:
        return 0.0

    def getblocking(self) -> bool:
        return False

    def getsockname(self) -> Any:
        return self._sockname

    def getpeername(self) -> Any:
        if self._peername is None:
            raise OSError(107, "Transport endpoint is not connected")
        return self._peername

    def setsockopt(self, *args: Any) -> None:
        if self._opts is None:
            raise OSError(95, "streammgr: the daemon owns this listening socket; its options cannot be set from here")
        self._opts.setsockopt(*args)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        if self._opts is None:
            raise OSError(95, "streammgr: the daemon owns this listening socket; its options cannot be read from here")
        return self._opts.getsockopt(level, optname, buflen)

    def __repr__(self) -> str:
        s = f"<streammgr.DaemonSocket family={self.family!r} type={self.type!r} laddr={self._sockname!r}"
        if self._peername is not None:
            s += f" raddr={self._peername!r}"
        return s + ">"


class SSLObjectInfo:
    """get_extra_info('ssl_object'): what the daemon's TLS connection says
    about itself, with ssl.SSLObject's methods."""

    def __init__(self, info: dict[str, Any], transport: "StreamTransport", context: Any):
        self._info = info or {}
        self._transport = transport
        self.context = context
        self.server_side = transport._server_side
        self.server_hostname = self._info.get("server_hostname") or None

    def version(self) -> str | None:
        return self._info.get("version") or None

    def selected_alpn_protocol(self) -> str | None:
        return self._info.get("selected_alpn_protocol") or None

    def getpeercert(self, binary_form: bool = False) -> Any:
        if binary_form:
            raise ValueError("streammgr: the daemon gives the peer certificate as a dict only")
        return self._transport._extra.get("peercert")

    def cipher(self) -> Any:
        return self._transport._extra.get("cipher")

    def compression(self) -> None:
        return None

    def shared_ciphers(self) -> None:
        return None

    def pending(self) -> int:
        return 0


class StreamProtocol(asyncio.Protocol):
    """asyncio's StreamReaderProtocol and FlowControlMixin, for one daemon
    stream: drain waits, the close waiter, and the reader's EOF or error
    when the connection is lost."""

    def __init__(self, reader: "StreamReader", loop: asyncio.AbstractEventLoop,
                 client_connected_cb: Any = None):
        self._loop = loop
        self._stream_reader: StreamReader | None = reader
        self._client_connected_cb = client_connected_cb
        self._paused = False
        self._drain_waiters: deque[asyncio.Future[None]] = deque()
        self._connection_lost = False
        self._closed: asyncio.Future[None] = loop.create_future()
        self._task: asyncio.Task[Any] | None = None
        self._over_ssl = False

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection_lost = True
        if self._paused:
            for waiter in self._drain_waiters:
                if not waiter.done():
                    if exc is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(exc)
        reader = self._stream_reader
        if reader is not None:
            if exc is None:
                reader.feed_eof()
            else:
                reader.set_exception(exc)
        if not self._closed.done():
            if exc is None:
                self._closed.set_result(None)
            else:
                self._closed.set_exception(exc)

    async def _drain_helper(self) -> None:
        if self._connection_lost:
            raise ConnectionResetError("Connection lost")
        if not self._paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            self._drain_waiters.remove(waiter)

    def _get_close_waiter(self, stream: Any) -> asyncio.Future[None]:
        return self._closed

    def __del__(self) -> None:
        try:
            closed = self._closed
        except AttributeError:
            return
        if closed.done() and not closed.cancelled():
            closed.exception()


class StreamTransport(asyncio.Transport):
    """One daemon stream as an asyncio transport."""

    _extra: dict[str, Any]

    def __init__(self, session: Session, stream_id: str, *, kind: str, extra: dict[str, Any],
                 server_side: bool, protocol: StreamProtocol, reader: "StreamReader"):
        super().__init__(extra)
        self._session = session
        self._loop = session.loop
        self.stream_id = stream_id
        self._sid = stream_id.encode()
        self._kind = kind
        self._server_side = server_side
        self._protocol = protocol
        self._reader = reader
        self._server: Any = None  # the Server that accepted it
        self._host: str | None = None  # the host open_connection was given
        # read side
        self._in_next = 0
        self._read_call: Any = None
        self._read_waited = False
        self._read_paused = False
        self._read_hold = False
        self._read_done = False
        self._tls_busy = False
        self._read_idle: asyncio.Future[None] | None = None
        # write side
        self._out_next = 0
        self._acked = 0
        self._daemon_buffered = 0
        self._queue: deque[tuple[Any, ...]] = deque()
        self._queued_bytes = 0
        self._queue_blocked = False
        self._inflight: deque[tuple[int, bytes]] = deque()
        self._inflight_bytes = 0
        self._writes_outstanding = 0
        self._rewind = False
        self._window = WRITE_WINDOW
        # Largest write sent in one operation: WRITE_CHUNK, or half the
        # daemon's --max-write-buffer once a refusal told it (so that a
        # chunk fits beside what a drain leaves buffered).
        self._chunk_max = WRITE_CHUNK
        self._refusals = 0  # refused writes since the last accepted one
        self._drain_timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._protocol_paused = False
        self._eof_written = False
        self._closing = False
        self._conn_lost = False
        self._lost_writes = 0
        self._wait_closed_call: Any = None
        self._lost_called = False
        session.transports.add(self)

    def __repr__(self) -> str:
        info = [self.__class__.__name__, self.stream_id, self._kind]
        if self._closing:
            info.append("closing")
        return "<{}>".format(" ".join(info))

    # asyncio.BaseTransport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._queue.append(("op", "close"))
        self._update_flow()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def __del__(self, warnings: Any = warnings) -> None:
        if not self._closing and not self._loop.is_closed():
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            try:
                self.close()
            except Exception:  # noqa: BLE001 - best effort in a finalizer
                pass

    # asyncio.ReadTransport

    def is_reading(self) -> bool:
        return not self._read_paused and not self._conn_lost

    def pause_reading(self) -> None:
        self._read_paused = True

    def resume_reading(self) -> None:
        self._read_paused = False
        self._maybe_read()

    def _maybe_read(self, waited: bool = False) -> None:
        """Keeps one daemon read in flight: always when a reader waits,
        as read-ahead otherwise (unless paused, or after a wait was
        cancelled: then until the next wait)."""
        if self._read_call is not None:
            if waited:
                self._read_waited = True
            return
        if self._read_done or self._tls_busy:
            return
        if waited:
            self._read_hold = False
        elif self._read_paused or self._read_hold or not self._session.speculative_room():
            return
        self._read_waited = waited
        self._read_call = self._session.start(
            "read", encode_read(self._sid, READ_CHUNK, self._in_next), self._on_read, blocking=True)

    def _wait_cancelled(self) -> None:
        """The reader's wait was cancelled (asyncio.wait_for timed out, the
        task was cancelled). As asyncio's transport keeps reading the
        socket, the daemon read stays in flight as read-ahead: its bytes go
        to the buffer when they come, so a program that polls with short
        timeouts (redis-py's get_message(timeout=0)) costs no operation per
        poll, and reader._buffer shows what has arrived. Only when the
        session is short of room for waiting operations is the read
        cancelled (until the next wait): whether it is answered CANCELLED
        (nothing consumed; the next read asks for the same offset) or with
        the bytes (they go to the buffer), nothing is lost."""
        call = self._read_call
        if call is not None and self._read_waited and not self._session.speculative_room():
            self._read_hold = True
            self._session.cancel(call)

    def _on_read(self, resp: Any) -> None:
        self._read_call = None
        if self._read_idle is not None and not self._read_idle.done():
            self._read_idle.set_result(None)
        if self._read_done:
            return
        kind = resp.WhichOneof("result")
        reader = self._reader
        if kind == "read":
            r = resp.read
            self._in_next = r.next_offset
            if r.data:
                reader.feed_data(r.data)
            if r.eof:
                self._read_done = True
                reader.feed_eof()
                if self._kind == "tls" and not self._closing:
                    self.close()  # asyncio closes a TLS transport at EOF
                return
            self._maybe_read(waited=reader._waiter is not None)
            return
        code = resp.error.code
        reason = _reason(resp)
        if code == _CODE_CANCELLED or code == _CODE_DEADLINE and reason in ("", "DEADLINE_EXCEEDED") \
                or reason == "READ_SUPERSEDED":
            # Consumed nothing: read again (now, if someone waits).
            self._maybe_read(waited=reader._waiter is not None)
            return
        self._read_done = True
        self._fatal(exception_of(resp))

    # asyncio.WriteTransport

    def get_write_buffer_size(self) -> int:
        return self._queued_bytes + self._inflight_bytes + self._daemon_buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._update_flow()

    def write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._lost_writes >= 5:
                log.warning("socket.send() raised exception.")
            self._lost_writes += 1
            return
        data = bytes(data)
        n = len(data)
        chunk = self._chunk_max
        if n > chunk:
            for i in range(0, n, chunk):
                self._write_chunk(data[i : i + chunk])
        else:
            self._write_chunk(data)
        self._update_flow()

    def _write_chunk(self, data: bytes) -> None:
        off = self._out_next
        self._out_next = off + len(data)
        if (not self._queue and not self._rewind
                and (self._inflight_bytes + self._daemon_buffered + len(data) <= self._window
                     or not (self._inflight_bytes or self._daemon_buffered))):
            self._send_chunk(off, data)
        else:
            self._queue.append(("w", off, data))
            self._queued_bytes += len(data)

    def writelines(self, list_of_data: Any) -> None:
        data = b"".join(list_of_data)
        self.write(data)

    def _send_chunk(self, off: int, data: bytes) -> None:
        n = len(data)
        self._inflight.append((off, data))
        self._inflight_bytes += n
        self._writes_outstanding += 1
        self._session.start("write", encode_write(self._sid, data, off),
                            functools.partial(self._on_write, n))

    def _on_write(self, n: int, resp: Any) -> None:
        self._writes_outstanding -= 1
        self._inflight_bytes -= n
        kind = resp.WhichOneof("result")
        if kind == "write":
            w = resp.write
            if w.next_offset > self._acked:
                self._acked = w.next_offset
            self._daemon_buffered = w.buffered
            self._refusals = 0
            acked = self._acked
            inflight = self._inflight
            while inflight and inflight[0][0] + len(inflight[0][1]) <= acked:
                inflight.popleft()
        elif not self._conn_lost:
            reason, meta = _error_info(resp)
            if reason in _WRITE_RETRY_REASONS:
                if reason == "WRITE_BUFFER_FULL":
                    self._refusals += 1
                    cap = int(meta.get("cap", "0") or 0)
                    if cap > 0:
                        self._chunk_max = max(4096, min(self._chunk_max, cap // 2))
                self._rewind = True
            else:
                self._fatal(exception_of(resp))
                return
        if self._rewind and self._writes_outstanding == 0:
            self._do_rewind()
        self._update_flow()

    def _do_rewind(self) -> None:
        """The daemon refused a write (its buffer was full): put back every
        byte it has not accepted, in order, and send them after a drain."""
        acked = self._acked
        again = [(off, data) for off, data in self._inflight if off + len(data) > acked]
        self._inflight.clear()
        for off, data in reversed(again):
            if off < acked:  # accepted in part
                data = data[acked - off :]
                off = acked
            self._queue.appendleft(("w", off, data))
            self._queued_bytes += len(data)
        self._rewind = False
        self._window = max(16 * 1024, self._window // 2)
        self._daemon_buffered = max(self._daemon_buffered, self._window)  # forces a drain first

    def _pump(self) -> None:
        q = self._queue
        while q and not self._rewind:
            item = q[0]
            if item[0] == "w":
                off, data = item[1], item[2]
                if len(data) > self._chunk_max:
                    # Refused before, now sent in pieces the daemon takes.
                    rest = data[self._chunk_max :]
                    data = data[: self._chunk_max]
                    q[0] = ("w", off + len(data), rest)
                    q.appendleft(("w", off, data))
                if (self._inflight_bytes or self._daemon_buffered) and \
                        self._inflight_bytes + self._daemon_buffered + len(data) > self._window:
                    self._queue_blocked = True
                    return
                q.popleft()
                self._queued_bytes -= len(data)
                self._send_chunk(off, data)
            else:
                q.popleft()
                self._send_op(item[1])
        self._queue_blocked = False

    def _send_op(self, op: str) -> None:
        if op == "close":
            self._session.start("close", pb.CloseRequest(stream_id=self.stream_id).SerializeToString(),
                                self._on_close)
            self._watch_closed()
        elif op == "write_eof":
            self._session.start("write_eof", pb.WriteEofRequest(stream_id=self.stream_id).SerializeToString(),
                                self._on_op)

    def _on_close(self, resp: Any) -> None:
        if resp.WhichOneof("result") == "error" and not self._conn_lost:
            self._fatal(exception_of(resp))

    def _on_op(self, resp: Any) -> None:
        if resp.WhichOneof("result") == "error" and not self._conn_lost:
            self._fatal(exception_of(resp))

    def _update_flow(self) -> None:
        if self._queue and not self._conn_lost:
            self._pump()
        size = self._queued_bytes + self._inflight_bytes + self._daemon_buffered
        if not self._protocol_paused:
            if size > self._high:
                self._protocol_paused = True
                self._protocol.pause_writing()
        elif size <= self._low:
            self._protocol_paused = False
            self._protocol.resume_writing()
        if (self._protocol_paused or self._queue_blocked) and not self._draining and not self._conn_lost \
                and not self._rewind:
            self._draining = True
            if self._refusals >= 2:
                # Refused again right after a drain: the daemon's buffer
                # holds more than the write leaves room for, and its drain
                # does not wait (that buffer is under the daemon's
                # high-water mark). Back off before asking again, up to
                # 50 ms, rather than spin.
                delay = min(0.001 * 2 ** (self._refusals - 2), 0.05)
                self._drain_timer = self._loop.call_later(delay, self._start_drain)
            else:
                self._start_drain()

    def _start_drain(self) -> None:
        self._drain_timer = None
        if self._conn_lost:
            self._draining = False
            return
        self._session.start("drain", pb.DrainRequest(stream_id=self.stream_id).SerializeToString(),
                            self._on_drain, blocking=True)

    def _on_drain(self, resp: Any) -> None:
        self._draining = False
        if resp.WhichOneof("result") == "error":
            if not self._conn_lost:
                self._fatal(exception_of(resp))
            return
        self._daemon_buffered = 0  # at or below the daemon's low-water mark
        self._update_flow()

    def _send_sockopt(self, name: str, value: int, cb: Any) -> None:
        """Sends set_sock_opt without waiting: the daemon runs it in the
        stream's write lane, before every write sent after it."""
        req = pb.SetSockOptRequest(stream_id=self.stream_id, name=name, value=value).SerializeToString()
        self._session.start("set_sock_opt", req, functools.partial(cb, name))

    def can_write_eof(self) -> bool:
        return self._kind != "tls"

    def write_eof(self) -> None:
        if self._kind == "tls":
            raise NotImplementedError("SSL doesn't support half-closes")
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._queue.append(("op", "write_eof"))
        self._update_flow()

    def abort(self) -> None:
        if self._conn_lost:
            return
        self._session.start("abort", pb.AbortRequest(stream_id=self.stream_id).SerializeToString())
        self._force_close(None, release=False)

    # connection loss

    def _watch_closed(self) -> None:
        """Learns when the daemon's socket is closed (wait_closed), to call
        connection_lost then, as asyncio does."""
        if self._wait_closed_call is None and not self._lost_called:
            self._wait_closed_call = self._session.start(
                "wait_closed", pb.WaitClosedRequest(stream_id=self.stream_id).SerializeToString(),
                self._on_wait_closed, blocking=True)

    def _on_wait_closed(self, resp: Any) -> None:
        self._wait_closed_call = None
        if resp.WhichOneof("result") == "error":
            exc = exception_of(resp)
            if isinstance(exc, asyncio.CancelledError):
                return
            self._force_close(exc, release=True)
        else:
            self._force_close(None, release=False)

    def _fatal(self, exc: BaseException) -> None:
        self._force_close(exc, release=True)

    def _force_close(self, exc: BaseException | None, release: bool) -> None:
        if self._conn_lost:
            return
        self._conn_lost = True
        self._closing = True
        self._queue.clear()
        self._queued_bytes = 0
        self._read_done = True
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
            self._draining = False
        if self._read_call is not None:
            self._session.cancel(self._read_call)
        if release:
            # The daemon's stream is dead: release its handle.
            self._session.start("abort", pb.AbortRequest(stream_id=self.stream_id).SerializeToString())
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost_called:
            return
        self._lost_called = True
        self._session.transports.discard(self)
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        finally:
            if self._server is not None:
                self._server._detach(self)
                self._server = None

    # start_tls

    async def _start_tls(self, sslcontext: Any, server_side: bool, server_hostname: str | None,
                         ssl_handshake_timeout: float | None) -> None:
        if self._kind == "tls":
            raise RuntimeError("the stream is already using TLS")
        if self._closing:
            raise ConnectionResetError("Connection lost")
        if server_side:
            opts = _tls.server_options(sslcontext, ssl_handshake_timeout)
            assert opts is not None
        else:
            if server_hostname is None:
                peer = self._extra.get("peername")
                if isinstance(peer, tuple):
                    server_hostname = self._host or peer[0]
                elif not (isinstance(sslcontext, ssl.SSLContext) and not sslcontext.check_hostname):
                    raise ValueError("You must set server_hostname when using ssl without a host")
            opts = _tls.client_options(sslcontext or True, server_hostname, ssl_handshake_timeout, None)
            assert opts is not None
        # No daemon read may run while the handshake takes the socket.
        self._tls_busy = True
        try:
            while self._read_call is not None:
                self._read_idle = self._loop.create_future()
                self._session.cancel(self._read_call)
                await self._read_idle
            req = pb.StartTlsRequest(stream_id=self.stream_id, tls=opts)
            try:
                await self._session.request("start_tls", req, retry=False, blocking=True)
            except BaseException:
                self.close()
                raise
            self._kind = "tls"
            self._extra["sslcontext"] = sslcontext if isinstance(sslcontext, ssl.SSLContext) else None
            await fetch_tls_extra(self._session, self.stream_id, self._extra, self, sslcontext)
            self._protocol._over_ssl = True
        finally:
            self._tls_busy = False
            self._read_idle = None
        self._maybe_read(waited=self._reader._waiter is not None)


async def fetch_tls_extra(session: Session, stream_id: str, extra: dict[str, Any], transport: Any,
                          sslcontext: Any) -> None:
    names = ("peercert", "cipher", "ssl_object")
    futs = [session.request("get_extra_info", pb.GetExtraInfoRequest(stream_id=stream_id, name=n))
            for n in names]
    results = await asyncio.gather(*futs)
    for name, r in zip(names, results):
        extra[name] = _py_value(r.value)
    extra["compression"] = None
    extra["ssl_object"] = SSLObjectInfo(extra["ssl_object"] or {}, transport, sslcontext)
    if not isinstance(sslcontext, ssl.SSLContext):
        sslcontext = None
    extra["sslcontext"] = sslcontext


async def fetch_extra(session: Session, stream_id: str, names: tuple[str, ...]) -> dict[str, Any]:
    futs = [session.request("get_extra_info", pb.GetExtraInfoRequest(stream_id=stream_id, name=n))
            for n in names]
    results = await asyncio.gather(*futs)
    return {name: _py_value(r.value) for name, r in zip(names, results)}


class StreamReader(asyncio.StreamReader):
    """asyncio.StreamReader over a daemon stream: the reading methods of
    Python 3.13 (readuntil takes a tuple of separators on every version),
    with the data coming from the daemon."""

    # asyncio.StreamReader's private state, which these methods share with
    # its feed_data() / feed_eof() / set_exception().
    _transport: StreamTransport
    _buffer: bytearray
    _eof: bool
    _limit: int
    _exception: BaseException | None
    _waiter: "asyncio.Future[None] | None"
    _paused: bool
    _loop: asyncio.AbstractEventLoop

    if TYPE_CHECKING:
        def _maybe_resume_transport(self) -> None: ...

    async def _wait_for_data(self, func_name: str) -> None:
        if self._waiter is not None:
            raise RuntimeError(
                f"{func_name}() called while another coroutine is already waiting for incoming data")
        assert not self._eof, "_wait_for_data after EOF"
        t = self._transport
        if self._paused:
            self._paused = False
            t._read_paused = False
        self._waiter = self._loop.create_future()
        t._maybe_read(waited=True)
        try:
            await self._waiter
        except asyncio.CancelledError:
            t._wait_cancelled()
            raise
        finally:
            self._waiter = None

    async def readline(self) -> bytes:
        sep = b"\n"
        seplen = len(sep)
        try:
            line = await self.readuntil(sep)
        except asyncio.IncompleteReadError as e:
            return e.partial
        except asyncio.LimitOverrunError as e:
            if self._buffer.startswith(sep, e.consumed):
                del self._buffer[: e.consumed + seplen]
            else:
                self._buffer.clear()
            self._maybe_resume_transport()
            raise ValueError(e.args[0])
        return line

    async def readuntil(self, separator: bytes | tuple[bytes, ...] = b"\n") -> bytes:  # type: ignore[override]
        if isinstance(separator, tuple):
            seps = sorted(separator, key=len)
        else:
            seps = [separator]
        if not seps:
            raise ValueError("Separator should contain at least one element")
        min_seplen = len(seps[0])
        max_seplen = len(seps[-1])
        if min_seplen == 0:
            raise ValueError("Separator should be at least one-byte string")
        if self._exception is not None:
            raise self._exception
        offset = 0
        while True:
            buflen = len(self._buffer)
            if buflen - offset >= min_seplen:
                match_start = None
                match_end = None
                for sep in seps:
                    isep = self._buffer.find(sep, offset)
                    if isep != -1:
                        end = isep + len(sep)
                        if match_end is None or end < match_end:
                            match_end = end
                            match_start = isep
                if match_end is not None:
                    break
                offset = max(0, buflen + 1 - max_seplen)
                if offset > self._limit:
                    raise asyncio.LimitOverrunError("Separator is not found, and chunk exceed the limit", offset)
            if self._eof:
                chunk = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(chunk, None)
            await self._wait_for_data("readuntil")
        assert match_start is not None
        if match_start > self._limit:
            raise asyncio.LimitOverrunError("Separator is found, but chunk is longer than limit", match_start)
        line = bytes(self._buffer[:match_end])
        del self._buffer[:match_end]
        self._maybe_resume_transport()
        return line

    async def read(self, n: int = -1) -> bytes:
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        if n < 0:
            blocks = []
            while True:
                block = await self.read(self._limit)
                if not block:
                    break
                blocks.append(block)
            return b"".join(blocks)
        if not self._buffer and not self._eof:
            await self._wait_for_data("read")
        data = bytes(memoryview(self._buffer)[:n])
        del self._buffer[:n]
        self._maybe_resume_transport()
        return data

    async def readexactly(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        while len(self._buffer) < n:
            if self._eof:
                incomplete = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(incomplete, n)
            await self._wait_for_data("readexactly")
        if len(self._buffer) == n:
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(memoryview(self._buffer)[:n])
            del self._buffer[:n]
        self._maybe_resume_transport()
        return data

    def __repr__(self) -> str:
        info = ["streammgr.StreamReader"]
        if self._buffer:
            info.append(f"{len(self._buffer)} bytes")
        if self._eof:
            info.append("eof")
        if self._limit != _DEFAULT_LIMIT:
            info.append(f"limit={self._limit}")
        if self._exception:
            info.append(f"exception={self._exception!r}")
        if self._transport:
            info.append(f"transport={self._transport!r}")
        if self._paused:
            info.append("paused")
        return "<{}>".format(" ".join(info))


class StreamWriter(asyncio.StreamWriter):
    """asyncio.StreamWriter over a daemon stream. write(), writelines(),
    write_eof() and close() are synchronous, as in asyncio; drain() waits
    only when the write buffer is above its high-water mark."""

    _transport: StreamTransport
    _loop: asyncio.AbstractEventLoop

    def __repr__(self) -> str:
        return f"<streammgr.StreamWriter transport={self._transport!r}>"

    async def wait_closed(self) -> None:
        self._transport._watch_closed()
        await self._protocol._get_close_waiter(self)  # type: ignore[attr-defined]

    async def start_tls(self, sslcontext: Any, *, server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None) -> None:
        """Upgrades the stream to TLS in place (the daemon does the
        handshake): as the client for a connection this program opened, as
        the server for one a server accepted."""
        if ssl_shutdown_timeout is not None and ssl_shutdown_timeout <= 0:
            raise ValueError(f"ssl_shutdown_timeout should be a positive number, got {ssl_shutdown_timeout}")
        server_side = self._protocol._client_connected_cb is not None  # type: ignore[attr-defined]
        await self.drain()
        await self._transport._start_tls(sslcontext, server_side, server_hostname, ssl_handshake_timeout)

    def __del__(self, warnings: Any = warnings) -> None:
        try:
            t = self._transport
        except AttributeError:
            return
        if not t.is_closing():
            if self._loop.is_closed():
                warnings.warn("loop is closed", ResourceWarning)
            else:
                self.close()
                warnings.warn(f"unclosed {self!r}", ResourceWarning)


def make_stream(session: Session, stream_id: str, *, kind: str, extra: dict[str, Any], limit: int,
                server_side: bool, client_connected_cb: Any = None) -> tuple[StreamReader, StreamWriter]:
    """The reader and writer of a daemon stream, its read-ahead started."""
    loop = session.loop
    reader = StreamReader(limit=limit, loop=loop)
    protocol = StreamProtocol(reader, loop, client_connected_cb)
    transport = StreamTransport(session, stream_id, kind=kind, extra=extra, server_side=server_side,
                                protocol=protocol, reader=reader)
    protocol._over_ssl = kind == "tls"
    reader.set_transport(transport)
    sock = extra.get("socket")
    if isinstance(sock, DaemonSocket):
        sock._bind(transport)
    writer = StreamWriter(transport, protocol, reader, loop)
    transport._maybe_read()
    return reader, writer


def base_extra(kind: str, peername: str, sockname: str) -> dict[str, Any]:
    peer = parse_address(peername, kind)
    sock = parse_address(sockname, kind)
    extra: dict[str, Any] = {
        "peername": peer,
        "sockname": sock,
        "socket": DaemonSocket(_family(peer if peername else sock, kind), sock, peer),
    }
    return extra

