package streamcore

import (
	"context"
	"io"
)

// A reader that streams its bytes to a remote consumer sends ahead of
// acknowledgements: Seek positions it, ReadAhead consumes without
// acknowledging what it consumed before, and Ack forgets what the consumer
// confirmed. With Options.Replay every byte ReadAhead returned stays kept
// until acknowledged, so a consumer that lost some can Seek back to its
// last acknowledgement and get them again.

// Seek positions the reader at inbound offset from, as Run does before its
// read (FromDelivered: where the last delivered result ended), and takes
// the place of any read waiting now, which ends with ErrSuperseded. It
// returns the offset the reader now stands at.
func (r *Reader) Seek(ctx context.Context, from int64) (int64, error) {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return t.nread.Load(), err
	}
	if from == FromDelivered {
		from = max(t.delivered, t.earliestLocked())
	}
	if err := r.seekLocked(ctx, from, nil); err != nil {
		return t.nread.Load(), err
	}
	return t.nread.Load(), nil
}

// ReadAhead consumes up to max bytes (at least one: it waits for data),
// keeping every byte consumed since the last Ack for replay. At EOF with
// nothing buffered it returns io.EOF, after a connection error that error.
// A read waiting when ReadAhead has to wait is superseded (ErrSuperseded):
// the caller owns the stream's inbound bytes. It returns the bytes and the
// inbound offset after them.
func (r *Reader) ReadAhead(ctx context.Context, max int) ([]byte, int64, error) {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.buffered() == 0 {
		if t.err != nil {
			return nil, t.nread.Load(), t.err
		}
		if t.eof {
			return nil, t.nread.Load(), io.EOF
		}
		for t.waiting {
			if t.waitCtx.Err() == nil {
				t.superseded = true
				t.signalLocked()
			}
			if err := t.waitForWaiterLocked(ctx); err != nil {
				return nil, t.nread.Load(), err
			}
		}
		if err := r.wait(ctx, "read"); err != nil {
			return nil, t.nread.Load(), err
		}
	}
	n := min(max, t.buffered())
	return t.consumeLocked(n), t.nread.Load(), nil
}

// Ack acknowledges the inbound bytes before off: kept bytes before it are
// forgotten and it counts as delivered. An off before what is kept changes
// nothing (a late duplicate); one past the bytes consumed is an
// *OffsetAheadError.
func (r *Reader) Ack(off int64) error {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nread.Load(); off > n {
		return &OffsetAheadError{Offset: off, Next: n}
	}
	if off <= t.earliestLocked() {
		return nil
	}
	t.ackLocked(off)
	return nil
}

// buffered is the number of bytes waiting to be read.
func (t *transport) buffered() int { return t.buf.len() }
