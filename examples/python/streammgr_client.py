"""asyncio Streams through streammgrd.

A small wrapper over the generated gRPC stubs (grpc.aio) that looks like
asyncio's Streams API: open_connection() gives a (StreamReader, StreamWriter)
pair, start_server() a Server, and the daemon's errors come back as the
exceptions asyncio raises:

* a read that hit EOF first is not a gRPC error: the daemon answers it with
  incomplete = true and the partial bytes, and this module raises
  asyncio.IncompleteReadError(partial, expected);
* RESOURCE_EXHAUSTED with reason LIMIT_OVERRUN is decoded from the status
  details (google.rpc.Status in the grpc-status-details-bin trailer, read
  with grpc_status.rpc_status.from_call) and raised as
  asyncio.LimitOverrunError(message, consumed);
* connection errors become ConnectionResetError, ConnectionRefusedError, ...;
  timeouts TimeoutError; anything else a StreammgrError carrying the gRPC
  code and the reason.

Every translated exception has the attributes grpc_code, reason, metadata
(the ErrorInfo metadata) and rpc_error (the original grpc.aio.AioRpcError).

Offsets and retries. A StreamReader keeps its inbound offset (reader.offset:
the bytes its reads received, plus those an over-long readline dropped) and
a StreamWriter its outbound offset (writer.offset: the bytes the daemon
accepted); both start at 0 for the fresh streams of open_connection,
open_pair, accept and serve. Every read and write sends its offset and
takes the next one from the answer, so:

* a read cancelled by asyncio (asyncio.wait_for's timeout, task.cancel())
  leaves the offset as it was; if the daemon had already consumed bytes for
  it, the next read, from the same offset, gets them again: nothing is lost;
* a stream call (read, write, drain, close, ...) whose attempt fails for
  want of the daemon is made again with the same offsets, after a short
  backoff, at most Client.retries times: UNAVAILABLE without a streammgr
  reason (the connection broke or could not be made; the channel re-dials
  by itself), or DEADLINE_EXCEEDED / CANCELLED when the attempt ran out of
  the per-attempt timeout Client(timeout=...) set (and a read superseded
  by a late copy of an earlier attempt, READ_SUPERSEDED). The daemon's own
  errors (CONNECTION_RESET, SHUTTING_DOWN, IO_TIMEOUT, ...) are never
  retried, nor is an asyncio cancellation: it propagates. A retried read
  gets the bytes of an answer that was lost; a retried write is accepted
  once.

A write, once called, is carried out as asyncio's write() is: cancelling
the coroutine does not take the bytes back (the call finishes in the
background and later writes wait for it), so offsets stay exact.

The one visible difference from asyncio: every method is a coroutine, since
each one is an RPC (await writer.write(data), await writer.close(), ...).

    async with streammgr_client.Client("unix:/run/user/1000/streammgrd.sock") as c:
        reader, writer = await c.open_connection("127.0.0.1", 8888)
        await writer.write(b"Hello World!")
        await writer.drain()
        print(await reader.read(100))
        await writer.close()
        await writer.wait_closed()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
from typing import AsyncIterator, Awaitable, Callable, Iterable

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

_GENERATED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "streammgr_pb")
if _GENERATED not in sys.path:
    sys.path.insert(0, _GENERATED)
try:
    from streammgr.v1 import streammgr_pb2 as pb  # noqa: E402
    from streammgr.v1 import streammgr_pb2_grpc as pb_grpc  # noqa: E402
except ImportError as e:  # pragma: no cover - a setup problem, not a bug
    raise ImportError(
        f"streammgr stubs not found in {_GENERATED}: run examples/python/setup.sh "
        f"(or examples/python/gen.sh): {e}"
    ) from e

__all__ = [
    "Client",
    "StreamReader",
    "StreamWriter",
    "Server",
    "aborting",
    "StreammgrError",
    "translate_error",
    "daemon_target",
    "add_address_argument",
    "run",
    "pb",
]

ADDR_ENV = "STREAMMGR_ADDR"


class StreammgrError(Exception):
    """A daemon error with no closer asyncio equivalent."""

    def __init__(self, message: str, grpc_code: grpc.StatusCode, reason: str):
        super().__init__(message)
        self.grpc_code = grpc_code
        self.reason = reason

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.grpc_code.name}{reason}: {self.args[0]}"


# Reasons (manager/errors.go) that have a built-in Python exception.
_OS_ERRORS: dict[str, type[BaseException]] = {
    "CONNECTION_RESET": ConnectionResetError,
    "CONNECTION_REFUSED": ConnectionRefusedError,
    "CONNECTION_ABORTED": ConnectionAbortedError,
    "BROKEN_PIPE": BrokenPipeError,
    "CONNECTION_LOST": ConnectionResetError,  # asyncio: ConnectionResetError('Connection lost')
    "NO_SUCH_SOCKET": FileNotFoundError,
    "PERMISSION_DENIED": PermissionError,
    "ADDRESS_IN_USE": OSError,
    "UNREACHABLE": OSError,
    "IO_ERROR": OSError,
    "DNS_ERROR": socket.gaierror,
    "TLS_ERROR": ssl.SSLError,  # ssl.SSLCertVerificationError when verification failed
}
_OTHER_ERRORS: dict[str, type[BaseException]] = {
    "INVALID_ARGUMENT": ValueError,
    "LINE_TOO_LONG": ValueError,  # readline() turns LimitOverrunError into ValueError
    "CONCURRENT_READ": RuntimeError,
    "WRITE_EOF_UNSUPPORTED": NotImplementedError,
    "CONNECT_TIMEOUT": TimeoutError,
    "HANDSHAKE_TIMEOUT": TimeoutError,
    "IO_TIMEOUT": TimeoutError,
    "ACCEPT_TIMEOUT": TimeoutError,
    "DEADLINE_EXCEEDED": TimeoutError,  # the call's own deadline, as the daemon saw it
}


def _decode_status(err: grpc.RpcError) -> tuple[str, dict[str, str], "pb.LimitOverrunError | None"]:
    """The reason and metadata of the google.rpc.ErrorInfo in a failed
    call's status details ("" and {} when there is none), and its
    streammgr.v1.LimitOverrunError detail if any."""
    reason, metadata, overrun = "", {}, None
    try:
        status = rpc_status.from_call(err)
    except ValueError:  # code or message inconsistent with the trailer
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(pb.LimitOverrunError.DESCRIPTOR):
                overrun = pb.LimitOverrunError()
                detail.Unpack(overrun)
    return reason, metadata, overrun


def translate_error(err: grpc.RpcError) -> BaseException:
    """Returns the asyncio-style exception for a failed call.

    err is a grpc.aio.AioRpcError (or anything with code(), details() and
    trailing_metadata()). The google.rpc.Status in its trailers carries a
    google.rpc.ErrorInfo (reason, metadata such as errno) and, for
    LIMIT_OVERRUN and LINE_TOO_LONG, a streammgr.v1.LimitOverrunError with
    consumed and next_offset (set as the exception's next_offset).
    """
    code = err.code()
    message = err.details() or ""
    reason, metadata, overrun = _decode_status(err)
    errno = int(metadata["errno"]) if "errno" in metadata else None
    exc: BaseException
    if reason == "LIMIT_OVERRUN" and overrun is not None:
        exc = asyncio.LimitOverrunError(message, overrun.consumed)
    elif reason in _OS_ERRORS:
        cls = _OS_ERRORS[reason]
        if reason == "TLS_ERROR" and "certificate verify failed" in message.lower():
            cls = ssl.SSLCertVerificationError
        exc = cls(errno, message) if errno is not None else cls(message)
    elif reason in _OTHER_ERRORS:
        exc = _OTHER_ERRORS[reason](message)
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not reason:  # the call's own deadline
        exc = TimeoutError(message)
    else:
        exc = StreammgrError(message, code, reason)
    exc.grpc_code = code  # type: ignore[attr-defined]
    exc.reason = reason  # type: ignore[attr-defined]
    exc.metadata = metadata  # type: ignore[attr-defined]
    exc.rpc_error = err  # type: ignore[attr-defined]
    if overrun is not None:
        exc.next_offset = overrun.next_offset  # type: ignore[attr-defined]
    return exc


def _retryable(err: grpc.RpcError, timed: bool) -> bool:
    """Whether a failed attempt of a call that is safe to repeat is worth
    repeating: the transport failed (UNAVAILABLE with no streammgr reason;
    the daemon's own UNAVAILABLE errors, such as CONNECTION_RESET or
    SHUTTING_DOWN, carry one), or the attempt ran out of the timeout the
    client set on it (timed), or a read was superseded (READ_SUPERSEDED: a
    late copy of an earlier attempt, sent on a connection that broke, took
    its place; it consumed nothing)."""
    code = err.code()
    reason = _decode_status(err)[0]
    if code == grpc.StatusCode.UNAVAILABLE:
        return reason == ""
    if code == grpc.StatusCode.ABORTED:
        return reason == "READ_SUPERSEDED"
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return timed and reason in ("", code.name)  # the daemon saw the deadline too
    return False


def daemon_target(address: str) -> str:
    """Turns a daemon address ("unix:/path", "unix:///path" or "host:port")
    into a gRPC target. Relative Unix paths are made absolute."""
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if path.startswith("@"):  # Linux abstract namespace
            return "unix-abstract:" + path[1:]
        return "unix:" + os.path.abspath(path)
    return address


class Client:
    """A connection to streammgrd. Use it as an async context manager, or
    call close() when done. Create it inside a running event loop.

    timeout is the deadline, in seconds, of each attempt of a stream call
    (None: none, a read waits as long as asyncio's would). A stream call
    whose attempt runs out of it, or fails because the daemon could not be
    reached, is made again with the same offsets up to retries times, after
    backoff, 2 * backoff, ... seconds (at most 1 s each); then its error is
    raised (TimeoutError for the timeout)."""

    def __init__(self, address: str, *, timeout: float | None = None, retries: int = 5, backoff: float = 0.05):
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._closed = False
        # The channel re-dials a lost connection by itself; a short reconnect
        # backoff lets a retry find the daemon soon after it is back.
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]
        self._channel = grpc.aio.insecure_channel(daemon_target(address), options=options)
        self.stub = pb_grpc.StreamServiceStub(self._channel)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        await self._channel.close()

    async def call(self, method: str, request, timeout: float | None = None, *, retry: bool = False):
        """Runs one unary RPC, raising its error translated (translate_error).

        retry says the call is safe to repeat (a stream call, its read or
        write carrying an offset): an attempt that fails with UNAVAILABLE
        and no streammgr reason, or runs out of its timeout (timeout, else
        the client's), is then made again, at most self.retries times. An
        asyncio cancellation is never retried: it propagates."""
        if retry and timeout is None:
            timeout = self.timeout
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), 1.0))
            try:
                return await getattr(self.stub, method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                if not retry or self._closed or attempt == self.retries or not _retryable(e, timeout is not None):
                    raise translate_error(e) from e

    def _pair(self, stream_id: str) -> tuple["StreamReader", "StreamWriter"]:
        return StreamReader(self, stream_id), StreamWriter(self, stream_id)

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        ssl: bool = False,
        server_hostname: str | None = None,
        ca_pem: str | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> tuple["StreamReader", "StreamWriter"]:
        """asyncio.open_connection(host, port, ssl=..., server_hostname=...).

        ssl=True verifies the server against the system roots, or against
        ca_pem (PEM text) when given; server_hostname defaults to host."""
        req = pb.OpenRequest(tcp=pb.TcpAddress(host=host, port=port))
        if ssl:
            req.tls.CopyFrom(pb.TlsOptions(server_hostname=server_hostname or "", ca_pem=ca_pem or ""))
        if limit is not None:
            req.limit = limit
        resp = await self.call("Open", req, timeout)
        return self._pair(resp.stream_id)

    async def open_unix_connection(
        self, path: str, *, limit: int | None = None
    ) -> tuple["StreamReader", "StreamWriter"]:
        """asyncio.open_unix_connection(path)."""
        req = pb.OpenRequest(unix=pb.UnixAddress(path=path))
        if limit is not None:
            req.limit = limit
        resp = await self.call("Open", req)
        return self._pair(resp.stream_id)

    async def open_pair(
        self, *, limit: int | None = None
    ) -> tuple[tuple["StreamReader", "StreamWriter"], tuple["StreamReader", "StreamWriter"]]:
        """A connected pair made by the daemon (socket.socketpair() passed to
        open_connection(sock=...)): what one writer writes the other reader reads."""
        req = pb.OpenPairRequest()
        if limit is not None:
            req.limit = limit
        resp = await self.call("OpenPair", req)
        return self._pair(resp.first_stream_id), self._pair(resp.second_stream_id)

    async def start_server(
        self, host: str | None, port: int, *, limit: int | None = None, backlog: int = 0
    ) -> "Server":
        """asyncio.start_server without the callback: pass the callback to
        Server.serve_forever, or take connections with accept() or serve()."""
        req = pb.StartServerRequest(tcp=pb.TcpAddress(host=host or "", port=port), backlog=backlog)
        if limit is not None:
            req.limit = limit
        resp = await self.call("StartServer", req)
        return Server(self, resp.server_id, list(resp.sockets))


class StreamReader:
    """asyncio.StreamReader over a daemon stream handle.

    offset is the inbound offset: the bytes this reader's reads received
    (plus those an over-long readline dropped). It starts at 0 for a fresh
    stream; pass offset=None to take over a stream read from before: the
    first read then sends none (and is not retried) and learns it."""

    def __init__(self, client: Client, stream_id: str, offset: int | None = 0):
        self._c = client
        self.stream_id = stream_id
        self.offset = offset
        self._reading = ""  # the read waiting, as asyncio allows only one

    def __repr__(self) -> str:
        return f"<StreamReader {self.stream_id} offset={self.offset}>"

    async def _read(self, method: str, req, name: str):
        """Runs one read RPC at self.offset and moves the offset to the
        answer's next_offset (or the LimitOverrunError detail's); a read
        that fails otherwise, or is cancelled, leaves it where it was."""
        if self._reading:
            raise RuntimeError(f"{name}() called while another coroutine is already waiting for incoming data")
        self._reading = name
        try:
            if self.offset is not None:
                req.offset = self.offset
            try:
                resp = await self._c.call(method, req, retry=self.offset is not None)
            except Exception as e:
                if getattr(e, "next_offset", None) is not None:  # LIMIT_OVERRUN, LINE_TOO_LONG
                    self.offset = e.next_offset  # type: ignore[attr-defined]
                raise
            self.offset = resp.next_offset
            return resp
        finally:
            self._reading = ""

    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes (n = -1: until EOF); b"" at EOF."""
        resp = await self._read("Read", pb.ReadRequest(stream_id=self.stream_id, n=n), "read")
        return resp.data

    async def readline(self) -> bytes:
        """One line including b"\\n", the partial line at EOF, b"" after EOF.
        ValueError when the line is longer than the limit, as in asyncio
        (the line is dropped, and the offset moves past it)."""
        resp = await self._read("ReadLine", pb.ReadLineRequest(stream_id=self.stream_id), "readline")
        return resp.data

    async def readexactly(self, n: int) -> bytes:
        """Exactly n bytes, or asyncio.IncompleteReadError(partial, n) at EOF."""
        resp = await self._read("ReadExactly", pb.ReadExactlyRequest(stream_id=self.stream_id, n=n), "readexactly")
        if resp.incomplete:
            raise asyncio.IncompleteReadError(resp.data, resp.expected)
        return resp.data

    async def readuntil(self, separator: bytes | tuple[bytes, ...] = b"\n") -> bytes:
        """Bytes up to and including the separator (or the first of several).
        asyncio.IncompleteReadError(partial, None) at EOF;
        asyncio.LimitOverrunError(message, consumed) past the limit, the data
        staying buffered."""
        req = pb.ReadUntilRequest(stream_id=self.stream_id)
        if isinstance(separator, tuple):
            req.separators.extend(separator)
        else:
            req.separator = separator
        resp = await self._read("ReadUntil", req, "readuntil")
        if resp.incomplete:
            raise asyncio.IncompleteReadError(resp.data, None)
        return resp.data

    async def at_eof(self) -> bool:
        resp = await self._c.call("AtEof", pb.AtEofRequest(stream_id=self.stream_id), retry=True)
        return resp.at_eof

    def __aiter__(self) -> "StreamReader":
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if line == b"":
            raise StopAsyncIteration
        return line


def _from_value(v):
    """google.protobuf.Value to Python, lists as tuples (peername is a tuple)."""
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() else n
    if kind == "list_value":
        return tuple(_from_value(x) for x in v.list_value.values)
    if kind == "struct_value":
        return {k: _from_value(x) for k, x in v.struct_value.fields.items()}
    return getattr(v, kind)


class StreamWriter:
    """asyncio.StreamWriter over a daemon stream handle; every method is a
    coroutine (close() too).

    offset is the outbound offset: the bytes the daemon accepted from this
    writer. It starts at 0 for a fresh stream; offset=None takes over a
    stream written before (the first write sends none, and is not retried)."""

    def __init__(self, client: Client, stream_id: str, offset: int | None = 0):
        self._c = client
        self.stream_id = stream_id
        self.offset = offset
        self._lock = asyncio.Lock()  # one write RPC at a time, in call order

    def __repr__(self) -> str:
        return f"<StreamWriter {self.stream_id} offset={self.offset}>"

    async def _write(self, method: str, req) -> int:
        """Runs one write RPC at self.offset, moving the offset to the
        answer's next_offset. Shielded from cancellation: the bytes of a
        write that was called go out (or fail) as in asyncio, and the offset
        stays exact for the writes after it."""

        async def send() -> int:
            async with self._lock:
                if self.offset is not None:
                    req.offset = self.offset
                resp = await self._c.call(method, req, retry=self.offset is not None)
                self.offset = resp.next_offset
                return resp.buffered

        return await asyncio.shield(send())

    async def _after_writes(self, method: str, req):
        """A call that must come after the writes called before it."""
        async with self._lock:
            pass
        return await self._c.call(method, req, retry=True)

    async def write(self, data: bytes) -> int:
        """Buffers data (never waits for the peer); returns the bytes buffered."""
        return await self._write("Write", pb.WriteRequest(stream_id=self.stream_id, data=data))

    async def writelines(self, lines: Iterable[bytes]) -> int:
        return await self._write("WriteLines", pb.WriteLinesRequest(stream_id=self.stream_id, lines=list(lines)))

    async def drain(self) -> None:
        await self._after_writes("Drain", pb.DrainRequest(stream_id=self.stream_id))

    async def write_eof(self) -> None:
        await self._after_writes("WriteEof", pb.WriteEofRequest(stream_id=self.stream_id))

    async def can_write_eof(self) -> bool:
        resp = await self._c.call("CanWriteEof", pb.CanWriteEofRequest(stream_id=self.stream_id), retry=True)
        return resp.can_write_eof

    async def close(self) -> None:
        await self._after_writes("Close", pb.CloseRequest(stream_id=self.stream_id))

    async def abort(self) -> None:
        await self._c.call("Abort", pb.AbortRequest(stream_id=self.stream_id), retry=True)

    async def wait_closed(self) -> None:
        await self._c.call("WaitClosed", pb.WaitClosedRequest(stream_id=self.stream_id), retry=True)

    async def is_closing(self) -> bool:
        resp = await self._c.call("IsClosing", pb.IsClosingRequest(stream_id=self.stream_id), retry=True)
        return resp.is_closing

    async def get_extra_info(self, name: str, default=None):
        """peername, sockname, peercert, cipher, ... shaped as in Python."""
        req = pb.GetExtraInfoRequest(stream_id=self.stream_id, name=name)
        resp = await self._c.call("GetExtraInfo", req, retry=True)
        value = _from_value(resp.value)
        return default if value is None else value


@contextlib.asynccontextmanager
async def aborting(*writers: StreamWriter) -> AsyncIterator[None]:
    """Aborts the writers if the block fails or is cancelled (by SIGINT or
    SIGTERM through run()), so their streams are not left open in the
    daemon; the error then propagates. Errors of the aborts themselves (a
    stream already closed or released) are ignored.

        async with aborting(writer):
            ...
            await writer.close()
    """
    try:
        yield
    except BaseException:
        for w in writers:
            try:
                await w.abort()
            except Exception:  # noqa: BLE001 - already closed or released
                pass
        raise


def _socket_name(addr: str):
    """ "127.0.0.1:8888" -> ('127.0.0.1', 8888), as socket.getsockname() shows
    it; a Unix path stays a string."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or addr.startswith("/") or addr.startswith("@"):
        return addr
    return (host.strip("[]"), int(port))


class Server:
    """asyncio.Server for a daemon server handle. Connections are taken with
    accept(), serve() or serve_forever(callback)."""

    def __init__(self, client: Client, server_id: str, sockets: list[str]):
        self._c = client
        self.server_id = server_id
        self.addresses = sockets
        self.sockets = [_socket_name(s) for s in sockets]

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def accept(self, timeout: float | None = None) -> tuple[StreamReader, StreamWriter]:
        """The next accepted connection; TimeoutError after timeout seconds."""
        req = pb.AcceptRequest(server_id=self.server_id)
        if timeout is not None:
            req.timeout.FromNanoseconds(int(timeout * 1e9))
        resp = await self._c.call("Accept", req)
        return self._c._pair(resp.stream_id)

    async def serve(self) -> AsyncIterator[tuple[StreamReader, StreamWriter]]:
        """Every connection as it arrives (the Serve server-streaming RPC),
        until the server is closed."""
        call = self._c.stub.Serve(pb.ServeRequest(server_id=self.server_id))
        try:
            async for resp in call:
                yield self._c._pair(resp.stream_id)
        except grpc.aio.AioRpcError as e:
            raise translate_error(e) from e
        finally:
            call.cancel()

    async def serve_forever(
        self, client_connected_cb: Callable[[StreamReader, StreamWriter], Awaitable[None]]
    ) -> None:
        """Runs client_connected_cb(reader, writer) in a task per connection,
        like asyncio.start_server's callback, until cancelled. A failing (or
        cancelled) callback has its writer aborted, so its stream is not left
        open in the daemon; a failure is reported on stderr and does not stop
        the server. When cancelled, the running callbacks are cancelled and
        awaited."""
        tasks: set[asyncio.Task] = set()

        async def handle(reader: StreamReader, writer: StreamWriter) -> None:
            async with aborting(writer):
                await client_connected_cb(reader, writer)

        def done(t: asyncio.Task) -> None:
            tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                print(f"connection handler failed: {t.exception()!r}", file=sys.stderr, flush=True)

        try:
            async for reader, writer in self.serve():
                t = asyncio.create_task(handle(reader, writer))
                tasks.add(t)
                t.add_done_callback(done)
        finally:
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self, close_clients: bool = False, abort_clients: bool = False) -> None:
        """Stops listening and releases the handle (asyncio's Server.close())."""
        await self._c.call(
            "CloseServer",
            pb.CloseServerRequest(server_id=self.server_id, close_clients=close_clients, abort_clients=abort_clients),
        )


def add_address_argument(parser: argparse.ArgumentParser) -> None:
    """Adds the daemon address: the first argument, or $STREAMMGR_ADDR."""
    parser.add_argument(
        "address",
        nargs="?",
        default=os.environ.get(ADDR_ENV),
        help=f"streammgrd address, unix:/path or host:port (default ${ADDR_ENV})",
    )


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if not args.address:
        parser.error(f"no daemon address: pass unix:/path or host:port first, or set {ADDR_ENV}")
    return args


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def run(main: Awaitable[None]) -> None:
    """Runs an example's main coroutine: stdout line-buffered (so a parent
    process sees each line at once), and any error is printed and exits 1.
    SIGINT/SIGTERM cancel main (its finally blocks and async with exits
    close what it opened): if main catches the cancellation and returns, as
    a server stopped by a signal does, the exit is 0; if it was interrupted
    before finishing, the exit is 130."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)

    async def wrapper() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            print("interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    try:
        asyncio.run(wrapper())
    except Exception as e:  # noqa: BLE001 - every failure exits non-zero
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
