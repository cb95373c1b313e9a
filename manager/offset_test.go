package manager

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// The offset rules through the gRPC service, against real peers: each read
// and write carries the offset its caller has reached, and the daemon
// replays or skips accordingly.

// rd is one read RPC with an offset, shaped for the tables below.
type rd struct {
	kind string // read, readline, readexactly, readuntil
	n    int64
	sep  string
	off  *int64
}

// do runs the read and returns data, next_offset, whether it was
// incomplete, and the error.
func (r rd) do(ctx context.Context, c smv1.StreamServiceClient, id string) ([]byte, int64, bool, error) {
	switch r.kind {
	case "read":
		resp, err := c.Read(ctx, &smv1.ReadRequest{StreamId: id, N: i64(r.n), Offset: r.off})
		return resp.GetData(), resp.GetNextOffset(), false, err
	case "readline":
		resp, err := c.ReadLine(ctx, &smv1.ReadLineRequest{StreamId: id, Offset: r.off})
		return resp.GetData(), resp.GetNextOffset(), false, err
	case "readexactly":
		resp, err := c.ReadExactly(ctx, &smv1.ReadExactlyRequest{StreamId: id, N: r.n, Offset: r.off})
		return resp.GetData(), resp.GetNextOffset(), resp.GetIncomplete(), err
	case "readuntil":
		resp, err := c.ReadUntil(ctx, &smv1.ReadUntilRequest{StreamId: id, Separator: []byte(r.sep), Offset: r.off})
		return resp.GetData(), resp.GetNextOffset(), resp.GetIncomplete(), err
	}
	panic("unknown read " + r.kind)
}

func (r rd) String() string {
	off := "none"
	if r.off != nil {
		off = strconv.FormatInt(*r.off, 10)
	}
	return r.kind + "(n=" + strconv.FormatInt(r.n, 10) + ", offset " + off + ")"
}

// step is one read and what it must answer.
type step struct {
	rd
	want       string
	incomplete bool
	next       int64
	code       codes.Code // an error: its code, reason and metadata
	reason     string
	meta       map[string]string
	limitNext  *int64 // LimitOverrunError.next_offset
}

func TestReadOffsetRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	at := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name  string
		data  string
		fin   bool
		steps []step
	}{
		{"equal: ordinary reads", "abcdef", false, []step{
			{rd: rd{kind: "read", n: 2, off: at(0)}, want: "ab", next: 2},
			{rd: rd{kind: "read", n: 2, off: at(2)}, want: "cd", next: 4},
			{rd: rd{kind: "readexactly", n: 2, off: at(4)}, want: "ef", next: 6},
		}},
		{"behind in the window: the lost response again", "line one\nline two\n", false, []step{
			{rd: rd{kind: "readline", off: at(0)}, want: "line one\n", next: 9},
			{rd: rd{kind: "readline", off: at(0)}, want: "line one\n", next: 9},
			{rd: rd{kind: "readline", off: at(9)}, want: "line two\n", next: 18},
		}},
		{"a different read kind on replay", "0123456789", false, []step{
			{rd: rd{kind: "read", n: 10, off: at(0)}, want: "0123456789", next: 10},
			{rd: rd{kind: "readuntil", sep: "4", off: at(1)}, want: "1234", next: 5},
			{rd: rd{kind: "readexactly", n: 5, off: at(5)}, want: "56789", next: 10},
		}},
		{"behind the window", "abcdef", false, []step{
			{rd: rd{kind: "read", n: 3, off: at(0)}, want: "abc", next: 3},
			{rd: rd{kind: "read", n: 3, off: at(3)}, want: "def", next: 6},
			{rd: rd{kind: "read", n: 3, off: at(2)}, code: codes.OutOfRange, reason: ReasonOffsetBehind, meta: map[string]string{MetaEarliestOffset: "3"}},
			{rd: rd{kind: "read", n: 3, off: at(3)}, want: "def", next: 6},
		}},
		{"ahead", "abcdef", false, []step{
			{rd: rd{kind: "read", n: 3, off: at(0)}, want: "abc", next: 3},
			{rd: rd{kind: "readline", off: at(4)}, code: codes.OutOfRange, reason: ReasonOffsetAhead, meta: map[string]string{MetaNextOffset: "3"}},
			{rd: rd{kind: "read", n: 3, off: at(3)}, want: "def", next: 6},
		}},
		{"negative offset", "abc", false, []step{
			{rd: rd{kind: "read", n: 3, off: at(-1)}, code: codes.InvalidArgument, reason: ReasonInvalidArgument},
			{rd: rd{kind: "read", n: 3, off: at(0)}, want: "abc", next: 3},
		}},
		{"ReadLine drop, then retry from before it", "0123456789abcdefghij\nok\n", false, []step{
			{rd: rd{kind: "readline", off: at(0)}, code: codes.ResourceExhausted, reason: ReasonLineTooLong, limitNext: at(21)},
			{rd: rd{kind: "readline", off: at(0)}, code: codes.ResourceExhausted, reason: ReasonLineTooLong, limitNext: at(21)},
			{rd: rd{kind: "readline", off: at(21)}, want: "ok\n", next: 24},
		}},
		{"ReadLine drop without offsets: the next ReadLine goes on", "0123456789abcdefghij\nok\n", false, []step{
			{rd: rd{kind: "readline"}, code: codes.ResourceExhausted, reason: ReasonLineTooLong, limitNext: at(21)},
			{rd: rd{kind: "readline"}, want: "ok\n", next: 24},
		}},
		{"limit overrun, then retry", "0123456789abcdefghij", false, []step{
			{rd: rd{kind: "readuntil", sep: "\n", off: at(0)}, code: codes.ResourceExhausted, reason: ReasonLimitOverrun, limitNext: at(0)},
			{rd: rd{kind: "readexactly", n: 20, off: at(0)}, want: "0123456789abcdefghij", next: 20},
		}},
		{"EOF and incomplete reads replayed", "xyz", true, []step{
			{rd: rd{kind: "readexactly", n: 5, off: at(0)}, want: "xyz", incomplete: true, next: 3},
			{rd: rd{kind: "readexactly", n: 5, off: at(0)}, want: "xyz", incomplete: true, next: 3},
			{rd: rd{kind: "readuntil", sep: "q", off: at(1)}, want: "yz", incomplete: true, next: 3},
			{rd: rd{kind: "read", n: -1, off: at(1)}, want: "yz", next: 3},
			{rd: rd{kind: "read", n: -1, off: at(3)}, want: "", next: 3},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, peer := e.openTCP(t, func(r *smv1.OpenRequest) { r.Limit = i64(16) })
			id := resp.StreamId
			peerWrite(t, peer, tc.data)
			if tc.fin {
				peer.CloseWrite()
			}
			e.waitBuffered(t, id, len(tc.data))
			for i, s := range tc.steps {
				s.check(t, e, id, i)
			}
		})
	}
}

