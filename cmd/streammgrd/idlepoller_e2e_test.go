package main_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// TestIdlePollerDaemon: with --idle-poller, 200 idle streams hold no
// goroutine of their own in the daemon, and each still gets the data its
// peer sends after the idleness, then the peer's FIN.
func TestIdlePollerDaemon(t *testing.T) {
	t.Parallel()
	dbg := filepath.Join(t.TempDir(), "dbg.sock")
	if len(dbg) > 100 {
		t.Skip("temporary directory too deep for a Unix socket") // never on CI's /tmp
	}
	d := startDaemon(t, false, "--idle-poller", "--debug-listen", "unix:"+dbg)
	c := tokenConn(t, d.sock, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	base := goroutines(t, dbg)
	const n = 200
	ids := make([]string, n)
	peers := make([]net.Conn, n)
	for i := range n {
		r, err := c.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.StreamId
		if peers[i], err = ln.Accept(); err != nil {
			t.Fatal(err)
		}
		defer peers[i].Close()
	}
	// Idle: no goroutine per stream (a tenth of a goroutine each is slack
	// for the daemon's own, gRPC's and the callers' come and go).
	eventually(t, 30*time.Second, "idle streams to hold no goroutines", func() bool {
		return goroutines(t, dbg)-base < n/10
	})
	for i, p := range peers {
		msg := []byte{'a' + byte(i%26), 'z'}
		if _, err := p.Write(msg); err != nil {
			t.Fatal(err)
		}
		p.(*net.TCPConn).CloseWrite()
		r, err := c.ReadExactly(ctx, &smv1.ReadExactlyRequest{StreamId: ids[i], N: 2})
		if err != nil || !bytes.Equal(r.Data, msg) {
			t.Fatalf("stream %d: read %q, %v; want %q", i, r.GetData(), err, msg)
		}
		e, err := c.Read(ctx, &smv1.ReadRequest{StreamId: ids[i]})
		if err != nil || len(e.Data) != 0 || !e.Eof {
			t.Fatalf("stream %d after the peer's FIN: %v, %v; want EOF", i, e, err)
		}
	}
	for _, id := range ids {
		if _, err := c.Close(ctx, &smv1.CloseRequest{StreamId: id}); err != nil {
			t.Fatal(err)
		}
	}
}
