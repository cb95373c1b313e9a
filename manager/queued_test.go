package manager

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// Connections a server accepted and nobody claimed yet are streams: listed
// as "queued" with their server, counted toward --max-streams, refused to
// RPCs until claimed.
func TestQueuedConnectionsAreStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxStreams: 2})
	srv := e.startServer(t, nil)
	dialPeer(t, "tcp", srv.Sockets[0])
	dialPeer(t, "tcp", srv.Sockets[0])
	waitFor(t, "two queued connections", func() bool { return e.serverInfo(t, srv.ServerId).Queued == 2 })
	list, err := e.c.ListStreams(bg(t), &smv1.ListStreamsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Streams) != 2 {
		t.Fatalf("ListStreams lists %d streams, want the 2 queued", len(list.Streams))
	}
	for _, st := range list.Streams {
		if st.State != "queued" || st.ServerId != srv.ServerId {
			t.Fatalf("queued connection listed as %q on %q, want queued on %s", st.State, st.ServerId, srv.ServerId)
		}
		_, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: st.StreamId, N: i64(1)})
		wantStatus(t, err, codes.FailedPrecondition, ReasonStreamQueued)
	}
	_, err = e.c.OpenPair(bg(t), &smv1.OpenPairRequest{})
	wantStatus(t, err, codes.ResourceExhausted, ReasonTooManyStreams)

	acc := e.accept(t, srv.ServerId)
	if acc.StreamId != list.Streams[0].StreamId {
		t.Fatalf("Accept claimed %s, want the oldest queued %s", acc.StreamId, list.Streams[0].StreamId)
	}
	if st := e.info(t, acc.StreamId).State; st != "open" {
		t.Fatalf("claimed stream is %q, want open", st)
	}
}

// The idle timeout reaps queued connections, and servers with no RPC and
// no Serve call, unless --keep-idle-servers.
func TestIdleQueuedAndServersReaped(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		e := newEnv(t, Config{IdleTimeout: 300 * time.Millisecond, KeepIdleServers: keep})
		srv := e.startServer(t, nil)
		peer := dialPeer(t, "tcp", srv.Sockets[0])
		peerSeesEOF(t, peer) // reaped while queued
		if keep {
			// The connection came after the server, so the server has been
			// idle longer: it stays all the same.
			waitFor(t, "the queue to empty", func() bool { return e.serverInfo(t, srv.ServerId).Queued == 0 })
			if got := e.serverInfo(t, srv.ServerId).State; got != "serving" {
				t.Fatalf("kept server is %q", got)
			}
			continue
		}
		waitFor(t, "the idle server to close", func() bool {
			resp, err := e.c.ListServers(bg(t), &smv1.ListServersRequest{})
			return err == nil && len(resp.Servers) == 0
		})
		_, err := e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: srv.ServerId})
		wantStatus(t, err, codes.NotFound, ReasonServerNotFound)
	}
}

// A server with a Serve call attached is not idle, however long it waits.
func TestServeKeepsServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{IdleTimeout: 200 * time.Millisecond})
	srv := e.startServer(t, nil)
	serve, err := e.c.Serve(bg(t), &smv1.ServeRequest{ServerId: srv.ServerId})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Serve to attach", func() bool { return e.serverInfo(t, srv.ServerId).ServeCalls == 1 })
	// Past the idle timeout: a stream opened after Serve attached has been
	// reaped, and the reaper looks at servers in the same pass.
	a, _ := e.openPair(t, nil)
	waitFor(t, "an idle stream reaped", func() bool { return !e.registered(a) })
	dialPeer(t, "tcp", srv.Sockets[0])
	if _, err := serve.Recv(); err != nil {
		t.Fatalf("Serve on a server past the idle timeout: %v", err)
	}
}

// One pass of the reaper releases every stream that is due, not one.
func TestReaperReleasesAllDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{ClosedLinger: 200 * time.Millisecond})
	var ids []string
	for range 50 {
		a, b := e.openPair(t, nil)
		ids = append(ids, a, b)
	}
	for _, id := range ids {
		if _, err := e.c.Abort(bg(t), &smv1.AbortRequest{StreamId: id}); err != nil {
			t.Fatal(err)
		}
	}
	// The linger is 200 ms and the reaper looks every 50 ms: releasing one
	// stream a pass would take 5 s for the 100.
	start := time.Now()
	waitFor(t, "every closed stream released", func() bool { return len(e.m.Streams(context.Background())) == 0 })
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("releasing 100 closed streams took %v", took)
	}
}
