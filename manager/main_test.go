package manager

// This file holds the test harness shared by the manager tests: an
// in-process gRPC server over a real Unix socket, real TCP, Unix and TLS
// peers built from plain net listeners, and assertions on gRPC statuses.

import (
	"github.com/streammgr/streammgr/streamcore"

	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore/streamtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(streamcore.PollerGoroutine))
}

// failAfter bounds every wait in these tests; it is a failure bound, not a
// tuning knob: passing runs take a small fraction of it.
const failAfter = 10 * time.Second

// env is a Manager served by an in-process gRPC server on a Unix socket,
// with a client connected to it.
type env struct {
	m      *Manager
	svc    *Service
	c      smv1.StreamServiceClient
	target string // gRPC target of the server, for extra client connections
}

// newEnv starts a Manager with cfg behind a gRPC server configured as the
// daemon configures it, and connects a client. Everything is torn down when
// the test ends.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	m := New(cfg)
	svc := NewService(m)
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "g.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	max := m.Config().MaxMessageSize
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(max), grpc.MaxSendMsgSize(max))
	smv1.RegisterStreamServiceServer(srv, svc)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	e := &env{m: m, svc: svc, target: "unix://" + sock}
	cc := e.dial(t)
	e.c = smv1.NewStreamServiceClient(cc)
	t.Cleanup(func() {
		srv.Stop()
		<-served
		m.Close()
		os.RemoveAll(dir)
	})
	return e
}

// dial opens a new client connection to the env's server; it is closed when
// the test ends (closing it twice is harmless).
func (e *env) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(e.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// bg returns a context bounded by failAfter.
func bg(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), failAfter)
	t.Cleanup(cancel)
	return c
}

// within returns a context that ends after d.
func within(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return c
}

// waitFor polls cond until it holds, failing the test after failAfter.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stream returns the registry entry of id (test-side introspection).
func (e *env) stream(t *testing.T, id string) *Stream {
	t.Helper()
	st, err := e.m.stream(context.Background(), id)
	if err != nil {
		t.Fatalf("stream %s: %v", id, err)
	}
	return st
}

// waitBuffered waits until the stream holds exactly n unread bytes.
func (e *env) waitBuffered(t *testing.T, id string, n int) {
	t.Helper()
	st := e.stream(t, id)
	waitFor(t, "stream "+id+" to buffer "+strconv.Itoa(n)+" bytes", func() bool { return st.R.Buffered() == n })
}

// waitIdle waits until no RPC is in progress on the stream, so that a call
// the client gave up on has also ended on the server.
func (e *env) waitIdle(t *testing.T, id string) {
	t.Helper()
	st := e.stream(t, id)
	waitFor(t, "RPCs on "+id+" to end", func() bool { return st.active.Load() == 0 })
}

// info returns the ListStreams entry for id, or nil.
func (e *env) info(t *testing.T, id string) *smv1.StreamInfo {
	t.Helper()
	resp, err := e.c.ListStreams(bg(t), &smv1.ListStreamsRequest{})
	if err != nil {
		t.Fatalf("ListStreams: %v", err)
	}
	for _, s := range resp.Streams {
		if s.StreamId == id {
			return s
		}
	}
	return nil
}

// serverInfo returns the ListServers entry for id, or nil.
func (e *env) serverInfo(t *testing.T, id string) *smv1.ServerInfo {
	t.Helper()
	resp, err := e.c.ListServers(bg(t), &smv1.ListServersRequest{})
	if err != nil {
		t.Fatalf("ListServers: %v", err)
	}
	for _, s := range resp.Servers {
		if s.ServerId == id {
			return s
		}
	}
	return nil
}

// listenTCP returns a loopback listener closed at the end of the test.
func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tempDir is a short temporary directory (Unix socket paths are limited to
// 108 bytes, which t.TempDir can exceed).
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func portOf(a net.Addr) uint32 { return uint32(a.(*net.TCPAddr).Port) }

// acceptOne accepts one connection on ln in the background.
func acceptOne(t *testing.T, ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		defer close(ch)
		c, err := ln.Accept()
		if err == nil {
			ch <- c
		}
	}()
	return ch
}

// peerOf waits for the accepted connection; it is closed when the test ends.
func peerOf(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("peer listener failed to accept")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(failAfter):
		t.Fatal("peer never accepted a connection")
	}
	return nil
}

// openTCP opens a stream through the daemon to a fresh loopback listener and
// returns the response and the peer's end of the connection. edit may
// adjust the request.
func (e *env) openTCP(t *testing.T, edit func(*smv1.OpenRequest)) (*smv1.OpenResponse, *net.TCPConn) {
	t.Helper()
	ln := listenTCP(t)
	accepted := acceptOne(t, ln)
	req := &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(ln.Addr())}}}
	if edit != nil {
		edit(req)
	}
	resp, err := e.c.Open(bg(t), req)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return resp, peerOf(t, accepted).(*net.TCPConn)
}

