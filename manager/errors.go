package manager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/manager/identity"
	"github.com/streammgr/streammgr/manager/policy"
	"github.com/streammgr/streammgr/streamcore"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every streammgr error.
const ErrorDomain = "streammgr"

// Reasons carried in google.rpc.ErrorInfo. They are part of the public API.
const (
	ReasonStreamNotFound      = "STREAM_NOT_FOUND"
	ReasonServerNotFound      = "SERVER_NOT_FOUND"
	ReasonInvalidArgument     = "INVALID_ARGUMENT"
	ReasonLimitOverrun        = "LIMIT_OVERRUN"
	ReasonLineTooLong         = "LINE_TOO_LONG"
	ReasonConcurrentRead      = "CONCURRENT_READ"
	ReasonWriteAfterEOF       = "WRITE_AFTER_EOF"
	ReasonStreamClosed        = "STREAM_CLOSED"
	ReasonWriteEOFUnsupported = "WRITE_EOF_UNSUPPORTED"
	ReasonWriteBufferFull     = "WRITE_BUFFER_FULL"
	ReasonResultTooLarge      = "RESULT_TOO_LARGE"
	ReasonTooManyStreams      = "TOO_MANY_STREAMS"
	ReasonTooManyServers      = "TOO_MANY_SERVERS"
	ReasonConnectionLost      = "CONNECTION_LOST"
	ReasonConnectionReset     = "CONNECTION_RESET"
	ReasonConnectionRefused   = "CONNECTION_REFUSED"
	ReasonConnectionAborted   = "CONNECTION_ABORTED"
	ReasonBrokenPipe          = "BROKEN_PIPE"
	ReasonUnreachable         = "UNREACHABLE"
	ReasonNoSuchSocket        = "NO_SUCH_SOCKET"
	ReasonAddressInUse        = "ADDRESS_IN_USE"
	ReasonPermissionDenied    = "PERMISSION_DENIED"
	ReasonDNSError            = "DNS_ERROR"
	ReasonConnectTimeout      = "CONNECT_TIMEOUT"
	ReasonIOTimeout           = "IO_TIMEOUT"
	ReasonHandshakeTimeout    = "HANDSHAKE_TIMEOUT"
	ReasonTLSError            = "TLS_ERROR"
	ReasonIOError             = "IO_ERROR"
	ReasonServerClosed        = "SERVER_CLOSED"
	ReasonShuttingDown        = "SHUTTING_DOWN"
	ReasonAcceptTimeout       = "ACCEPT_TIMEOUT"
	ReasonCancelled           = "CANCELLED"
	ReasonDeadlineExceeded    = "DEADLINE_EXCEEDED"
	ReasonOffsetBehind        = "OFFSET_BEHIND"
	ReasonOffsetAhead         = "OFFSET_AHEAD"
	ReasonReadSuperseded      = "READ_SUPERSEDED"
	ReasonMemoryBudget        = "MEMORY_BUDGET"
	ReasonStreamQueued        = "STREAM_QUEUED"
	ReasonTooManyOpenFiles    = "TOO_MANY_OPEN_FILES"
	ReasonStreamAttached      = "STREAM_ATTACHED"
	ReasonAttachSuperseded    = "ATTACH_SUPERSEDED"
	ReasonStreamRelayed       = "STREAM_RELAYED"
	ReasonUnauthenticated     = "UNAUTHENTICATED"
	ReasonDestinationDenied   = "DESTINATION_DENIED"
	ReasonBindDenied          = "BIND_DENIED"
	ReasonQuotaExceeded       = "QUOTA_EXCEEDED"
	ReasonNotOwner            = "NOT_OWNER"
	ReasonSocketOption        = "SOCKET_OPTION"
)

