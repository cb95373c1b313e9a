package streamcore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Offsets: Reader.Run positions each read at an inbound offset and replays
// what a caller lost; Writer.WriteAt skips what a retried write already
// delivered. These run over real TCP sockets with a raw peer.

func replayEnv(t *testing.T, limit int) *env {
	t.Helper()
	return openTCP(t, &Options{Limit: limit, Replay: true})
}

// run is Run with the test's context, failing on an unexpected error.
func run(t *testing.T, r *Reader, from int64, op ReadOp) ([]byte, int64) {
	t.Helper()
	data, next, err := r.Run(testCtx(t), from, op)
	if err != nil {
		t.Fatalf("Run(from %d, %+v): %v", from, op, err)
	}
	return data, next
}

func readN(n int) ReadOp { return ReadOp{Kind: OpRead, N: n} }

func TestRunOffsets(t *testing.T) {
	t.Parallel()
	line := ReadOp{Kind: OpReadLine}
	for _, tc := range []struct {
		name string
		// sent by the peer before the reads (then FIN when fin is set)
		data string
		fin  bool
		// steps: each is a Run from an offset; want is the result (or
		// wantErr), next the offset after it
		steps []offsetStep
	}{
		{
			name: "equal offsets acknowledge; retained is the last read",
			data: "abcdefgh",
			steps: []offsetStep{
				{from: 0, op: readN(3), want: "abc", next: 3, retained: 3, earliest: 0},
				{from: 3, op: readN(2), want: "de", next: 5, retained: 2, earliest: 3},
				{from: 5, op: ReadOp{Kind: OpReadExactly, N: 3}, want: "fgh", next: 8, retained: 3, earliest: 5},
			},
		},
		{
			name: "behind inside the window: the lost result comes back",
			data: "hello\nworld\n",
			steps: []offsetStep{
				{from: 0, op: line, want: "hello\n", next: 6},
				// the response of that read was lost: the same read again
				{from: 0, op: line, want: "hello\n", next: 6},
				{from: 6, op: line, want: "world\n", next: 12},
			},
		},
		{
			name: "a different read on replay sees the same bytes",
			data: "0123456789",
			steps: []offsetStep{
				{from: 0, op: readN(8), want: "01234567", next: 8},
				{from: 2, op: ReadOp{Kind: OpReadUntil, Separators: [][]byte{[]byte("5")}}, want: "2345", next: 6},
				{from: 6, op: ReadOp{Kind: OpReadExactly, N: 4}, want: "6789", next: 10},
			},
		},
		{
			name: "behind the window: OFFSET_BEHIND, nothing changes",
			data: "abcdef",
			steps: []offsetStep{
				{from: 0, op: readN(2), want: "ab", next: 2},
				{from: 2, op: readN(2), want: "cd", next: 4},
				{from: 1, op: readN(2), behind: 2},
				{from: 4, op: readN(9), want: "ef", next: 6},
			},
		},
		{
			name: "ahead: OFFSET_AHEAD, nothing changes",
			data: "abcdef",
			steps: []offsetStep{
				{from: 0, op: readN(2), want: "ab", next: 2},
				{from: 3, op: readN(2), ahead: 2},
				{from: 2, op: readN(2), want: "cd", next: 4},
			},
		},
		{
			name: "a late duplicate moves the stream back; the caller's offset moves it on",
			data: "hello\nworld\n",
			steps: []offsetStep{
				{from: 0, op: line, want: "hello\n", next: 6},
				// an old Read(1) from a connection the caller gave up on
				{from: 0, op: readN(1), want: "h", next: 1},
				{from: 6, op: line, want: "world\n", next: 12},
				{from: 13, op: line, ahead: 12},
			},
		},
		{
			name: "a late duplicate that read further: the caller replays from its offset",
			data: "hello\nworld\n",
			steps: []offsetStep{
				{from: 0, op: readN(2), want: "he", next: 2},
				{from: 0, op: readN(100), want: "hello\nworld\n", next: 12},
				{from: 2, op: line, want: "llo\n", next: 6},
				{from: 13, op: readN(100), ahead: 12},
				{from: 7, op: readN(100), want: "orld\n", next: 12},
			},
		},
		{
			name: "readline drop then retry: the same error, then the next line",
			data: "0123456789\nok\n",
			steps: []offsetStep{
				{from: 0, op: line, tooLong: true, next: 11},
				// the error's answer was lost: retried from 0, dropped again
				{from: 0, op: line, tooLong: true, next: 11},
				{from: 11, op: line, want: "ok\n", next: 14},
			},
		},
		{
			name: "readline drop, then a different read from before it",
			data: "0123456789\nok\n",
			steps: []offsetStep{
				{from: 0, op: line, tooLong: true, next: 11},
				{from: 0, op: ReadOp{Kind: OpReadExactly, N: 11}, want: "0123456789\n", next: 11},
				{from: 11, op: line, want: "ok\n", next: 14},
			},
		},
		{
			name: "limit overrun then retry: nothing consumed",
			data: "0123456789abcdef",
			steps: []offsetStep{
				{from: 0, op: ReadOp{Kind: OpReadUntil, Separators: [][]byte{[]byte("\n")}}, overrun: true, next: 0},
				{from: 0, op: readN(4), want: "0123", next: 4},
			},
		},
		{
			name: "incomplete at EOF, replayed",
			data: "abc",
			fin:  true,
			steps: []offsetStep{
				{from: 0, op: ReadOp{Kind: OpReadExactly, N: 5}, incomplete: "abc", next: 3},
				{from: 0, op: ReadOp{Kind: OpReadExactly, N: 5}, incomplete: "abc", next: 3},
				{from: 0, op: readN(-1), want: "abc", next: 3},
				{from: 3, op: readN(-1), want: "", next: 3},
			},
		},
		{
			name: "EOF result replayed: read to EOF, lost, read again",
			data: "tail",
			fin:  true,
			steps: []offsetStep{
				{from: 0, op: readN(-1), want: "tail", next: 4},
				{from: 0, op: ReadOp{Kind: OpReadUntil, Separators: [][]byte{[]byte("x")}}, incomplete: "tail", next: 4},
				{from: 4, op: line, want: "", next: 4},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := replayEnv(t, 8)
			e.sendSync(tc.data)
			if tc.fin {
				e.fin()
				waitUntil(t, "EOF received", func() bool { return eofReceived(e.r) })
			}
			for i, s := range tc.steps {
				s.check(t, i, e.r)
			}
		})
	}
}

