package main_test

// End-to-end tests: streammgrd runs as a separate process on a Unix socket
// and on loopback TCP, and every StreamService RPC is driven with the real
// grpcurl binary against real peers (Go sockets in this process). Each
// grpcurl run is a new gRPC connection, so every scenario also checks that
// handles outlive the connection that created them.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streammgr/streammgr/streamcore/streamtest"
	"google.golang.org/grpc/codes"
)

// allMethods is every RPC of StreamService.
var allMethods = []string{
	"Abort", "Accept", "AtEof", "Attach", "CanWriteEof", "Close", "CloseServer", "Drain", "GetExtraInfo", "GetSockOpt",
	"IsClosing", "ListServers", "ListStreams", "Open", "OpenPair", "Read", "ReadExactly",
	"ReadLine", "ReadUntil", "Relay", "Serve", "Session", "SetSockOpt", "Share", "StartServer", "StartServing", "StartTls", "WaitClosed",
	"Write", "WriteEof", "WriteLines",
}

// TestE2E runs the scenarios against one shared daemon listening on a Unix
// socket and on loopback TCP.
func TestE2E(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, true)
	ux, tc := d.unix(), d.tcpTarget()

	t.Run("scenarios", func(t *testing.T) {
		for _, tg := range []target{ux, tc} {
			t.Run("Echo/"+tg.name, func(t *testing.T) { t.Parallel(); testEcho(t, tg) })
		}
		for name, f := range map[string]func(*testing.T, *daemon){
			"SocketMode":            testSocketMode,
			"Reflection":            testReflection,
			"DescribeShowsComments": testDescribeComments,
			"HandlesOutliveClients": testHandlesOutliveClients,
			"CloseKeepsBuffered":    testCloseKeepsBuffered,
			"Abort":                 testAbort,
			"OpenPair":              testOpenPair,
			"StartServerAccept":     testStartServerAccept,
			"Serve":                 testServe,
			"StartServing":          testStartServing,
			"UnixServer":            testUnixServer,
			"StartTls":              testStartTLS,
			"ServerTls":             testServerTLS,
			"DrainWaits":            testDrainWaits,
			"ServerErrors":          testServerErrors,
			"ServeEndsWithClient":   testServeEndsWithClient,
			"NotFound":              testNotFound,
			"InvalidArgument":       testInvalidArgument,
			"ConnectErrors":         testConnectErrors,
			"LimitOverrun":          testLimitOverrun,
			"ReadExactlyPastEOF":    testReadExactlyPastEOF,
			"ConcurrentRead":        testConcurrentRead,
			"PeerReset":             testPeerReset,
			"DeadlineKeepsBytes":    testDeadlineKeepsBytes,
			"Offsets":               testOffsets,
			"Contract":              testContract,
			"Streaming":             testStreaming,
		} {
			t.Run(name, func(t *testing.T) { t.Parallel(); f(t, d) })
		}
	})

	// Every RPC the daemon lists must have been driven by the scenarios.
	if t.Failed() || flagValue("test.run") != "" || flagValue("test.skip") != "" {
		return
	}
	calledMu.Lock()
	defer calledMu.Unlock()
	for _, meth := range allMethods {
		if !called[meth] {
			t.Errorf("no scenario called %s (called: %v)", meth, sortedKeys(called))
		}
	}
}

func testEcho(t *testing.T, tg target) {
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	if !strings.HasPrefix(o.StreamID, "s-") {
		t.Errorf("streamId %q: want an s- handle", o.StreamID)
	}
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port())); o.Peername != want {
		t.Errorf("Open peername %q, want %q", o.Peername, want)
	}
	c := p.accept(t)
	if o.Sockname != c.RemoteAddr().String() {
		t.Errorf("Open sockname %q, but the peer sees %q", o.Sockname, c.RemoteAddr())
	}
	sawEOF := echo(c)
	id := o.StreamID

	// Socket options, as redis-py sets them on get_extra_info('socket').
	if r := loose(t, tg, "SetSockOpt", m{"streamId": id, "name": "TCP_NODELAY", "value": 1}); r["value"] != "1" {
		t.Errorf("SetSockOpt TCP_NODELAY = %v, want 1", r)
	}
	// Go turns TCP keepalive on for every connection it makes.
	if r := loose(t, tg, "GetSockOpt", m{"streamId": id, "name": "SO_KEEPALIVE"}); r["value"] != "1" {
		t.Errorf("GetSockOpt SO_KEEPALIVE = %v, want 1", r)
	}
	st := m{"streamId": id}

	// write, drain, read(100)
	if w := write(t, tg, id, []byte("Hello World!")); w.Buffered < 0 || w.Buffered > 12 {
		t.Errorf("Write buffered %d, want 0..12", w.Buffered)
	}
	call[empty](t, tg, "Drain", st)
	var got []byte
	for len(got) < 12 {
		r := read(t, tg, id, 100)
		if len(r.Data) == 0 || r.EOF {
			t.Fatalf("Read(100) = %+v after %q", r, got)
		}
		got = append(got, r.Data...)
	}
	if string(got) != "Hello World!" {
		t.Fatalf("Read(100) got %q, want %q", got, "Hello World!")
	}

	// writelines, then every read flavour
	lines := []string{"alpha\n", "bravo", "12345", "charlie::delta;;", "echo!", "foxtrot#", "\n"}
	var chunks [][]byte
	total := 0
	for _, l := range lines {
		chunks = append(chunks, []byte(l))
		total += len(l)
	}
	call[writeResp](t, tg, "WriteLines", m{"streamId": id, "lines": chunks})
	if r := call[readResp](t, tg, "ReadLine", st); string(r.Data) != "alpha\n" || r.EOF {
		t.Errorf("ReadLine = %q eof=%v, want %q", r.Data, r.EOF, "alpha\n")
	}
	if r := call[readExactlyResp](t, tg, "ReadExactly", m{"streamId": id, "n": 10}); string(r.Data) != "bravo12345" || r.Incomplete || r.Expected != 10 {
		t.Errorf("ReadExactly(10) = %+v, want bravo12345, complete, expected 10", r)
	}
	if r := call[readUntilResp](t, tg, "ReadUntil", m{"streamId": id, "separator": []byte("::")}); string(r.Data) != "charlie::" || r.Incomplete {
		t.Errorf("ReadUntil(::) = %+v, want charlie::", r)
	}
	if r := call[readUntilResp](t, tg, "ReadUntil", m{"streamId": id, "separators": [][]byte{[]byte("!"), []byte(";;")}}); string(r.Data) != "delta;;" {
		t.Errorf("ReadUntil(! or ;;) = %q, want delta;; (the match that ends first wins)", r.Data)
	}
	if r := call[readUntilResp](t, tg, "ReadUntil", m{"streamId": id, "separators": [][]byte{[]byte("#\n"), []byte("!")}}); string(r.Data) != "echo!" {
		t.Errorf("ReadUntil(#\\n or !) = %q, want echo!", r.Data)
	}
	if r := call[readUntilResp](t, tg, "ReadUntil", st); string(r.Data) != "foxtrot#\n" {
		t.Errorf("ReadUntil() (default newline) = %q, want foxtrot#\\n", r.Data)
	}
	if r := call[atEOFResp](t, tg, "AtEof", st); r.AtEOF {
		t.Error("AtEof = true on an open stream with no FIN")
	}
	if r := call[canWriteEOFResp](t, tg, "CanWriteEof", st); !r.CanWriteEOF {
		t.Error("CanWriteEof = false for TCP")
	}
	if r := call[isClosingResp](t, tg, "IsClosing", st); r.IsClosing {
		t.Error("IsClosing = true on an open stream")
	}

	// get_extra_info
	peer := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": id, "name": "peername"}).Value
	if want := []any{"127.0.0.1", float64(p.port())}; !reflect.DeepEqual(peer, want) {
		t.Errorf("peername = %#v, want %#v", peer, want)
	}
	local := c.RemoteAddr().(*net.TCPAddr)
	sock := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": id, "name": "sockname"}).Value
	if want := []any{"127.0.0.1", float64(local.Port)}; !reflect.DeepEqual(sock, want) {
		t.Errorf("sockname = %#v, want %#v", sock, want)
	}
	so, _ := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": id, "name": "socket"}).Value.(map[string]any)
	if so["family"] != "AF_INET" || so["type"] != "SOCK_STREAM" {
		t.Errorf("socket = %#v, want AF_INET SOCK_STREAM", so)
	}
	for _, name := range []string{"cipher", "peercert", "no-such-name"} {
		if v := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": id, "name": name}).Value; v != nil {
			t.Errorf("GetExtraInfo(%s) = %#v on a plain TCP stream, want null", name, v)
		}
	}

	// ListStreams accounts for the bytes
	info, ok := streamByID(t, tg, id)
	if !ok {
		t.Fatalf("ListStreams does not list %s", id)
	}
	// The last read's bytes are retained until a next read acknowledges
	// them: earliest_offset + retained = bytes_in.
	want := streamInfo{StreamID: id, Kind: "tcp", Peername: o.Peername, Sockname: o.Sockname, State: "open",
		BytesIn: int64(12 + total), BytesOut: int64(12 + total), Age: info.Age,
		Retained: info.Retained, Earliest: int64(12+total) - info.Retained, Owner: ownerOf(tg)}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("ListStreams entry\n got %+v\nwant %+v", info, want)
	}
	if !strings.HasSuffix(info.Age, "s") {
		t.Errorf("age %q: want a JSON duration", info.Age)
	}

	// write_eof: the peer sees EOF, answers with its own FIN
	call[empty](t, tg, "WriteEof", st)
	select {
	case <-sawEOF:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not see EOF after WriteEof")
	}
	fail(t, tg, "Write", m{"streamId": id, "data": []byte("late")}, codes.FailedPrecondition, "WRITE_AFTER_EOF")
	if r := read(t, tg, id, -1); len(r.Data) != 0 || !r.EOF {
		t.Errorf("Read(-1) after the peer's FIN = %+v, want empty at EOF", r)
	}
	if r := call[atEOFResp](t, tg, "AtEof", st); !r.AtEOF {
		t.Error("AtEof = false after the peer's FIN")
	}
	if r := call[isClosingResp](t, tg, "IsClosing", st); r.IsClosing {
		t.Error("IsClosing = true after WriteEof and a peer FIN (want false)")
	}
	if s, _ := streamByID(t, tg, id); s.State != "eof" {
		t.Errorf("state %q after the peer's FIN, want eof", s.State)
	}

	// close, wait_closed
	call[empty](t, tg, "Close", st)
	if r := call[isClosingResp](t, tg, "IsClosing", st); !r.IsClosing {
		t.Error("IsClosing = false after Close")
	}
	call[empty](t, tg, "WaitClosed", st)
	if s, _ := streamByID(t, tg, id); s.State != "closed" {
		t.Errorf("state %q after WaitClosed, want closed", s.State)
	}
}

