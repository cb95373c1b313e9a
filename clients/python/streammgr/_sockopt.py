"""Socket options of daemon-owned sockets: setsockopt() and getsockopt()
of the object get_extra_info('socket') gives (DaemonSocket).

The daemon sets and reads options of a stream's socket (the socket beneath
TLS) by name: TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL,
TCP_KEEPCNT, SO_RCVBUF, SO_SNDBUF and SO_LINGER (the Session operations
set_sock_opt / get_sock_opt, and the unary SetSockOpt / GetSockOpt).
Python's setsockopt() and getsockopt() are synchronous; the event loop
cannot wait for an answer inside them. So:

- On a TCP stream (and TLS over TCP), TCP_NODELAY, SO_KEEPALIVE,
  TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and SO_LINGER are set without
  waiting: the arguments are checked here as the kernel checks them (the
  same TypeError / OSError(EINVAL) at once), and a Session set_sock_opt
  goes out in the stream's write lane, so it takes effect before every
  write() made after it (TCP_NODELAY before the next request). The value
  is known exactly (a flag reads back as 0 or 1, the others as set), so
  getsockopt() answers it at once; the daemon's answer confirms it.
  Setting an option costs no round trip and no wait: redis-py sets five on
  every new connection.
- Everything else is a synchronous call to the daemon (unary SetSockOpt /
  GetSockOpt over a blocking gRPC channel, at most 5 s), as a real
  getsockopt() is a system call: getsockopt() of an option nobody set yet
  (cached afterwards, except SO_RCVBUF / SO_SNDBUF, which the kernel's
  autotuning changes), SO_RCVBUF / SO_SNDBUF (Linux reports twice what was
  set, clamped: only the kernel knows), and every option of a Unix socket
  (pairs included), whose errors are the daemon's: a TCP option there is
  OSError(EOPNOTSUPP), as the kernel answers.
- SO_TYPE, SO_DOMAIN, SO_PROTOCOL and SO_ACCEPTCONN are answered here. Any
  other option, at any level, raises OSError(ENOPROTOOPT), as a socket
  that does not have it does; once the connection is lost (closed),
  OSError(EBADF), as asyncio's socket after close.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from typing import TYPE_CHECKING, Any

from .v1 import streammgr_pb2 as pb

if TYPE_CHECKING:
    from ._streams import StreamTransport

__all__ = ["option_name", "SockOpts"]

_TCP = socket.IPPROTO_TCP
_SOL = socket.SOL_SOCKET

# (level, optname) -> the daemon's name.
OPTIONS: dict[tuple[int, int], str] = {
    (_TCP, socket.TCP_NODELAY): "TCP_NODELAY",
    (_SOL, socket.SO_KEEPALIVE): "SO_KEEPALIVE",
    (_TCP, socket.TCP_KEEPIDLE): "TCP_KEEPIDLE",
    (_TCP, socket.TCP_KEEPINTVL): "TCP_KEEPINTVL",
    (_TCP, socket.TCP_KEEPCNT): "TCP_KEEPCNT",
    (_SOL, socket.SO_RCVBUF): "SO_RCVBUF",
    (_SOL, socket.SO_SNDBUF): "SO_SNDBUF",
    (_SOL, socket.SO_LINGER): "SO_LINGER",
}
# Set without waiting on TCP sockets: their value reads back exactly.
_ASYNC = frozenset({"TCP_NODELAY", "SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "SO_LINGER"})
# Never cached: the kernel changes them (receive buffer autotuning).
_VOLATILE = frozenset({"SO_RCVBUF", "SO_SNDBUF"})
_FLAGS = frozenset({"TCP_NODELAY", "SO_KEEPALIVE"})
# Linux's ranges (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT):
# outside them setsockopt fails with EINVAL.
_RANGES = {"TCP_KEEPIDLE": (1, 32767), "TCP_KEEPINTVL": (1, 32767), "TCP_KEEPCNT": (1, 127)}
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
SYNC_TIMEOUT = 5.0


def option_name(level: int, optname: int) -> str | None:
    """The daemon's name of a (level, optname), None for one it lacks."""
    return OPTIONS.get((level, optname))


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _as_index(v: Any) -> int:
    """level and optname as the socket module takes them (TypeError
    otherwise)."""
    if isinstance(v, int):
        return int(v)
    try:
        return int(v.__index__())
    except AttributeError:
        raise TypeError(f"'{type(v).__name__}' object cannot be interpreted as an integer") from None


