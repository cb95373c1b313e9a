package streamcore

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzOffsetReplay drives a replaying reader with random reads whose
// results are randomly lost on the way (the client never learns them and
// asks again from the offset it had), with random deadlines and late
// duplicates of older reads, while the peer sends random chunks. The client checks every result against what the
// peer sent at that offset; at the end it must have covered every byte
// exactly once (results, plus lines readline dropped), in order.
//
//	go test -fuzz=FuzzOffsetReplay -fuzztime=60s ./streamcore
func FuzzOffsetReplay(f *testing.F) {
	f.Add([]byte("\x00\x01\x02\x03\x84\x85\x06\x07"), []byte("hello\nworld\nthis line is far too long for the limit\nok\n"))
	f.Add([]byte("\x82\x82\x02\x03\x03\x83\x01\x81\x01"), []byte("abababab\nab\n\n\nxyz"))
	f.Add([]byte("\x04\x04\x04\x00\x80\x00\x05\x01"), bytes.Repeat([]byte("0123456789"), 9))
	f.Add([]byte("\x03\x83\x83\x03\x02\x82\x00\x00\x00"), []byte("no newline at all in these bytes, and more than the limit"))
	f.Fuzz(func(t *testing.T, ops, payload []byte) {
		if len(ops) > 200 || len(payload) > 4096 {
			t.Skip()
		}
		const limit = 16
		r, w, _, pw, err := SocketPair(&Options{Limit: limit, Replay: true})
		if err != nil {
			t.Fatal(err)
		}
		defer stopStream(pw)
		defer stopStream(w)
		c := &replayClient{t: t, r: r}
		sent := 0
		send := func(n int) {
			n = min(n, len(payload)-sent)
			if n <= 0 {
				return
			}
			if err := pw.Write(payload[sent : sent+n]); err != nil {
				t.Fatalf("peer write: %v", err)
			}
			c.sent = append(c.sent, payload[sent:sent+n]...)
			sent += n
		}
		for i, b := range ops {
			lost := b&0x80 != 0
			if b&0x40 != 0 && b&0x07 < 4 {
				// A late duplicate of an older read, from a connection the
				// client gave up on: its answer goes nowhere.
				back := int64(ops[(i+1)%len(ops)] & 0x1f)
				c.stale(max(r.EarliestOffset(), c.off-back))
			}
			switch b & 0x07 {
			case 0:
				c.step(ReadOp{Kind: OpRead, N: int(b>>3&0x0f) + 1}, lost)
			case 1:
				c.step(ReadOp{Kind: OpReadLine}, lost)
			case 2:
				c.step(ReadOp{Kind: OpReadExactly, N: int(b >> 3 & 0x0f)}, lost)
			case 3:
				c.step(ReadOp{Kind: OpReadUntil, Separators: [][]byte{[]byte("ab"), []byte("\n")}}, lost)
			default:
				send(int(b>>3&0x0f)*3 + 1)
			}
		}
		send(len(payload))
		pw.Close()
		// Read the rest; a lost response is asked for again.
		for i := 0; !c.eof; i++ {
			if i > len(payload)+10 {
				t.Fatalf("no EOF after %d reads at offset %d of %d", i, c.off, len(c.sent))
			}
			c.step(ReadOp{Kind: OpRead, N: -1}, i == 0)
		}
		if c.off != int64(len(c.sent)) {
			t.Fatalf("covered %d bytes of %d", c.off, len(c.sent))
		}
	})
}

// replayClient is a remote caller's view of a stream: the offset it has
// reached and the bytes the peer sent (to check results against).
type replayClient struct {
	t    *testing.T
	r    *Reader
	sent []byte
	off  int64
	eof  bool
}

// stale runs a read from an older offset whose answer nobody gets.
func (c *replayClient) stale(from int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, _, _ = c.r.Run(ctx, from, ReadOp{Kind: OpRead, N: 3})
}

// step runs op from the client's offset. The read may time out waiting
// (that loses nothing); a lost result is checked but not taken, so the
// next step asks from the same offset again.
func (c *replayClient) step(op ReadOp, lost bool) {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
	if op.Kind == OpRead && op.N < 0 {
		// the final reads: the peer has closed, nothing waits long
		ctx, cancel = context.WithTimeout(context.Background(), failAfter)
	}
	defer cancel()
	data, next, err := c.r.Run(ctx, c.off, op)
	var (
		ie *IncompleteReadError
		ll *LineTooLongError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		if next != c.off {
			t.Fatalf("a read that timed out moved the offset from %d to %d", c.off, next)
		}
		return
	case errors.As(err, &ie):
		data = ie.Partial
		c.eof = !lost
	case errors.As(err, &ll):
		dropped := c.sent[c.off:next]
		if i := bytes.IndexByte(dropped, '\n'); i >= 0 && i != len(dropped)-1 {
			t.Fatalf("readline dropped %q: past the end of a line", dropped)
		}
		if !lost {
			c.off = next
		}
		return
	case errors.As(err, new(*LimitOverrunError)):
		if next != c.off {
			t.Fatalf("a limit overrun moved the offset from %d to %d", c.off, next)
		}
		return
	case err != nil:
		t.Fatalf("Run(%d, %+v): %v", c.off, op, err)
	}
	end := c.off + int64(len(data))
	if end > int64(len(c.sent)) || !bytes.Equal(data, c.sent[c.off:end]) {
		t.Fatalf("Run(%d, %+v) = %q, want the bytes sent at that offset", c.off, op, data)
	}
	if next != end {
		t.Fatalf("Run(%d, %+v): next %d, want %d", c.off, op, next, end)
	}
	if op.Kind == OpRead && op.N < 0 && err == nil {
		c.eof = !lost
	}
	if !lost {
		c.off = next
	}
}