func testSocketMode(t *testing.T, d *daemon) {
	fi, err := os.Stat(d.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is not a socket: %v", d.sock, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %#o, want 0600", perm)
	}
}

func testReflection(t *testing.T, d *daemon) {
	for _, tg := range []target{d.unix(), d.tcpTarget()} {
		services := strings.Fields(tg.tool(t, "list"))
		for _, want := range []string{service, "grpc.health.v1.Health"} {
			if !slices.Contains(services, want) {
				t.Errorf("%s: list = %v, missing %s", tg.name, services, want)
			}
		}
		var want []string
		for _, meth := range allMethods {
			want = append(want, service+"."+meth)
		}
		got := strings.Fields(tg.tool(t, "list", service))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: list %s\n got %v\nwant %v", tg.name, service, got, want)
		}
		for _, svc := range []string{"", service} {
			h := call[struct {
				Status string `json:"status"`
			}](t, tg, "grpc.health.v1.Health/Check", m{"service": svc})
			if h.Status != "SERVING" {
				t.Errorf("%s: health of %q = %q, want SERVING", tg.name, svc, h.Status)
			}
		}
	}
	desc := d.unix().tool(t, "describe", service+".Open")
	if want := "rpc Open ( .streammgr.v1.OpenRequest ) returns ( .streammgr.v1.OpenResponse );"; !strings.Contains(desc, want) {
		t.Errorf("describe Open:\n%s\nwant it to contain %q", desc, want)
	}
	desc = d.unix().tool(t, "describe", "streammgr.v1.ReadUntilRequest")
	for _, want := range []string{"string stream_id = 1;", "optional bytes separator = 2;", "repeated bytes separators = 3;"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe ReadUntilRequest:\n%s\nwant it to contain %q", desc, want)
		}
	}
}

// testDescribeComments checks that grpcurl describe shows the proto's
// documentation, which STYLE.md relies on ("the comments are what grpcurl
// describe shows a user").
func testDescribeComments(t *testing.T, d *daemon) {
	desc := d.unix().tool(t, "describe", service+".Open")
	const want = "Open connects to a TCP or Unix address"
	if !strings.Contains(desc, want) {
		t.Errorf("grpcurl describe %s.Open does not show the RPC's comment %q; got:\n%s", service, want, desc)
	}
	desc = d.unix().tool(t, "describe", "streammgr.v1.ReadRequest")
	if want := "Maximum bytes to return."; !strings.Contains(desc, want) {
		t.Errorf("grpcurl describe streammgr.v1.ReadRequest does not show the field comment %q; got:\n%s", want, desc)
	}
}

// testHandlesOutliveClients opens a pair over the Unix socket and uses it
// over TCP and again over the Unix socket: every grpcurl run is its own
// gRPC connection. The TCP listener's callers are another identity
// (anonymous): the pair is shared with it first.
func testHandlesOutliveClients(t *testing.T, d *daemon) {
	ux, tc := d.unix(), d.tcpTarget()
	pr := call[pairResp](t, ux, "OpenPair", m{"shareWith": []string{"anonymous"}})
	fail(t, tc, "Share", m{"streamId": pr.Second, "add": []string{"someone"}}, codes.PermissionDenied, "NOT_OWNER")
	if r := loose(t, ux, "Share", m{"streamId": pr.Second, "add": []string{"someone"}}); fmt.Sprint(r["sharedWith"]) != "[anonymous someone]" || r["owner"] != ownerOf(ux) {
		t.Errorf("Share = %v, want owner %s, shared with anonymous and someone", r, ownerOf(ux))
	}
	write(t, tc, pr.First, []byte("across connections"))
	readFull(t, ux, pr.Second, []byte("across connections"))
	for _, id := range []string{pr.First, pr.Second} {
		if _, ok := streamByID(t, tc, id); !ok {
			t.Errorf("ListStreams over TCP does not list %s, opened over the Unix socket", id)
		}
		call[empty](t, tc, "Close", m{"streamId": id})
	}
}

// testCloseKeepsBuffered: Close flushes pending writes, then closes; bytes
// already received stay readable; later writes fail with STREAM_CLOSED.
func testCloseKeepsBuffered(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	writePeer(t, c, "bye\n")
	waitBuffered(t, tg, o.StreamID, 4)
	write(t, tg, o.StreamID, []byte("flushed"))
	call[empty](t, tg, "Close", m{"streamId": o.StreamID})
	readPeer(t, c, "flushed")
	expectPeerEOF(t, c)
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": o.StreamID}); string(r.Data) != "bye\n" {
		t.Errorf("ReadLine after Close = %q, want the buffered %q", r.Data, "bye\n")
	}
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": o.StreamID}); len(r.Data) != 0 || !r.EOF {
		t.Errorf("second ReadLine after Close = %+v, want empty at EOF", r)
	}
	call[empty](t, tg, "WaitClosed", m{"streamId": o.StreamID})
	fail(t, tg, "Write", m{"streamId": o.StreamID, "data": []byte("x")}, codes.FailedPrecondition, "STREAM_CLOSED")
	fail(t, tg, "WriteLines", m{"streamId": o.StreamID, "lines": [][]byte{[]byte("x")}}, codes.FailedPrecondition, "STREAM_CLOSED")
}

func testAbort(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	writePeer(t, c, "kept\n")
	waitBuffered(t, tg, o.StreamID, 5)
	// wait_closed waits for the loss and does not close the stream itself
	r := timed(t, tg, "WaitClosed", m{"streamId": o.StreamID}, time.Second)
	checkError(t, r, codes.DeadlineExceeded, "")
	if s, _ := streamByID(t, tg, o.StreamID); s.State != "open" {
		t.Errorf("state %q after a timed-out WaitClosed, want open", s.State)
	}
	call[empty](t, tg, "Abort", m{"streamId": o.StreamID})
	expectPeerEOF(t, c)
	if r := call[isClosingResp](t, tg, "IsClosing", m{"streamId": o.StreamID}); !r.IsClosing {
		t.Error("IsClosing = false after Abort")
	}
	call[empty](t, tg, "WaitClosed", m{"streamId": o.StreamID})
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": o.StreamID}); string(r.Data) != "kept\n" {
		t.Errorf("ReadLine after Abort = %q, want the buffered %q", r.Data, "kept\n")
	}
	fail(t, tg, "Write", m{"streamId": o.StreamID, "data": []byte("x")}, codes.FailedPrecondition, "STREAM_CLOSED")
	if s, _ := streamByID(t, tg, o.StreamID); s.State != "closed" {
		t.Errorf("state %q after Abort, want closed", s.State)
	}
}