type offsetStep struct {
	from       int64
	op         ReadOp
	want       string
	incomplete string // an *IncompleteReadError with this partial
	tooLong    bool   // a *LineTooLongError
	overrun    bool   // a *LimitOverrunError
	behind     int64  // an *OffsetBehindError with this Earliest
	ahead      int64  // an *OffsetAheadError with this Next
	next       int64
	// checked when non-zero
	retained int
	earliest int64
}

func (s offsetStep) check(t *testing.T, i int, r *Reader) {
	t.Helper()
	data, next, err := r.Run(testCtx(t), s.from, s.op)
	switch {
	case s.behind != 0:
		if e := asErr[*OffsetBehindError](t, err); e.Earliest != s.behind || e.Offset != s.from {
			t.Fatalf("step %d: %+v, want offset %d earliest %d", i, e, s.from, s.behind)
		}
		return
	case s.ahead != 0:
		if e := asErr[*OffsetAheadError](t, err); e.Next != s.ahead || e.Offset != s.from {
			t.Fatalf("step %d: %+v, want offset %d next %d", i, e, s.from, s.ahead)
		}
		return
	case s.tooLong:
		asErr[*LineTooLongError](t, err)
	case s.overrun:
		if errors.As(err, new(*LineTooLongError)) {
			t.Fatalf("step %d: LineTooLongError, want a plain LimitOverrunError", i)
		}
		asErr[*LimitOverrunError](t, err)
	case s.incomplete != "":
		if e := asErr[*IncompleteReadError](t, err); string(e.Partial) != s.incomplete {
			t.Fatalf("step %d: partial %q, want %q", i, e.Partial, s.incomplete)
		}
	default:
		wantBytes(t, "step", data, err, s.want)
	}
	if next != s.next {
		t.Fatalf("step %d: next offset %d, want %d", i, next, s.next)
	}
	if s.retained != 0 && r.Retained() != s.retained {
		t.Fatalf("step %d: retained %d, want %d", i, r.Retained(), s.retained)
	}
	if s.earliest != 0 && r.EarliestOffset() != s.earliest {
		t.Fatalf("step %d: earliest %d, want %d", i, r.EarliestOffset(), s.earliest)
	}
}

