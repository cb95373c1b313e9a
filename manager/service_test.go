package manager

// Happy paths of every StreamService RPC against real TCP, Unix and TLS
// peers.

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

func TestOpenTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, func(r *smv1.OpenRequest) { r.ConnectTimeout = durationpb.New(5 * time.Second) })
	if got, want := resp.Peername, peer.LocalAddr().String(); got != want {
		t.Errorf("peername = %q, want %q", got, want)
	}
	if got, want := resp.Sockname, peer.RemoteAddr().String(); got != want {
		t.Errorf("sockname = %q, want %q", got, want)
	}
	id := resp.StreamId

	e.write(t, id, "ping")
	if got := peerRead(t, peer, 4); got != "ping" {
		t.Fatalf("peer got %q, want ping", got)
	}
	peerWrite(t, peer, "pong\n")
	if got := e.readLine(t, id); string(got.Data) != "pong\n" || got.Eof {
		t.Fatalf("ReadLine = %q eof=%v, want \"pong\\n\" eof=false", got.Data, got.Eof)
	}

	peerPort := float64(peer.LocalAddr().(*net.TCPAddr).Port)
	ourPort := float64(peer.RemoteAddr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		name string
		want any
	}{
		{"peername", []any{"127.0.0.1", peerPort}},
		{"sockname", []any{"127.0.0.1", ourPort}},
		{"socket", map[string]any{"family": "AF_INET", "type": "SOCK_STREAM",
			"laddr": []any{"127.0.0.1", ourPort}, "raddr": []any{"127.0.0.1", peerPort}}},
		{"cipher", nil},
		{"peercert", nil},
		{"sslcontext", nil},
		{"ssl_object", nil},
		{"compression", nil},
		{"no-such-name", nil},
	} {
		if got := e.extra(t, id, tc.name); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("GetExtraInfo(%s) = %#v, want %#v", tc.name, got, tc.want)
		}
	}
	info := e.info(t, id)
	if info == nil || info.Kind != "tcp" || info.State != "open" || info.Peername != resp.Peername || info.Sockname != resp.Sockname || info.ServerId != "" {
		t.Fatalf("ListStreams entry = %v", info)
	}
	if info.BytesIn != 5 || info.BytesOut != 4 || info.Buffered != 0 {
		t.Fatalf("ListStreams bytes in/out/buffered = %d/%d/%d, want 5/4/0", info.BytesIn, info.BytesOut, info.Buffered)
	}
}

func TestOpenLocalAddr(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	free := listenTCP(t)
	port := portOf(free.Addr())
	free.Close()
	resp, peer := e.openTCP(t, func(r *smv1.OpenRequest) {
		r.LocalAddr = &smv1.TcpAddress{Host: "127.0.0.1", Port: port}
	})
	if got := uint32(peer.RemoteAddr().(*net.TCPAddr).Port); got != port {
		t.Fatalf("peer sees our port %d, want the local_addr port %d", got, port)
	}
	if want := "127.0.0.1:" + strconv.Itoa(int(port)); resp.Sockname != want {
		t.Fatalf("sockname = %q, want %q", resp.Sockname, want)
	}
}

func TestOpenUnix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer, path := e.openUnix(t)
	if resp.Peername != path || resp.Sockname != "" {
		t.Fatalf("peername, sockname = %q, %q; want %q, \"\"", resp.Peername, resp.Sockname, path)
	}
	id := resp.StreamId
	e.write(t, id, "over unix")
	if got := peerRead(t, peer, 9); got != "over unix" {
		t.Fatalf("peer got %q", got)
	}
	peerWrite(t, peer, "back")
	peer.CloseWrite()
	if got := e.read(t, id, nil); string(got.Data) != "back" || !got.Eof {
		t.Fatalf("Read(-1) = %q eof=%v, want back eof=true", got.Data, got.Eof)
	}
	if got := e.extra(t, id, "peername"); got != path {
		t.Errorf("GetExtraInfo(peername) = %#v, want %q", got, path)
	}
	if got := e.extra(t, id, "sockname"); got != "" {
		t.Errorf("GetExtraInfo(sockname) = %#v, want \"\"", got)
	}
	if info := e.info(t, id); info.Kind != "unix" || info.State != "eof" {
		t.Fatalf("ListStreams kind, state = %s, %s; want unix, eof", info.Kind, info.State)
	}
	ok, err := e.c.CanWriteEof(bg(t), &smv1.CanWriteEofRequest{StreamId: id})
	if err != nil || !ok.CanWriteEof {
		t.Fatalf("CanWriteEof = %v, %v; want true", ok, err)
	}
}

