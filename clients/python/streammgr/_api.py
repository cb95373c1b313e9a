"""open_connection, open_unix_connection, start_server, start_unix_server
and Server, with asyncio's signatures, through the daemon."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl as _ssl
from typing import Any, Awaitable, Callable, Iterable, Sequence, Union

from . import _address, _tls
from ._session import Session, exception_of, get_session
from ._streams import (DaemonSocket, StreamReader, StreamTransport, StreamWriter, _family, base_extra,
                       fetch_extra, fetch_tls_extra, make_stream, parse_address)
from .v1 import streammgr_pb2 as pb

__all__ = ["open_connection", "open_unix_connection", "start_server", "start_unix_server", "Server",
           "socketpair", "PairSocket", "configure", "current_address"]

_DEFAULT_LIMIT = 2**16
# The daemon buffers up to twice its limit before it stops reading the
# socket; it is given at least asyncio's default so that a small limit
# (which is enforced here) does not cost a round trip per few bytes.
_DAEMON_LIMIT_MIN = 2**16
_DAEMON_LIMIT_MAX = 2**20

ClientConnectedCallback = Callable[[StreamReader, StreamWriter], Union[Awaitable[None], None]]

_installed_address: list[str | None] = [None]


def configure(address: str | None) -> None:
    """Sets the daemon address used when none is passed (install() does)."""
    _installed_address[0] = address


def current_address(address: str | None = None) -> _address.DaemonAddress:
    """The daemon address that a call with this address= argument uses."""
    return _address.resolve_address(address, _installed_address[0])


def _session(address: str | None) -> Session:
    return get_session(current_address(address))


def _port(port: Any) -> int:
    """A port number, or a service name as asyncio takes it ("http")."""
    if isinstance(port, str) and not port.isdigit():
        return socket.getservbyname(port, "tcp")
    return int(port or 0)


def _daemon_limit(limit: int) -> int:
    return min(max(limit, _DAEMON_LIMIT_MIN), _DAEMON_LIMIT_MAX)


def _check_limit(limit: int) -> None:
    if limit <= 0:
        raise ValueError("Limit cannot be <= 0")


_CONNECT_KWDS = {"ssl", "family", "proto", "flags", "sock", "local_addr", "server_hostname",
                 "ssl_handshake_timeout", "ssl_shutdown_timeout", "happy_eyeballs_delay", "interleave",
                 "all_errors"}
_UNIX_CONNECT_KWDS = {"ssl", "sock", "server_hostname", "ssl_handshake_timeout", "ssl_shutdown_timeout"}
_SERVER_KWDS = {"family", "flags", "sock", "backlog", "ssl", "reuse_address", "reuse_port", "keep_alive",
                "ssl_handshake_timeout", "ssl_shutdown_timeout", "start_serving"}
_UNIX_SERVER_KWDS = {"sock", "backlog", "ssl", "ssl_handshake_timeout", "ssl_shutdown_timeout", "start_serving",
                     "cleanup_socket"}


def _check_kwds(func: str, kwds: dict[str, Any], allowed: set[str]) -> None:
    for k in kwds:
        if k not in allowed:
            raise TypeError(f"{func}() got an unexpected keyword argument {k!r}")


class SockNotSupported(ValueError):
    """sock= names a socket of this process, which the daemon cannot take
    over."""


def _sock_error(func: str) -> SockNotSupported:
    return SockNotSupported(
        f"streammgr.{func}(sock=...): the daemon owns the sockets and cannot take over one of this "
        f"process's; pass an address instead, or a socket from streammgr.socketpair()")


def _check_shutdown_timeout(ssl: Any, t: Any) -> None:
    if t is not None:
        if not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if t <= 0:
            raise ValueError(f"ssl_shutdown_timeout should be a positive number, got {t}")


def _unix_path(path: Any) -> str:
    p = os.fsdecode(os.fspath(path))
    if p.startswith("\0"):
        return "@" + p[1:]  # the abstract namespace, as the daemon names it
    return os.path.abspath(p)


async def _finish_open(session: Session, resp: pb.OpenResponse, kind: str, limit: int, ssl: Any,
                       host: str | None) -> tuple[StreamReader, StreamWriter]:
    extra = base_extra("tls" if kind == "tls" else kind, resp.peername, resp.sockname)
    if kind == "tls":
        extra["sslcontext"] = ssl if isinstance(ssl, _ssl.SSLContext) else None
    reader, writer = make_stream(session, resp.stream_id, kind=kind, extra=extra, limit=limit, server_side=False)
    t: StreamTransport = writer.transport  # type: ignore[assignment]
    t._host = host
    if kind == "tls":
        try:
            await fetch_tls_extra(session, resp.stream_id, extra, t, ssl)
        except BaseException:
            t.abort()
            raise
    return reader, writer


async def _open(session: Session, req: pb.OpenRequest, kind: str, limit: int, ssl: Any,
                host: str | None) -> tuple[StreamReader, StreamWriter]:
    fut: asyncio.Future[Any] = session.loop.create_future()

    def done(r: Any) -> None:
        if fut.done():
            return
        if r.WhichOneof("result") == "error":
            fut.set_exception(exception_of(r))
        else:
            fut.set_result(r.open)

    call = session.start("open", req.SerializeToString(), done, retry=False, blocking=True)
    try:
        resp = await asyncio.shield(fut)
    except asyncio.CancelledError:
        # The program gave up: do not leave the connection open in the
        # daemon. The cancel stops a connect in progress, and undoes an
        # open whose answer crossed it; a stream that is answered anyway is
        # aborted.
        session.cancel(call)

        def release(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                session.start("abort", pb.AbortRequest(stream_id=f.result().stream_id).SerializeToString())
            elif not f.cancelled():
                f.exception()
        fut.add_done_callback(release)
        raise
    return await _finish_open(session, resp, kind, limit, ssl, host)


async def open_connection(host: str | None = None, port: int | None = None, *, limit: int = _DEFAULT_LIMIT,
                          address: str | None = None, **kwds: Any) -> tuple[StreamReader, StreamWriter]:
    """asyncio.open_connection(), with the socket owned by the daemon at
    address (see streammgr's docs for the default).

    Keyword arguments are loop.create_connection()'s: ssl (an SSLContext or
    True), server_hostname, ssl_handshake_timeout, local_addr go to the
    daemon; family, proto, flags, happy_eyeballs_delay, interleave and
    all_errors are accepted and left to the daemon, which resolves names
    and tries each address itself; ssl_shutdown_timeout is accepted (the
    daemon's TLS close does not wait); sock= raises SockNotSupported unless
    it is a streammgr.socketpair() socket."""
    _check_kwds("open_connection", kwds, _CONNECT_KWDS)
    _check_limit(limit)
    sock = kwds.get("sock")
    ssl = kwds.get("ssl")
    server_hostname = kwds.get("server_hostname")
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if isinstance(sock, PairSocket):
            if ssl:
                raise ValueError("streammgr: ssl= over a streammgr.socketpair() socket is not supported")
            return await sock._adopt(limit)
        raise _sock_error("open_connection")
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if host is None and port is None:
        raise ValueError("host and port was not specified and no sock specified")
    if ssl and server_hostname is None and not host:
        raise ValueError("You must set server_hostname when using ssl without a host")
    _check_shutdown_timeout(ssl, kwds.get("ssl_shutdown_timeout"))
    if ssl is not None and not isinstance(ssl, (bool, _ssl.SSLContext)):
        raise TypeError(f"ssl argument must be an SSLContext or None, got {ssl!r}")
    tls = _tls.client_options(ssl or None, server_hostname, kwds.get("ssl_handshake_timeout"), host)
    if port is None:
        raise ValueError("port is required")
    req = pb.OpenRequest(tcp=pb.TcpAddress(host=host or "", port=_port(port)), limit=_daemon_limit(limit))
    if tls is not None:
        req.tls.CopyFrom(tls)
    local = kwds.get("local_addr")
    if local is not None:
        lhost, lport = local[0], local[1]
        req.local_addr.CopyFrom(pb.TcpAddress(host=lhost or "", port=int(lport or 0)))
    session = _session(address)
    return await _open(session, req, "tls" if tls is not None else "tcp", limit, ssl, host)


async def open_unix_connection(path: Any = None, *, limit: int = _DEFAULT_LIMIT, address: str | None = None,
                               **kwds: Any) -> tuple[StreamReader, StreamWriter]:
    """asyncio.open_unix_connection() through the daemon (relative paths are
    made absolute here, since the daemon has its own working directory)."""
    _check_kwds("open_unix_connection", kwds, _UNIX_CONNECT_KWDS)
    _check_limit(limit)
    ssl = kwds.get("ssl")
    server_hostname = kwds.get("server_hostname")
    if kwds.get("sock") is not None:
        if path is not None:
            raise ValueError("path and sock can not be specified at the same time")
        if isinstance(kwds["sock"], PairSocket):
            return await kwds["sock"]._adopt(limit)
        raise _sock_error("open_unix_connection")
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if ssl and server_hostname is None:
        raise ValueError("you have to pass server_hostname when using ssl")
    if path is None:
        raise ValueError("no path and sock were specified")
    _check_shutdown_timeout(ssl, kwds.get("ssl_shutdown_timeout"))
    tls = _tls.client_options(ssl or None, server_hostname, kwds.get("ssl_handshake_timeout"), None)
    req = pb.OpenRequest(unix=pb.UnixAddress(path=_unix_path(path)), limit=_daemon_limit(limit))
    if tls is not None:
        req.tls.CopyFrom(tls)
    session = _session(address)
    return await _open(session, req, "tls" if tls is not None else "unix", limit, ssl, None)


# Servers


class Server(asyncio.AbstractServer):
    """asyncio.Server for one or more daemon servers (one per host given
    to start_server). Connections are claimed with pipelined accept
    operations and handed to client_connected_cb as asyncio does: a
    coroutine runs as a task, and an exception it raises (or a plain
    callback raises) goes to the loop's exception handler, the connection
    being closed."""

    _ACCEPT_DEPTH = 2

    def __init__(self, session: Session, cb: ClientConnectedCallback, limit: int, server_ids: list[str],
                 sockets: list[DaemonSocket], firsts: list[DaemonSocket], kind: str, ssl: Any):
        self._session = session
        self._loop = session.loop
        self._cb = cb
        self._limit = limit
        self._server_ids = server_ids
        self._sockets: list[DaemonSocket] | None = sockets
        self._firsts = firsts  # per daemon server, for accepted connections' sockname
        self._kind = kind  # tcp, unix
        self._ssl = ssl
        self._serving = False
        self._serving_forever_fut: asyncio.Future[None] | None = None
        self._accepts: dict[str, list[Any]] = {sid: [] for sid in server_ids}
        self._clients: set[StreamTransport] = set()
        self._active_count = 0
        self._waiters: list[asyncio.Future[None]] | None = []
        self._closing_ops = 0
        self._handshakes: set[asyncio.Task[None]] = set()
        session.servers.add(self)

    def __repr__(self) -> str:
        return f"<streammgr.Server sockets={self.sockets!r}>"

    @property
    def sockets(self) -> tuple[DaemonSocket, ...]:
        if self._sockets is None:
            return ()
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    def _start_serving(self) -> None:
        if self._serving or self._sockets is None:
            return
        self._serving = True
        for sid in self._server_ids:
            self._issue_accepts(sid)

    async def start_serving(self) -> None:
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        if not self._serving:
            await asyncio.gather(*(self._session.request("start_serving", pb.StartServingRequest(server_id=sid))
                                   for sid in self._server_ids))
            self._start_serving()
        await asyncio.sleep(0)

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        await self.start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    def close(self) -> None:
        if self._sockets is None:
            return
        self._sockets = None
        self._serving = False
        for sid in self._server_ids:
            self._closing_ops += 1
            self._session.start("close_server", pb.CloseServerRequest(server_id=sid).SerializeToString(),
                                self._on_closed)
        if self._serving_forever_fut is not None and not self._serving_forever_fut.done():
            self._serving_forever_fut.cancel()
            self._serving_forever_fut = None

    def _on_closed(self, resp: Any) -> None:
        self._closing_ops -= 1
        self._maybe_wakeup()

    def close_clients(self) -> None:
        for t in self._clients.copy():
            t.close()

    def abort_clients(self) -> None:
        for t in self._clients.copy():
            t.abort()

    async def wait_closed(self) -> None:
        """Waits until close() has completed and every connection this
        server accepted is closed (Python 3.12's semantics)."""
        if self._waiters is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _maybe_wakeup(self) -> None:
        if self._sockets is None and self._closing_ops == 0 and self._active_count == 0 and \
                self._waiters is not None:
            waiters, self._waiters = self._waiters, None
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _detach(self, transport: StreamTransport) -> None:
        self._clients.discard(transport)
        self._active_count -= 1
        self._maybe_wakeup()

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()

    # accepting

    def _issue_accepts(self, sid: str) -> None:
        pending = self._accepts[sid]
        while self._serving and len(pending) < self._ACCEPT_DEPTH:
            holder: list[Any] = []
            call = self._session.start(
                "accept", pb.AcceptRequest(server_id=sid).SerializeToString(),
                functools.partial(self._on_accept, sid, holder), blocking=True)
            holder.append(call)
            pending.append(call)

    def _on_accept(self, sid: str, holder: list[Any], resp: Any) -> None:
        try:
            self._accepts[sid].remove(holder[0])
        except (ValueError, IndexError):
            pass
        kind = resp.WhichOneof("result")
        if kind != "accept":
            if self._serving:
                exc = exception_of(resp)
                if isinstance(exc, asyncio.CancelledError):
                    self._issue_accepts(sid)  # made room for others: ask again
                else:
                    self._loop.call_exception_handler({
                        "message": f"streammgr: accept on {sid} failed", "exception": exc})
                    self._loop.call_later(0.1, self._issue_accepts, sid)
            return
        a = resp.accept
        if self._sockets is None:
            # Accepted as the server closed: asyncio would never see it.
            self._session.start("abort", pb.AbortRequest(stream_id=a.stream_id).SerializeToString())
            return
        self._issue_accepts(sid)
        idx = self._server_ids.index(sid)
        sock = self._firsts[idx] if idx < len(self._firsts) else None
        task = self._loop.create_task(self._connection(a, sock))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _connection(self, a: pb.AcceptResponse, sock: DaemonSocket | None) -> None:
        session = self._session
        base_kind = self._kind
        sockname = sock.getsockname() if sock is not None else ""
        wildcard = isinstance(sockname, tuple) and sockname[0] in ("0.0.0.0", "::", "")
        kind = "tls" if self._ssl is not None else base_kind
        try:
            if wildcard:
                info = await fetch_extra(session, a.stream_id, ("sockname",))
                sockname = info["sockname"]
            extra = base_extra(base_kind, a.peername, "")
            extra["sockname"] = sockname
            extra["socket"] = DaemonSocket(_family(extra["peername"] or sockname, base_kind), sockname,
                                           extra["peername"])
            if kind == "tls":
                extra["sslcontext"] = self._ssl
        except Exception:  # noqa: BLE001 - the connection went away before it was handed over
            session.start("abort", pb.AbortRequest(stream_id=a.stream_id).SerializeToString())
            return
        reader, writer = make_stream(session, a.stream_id, kind=kind, extra=extra, limit=self._limit,
                                     server_side=True, client_connected_cb=self._cb)
        transport: StreamTransport = writer.transport  # type: ignore[assignment]
        transport._server = self
        self._clients.add(transport)
        self._active_count += 1
        if kind == "tls":
            try:
                await fetch_tls_extra(session, a.stream_id, extra, transport, self._ssl)
            except Exception:  # noqa: BLE001
                transport.abort()
                return
        protocol = writer._protocol  # type: ignore[attr-defined]
        try:
            res = self._cb(reader, writer)
        except Exception as exc:  # noqa: BLE001 - as asyncio: to the loop's handler
            self._loop.call_exception_handler({
                "message": "Unhandled exception in client_connected_cb", "exception": exc,
                "transport": transport})
            transport.close()
            return
        if asyncio.iscoroutine(res):
            def callback(task: asyncio.Task[Any]) -> None:
                if task.cancelled():
                    transport.close()
                    return
                exc = task.exception()
                if exc is not None:
                    self._loop.call_exception_handler({
                        "message": "Unhandled exception in client_connected_cb", "exception": exc,
                        "transport": transport})
                    transport.close()

            task = self._loop.create_task(res)
            protocol._task = task
            task.add_done_callback(callback)


def _server_sockets(addrs: Iterable[str], kind: str) -> list[DaemonSocket]:
    out = []
    for a in addrs:
        name = parse_address(a, kind)
        out.append(DaemonSocket(_family(name, kind), name))
    return out


async def _start(session: Session, cb: ClientConnectedCallback, reqs: list[pb.StartServerRequest], kind: str,
                 limit: int, ssl: Any, start_serving: bool) -> Server:
    futs = [session.request("start_server", r, retry=False, blocking=True) for r in reqs]
    results = await asyncio.gather(*futs, return_exceptions=True)
    ids = [r.server_id for r in results if isinstance(r, pb.StartServerResponse)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for sid in ids:
            session.start("close_server", pb.CloseServerRequest(server_id=sid).SerializeToString())
        raise errors[0]
    sockets: list[DaemonSocket] = []
    for r in results:
        sockets += _server_sockets(r.sockets, kind)  # type: ignore[union-attr]
    # One daemon server can bind several sockets (every interface): map
    # each server to its first socket for accepted connections' sockname.
    firsts = _first_sockets(results, kind)  # type: ignore[arg-type]
    srv = Server(session, cb, limit, ids, sockets, firsts, kind, ssl)
    if start_serving:
        srv._start_serving()
        await asyncio.sleep(0)
    return srv


def _first_sockets(results: list[pb.StartServerResponse], kind: str) -> list[DaemonSocket]:
    out = []
    for r in results:
        socks = _server_sockets(r.sockets, kind)
        if len(socks) > 1:
            # Several sockets (every interface): sockname is asked per connection.
            out.append(DaemonSocket(socks[0].family, ("0.0.0.0", socks[0].getsockname()[1])
                                    if kind == "tcp" else socks[0].getsockname()))
        elif socks:
            out.append(socks[0])
    return out


async def start_server(client_connected_cb: ClientConnectedCallback, host: str | Sequence[str] | None = None,
                       port: int | None = None, *, limit: int = _DEFAULT_LIMIT, address: str | None = None,
                       **kwds: Any) -> Server:
    """asyncio.start_server() with the listening sockets owned by the
    daemon. host may be a sequence (a daemon server for each); None or ""
    binds every interface (the daemon's policy must allow it). backlog,
    ssl, reuse_port, ssl_handshake_timeout and start_serving go to the
    daemon; family, flags, reuse_address (the daemon sets SO_REUSEADDR, as
    asyncio does on Unix), keep_alive and ssl_shutdown_timeout are
    accepted; sock= raises SockNotSupported."""
    _check_kwds("start_server", kwds, _SERVER_KWDS)
    _check_limit(limit)
    if kwds.get("sock") is not None:
        raise _sock_error("start_server")
    ssl = kwds.get("ssl")
    _check_shutdown_timeout(ssl, kwds.get("ssl_shutdown_timeout"))
    tls = _tls.server_options(ssl, kwds.get("ssl_handshake_timeout"))
    backlog = int(kwds.get("backlog", 100))
    reuse_port = bool(kwds.get("reuse_port"))
    start_serving = kwds.get("start_serving", True)
    if isinstance(host, (str, bytes)) or host is None:
        hosts = [host.decode() if isinstance(host, bytes) else (host or "")]
    else:
        hosts = [h or "" for h in host]
    reqs = []
    for h in hosts:
        r = pb.StartServerRequest(tcp=pb.TcpAddress(host=h, port=_port(port)), limit=_daemon_limit(limit),
                                  backlog=backlog, reuse_port=reuse_port, start_serving=bool(start_serving))
        if tls is not None:
            r.tls.CopyFrom(tls)
        reqs.append(r)
    return await _start(_session(address), client_connected_cb, reqs, "tcp", limit, ssl, bool(start_serving))


async def start_unix_server(client_connected_cb: ClientConnectedCallback, path: Any = None, *,
                            limit: int = _DEFAULT_LIMIT, address: str | None = None, **kwds: Any) -> Server:
    """asyncio.start_unix_server() through the daemon. The daemon removes a
    stale socket file first and the file when the server closes
    (cleanup_socket is accepted; the daemon always cleans up)."""
    _check_kwds("start_unix_server", kwds, _UNIX_SERVER_KWDS)
    _check_limit(limit)
    if kwds.get("sock") is not None:
        raise _sock_error("start_unix_server")
    if path is None:
        raise ValueError("path was not specified, and no sock specified")
    ssl = kwds.get("ssl")
    _check_shutdown_timeout(ssl, kwds.get("ssl_shutdown_timeout"))
    tls = _tls.server_options(ssl, kwds.get("ssl_handshake_timeout"))
    start_serving = kwds.get("start_serving", True)
    r = pb.StartServerRequest(unix=pb.UnixAddress(path=_unix_path(path)), limit=_daemon_limit(limit),
                              backlog=int(kwds.get("backlog", 100)), start_serving=bool(start_serving))
    if tls is not None:
        r.tls.CopyFrom(tls)
    return await _start(_session(address), client_connected_cb, [r], "unix", limit, ssl, bool(start_serving))


# socketpair


class PairSocket:
    """One end of streammgr.socketpair(): a connected pair of streams made
    by the daemon (OpenPair). Pass it to open_connection(sock=...) or
    open_unix_connection(sock=...) as asyncio's socketpair example does;
    send(), sendall(), shutdown(SHUT_WR) and close() work on it directly
    without blocking (they queue the operation, as StreamWriter.write()
    does). recv() only returns bytes already here (it raises
    BlockingIOError otherwise, as a non-blocking socket does); the event
    loop's sock_*() methods need a real descriptor and do not work."""

    family = socket.AF_UNIX
    type = socket.SOCK_STREAM
    proto = 0

    def __init__(self, pair: "_Pair", index: int):
        self._pair = pair
        self._index = index
        self._streams: tuple[StreamReader, StreamWriter] | None = None
        self._pending: list[tuple[str, Any]] = []
        self._closed = False
        self._adopted = False

    def __repr__(self) -> str:
        return f"<streammgr.PairSocket {self._index}{' closed' if self._closed else ''}>"

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass

    def getblocking(self) -> bool:
        return False

    def gettimeout(self) -> float:
        return 0.0

    def getsockname(self) -> str:
        return ""

    def getpeername(self) -> str:
        return ""

    async def _get_streams(self, limit: int = _DEFAULT_LIMIT) -> tuple[StreamReader, StreamWriter]:
        if self._streams is None:
            ids = await asyncio.shield(self._pair.ids)
            if self._streams is None:
                extra = base_extra("pair", "", "")
                self._streams = make_stream(self._pair.session, ids[self._index], kind="pair", extra=extra,
                                            limit=limit, server_side=False)
                pending, self._pending = self._pending, []
                for op, arg in pending:
                    self._apply(op, arg)
        return self._streams

    async def _adopt(self, limit: int) -> tuple[StreamReader, StreamWriter]:
        if self._closed:
            raise OSError(9, "Bad file descriptor")
        self._adopted = True
        return await self._get_streams(limit)

    def _apply(self, op: str, arg: Any) -> None:
        assert self._streams is not None
        w = self._streams[1]
        if op == "send":
            w.write(arg)
        elif op == "eof":
            w.write_eof()
        elif op == "close":
            w.close()

    def _do(self, op: str, arg: Any = None) -> None:
        if self._streams is not None:
            self._apply(op, arg)
            return
        self._pending.append((op, arg))
        if len(self._pending) == 1:
            task = self._pair.session.loop.create_task(self._get_streams())
            self._pair.tasks.add(task)
            task.add_done_callback(self._pair.tasks.discard)

    def send(self, data: Any, flags: int = 0) -> int:
        if self._closed:
            raise OSError(9, "Bad file descriptor")
        data = bytes(data)
        self._do("send", data)
        return len(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.send(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._closed:
            raise OSError(9, "Bad file descriptor")
        if self._streams is None:
            self._do("noop")
            raise BlockingIOError(11, "Resource temporarily unavailable")
        reader = self._streams[0]
        if reader._buffer:
            data = bytes(reader._buffer[:bufsize])
            del reader._buffer[:bufsize]
            reader._maybe_resume_transport()
            return data
        if reader.at_eof():
            return b""
        raise BlockingIOError(11, "Resource temporarily unavailable")

    def shutdown(self, how: int) -> None:
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self._do("eof")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._adopted:
            return  # the transport owns it now
        self._do("close")

    def detach(self) -> int:
        return -1

    def __enter__(self) -> "PairSocket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Pair:
    def __init__(self, session: Session, limit: int):
        self.session = session
        self.tasks: set[asyncio.Task[Any]] = set()
        fut = session.request("open_pair", pb.OpenPairRequest(limit=_daemon_limit(limit)), retry=False,
                              blocking=True)
        self.ids: asyncio.Future[tuple[str, str]] = session.loop.create_future()

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                self.ids.cancel()
            elif f.exception() is not None:
                self.ids.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                r = f.result()
                self.ids.set_result((r.first_stream_id, r.second_stream_id))

        fut.add_done_callback(done)


def socketpair(family: Any = None, type: Any = socket.SOCK_STREAM, proto: int = 0, *,
               address: str | None = None) -> tuple[PairSocket, PairSocket]:
    """A connected pair owned by the daemon, in place of socket.socketpair():
    what one end sends the other receives. Call it with the event loop
    running; the daemon makes the pair in the background."""
    if type != socket.SOCK_STREAM:
        raise ValueError("streammgr.socketpair(): only SOCK_STREAM pairs")
    pair = _Pair(_session(address), _DEFAULT_LIMIT)
    return PairSocket(pair, 0), PairSocket(pair, 1)