// A replay puts the lost bytes in front of bytes that arrived since.
func TestRunReplayBeforeNewBytes(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	e.sendSync("first")
	run(t, e.r, 0, readN(100))
	e.sendSync("second")
	if data, next := run(t, e.r, 0, readN(100)); string(data) != "firstsecond" || next != 11 {
		t.Fatalf("replay = %q next %d, want %q next 11", data, next, "firstsecond")
	}
	if e.r.Buffered() != 0 || e.r.Retained() != 11 {
		t.Fatalf("buffered %d retained %d, want 0 and 11", e.r.Buffered(), e.r.Retained())
	}
}

// FromDelivered: a result never marked delivered is read again by the
// next read without offset; a delivered one is not.
func TestRunFromDelivered(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	e.sendSync("abcdef")
	data, next := run(t, e.r, FromDelivered, readN(2))
	wantBytes(t, "first read", data, nil, "ab")
	e.r.Delivered(next)
	run(t, e.r, FromDelivered, readN(2)) // "cd": its caller left, not delivered
	data, next = run(t, e.r, FromDelivered, readN(10))
	wantBytes(t, "after an undelivered read", data, nil, "cdef")
	if next != 6 {
		t.Fatalf("next = %d, want 6", next)
	}
	e.r.Delivered(next)
	if _, _, err := e.r.Run(cancelledCtx(), FromDelivered, readN(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run on an ended context = %v, want context.Canceled", err)
	}
	if e.r.Consumed() != 6 {
		t.Fatalf("consumed = %d after a read whose caller was gone, want 6", e.r.Consumed())
	}
}

// A read whose context ended while it waited never makes its successor
// fail with ConcurrentReadError, however close the two are.
func TestAbandonedReadGivesWay(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"delivered", "offset", "plain"} {
		e := replayEnv(t, 64)
		for i := range 300 {
			from := FromDelivered
			if mode == "offset" {
				from = e.r.Consumed()
			}
			ctx, cancel := context.WithCancel(testCtx(t))
			first := goRead(func() ([]byte, error) {
				d, _, err := e.r.Run(ctx, from, readN(10))
				return d, err
			})
			waitForWaiter(t, e.r)
			cancel()
			// No wait for the first to leave: the second read comes at once.
			second := goRead(func() ([]byte, error) {
				if mode == "plain" {
					return e.r.Read(testCtx(t), 10)
				}
				d, _, err := e.r.Run(testCtx(t), from, readN(10))
				return d, err
			})
			waitForWaiter(t, e.r)
			e.send("x")
			if res := recv(t, first); !errors.Is(res.err, context.Canceled) {
				t.Fatalf("round %d: abandoned read = %q, %v; want context.Canceled", i, res.data, res.err)
			}
			res := recv(t, second)
			wantBytes(t, "the successor", res.data, res.err, "x")
			e.r.Delivered(e.r.Consumed())
		}
	}
}

// A read with an offset takes the place of a read still waiting: the
// waiting one ends with ErrSuperseded, consuming nothing. Without an
// offset, a second read that has to wait gets ConcurrentReadError.
func TestOffsetSupersedesWaitingRead(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	first := goRead(func() ([]byte, error) {
		d, _, err := e.r.Run(testCtx(t), 0, readN(10))
		return d, err
	})
	waitForWaiter(t, e.r)
	if _, _, err := e.r.Run(testCtx(t), FromDelivered, readN(1)); !errors.Is(err, ErrConcurrentRead) {
		t.Fatalf("a read without offset under a live waiter = %v, want ConcurrentReadError", err)
	}
	second := goRead(func() ([]byte, error) {
		d, _, err := e.r.Run(testCtx(t), 0, readN(10))
		return d, err
	})
	if res := recv(t, first); !errors.Is(res.err, ErrSuperseded) {
		t.Fatalf("superseded read = %q, %v; want ErrSuperseded", res.data, res.err)
	}
	e.send("data")
	res := recv(t, second)
	wantBytes(t, "the superseding read", res.data, res.err, "data")
}

