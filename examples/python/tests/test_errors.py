"""translate_error without a daemon: hand-built google.rpc.Status trailers."""

import asyncio
import ssl

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import streammgr_client as sm


class FakeRpcError(grpc.RpcError):
    """Just enough of grpc.aio.AioRpcError for rpc_status.from_call."""

    def __init__(self, code, message, *details):
        self._code, self._message = code, message
        st = status_pb2.Status(code=code.value[0], message=message)
        for d in details:
            a = any_pb2.Any()
            a.Pack(d)
            st.details.append(a)
        self._trailers = (("grpc-status-details-bin", st.SerializeToString()),) if details else ()

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._trailers


def info(reason, **metadata):
    return error_details_pb2.ErrorInfo(reason=reason, domain="streammgr", metadata=metadata)


def test_limit_overrun_is_asyncio_limit_overrun_error():
    msg = "Separator is not found, and chunk exceed the limit"
    err = FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, msg, info("LIMIT_OVERRUN"), sm.pb.LimitOverrunError(consumed=42)
    )
    exc = sm.translate_error(err)
    assert isinstance(exc, asyncio.LimitOverrunError)
    assert exc.consumed == 42
    assert exc.args[0] == msg
    assert exc.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert exc.reason == "LIMIT_OVERRUN"
    assert exc.rpc_error is err


def test_line_too_long_is_value_error():
    err = FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "too long", info("LINE_TOO_LONG"), sm.pb.LimitOverrunError(consumed=3)
    )
    assert isinstance(sm.translate_error(err), ValueError)


@pytest.mark.parametrize(
    "reason,cls",
    [
        ("CONNECTION_RESET", ConnectionResetError),
        ("CONNECTION_REFUSED", ConnectionRefusedError),
        ("BROKEN_PIPE", BrokenPipeError),
        ("NO_SUCH_SOCKET", FileNotFoundError),
    ],
)
def test_os_errors_keep_errno(reason, cls):
    err = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "boom", info(reason, errno="104"))
    exc = sm.translate_error(err)
    assert type(exc) is cls
    assert exc.errno == 104
    assert exc.strerror == "boom"


@pytest.mark.parametrize(
    "reason,message,cls",
    [
        ("CONNECTION_LOST", "Connection lost", ConnectionResetError),
        ("TLS_ERROR", "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unknown authority", ssl.SSLCertVerificationError),
        ("TLS_ERROR", "handshake failure", ssl.SSLError),
        ("IO_TIMEOUT", "read timed out", TimeoutError),
        ("CONNECT_TIMEOUT", "connect timed out", TimeoutError),
        ("HANDSHAKE_TIMEOUT", "handshake timed out", TimeoutError),
    ],
)
def test_asyncio_exception_classes(reason, message, cls):
    exc = sm.translate_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, message, info(reason)))
    assert type(exc) is cls
    assert exc.grpc_code == grpc.StatusCode.UNAVAILABLE
    assert exc.reason == reason


def test_unknown_reason_and_no_details_are_streammgr_errors():
    exc = sm.translate_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "unknown stream id", info("STREAM_NOT_FOUND")))
    assert isinstance(exc, sm.StreammgrError)
    assert exc.reason == "STREAM_NOT_FOUND"
    assert str(exc) == "NOT_FOUND STREAM_NOT_FOUND: unknown stream id"
    bare = sm.translate_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no daemon"))
    assert isinstance(bare, sm.StreammgrError)
    assert bare.reason == ""


@pytest.mark.parametrize(
    "given,want",
    [
        ("unix:/tmp/x.sock", "unix:/tmp/x.sock"),
        ("unix:///tmp/x.sock", "unix:/tmp/x.sock"),
        ("unix:@abstract", "unix-abstract:abstract"),
        ("127.0.0.1:7000", "127.0.0.1:7000"),
    ],
)
def test_daemon_target(given, want):
    assert sm.daemon_target(given) == want


def test_line_too_long_carries_next_offset_and_metadata():
    err = FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too long",
        info("LINE_TOO_LONG"),
        sm.pb.LimitOverrunError(consumed=5, next_offset=14),
    )
    exc = sm.translate_error(err)
    assert exc.next_offset == 14
    behind = sm.translate_error(
        FakeRpcError(grpc.StatusCode.OUT_OF_RANGE, "offset 0 is behind", info("OFFSET_BEHIND", earliest_offset="3"))
    )
    assert isinstance(behind, sm.StreammgrError)
    assert behind.metadata == {"earliest_offset": "3"}
    assert not hasattr(behind, "next_offset")


def test_the_calls_own_deadline_is_timeout_error():
    assert isinstance(sm.translate_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")), TimeoutError)
    exc = sm.translate_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "ctx", info("DEADLINE_EXCEEDED")))
    assert isinstance(exc, TimeoutError)


@pytest.mark.parametrize(
    "code,reason,timed,want",
    [
        (grpc.StatusCode.UNAVAILABLE, None, False, True),  # the transport
        (grpc.StatusCode.UNAVAILABLE, "CONNECTION_RESET", True, False),  # the daemon's own
        (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", True, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, None, True, True),  # the attempt timeout
        (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", True, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, None, False, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "IO_TIMEOUT", True, False),
        (grpc.StatusCode.CANCELLED, None, True, True),
        (grpc.StatusCode.CANCELLED, None, False, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "WRITE_BUFFER_FULL", True, False),
        (grpc.StatusCode.OUT_OF_RANGE, "OFFSET_AHEAD", True, False),
        (grpc.StatusCode.ABORTED, "READ_SUPERSEDED", False, True),  # by a late copy of an attempt
        (grpc.StatusCode.FAILED_PRECONDITION, "CONCURRENT_READ", True, False),
    ],
)
def test_what_is_retried(code, reason, timed, want):
    err = FakeRpcError(code, "x", info(reason)) if reason else FakeRpcError(code, "x")
    assert sm._retryable(err, timed) is want