// ErrorInfo metadata keys.
const (
	// MetaErrno is the OS error number, when there is one.
	MetaErrno = "errno"
	// MetaEarliestOffset is OFFSET_BEHIND's earliest replayable offset.
	MetaEarliestOffset = "earliest_offset"
	// MetaNextOffset is OFFSET_AHEAD's current offset of the stream.
	MetaNextOffset = "next_offset"
	// MetaRule and MetaTarget are the policy rule that refused
	// (DESTINATION_DENIED, BIND_DENIED) and what it refused.
	MetaRule, MetaTarget = "rule", "target"
	// MetaQuota, MetaLimit and MetaIdentity are QUOTA_EXCEEDED's quota
	// ("streams", "servers"), its limit and whose it is.
	MetaQuota, MetaLimit, MetaIdentity = "quota", "limit", "identity"
	// MetaBuffered, MetaCap and MetaRoom are WRITE_BUFFER_FULL's unsent
	// bytes, the stream's cap, and how many bytes a write may carry now
	// (once nothing is unsent, a write of any size is taken).
	MetaBuffered, MetaCap, MetaRoom = "buffered", "cap", "room"
)

// readError is a read's error with the stream's inbound offset after it,
// for the LimitOverrunError detail.
type readError struct {
	err  error
	next int64
}

func (e *readError) Error() string { return e.err.Error() }

func (e *readError) Unwrap() error { return e.err }

// fieldError is an invalid request field (INVALID_ARGUMENT with a
// google.rpc.BadRequest field violation).
type fieldError struct {
	field, desc string
}

func (e *fieldError) Error() string { return e.field + ": " + e.desc }

func invalid(field, desc string) error { return &fieldError{field: field, desc: desc} }

// acceptTimeoutError is an Accept whose own timeout passed.
type acceptTimeoutError struct{}

func (acceptTimeoutError) Error() string { return "no connection arrived before the accept timeout" }

// connectTimeoutError is a connect that ran out of Open's connect_timeout
// while the call itself still had time. (A dial timeout matches
// context.DeadlineExceeded, so without this type it would be reported as
// the call's own deadline.)
type connectTimeoutError struct{ err error }

func (e *connectTimeoutError) Error() string { return e.err.Error() }

func (e *connectTimeoutError) Unwrap() error { return e.err }

// toStatus maps a domain error to a gRPC status error with details. It is
// the only place errors are translated; field names the request field the
// error concerns, if any.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code, reason, details := classify(err)
	errorsByReason.WithLabelValues(reason).Inc()
	info := &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: metadata(err)}
	st := status.New(code, err.Error())
	withDetails, derr := st.WithDetails(append([]protoadapt.MessageV1{info}, details...)...)
	if derr != nil {
		return st.Err()
	}
	return withDetails.Err()
}

// metadata returns the ErrorInfo metadata for err, or nil.
func metadata(err error) map[string]string {
	var (
		behind *streamcore.OffsetBehindError
		ahead  *streamcore.OffsetAheadError
		denied *policy.Denied
		quota  *quotaError
		full   *streamcore.WriteBufferFullError
	)
	switch {
	case errors.As(err, &full):
		return map[string]string{MetaBuffered: strconv.Itoa(full.Buffered), MetaCap: strconv.Itoa(full.Cap), MetaRoom: strconv.Itoa(full.Room())}
	case errors.As(err, &denied):
		return map[string]string{MetaRule: denied.Rule, MetaTarget: denied.Target}
	case errors.As(err, &quota):
		return map[string]string{MetaQuota: quota.what, MetaLimit: strconv.Itoa(quota.limit), MetaIdentity: quota.identity}
	case errors.As(err, &behind):
		return map[string]string{MetaEarliestOffset: strconv.FormatInt(behind.Earliest, 10)}
	case errors.As(err, &ahead):
		return map[string]string{MetaNextOffset: strconv.FormatInt(ahead.Next, 10)}
	}
	if errno := errnoOf(err); errno != 0 {
		return map[string]string{MetaErrno: strconv.Itoa(int(errno))}
	}
	return nil
}

func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