func testOpenPair(t *testing.T, d *daemon) {
	tg := d.unix()
	pr := call[pairResp](t, tg, "OpenPair", m{})
	if pr.First == "" || pr.Second == "" || pr.First == pr.Second {
		t.Fatalf("OpenPair = %+v, want two distinct handles", pr)
	}
	write(t, tg, pr.First, []byte("abc"))
	if r := read(t, tg, pr.Second, 3); string(r.Data) != "abc" {
		t.Errorf("Read on the second end = %q, want abc", r.Data)
	}
	write(t, tg, pr.Second, []byte("xyz"))
	readFull(t, tg, pr.First, []byte("xyz"))
	for _, id := range []string{pr.First, pr.Second} {
		if s, ok := streamByID(t, tg, id); !ok || s.Kind != "pair" {
			t.Errorf("ListStreams %s = %+v (listed %v), want kind pair", id, s, ok)
		}
	}
	call[empty](t, tg, "WriteEof", m{"streamId": pr.First})
	if r := read(t, tg, pr.Second, -1); len(r.Data) != 0 || !r.EOF {
		t.Errorf("Read(-1) after the other end's WriteEof = %+v, want empty at EOF", r)
	}
	call[empty](t, tg, "Close", m{"streamId": pr.First})
	call[empty](t, tg, "Close", m{"streamId": pr.Second})
}

func testStartServerAccept(t *testing.T, d *daemon) {
	tg := d.tcpTarget()
	s := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}})
	if len(s.Sockets) != 1 {
		t.Fatalf("StartServer sockets = %v, want one", s.Sockets)
	}
	host, port, _ := net.SplitHostPort(s.Sockets[0])
	if host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("StartServer socket %q: want 127.0.0.1 and the resolved port", s.Sockets[0])
	}
	cl, err := net.Dial("tcp", s.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	writePeer(t, cl, "ping\n")
	a := call[acceptResp](t, tg, "Accept", m{"serverId": s.ServerID, "timeout": "10s"})
	if a.Peername != cl.LocalAddr().String() {
		t.Errorf("Accept peername %q, want the client's %q", a.Peername, cl.LocalAddr())
	}
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": a.StreamID}); string(r.Data) != "ping\n" {
		t.Errorf("ReadLine = %q, want ping", r.Data)
	}
	write(t, tg, a.StreamID, []byte("pong\n"))
	readPeer(t, cl, "pong\n")
	if si, ok := streamByID(t, tg, a.StreamID); !ok || si.ServerID != s.ServerID || si.Kind != "tcp" || si.Sockname != s.Sockets[0] {
		t.Errorf("ListStreams entry %+v: want kind tcp, serverId %s, sockname %s", si, s.ServerID, s.Sockets[0])
	}
	srv, ok := serverByID(t, tg, s.ServerID)
	want := serverInfo{ServerID: s.ServerID, Sockets: s.Sockets, State: "serving", Accepted: 1, BytesIn: 5, BytesOut: 5, Age: srv.Age, Owner: ownerOf(tg)}
	if !ok || fmt.Sprint(srv) != fmt.Sprint(want) {
		t.Errorf("ListServers entry\n got %+v\nwant %+v", srv, want)
	}
	fail(t, tg, "Accept", m{"serverId": s.ServerID, "timeout": "0.2s"}, codes.DeadlineExceeded, "ACCEPT_TIMEOUT")

	call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID})
	if _, ok := serverByID(t, tg, s.ServerID); ok {
		t.Error("ListServers still lists a closed server")
	}
	if c, err := net.DialTimeout("tcp", s.Sockets[0], time.Second); err == nil {
		c.Close()
		t.Error("the server's port still accepts connections after CloseServer")
	}
	fail(t, tg, "Accept", m{"serverId": s.ServerID}, codes.NotFound, "SERVER_NOT_FOUND")
	fail(t, tg, "CloseServer", m{"serverId": s.ServerID}, codes.NotFound, "SERVER_NOT_FOUND")
	// existing streams keep working
	write(t, tg, a.StreamID, []byte("still here\n"))
	readPeer(t, cl, "still here\n")
	call[empty](t, tg, "Close", m{"streamId": a.StreamID})
	expectPeerEOF(t, cl)
}

func testServe(t *testing.T, d *daemon) {
	tg := d.unix()
	s := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}})
	clients := map[string]net.Conn{}
	dial := func() string {
		c, err := net.Dial("tcp", s.Sockets[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients[c.LocalAddr().String()] = c
		return c.LocalAddr().String()
	}
	// a connection queued before Serve is delivered first
	early := dial()
	eventually(t, 10*time.Second, "the early connection to be queued", func() bool {
		srv, _ := serverByID(t, tg, s.ServerID)
		return srv.Queued == 1
	})
	bg := background(t, tg, "Serve", m{"serverId": s.ServerID}, "-no-max-time")
	dial()
	for i := range 2 {
		var r acceptResp
		bg.next(t, &r)
		c, ok := clients[r.Peername]
		if !ok || r.StreamID == "" {
			t.Fatalf("Serve sent %+v: not one of the clients %v", r, sortedConnKeys(clients))
		}
		if i == 0 && r.Peername != early {
			t.Errorf("Serve delivered %s first, want the queued %s", r.Peername, early)
		}
		delete(clients, r.Peername)
		msg := "hello " + r.Peername + "\n"
		write(t, tg, r.StreamID, []byte(msg))
		readPeer(t, c, msg)
	}
	if srv, _ := serverByID(t, tg, s.ServerID); srv.Accepted != 2 || srv.Queued != 0 || srv.Serving != 1 {
		t.Errorf("ListServers: accepted %d queued %d serve calls %d, want 2, 0 and 1", srv.Accepted, srv.Queued, srv.Serving)
	}
	// Closing the server ends the Serve stream cleanly.
	call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID, "closeClients": true})
	if r := bg.wait(t, 10*time.Second); r.code != 0 {
		t.Errorf("Serve after CloseServer: want exit 0, got:\n%s", r)
	}
}

func sortedConnKeys(mp map[string]net.Conn) []string {
	var out []string
	for k := range mp {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func testStartServing(t *testing.T, d *daemon) {
	tg := d.unix()
	s := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}, "startServing": false, "backlog": 5})
	if len(s.Sockets) != 1 || strings.HasSuffix(s.Sockets[0], ":0") {
		t.Fatalf("sockets %v: want one bound address with its port", s.Sockets)
	}
	if srv, _ := serverByID(t, tg, s.ServerID); srv.State != "bound" {
		t.Errorf("state %q before StartServing, want bound", srv.State)
	}
	if c, err := net.DialTimeout("tcp", s.Sockets[0], time.Second); err == nil {
		c.Close()
		t.Error("a server with startServing=false accepted a connection")
	}
	call[empty](t, tg, "StartServing", m{"serverId": s.ServerID})
	call[empty](t, tg, "StartServing", m{"serverId": s.ServerID}) // idempotent
	if srv, _ := serverByID(t, tg, s.ServerID); srv.State != "serving" {
		t.Errorf("state %q after StartServing, want serving", srv.State)
	}
	cl, err := net.Dial("tcp", s.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	a := call[acceptResp](t, tg, "Accept", m{"serverId": s.ServerID, "timeout": "10s"})
	writePeer(t, cl, "served\n")
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": a.StreamID}); string(r.Data) != "served\n" {
		t.Errorf("ReadLine = %q", r.Data)
	}
	// close_clients closes the accepted stream too
	call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID, "closeClients": true})
	expectPeerEOF(t, cl)
}

func testUnixServer(t *testing.T, d *daemon) {
	tg := d.unix()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "srv.sock")
	s := call[startServerResp](t, tg, "StartServer", m{"unix": m{"path": path}})
	if !slices.Equal(s.Sockets, []string{path}) {
		t.Fatalf("sockets %v, want [%s]", s.Sockets, path)
	}
	// a Go client
	cl, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	writePeer(t, cl, "from go\n")
	a := call[acceptResp](t, tg, "Accept", m{"serverId": s.ServerID, "timeout": "10s"})
	if a.Peername != "" {
		t.Errorf("peername of an unnamed Unix client = %q, want empty", a.Peername)
	}
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": a.StreamID}); string(r.Data) != "from go\n" {
		t.Errorf("ReadLine = %q", r.Data)
	}
	write(t, tg, a.StreamID, []byte("to go\n"))
	readPeer(t, cl, "to go\n")

	// the daemon as its own client: Open over Unix
	o := call[openResp](t, tg, "Open", m{"unix": m{"path": path}})
	if o.Peername != path || o.Sockname != "" {
		t.Errorf("Open unix: peername %q sockname %q, want %q and empty", o.Peername, o.Sockname, path)
	}
	a2 := call[acceptResp](t, tg, "Accept", m{"serverId": s.ServerID, "timeout": "10s"})
	write(t, tg, o.StreamID, []byte("over unix\n"))
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": a2.StreamID}); string(r.Data) != "over unix\n" {
		t.Errorf("ReadLine on the accepted end = %q", r.Data)
	}
	if v := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": o.StreamID, "name": "peername"}).Value; v != path {
		t.Errorf("GetExtraInfo(peername) of a Unix stream = %#v, want %q", v, path)
	}
	for _, id := range []string{o.StreamID, a2.StreamID, a.StreamID} {
		if si, _ := streamByID(t, tg, id); si.Kind != "unix" {
			t.Errorf("stream %s kind %q, want unix", id, si.Kind)
		}
	}
	if r := call[canWriteEOFResp](t, tg, "CanWriteEof", m{"streamId": o.StreamID}); !r.CanWriteEOF {
		t.Error("CanWriteEof = false for a Unix stream")
	}
	call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID, "abortClients": true})
	expectPeerEOF(t, cl)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server's socket file is still there after CloseServer: %v", err)
	}
	call[empty](t, tg, "Close", m{"streamId": o.StreamID})
}

