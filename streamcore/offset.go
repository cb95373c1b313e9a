package streamcore

import (
	"context"
	"errors"
	"fmt"
)

// Offsets. A stream's inbound offset counts the bytes its reads consumed
// (Reader.Consumed: results, plus lines readline dropped over the limit);
// its outbound offset counts the bytes its writes accepted
// (Writer.Written). A reader with Options.Replay keeps the bytes of its
// latest read until a later read acknowledges them, so that a caller whose
// result was lost on the way (a remote caller whose response never
// arrived) can ask for the same bytes again by offset; Writer.WriteAt
// skips the part of a retried write that was already accepted.

// FromDelivered is the offset for Reader.Run meaning "where the last result
// that reached its caller ended" (see Reader.Delivered).
const FromDelivered int64 = -1

// ErrSuperseded is returned by a waiting read that a Reader.Run with an
// explicit offset took the place of. It consumed nothing.
var ErrSuperseded = errors.New("the read was superseded by a read with an offset")

// OffsetBehindError reports a read offset older than the bytes the reader
// still keeps: those bytes were acknowledged and forgotten.
type OffsetBehindError struct {
	Offset   int64 // the offset asked for
	Earliest int64 // the earliest offset a read can start from
}

func (e *OffsetBehindError) Error() string {
	return fmt.Sprintf("offset %d is behind the earliest replayable offset %d", e.Offset, e.Earliest)
}

// OffsetAheadError reports an offset past what the stream has: for a read,
// past the bytes consumed; for a write, past the bytes accepted.
type OffsetAheadError struct {
	Offset int64 // the offset asked for
	Next   int64 // the stream's offset now
}

func (e *OffsetAheadError) Error() string {
	return fmt.Sprintf("offset %d is ahead of the stream's offset %d", e.Offset, e.Next)
}

// ReadKind names a read for Reader.Run.
type ReadKind int

// The reads Run can do.
const (
	OpRead        ReadKind = iota // read(N); N < 0 reads to EOF (ReadAll with Max)
	OpReadExactly                 // readexactly(N)
	OpReadUntil                   // readuntil(Separators)
	OpReadLine                    // readline()
)

// ReadOp is one read for Reader.Run.
type ReadOp struct {
	Kind ReadKind
	// N is the byte count of OpRead and OpReadExactly.
	N int
	// Max, when > 0, caps the result: a longer one (or partial) fails
	// with *ResultTooLargeError and consumes nothing. OpRead with N >= 0
	// never returns more than N.
	Max int
	// Separators are OpReadUntil's separators.
	Separators [][]byte
	// Ack, when set, is the offset up to which the caller has received
	// results; it acknowledges only the bytes before it (at most from, and
	// nothing older than EarliestOffset), instead of everything before
	// from. A caller with several reads in flight sends its next read's
	// from ahead of what it has received: with Ack the bytes of the results
	// still on their way stay replayable.
	Ack *int64
}

// Run runs op as the read that starts at inbound offset from, atomically
// with positioning the stream there:
//
//   - from equal to Consumed(): an ordinary read; the kept bytes before it
//     are acknowledged and forgotten;
//   - from smaller, but not before EarliestOffset(): the bytes consumed
//     since from are put back in front of the buffer, in order, and the
//     read runs as if the reads that consumed them had never happened;
//   - from before EarliestOffset(): *OffsetBehindError; after Consumed():
//     *OffsetAheadError; nothing changes.
//
// A read with an explicit offset comes from a caller that has given up on
// any earlier read of the stream: one still waiting ends with
// ErrSuperseded (consuming nothing) and Run takes its place.
//
// from = FromDelivered starts where the last result marked with Delivered
// ended, putting back what was consumed since (results that never reached
// their caller); it waits as an ordinary read, so a live waiting read makes
// it fail with *ConcurrentReadError if it has to wait, and nothing is put
// back while one waits.
//
// A Run whose context has already ended does nothing. Run returns the
// read's result (an *IncompleteReadError carries it at EOF)
// and the inbound offset after the read, which is also where the stream
// stands when the read fails. Without Options.Replay only from =
// Consumed() and FromDelivered (with nothing to put back) can succeed.
func (r *Reader) Run(ctx context.Context, from int64, op ReadOp) ([]byte, int64, error) {
	var seps [][]byte
	if op.Kind == OpReadUntil {
		var err error
		if seps, err = sortSeparators(op.Separators); err != nil {
			return nil, r.Consumed(), err
		}
	}
	if op.Kind == OpReadExactly && op.N < 0 {
		return nil, r.Consumed(), &ValueError{Msg: "readexactly size can not be less than zero"}
	}
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		// The caller is gone already: do nothing, not even a read the
		// buffer could answer.
		return nil, t.nread.Load(), err
	}
	if err := r.seekLocked(ctx, from, op.Ack); err != nil {
		return nil, t.nread.Load(), err
	}
	var (
		data []byte
		err  error
	)
	switch op.Kind {
	case OpRead:
		if op.N < 0 {
			data, err = r.readAllLocked(ctx, op.Max)
		} else {
			data, err = r.readLocked(ctx, op.N)
		}
	case OpReadExactly:
		data, err = r.readExactlyLocked(ctx, op.N, op.Max)
	case OpReadUntil:
		data, err = r.readUntilLocked(ctx, false, seps, op.Max)
	case OpReadLine:
		data, err = r.readLineLocked(ctx, op.Max)
	default:
		err = &ValueError{Msg: fmt.Sprintf("unknown read kind %d", op.Kind)}
	}
	return data, t.nread.Load(), err
}

