package streamcore

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrConnectionLost is returned by Drain once the connection is gone and the
// reader holds no error (asyncio's ConnectionResetError('Connection lost')).
var ErrConnectionLost = errors.New("connection lost")

// ErrClosed is returned by Write and WriteLines after Close or Abort. asyncio
// drops such writes silently; streamcore refuses them.
var ErrClosed = errors.New("write after close")

// ErrWriteAfterEOF is returned by Write and WriteLines after WriteEOF
// (asyncio's RuntimeError('Cannot call write() after write_eof()')).
var ErrWriteAfterEOF = errors.New("cannot write after write_eof()")

// ErrCannotWriteEOF is returned by WriteEOF on a TLS stream, as asyncio raises
// NotImplementedError.
var ErrCannotWriteEOF = errors.New("write_eof() is not supported on this stream")

// ErrServerClosed is returned by server operations on a closed server.
var ErrServerClosed = errors.New("server is closed")

// ErrServing is returned by ServeForever when another ServeForever is running.
var ErrServing = errors.New("server is already being awaited on serve_forever()")

// ErrConcurrentRead is matched (errors.Is) by every *ConcurrentReadError.
var ErrConcurrentRead = errors.New("another read is already waiting for incoming data")

// ConcurrentReadError is returned when a read would have to wait while
// another read on the same stream is already waiting (asyncio's
// RuntimeError). Op is the asyncio name of the refused call: "read",
// "readexactly" or "readuntil" (readline reports "readuntil").
type ConcurrentReadError struct {
	Op string
}

func (e *ConcurrentReadError) Error() string {
	return e.Op + "() called while another coroutine is already waiting for incoming data"
}

// Is reports whether target is ErrConcurrentRead.
func (e *ConcurrentReadError) Is(target error) bool { return target == ErrConcurrentRead }

// ValueError is an invalid argument, with asyncio's ValueError message.
type ValueError struct {
	Msg string
}

func (e *ValueError) Error() string { return e.Msg }

// IncompleteReadError reports EOF before a read could complete. Partial holds
// every byte that was left in the buffer (the buffer is now empty); Expected
// is the requested count, or -1 for readuntil ("undefined").
type IncompleteReadError struct {
	Partial  []byte
	Expected int
}

func (e *IncompleteReadError) Error() string {
	exp := "undefined"
	if e.Expected >= 0 {
		exp = strconv.Itoa(e.Expected)
	}
	return fmt.Sprintf("%d bytes read on a total of %s expected bytes", len(e.Partial), exp)
}

// LimitOverrunError reports that more than the reader's limit was buffered
// without a separator (Found false), or before the separator (Found true).
// The buffer is left untouched. Consumed is asyncio's consumed.
type LimitOverrunError struct {
	Consumed int
	Found    bool
}

func (e *LimitOverrunError) Error() string {
	if e.Found {
		return "Separator is found, but chunk is longer than limit"
	}
	return "Separator is not found, and chunk exceed the limit"
}

// LineTooLongError is readline's ValueError for a line over the limit. The
// buffer has already been trimmed as asyncio trims it.
type LineTooLongError struct {
	LimitOverrunError
}

// WriteBufferFullError reports a write refused because the unsent bytes
// would exceed Options.MaxWriteBuffer. Nothing was accepted. Room says how
// much a write may carry now; once the buffer has drained, a write of any
// size is taken.
type WriteBufferFullError struct {
	Buffered int // bytes unsent before the write
	Size     int // bytes the write offered
	Cap      int // the cap
}

func (e *WriteBufferFullError) Error() string {
	return fmt.Sprintf("write of %d bytes refused: %d bytes unsent, cap %d (room for %d now; any size once drained)", e.Size, e.Buffered, e.Cap, e.Room())
}

// Room is the largest write the buffer takes now.
func (e *WriteBufferFullError) Room() int { return max(e.Cap-e.Buffered, 0) }

// ResultTooLargeError reports a read whose result would exceed the caller's
// maximum. Nothing was consumed.
type ResultTooLargeError struct {
	Size int // bytes the result would hold (at least)
	Max  int
}

func (e *ResultTooLargeError) Error() string {
	return fmt.Sprintf("read result of at least %d bytes exceeds the maximum of %d", e.Size, e.Max)
}

// HandshakeTimeoutError reports a TLS handshake that did not finish in time.
type HandshakeTimeoutError struct {
	After time.Duration
}

func (e *HandshakeTimeoutError) Error() string {
	return fmt.Sprintf("SSL handshake is taking longer than %.1f seconds: aborting the connection", e.After.Seconds())
}

// Timeout reports true, so net.Error-style checks treat it as a timeout.
func (e *HandshakeTimeoutError) Timeout() bool { return true }
