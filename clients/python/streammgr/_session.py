"""The Session RPC of one (event loop, daemon address): every stream and
server of that loop is driven through it, with client-chosen call_ids.

A Call is one operation: its serialized SessionRequest and a callback that
gets the SessionResponse. Calls are sent at once (the HTTP/2 layer batches
what one loop iteration sends into one socket write) and answered in any
order. If the connection breaks, the calls that are safe to repeat (reads
and writes carry offsets; drain, close, ... are idempotent) are sent again
on a new connection; the others are answered with UNAVAILABLE.

At most MAX_BLOCKING operations that may wait indefinitely (reads, accepts,
drains, wait_closed) are in flight at once; more wait here, so that the
daemon's limit of 1024 operations per session is never reached by waiting
calls alone (the daemon would stop reading the session, and a write that
would unblock a read could not get through).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from typing import Any, Callable

from . import _address
from ._errors import from_status, from_status_bytes
from ._h2 import (CODE_CANCELLED, CODE_PERMISSION_DENIED, CODE_UNAUTHENTICATED, CODE_UNAVAILABLE,
                  CODE_UNIMPLEMENTED, CallEnded, H2Call)
from .v1 import streammgr_pb2 as pb

log = logging.getLogger("streammgr")

SESSION_PATH = "/streammgr.v1.StreamService/Session"
MAX_BLOCKING = 900
# Speculative reads (read-ahead nobody waits for yet) stop well before that.
MAX_SPECULATIVE = 600
# While operations wait here for room, the waiting reads and accepts in
# flight longer than this are cancelled (they consume nothing) and go to
# the back of the line, so that every stream makes progress.
PREEMPT_AFTER = 0.02
# A broken connection is re-dialed with backoff for this long.
RECONNECT_FOR = 10.0

_PREEMPTIBLE = frozenset({"read", "accept"})

_FIELD_NUMBERS: dict[str, int] = {f.name: f.number for f in pb.SessionRequest.DESCRIPTOR.fields}


def varint(n: int) -> bytes:
    if n < 0:
        n &= 0xFFFFFFFFFFFFFFFF
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_TAGS: dict[str, bytes] = {name: varint((num << 3) | 2) for name, num in _FIELD_NUMBERS.items()}
_TIMEOUT_TAG = varint((_FIELD_NUMBERS["timeout"] << 3) | 2)


def encode_request(call_id: int, op: str, sub: bytes, timeout: float | None = None) -> bytes:
    """A serialized SessionRequest{call_id, op: sub, timeout}."""
    out = b"\x08" + varint(call_id) + _TAGS[op] + varint(len(sub)) + sub
    if timeout is not None:
        secs = int(timeout)
        nanos = int((timeout - secs) * 1e9)
        d = (b"\x08" + varint(secs) if secs else b"") + (b"\x10" + varint(nanos) if nanos else b"")
        out += _TIMEOUT_TAG + varint(len(d)) + d
    return out


def encode_read(stream_id: bytes, n: int, offset: int) -> bytes:
    """A serialized ReadRequest{stream_id, n, offset}."""
    return b"\x0a" + varint(len(stream_id)) + stream_id + b"\x10" + varint(n) + b"\x18" + varint(offset)


def encode_write(stream_id: bytes, data: bytes, offset: int) -> bytes:
    """A serialized WriteRequest{stream_id, data, offset}."""
    return b"\x0a" + varint(len(stream_id)) + stream_id + b"\x12" + varint(len(data)) + data + b"\x18" + varint(offset)


def error_response(call_id: int, code: int, message: str) -> pb.SessionResponse:
    return pb.SessionResponse(call_id=call_id, error=pb.Status(code=code, message=message))


Callback = Callable[[Any], None]  # gets a SessionResponse or a LocalFailure


class LocalFailure:
    """A failure that happened here, not in the daemon, passed to a
    callback in place of a SessionResponse (it answers WhichOneof and
    error like one)."""

    __slots__ = ("call_id", "exception", "error")

    def __init__(self, call_id: int, exception: BaseException):
        self.call_id = call_id
        self.exception = exception
        self.error = pb.Status(code=CODE_UNAVAILABLE, message=str(exception))

    def WhichOneof(self, name: str) -> str:  # noqa: N802 - protobuf's spelling
        return "error"


def exception_of(resp: Any) -> BaseException:
    """The exception for an error response."""
    if isinstance(resp, LocalFailure):
        return resp.exception
    return from_status(resp.error)


class Call:
    __slots__ = ("id", "op", "sub", "cb", "retry", "blocking", "timeout", "sent_gen", "cancelling", "done",
                 "admitted", "sent_at")

    def __init__(self, op: str, sub: bytes, cb: Callback, retry: bool, blocking: bool, timeout: float | None):
        self.id = 0
        self.op = op
        self.sub = sub
        self.cb = cb
        self.retry = retry
        self.blocking = blocking
        self.timeout = timeout
        self.sent_gen = -1
        self.cancelling = False
        self.done = False
        self.admitted = False
        self.sent_at = 0.0


def _noop(resp: pb.SessionResponse) -> None:
    pass


class Session:
    """The Session call for one event loop and daemon address."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: _address.DaemonAddress):
        self.loop = loop
        self.address = address
        self._conn: Any = None  # H2Call or GrpcioCall
        self._gen = 0
        self._calls: dict[int, Call] = {}
        self._next_id = 1
        self._dialing: asyncio.Task[None] | None = None
        self._redial_handle: asyncio.TimerHandle | None = None
        self._ever_connected = False
        self._broken_since: float | None = None
        self._failures = 0
        self._closed = False
        self._blocking = 0
        self._backlog: deque[Call] = deque()
        self._preempt_timer: asyncio.TimerHandle | None = None
        self.transports: weakref.WeakSet[Any] = weakref.WeakSet()  # open streams
        self.servers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._grpc_channel: Any = None
        self._agen: Any = None
        self._register_shutdown()

    # lifetime

    def _register_shutdown(self) -> None:
        """Closes what is still open when the loop shuts down its async
        generators (asyncio.run() does, before closing the loop): a program
        that exits without closing a stream leaves no socket open in the
        daemon, as its own sockets would be closed with the process."""

        async def lifetime() -> Any:
            try:
                yield
            finally:
                await self.aclose()

        agen = lifetime()
        step = agen.__anext__()
        try:
            step.send(None)  # runs to the yield; the loop's firstiter hook registers agen
        except StopIteration:
            pass
        self._agen = agen

    async def aclose(self, timeout: float = 2.0) -> None:
        """Closes every stream and server still open, waits (at most
        timeout) for those operations, and ends the session."""
        if self._closed:
            return
        for srv in list(self.servers):
            try:
                srv.close()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        for t in list(self.transports):
            try:
                if not t.is_closing():
                    t.close()
            except Exception:  # noqa: BLE001
                pass
        deadline = self.loop.time() + timeout
        while self._conn is not None or self._dialing is not None:
            if not any(not c.blocking for c in self._calls.values()) or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.01)
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _sessions_forget(self)
        if self._redial_handle is not None:
            self._redial_handle.cancel()
        if self._preempt_timer is not None:
            self._preempt_timer.cancel()
        if self._dialing is not None:
            self._dialing.cancel()
            self._dialing = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._fail_all(CODE_UNAVAILABLE, "the streammgr session was closed", retry_too=True)
        if self._grpc_channel is not None:
            ch, self._grpc_channel = self._grpc_channel, None
            if not self.loop.is_closed():
                self.loop.create_task(ch.close())

    # calls

    def start(self, op: str, sub: bytes, cb: Callback = _noop, *, retry: bool = True,
              blocking: bool = False, timeout: float | None = None) -> Call:
        """Starts one operation; cb gets its SessionResponse (an error one
        if the session cannot carry it)."""
        call = Call(op, sub, cb, retry, blocking, timeout)
        if self._closed:
            self.loop.call_soon(cb, error_response(0, CODE_UNAVAILABLE, "the streammgr session is closed"))
            call.done = True
            return call
        call.id = self._next_id
        self._next_id += 1
        if blocking and self._blocking >= MAX_BLOCKING:
            self._backlog.append(call)
            self._schedule_preempt()
            return call
        self._admit(call)
        return call

    def _schedule_preempt(self) -> None:
        if self._preempt_timer is None and not self._closed:
            self._preempt_timer = self.loop.call_later(PREEMPT_AFTER, self._preempt)

    def _preempt(self) -> None:
        """Makes room for operations waiting here: cancels (at most as many)
        reads and accepts that have waited in the daemon the longest. They
        are answered CANCELLED, having consumed nothing, and their owners
        ask again (behind the ones waiting)."""
        self._preempt_timer = None
        if not self._backlog or self._closed:
            return
        now = self.loop.time()
        old = [c for c in self._calls.values()
               if c.op in _PREEMPTIBLE and not c.cancelling and now - c.sent_at >= PREEMPT_AFTER]
        old.sort(key=lambda c: c.sent_at)
        for c in old[: len(self._backlog)]:
            self.cancel(c, preempt=True)
        self._schedule_preempt()

    def _admit(self, call: Call) -> None:
        call.admitted = True
        call.sent_at = self.loop.time()
        if call.blocking:
            self._blocking += 1
        self._calls[call.id] = call
        conn = self._conn
        if conn is not None and self._dialing is None:
            call.sent_gen = self._gen
            conn.send_message(encode_request(call.id, call.op, call.sub, call.timeout))
        else:
            self._ensure_connection()

    def speculative_room(self) -> bool:
        return self._blocking < MAX_SPECULATIVE and not self._closed

    def request(self, op: str, msg: Any, *, retry: bool = True, blocking: bool = False,
                timeout: float | None = None) -> asyncio.Future[Any]:
        """Runs one operation; the future gets the result message (e.g.
        the OpenResponse) or the exception for its error."""
        fut: asyncio.Future[Any] = self.loop.create_future()

        def done(resp: pb.SessionResponse) -> None:
            if fut.done():
                return
            kind = resp.WhichOneof("result")
            if kind == "error":
                fut.set_exception(exception_of(resp))
            else:
                fut.set_result(getattr(resp, kind) if kind else None)

        self.start(op, msg.SerializeToString(), done, retry=retry, blocking=blocking, timeout=timeout)
        return fut

    def cancel(self, call: Call, preempt: bool = False) -> None:
        """Asks the daemon to cancel call; it is answered CANCELLED (having
        consumed nothing) or with its result, whichever comes first."""
        if call.done or call.cancelling:
            return
        call.cancelling = True
        if call.id not in self._calls and not preempt:  # still waiting for room here
            try:
                self._backlog.remove(call)
            except ValueError:
                pass
            call.done = True
            self.loop.call_soon(call.cb, error_response(call.id, CODE_CANCELLED, "cancelled"))
            return
        if call.sent_gen == self._gen and self._conn is not None and self._dialing is None:
            sub = pb.CancelCallRequest(call_id=call.id).SerializeToString()
            self.start("cancel", sub, _noop, retry=False)
        # Otherwise it has not been sent on this connection: it will not be.

    def _on_message(self, conn: Any, payload: bytes) -> None:
        if conn is not self._conn:
            return
        self._failures = 0
        self._broken_since = None
        resp = pb.SessionResponse.FromString(payload)
        call = self._calls.pop(resp.call_id, None)
        if call is None:
            return
        self._finish(call)
        call.cb(resp)

    def _finish(self, call: Call) -> None:
        call.done = True
        if call.blocking:
            self._blocking -= 1
            while self._backlog and self._blocking < MAX_BLOCKING:
                nxt = self._backlog.popleft()
                self._admit(nxt)

    # connection

    def _ensure_connection(self) -> None:
        if self._conn is None and self._dialing is None and self._redial_handle is None and not self._closed:
            self._dialing = self.loop.create_task(self._dial())

    def _redial(self) -> None:
        self._redial_handle = None
        self._ensure_connection()

    async def _dial(self) -> None:
        addr = self.address
        conn: Any = None
        try:
            conn = await self._connect()
        except asyncio.CancelledError:
            self._dialing = None
            raise
        except Exception as e:  # noqa: BLE001 - any failure to connect
            self._dialing = None
            self._dial_failed(e)
            return
        self._dialing = None
        if self._closed:
            conn.close()
            return
        self._gen += 1
        self._conn = conn
        self._ever_connected = True
        log.debug("connected to streammgrd at %s", addr.text)
        # Resend what is in flight, in call order (each handle's lanes keep
        # their order).
        for call in sorted(self._calls.values(), key=lambda c: c.id):
            if call.cancelling:
                self._drop(call)
                call.cb(error_response(call.id, CODE_CANCELLED, "cancelled"))
                continue
            call.sent_gen = self._gen
            conn.send_message(encode_request(call.id, call.op, call.sub, call.timeout))

    async def _connect(self) -> Any:
        addr = self.address
        md = _address.metadata()
        holder: list[Any] = []

        def on_message(payload: bytes) -> None:
            self._on_message(holder[0], payload)

        def on_end(ended: CallEnded) -> None:
            self._on_end(holder[0] if holder else None, ended)

        if _transport_kind() == "grpcio":
            from ._grpcio_transport import GrpcioCall
            import grpc

            if self._grpc_channel is None:
                opts = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]
                if addr.kind == "tls":
                    creds = grpc.ssl_channel_credentials(*_tls_files())
                    self._grpc_channel = grpc.aio.secure_channel(addr.grpc_target(), creds, options=opts)
                else:
                    self._grpc_channel = grpc.aio.insecure_channel(addr.grpc_target(), options=opts)
            conn = GrpcioCall(self.loop, self._grpc_channel, SESSION_PATH, md, on_message, on_end)
            holder.append(conn)
            await asyncio.wait_for(asyncio.shield(conn.connected), 10)
            return conn

        def factory() -> H2Call:
            c = H2Call(self.loop, addr.authority, SESSION_PATH, md, "https" if addr.kind == "tls" else "http",
                       on_message, on_end)
            holder.append(c)
            return c

        if addr.kind == "unix":
            await asyncio.wait_for(self.loop.create_unix_connection(factory, addr.path), 10)
        else:
            ssl_ctx = _address.tls_context() if addr.kind == "tls" else None
            await asyncio.wait_for(self.loop.create_connection(
                factory, addr.host, addr.port, ssl=ssl_ctx,
                server_hostname=addr.host if ssl_ctx else None), 10)
        return holder[0]

    def _dial_failed(self, exc: BaseException) -> None:
        if not self._ever_connected:
            # The daemon was never reached: fail now, with a clear error.
            self._fail_with(_unreachable(self.address, exc))
            return
        why = f"cannot reconnect to streammgrd at {self.address.text}: {exc}"
        if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)) and self._failures >= 2:
            # Nobody listens there: the daemon is gone, and its handles with
            # it. Waiting longer would not bring them back.
            self._give_up(why)
            return
        self._schedule_redial(why)

    def _give_up(self, why: str) -> None:
        self._broken_since = None
        self._failures = 0
        self._ever_connected = False  # the next call dials once and fails at once
        self._fail_with(ConnectionResetError(why))

    def _drop(self, call: Call) -> None:
        self._calls.pop(call.id, None)
        call.done = True
        if call.admitted and call.blocking and self._blocking > 0:
            self._blocking -= 1

    def _fail_with(self, exc: BaseException) -> None:
        """Answers every call in flight or waiting with exc."""
        calls = sorted(self._calls.values(), key=lambda c: c.id) + list(self._backlog)
        self._backlog.clear()
        for call in calls:
            self._drop(call)
            call.cb(LocalFailure(call.id, exc))

    def _schedule_redial(self, why: str) -> None:
        now = self.loop.time()
        if self._broken_since is None:
            self._broken_since = now
        if now - self._broken_since > RECONNECT_FOR:
            self._give_up(why)
            return
        if not self._calls and not self._backlog:
            return  # nothing waits: dial again on the next call
        delay = min(0.05 * (2 ** self._failures), 1.0)
        self._failures += 1
        self._redial_handle = self.loop.call_later(delay, self._redial)

    def _on_end(self, conn: Any, ended: CallEnded) -> None:
        if conn is None or conn is not self._conn:
            return
        self._conn = None
        if self._closed:
            return
        fatal = ended.code in (CODE_UNAUTHENTICATED, CODE_PERMISSION_DENIED, CODE_UNIMPLEMENTED)
        if fatal:
            self._fail_with(from_status_bytes(ended.code, ended.message, ended.details))
            return
        log.debug("streammgr session ended: %s %s", ended.code, ended.message)
        self._fail_all(CODE_UNAVAILABLE, f"connection to streammgrd lost: {ended.message}", retry_too=False)
        self._schedule_redial(ended.message)

    def _fail_all(self, code: int, message: str, retry_too: bool) -> None:
        """Answers the calls in flight that cannot be repeated (all of them
        with retry_too) with an error."""
        for call in sorted(self._calls.values(), key=lambda c: c.id):
            if retry_too or not call.retry or call.cancelling:
                self._drop(call)
                c = CODE_CANCELLED if call.cancelling and not retry_too else code
                call.cb(error_response(call.id, c, message))
        if retry_too:
            backlog, self._backlog = list(self._backlog), deque()
            for call in backlog:
                call.done = True
                call.cb(error_response(call.id, code, message))