// openUnix opens a stream through the daemon to a fresh Unix listener and
// returns the response, the peer's end and the socket path.
func (e *env) openUnix(t *testing.T) (*smv1.OpenResponse, *net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(tempDir(t), "peer.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := acceptOne(t, ln)
	resp, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: path}}})
	if err != nil {
		t.Fatalf("Open unix: %v", err)
	}
	return resp, peerOf(t, accepted).(*net.UnixConn), path
}

// openPair opens a daemon-side stream pair.
func (e *env) openPair(t *testing.T, limit *int64) (string, string) {
	t.Helper()
	resp, err := e.c.OpenPair(bg(t), &smv1.OpenPairRequest{Limit: limit})
	if err != nil {
		t.Fatalf("OpenPair: %v", err)
	}
	return resp.FirstStreamId, resp.SecondStreamId
}

// startServer starts a loopback TCP server through the daemon.
func (e *env) startServer(t *testing.T, edit func(*smv1.StartServerRequest)) *smv1.StartServerResponse {
	t.Helper()
	req := &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}}
	if edit != nil {
		edit(req)
	}
	resp, err := e.c.StartServer(bg(t), req)
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	return resp
}

// dialPeer connects a plain client to addr ("host:port"); it is closed when
// the test ends.
func dialPeer(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, failAfter)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Client shorthands: each fails the test on error.

func (e *env) write(t *testing.T, id string, data string) *smv1.WriteResponse {
	t.Helper()
	resp, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte(data)})
	if err != nil {
		t.Fatalf("Write(%q): %v", data, err)
	}
	return resp
}

func (e *env) read(t *testing.T, id string, n *int64) *smv1.ReadResponse {
	t.Helper()
	resp, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: n})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return resp
}

func (e *env) readExactly(t *testing.T, id string, n int64) *smv1.ReadExactlyResponse {
	t.Helper()
	resp, err := e.c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: n})
	if err != nil {
		t.Fatalf("ReadExactly(%d): %v", n, err)
	}
	return resp
}

func (e *env) readLine(t *testing.T, id string) *smv1.ReadLineResponse {
	t.Helper()
	resp, err := e.c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id})
	if err != nil {
		t.Fatalf("ReadLine: %v", err)
	}
	return resp
}

func (e *env) atEOF(t *testing.T, id string) bool {
	t.Helper()
	resp, err := e.c.AtEof(bg(t), &smv1.AtEofRequest{StreamId: id})
	if err != nil {
		t.Fatalf("AtEof: %v", err)
	}
	return resp.AtEof
}

func (e *env) isClosing(t *testing.T, id string) bool {
	t.Helper()
	resp, err := e.c.IsClosing(bg(t), &smv1.IsClosingRequest{StreamId: id})
	if err != nil {
		t.Fatalf("IsClosing: %v", err)
	}
	return resp.IsClosing
}

func (e *env) extra(t *testing.T, id, name string) any {
	t.Helper()
	resp, err := e.c.GetExtraInfo(bg(t), &smv1.GetExtraInfoRequest{StreamId: id, Name: name})
	if err != nil {
		t.Fatalf("GetExtraInfo(%s): %v", name, err)
	}
	return resp.Value.AsInterface()
}

func (e *env) closeStream(t *testing.T, id string) {
	t.Helper()
	if _, err := e.c.Close(bg(t), &smv1.CloseRequest{StreamId: id}); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func (e *env) accept(t *testing.T, serverID string) *smv1.AcceptResponse {
	t.Helper()
	resp, err := e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: serverID})
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	return resp
}

func i64(v int64) *int64 { return &v }

// Peer-side helpers.

// peerRead reads exactly n bytes from the peer's end.
func peerRead(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(failAfter))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("peer read %d bytes: %v (got %q)", n, err, buf)
	}
	return string(buf)
}

// peerReadAll reads from the peer's end until EOF.
func peerReadAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(failAfter))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("peer read to EOF: %v (got %q)", err, b)
	}
	return string(b)
}

// peerSeesEOF asserts that the peer's next read ends the connection (EOF,
// or a reset when the daemon closed with unread bytes) without data.
func peerSeesEOF(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(failAfter))
	var b [64]byte
	n, err := c.Read(b[:])
	if n != 0 || err == nil || isTimeoutErr(err) {
		t.Fatalf("peer read = %d, %v (%q); want EOF", n, err, b[:n])
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func peerWrite(t *testing.T, c net.Conn, data string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(failAfter))
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatalf("peer write: %v", err)
	}
}