// A read with an offset outside the window changes nothing, not even a
// waiting read.
func TestBadOffsetLeavesWaiter(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	e.sendSync("abc")
	run(t, e.r, 0, readN(3))
	waiting := goRead(func() ([]byte, error) {
		d, _, err := e.r.Run(testCtx(t), 3, readN(10)) // acknowledges "abc"
		return d, err
	})
	waitForWaiter(t, e.r)
	if _, _, err := e.r.Run(testCtx(t), 0, readN(10)); asErr[*OffsetBehindError](t, err).Earliest != 3 {
		t.Fatalf("behind: %v", err)
	}
	if _, _, err := e.r.Run(testCtx(t), 4, readN(10)); asErr[*OffsetAheadError](t, err).Next != 3 {
		t.Fatalf("ahead: %v", err)
	}
	e.send("d")
	res := recv(t, waiting)
	wantBytes(t, "the waiting read", res.data, res.err, "d")
}

// Without Options.Replay nothing is kept: only the current offset works.
func TestRunWithoutReplay(t *testing.T) {
	t.Parallel()
	e := openTCP(t, &Options{})
	e.sendSync("abcd")
	data, next := run(t, e.r, 0, readN(2))
	wantBytes(t, "read", data, nil, "ab")
	if e.r.Retained() != 0 {
		t.Fatalf("retained %d without Replay, want 0", e.r.Retained())
	}
	if _, _, err := e.r.Run(testCtx(t), 0, readN(2)); asErr[*OffsetBehindError](t, err).Earliest != 2 {
		t.Fatalf("behind: %v", err)
	}
	data, _ = run(t, e.r, next, readN(2))
	wantBytes(t, "read", data, nil, "cd")
	data, _ = run(t, e.r, FromDelivered, readN(0))
	wantBytes(t, "read(0)", data, nil, "")
}

// The plain asyncio methods acknowledge everything before them, so a
// replaying reader used through them keeps nothing but the last result.
func TestPlainReadsAcknowledge(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	e.sendSync("a\nb\nc\n")
	for _, want := range []string{"a\n", "b\n"} {
		got, err := e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline", got, err, want)
		if e.r.Retained() != 2 || e.r.EarliestOffset() != e.r.Consumed()-2 {
			t.Fatalf("retained %d earliest %d consumed %d, want the last line only", e.r.Retained(), e.r.EarliestOffset(), e.r.Consumed())
		}
	}
	// Unread forgets what is retained: it changes the offsets.
	e.r.Unread([]byte("b\n"))
	if e.r.Retained() != 0 || e.r.Consumed() != 2 {
		t.Fatalf("after Unread: retained %d consumed %d, want 0 and 2", e.r.Retained(), e.r.Consumed())
	}
	got, err := e.r.ReadExactly(testCtx(t), 4)
	wantBytes(t, "after Unread", got, err, "b\nc\n")
}

// A result over ReadOp.Max consumes nothing.
func TestRunMax(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	e.sendSync("0123456789\n")
	for _, op := range []ReadOp{
		{Kind: OpReadLine, Max: 5},
		{Kind: OpReadUntil, Separators: [][]byte{[]byte("9")}, Max: 5},
		{Kind: OpReadExactly, N: 6, Max: 5},
		{Kind: OpRead, N: -1, Max: 5},
	} {
		if op.Kind == OpRead {
			e.fin()
			waitUntil(t, "EOF received", func() bool { return eofReceived(e.r) })
		}
		_, next, err := e.r.Run(testCtx(t), 0, op)
		asErr[*ResultTooLargeError](t, err)
		if next != 0 || e.r.Buffered() != 11 {
			t.Fatalf("%+v: next %d buffered %d, want 0 and 11", op, next, e.r.Buffered())
		}
	}
	// EOF partial over Max
	_, _, err := e.r.Run(testCtx(t), 0, ReadOp{Kind: OpReadUntil, Separators: [][]byte{[]byte("x")}, Max: 5})
	asErr[*ResultTooLargeError](t, err)
	_, next, err := e.r.Run(testCtx(t), 0, ReadOp{Kind: OpReadUntil, Separators: [][]byte{[]byte("x")}, Max: 11})
	if e := asErr[*IncompleteReadError](t, err); len(e.Partial) != 11 || next != 11 {
		t.Fatalf("partial %q next %d, want 11 bytes", e.Partial, next)
	}
}