// seekLocked positions the stream at from for Run, acknowledging the
// bytes before from, or only those before ack when it is set.
func (r *Reader) seekLocked(ctx context.Context, from int64, ack *int64) error {
	t := r.t
	explicit := from != FromDelivered
	if explicit {
		// A bad offset changes nothing, not even a waiting read.
		if err := t.checkOffsetLocked(from); err != nil {
			return err
		}
	}
	for t.waiting {
		live := t.waitCtx.Err() == nil
		if live && !explicit {
			// An ordinary read: nothing is put back under a live waiter,
			// and the read itself meets it (ConcurrentReadError if it has
			// to wait, as in asyncio).
			return nil
		}
		if live {
			t.superseded = true
			t.signalLocked()
		}
		if err := t.waitForWaiterLocked(ctx); err != nil {
			return err
		}
	}
	if !explicit {
		from = max(t.delivered, t.earliestLocked())
	}
	if err := t.checkOffsetLocked(from); err != nil {
		return err
	}
	consumed := t.nread.Load()
	if from > consumed {
		// A late duplicate of an older read (from a connection its caller
		// gave up on) moved the stream back; the bytes up to from were
		// delivered before and are at the front of the buffer again:
		// consume them, acknowledged.
		t.ackLocked(consumed)
		t.buf.drop(int(from-consumed), nil)
		t.nread.Store(from)
		t.delivered = from
		t.settleLocked()
		t.maybeResumeLocked()
		return nil
	}
	upTo := from
	if ack != nil {
		upTo = min(max(*ack, t.earliestLocked()), from)
	}
	t.ackLocked(upTo)
	if from < consumed {
		// What is kept now was consumed since upTo: the part from from on
		// goes back in front of the buffer. Nothing writes to kept bytes,
		// so they go back as they are.
		back := t.splitKeptLocked(int(from - upTo))
		t.prependLocked(back...)
		t.nread.Store(from)
		t.signalLocked()
	}
	t.delivered = from
	return nil
}

// splitKeptLocked keeps the first n kept bytes and returns the rest.
func (t *transport) splitKeptLocked(n int) [][]byte {
	var rest [][]byte
	kept := t.kept[:0:0]
	left := n
	for _, k := range t.kept {
		switch {
		case left >= len(k):
			kept = append(kept, k)
			left -= len(k)
		case left > 0:
			kept = append(kept, k[:left:left])
			rest = append(rest, k[left:])
			left = 0
		default:
			rest = append(rest, k)
		}
	}
	t.kept, t.keptLen = kept, n
	if len(kept) == 0 {
		t.kept = nil
	}
	return rest
}

// checkOffsetLocked reports an offset a read cannot start from.
func (t *transport) checkOffsetLocked(from int64) error {
	if earliest := t.earliestLocked(); from < earliest {
		return &OffsetBehindError{Offset: from, Earliest: earliest}
	}
	if from > t.highWater || from-t.nread.Load() > int64(t.buf.len()) {
		return &OffsetAheadError{Offset: from, Next: t.highWater}
	}
	return nil
}

// earliestLocked is the earliest offset a read can start from.
func (t *transport) earliestLocked() int64 { return t.nread.Load() - int64(t.keptLen) }

// ackLocked forgets the kept bytes before offset off, which must lie in
// [earliestLocked(), nread].
func (t *transport) ackLocked(off int64) {
	drop := int(off - t.earliestLocked())
	for drop > 0 && len(t.kept) > 0 {
		k := t.kept[0]
		if len(k) > drop {
			t.kept[0] = k[drop:]
			t.keptLen -= drop
			break
		}
		t.kept[0] = nil
		t.kept = t.kept[1:]
		t.keptLen -= len(k)
		drop -= len(k)
	}
	if len(t.kept) == 0 {
		t.kept = nil
	}
	t.delivered = max(t.delivered, off)
	t.settleLocked()
	t.maybeResumeLocked()
}

// Delivered records that a result ending at inbound offset end reached its
// caller, for a later Run from FromDelivered.
func (r *Reader) Delivered(end int64) {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.delivered = min(max(t.delivered, end), t.nread.Load())
}

// Retained returns how many consumed bytes are kept for replay.
func (r *Reader) Retained() int {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.keptLen
}

// EarliestOffset returns the earliest inbound offset a Run can start from.
func (r *Reader) EarliestOffset() int64 {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.earliestLocked()
}

// WriteAt is WriteLines for a caller that may retry: off is the outbound
// offset of the first byte of lines. Bytes before Written() were accepted
// by an earlier call and are skipped; the rest is written as WriteLines
// writes, all or nothing. An off past Written() is an *OffsetAheadError. A
// call whose bytes were all accepted before succeeds whatever the state of
// the stream. A negative off appends, as WriteLines. WriteAt returns the
// outbound offset after the call.
func (w *Writer) WriteAt(off int64, lines ...[]byte) (int64, error) {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	accepted := t.nwritten.Load()
	if off > accepted {
		return accepted, &OffsetAheadError{Offset: off, Next: accepted}
	}
	if off >= 0 {
		skip := accepted - off
		for len(lines) > 0 && skip > 0 {
			if int64(len(lines[0])) > skip {
				lines = append([][]byte{lines[0][skip:]}, lines[1:]...)
				break
			}
			skip -= int64(len(lines[0]))
			lines = lines[1:]
		}
		if accepted > off && totalLen(lines) == 0 {
			return accepted, nil
		}
	}
	err := w.writeLinesLocked(lines)
	return t.nwritten.Load(), err
}