def _unreachable(addr: _address.DaemonAddress, exc: BaseException) -> BaseException:
    if isinstance(exc, OSError) and exc.errno is not None:
        cls = type(exc) if isinstance(exc, (ConnectionError, FileNotFoundError, PermissionError)) else ConnectionRefusedError
        return cls(exc.errno, f"cannot reach streammgrd at {addr.text}: {exc.strerror}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TimeoutError(f"cannot reach streammgrd at {addr.text}: connect timed out")
    return ConnectionRefusedError(f"cannot reach streammgrd at {addr.text}: {exc}")


def _transport_kind() -> str:
    import os

    return str(os.environ.get(_address.TRANSPORT_ENV) or "h2").lower()


def _tls_files() -> tuple[bytes | None, bytes | None, bytes | None]:
    import os

    def read(env: str) -> bytes | None:
        p = os.environ.get(env)
        if not p:
            return None
        with open(p, "rb") as f:
            return f.read()

    return read("STREAMMGR_CA_FILE"), read("STREAMMGR_KEY_FILE"), read("STREAMMGR_CERT_FILE")


# Sessions by loop, then daemon address.
_SESSIONS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Session]]" = weakref.WeakKeyDictionary()


def get_session(address: _address.DaemonAddress, loop: asyncio.AbstractEventLoop | None = None) -> Session:
    if loop is None:
        loop = asyncio.get_running_loop()
    per_loop = _SESSIONS.get(loop)
    if per_loop is None:
        per_loop = _SESSIONS[loop] = {}
    key = address.text + "\0" + address.kind + address.path + address.host + str(address.port)
    s = per_loop.get(key)
    if s is None or s._closed:
        s = per_loop[key] = Session(loop, address)
    return s


def _sessions_forget(session: Session) -> None:
    per_loop = _SESSIONS.get(session.loop)
    if not per_loop:
        return
    for k, v in list(per_loop.items()):
        if v is session:
            del per_loop[k]


def is_error(resp: Any) -> bool:
    return bool(resp.WhichOneof("result") == "error")


__all__ = ["Session", "get_session", "encode_read", "encode_write", "exception_of", "is_error"]