// Status assertions.

// maxStatusSize is the largest a status may be: details are names and
// counts, never payload bytes.
const maxStatusSize = 1 << 10

// wantStatus asserts err is a gRPC status with code and, unless reason is
// empty, an ErrorInfo with that reason in the streammgr domain. It returns
// the status for further checks.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %v %s", code, reason)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("got non-status error %v, want %v %s", err, code, reason)
	}
	if st.Code() != code {
		t.Fatalf("got %v (%v), want code %v reason %s", st.Code(), err, code, reason)
	}
	if size := proto.Size(st.Proto()); size >= maxStatusSize {
		t.Fatalf("status is %d bytes, want < %d: %v", size, maxStatusSize, st.Proto())
	}
	if reason == "" {
		return st
	}
	info := errorInfo(st)
	if info == nil {
		t.Fatalf("status %v has no ErrorInfo, want reason %s", err, reason)
	}
	if info.Reason != reason || info.Domain != ErrorDomain {
		t.Fatalf("ErrorInfo = %s/%s (%v), want %s/%s", info.Domain, info.Reason, err, ErrorDomain, reason)
	}
	return st
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// wantField asserts a BadRequest detail naming field.
func wantField(t *testing.T, st *status.Status, field string) {
	t.Helper()
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			if len(br.FieldViolations) != 1 || br.FieldViolations[0].Field != field || br.FieldViolations[0].Description == "" {
				t.Fatalf("BadRequest = %v, want one violation of %q", br, field)
			}
			return
		}
	}
	t.Fatalf("status %v has no BadRequest detail, want field %q", st.Proto(), field)
}

// limitDetail returns the streammgr.v1.LimitOverrunError detail.
func limitDetail(t *testing.T, st *status.Status) *smv1.LimitOverrunError {
	t.Helper()
	for _, d := range st.Details() {
		if lo, ok := d.(*smv1.LimitOverrunError); ok {
			return lo
		}
	}
	t.Fatalf("status %v has no LimitOverrunError detail", st.Proto())
	return nil
}

// pattern returns n bytes that differ from any shifted copy of themselves,
// so a lost, duplicated or reordered byte shows in a comparison.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

func wantBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		if len(got) > 64 || len(want) > 64 {
			t.Fatalf("%s: got %d bytes, want %d bytes (content differs)", what, len(got), len(want))
		}
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// PKI: a CA and certificates signed by it, generated once by streamtest.

type testPKI struct {
	caPEM                 string
	serverCert, serverKey string // CN=localhost, SANs localhost, 127.0.0.1 and ::1
	clientCert, clientKey string // CN=test-client
	pool                  *x509.CertPool
	serverPair            tls.Certificate
	clientPair            tls.Certificate
	st                    *streamtest.PKI // the fixture the fields above come from
}

var pkiOnce = sync.OnceValues(makePKI)

func pki(t *testing.T) *testPKI {
	t.Helper()
	p, err := pkiOnce()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func makePKI() (*testPKI, error) {
	p, err := streamtest.NewPKI(&streamtest.PKIOptions{ClientCommonName: "test-client"})
	if err != nil {
		return nil, err
	}
	return &testPKI{
		caPEM:      p.CAPEM,
		serverCert: p.ServerCertPEM, serverKey: p.ServerKeyPEM,
		clientCert: p.ClientCertPEM, clientKey: p.ClientKeyPEM,
		pool:       p.CertPool,
		serverPair: p.Server,
		clientPair: p.Client,
		st:         p,
	}, nil
}

// peerServerTLS is the Go peer's configuration as a TLS server.
func (p *testPKI) peerServerTLS() *tls.Config {
	return p.st.ServerConfig()
}

// peerClientTLS is the Go peer's configuration as a TLS client, presenting
// the client certificate when withCert is set.
func (p *testPKI) peerClientTLS(withCert bool) *tls.Config {
	cfg := p.st.ClientConfig()
	cfg.ServerName = "localhost"
	if withCert {
		cfg.Certificates = []tls.Certificate{p.clientPair}
	}
	return cfg
}

// handshakeAsync runs the peer's TLS handshake in the background.
func handshakeAsync(tc *tls.Conn) <-chan error {
	ch := make(chan error, 1)
	go func() {
		tc.SetDeadline(time.Now().Add(failAfter))
		err := tc.Handshake()
		tc.SetDeadline(time.Time{})
		ch <- err
	}()
	return ch
}

func wait(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(failAfter):
		t.Fatalf("%s: timed out", what)
	}
}