// tlsPeer listens with TLS and returns the listener's port and the accepted,
// handshaken peer connection (once Open has been called).
func tlsPeer(t *testing.T, cfg *tls.Config) (uint32, func() *tls.Conn) {
	t.Helper()
	ln := listenTCP(t)
	type res struct {
		c   *tls.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- res{err: err}
			return
		}
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(failAfter))
		err = tc.Handshake()
		tc.SetDeadline(time.Time{})
		if err != nil {
			tc.Close()
		}
		ch <- res{tc, err}
	}()
	return portOf(ln.Addr()), func() *tls.Conn {
		t.Helper()
		r := <-ch
		if r.err != nil {
			t.Fatalf("peer TLS handshake: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	}
}

func TestOpenTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := pki(t)
	port, peerConn := tlsPeer(t, p.peerServerTLS())
	resp, err := e.c.Open(bg(t), &smv1.OpenRequest{
		Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}},
		Tls:     &smv1.TlsOptions{CaPem: p.caPEM, ServerHostname: "localhost", HandshakeTimeout: durationpb.New(5 * time.Second)},
	})
	if err != nil {
		t.Fatalf("Open TLS: %v", err)
	}
	peer := peerConn()
	id := resp.StreamId

	e.write(t, id, "secret")
	if got := peerRead(t, peer, 6); got != "secret" {
		t.Fatalf("peer got %q", got)
	}
	peerWrite(t, peer, "reply")
	if got := e.readExactly(t, id, 5); string(got.Data) != "reply" {
		t.Fatalf("ReadExactly = %q", got.Data)
	}

	ok, err := e.c.CanWriteEof(bg(t), &smv1.CanWriteEofRequest{StreamId: id})
	if err != nil || ok.CanWriteEof {
		t.Fatalf("CanWriteEof = %v, %v; want false for TLS", ok, err)
	}
	_, err = e.c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: id})
	wantStatus(t, err, codes.FailedPrecondition, ReasonWriteEOFUnsupported)

	cipher, _ := e.extra(t, id, "cipher").([]any)
	if len(cipher) != 3 || cipher[1] != "TLSv1.3" || !strings.HasPrefix(cipher[0].(string), "TLS_") || cipher[2].(float64) < 128 {
		t.Fatalf("GetExtraInfo(cipher) = %#v, want [name, TLSv1.3, bits]", cipher)
	}
	cert, _ := e.extra(t, id, "peercert").(map[string]any)
	if !reflect.DeepEqual(cert["subject"], []any{[]any{[]any{"commonName", "localhost"}}}) {
		t.Fatalf("GetExtraInfo(peercert) subject = %#v", cert["subject"])
	}
	if ctx, _ := e.extra(t, id, "sslcontext").(map[string]any); ctx["protocol"] != "PROTOCOL_TLS_CLIENT" || ctx["verify_mode"] != "CERT_REQUIRED" {
		t.Fatalf("GetExtraInfo(sslcontext) = %#v", ctx)
	}
	if obj, _ := e.extra(t, id, "ssl_object").(map[string]any); obj["server_hostname"] != "localhost" {
		t.Fatalf("GetExtraInfo(ssl_object) = %#v", obj)
	}
	if info := e.info(t, id); info.Kind != "tls" {
		t.Fatalf("kind = %q, want tls", info.Kind)
	}
}

func TestOpenPair(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a, b := e.openPair(t, i64(1024))
	e.write(t, a, "abc")
	if got := e.readExactly(t, b, 3); string(got.Data) != "abc" || got.Incomplete {
		t.Fatalf("ReadExactly on the other end = %q incomplete=%v", got.Data, got.Incomplete)
	}
	e.write(t, b, "xyz")
	if _, err := e.c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: b}); err != nil {
		t.Fatal(err)
	}
	if got := e.read(t, a, nil); string(got.Data) != "xyz" || !got.Eof {
		t.Fatalf("Read(-1) = %q eof=%v, want xyz eof=true", got.Data, got.Eof)
	}
	for _, id := range []string{a, b} {
		if info := e.info(t, id); info == nil || info.Kind != "pair" {
			t.Fatalf("ListStreams entry for %s = %v, want kind pair", id, info)
		}
	}
}

func TestStartServerTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	srv := e.startServer(t, nil)
	if len(srv.Sockets) != 1 || !strings.HasPrefix(srv.Sockets[0], "127.0.0.1:") || strings.HasSuffix(srv.Sockets[0], ":0") {
		t.Fatalf("sockets = %q, want one 127.0.0.1:port with the port resolved", srv.Sockets)
	}
	peer := dialPeer(t, "tcp", srv.Sockets[0])
	acc := e.accept(t, srv.ServerId)
	if acc.Peername != peer.LocalAddr().String() {
		t.Fatalf("accepted peername = %q, want %q", acc.Peername, peer.LocalAddr())
	}
	peerWrite(t, peer, "hello\n")
	if got := e.readLine(t, acc.StreamId); string(got.Data) != "hello\n" {
		t.Fatalf("ReadLine = %q", got.Data)
	}
	e.write(t, acc.StreamId, "hi!")
	if got := peerRead(t, peer, 3); got != "hi!" {
		t.Fatalf("peer got %q", got)
	}
	if got, want := e.extra(t, acc.StreamId, "sockname"), []any{"127.0.0.1", float64(peer.RemoteAddr().(*net.TCPAddr).Port)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("GetExtraInfo(sockname) = %#v, want %#v", got, want)
	}

	info := e.serverInfo(t, srv.ServerId)
	if info == nil || info.State != "serving" || info.Accepted != 1 || info.Queued != 0 || info.BytesIn != 6 || info.BytesOut != 3 {
		t.Fatalf("ListServers entry = %v, want serving, accepted 1, queued 0, in 6, out 3", info)
	}
	if !reflect.DeepEqual(info.Sockets, srv.Sockets) {
		t.Fatalf("ListServers sockets = %q, want %q", info.Sockets, srv.Sockets)
	}
	st := e.info(t, acc.StreamId)
	if st.ServerId != srv.ServerId || st.Kind != "tcp" {
		t.Fatalf("accepted stream info = %v, want server %s kind tcp", st, srv.ServerId)
	}
}

func TestStartServerUnix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	path := filepath.Join(tempDir(t), "srv.sock")
	srv, err := e.c.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Unix{Unix: &smv1.UnixAddress{Path: path}}})
	if err != nil {
		t.Fatalf("StartServer unix: %v", err)
	}
	if len(srv.Sockets) != 1 || srv.Sockets[0] != path {
		t.Fatalf("sockets = %q, want [%q]", srv.Sockets, path)
	}
	peer := dialPeer(t, "unix", path)
	acc := e.accept(t, srv.ServerId)
	if got := e.extra(t, acc.StreamId, "sockname"); got != path {
		t.Fatalf("GetExtraInfo(sockname) = %#v, want %q", got, path)
	}
	if got := e.extra(t, acc.StreamId, "peername"); got != "" {
		t.Fatalf("GetExtraInfo(peername) = %#v, want \"\"", got)
	}
	if info := e.info(t, acc.StreamId); info.Kind != "unix" {
		t.Fatalf("kind = %q, want unix", info.Kind)
	}
	peerWrite(t, peer, "u")
	if got := e.readExactly(t, acc.StreamId, 1); string(got.Data) != "u" {
		t.Fatalf("ReadExactly = %q", got.Data)
	}
	if _, err := e.c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: srv.ServerId}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after CloseServer: %v, want it removed", err)
	}
	// The accepted stream outlives its server.
	e.write(t, acc.StreamId, "still here")
	if got := peerRead(t, peer, 10); got != "still here" {
		t.Fatalf("peer got %q", got)
	}
}