func classify(err error) (codes.Code, string, []protoadapt.MessageV1) {
	var (
		nf     *notFoundError
		fe     *fieldError
		ve     *streamcore.ValueError
		lo     *streamcore.LimitOverrunError
		ll     *streamcore.LineTooLongError
		wf     *streamcore.WriteBufferFullError
		rt     *streamcore.ResultTooLargeError
		ht     *streamcore.HandshakeTimeoutError
		le     *limitError
		dns    *net.DNSError
		uae    x509.UnknownAuthorityError
		hne    x509.HostnameError
		cie    x509.CertificateInvalidError
		rec    tls.RecordHeaderError
		ae     tls.AlertError
		vErr   *tls.CertificateVerificationError
		re     readError
		behind *streamcore.OffsetBehindError
		ahead  *streamcore.OffsetAheadError
	)
	if p := (*readError)(nil); errors.As(err, &p) {
		re = *p
	}
	var (
		denied *policy.Denied
		so     *sockOptError
	)
	switch {
	case errors.As(err, &so):
		if so.notApplicable() {
			return codes.FailedPrecondition, ReasonSocketOption, nil
		}
		return codes.InvalidArgument, ReasonSocketOption, nil
	case identity.IsError(err):
		return codes.Unauthenticated, ReasonUnauthenticated, nil
	case errors.As(err, &denied):
		if denied.Bind {
			return codes.PermissionDenied, ReasonBindDenied, nil
		}
		return codes.PermissionDenied, ReasonDestinationDenied, nil
	case errors.As(err, new(*quotaError)):
		return codes.ResourceExhausted, ReasonQuotaExceeded, nil
	case errors.As(err, new(*notOwnerError)):
		return codes.PermissionDenied, ReasonNotOwner, nil
	case errors.As(err, &nf):
		if nf.kind == "server" {
			return codes.NotFound, ReasonServerNotFound, nil
		}
		return codes.NotFound, ReasonStreamNotFound, nil
	case errors.As(err, new(*policyError)):
		return codes.PermissionDenied, ReasonPermissionDenied, nil
	case errors.As(err, &fe):
		return codes.InvalidArgument, ReasonInvalidArgument, []protoadapt.MessageV1{&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.field, Description: fe.desc}}}}
	case errors.As(err, &ve):
		return codes.InvalidArgument, ReasonInvalidArgument, nil
	case errors.As(err, &ll):
		return codes.ResourceExhausted, ReasonLineTooLong, []protoadapt.MessageV1{&smv1.LimitOverrunError{Consumed: int64(ll.Consumed), Found: ll.Found, NextOffset: re.next}}
	case errors.As(err, &lo):
		return codes.ResourceExhausted, ReasonLimitOverrun, []protoadapt.MessageV1{&smv1.LimitOverrunError{Consumed: int64(lo.Consumed), Found: lo.Found, NextOffset: re.next}}
	case errors.As(err, &behind):
		return codes.OutOfRange, ReasonOffsetBehind, offsetViolation("the bytes before offset " + strconv.FormatInt(behind.Earliest, 10) + " were acknowledged and are gone")
	case errors.As(err, &ahead):
		return codes.OutOfRange, ReasonOffsetAhead, offsetViolation("the stream's offset is " + strconv.FormatInt(ahead.Next, 10))
	case errors.As(err, new(attachedError)):
		return codes.FailedPrecondition, ReasonStreamAttached, nil
	case errors.As(err, new(relayedError)):
		return codes.FailedPrecondition, ReasonStreamRelayed, nil
	case errors.Is(err, errAttachSuperseded):
		return codes.Aborted, ReasonAttachSuperseded, nil
	case errors.Is(err, streamcore.ErrSuperseded):
		return codes.Aborted, ReasonReadSuperseded, nil
	case errors.As(err, new(*fdError)), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return codes.ResourceExhausted, ReasonTooManyOpenFiles, nil
	case errors.As(err, new(queuedError)):
		return codes.FailedPrecondition, ReasonStreamQueued, nil
	case errors.Is(err, streamcore.ErrConcurrentRead):
		return codes.FailedPrecondition, ReasonConcurrentRead, nil
	case errors.Is(err, streamcore.ErrWriteAfterEOF):
		return codes.FailedPrecondition, ReasonWriteAfterEOF, nil
	case errors.Is(err, streamcore.ErrClosed):
		return codes.FailedPrecondition, ReasonStreamClosed, nil
	case errors.Is(err, streamcore.ErrCannotWriteEOF):
		return codes.FailedPrecondition, ReasonWriteEOFUnsupported, nil
	case errors.As(err, &wf):
		return codes.ResourceExhausted, ReasonWriteBufferFull, nil
	case errors.As(err, &rt):
		return codes.ResourceExhausted, ReasonResultTooLarge, nil
	case errors.As(err, new(*streamcore.BudgetError)), errors.As(err, new(budgetError)):
		return codes.ResourceExhausted, ReasonMemoryBudget, nil
	case errors.As(err, &le):
		if le.what == "servers" {
			return codes.ResourceExhausted, ReasonTooManyServers, nil
		}
		return codes.ResourceExhausted, ReasonTooManyStreams, nil
	case errors.Is(err, errShuttingDown):
		return codes.Unavailable, ReasonShuttingDown, nil
	case errors.As(err, new(errQueueClosed)):
		return codes.NotFound, ReasonServerClosed, nil
	case errors.As(err, new(acceptTimeoutError)):
		return codes.DeadlineExceeded, ReasonAcceptTimeout, nil
	case errors.As(err, &ht):
		return codes.DeadlineExceeded, ReasonHandshakeTimeout, nil
	case errors.As(err, new(*connectTimeoutError)):
		return codes.DeadlineExceeded, ReasonConnectTimeout, nil
	case errors.Is(err, context.Canceled):
		return codes.Canceled, ReasonCancelled, nil
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, ReasonDeadlineExceeded, nil
	case errors.Is(err, streamcore.ErrServerClosed):
		return codes.FailedPrecondition, ReasonServerClosed, nil
	case errors.Is(err, streamcore.ErrConnectionLost):
		return codes.Unavailable, ReasonConnectionLost, nil
	case errors.Is(err, syscall.ECONNRESET):
		return codes.Unavailable, ReasonConnectionReset, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return codes.Unavailable, ReasonConnectionRefused, nil
	case errors.Is(err, syscall.ECONNABORTED):
		return codes.Unavailable, ReasonConnectionAborted, nil
	case errors.Is(err, syscall.EPIPE):
		return codes.Unavailable, ReasonBrokenPipe, nil
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return codes.Unavailable, ReasonUnreachable, nil
	case errors.Is(err, syscall.ENOENT):
		return codes.Unavailable, ReasonNoSuchSocket, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return codes.AlreadyExists, ReasonAddressInUse, nil
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, os.ErrPermission):
		return codes.PermissionDenied, ReasonPermissionDenied, nil
	case errors.As(err, &dns):
		return codes.Unavailable, ReasonDNSError, nil
	case isTimeout(err):
		return codes.DeadlineExceeded, ReasonIOTimeout, nil
	case errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie), errors.As(err, &rec), errors.As(err, &ae), errors.As(err, &vErr), isTLSAlert(err):
		return codes.Unavailable, ReasonTLSError, nil
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return codes.Unavailable, ReasonConnectionLost, nil
	}
	return codes.Unavailable, ReasonIOError, nil
}

// offsetViolation is the BadRequest detail of an offset out of range.
func offsetViolation(desc string) []protoadapt.MessageV1 {
	return []protoadapt.MessageV1{&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "offset", Description: desc}}}}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isTLSAlert reports an alert crypto/tls received from the peer or sent
// it: a *net.OpError "remote error" or "local error" around the package's
// unexported alert type (tls.AlertError is only QUIC's).
func isTLSAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "remote error" || oe.Op == "local error") &&
		oe.Err != nil && strings.HasPrefix(oe.Err.Error(), "tls: ")
}