def decode_value(name: str, args: tuple[Any, ...]) -> int:
    """setsockopt(level, optname, value[, optlen])'s value as the daemon
    takes it (SO_LINGER: seconds, or -1 for off), checked as Python's
    socket module and Linux check it."""
    if len(args) == 4:
        if args[2] is not None:
            raise TypeError("setsockopt() takes exactly 3 arguments (4 given)")
        _as_index(args[3])
        raise _oserror(errno.EFAULT)  # optval NULL: the kernel cannot read it
    if len(args) != 3:
        raise TypeError(f"setsockopt() takes exactly 3 arguments ({len(args)} given)")
    value = args[2]
    raw: bytes | None = None
    if isinstance(value, int) and _INT_MIN <= value <= _INT_MAX:
        n = int(value)
        size = 4
    else:
        try:
            raw = bytes(memoryview(value))
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'") from None
        size = len(raw)
        n = 0
    if name == "SO_LINGER":
        if raw is None or size < 8:
            raise _oserror(errno.EINVAL)  # needs a struct linger
        onoff, linger = struct.unpack("ii", raw[:8])
        if not onoff:
            return -1
        if linger < 0:
            raise _oserror(errno.EINVAL)  # the daemon takes seconds >= 0
        return int(linger)
    if raw is not None:
        if size < 4:
            raise _oserror(errno.EINVAL)
        n = int(struct.unpack("i", raw[:4])[0])
    if name in _FLAGS:
        return 1 if n else 0
    rng = _RANGES.get(name)
    if rng is not None and not rng[0] <= n <= rng[1]:
        raise _oserror(errno.EINVAL)
    if name in _VOLATILE and n < 0:
        return _INT_MAX  # the kernel takes it as unsigned and clamps it to its maximum
    return n


def encode_value(name: str, value: int, buflen: int | None) -> Any:
    """The daemon's value as getsockopt(level, optname[, buflen]) returns it."""
    if name == "SO_LINGER":
        onoff, linger = (0, 0) if value < 0 else (1, value)
        if not buflen:
            return onoff
        return struct.pack("ii", onoff, linger)[:buflen]
    if not buflen:
        return value
    return struct.pack("i", value)[:buflen]


_channels: dict[str, Any] = {}
_channels_lock = threading.Lock()


def _sync_stub(address: Any) -> Any:
    import grpc

    from . import _address
    from .v1 import streammgr_pb2_grpc as pb_grpc

    key = address.text + "\0" + address.kind + address.path + address.host + str(address.port)
    with _channels_lock:
        ch = _channels.get(key)
        if ch is None:
            if address.kind == "tls":
                from ._session import _tls_files

                ch = grpc.secure_channel(address.grpc_target(), grpc.ssl_channel_credentials(*_tls_files()))
            else:
                ch = grpc.insecure_channel(address.grpc_target())
            _channels[key] = ch
    return pb_grpc.StreamServiceStub(ch), tuple(_address.metadata()) or None  # type: ignore[no-untyped-call]


def _sync_call(address: Any, method: str, req: Any) -> Any:
    """A blocking unary call (the event loop waits, as for a system call)."""
    import grpc

    from ._errors import translate_rpc_error

    stub, md = _sync_stub(address)
    try:
        return getattr(stub, method)(req, metadata=md, timeout=SYNC_TIMEOUT)
    except grpc.RpcError as e:
        exc = translate_rpc_error(e)
        d = getattr(exc, "streammgr", None)
        if d is not None and d.reason == "SOCKET_OPTION":
            code = int(d.metadata.get("errno", 0) or 0) or (
                errno.EOPNOTSUPP if d.code == grpc.StatusCode.FAILED_PRECONDITION else errno.EINVAL)
            raise _oserror(code) from None
        if d is not None and d.reason in ("STREAM_NOT_FOUND", "CONNECTION_LOST", "CLOSED", "STREAM_CLOSED") \
                or isinstance(exc, ConnectionResetError):
            raise _oserror(errno.EBADF) from None
        if d is not None and d.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise OSError(errno.ETIMEDOUT, f"streammgr: no answer from streammgrd in {SYNC_TIMEOUT:g} s") from None
        raise exc from None