func TestStartServerTLSClientCert(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := pki(t)
	srv := e.startServer(t, func(r *smv1.StartServerRequest) {
		r.Tls = &smv1.TlsOptions{CertPem: p.serverCert, KeyPem: p.serverKey, ClientCaPem: p.caPEM, HandshakeTimeout: durationpb.New(5 * time.Second)}
	})

	// Without a client certificate the handshake fails and nothing is queued.
	bad := tls.Client(dialPeer(t, "tcp", srv.Sockets[0]), p.peerClientTLS(false))
	bad.SetDeadline(time.Now().Add(failAfter))
	if err := bad.Handshake(); err == nil {
		var b [1]byte
		if _, err := bad.Read(b[:]); err == nil {
			t.Fatal("peer without a client certificate was served")
		}
	}

	good := tls.Client(dialPeer(t, "tcp", srv.Sockets[0]), p.peerClientTLS(true))
	wait(t, "client handshake", handshakeAsync(good))
	acc := e.accept(t, srv.ServerId)
	peerWrite(t, good, "mtls")
	if got := e.readExactly(t, acc.StreamId, 4); string(got.Data) != "mtls" {
		t.Fatalf("ReadExactly = %q", got.Data)
	}
	e.write(t, acc.StreamId, "ok")
	if got := peerRead(t, good, 2); got != "ok" {
		t.Fatalf("peer got %q", got)
	}
	cert, _ := e.extra(t, acc.StreamId, "peercert").(map[string]any)
	if !reflect.DeepEqual(cert["subject"], []any{[]any{[]any{"commonName", "test-client"}}}) {
		t.Fatalf("GetExtraInfo(peercert) = %#v, want the client certificate", cert)
	}
	if info := e.info(t, acc.StreamId); info.Kind != "tls" {
		t.Fatalf("kind = %q, want tls", info.Kind)
	}
	if info := e.serverInfo(t, srv.ServerId); info.Accepted != 1 || info.Queued != 0 {
		t.Fatalf("server accepted/queued = %d/%d, want 1/0 (the failed handshake is not a connection)", info.Accepted, info.Queued)
	}
}

func TestStartServerDeferred(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	srv := e.startServer(t, func(r *smv1.StartServerRequest) { r.StartServing = new(bool) })
	if strings.HasSuffix(srv.Sockets[0], ":0") {
		t.Fatalf("sockets = %q, want the bound port", srv.Sockets)
	}
	if info := e.serverInfo(t, srv.ServerId); info.State != "bound" {
		t.Fatalf("state = %q, want bound", info.State)
	}
	if c, err := net.DialTimeout("tcp", srv.Sockets[0], failAfter); err == nil {
		c.Close()
		t.Fatal("a server with start_serving=false accepted a connection")
	}
	for range 2 { // idempotent
		if _, err := e.c.StartServing(bg(t), &smv1.StartServingRequest{ServerId: srv.ServerId}); err != nil {
			t.Fatalf("StartServing: %v", err)
		}
	}
	if info := e.serverInfo(t, srv.ServerId); info.State != "serving" {
		t.Fatalf("state = %q, want serving", info.State)
	}
	peer := dialPeer(t, "tcp", srv.Sockets[0])
	acc := e.accept(t, srv.ServerId)
	peerWrite(t, peer, "x")
	if got := e.readExactly(t, acc.StreamId, 1); string(got.Data) != "x" {
		t.Fatalf("ReadExactly = %q", got.Data)
	}
}

func TestAcceptTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	srv := e.startServer(t, nil)
	start := time.Now()
	_, err := e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: srv.ServerId, Timeout: durationpb.New(100 * time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, ReasonAcceptTimeout)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("Accept gave up after %v, before its timeout", d)
	}
	// A connection that arrives later is still there for the next Accept.
	peer := dialPeer(t, "tcp", srv.Sockets[0])
	acc, err := e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: srv.ServerId, Timeout: durationpb.New(failAfter)})
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if acc.Peername != peer.LocalAddr().String() {
		t.Fatalf("peername = %q, want %q", acc.Peername, peer.LocalAddr())
	}
	// The call's own deadline ends a wait too.
	_, err = e.c.Accept(within(t, 100*time.Millisecond), &smv1.AcceptRequest{ServerId: srv.ServerId})
	wantStatus(t, err, codes.DeadlineExceeded, "")
}

func TestServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	srv := e.startServer(t, nil)
	var peers []net.Conn
	for i := range 2 {
		peers = append(peers, dialPeer(t, "tcp", srv.Sockets[0]))
		waitFor(t, "connection to queue", func() bool { return e.serverInfo(t, srv.ServerId).Queued == int64(i+1) })
	}
	stream, err := e.c.Serve(bg(t), &smv1.ServeRequest{ServerId: srv.ServerId})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(peer net.Conn) string {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Serve.Recv: %v", err)
		}
		if resp.Peername != peer.LocalAddr().String() {
			t.Fatalf("served peername = %q, want %q", resp.Peername, peer.LocalAddr())
		}
		return resp.StreamId
	}
	ids := []string{recv(peers[0]), recv(peers[1])}
	peers = append(peers, dialPeer(t, "tcp", srv.Sockets[0]))
	ids = append(ids, recv(peers[2]))
	for i, id := range ids {
		msg := "peer" + strconv.Itoa(i)
		peerWrite(t, peers[i], msg)
		if got := e.readExactly(t, id, int64(len(msg))); string(got.Data) != msg {
			t.Fatalf("stream %d read %q, want %q", i, got.Data, msg)
		}
	}
	if _, err := e.c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: srv.ServerId}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Serve after CloseServer: %v, want the stream to end (EOF)", err)
	}
}

func TestReadVariants(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId

	// n = 0 returns at once, even with nothing buffered.
	if got, err := e.c.Read(within(t, 2*time.Second), &smv1.ReadRequest{StreamId: id, N: i64(0)}); err != nil || len(got.Data) != 0 || got.Eof {
		t.Fatalf("Read(0) = %v, %v; want empty, not eof", got, err)
	}
	peerWrite(t, peer, "hello")
	e.waitBuffered(t, id, 5)
	if got := e.read(t, id, i64(3)); string(got.Data) != "hel" || got.Eof {
		t.Fatalf("Read(3) = %q eof=%v", got.Data, got.Eof)
	}
	if got := e.read(t, id, i64(100)); string(got.Data) != "lo" {
		t.Fatalf("Read(100) = %q, want the partial \"lo\"", got.Data)
	}
	// A pending Read(n) completes when data arrives.
	done := make(chan *smv1.ReadResponse, 1)
	go func() {
		r, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(10)})
		if err != nil {
			t.Errorf("pending Read: %v", err)
		}
		done <- r
	}()
	waitFor(t, "Read to wait", func() bool { return e.stream(t, id).active.Load() == 1 })
	peerWrite(t, peer, "late")
	if got := <-done; got == nil || string(got.Data) != "late" {
		t.Fatalf("pending Read = %v, want late", got)
	}
	peerWrite(t, peer, "world")
	peer.CloseWrite()
	if got := e.read(t, id, nil); string(got.Data) != "world" || !got.Eof {
		t.Fatalf("Read() = %q eof=%v, want world eof=true", got.Data, got.Eof)
	}
	if got := e.read(t, id, i64(5)); len(got.Data) != 0 || !got.Eof {
		t.Fatalf("Read(5) at EOF = %q eof=%v, want empty eof=true", got.Data, got.Eof)
	}
	if got := e.read(t, id, i64(-1)); len(got.Data) != 0 || !got.Eof {
		t.Fatalf("Read(-1) at EOF = %q eof=%v, want empty eof=true", got.Data, got.Eof)
	}
	if !e.atEOF(t, id) {
		t.Fatal("AtEof = false after EOF with an empty buffer")
	}
	if info := e.info(t, id); info.BytesIn != 14 || info.State != "eof" {
		t.Fatalf("bytes_in, state = %d, %s; want 14, eof", info.BytesIn, info.State)
	}
}

func TestReadLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "one\ntwo\nthr")
	e.waitBuffered(t, id, 11)
	for _, want := range []string{"one\n", "two\n"} {
		if got := e.readLine(t, id); string(got.Data) != want || got.Eof {
			t.Fatalf("ReadLine = %q eof=%v, want %q", got.Data, got.Eof, want)
		}
	}
	if e.atEOF(t, id) {
		t.Fatal("AtEof = true before EOF")
	}
	peer.CloseWrite()
	if got := e.readLine(t, id); string(got.Data) != "thr" || !got.Eof {
		t.Fatalf("ReadLine at EOF = %q eof=%v, want thr eof=true", got.Data, got.Eof)
	}
	if got := e.readLine(t, id); len(got.Data) != 0 || !got.Eof {
		t.Fatalf("ReadLine after EOF = %q eof=%v, want empty eof=true", got.Data, got.Eof)
	}
}

