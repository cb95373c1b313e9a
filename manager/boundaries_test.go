package manager

// Tests added after a mutation-testing audit: each one pins a rule that the
// rest of the suite left unchecked.

import (
	"bytes"
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

// A ReadUntil result too large for a response (a long separator makes it
// longer than the limit) fails with RESULT_TOO_LARGE and puts every byte
// back: nothing is consumed and the data reads intact afterwards.
func TestReadUntilTooLargePutsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxMessageSize: 64 << 10})
	maxResult := e.svc.maxResult()
	a, b := e.openPair(t, i64(31<<10))
	prefix, sep := pattern(30<<10, 1), bytes.Repeat([]byte{'|'}, 40<<10)
	if len(prefix)+len(sep) <= maxResult {
		t.Fatalf("test setup: %d bytes fit in a %d-byte result", len(prefix)+len(sep), maxResult)
	}
	e.write(t, a, string(prefix))
	e.write(t, a, string(sep))
	_, err := e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: b, Separator: sep})
	wantStatus(t, err, codes.ResourceExhausted, ReasonResultTooLarge)
	if info := e.info(t, b); info.Buffered != int64(len(prefix)+len(sep)) || info.BytesIn != 0 {
		t.Fatalf("after the refused ReadUntil buffered=%d bytes_in=%d, want %d and 0", info.Buffered, info.BytesIn, len(prefix)+len(sep))
	}
	wantBytes(t, "prefix", e.readExactly(t, b, int64(len(prefix))).Data, prefix)
	wantBytes(t, "separator", e.readExactly(t, b, int64(len(sep))).Data, sep)
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
// it: a claim meanwhile fails with TOO_MANY_STREAMS and keeps the
// connection queued, and succeeds once the RPC has ended.
func TestEvictionSparesStreamsInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxStreams: 2})
	a, _ := e.openPair(t, nil)
	if _, err := e.c.Abort(bg(t), &smv1.AbortRequest{StreamId: a}); err != nil {
		t.Fatal(err)
	}
	_, done, err := e.m.acquire(a) // an RPC in progress on the lost stream
	if err != nil {
		t.Fatal(err)
	}
	srv := e.startServer(t, nil)
	peer := dialPeer(t, "tcp", srv.Sockets[0])
	waitFor(t, "the connection to queue", func() bool { return e.serverInfo(t, srv.ServerId).Queued == 1 })

	_, err = e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: srv.ServerId})
	wantStatus(t, err, codes.ResourceExhausted, ReasonTooManyStreams)
	if !e.registered(a) {
		t.Fatal("a lost stream with an RPC in progress was evicted")
	}
	if q := e.serverInfo(t, srv.ServerId).Queued; q != 1 {
		t.Fatalf("queued = %d after the refused claim, want 1", q)
	}
	done()
	acc := e.accept(t, srv.ServerId)
	if acc.Peername != peer.LocalAddr().String() {
		t.Fatalf("Accept got %s, want %s", acc.Peername, peer.LocalAddr())
	}
	if e.registered(a) {
		t.Fatal("the lost stream was not evicted once idle")
	}
}
