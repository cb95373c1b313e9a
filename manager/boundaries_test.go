package manager

// Tests added after a mutation-testing audit: each one pins a rule that the
// rest of the suite left unchecked.

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// endedCtx returns a context that has already been cancelled.
func endedCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// An Accept whose caller is gone when a queued connection is claimed puts
// the connection back at the head of the queue instead of dropping it, and
// reports the cancellation.
func TestAcceptCallerGoneKeepsTheConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp := e.startServer(t, nil)
	peer := dialPeer(t, "tcp", resp.Sockets[0])
	waitFor(t, "the connection to queue", func() bool { return e.serverInfo(t, resp.ServerId).Queued == 1 })

	_, err := e.svc.Accept(endedCtx(), &smv1.AcceptRequest{ServerId: resp.ServerId})
	wantStatus(t, err, codes.Canceled, ReasonCancelled)
	if q := e.serverInfo(t, resp.ServerId).Queued; q != 1 {
		t.Fatalf("queued = %d after an Accept whose caller was gone, want 1", q)
	}
	acc := e.accept(t, resp.ServerId)
	if acc.Peername != peer.LocalAddr().String() {
		t.Fatalf("Accept got %s, want %s", acc.Peername, peer.LocalAddr())
	}
	peerWrite(t, peer, "still here")
	if got := e.readExactly(t, acc.StreamId, 10); string(got.Data) != "still here" {
		t.Fatalf("read %q, want %q", got.Data, "still here")
	}
}

// An Accept without a timeout of its own that ends with its caller is
// CANCELLED, not ACCEPT_TIMEOUT.
func TestAcceptCancelledIsNotAcceptTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp := e.startServer(t, nil)
	_, err := e.svc.Accept(endedCtx(), &smv1.AcceptRequest{ServerId: resp.ServerId})
	wantStatus(t, err, codes.Canceled, ReasonCancelled)
}

// A read to EOF of more than a response can carry fails with
// RESULT_TOO_LARGE and consumes nothing: the data reads intact afterwards.
// (A ReadUntil result cannot get that large: the limit is at most half a
// message and separators at most MaxSeparatorBytes.)
func TestReadAllTooLargeConsumesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxMessageSize: 64 << 10})
	maxResult := e.svc.maxResult()
	a, b := e.openPair(t, i64(31<<10))
	data := pattern(maxResult+1, 1)
	e.write(t, a, string(data))
	e.closeStream(t, a)
	_, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: b})
	wantStatus(t, err, codes.ResourceExhausted, ReasonResultTooLarge)
	if info := e.info(t, b); info.Buffered != int64(len(data)) || info.BytesIn != 0 {
		t.Fatalf("after the refused Read buffered=%d bytes_in=%d, want %d and 0", info.Buffered, info.BytesIn, len(data))
	}
	wantBytes(t, "first part", e.readExactly(t, b, int64(maxResult)).Data, data[:maxResult])
	wantBytes(t, "rest", e.readExactly(t, b, 1).Data, data[maxResult:])
}

// The largest reader limit a response can carry a line of is accepted; one
// more is INVALID_ARGUMENT.
func TestStreamLimitBoundary(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxMessageSize: 64 << 10})
	most := int64(e.svc.maxResult() / 2)
	a, b := e.openPair(t, i64(most))
	if got := e.stream(t, a).R.Limit(); got != int(most) {
		t.Fatalf("limit %d, want %d", got, most)
	}
	e.write(t, b, "ok\n")
	if got := e.readLine(t, a); string(got.Data) != "ok\n" {
		t.Fatalf("ReadLine = %q", got.Data)
	}
	_, err := e.c.OpenPair(bg(t), &smv1.OpenPairRequest{Limit: i64(most + 1)})
	st := wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
	wantField(t, st, "limit")
}

// A full registry evicts a lost stream only when no RPC is in progress on
// it: a connection meanwhile is rejected, and one after the RPC has ended
// takes the lost stream's place.
func TestEvictionSparesStreamsInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxStreams: 2})
	a, _ := e.openPair(t, nil)
	if _, err := e.c.Abort(bg(t), &smv1.AbortRequest{StreamId: a}); err != nil {
		t.Fatal(err)
	}
	_, done, err := e.m.acquire(context.Background(), a) // an RPC in progress on the lost stream
	if err != nil {
		t.Fatal(err)
	}
	srv := e.startServer(t, nil)
	peerSeesEOF(t, dialPeer(t, "tcp", srv.Sockets[0]))
	if !e.registered(a) {
		t.Fatal("a lost stream with an RPC in progress was evicted")
	}
	if info := e.serverInfo(t, srv.ServerId); info.Rejected != 1 {
		t.Fatalf("rejected = %d, want 1", info.Rejected)
	}
	done()
	peer := dialPeer(t, "tcp", srv.Sockets[0])
	acc := e.accept(t, srv.ServerId)
	if acc.Peername != peer.LocalAddr().String() {
		t.Fatalf("Accept got %s, want %s", acc.Peername, peer.LocalAddr())
	}
	if e.registered(a) {
		t.Fatal("the lost stream was not evicted once idle")
	}
}