func testStartTLS(t *testing.T, d *daemon) {
	tg := d.unix()
	ca := newTestCA(t)
	p := newPeer(t)
	tlsPeer := func(c net.Conn) chan error {
		done := make(chan error, 1)
		go func() {
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{ca.server}})
			err := tc.Handshake()
			done <- err
			if err == nil {
				_, _ = io.Copy(tc, tc)
			}
			tc.Close()
		}()
		return done
	}

	o := openTCP(t, tg, p.port(), nil)
	hs := tlsPeer(p.accept(t))
	if r := call[canWriteEOFResp](t, tg, "CanWriteEof", m{"streamId": o.StreamID}); !r.CanWriteEOF {
		t.Error("CanWriteEof = false before the upgrade")
	}
	call[empty](t, tg, "StartTls", m{"streamId": o.StreamID, "tls": m{"caPem": ca.caPEM}})
	if err := <-hs; err != nil {
		t.Fatalf("peer handshake: %v", err)
	}
	write(t, tg, o.StreamID, []byte("secret\n"))
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": o.StreamID}); string(r.Data) != "secret\n" {
		t.Errorf("ReadLine over TLS = %q", r.Data)
	}
	cipher, _ := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": o.StreamID, "name": "cipher"}).Value.([]any)
	if len(cipher) != 3 {
		t.Fatalf("cipher = %#v, want [name, protocol, bits]", cipher)
	}
	if name, _ := cipher[0].(string); !strings.HasPrefix(name, "TLS_") || cipher[1] != "TLSv1.3" || (cipher[2] != 128.0 && cipher[2] != 256.0) {
		t.Errorf("cipher = %#v, want [TLS_..., TLSv1.3, 128|256]", cipher)
	}
	cert, _ := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": o.StreamID, "name": "peercert"}).Value.(map[string]any)
	if !strings.Contains(fmt.Sprint(cert["subject"]), "e2e-peer") {
		t.Errorf("peercert = %#v, want the peer's subject", cert)
	}
	if r := call[canWriteEOFResp](t, tg, "CanWriteEof", m{"streamId": o.StreamID}); r.CanWriteEOF {
		t.Error("CanWriteEof = true on TLS")
	}
	if si, _ := streamByID(t, tg, o.StreamID); si.Kind != "tls" {
		t.Errorf("kind %q after StartTls, want tls", si.Kind)
	}
	fail(t, tg, "WriteEof", m{"streamId": o.StreamID}, codes.FailedPrecondition, "WRITE_EOF_UNSUPPORTED")
	call[empty](t, tg, "Close", m{"streamId": o.StreamID})
	call[empty](t, tg, "WaitClosed", m{"streamId": o.StreamID})

	// Open with TLS at once, checking the name given.
	go func() {
		if c, ok := <-p.conns; ok {
			<-tlsPeer(c)
		}
	}()
	o2 := openTCP(t, tg, p.port(), m{"tls": m{"caPem": ca.caPEM, "serverHostname": "localhost"}})
	write(t, tg, o2.StreamID, []byte("direct\n"))
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": o2.StreamID}); string(r.Data) != "direct\n" {
		t.Errorf("ReadLine over TLS = %q", r.Data)
	}
	call[empty](t, tg, "Close", m{"streamId": o2.StreamID})

	// A certificate the client does not trust fails the upgrade.
	o3 := openTCP(t, tg, p.port(), nil)
	hs3 := tlsPeer(p.accept(t))
	e := fail(t, tg, "StartTls", m{"streamId": o3.StreamID, "tls": m{}}, codes.Unavailable, "TLS_ERROR")
	if !strings.Contains(e.Message, "certificate") {
		t.Errorf("StartTls with an untrusted certificate: message %q, want it to mention the certificate", e.Message)
	}
	<-hs3
}

// testServerTLS: a TLS server (StartServer with tls) and a server-side
// StartTls on a plain accepted stream.
func testServerTLS(t *testing.T, d *daemon) {
	tg := d.unix()
	ca := newTestCA(t)
	clientCfg := &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}

	s := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0},
		"tls": m{"certPem": ca.certPEM, "keyPem": ca.keyPEM}})
	cl, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", s.Sockets[0], clientCfg)
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	defer cl.Close()
	writePeer(t, cl, "hello tls\n")
	a := call[acceptResp](t, tg, "Accept", m{"serverId": s.ServerID, "timeout": "10s"})
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": a.StreamID}); string(r.Data) != "hello tls\n" {
		t.Errorf("ReadLine on a TLS server stream = %q", r.Data)
	}
	write(t, tg, a.StreamID, []byte("hello client\n"))
	readPeer(t, cl, "hello client\n")
	if si, _ := streamByID(t, tg, a.StreamID); si.Kind != "tls" {
		t.Errorf("kind %q, want tls", si.Kind)
	}
	if v := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": a.StreamID, "name": "peercert"}).Value; v != nil {
		t.Errorf("peercert without a client certificate = %#v, want null", v)
	}
	ctx, _ := call[extraResp](t, tg, "GetExtraInfo", m{"streamId": a.StreamID, "name": "sslcontext"}).Value.(map[string]any)
	if ctx["protocol"] != "PROTOCOL_TLS_SERVER" {
		t.Errorf("sslcontext = %#v, want protocol PROTOCOL_TLS_SERVER", ctx)
	}
	call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID, "abortClients": true})

	// server-side start_tls on a plain accepted connection
	s2 := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}})
	defer call[empty](t, tg, "CloseServer", m{"serverId": s2.ServerID, "abortClients": true})
	raw, err := net.Dial("tcp", s2.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	a2 := call[acceptResp](t, tg, "Accept", m{"serverId": s2.ServerID, "timeout": "10s"})
	e := fail(t, tg, "StartTls", m{"streamId": a2.StreamID, "tls": m{"caPem": ca.caPEM}}, codes.InvalidArgument, "INVALID_ARGUMENT")
	if got := e.fieldViolations(); !slices.Equal(got, []string{"tls.cert_pem"}) {
		t.Errorf("server-side StartTls without a certificate: field violations %v, want [tls.cert_pem]", got)
	}
	// The client starts its handshake at once, as a STARTTLS client does
	// after the server's go-ahead: its ClientHello may reach the daemon
	// before the StartTls call, and must still go to the handshake.
	upgrade := background(t, tg, "StartTls", m{"streamId": a2.StreamID,
		"tls": m{"certPem": ca.certPEM, "keyPem": ca.keyPEM, "handshakeTimeout": "5s"}})
	tc := tls.Client(raw, clientCfg)
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	hsErr := tc.Handshake()
	_ = raw.SetDeadline(time.Time{})
	if r := upgrade.wait(t, 20*time.Second); hsErr != nil || r.code != 0 {
		t.Fatalf("server-side StartTls: client handshake %v; StartTls:\n%s", hsErr, r)
	}
	writePeer(t, tc, "upgraded\n")
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": a2.StreamID}); string(r.Data) != "upgraded\n" {
		t.Errorf("ReadLine after server-side StartTls = %q", r.Data)
	}
	write(t, tg, a2.StreamID, []byte("over tls\n"))
	readPeer(t, tc, "over tls\n")
}

// slowPeer is a peer whose accepted sockets have a tiny receive buffer, so
// a daemon writing to one that does not read soon has to buffer.
func slowPeer(t testing.TB) *peer {
	return newPeerWith(t, net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}})
}

// testDrainWaits: Drain waits while the write buffer is above its
// high-water mark (64 KiB) and returns once the peer has read enough.
func testDrainWaits(t *testing.T, d *daemon) {
	tg := d.unix()
	p := slowPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	chunk := bytes.Repeat([]byte("d"), 256<<10)
	sent := int64(0)
	for i := 0; ; i++ {
		w := write(t, tg, o.StreamID, chunk)
		sent += int64(len(chunk))
		if w.Buffered > 64<<10 {
			break
		}
		if i == 100 {
			t.Fatalf("the write buffer never went above 64 KiB (%d bytes written, %d buffered)", sent, w.Buffered)
		}
	}
	r := timed(t, tg, "Drain", m{"streamId": o.StreamID}, time.Second)
	checkError(t, r, codes.DeadlineExceeded, "")
	drain := background(t, tg, "Drain", m{"streamId": o.StreamID})
	time.Sleep(200 * time.Millisecond)
	if !drain.running() {
		t.Fatalf("Drain returned while the peer was not reading:\n%s", drain.res)
	}
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	if r := drain.wait(t, 20*time.Second); r.code != 0 {
		t.Fatalf("Drain once the peer reads:\n%s", r)
	}
	call[empty](t, tg, "Close", m{"streamId": o.StreamID})
	select {
	case n := <-got:
		if n != sent {
			t.Errorf("the peer received %d bytes, want %d", n, sent)
		}
	case <-time.After(20 * time.Second):
		t.Error("the peer did not see EOF after Close")
	}
}