func TestRunValidation(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	for _, op := range []ReadOp{
		{Kind: OpReadExactly, N: -1},
		{Kind: OpReadUntil},
		{Kind: OpReadUntil, Separators: [][]byte{{}}},
		{Kind: ReadKind(99)},
	} {
		if _, _, err := e.r.Run(testCtx(t), 0, op); !errors.As(err, new(*ValueError)) {
			t.Errorf("%+v: got %v, want a ValueError", op, err)
		}
	}
}

func TestWriteAt(t *testing.T) {
	t.Parallel()
	e := openTCP(t, &Options{})
	write := func(off int64, lines ...string) (int64, error) {
		t.Helper()
		bs := make([][]byte, len(lines))
		for i, l := range lines {
			bs[i] = []byte(l)
		}
		return e.w.WriteAt(off, bs...)
	}
	want := func(what string, next int64, err error, wantNext int64) {
		t.Helper()
		if err != nil || next != wantNext {
			t.Fatalf("%s: next %d, err %v; want next %d", what, next, err, wantNext)
		}
	}
	next, err := write(0, "hello ")
	want("first write", next, err, 6)
	next, err = write(0, "hello ") // a retry: all of it was accepted
	want("total overlap", next, err, 6)
	next, err = write(3, "lo ", "wor", "ld") // partial overlap across lines
	want("partial overlap", next, err, 11)
	next, err = write(-1, "!") // no offset: appended
	want("no offset", next, err, 12)
	if next, err = write(20, "x"); asErr[*OffsetAheadError](t, err).Next != 12 || next != 12 {
		t.Fatalf("ahead: next %d err %v", next, err)
	}
	e.w.Close()
	got, err := e.peerReadAll()
	wantBytes(t, "peer", got, err, "hello world!")
	// After Close: a retry that adds nothing still succeeds; new bytes are refused.
	next, err = write(6, "world!")
	want("overlap after close", next, err, 12)
	if _, err := write(12, "more"); !errors.Is(err, ErrClosed) {
		t.Fatalf("new bytes after close: %v, want ErrClosed", err)
	}
}

// A refused write accepts nothing, whatever its overlap.
func TestWriteAtBufferFull(t *testing.T) {
	t.Parallel()
	e := openTCP(t, &Options{MaxWriteBuffer: 16})
	if err := e.w.SetWriteBufferLimits(1, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the kernel's buffers so that bytes stay in ours.
	big := strings.Repeat("z", 8<<20)
	var off int64
	for e.w.BufferSize() == 0 {
		n, err := e.w.WriteAt(off, []byte(big[:8]))
		if err != nil {
			t.Fatalf("filling: %v", err)
		}
		off = n
	}
	before := e.w.Written()
	if _, err := e.w.WriteAt(before-4, []byte(strings.Repeat("y", 30))); !errors.As(err, new(*WriteBufferFullError)) {
		t.Fatalf("oversized write = %v, want WriteBufferFullError", err)
	}
	if e.w.Written() != before {
		t.Fatalf("written %d after a refused write, want %d", e.w.Written(), before)
	}
}

// StartTLS, too, lets a read whose caller gave up leave instead of
// failing with ConcurrentReadError.
func TestStartTLSAfterAbandonedRead(t *testing.T) {
	t.Parallel()
	p := getPKI(t)
	for i := range 20 {
		e := replayEnv(t, 64)
		ctx, cancel := context.WithCancel(testCtx(t))
		read := goRead(func() ([]byte, error) { return e.r.Read(ctx, 10) })
		waitForWaiter(t, e.r)
		cancel()
		ccfg := p.clientConfig()
		ccfg.ServerName = "localhost"
		// The peer never answers the handshake: it fails by its timeout.
		err := e.w.StartTLS(testCtx(t), ccfg, 20*time.Millisecond)
		if errors.Is(err, ErrConcurrentRead) {
			t.Fatalf("round %d: StartTLS after an abandoned read: %v", i, err)
		}
		asErr[*HandshakeTimeoutError](t, err)
		if res := recv(t, read); !errors.Is(res.err, context.Canceled) {
			t.Fatalf("round %d: abandoned read = %q, %v", i, res.data, res.err)
		}
	}
}
