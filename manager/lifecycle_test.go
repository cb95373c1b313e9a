package manager

// Handle lifecycle (outliving the gRPC connection, idle timeout, release
// after close), resource leaks, and the daemon's wiring.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

func TestHandlesOutliveTheConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	cc1 := e.dial(t)
	c1 := smv1.NewStreamServiceClient(cc1)
	ln := listenTCP(t)
	accepted := acceptOne(t, ln)
	resp, err := c1.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(ln.Addr())}}})
	if err != nil {
		t.Fatal(err)
	}
	peer := peerOf(t, accepted)
	if _, err := c1.Write(bg(t), &smv1.WriteRequest{StreamId: resp.StreamId, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	srv, err := c1.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	cc1.Close()

	c2 := smv1.NewStreamServiceClient(e.dial(t))
	if _, err := c2.Write(bg(t), &smv1.WriteRequest{StreamId: resp.StreamId, Data: []byte("y")}); err != nil {
		t.Fatalf("Write from a new connection: %v", err)
	}
	if got := peerRead(t, peer, 2); got != "xy" {
		t.Fatalf("peer got %q, want xy", got)
	}
	peerWrite(t, peer, "z")
	got, err := c2.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: resp.StreamId, N: 1})
	if err != nil || string(got.Data) != "z" {
		t.Fatalf("ReadExactly from a new connection = %v, %v", got, err)
	}
	client := dialPeer(t, "tcp", srv.Sockets[0])
	acc, err := c2.Accept(bg(t), &smv1.AcceptRequest{ServerId: srv.ServerId})
	if err != nil {
		t.Fatalf("Accept on a server started by a closed connection: %v", err)
	}
	if acc.Peername != client.LocalAddr().String() {
		t.Fatalf("accepted %s, want %s", acc.Peername, client.LocalAddr())
	}
}

// registered reports whether the registry holds id, without touching it.
func (e *env) registered(id string) bool {
	_, err := e.m.stream(context.Background(), id)
	return err == nil
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	e := newEnv(t, Config{IdleTimeout: idle})

	// The idle clock starts inside Open, after this and before Open
	// returns: under load it can be well before the return.
	openedAt := time.Now()
	idleResp, idlePeer := e.openTCP(t, nil)
	busyResp, busyPeer := e.openTCP(t, nil)
	busy := busyResp.StreamId
	read := make(chan *smv1.ReadResponse, 1)
	readStart := time.Now()
	go func() {
		r, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: busy, N: i64(10)})
		if err != nil {
			t.Errorf("long Read: %v", err)
		}
		read <- r
	}()

	waitFor(t, "the idle stream to be released", func() bool { return !e.registered(idleResp.StreamId) })
	if d := time.Since(openedAt); d < idle {
		t.Fatalf("released after %v, before the %v idle timeout", d, idle)
	}
	peerSeesEOF(t, idlePeer) // its socket was closed
	_, err := e.c.IsClosing(bg(t), &smv1.IsClosingRequest{StreamId: idleResp.StreamId})
	wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)

	// The stream with a Read in progress is not reaped however long it waits.
	time.Sleep(time.Until(readStart.Add(3 * idle)))
	if !e.registered(busy) {
		t.Fatal("a stream with a Read in progress was released")
	}
	peerWrite(t, busyPeer, "k")
	select {
	case r := <-read:
		if r == nil || string(r.Data) != "k" {
			t.Fatalf("long Read = %v, want k", r)
		}
	case <-time.After(failAfter):
		t.Fatal("the long Read never completed")
	}
}

func TestClosedLinger(t *testing.T) {
	t.Parallel()
	const linger = 300 * time.Millisecond
	e := newEnv(t, Config{ClosedLinger: linger})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "bye")
	e.waitBuffered(t, id, 3)
	e.closeStream(t, id)
	if _, err := e.c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: id}); err != nil {
		t.Fatalf("WaitClosed: %v", err)
	}
	lastUse := time.Now() // the linger starts inside this Read, not at its return
	if got := e.read(t, id, nil); string(got.Data) != "bye" || !got.Eof {
		t.Fatalf("Read() after Close = %q eof=%v", got.Data, got.Eof)
	}
	waitFor(t, "the closed stream to be released", func() bool { return !e.registered(id) })
	if d := time.Since(lastUse); d < linger {
		t.Fatalf("released %v after its last RPC, before the %v linger", d, linger)
	}
	_, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id})
	wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
	if resp, err := e.c.ListStreams(bg(t), &smv1.ListStreamsRequest{}); err != nil || len(resp.Streams) != 0 {
		t.Fatalf("ListStreams = %v, %v; want empty", resp, err)
	}
}