func testServerErrors(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	fail(t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": p.port()}}, codes.AlreadyExists, "ADDRESS_IN_USE")
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// a file that is not a socket is never touched
	path := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	fail(t, tg, "StartServer", m{"unix": m{"path": path}}, codes.AlreadyExists, "ADDRESS_IN_USE")
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("StartServer touched a regular file: %q, %v", b, err)
	}
	// a stale socket file is replaced
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s := call[startServerResp](t, tg, "StartServer", m{"unix": m{"path": stale}})
	if c, err := net.Dial("unix", stale); err != nil {
		t.Errorf("dial the server that replaced a stale socket: %v", err)
	} else {
		c.Close()
	}
	call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID, "abortClients": true})
}

// testServeEndsWithClient: a Serve whose client goes away loses no
// connection: what arrives later can still be claimed.
func testServeEndsWithClient(t *testing.T, d *daemon) {
	tg := d.unix()
	s := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}})
	defer call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID, "abortClients": true})
	r := timed(t, tg, "Serve", m{"serverId": s.ServerID}, time.Second)
	checkError(t, r, codes.DeadlineExceeded, "")
	// The daemon learns of the client's deadline a moment after grpcurl
	// exits; connect once the call has ended on its side too.
	eventually(t, 10*time.Second, "the Serve call to end in the daemon", func() bool {
		srv, _ := serverByID(t, tg, s.ServerID)
		return srv.Serving == 0
	})
	c, err := net.Dial("tcp", s.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, 10*time.Second, "the connection to be queued", func() bool {
		srv, _ := serverByID(t, tg, s.ServerID)
		return srv.Queued == 1
	})
	a := call[acceptResp](t, tg, "Accept", m{"serverId": s.ServerID, "timeout": "10s"})
	if a.Peername != c.LocalAddr().String() {
		t.Errorf("Accept peername %q, want %q", a.Peername, c.LocalAddr())
	}
}

func testNotFound(t *testing.T, d *daemon) {
	tg := d.unix()
	const id = "s-0000000000000000"
	for _, meth := range []string{"Read", "ReadLine", "ReadExactly", "ReadUntil", "AtEof", "Write", "WriteLines",
		"Drain", "WriteEof", "CanWriteEof", "Close", "Abort", "WaitClosed", "IsClosing", "GetExtraInfo", "StartTls"} {
		req := m{"streamId": id}
		if meth == "StartTls" {
			req["tls"] = m{"insecureSkipVerify": true}
		}
		e := fail(t, tg, meth, req, codes.NotFound, "STREAM_NOT_FOUND")
		if !strings.Contains(e.Message, id) {
			t.Errorf("%s: message %q does not name the handle", meth, e.Message)
		}
	}
	for _, meth := range []string{"Accept", "StartServing", "CloseServer", "Serve"} {
		fail(t, tg, meth, m{"serverId": "srv-0000000000000000"}, codes.NotFound, "SERVER_NOT_FOUND")
	}
}

func testInvalidArgument(t *testing.T, d *daemon) {
	tg := d.unix()
	pr := call[pairResp](t, tg, "OpenPair", m{})
	id := pr.First
	for _, tc := range []struct {
		name, method string
		req          m
		field        string
	}{
		{"Read negative offset", "Read", m{"streamId": id, "n": 1, "offset": -1}, "offset"},
		{"Open NUL in a unix path", "Open", m{"unix": m{"path": "/tmp/a\x00b"}}, "unix.path"},
		{"StartServer unix path too long", "StartServer", m{"unix": m{"path": "/" + strings.Repeat("p", 120)}}, "unix.path"},
		{"ReadUntil too many separators", "ReadUntil", m{"streamId": id, "separators": slices.Repeat([][]byte{[]byte("x")}, 65)}, "separators"},
		{"ReadExactly n=-1", "ReadExactly", m{"streamId": id, "n": -1}, "n"},
		{"ReadUntil empty separator", "ReadUntil", m{"streamId": id, "separator": []byte{}}, "separator"},
		{"ReadUntil empty separators[1]", "ReadUntil", m{"streamId": id, "separators": [][]byte{[]byte("\n"), {}}}, "separators[1]"},
		{"ReadUntil both separator forms", "ReadUntil", m{"streamId": id, "separator": []byte("a"), "separators": [][]byte{[]byte("b")}}, "separators"},
		{"Open port 70000", "Open", m{"tcp": m{"host": "127.0.0.1", "port": 70000}}, "tcp.port"},
		{"Open port 0", "Open", m{"tcp": m{"host": "127.0.0.1"}}, "tcp.port"},
		{"Open no host", "Open", m{"tcp": m{"port": 80}}, "tcp.host"},
		{"Open no address", "Open", m{}, "address"},
		{"Open empty unix path", "Open", m{"unix": m{}}, "unix.path"},
		{"Open limit 0", "Open", m{"tcp": m{"host": "127.0.0.1", "port": 80}, "limit": 0}, "limit"},
		{"OpenPair limit -1", "OpenPair", m{"limit": -1}, "limit"},
		{"StartServer port 70000", "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 70000}}, "tcp.port"},
		{"StartServer no address", "StartServer", m{}, "address"},
		{"StartTls without options", "StartTls", m{"streamId": id}, "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := fail(t, tg, tc.method, tc.req, codes.InvalidArgument, "INVALID_ARGUMENT")
			if got := e.fieldViolations(); !slices.Equal(got, []string{tc.field}) {
				t.Errorf("BadRequest field violations %v, want [%s]\n%s", got, tc.field, e.raw)
			}
		})
	}
	// nothing happened to the stream
	write(t, tg, pr.Second, []byte("ok"))
	readFull(t, tg, id, []byte("ok"))
}

func testConnectErrors(t *testing.T, d *daemon) {
	tg := d.unix()
	port := freePort(t)
	e := fail(t, tg, "Open", m{"tcp": m{"host": "127.0.0.1", "port": port}}, codes.Unavailable, "CONNECTION_REFUSED")
	if md, _ := e.detail("google.rpc.ErrorInfo")["metadata"].(map[string]any); md["errno"] != strconv.Itoa(int(syscall.ECONNREFUSED)) {
		t.Errorf("ErrorInfo metadata %v, want errno %d", md, syscall.ECONNREFUSED)
	}
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fail(t, tg, "Open", m{"unix": m{"path": filepath.Join(dir, "missing.sock")}}, codes.Unavailable, "NO_SUCH_SOCKET")
	// a Unix peer that is there works
	up := newUnixPeer(t, filepath.Join(dir, "peer.sock"))
	o := call[openResp](t, tg, "Open", m{"unix": m{"path": filepath.Join(dir, "peer.sock")}})
	c := up.accept(t)
	writePeer(t, c, "unix peer\n")
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": o.StreamID}); string(r.Data) != "unix peer\n" {
		t.Errorf("ReadLine = %q", r.Data)
	}
	call[empty](t, tg, "Abort", m{"streamId": o.StreamID})
}