func (s step) check(t *testing.T, e *env, id string, i int) {
	t.Helper()
	data, next, incomplete, err := s.do(bg(t), e.c, id)
	if s.code != codes.OK {
		st := wantStatus(t, err, s.code, s.reason)
		for k, v := range s.meta {
			if got := errorInfo(st).Metadata[k]; got != v {
				t.Fatalf("step %d %v: metadata %s = %q, want %q", i, s.rd, k, got, v)
			}
		}
		if s.meta != nil {
			wantField(t, st, "offset")
		}
		if s.limitNext != nil {
			if lo := limitDetail(t, st); lo.NextOffset != *s.limitNext {
				t.Fatalf("step %d %v: LimitOverrunError.next_offset = %d, want %d", i, s.rd, lo.NextOffset, *s.limitNext)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("step %d %v: %v", i, s.rd, err)
	}
	if string(data) != s.want || incomplete != s.incomplete || next != s.next {
		t.Fatalf("step %d %v = %q incomplete=%v next=%d; want %q incomplete=%v next=%d", i, s.rd, data, incomplete, next, s.want, s.incomplete, s.next)
	}
}

func TestWriteOffsetRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	write := func(data string, off *int64) (*smv1.WriteResponse, error) {
		return e.c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte(data), Offset: off})
	}
	wantNext := func(what string, r interface{ GetNextOffset() int64 }, err error, want int64) {
		t.Helper()
		if err != nil || r.GetNextOffset() != want {
			t.Fatalf("%s: next_offset %d, %v; want %d", what, r.GetNextOffset(), err, want)
		}
	}
	r, err := write("hello ", i64(0))
	wantNext("first write", r, err, 6)
	r, err = write("hello ", i64(0))
	wantNext("retry, all accepted before", r, err, 6)
	lr, err := e.c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: id, Lines: [][]byte{[]byte("lo "), []byte("wo"), []byte("rld")}, Offset: i64(3)})
	wantNext("WriteLines overlapping its first line", lr, err, 11)
	r, err = write("!", nil)
	wantNext("no offset: appended", r, err, 12)

	_, err = write("x", i64(13))
	st := wantStatus(t, err, codes.OutOfRange, ReasonOffsetAhead)
	if got := errorInfo(st).Metadata[MetaNextOffset]; got != "12" {
		t.Fatalf("OFFSET_AHEAD next_offset metadata = %q, want 12", got)
	}
	wantField(t, st, "offset")
	_, err = write("x", i64(-2))
	wantField(t, wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument), "offset")

	if _, err := e.c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: id}); err != nil {
		t.Fatal(err)
	}
	if got := peerReadAll(t, peer); got != "hello world!" {
		t.Fatalf("peer got %q, want every byte once", got)
	}
	// A retry whose bytes were all accepted still succeeds after WriteEof;
	// new bytes do not.
	r, err = write("world!", i64(6))
	wantNext("retry after WriteEof", r, err, 12)
	_, err = write("more", i64(12))
	wantStatus(t, err, codes.FailedPrecondition, ReasonWriteAfterEOF)
}

// A refused write accepts nothing, offset or not.
func TestWriteOffsetBufferFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxWriteBuffer: 64 << 10})
	resp, _ := e.openTCP(t, nil)
	id := resp.StreamId
	chunk := strings.Repeat("z", 32<<10)
	var off int64
	for {
		r, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte(chunk), Offset: i64(off)})
		if err != nil {
			wantStatus(t, err, codes.ResourceExhausted, ReasonWriteBufferFull)
			break
		}
		off = r.NextOffset
		if off > 1<<30 {
			t.Fatal("the write buffer never filled")
		}
	}
	if got := e.stream(t, id).W.Written(); got != off {
		t.Fatalf("written %d after a refused write, want %d", got, off)
	}
}

// A read whose deadline fired while it waited gives way to the next read
// at once: never CONCURRENT_READ. With offsets nothing is lost either, even
// when the first read took bytes that arrived just before its deadline at
// the daemon, after its caller had given up (without offsets those bytes
// are gone: the answer that carried them was lost).
func TestReadAfterDeadlineNeverConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	t.Run("without offsets", func(t *testing.T) {
		t.Parallel()
		resp, _ := e.openTCP(t, nil)
		for i := range 100 {
			for j, d := range []time.Duration{time.Millisecond, 3 * time.Millisecond} {
				_, err := e.c.Read(within(t, d), &smv1.ReadRequest{StreamId: resp.StreamId, N: i64(100)})
				if code := status.Code(err); code != codes.DeadlineExceeded {
					t.Fatalf("round %d read %d on an idle stream = %v, want DEADLINE_EXCEEDED", i, j, err)
				}
			}
		}
	})
	t.Run("with offsets", func(t *testing.T) {
		t.Parallel()
		resp, peer := e.openTCP(t, nil)
		id := resp.StreamId
		var off int64
		for i := range 50 {
			_, err := e.c.Read(within(t, time.Millisecond), &smv1.ReadRequest{StreamId: id, N: i64(100), Offset: i64(off)})
			if code := status.Code(err); code != codes.DeadlineExceeded {
				t.Fatalf("round %d: read with 1 ms on an idle stream = %v, want DEADLINE_EXCEEDED", i, err)
			}
			want := "round " + strconv.Itoa(i)
			got := make(chan *smv1.ReadResponse, 1)
			go func() {
				for {
					r, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(100), Offset: i64(off)})
					if status.Code(err) == codes.Aborted {
						// The abandoned read's handler started after this
						// one and took its place: retried, as clients do.
						continue
					}
					if err != nil {
						t.Errorf("round %d: read after a deadline: %v", i, err)
					}
					got <- r
					return
				}
			}()
			peerWrite(t, peer, want)
			r := <-got
			if r == nil {
				t.FailNow()
			}
			if string(r.Data) != want || r.NextOffset != off+int64(len(want)) {
				t.Fatalf("round %d: got %q next %d, want %q next %d", i, r.Data, r.NextOffset, want, off+int64(len(want)))
			}
			off = r.NextOffset
		}
	})
}