func fdCount(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(fds)
}

// TestNoFDLeak opens and closes hundreds of streams through gRPC and checks
// that every socket is released. Not parallel: it counts the process's
// file descriptors.
func TestNoFDLeak(t *testing.T) {
	e := newEnv(t, Config{ClosedLinger: 50 * time.Millisecond})
	ln := listenTCP(t)
	go func() { // the peers read to EOF, then close
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(failAfter))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	addr := &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(ln.Addr())}}
	cycle := func(n int) {
		for range n {
			resp, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: addr})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			e.write(t, resp.StreamId, "x")
			e.closeStream(t, resp.StreamId)
		}
		for range n / 10 {
			a, b := e.openPair(t, nil)
			e.closeStream(t, a)
			e.closeStream(t, b)
		}
	}
	settled := func() bool {
		resp, err := e.c.ListStreams(bg(t), &smv1.ListStreamsRequest{})
		return err == nil && len(resp.Streams) == 0
	}
	cycle(5) // warm up lazily created descriptors (epoll, ...)
	waitFor(t, "the warm-up streams to be released", settled)
	baseline := fdCount(t)

	cycle(300)
	if got := fdCount(t); got < baseline+100 {
		t.Logf("only %d descriptors above the baseline right after the loop", got-baseline)
	}
	waitFor(t, "ListStreams to be empty", settled)
	const slack = 3
	waitFor(t, "descriptors to return to the baseline", func() bool { return fdCount(t) <= baseline+slack })
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestDaemon runs NewDaemon on a Unix socket. Not parallel: binding the
// socket changes the process umask for a moment.
func TestDaemon(t *testing.T) {
	dir := tempDir(t)
	sock := filepath.Join(dir, "d.sock")
	// A stale socket file from a dead daemon is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	d, err := NewDaemon(Config{Listen: []string{"unix:" + sock}, MaxMessageSize: 64 << 10, ShutdownTimeout: 2 * time.Second}, discardLog())
	if err != nil {
		t.Fatalf("NewDaemon: %v", err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file mode = %v, want a socket with 0600", fi.Mode())
	}
	if got := d.Addrs(); len(got) != 1 || got[0] != "unix:"+sock {
		t.Fatalf("Addrs = %q", got)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- d.Serve(runCtx) }()

	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	svcName := smv1.StreamService_ServiceDesc.ServiceName
	waitFor(t, "health SERVING", func() bool {
		r, err := health.Check(bg(t), &healthpb.HealthCheckRequest{Service: svcName})
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	})
	if r, err := health.Check(bg(t), &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("overall health = %v, %v", r, err)
	}
	watchCtx, endWatch := context.WithCancel(bg(t))
	defer endWatch()
	watch, err := health.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: svcName})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v; want SERVING", r, err)
	}

	// The StreamService works, with the configured message size.
	c := smv1.NewStreamServiceClient(cc)
	pair, err := c.OpenPair(bg(t), &smv1.OpenPairRequest{Limit: i64(1024)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(bg(t), &smv1.WriteRequest{StreamId: pair.FirstStreamId, Data: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: pair.SecondStreamId, N: 3}); err != nil || string(got.Data) != "abc" {
		t.Fatalf("ReadExactly through the daemon = %v, %v", got, err)
	}
	_, err = c.Write(bg(t), &smv1.WriteRequest{StreamId: pair.FirstStreamId, Data: make([]byte, 64<<10)})
	wantStatus(t, err, codes.ResourceExhausted, "")

	// A second daemon cannot take over a live socket.
	if _, err := NewDaemon(Config{Listen: []string{"unix:" + sock}}, discardLog()); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("second NewDaemon on a live socket: %v, want refusal", err)
	}

	stop()
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after shutdown began = %v, %v; want NOT_SERVING", r, err)
	}
	endWatch()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve = %v, want nil after its context ended", err)
		}
	case <-time.After(failAfter):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after shutdown: %v, want it removed", err)
	}
	if n := len(d.Manager().Streams(context.Background())); n != 0 {
		t.Fatalf("%d streams left after shutdown", n)
	}
	if _, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		t.Fatal("the daemon still accepts connections after shutdown")
	}
}