func testLimitOverrun(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), m{"limit": 8})
	id := o.StreamID
	c := p.accept(t)

	// readuntil: no separator within the limit; nothing is consumed
	x := strings.Repeat("x", 20)
	writePeer(t, c, x)
	waitBuffered(t, tg, id, 20)
	e := fail(t, tg, "ReadUntil", m{"streamId": id}, codes.ResourceExhausted, "LIMIT_OVERRUN")
	lo := e.detail("streammgr.v1.LimitOverrunError")
	if lo == nil || lo["consumed"] != "20" || lo["found"] != nil {
		t.Errorf("LimitOverrunError detail = %v, want consumed 20, found false\n%s", lo, e.raw)
	}
	if r := read(t, tg, id, 100); string(r.Data) != x {
		t.Errorf("Read after the overrun = %q, want every byte %q", r.Data, x)
	}

	// readuntil: separator found beyond the limit
	z := strings.Repeat("z", 12) + "\n"
	writePeer(t, c, z)
	waitBuffered(t, tg, id, 13)
	e = fail(t, tg, "ReadUntil", m{"streamId": id, "separator": []byte("\n")}, codes.ResourceExhausted, "LIMIT_OVERRUN")
	if lo := e.detail("streammgr.v1.LimitOverrunError"); lo == nil || lo["consumed"] != "12" || lo["found"] != true {
		t.Errorf("LimitOverrunError detail = %v, want consumed 12, found true", lo)
	}
	readFull(t, tg, id, []byte(z))

	// readline: the over-long line is dropped with its newline, as asyncio does
	writePeer(t, c, strings.Repeat("y", 20)+"\ntail\n")
	waitBuffered(t, tg, id, 26)
	e = fail(t, tg, "ReadLine", m{"streamId": id}, codes.ResourceExhausted, "LINE_TOO_LONG")
	if lo := e.detail("streammgr.v1.LimitOverrunError"); lo == nil || lo["consumed"] != "20" {
		t.Errorf("LimitOverrunError detail of ReadLine = %v, want consumed 20", lo)
	}
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": id}); string(r.Data) != "tail\n" {
		t.Errorf("ReadLine after LINE_TOO_LONG = %q, want tail", r.Data)
	}
	// readline with no newline within the limit clears the buffer
	writePeer(t, c, strings.Repeat("w", 20))
	waitBuffered(t, tg, id, 20)
	e = fail(t, tg, "ReadLine", m{"streamId": id}, codes.ResourceExhausted, "LINE_TOO_LONG")
	if lo := e.detail("streammgr.v1.LimitOverrunError"); lo == nil || lo["consumed"] != "20" || lo["found"] != nil {
		t.Errorf("LimitOverrunError detail of ReadLine = %v, want consumed 20, found false", lo)
	}
	waitBuffered(t, tg, id, 0)
	writePeer(t, c, "next\n")
	if r := call[readResp](t, tg, "ReadLine", m{"streamId": id}); string(r.Data) != "next\n" {
		t.Errorf("ReadLine after a cleared buffer = %q, want next", r.Data)
	}
	call[empty](t, tg, "Abort", m{"streamId": id})
}

func testReadExactlyPastEOF(t *testing.T, d *daemon) {
	tg := d.tcpTarget()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	writePeer(t, c, "abc")
	_ = c.(*net.TCPConn).CloseWrite()
	r := call[readExactlyResp](t, tg, "ReadExactly", m{"streamId": o.StreamID, "n": 10})
	if string(r.Data) != "abc" || !r.Incomplete || r.Expected != 10 {
		t.Errorf("ReadExactly(10) past EOF = %+v, want data abc, incomplete, expected 10", r)
	}
	if a := call[atEOFResp](t, tg, "AtEof", m{"streamId": o.StreamID}); !a.AtEOF {
		t.Error("AtEof = false after reading everything up to EOF")
	}
	if u := call[readUntilResp](t, tg, "ReadUntil", m{"streamId": o.StreamID}); len(u.Data) != 0 || !u.Incomplete {
		t.Errorf("ReadUntil at EOF = %+v, want empty and incomplete", u)
	}
	if l := call[readResp](t, tg, "ReadLine", m{"streamId": o.StreamID}); len(l.Data) != 0 || !l.EOF {
		t.Errorf("ReadLine at EOF = %+v, want empty at EOF", l)
	}
	call[empty](t, tg, "Close", m{"streamId": o.StreamID})
}

func testConcurrentRead(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	req := m{"streamId": o.StreamID, "n": 100}
	first := background(t, tg, "Read", req)
	time.Sleep(time.Second) // let the first Read reach the daemon and wait there

	// read(0) returns at once and is no concurrent read
	if r := read(t, tg, o.StreamID, 0); len(r.Data) != 0 {
		t.Errorf("Read(0) = %+v, want empty", r)
	}
	second := timed(t, tg, "Read", req, 3*time.Second)
	var waiter *bgCall
	switch second.code {
	case 64 + int(codes.FailedPrecondition):
		checkError(t, second, codes.FailedPrecondition, "CONCURRENT_READ")
		fail(t, tg, "ReadLine", m{"streamId": o.StreamID}, codes.FailedPrecondition, "CONCURRENT_READ")
		waiter = first
	case 64 + int(codes.DeadlineExceeded):
		// The second Read got there first (a very slow start of the
		// first grpcurl): the first must have been refused instead.
		r := first.wait(t, 10*time.Second)
		checkError(t, r, codes.FailedPrecondition, "CONCURRENT_READ")
		t.Log("the background Read was the refused one")
	default:
		t.Fatalf("second Read: want CONCURRENT_READ, got:\n%s", second)
	}
	writePeer(t, c, "payload")
	if waiter != nil {
		r := waiter.wait(t, 10*time.Second)
		if r.code != 0 || !strings.Contains(r.stdout, `"cGF5bG9hZA=="`) {
			t.Errorf("the waiting Read: want the payload, got:\n%s", r)
		}
	} else {
		readFull(t, tg, o.StreamID, []byte("payload"))
	}
	call[empty](t, tg, "Abort", m{"streamId": o.StreamID})
}

func testPeerReset(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t).(*net.TCPConn)
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close() // RST
	id := o.StreamID
	for _, rc := range []struct {
		method string
		req    m
	}{
		{"Read", m{"streamId": id, "n": 100}},
		{"Read", m{"streamId": id, "n": 100}},
		{"Read", m{"streamId": id}},
		{"ReadLine", m{"streamId": id}},
		{"ReadExactly", m{"streamId": id, "n": 1}},
		{"ReadUntil", m{"streamId": id, "separator": []byte("x")}},
		{"WaitClosed", m{"streamId": id}},
		{"Write", m{"streamId": id, "data": []byte("x")}},
	} {
		e := fail(t, tg, rc.method, rc.req, codes.Unavailable, "CONNECTION_RESET")
		if md, _ := e.detail("google.rpc.ErrorInfo")["metadata"].(map[string]any); md["errno"] != strconv.Itoa(int(syscall.ECONNRESET)) {
			t.Errorf("%s: ErrorInfo metadata %v, want errno %d", rc.method, md, syscall.ECONNRESET)
		}
	}
	if s, _ := streamByID(t, tg, id); s.State != "closed" {
		t.Errorf("state %q after a reset, want closed", s.State)
	}
	if r := call[isClosingResp](t, tg, "IsClosing", m{"streamId": id}); !r.IsClosing {
		t.Error("IsClosing = false after the connection was lost")
	}
}

func testDeadlineKeepsBytes(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	id := o.StreamID
	c := p.accept(t)

	r := timed(t, tg, "Read", m{"streamId": id, "n": 100}, time.Second)
	checkError(t, r, codes.DeadlineExceeded, "")
	writePeer(t, c, "late bytes")
	readFull(t, tg, id, []byte("late bytes"))

	// a cancelled readexactly consumes nothing of what was there
	writePeer(t, c, "abc")
	waitBuffered(t, tg, id, 3)
	r = timed(t, tg, "ReadExactly", m{"streamId": id, "n": 5}, time.Second)
	checkError(t, r, codes.DeadlineExceeded, "")
	waitBuffered(t, tg, id, 3)
	writePeer(t, c, "de")
	if got := call[readExactlyResp](t, tg, "ReadExactly", m{"streamId": id, "n": 5}); string(got.Data) != "abcde" {
		t.Errorf("ReadExactly(5) after a timed-out one = %q, want abcde", got.Data)
	}
	// so does a cancelled readuntil
	writePeer(t, c, "no separator yet")
	waitBuffered(t, tg, id, 16)
	r = timed(t, tg, "ReadUntil", m{"streamId": id, "separator": []byte("|")}, time.Second)
	checkError(t, r, codes.DeadlineExceeded, "")
	writePeer(t, c, "|")
	if got := call[readUntilResp](t, tg, "ReadUntil", m{"streamId": id, "separator": []byte("|")}); string(got.Data) != "no separator yet|" {
		t.Errorf("ReadUntil after a timed-out one = %q", got.Data)
	}
	call[empty](t, tg, "Abort", m{"streamId": id})
}