func TestReadExactly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "abcdef")
	if got := e.readExactly(t, id, 4); string(got.Data) != "abcd" || got.Incomplete || got.Expected != 4 {
		t.Fatalf("ReadExactly(4) = %v", got)
	}
	if got := e.readExactly(t, id, 0); len(got.Data) != 0 || got.Incomplete {
		t.Fatalf("ReadExactly(0) = %v", got)
	}
	peerWrite(t, peer, "gh")
	peer.CloseWrite()
	got := e.readExactly(t, id, 10)
	if string(got.Data) != "efgh" || !got.Incomplete || got.Expected != 10 {
		t.Fatalf("ReadExactly(10) at EOF = %v, want incomplete efgh expected 10", got)
	}
	if !e.atEOF(t, id) {
		t.Fatal("the buffer was not emptied by the incomplete read")
	}
}

func TestReadUntil(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "a\nb--c**d|e")
	peer.CloseWrite()
	e.waitBuffered(t, id, 11)
	for _, tc := range []struct {
		sep        []byte
		seps       [][]byte
		want       string
		incomplete bool
	}{
		{want: "a\n"},
		{sep: []byte("--"), want: "b--"},
		{seps: [][]byte{[]byte("|"), []byte("**")}, want: "c**"}, // earliest end wins
		{seps: [][]byte{[]byte("zz"), []byte("|")}, want: "d|"},
		{want: "e", incomplete: true},
	} {
		got, err := e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separator: tc.sep, Separators: tc.seps})
		if err != nil {
			t.Fatalf("ReadUntil(%q %q): %v", tc.sep, tc.seps, err)
		}
		if string(got.Data) != tc.want || got.Incomplete != tc.incomplete {
			t.Fatalf("ReadUntil(%q %q) = %q incomplete=%v, want %q incomplete=%v", tc.sep, tc.seps, got.Data, got.Incomplete, tc.want, tc.incomplete)
		}
	}
	if !e.atEOF(t, id) {
		t.Fatal("AtEof = false after an incomplete ReadUntil")
	}
}

func TestWriteWriteLinesDrain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	if got := e.write(t, id, "x"); got.Buffered != 0 {
		t.Fatalf("Write buffered = %d, want 0 (sent at once)", got.Buffered)
	}
	wl, err := e.c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: id, Lines: [][]byte{[]byte("a"), []byte("b"), []byte("\n")}})
	if err != nil || wl.Buffered != 0 {
		t.Fatalf("WriteLines = %v, %v", wl, err)
	}
	if _, err := e.c.Drain(bg(t), &smv1.DrainRequest{StreamId: id}); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if got := peerRead(t, peer, 4); got != "xab\n" {
		t.Fatalf("peer got %q, want xab\\n", got)
	}
	if info := e.info(t, id); info.BytesOut != 4 {
		t.Fatalf("bytes_out = %d, want 4", info.BytesOut)
	}
}

func TestDrainWaitsAboveHighWater(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a, b := e.openPair(t, nil)
	big := pattern(900<<10, 1)
	resp, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: a, Data: big})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Buffered <= 64<<10 {
		t.Fatalf("buffered = %d after a 900 KiB write nobody reads; want above the 64 KiB high-water mark", resp.Buffered)
	}
	_, err = e.c.Drain(within(t, 200*time.Millisecond), &smv1.DrainRequest{StreamId: a})
	wantStatus(t, err, codes.DeadlineExceeded, "")
	e.waitIdle(t, a)

	drained := make(chan error, 1)
	go func() {
		_, err := e.c.Drain(bg(t), &smv1.DrainRequest{StreamId: a})
		drained <- err
	}()
	got := e.readExactly(t, b, int64(len(big)))
	wantBytes(t, "pair read", got.Data, big)
	wait(t, "Drain after the peer read everything", drained)
}

func TestWriteEof(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	e.write(t, id, "request")
	if _, err := e.c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: id}); err != nil {
		t.Fatalf("WriteEof: %v", err)
	}
	if got := peerReadAll(t, peer); got != "request" {
		t.Fatalf("peer read to EOF %q, want request", got)
	}
	if e.isClosing(t, id) {
		t.Fatal("IsClosing = true after WriteEof")
	}
	_, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte("more")})
	wantStatus(t, err, codes.FailedPrecondition, ReasonWriteAfterEOF)
	_, err = e.c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: id, Lines: [][]byte{[]byte("more")}})
	wantStatus(t, err, codes.FailedPrecondition, ReasonWriteAfterEOF)
	// Reading still works.
	peerWrite(t, peer, "response")
	peer.CloseWrite()
	if got := e.read(t, id, nil); string(got.Data) != "response" || !got.Eof {
		t.Fatalf("Read() = %q eof=%v", got.Data, got.Eof)
	}
}

func TestCloseKeepsBufferedBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "bye")
	e.waitBuffered(t, id, 3)
	e.write(t, id, "last words")
	e.closeStream(t, id)
	if !e.isClosing(t, id) {
		t.Fatal("IsClosing = false after Close")
	}
	if _, err := e.c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: id}); err != nil {
		t.Fatalf("WaitClosed: %v", err)
	}
	if got := peerReadAll(t, peer); got != "last words" {
		t.Fatalf("peer read %q then EOF, want the flushed bytes", got)
	}
	if got := e.read(t, id, nil); string(got.Data) != "bye" || !got.Eof {
		t.Fatalf("Read() after Close = %q eof=%v, want bye eof=true", got.Data, got.Eof)
	}
	_, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte("x")})
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamClosed)
	e.closeStream(t, id) // idempotent
	if info := e.info(t, id); info.State != "closed" {
		t.Fatalf("state = %q, want closed", info.State)
	}
}

func TestAbort(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	if _, err := e.c.Abort(bg(t), &smv1.AbortRequest{StreamId: id}); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	peerSeesEOF(t, peer)
	if _, err := e.c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: id}); err != nil {
		t.Fatalf("WaitClosed after Abort: %v", err)
	}
	if !e.isClosing(t, id) {
		t.Fatal("IsClosing = false after Abort")
	}
	_, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte("x")})
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamClosed)
}

func TestWaitClosedWaitsForTheConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peer.CloseWrite() // a peer FIN alone leaves the stream half-open
	waitFor(t, "EOF", func() bool { return e.stream(t, id).R.AtEOF() })
	_, err := e.c.WaitClosed(within(t, 150*time.Millisecond), &smv1.WaitClosedRequest{StreamId: id})
	wantStatus(t, err, codes.DeadlineExceeded, "")
	if e.isClosing(t, id) {
		t.Fatal("IsClosing = true after a peer FIN")
	}
	e.waitIdle(t, id)
	done := make(chan error, 1)
	go func() {
		_, err := e.c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: id})
		done <- err
	}()
	e.closeStream(t, id)
	wait(t, "WaitClosed after Close", done)
}

func TestStartTLSClientSide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := pki(t)
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId

	e.write(t, id, "STARTTLS\n")
	if got := peerRead(t, peer, 9); got != "STARTTLS\n" {
		t.Fatalf("peer got %q", got)
	}
	peerWrite(t, peer, "GO\n")
	if got := e.readLine(t, id); string(got.Data) != "GO\n" {
		t.Fatalf("ReadLine = %q", got.Data)
	}
	if got := e.extra(t, id, "sslcontext"); got != nil {
		t.Fatalf("sslcontext before StartTls = %#v, want null", got)
	}
	tc := tls.Server(peer, p.peerServerTLS())
	hs := handshakeAsync(tc)
	// No server_hostname: the peer's IP (in the certificate's SANs) is used.
	if _, err := e.c.StartTls(bg(t), &smv1.StartTlsRequest{StreamId: id, Tls: &smv1.TlsOptions{CaPem: p.caPEM}}); err != nil {
		t.Fatalf("StartTls: %v", err)
	}
	wait(t, "peer handshake", hs)
	e.write(t, id, "encrypted")
	if got := peerRead(t, tc, 9); got != "encrypted" {
		t.Fatalf("peer got %q over TLS", got)
	}
	peerWrite(t, tc, "back")
	if got := e.readExactly(t, id, 4); string(got.Data) != "back" {
		t.Fatalf("ReadExactly over TLS = %q", got.Data)
	}
	if got := e.extra(t, id, "sslcontext"); got == nil {
		t.Fatal("sslcontext after StartTls = null")
	}
	if got, _ := e.extra(t, id, "cipher").([]any); len(got) != 3 {
		t.Fatalf("cipher after StartTls = %#v", got)
	}
	ok, err := e.c.CanWriteEof(bg(t), &smv1.CanWriteEofRequest{StreamId: id})
	if err != nil || ok.CanWriteEof {
		t.Fatalf("CanWriteEof after StartTls = %v, %v; want false", ok, err)
	}
	if info := e.info(t, id); info.Kind != "tls" {
		t.Fatalf("kind = %q, want tls", info.Kind)
	}
}

