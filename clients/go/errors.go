package streammgr

import (
	"context"
	"errors"
	"strconv"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorDomain is the google.rpc.ErrorInfo domain of the daemon's errors.
const errorDomain = "streammgr"

// Reason names the condition of a daemon error, as the reason of its
// google.rpc.ErrorInfo ("CONNECTION_REFUSED", ...). Every Reason is an error
// that errors.Is matches against an *Error with that reason, so the Err*
// constants below are the package's sentinel errors.
type Reason string

// Error returns the reason's name.
func (r Reason) Error() string { return string(r) }

// The daemon's error reasons, one sentinel each; see the Errors section of
// the daemon's README for the gRPC code and the details of each.
const (
	// ErrStreamNotFound: an unknown or released stream id, or another
	// identity's.
	ErrStreamNotFound Reason = "STREAM_NOT_FOUND"
	// ErrServerNotFound: an unknown or closed server id, or another
	// identity's.
	ErrServerNotFound Reason = "SERVER_NOT_FOUND"
	// ErrInvalidArgument: a malformed request.
	ErrInvalidArgument Reason = "INVALID_ARGUMENT"
	// ErrLimitOverrun: more than the stream's limit before a separator.
	ErrLimitOverrun Reason = "LIMIT_OVERRUN"
	// ErrLineTooLong: a line over the stream's limit (dropped).
	ErrLineTooLong Reason = "LINE_TOO_LONG"
	// ErrConcurrentRead: a second read while one is waiting.
	ErrConcurrentRead Reason = "CONCURRENT_READ"
	// ErrWriteAfterEOF: a write after the write side was half-closed.
	ErrWriteAfterEOF Reason = "WRITE_AFTER_EOF"
	// ErrStreamClosed: a write after Close or Abort.
	ErrStreamClosed Reason = "STREAM_CLOSED"
	// ErrWriteEOFUnsupported: a half-close of a TLS stream.
	ErrWriteEOFUnsupported Reason = "WRITE_EOF_UNSUPPORTED"
	// ErrWriteBufferFull: a write past the stream's unsent-bytes cap.
	ErrWriteBufferFull Reason = "WRITE_BUFFER_FULL"
	// ErrResultTooLarge: a read result too large for one message.
	ErrResultTooLarge Reason = "RESULT_TOO_LARGE"
	// ErrTooManyStreams: the daemon holds its most streams.
	ErrTooManyStreams Reason = "TOO_MANY_STREAMS"
	// ErrTooManyServers: the daemon holds its most servers.
	ErrTooManyServers Reason = "TOO_MANY_SERVERS"
	// ErrConnectionLost: the connection is gone.
	ErrConnectionLost Reason = "CONNECTION_LOST"
	// ErrConnectionReset: the peer reset the connection.
	ErrConnectionReset Reason = "CONNECTION_RESET"
	// ErrConnectionRefused: nothing listens at the address.
	ErrConnectionRefused Reason = "CONNECTION_REFUSED"
	// ErrConnectionAborted: the connection was aborted.
	ErrConnectionAborted Reason = "CONNECTION_ABORTED"
	// ErrBrokenPipe: a write to a connection the peer closed.
	ErrBrokenPipe Reason = "BROKEN_PIPE"
	// ErrUnreachable: no route to the host or network.
	ErrUnreachable Reason = "UNREACHABLE"
	// ErrNoSuchSocket: no Unix socket at the path.
	ErrNoSuchSocket Reason = "NO_SUCH_SOCKET"
	// ErrAddressInUse: the address to listen on is taken.
	ErrAddressInUse Reason = "ADDRESS_IN_USE"
	// ErrPermissionDenied: the operating system refused, or an abstract
	// socket name without the daemon's --allow-abstract.
	ErrPermissionDenied Reason = "PERMISSION_DENIED"
	// ErrDNS: the host name did not resolve.
	ErrDNS Reason = "DNS_ERROR"
	// ErrConnectTimeout: the connect timeout passed.
	ErrConnectTimeout Reason = "CONNECT_TIMEOUT"
	// ErrIOTimeout: a socket timeout.
	ErrIOTimeout Reason = "IO_TIMEOUT"
	// ErrHandshakeTimeout: the TLS handshake timeout passed.
	ErrHandshakeTimeout Reason = "HANDSHAKE_TIMEOUT"
	// ErrTLS: the TLS handshake or a TLS record failed.
	ErrTLS Reason = "TLS_ERROR"
	// ErrIO: another input/output error.
	ErrIO Reason = "IO_ERROR"
	// ErrServerClosed: the server closed.
	ErrServerClosed Reason = "SERVER_CLOSED"
	// ErrShuttingDown: the daemon is shutting down.
	ErrShuttingDown Reason = "SHUTTING_DOWN"
	// ErrAcceptTimeout: no connection came before the accept timeout.
	ErrAcceptTimeout Reason = "ACCEPT_TIMEOUT"
	// ErrCancelled: the call was cancelled. errors.Is also matches
	// context.Canceled.
	ErrCancelled Reason = "CANCELLED"
	// ErrDeadlineExceeded: the call's deadline passed. errors.Is also
	// matches context.DeadlineExceeded.
	ErrDeadlineExceeded Reason = "DEADLINE_EXCEEDED"
	// ErrOffsetBehind: a read offset before the bytes the daemon retains.
	ErrOffsetBehind Reason = "OFFSET_BEHIND"
	// ErrOffsetAhead: an offset past the stream's.
	ErrOffsetAhead Reason = "OFFSET_AHEAD"
	// ErrReadSuperseded: a waiting read that a read with an offset
	// replaced.
	ErrReadSuperseded Reason = "READ_SUPERSEDED"
	// ErrMemoryBudget: the daemon's memory budget is (nearly) used up.
	ErrMemoryBudget Reason = "MEMORY_BUDGET"
	// ErrStreamQueued: the stream still waits on its server to be claimed.
	ErrStreamQueued Reason = "STREAM_QUEUED"
	// ErrTooManyOpenFiles: the daemon is out of descriptors.
	ErrTooManyOpenFiles Reason = "TOO_MANY_OPEN_FILES"
	// ErrStreamAttached: a read of a stream an Attach (a *Conn) owns.
	ErrStreamAttached Reason = "STREAM_ATTACHED"
	// ErrAttachSuperseded: another Attach took the stream over.
	ErrAttachSuperseded Reason = "ATTACH_SUPERSEDED"
	// ErrStreamRelayed: the stream is relayed.
	ErrStreamRelayed Reason = "STREAM_RELAYED"
	// ErrUnauthenticated: the call has no identity (no or an unknown
	// token, no client certificate).
	ErrUnauthenticated Reason = "UNAUTHENTICATED"
	// ErrDestinationDenied: the policy refuses the address to connect to.
	ErrDestinationDenied Reason = "DESTINATION_DENIED"
	// ErrBindDenied: the policy refuses the address to listen on.
	ErrBindDenied Reason = "BIND_DENIED"
	// ErrQuotaExceeded: the identity holds its most streams or servers.
	ErrQuotaExceeded Reason = "QUOTA_EXCEEDED"
	// ErrNotOwner: only the handle's owner may share it.
	ErrNotOwner Reason = "NOT_OWNER"
	// ErrSocketOption: a socket option the socket lacks or refuses.
	ErrSocketOption Reason = "SOCKET_OPTION"
)

// ErrDaemonUnreachable matches the errors of calls that did not reach the
// daemon: no daemon at the address, a refused or broken gRPC connection.
var ErrDaemonUnreachable = errors.New("cannot reach the daemon")

// reasons lists every Reason the package knows.
var reasons = []Reason{
	ErrStreamNotFound, ErrServerNotFound, ErrInvalidArgument, ErrLimitOverrun,
	ErrLineTooLong, ErrConcurrentRead, ErrWriteAfterEOF, ErrStreamClosed,
	ErrWriteEOFUnsupported, ErrWriteBufferFull, ErrResultTooLarge,
	ErrTooManyStreams, ErrTooManyServers, ErrConnectionLost,
	ErrConnectionReset, ErrConnectionRefused, ErrConnectionAborted,
	ErrBrokenPipe, ErrUnreachable, ErrNoSuchSocket, ErrAddressInUse,
	ErrPermissionDenied, ErrDNS, ErrConnectTimeout, ErrIOTimeout,
	ErrHandshakeTimeout, ErrTLS, ErrIO, ErrServerClosed, ErrShuttingDown,
	ErrAcceptTimeout, ErrCancelled, ErrDeadlineExceeded, ErrOffsetBehind,
	ErrOffsetAhead, ErrReadSuperseded, ErrMemoryBudget, ErrStreamQueued,
	ErrTooManyOpenFiles, ErrStreamAttached, ErrAttachSuperseded,
	ErrStreamRelayed, ErrUnauthenticated, ErrDestinationDenied,
	ErrBindDenied, ErrQuotaExceeded, ErrNotOwner, ErrSocketOption,
}

// Reasons returns every error reason the package has a sentinel for.
func Reasons() []Reason { return append([]Reason(nil), reasons...) }

// Error is an error the daemon answered (or gRPC reported for a call to
// it): the gRPC status code, the reason and metadata of its
// google.rpc.ErrorInfo, and its message.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason names the condition; empty for errors without a streammgr
	// ErrorInfo (such as a broken connection to the daemon).
	Reason Reason
	// Message is the daemon's message.
	Message string
	// Metadata is the ErrorInfo's metadata: "errno", "rule", "target",
	// "quota", "limit", "earliest_offset", ...
	Metadata map[string]string
	// Violations maps request fields to what is wrong with them
	// (google.rpc.BadRequest), for INVALID_ARGUMENT and the offset errors.
	Violations map[string]string
}

