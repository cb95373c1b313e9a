"""The daemon's errors as the exceptions asyncio raises.

Every failed Session operation answers a streammgr.v1.Status: the gRPC
code, the message and details, among them a google.rpc.ErrorInfo (domain
"streammgr") whose reason names the condition, with "errno" in its metadata
when there is an OS error number, and for LIMIT_OVERRUN / LINE_TOO_LONG a
streammgr.v1.LimitOverrunError. A failed unary call carries the same
google.rpc.Status in its trailers (grpc-status-details-bin), which
grpcio-status decodes (translate_rpc_error).

Every exception made here has the attribute ``streammgr``: an ErrorDetails
with the code, reason, metadata and message, for callers that want more
than the exception type.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from .v1 import streammgr_pb2 as pb

__all__ = ["ErrorDetails", "StreammgrError", "from_status", "translate_rpc_error"]

# grpc.StatusCode by number.
_CODES = {c.value[0]: c for c in grpc.StatusCode}


@dataclass
class ErrorDetails:
    """What the daemon said about a failure."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    limit_overrun: pb.LimitOverrunError | None = None
    field_violations: list[tuple[str, str]] = field(default_factory=list)


class StreammgrError(OSError):
    """A daemon error with no closer asyncio equivalent (a quota, the
    memory budget, an unknown handle, ...). An OSError, as asyncio's
    connection failures are."""

    streammgr: ErrorDetails

    def __init__(self, details: ErrorDetails):
        super().__init__(f"{details.code.name} {details.reason}: {details.message}".replace("  ", " "))
        self.streammgr = details


# reason -> (exception class, default errno)
_OS: dict[str, tuple[type[OSError], int | None]] = {
    "CONNECTION_RESET": (ConnectionResetError, _errno.ECONNRESET),
    "CONNECTION_REFUSED": (ConnectionRefusedError, _errno.ECONNREFUSED),
    "CONNECTION_ABORTED": (ConnectionAbortedError, _errno.ECONNABORTED),
    "BROKEN_PIPE": (BrokenPipeError, _errno.EPIPE),
    "NO_SUCH_SOCKET": (FileNotFoundError, _errno.ENOENT),
    "PERMISSION_DENIED": (PermissionError, _errno.EACCES),
    "ADDRESS_IN_USE": (OSError, _errno.EADDRINUSE),
    "UNREACHABLE": (OSError, _errno.EHOSTUNREACH),
    "IO_ERROR": (OSError, None),
    "CONNECT_TIMEOUT": (TimeoutError, _errno.ETIMEDOUT),
    "IO_TIMEOUT": (TimeoutError, _errno.ETIMEDOUT),
    "DESTINATION_DENIED": (PermissionError, _errno.EACCES),
    "BIND_DENIED": (PermissionError, _errno.EACCES),
    "UNAUTHENTICATED": (PermissionError, _errno.EACCES),
    "TOO_MANY_OPEN_FILES": (OSError, _errno.EMFILE),
    # The stream's handle is gone from the daemon: for the program, its
    # connection is lost.
    "STREAM_NOT_FOUND": (ConnectionResetError, None),
    "SHUTTING_DOWN": (ConnectionResetError, None),
    # asyncio: a handshake over ssl_handshake_timeout aborts the connection.
    "HANDSHAKE_TIMEOUT": (ConnectionAbortedError, None),
}
_OTHER: dict[str, type[BaseException]] = {
    "INVALID_ARGUMENT": ValueError,
    "LINE_TOO_LONG": ValueError,  # readline() turns LimitOverrunError into ValueError
    "CONCURRENT_READ": RuntimeError,
    "WRITE_EOF_UNSUPPORTED": NotImplementedError,
    "WRITE_AFTER_EOF": RuntimeError,
    "ACCEPT_TIMEOUT": TimeoutError,
    "DEADLINE_EXCEEDED": TimeoutError,
    "CANCELLED": asyncio.CancelledError,
}


def _details(code: int, message: str, anys: Any) -> ErrorDetails:
    d = ErrorDetails(code=_CODES.get(code, grpc.StatusCode.UNKNOWN), reason="", message=message)
    for a in anys:
        if a.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            a.Unpack(info)
            d.reason = info.reason
            d.metadata = dict(info.metadata)
        elif a.Is(pb.LimitOverrunError.DESCRIPTOR):
            lo = pb.LimitOverrunError()
            a.Unpack(lo)
            d.limit_overrun = lo
        elif a.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            a.Unpack(br)
            d.field_violations = [(v.field, v.description) for v in br.field_violations]
    return d


def details_of(status: pb.Status) -> ErrorDetails:
    return _details(status.code, status.message, status.details)


def make_exception(d: ErrorDetails) -> BaseException:
    """The asyncio exception for a daemon error."""
    reason, message = d.reason, d.message
    err_no: int | None = None
    if "errno" in d.metadata:
        try:
            err_no = int(d.metadata["errno"])
        except ValueError:
            err_no = None
    exc: BaseException
    if reason == "LIMIT_OVERRUN" and d.limit_overrun is not None:
        exc = asyncio.LimitOverrunError(message, d.limit_overrun.consumed)
    elif reason == "TLS_ERROR" or (reason == "IO_ERROR" and "tls: " in message):
        # (The daemon reports a TLS alert from the peer, "remote error:
        # tls: ...", as IO_ERROR.)
        low = message.lower()
        if "certificate" in low and ("verif" in low or "unknown authority" in low or "not valid for" in low
                                     or "expired" in low or "signed by unknown" in low):
            exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
            exc.verify_message = message
            exc.verify_code = 0
        else:
            exc = ssl.SSLError(1, message)
    elif reason == "DNS_ERROR":
        exc = socket.gaierror(err_no if err_no is not None else socket.EAI_NONAME, message)
    elif reason in _OS:
        cls, default = _OS[reason]
        e = err_no if err_no is not None else default
        exc = cls(e, message) if e is not None else cls(message)
    elif reason == "CONNECTION_LOST":
        exc = ConnectionResetError("Connection lost")
    elif reason in _OTHER:
        exc = _OTHER[reason](message)
    elif d.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        exc = TimeoutError(message)
    elif d.code == grpc.StatusCode.UNAUTHENTICATED:
        exc = PermissionError(_errno.EACCES, message)
    elif d.code == grpc.StatusCode.UNAVAILABLE:
        exc = ConnectionResetError(message)
    else:
        exc = StreammgrError(d)
    try:
        exc.streammgr = d  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - every exception type used takes attributes
        pass
    return exc


def from_status(status: pb.Status) -> BaseException:
    """The exception for a failed Session operation."""
    return make_exception(details_of(status))


def from_status_bytes(code: int, message: str, raw: bytes) -> BaseException:
    """The exception for a failed call's trailers (a serialized
    google.rpc.Status, or empty)."""
    anys: Any = ()
    if raw:
        st = status_pb2.Status()
        try:
            st.ParseFromString(raw)
            anys = st.details
        except Exception:  # noqa: BLE001 - a malformed trailer: code and message still count
            anys = ()
    return make_exception(_details(code, message, anys))


def translate_rpc_error(err: grpc.RpcError) -> BaseException:
    """The asyncio exception for a failed unary call (grpc.aio.AioRpcError
    or grpc.RpcError), decoded with grpcio-status."""
    from grpc_status import rpc_status

    code = err.code().value[0]
    message = err.details() or ""
    try:
        st = rpc_status.from_call(err)
    except ValueError:
        st = None
    anys: Any = st.details if st is not None else ()
    return make_exception(_details(code, message, anys))
