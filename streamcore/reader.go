package streamcore

import (
	"bytes"
	"context"
	"slices"
	"time"
)

// Reader is asyncio's StreamReader over a connection. Its methods are safe
// for concurrent use, but as in asyncio only one read may wait for data at a
// time: a second read that would have to wait fails with a
// *ConcurrentReadError, while one that can finish from the buffer succeeds.
//
// Every method that waits takes a context. When the context ends first, the
// method returns the context's error and consumes nothing.
type Reader struct {
	t *transport
}

// Limit returns the reader's buffer limit.
func (r *Reader) Limit() int { return r.t.limit }

// wait blocks until the reader's state changes or ctx ends. It must be called
// with the lock held and returns with it held. As in asyncio, a read that has
// to wait resumes a paused transport first.
//
// Only one read may wait at a time, but a waiting read whose context has
// already ended gives way: wait lets it leave (it consumes nothing) and
// returns nil so that the caller checks the buffer again.
func (r *Reader) wait(ctx context.Context, op string) error {
	t := r.t
	if t.waiting {
		if t.waitCtx.Err() == nil {
			return &ConcurrentReadError{Op: op}
		}
		if err := t.waitForWaiterLocked(ctx); err != nil {
			return err
		}
		return t.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.paused || t.bpaused {
		// A stream whose read waits may use the budget's reserve.
		t.paused = false
		t.budgetResumeLocked()
		signal(t.readCond)
	}
	t.waiting = true
	t.readWaits.Store(true)
	t.waitCtx = ctx
	left := make(chan struct{})
	t.waitLeft = left
	if t.wake == nil {
		t.wake = make(chan struct{})
	}
	ch := t.wake
	if t.armed {
		// The socket waits in the poller: a read goroutine waits for this
		// read in the runtime's netpoller instead, one hop sooner (see
		// hotFor).
		t.unarmLocked()
		go t.readLoop(t.conn, false)
	}
	t.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
	t.mu.Lock()
	// The stream stays hot for a while: a read that waited is likely to
	// be followed by another.
	t.hotUntil = time.Now().Add(hotFor).UnixNano()
	t.waiting = false
	t.readWaits.Store(false)
	t.waitCtx = nil
	close(left)
	if t.superseded {
		t.superseded = false
		return ErrSuperseded
	}
	// An ended context wins over a wake-up that came at the same time, so
	// that a read that was given up on never takes bytes meant for its
	// successor.
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.err
}

// waitForWaiterLocked waits, with the lock released, until the read now
// waiting has left (ctx ending first returns its error).
func (t *transport) waitForWaiterLocked(ctx context.Context) error {
	left := t.waitLeft
	t.mu.Unlock()
	var err error
	select {
	case <-left:
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.mu.Lock()
	return err
}

// Read is asyncio's read(n). With n > 0 it waits until at least one byte is
// buffered (or EOF) and returns up to n bytes; it does not wait for n. With
// n == 0 it returns at once. With n < 0 it reads until EOF. At EOF with an
// empty buffer it returns an empty slice.
func (r *Reader) Read(ctx context.Context, n int) ([]byte, error) {
	if n < 0 {
		return r.ReadAll(ctx, 0)
	}
	return r.plain(func() ([]byte, error) { return r.readLocked(ctx, n) })
}

func (r *Reader) readLocked(ctx context.Context, n int) ([]byte, error) {
	t := r.t
	if t.err != nil {
		return nil, t.err
	}
	if n == 0 {
		return []byte{}, nil
	}
	for t.buf.len() == 0 && !t.eof {
		if err := r.wait(ctx, "read"); err != nil {
			return nil, err
		}
	}
	return t.consumeLocked(min(n, t.buf.len())), nil
}

// plain runs a read of the asyncio API under the lock. It acknowledges
// everything before it, so a reader with Options.Replay retains nothing
// from earlier reads.
func (r *Reader) plain(read func() ([]byte, error)) ([]byte, error) {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ackLocked(t.nread.Load())
	return read()
}

// ReadAll is asyncio's read(-1): it waits for EOF and returns every byte.
// When max > 0 and more than max bytes are buffered, it fails with a
// *ResultTooLargeError and consumes nothing. Unlike CPython, a cancelled
// ReadAll keeps every byte in the buffer.
func (r *Reader) ReadAll(ctx context.Context, max int) ([]byte, error) {
	return r.plain(func() ([]byte, error) { return r.readAllLocked(ctx, max) })
}

func (r *Reader) readAllLocked(ctx context.Context, max int) ([]byte, error) {
	t := r.t
	if t.err != nil {
		return nil, t.err
	}
	for {
		if max > 0 && t.buf.len() > max {
			return nil, &ResultTooLargeError{Size: t.buf.len(), Max: max}
		}
		if t.eof {
			break
		}
		if err := r.wait(ctx, "read"); err != nil {
			return nil, err
		}
	}
	if t.buf.len() == 0 {
		return []byte{}, nil
	}
	return t.consumeLocked(t.buf.len()), nil
}

// ReadExactly is asyncio's readexactly(n): it waits until n bytes are
// buffered and returns exactly n. If EOF comes first it empties the buffer
// and returns an *IncompleteReadError holding those bytes. n < 0 is a
// *ValueError.
func (r *Reader) ReadExactly(ctx context.Context, n int) ([]byte, error) {
	if n < 0 {
		return nil, &ValueError{Msg: "readexactly size can not be less than zero"}
	}
	return r.plain(func() ([]byte, error) { return r.readExactlyLocked(ctx, n, 0) })
}

func (r *Reader) readExactlyLocked(ctx context.Context, n, maxResult int) ([]byte, error) {
	t := r.t
	if t.err != nil {
		return nil, t.err
	}
	if n == 0 {
		return []byte{}, nil
	}
	if err := tooLarge(n, maxResult); err != nil {
		return nil, err
	}
	for t.buf.len() < n {
		if t.eof {
			partial := t.consumeLocked(t.buf.len())
			return nil, &IncompleteReadError{Partial: partial, Expected: n}
		}
		if err := r.wait(ctx, "readexactly"); err != nil {
			return nil, err
		}
	}
	return t.consumeLocked(n), nil
}

// ReadUntil is asyncio's readuntil(separator). With several separators it is
// 3.13's tuple form: the match that ends first wins, a tie going to the
// shorter separator. It returns the data including the separator.
//
// More than the limit before a separator gives a *LimitOverrunError and
// leaves the buffer untouched. EOF before a separator empties the buffer and
// gives an *IncompleteReadError with Expected -1. An empty separator list, or
// an empty separator, is a *ValueError.
func (r *Reader) ReadUntil(ctx context.Context, separators ...[]byte) ([]byte, error) {
	seps, err := sortSeparators(separators)
	if err != nil {
		return nil, err
	}
	return r.plain(func() ([]byte, error) { return r.readUntilLocked(ctx, false, seps, 0) })
}

// sortSeparators validates readuntil's separators and returns them
// shortest first (the order ties are broken in).
func sortSeparators(separators [][]byte) ([][]byte, error) {
	if len(separators) == 0 {
		return nil, &ValueError{Msg: "Separator should contain at least one element"}
	}
	seps := slices.Clone(separators)
	slices.SortStableFunc(seps, func(a, b []byte) int { return len(a) - len(b) })
	if len(seps[0]) == 0 {
		return nil, &ValueError{Msg: "Separator should be at least one-byte string"}
	}
	return seps, nil
}

// readUntilLocked is readuntil over separators sorted by sortSeparators;
// line selects readline's handling of a limit overrun, done under the same
// lock so no other read can slip in between. A result (or partial) longer
// than max > 0 fails with *ResultTooLargeError, consuming nothing.
func (r *Reader) readUntilLocked(ctx context.Context, line bool, seps [][]byte, maxResult int) ([]byte, error) {
	maxLen := len(seps[len(seps)-1])
	t := r.t
	if t.err != nil {
		return nil, t.err
	}
	finder := newSepFinder(seps)
	front := t.buf.front
	var matchStart, matchEnd int
	for {
		if t.buf.front != front {
			// Bytes were put back at the front, or left it: scan from the
			// start again.
			finder.reset()
			front = t.buf.front
		}
		// Only the bytes that arrived since the last scan are scanned.
		if matchStart, matchEnd = t.buf.scan(finder); matchEnd >= 0 {
			break
		}
		if offset := max(0, t.buf.len()+1-maxLen); offset > t.limit {
			return nil, r.overrunLocked(&LimitOverrunError{Consumed: offset}, line)
		}
		if t.eof {
			if err := tooLarge(t.buf.len(), maxResult); err != nil {
				return nil, err
			}
			partial := t.consumeLocked(t.buf.len())
			return nil, &IncompleteReadError{Partial: partial, Expected: -1}
		}
		if err := r.wait(ctx, "readuntil"); err != nil {
			return nil, err
		}
	}
	if matchStart > t.limit {
		return nil, r.overrunLocked(&LimitOverrunError{Consumed: matchStart, Found: true}, line)
	}
	if err := tooLarge(matchEnd, maxResult); err != nil {
		return nil, err
	}
	return t.consumeLocked(matchEnd), nil
}

// tooLarge reports a result of size bytes over maxResult > 0.
func tooLarge(size, maxResult int) error {
	if maxResult > 0 && size > maxResult {
		return &ResultTooLargeError{Size: size, Max: maxResult}
	}
	return nil
}

// overrunLocked returns e for readuntil. For readline it trims the buffer as
// asyncio does (the line and its newline when the newline is at
// e.Consumed, otherwise everything) and returns the *LineTooLongError.
func (r *Reader) overrunLocked(e *LimitOverrunError, line bool) error {
	if !line {
		return e
	}
	t := r.t
	drop := t.buf.len()
	if e.Consumed < drop && t.buf.at(e.Consumed) == '\n' {
		drop = e.Consumed + 1
	}
	t.dropLocked(drop) // dropped bytes count as consumed: they left the stream
	return &LineTooLongError{LimitOverrunError: *e}
}

var newline = []byte{'\n'}

// ReadLine is asyncio's readline(): the bytes up to and including "\n". At
// EOF it returns what is left (possibly empty), without error. A line over
// the limit gives a *LineTooLongError after trimming the buffer as asyncio
// does: the over-long line and its newline are dropped when the newline was
// found, otherwise the whole buffer is cleared.
func (r *Reader) ReadLine(ctx context.Context) ([]byte, error) {
	return r.plain(func() ([]byte, error) { return r.readLineLocked(ctx, 0) })
}

func (r *Reader) readLineLocked(ctx context.Context, maxResult int) ([]byte, error) {
	line, err := r.readUntilLocked(ctx, true, [][]byte{newline}, maxResult)
	if e, ok := err.(*IncompleteReadError); ok {
		if e.Partial == nil {
			return []byte{}, nil
		}
		return e.Partial, nil
	}
	return line, err
}

// AtEOF is asyncio's at_eof(): true when EOF was received and the buffer is
// empty.
func (r *Reader) AtEOF() bool {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.eof && r.t.buf.len() == 0
}

// Exception returns the stored connection error, or nil.
func (r *Reader) Exception() error {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.err
}

// Buffered returns how many received bytes wait to be read.
func (r *Reader) Buffered() int {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.buf.len()
}

// Unread puts data back at the front of the buffer, as if it had never been
// read. It lets a caller that consumed bytes but could not deliver them (a
// response that missed its deadline) keep the stream intact.
func (r *Reader) Unread(data []byte) {
	if len(data) == 0 {
		return
	}
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prependLocked(bytes.Clone(data))
	t.nread.Add(-int64(len(data)))
	t.highWater = t.nread.Load()
	// Retained bytes no longer line up with the offsets: forget them.
	t.kept, t.keptLen = nil, 0
	t.settleLocked()
	t.delivered = min(t.delivered, t.nread.Load())
	t.signalLocked()
}

// Consumed returns the number of bytes that have left the buffer so far:
// everything reads returned, plus lines readline dropped over the limit.
func (r *Reader) Consumed() int64 { return r.t.nread.Load() }

// Discard drops every buffered and kept byte, for a stream nobody will
// read again (its memory budget charge goes with them). Reads after it see
// an empty buffer.
func (r *Reader) Discard() {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.reset()
	t.kept, t.keptLen, t.tlsPre = nil, 0, nil
	t.settleLocked()
}

// Waiting reports whether a read is waiting for data.
func (r *Reader) Waiting() bool {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.waiting
}

// IsReading reports whether bytes are being pulled from the socket (false
// while paused for backpressure, after EOF and after close).
func (r *Reader) IsReading() bool {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.readerRun && !r.t.paused && !r.t.bpaused && !r.t.stopRead
}
