package manager

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore/streamtest"
)

// The request bytes a Session's calls in flight hold are bounded: writes
// queued behind a drain that cannot finish stop the daemon reading the
// session at MaxSessionBytes (HTTP/2 flow control holds the client back);
// once the peer reads, everything is answered and the bytes are released.
func TestSessionBytesBound(t *testing.T) {
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	s := newSession(t, e.c)
	// Fill the socket and the write buffer so that a drain waits.
	chunk := make([]byte, 256<<10)
	for {
		r := s.do(t, &smv1.WriteRequest{StreamId: id, Data: chunk})
		if r.GetError() != nil {
			wantAnswerStatus(t, r, codes.ResourceExhausted, ReasonWriteBufferFull)
			break
		}
	}
	drain := s.start(t, sreq(&smv1.DrainRequest{StreamId: id}))
	const writes = 100 // 25 MiB, past MaxSessionBytes
	sent := make(chan *pending, writes)
	go func() {
		defer close(sent)
		for range writes {
			sent <- s.start(t, sreq(&smv1.WriteRequest{StreamId: id, Data: chunk}))
		}
	}()
	waitFor(t, "the session to hold MaxSessionBytes", func() bool { return e.svc.sessionBytes.Load() >= MaxSessionBytes })
	if got, limit := e.svc.sessionBytes.Load(), int64(MaxSessionBytes+len(chunk)+64); got > limit {
		t.Fatalf("session holds %d request bytes, more than %d", got, limit)
	}
	if n := len(sent); n >= writes {
		t.Fatalf("all %d writes were sent: nothing held the client back", n)
	}
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	if r := drain.wait(t); r.GetError() != nil {
		t.Fatalf("drain answered %v", r)
	}
	answered := 0
	for p := range sent {
		r := p.wait(t)
		if e := r.GetError(); e != nil && e.Code != int32(codes.ResourceExhausted) {
			t.Fatalf("write answered %v", r)
		}
		answered++
	}
	if answered != writes {
		t.Fatalf("%d writes answered, want %d", answered, writes)
	}
	waitFor(t, "the session's bytes to be released", func() bool { return e.svc.sessionBytes.Load() == 0 })
}

// A read's ack must lie in [0, offset].
func TestReadAckValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, _ := e.openTCP(t, nil)
	for _, ack := range []int64{-1, 5} {
		_, err := e.c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: resp.StreamId, N: 1, Offset: i64(4), Ack: i64(ack)})
		wantField(t, wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument), "ack")
	}
}

// A client may reuse a call_id as soon as it has the answer.
func TestSessionCallIDReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	go func() { _, _ = io.Copy(peer, peer) }()
	s, err := e.c.Session(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	write := &smv1.SessionRequest{CallId: 1, Op: &smv1.SessionRequest_Write{Write: &smv1.WriteRequest{StreamId: resp.StreamId, Data: []byte("x")}}}
	read := &smv1.SessionRequest{CallId: 2, Op: &smv1.SessionRequest_ReadExactly{ReadExactly: &smv1.ReadExactlyRequest{StreamId: resp.StreamId, N: 1}}}
	for i := range 500 {
		if err := s.Send(write); err != nil {
			t.Fatal(err)
		}
		if err := s.Send(read); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			r, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.GetError() != nil {
				t.Fatalf("round %d: call %d answered %v", i, r.CallId, r)
			}
		}
	}
}

// At debug, each session call is logged as a unary call is: its op, its
// call_id and its code.
func TestSessionCallLog(t *testing.T) {
	e := newEnv(t, Config{})
	var logs streamtest.Buffer
	e.svc.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newSession(t, e.c)
	s.do(t, &smv1.OpenPairRequest{})
	s.do(t, &smv1.ReadExactlyRequest{StreamId: "s-nope", N: 1})
	for _, want := range []string{"session.op=open_pair", "session.op=read_exactly", "grpc.code=NotFound", "grpc.code=OK"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs.String())
		}
	}
}