func TestDaemonListen(t *testing.T) {
	dir := tempDir(t)
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr, wantErr string
	}{
		{"0.0.0.0:0", "allow-remote"},
		{":0", "allow-remote"},
		{"unix:", "empty socket path"},
		{"unix:" + notSocket, "not a socket"},
		{"localhost", "host:port"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			_, err := NewDaemon(Config{Listen: []string{tc.addr}}, discardLog())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewDaemon(%q) = %v, want an error mentioning %q", tc.addr, err, tc.wantErr)
			}
		})
	}
	if _, err := os.Stat(notSocket); err != nil {
		t.Fatalf("the non-socket file was touched: %v", err)
	}

	d, err := NewDaemon(Config{Listen: []string{"127.0.0.1:0"}, InsecureTCP: true}, discardLog())
	if err != nil {
		t.Fatalf("NewDaemon on loopback: %v", err)
	}
	if got := d.Addrs(); len(got) != 1 || !strings.HasPrefix(got[0], "127.0.0.1:") {
		t.Fatalf("Addrs = %q", got)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Serve(done); err != nil {
		t.Fatalf("Serve with an ended context = %v", err)
	}
}

// TestUnacceptKeepsTheConnection checks the path taken when an Accept or
// Serve claims a connection but cannot deliver its handle: the connection
// goes back to the head of the queue, untouched.
func TestUnacceptKeepsTheConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp := e.startServer(t, nil)
	first := dialPeer(t, "tcp", resp.Sockets[0])
	waitFor(t, "the first connection to queue", func() bool { return e.serverInfo(t, resp.ServerId).Queued == 1 })
	second := dialPeer(t, "tcp", resp.Sockets[0])
	waitFor(t, "the second connection to queue", func() bool { return e.serverInfo(t, resp.ServerId).Queued == 2 })
	peerWrite(t, first, "early")

	srv, err := e.m.server(context.Background(), resp.ServerId)
	if err != nil {
		t.Fatal(err)
	}
	st, err := srv.Accept(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the early bytes", func() bool { return st.R.Buffered() == 5 })
	srv.Unaccept(st)
	if e.registered(st.ID) {
		t.Fatal("the undelivered handle is still registered")
	}
	if q := e.serverInfo(t, resp.ServerId).Queued; q != 2 {
		t.Fatalf("queued = %d after Unaccept, want 2", q)
	}
	acc := e.accept(t, resp.ServerId)
	if acc.Peername != first.LocalAddr().String() {
		t.Fatalf("Accept after Unaccept got %s, want the first connection %s", acc.Peername, first.LocalAddr())
	}
	if got := e.readExactly(t, acc.StreamId, 5); string(got.Data) != "early" {
		t.Fatalf("bytes received before the Unaccept = %q, want early", got.Data)
	}
	if acc2 := e.accept(t, resp.ServerId); acc2.Peername != second.LocalAddr().String() {
		t.Fatalf("second Accept got %s, want %s", acc2.Peername, second.LocalAddr())
	}
}

func TestAcceptEndsWhenTheServerCloses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp := e.startServer(t, nil)
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: resp.ServerId})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the Accept start waiting
	if _, err := e.c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: resp.ServerId}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		wantStatus(t, err, codes.NotFound, ReasonServerClosed)
	case <-time.After(failAfter):
		t.Fatal("a waiting Accept did not end when its server closed")
	}
}

// A StartServer or OpenPair whose caller is gone by the time it succeeds
// releases what it made: nobody would ever learn the handles.
func TestCallerGoneReleases(t *testing.T) {
	t.Parallel()
	m := New(Config{})
	defer m.Close()
	svc := NewService(m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := svc.StartServer(ctx, &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
	wantStatus(t, err, codes.Canceled, ReasonCancelled)
	if n := len(m.Servers(context.Background())); n != 0 {
		t.Fatalf("%d servers left after a StartServer nobody received", n)
	}
	_, err = svc.OpenPair(ctx, &smv1.OpenPairRequest{})
	wantStatus(t, err, codes.Canceled, ReasonCancelled)
	if n := len(m.Streams(context.Background())); n != 0 {
		t.Fatalf("%d streams left after an OpenPair nobody received", n)
	}
}

// A daemon refuses a message size too small to carry a useful read.
func TestDaemonMinMessageSize(t *testing.T) {
	_, err := NewDaemon(Config{Listen: []string{"127.0.0.1:0"}, MaxMessageSize: 1000, InsecureTCP: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "max message size") {
		t.Fatalf("NewDaemon with a 1000-byte message size = %v, want a refusal", err)
	}
}
