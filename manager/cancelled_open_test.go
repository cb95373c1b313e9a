package manager

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// sessionAnswer returns the session's answer with call_id id, skipping
// others.
func sessionAnswer(t *testing.T, s smv1.StreamService_SessionClient, id int64) *smv1.SessionResponse {
	t.Helper()
	for {
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.CallId == id {
			return r
		}
	}
}

// TestSessionLateCancel: a cancel that crosses the answer of an open,
// open_pair, start_server or accept undoes what the answer created while no
// call has used it, and leaves it alone once a call has.
func TestSessionLateCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	ln := listenTCP(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s, err := e.c.Session(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *smv1.SessionRequest) {
		t.Helper()
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	cancel := func(id int64) bool {
		t.Helper()
		send(&smv1.SessionRequest{CallId: 1000 + id, Op: &smv1.SessionRequest_Cancel{Cancel: &smv1.CancelCallRequest{CallId: id}}})
		return sessionAnswer(t, s, 1000+id).GetCancel().GetCancelled()
	}
	open := &smv1.SessionRequest_Open{Open: &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(ln.Addr())}}}}

	// open, then a cancel that came too late: the stream is released.
	send(&smv1.SessionRequest{CallId: 1, Op: open})
	id := sessionAnswer(t, s, 1).GetOpen().GetStreamId()
	if !cancel(1) {
		t.Fatal("a late cancel of an unused open: cancelled = false, want true")
	}
	_, err = e.c.AtEof(bg(t), &smv1.AtEofRequest{StreamId: id})
	wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)

	// open, used, then the cancel: nothing is undone.
	send(&smv1.SessionRequest{CallId: 2, Op: open})
	id = sessionAnswer(t, s, 2).GetOpen().GetStreamId()
	e.write(t, id, "used")
	if cancel(2) {
		t.Fatal("a late cancel of a used open: cancelled = true")
	}
	e.write(t, id, "still there")

	// open_pair: both ends released.
	send(&smv1.SessionRequest{CallId: 3, Op: &smv1.SessionRequest_OpenPair{OpenPair: &smv1.OpenPairRequest{}}})
	p := sessionAnswer(t, s, 3).GetOpenPair()
	if !cancel(3) {
		t.Fatal("late cancel of open_pair: not undone")
	}
	for _, id := range []string{p.FirstStreamId, p.SecondStreamId} {
		_, err = e.c.AtEof(bg(t), &smv1.AtEofRequest{StreamId: id})
		wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
	}

	// start_server: closed.
	send(&smv1.SessionRequest{CallId: 4, Op: &smv1.SessionRequest_StartServer{StartServer: &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}}}})
	srv := sessionAnswer(t, s, 4).GetStartServer()
	if !cancel(4) {
		t.Fatal("late cancel of start_server: not undone")
	}
	_, err = e.c.StartServing(bg(t), &smv1.StartServingRequest{ServerId: srv.ServerId})
	wantStatus(t, err, codes.NotFound, ReasonServerNotFound)

	// accept: the connection goes back to the queue, for the next accept.
	srv2 := e.startServer(t, nil)
	peer := dialPeer(t, "tcp", srv2.Sockets[0])
	defer peer.Close()
	send(&smv1.SessionRequest{CallId: 5, Op: &smv1.SessionRequest_Accept{Accept: &smv1.AcceptRequest{ServerId: srv2.ServerId}}})
	acc := sessionAnswer(t, s, 5).GetAccept()
	if !cancel(5) {
		t.Fatal("late cancel of accept: not undone")
	}
	again := e.accept(t, srv2.ServerId)
	if again.StreamId != acc.StreamId {
		t.Fatalf("the next accept got %s, want the stream the cancelled accept returned, %s", again.StreamId, acc.StreamId)
	}

	// A cancel for an id that never was: false, nothing happens.
	if cancel(99) {
		t.Fatal("cancel of an unknown call_id: cancelled = true")
	}
	_ = s.CloseSend()
}

// TestOpenRequestID: an Open retried with the same request_id answers the
// same stream; another identity's or another id's Open connects anew; an
// orphaned stream (its Open's caller left) nobody claims is released after
// the grace period.
func TestOpenRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{OrphanGrace: 200 * time.Millisecond})
	ln := listenTCP(t)
	accepted := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			defer c.Close()
		}
	}()
	req := func(key string) *smv1.OpenRequest {
		return &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(ln.Addr())}}, RequestId: key}
	}
	a, err := e.c.Open(bg(t), req("k1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.c.Open(bg(t), req("k1"))
	if err != nil || b.StreamId != a.StreamId || b.Peername != a.Peername {
		t.Fatalf("retry with the same request_id: %v, %v; want %v", b, err, a)
	}
	c, err := e.c.Open(bg(t), req("k2"))
	if err != nil || c.StreamId == a.StreamId {
		t.Fatalf("another request_id: %v, %v", c, err)
	}
	<-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("three connections for two request_ids")
	default:
	}
	_, err = e.c.Open(bg(t), req(string(make([]byte, MaxRequestID+1))))
	wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)

	// Released: the key is free again.
	e.m.Release(a.StreamId)
	d, err := e.c.Open(bg(t), req("k1"))
	if err != nil || d.StreamId == a.StreamId {
		t.Fatalf("after release: %v, %v", d, err)
	}
	// Orphaned and unclaimed: released after the grace; claimed: kept.
	registered := func(id string) *Stream {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return e.m.streams[id] // not e.stream: a lookup for a call claims the stream
	}
	e.m.Orphaned(registered(c.StreamId))
	e.m.Orphaned(registered(d.StreamId))
	e.write(t, d.StreamId, "claimed")
	waitFor(t, "the orphan to be released", func() bool { return registered(c.StreamId) == nil })
	if _, err := e.c.AtEof(bg(t), &smv1.AtEofRequest{StreamId: d.StreamId}); err != nil {
		t.Fatalf("a claimed orphan was released: %v", err)
	}
}