// testOffsets drives the offset rules with grpcurl, one connection per
// call: a lost answer read again, a retried write accepted once, the
// window's errors with their metadata, and LINE_TOO_LONG's next_offset.
func testOffsets(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), m{"limit": 8})
	id := o.StreamID
	c := p.accept(t)

	writePeer(t, c, "hello\n")
	waitBuffered(t, tg, id, 6)
	first := call[readResp](t, tg, "ReadLine", m{"streamId": id, "offset": 0})
	again := call[readResp](t, tg, "ReadLine", m{"streamId": id, "offset": 0})
	if string(first.Data) != "hello\n" || first.NextOffset != 6 || string(again.Data) != "hello\n" || again.NextOffset != 6 {
		t.Fatalf("ReadLine at 0, twice = %q/%d and %q/%d; want hello\\n/6 both times", first.Data, first.NextOffset, again.Data, again.NextOffset)
	}
	e := fail(t, tg, "Read", m{"streamId": id, "n": 1, "offset": 7}, codes.OutOfRange, "OFFSET_AHEAD")
	if md, _ := e.detail("google.rpc.ErrorInfo")["metadata"].(map[string]any); md["next_offset"] != "6" {
		t.Errorf("OFFSET_AHEAD metadata = %v, want next_offset 6", md)
	}
	writePeer(t, c, "0123456789\nab")
	waitBuffered(t, tg, id, 13)
	call[readResp](t, tg, "Read", m{"streamId": id, "n": 1, "offset": 6}) // "0", acknowledging "hello\n"
	e = fail(t, tg, "Read", m{"streamId": id, "n": 1, "offset": 5}, codes.OutOfRange, "OFFSET_BEHIND")
	if md, _ := e.detail("google.rpc.ErrorInfo")["metadata"].(map[string]any); md["earliest_offset"] != "6" {
		t.Errorf("OFFSET_BEHIND metadata = %v, want earliest_offset 6", md)
	}
	if f := e.fieldViolations(); !slices.Equal(f, []string{"offset"}) {
		t.Errorf("OFFSET_BEHIND field violations %v, want [offset]", f)
	}
	e = fail(t, tg, "ReadLine", m{"streamId": id, "offset": 6}, codes.ResourceExhausted, "LINE_TOO_LONG")
	if lo := e.detail("streammgr.v1.LimitOverrunError"); lo["nextOffset"] != "17" {
		t.Errorf("LINE_TOO_LONG detail %v, want nextOffset 17 (past the dropped line)", lo)
	}
	if r := call[readResp](t, tg, "Read", m{"streamId": id, "n": 10, "offset": 17}); string(r.Data) != "ab" || r.NextOffset != 19 {
		t.Errorf("Read after the dropped line = %q/%d, want ab/19", r.Data, r.NextOffset)
	}

	w := call[writeResp](t, tg, "Write", m{"streamId": id, "data": []byte("once"), "offset": 0})
	w2 := call[writeResp](t, tg, "Write", m{"streamId": id, "data": []byte("once more"), "offset": 0})
	if w.NextOffset != 4 || w2.NextOffset != 9 {
		t.Errorf("Write next_offset %d then %d, want 4 then 9", w.NextOffset, w2.NextOffset)
	}
	readPeer(t, c, "once more")
	fail(t, tg, "WriteLines", m{"streamId": id, "lines": [][]byte{[]byte("x")}, "offset": 10}, codes.OutOfRange, "OFFSET_AHEAD")
	call[empty](t, tg, "Abort", m{"streamId": id})
}

// contractScript is the checker of the contract's public names
// (testdata/check-contract.sh), or STREAMMGR_CONTRACT_SCRIPT when set.
func contractScript(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("STREAMMGR_CONTRACT_SCRIPT"); p != "" {
		return p
	}
	p, err := filepath.Abs(filepath.Join("testdata", "check-contract.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testContract(t *testing.T, d *daemon) {
	script := contractScript(t)
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("contract script: %v (set STREAMMGR_CONTRACT_SCRIPT to its path)", err)
	}
	for _, addr := range []string{"unix:" + d.sock, d.tcp} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", script, addr)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(grpcurlPath(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "contract: all names present") {
			t.Errorf("check-contract.sh %s: %v\n%s", addr, err, out)
		}
	}
}

// TestDaemonLimits runs a daemon with small limits: --max-streams,
// --max-message-size and --max-write-buffer.
func TestDaemonLimits(t *testing.T) {
	t.Parallel()
	const (
		maxMessage  = 70000
		maxResult   = maxMessage - 1024 // the daemon keeps 1 KiB for the rest of a response
		maxWriteBuf = 65536
	)
	d := startDaemon(t, false, "--max-streams", "2", "--max-message-size", strconv.Itoa(maxMessage),
		"--max-write-buffer", strconv.Itoa(maxWriteBuf), "--max-servers", "1", "--max-accept-queue", "1")
	tg := d.unix()

	// TOO_MANY_SERVERS, and --max-accept-queue: a connection beyond the
	// queue is closed at once.
	s := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}})
	fail(t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}}, codes.ResourceExhausted, "TOO_MANY_SERVERS")
	queued, err := net.Dial("tcp", s.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()
	eventually(t, 10*time.Second, "one queued connection", func() bool {
		srv, _ := serverByID(t, tg, s.ServerID)
		return srv.Queued == 1
	})
	extra, err := net.Dial("tcp", s.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	expectPeerEOF(t, extra)
	extra.Close()
	if srv, _ := serverByID(t, tg, s.ServerID); srv.Queued != 1 || srv.Rejected != 1 {
		t.Errorf("queued %d, rejected %d, want 1 and 1", srv.Queued, srv.Rejected)
	}
	call[empty](t, tg, "CloseServer", m{"serverId": s.ServerID})
	expectPeerEOF(t, queued) // unclaimed connections are closed with the server
	pr := call[pairResp](t, tg, "OpenPair", m{})

	// TOO_MANY_STREAMS
	p := newPeer(t)
	fail(t, tg, "Open", m{"tcp": m{"host": "127.0.0.1", "port": p.port()}}, codes.ResourceExhausted, "TOO_MANY_STREAMS")
	fail(t, tg, "OpenPair", m{}, codes.ResourceExhausted, "TOO_MANY_STREAMS")

	// RESULT_TOO_LARGE, and nothing is consumed by the refused reads
	payload := append(bytes.Repeat([]byte("a"), 60000), bytes.Repeat([]byte("b"), 10000)...)
	write(t, tg, pr.First, payload[:60000])
	write(t, tg, pr.First, payload[60000:])
	call[empty](t, tg, "WriteEof", m{"streamId": pr.First})
	waitBuffered(t, tg, pr.Second, int64(len(payload)))
	fail(t, tg, "Read", m{"streamId": pr.Second, "n": -1}, codes.ResourceExhausted, "RESULT_TOO_LARGE")
	fail(t, tg, "ReadExactly", m{"streamId": pr.Second, "n": maxResult + 1}, codes.ResourceExhausted, "RESULT_TOO_LARGE")
	waitBuffered(t, tg, pr.Second, int64(len(payload)))
	r := read(t, tg, pr.Second, 100000)
	if len(r.Data) != maxResult {
		t.Errorf("Read(100000) returned %d bytes, want the most a response holds, %d", len(r.Data), maxResult)
	}
	rest := read(t, tg, pr.Second, -1)
	if got := append(r.Data, rest.Data...); !bytes.Equal(got, payload) || !rest.EOF {
		t.Errorf("reads returned %d bytes (eof %v), want the %d written", len(got), rest.EOF, len(payload))
	}
	// A request over --max-message-size is refused by gRPC itself.
	big := tg.exec(context.Background(), "Write", m{"streamId": pr.First, "data": bytes.Repeat([]byte("c"), maxMessage)})
	checkError(t, big, codes.ResourceExhausted, "")

	// Closed streams make room for new ones.
	call[empty](t, tg, "Close", m{"streamId": pr.First})
	call[empty](t, tg, "Close", m{"streamId": pr.Second})
	eventually(t, 10*time.Second, "both pair ends closed", func() bool {
		a, _ := streamByID(t, tg, pr.First)
		b, _ := streamByID(t, tg, pr.Second)
		return a.State == "closed" && b.State == "closed"
	})

	// WRITE_BUFFER_FULL against a peer that does not read (small receive
	// buffer, so the kernel takes little).
	slow := slowPeer(t)
	o := openTCP(t, tg, slow.port(), nil)
	c := slow.accept(t)
	chunk := bytes.Repeat([]byte("w"), 60000)
	accepted := int64(0)
	full := false
	for i := 0; i < 300 && !full; i++ {
		res := tg.exec(context.Background(), "Write", m{"streamId": o.StreamID, "data": chunk})
		if res.code == 0 {
			accepted += int64(len(chunk))
			continue
		}
		checkError(t, res, codes.ResourceExhausted, "WRITE_BUFFER_FULL")
		full = true
	}
	t.Logf("WRITE_BUFFER_FULL after %d bytes accepted", accepted)
	if !full {
		t.Fatalf("%d bytes written to a peer that does not read without WRITE_BUFFER_FULL", accepted)
	}
	if si, _ := streamByID(t, tg, o.StreamID); si.BytesOut != accepted {
		t.Errorf("bytesOut %d after a refused write, want %d (a refused write accepts nothing)", si.BytesOut, accepted)
	}
	// Once the peer reads, writing works again.
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	call[empty](t, tg, "Drain", m{"streamId": o.StreamID})
	eventually(t, 20*time.Second, "the write buffer to drain", func() bool {
		// an empty write changes nothing and reports the buffer
		return call[writeResp](t, tg, "Write", m{"streamId": o.StreamID, "data": []byte{}}).Buffered == 0
	})
	write(t, tg, o.StreamID, chunk)
	accepted += int64(len(chunk))
	call[empty](t, tg, "Close", m{"streamId": o.StreamID})
	select {
	case n := <-got:
		if n != accepted {
			t.Errorf("the peer received %d bytes, want %d", n, accepted)
		}
	case <-time.After(20 * time.Second):
		t.Error("the peer did not see EOF after Close")
	}
}

// TestDaemonIdleTimeout: handles outlive clients, but a stream with no RPC
// for --idle-timeout is released (and aborted), while a used one stays.
func TestDaemonIdleTimeout(t *testing.T) {
	t.Parallel()
	const idleTimeout = time.Second
	d := startDaemon(t, false, "--idle-timeout", idleTimeout.String())
	tg := d.unix()
	p := newPeer(t)
	idle := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	busy := call[pairResp](t, tg, "OpenPair", m{})
	// Keep busy.First in use, one grpcurl run (one client) after another,
	// and track the longest time between two of its RPCs: on a loaded
	// machine a run can take long enough to let the stream idle out.
	var maxGap time.Duration
	last := time.Now()
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
		start := time.Now()
		r := tg.exec(context.Background(), "AtEof", m{"streamId": busy.First})
		maxGap = max(maxGap, time.Since(last))
		last = start
		if r.code != 0 {
			if maxGap >= idleTimeout*3/4 {
				break // the machine was too slow to keep it in use: checked below
			}
			t.Fatalf("AtEof on a stream in use: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, 5*time.Second, "the idle streams to be released", func() bool {
		_, a := streamByID(t, tg, idle.StreamID)
		_, b := streamByID(t, tg, busy.Second)
		return !a && !b
	})
	fail(t, tg, "AtEof", m{"streamId": idle.StreamID}, codes.NotFound, "STREAM_NOT_FOUND")
	fail(t, tg, "Read", m{"streamId": busy.Second}, codes.NotFound, "STREAM_NOT_FOUND")
	expectPeerEOF(t, c) // released streams are aborted
	maxGap = max(maxGap, time.Since(last))
	if maxGap >= idleTimeout*3/4 {
		t.Logf("the busy stream went %v between RPCs (machine too loaded to check that it stays)", maxGap)
		return
	}
	if _, ok := streamByID(t, tg, busy.First); !ok {
		t.Errorf("a stream used at least every %v was released by a %v idle timeout", maxGap, idleTimeout)
	}
	call[atEOFResp](t, tg, "AtEof", m{"streamId": busy.First})
}

// TestDaemonSigterm: SIGTERM stops the daemon promptly with exit 0, even
// with a Read waiting, closes its streams and removes the socket file.
func TestDaemonSigterm(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, true, "--shutdown-timeout", "1s")
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	waiting := background(t, tg, "Read", m{"streamId": o.StreamID, "n": 10})
	// Not a guessed sleep: the daemon must have seen the Read (a loaded
	// machine may take seconds to start grpcurl).
	eventually(t, 30*time.Second, "the daemon to see the waiting Read", func() bool {
		si, ok := streamByID(t, tg, o.StreamID)
		return ok && si.Calls > 0
	})
	start := time.Now()
	if err := d.terminate(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if _, err := os.Lstat(d.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after exit: %v", err)
	}
	if cn, err := net.DialTimeout("tcp", d.tcp, time.Second); err == nil {
		cn.Close()
		t.Errorf("TCP address %s still accepts connections", d.tcp)
	}
	expectPeerEOF(t, c)
	r := waiting.wait(t, 10*time.Second)
	t.Logf("the waiting Read ended with exit %d", r.code)
}

// TestDaemonSocketFile: a second daemon on a live socket is refused, a
// stale socket file (from a killed daemon) is replaced.
func TestDaemonSocketFile(t *testing.T) {
	t.Parallel()
	bin := daemonBinary(t)
	d := startDaemon(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--listen", "unix:"+d.sock).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "another daemon is listening there") {
		t.Errorf("second daemon on a live socket: want a non-zero exit saying another daemon listens, got %v\n%s", err, out)
	}
	call[listStreamsResp](t, d.unix(), "ListStreams", m{}) // the first one is unharmed

	d.kill() // SIGKILL: the socket file stays behind
	if _, err := os.Lstat(d.sock); err != nil {
		t.Fatalf("socket file after SIGKILL: %v", err)
	}
	cmd := exec.Command(bin, "--listen", "unix:"+d.sock)
	log := &streamtest.Buffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d2 := &daemon{dir: d.dir, sock: d.sock, cmd: cmd, stderr: log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		d2.state = cmd.ProcessState
		close(d2.exited)
	}()
	if err := d2.waitReady(15 * time.Second); err != nil {
		d2.kill()
		t.Fatalf("daemon on a stale socket file: %v\n%s", err, log)
	}
	// SIGINT stops it as SIGTERM does
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d2.exited:
		if code := d2.state.ExitCode(); code != 0 {
			t.Errorf("exit %d after SIGINT, want 0\n%s", code, log)
		}
	case <-time.After(10 * time.Second):
		d2.kill()
		t.Error("no exit within 10s of SIGINT")
	}
	if _, err := os.Lstat(d.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after SIGINT: %v", err)
	}
}