// Error returns a readable description: for an error with an errno, the
// errno's text (the daemon's message repeats what the caller did); else the
// daemon's message; then the reason in parentheses.
func (e *Error) Error() string {
	msg := e.Message
	if errno := e.Errno(); errno != 0 {
		msg = errno.Error()
	}
	if e.Reason == "" {
		if msg == "" {
			return e.Code.String()
		}
		return msg
	}
	return msg + " (" + string(e.Reason) + ")"
}

// Errno is the operating system's error number the daemon reported, or 0.
func (e *Error) Errno() syscall.Errno {
	n, err := strconv.Atoi(e.Metadata["errno"])
	if err != nil || n <= 0 {
		return 0
	}
	return syscall.Errno(n)
}

// Unwrap returns what errors.Is and errors.As match: the reason, the errno,
// context.Canceled or context.DeadlineExceeded for a cancelled or expired
// call, and ErrDaemonUnreachable for a call that did not reach the daemon.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Reason != "" {
		out = append(out, e.Reason)
	}
	if errno := e.Errno(); errno != 0 {
		out = append(out, errno)
	}
	switch {
	case e.Code == codes.Canceled:
		out = append(out, context.Canceled)
	case e.Code == codes.DeadlineExceeded && (e.Reason == "" || e.Reason == ErrDeadlineExceeded):
		out = append(out, context.DeadlineExceeded)
	case e.Code == codes.Unavailable && e.Reason == "":
		out = append(out, ErrDaemonUnreachable)
	}
	return out
}

// fromStatus turns an error of a gRPC call into an *Error (nil stays nil;
// an error that is not a gRPC status is returned as it is).
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == errorDomain {
				e.Reason = Reason(d.GetReason())
				e.Metadata = d.GetMetadata()
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				if e.Violations == nil {
					e.Violations = map[string]string{}
				}
				e.Violations[v.GetField()] = v.GetDescription()
			}
		}
	}
	return e
}