func TestStartTLSServerSide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := pki(t)
	// limit 1 makes the reader stop pulling from the socket once more than
	// two bytes are buffered, so the peer's ClientHello stays in the kernel
	// until StartTls takes over the connection: no race with the handshake.
	srv := e.startServer(t, func(r *smv1.StartServerRequest) { r.Limit = i64(1) })
	peer := dialPeer(t, "tcp", srv.Sockets[0])
	id := e.accept(t, srv.ServerId).StreamId

	peerWrite(t, peer, "x")
	if got := e.readExactly(t, id, 1); string(got.Data) != "x" {
		t.Fatalf("plaintext ReadExactly = %q", got.Data)
	}
	e.write(t, id, "y")
	if got := peerRead(t, peer, 1); got != "y" {
		t.Fatalf("peer got %q", got)
	}
	peerWrite(t, peer, "abc") // plaintext that stays buffered across the upgrade
	e.waitBuffered(t, id, 3)
	tc := tls.Client(peer, p.peerClientTLS(false))
	hs := handshakeAsync(tc)
	if _, err := e.c.StartTls(bg(t), &smv1.StartTlsRequest{StreamId: id, Tls: &smv1.TlsOptions{CertPem: p.serverCert, KeyPem: p.serverKey}}); err != nil {
		t.Fatalf("StartTls (server side): %v", err)
	}
	wait(t, "peer handshake", hs)
	if got := e.readExactly(t, id, 3); string(got.Data) != "abc" {
		t.Fatalf("plaintext buffered before the upgrade = %q, want abc", got.Data)
	}
	peerWrite(t, tc, "tls!")
	if got := e.readExactly(t, id, 4); string(got.Data) != "tls!" {
		t.Fatalf("ReadExactly over TLS = %q", got.Data)
	}
	e.write(t, id, "ok")
	if got := peerRead(t, tc, 2); got != "ok" {
		t.Fatalf("peer got %q over TLS", got)
	}
	if ctx, _ := e.extra(t, id, "sslcontext").(map[string]any); ctx["protocol"] != "PROTOCOL_TLS_SERVER" {
		t.Fatalf("sslcontext = %#v, want a server context", ctx)
	}
	if got := e.extra(t, id, "peercert"); got != nil {
		t.Fatalf("peercert without client certificates = %#v, want null", got)
	}
}

func TestCloseServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                string
		closeClients, abort bool
	}{
		{"keep clients", false, false},
		{"close clients", true, false},
		{"abort clients", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			srv := e.startServer(t, nil)
			claimed := dialPeer(t, "tcp", srv.Sockets[0])
			id := e.accept(t, srv.ServerId).StreamId
			queued := dialPeer(t, "tcp", srv.Sockets[0])
			waitFor(t, "second connection to queue", func() bool { return e.serverInfo(t, srv.ServerId).Queued == 1 })
			e.write(t, id, "before")
			if _, err := e.c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: srv.ServerId, CloseClients: tc.closeClients, AbortClients: tc.abort}); err != nil {
				t.Fatalf("CloseServer: %v", err)
			}
			if e.serverInfo(t, srv.ServerId) != nil {
				t.Fatal("ListServers still lists the closed server")
			}
			_, err := e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: srv.ServerId})
			wantStatus(t, err, codes.NotFound, ReasonServerNotFound)
			if _, err := net.DialTimeout("tcp", srv.Sockets[0], failAfter); err == nil {
				t.Fatal("a closed server still accepts connections")
			}
			peerSeesEOF(t, queued) // never claimed: closed with the server
			if got := peerRead(t, claimed, 6); got != "before" {
				t.Fatalf("claimed peer got %q", got)
			}
			if tc.closeClients || tc.abort {
				peerSeesEOF(t, claimed)
				if !e.isClosing(t, id) {
					t.Fatal("IsClosing = false for a client the server closed")
				}
				return
			}
			e.write(t, id, "after")
			if got := peerRead(t, claimed, 5); got != "after" {
				t.Fatalf("claimed peer got %q after CloseServer", got)
			}
		})
	}
}