class SockOpts:
    """The options of one stream's socket, as this process knows them."""

    def __init__(self, transport: "StreamTransport", family: int):
        self._transport = transport
        self._tcp = family in (socket.AF_INET, socket.AF_INET6)
        self._family = family
        self._known: dict[str, int] = {}  # confirmed (or set and certain)
        self._pending: dict[str, int] = {}  # sets not yet answered, by name

    def _check_open(self) -> None:
        t = self._transport
        if t._conn_lost or t._lost_called:
            raise _oserror(errno.EBADF)

    def setsockopt(self, *args: Any) -> None:
        if len(args) < 3:
            raise TypeError(f"setsockopt() takes exactly 3 arguments ({len(args)} given)")
        level, optname = _as_index(args[0]), _as_index(args[1])
        name = option_name(level, optname)
        if name is None:
            if len(args) == 3 and not isinstance(args[2], int):
                try:
                    memoryview(args[2])
                except TypeError:
                    raise TypeError(f"a bytes-like object is required, not '{type(args[2]).__name__}'") from None
            self._check_open()
            raise _oserror(errno.ENOPROTOOPT)
        value = decode_value(name, args)
        self._check_open()
        t = self._transport
        if self._tcp and name in _ASYNC:
            self._known[name] = value
            self._pending[name] = self._pending.get(name, 0) + 1
            t._send_sockopt(name, value, self._on_set)
            return
        resp = _sync_call(t._session.address, "SetSockOpt",
                          pb.SetSockOptRequest(stream_id=t.stream_id, name=name, value=value))
        if name not in _VOLATILE:
            self._known[name] = int(resp.value)

    def _on_set(self, name: str, resp: Any) -> None:
        n = self._pending.get(name, 0) - 1
        if n > 0:
            self._pending[name] = n
        else:
            self._pending.pop(name, None)
        kind = resp.WhichOneof("result")
        if kind == "set_sock_opt":
            if n <= 0:
                self._known[name] = int(resp.set_sock_opt.value)
        else:
            # Not applied (the stream is gone, as a rule): nothing is known.
            self._known.pop(name, None)

    def getsockopt(self, level: Any, optname: Any, buflen: Any = None) -> Any:
        level, optname = _as_index(level), _as_index(optname)
        if buflen is not None:
            buflen = _as_index(buflen)
            if buflen < 0 or buflen > 1024:
                raise OSError("getsockopt buflen out of range")
        self._check_open()
        name = option_name(level, optname)
        if name is None:
            local = self._local(level, optname)
            if local is None:
                raise _oserror(errno.ENOPROTOOPT)
            return struct.pack("i", local)[:buflen] if buflen else local
        if name in self._known and (name not in _VOLATILE):
            return encode_value(name, self._known[name], buflen)
        t = self._transport
        resp = _sync_call(t._session.address, "GetSockOpt", pb.GetSockOptRequest(stream_id=t.stream_id, name=name))
        value = int(resp.value)
        if name not in _VOLATILE and name not in self._pending:
            self._known[name] = value
        return encode_value(name, value, buflen)

    def _local(self, level: int, optname: int) -> int | None:
        if level != _SOL:
            return None
        if optname == socket.SO_TYPE:
            return int(socket.SOCK_STREAM)
        if optname == getattr(socket, "SO_DOMAIN", -1):
            return int(self._family)
        if optname == getattr(socket, "SO_PROTOCOL", -1):
            return int(socket.IPPROTO_TCP) if self._tcp else 0
        if optname == getattr(socket, "SO_ACCEPTCONN", -1):
            return 0
        return None