// TestDaemonClosedLinger: with the idle timeout off, a stream whose
// connection is gone is released after --closed-linger; an open one stays.
func TestDaemonClosedLinger(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--idle-timeout", "0", "--closed-linger", "300ms")
	tg := d.unix()
	pr := call[pairResp](t, tg, "OpenPair", m{})
	call[empty](t, tg, "Close", m{"streamId": pr.First})
	eventually(t, 10*time.Second, "the closed stream to be released", func() bool {
		_, ok := streamByID(t, tg, pr.First)
		return !ok
	})
	fail(t, tg, "WaitClosed", m{"streamId": pr.First}, codes.NotFound, "STREAM_NOT_FOUND")
	time.Sleep(time.Second)
	if si, ok := streamByID(t, tg, pr.Second); !ok || si.State != "eof" {
		t.Errorf("the other end (%+v, listed %v) should stay: its connection is not gone and the idle timeout is off", si, ok)
	}
	if r := read(t, tg, pr.Second, -1); len(r.Data) != 0 || !r.EOF {
		t.Errorf("Read(-1) = %+v, want empty at EOF", r)
	}
}

// TestDaemonConnectionsAtStreamLimit: a queued connection is a stream, so
// one that arrives while the daemon holds --max-streams streams is closed at
// once and counted as rejected; once streams are gone, the next one queues
// and is claimed.
func TestDaemonConnectionsAtStreamLimit(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--max-streams", "2")
	tg := d.unix()
	pr := call[pairResp](t, tg, "OpenPair", m{})
	s := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}})
	refused, err := net.Dial("tcp", s.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	refused.SetReadDeadline(time.Now().Add(callTimeout))
	if n, err := refused.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a connection past --max-streams: read %d, %v; want it closed", n, err)
	}
	if srv, _ := serverByID(t, tg, s.ServerID); srv.Queued != 0 || srv.Rejected != 1 {
		t.Errorf("queued %d rejected %d past --max-streams, want 0 and 1", srv.Queued, srv.Rejected)
	}
	call[empty](t, tg, "Close", m{"streamId": pr.First})
	call[empty](t, tg, "Close", m{"streamId": pr.Second})
	eventually(t, 10*time.Second, "both pair ends closed", func() bool {
		a, _ := streamByID(t, tg, pr.First)
		b, _ := streamByID(t, tg, pr.Second)
		return a.State == "closed" && b.State == "closed"
	})
	c, err := net.Dial("tcp", s.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := tg.exec(context.Background(), "Accept", m{"serverId": s.ServerID, "timeout": "10s"})
	if r.code != 0 {
		t.Fatalf("Accept once streams were released: want the connection, got:\n%s", r)
	}
	writePeer(t, c, "still connected\n")
	var a acceptResp
	if err := json.Unmarshal([]byte(r.stdout), &a); err != nil {
		t.Fatal(err)
	}
	if l := call[readResp](t, tg, "ReadLine", m{"streamId": a.StreamID}); string(l.Data) != "still connected\n" {
		t.Errorf("ReadLine = %q", l.Data)
	}
}

// TestDaemonRefusesRemoteListen: a non-loopback address needs
// --allow-remote; bad addresses are refused with a clear message.
func TestDaemonRefusesRemoteListen(t *testing.T) {
	t.Parallel()
	bin := daemonBinary(t)
	for _, tc := range []struct {
		listen string
		want   []string
	}{
		{"0.0.0.0:0", []string{"not a loopback address", "--allow-remote"}},
		{":0", []string{"not a loopback address", "--allow-remote"}},
		{"localhost", []string{"want unix:/path or host:port"}},
		{"unix:", []string{"empty socket path"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, bin, "--listen", tc.listen).CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("--listen %s: want a non-zero exit, got %v\n%s", tc.listen, err, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("--listen %s: output does not say %q:\n%s", tc.listen, w, out)
			}
		}
	}
}

// ownerOf is the identity the daemon gives the callers of tg: this
// process's uid on the Unix socket, anonymous on the insecure TCP listener.
func ownerOf(tg target) string {
	if tg.name == "tcp" {
		return "anonymous"
	}
	return "uid:" + strconv.Itoa(os.Geteuid())
}