// A read with an offset supersedes one still waiting: the old one ends
// with ABORTED / READ_SUPERSEDED and the new one gets the bytes.
func TestReadSupersedes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	first := make(chan error, 1)
	go func() {
		_, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(10), Offset: i64(0)})
		first <- err
	}()
	waitFor(t, "the first read to wait", e.stream(t, id).R.Waiting)
	second := make(chan *smv1.ReadResponse, 1)
	go func() {
		r, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(10), Offset: i64(0)})
		if err != nil {
			t.Errorf("superseding read: %v", err)
		}
		second <- r
	}()
	wantStatus(t, <-first, codes.Aborted, ReasonReadSuperseded)
	peerWrite(t, peer, "data")
	if r := <-second; r == nil || string(r.Data) != "data" || r.NextOffset != 4 {
		t.Fatalf("superseding read = %v, want data, next 4", r)
	}
}

// Offsets survive the gRPC connection: a client on a new connection
// resumes, and replays what the old connection lost.
func TestOffsetsAcrossConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "first second")
	e.waitBuffered(t, id, 12)
	cc := e.dial(t)
	c1 := smv1.NewStreamServiceClient(cc)
	if r, err := c1.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(6), Offset: i64(0)}); err != nil || string(r.Data) != "first " {
		t.Fatalf("read on the first connection = %v, %v", r, err)
	}
	cc.Close()
	// The answer above counts as lost: the new connection asks from 0.
	c2 := smv1.NewStreamServiceClient(e.dial(t))
	r, err := c2.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(100), Offset: i64(0)})
	if err != nil || string(r.Data) != "first second" || r.NextOffset != 12 {
		t.Fatalf("resumed read = %v, %v; want every byte from offset 0", r, err)
	}
	w, err := c2.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte("ab"), Offset: i64(0)})
	if err != nil || w.NextOffset != 2 {
		t.Fatalf("write = %v, %v", w, err)
	}
	if got := peerRead(t, peer, 2); got != "ab" {
		t.Fatalf("peer got %q", got)
	}
	info := e.info(t, id)
	if info.Retained != 12 || info.EarliestOffset != 0 || info.BytesIn != 12 {
		t.Fatalf("ListStreams retained %d earliest %d bytes_in %d, want 12, 0, 12", info.Retained, info.EarliestOffset, info.BytesIn)
	}
	// The next read acknowledges: nothing is retained before it.
	peerWrite(t, peer, "!")
	if r, err := c2.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(1), Offset: i64(12)}); err != nil || string(r.Data) != "!" {
		t.Fatalf("read = %v, %v", r, err)
	}
	if info := e.info(t, id); info.Retained != 1 || info.EarliestOffset != 12 {
		t.Fatalf("after an acknowledging read: retained %d earliest %d, want 1 and 12", info.Retained, info.EarliestOffset)
	}
}
