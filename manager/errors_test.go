package manager

// Every error StreamService reports: its gRPC code, its ErrorInfo reason and
// its details, and that a failed call leaves the stream as it was.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore"
)

func TestNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	const id = "s-0123456789abcdef"
	c := e.c
	streamCalls := map[string]func() error{
		"Read":        func() error { _, err := c.Read(bg(t), &smv1.ReadRequest{StreamId: id}); return err },
		"ReadLine":    func() error { _, err := c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id}); return err },
		"ReadExactly": func() error { _, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: 1}); return err },
		"ReadExactlyN": func() error {
			_, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: 1 << 40})
			return err
		},
		"ReadUntil": func() error { _, err := c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id}); return err },
		"AtEof":     func() error { _, err := c.AtEof(bg(t), &smv1.AtEofRequest{StreamId: id}); return err },
		"Write": func() error {
			_, err := c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte("x")})
			return err
		},
		"WriteLines":  func() error { _, err := c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: id}); return err },
		"Drain":       func() error { _, err := c.Drain(bg(t), &smv1.DrainRequest{StreamId: id}); return err },
		"WriteEof":    func() error { _, err := c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: id}); return err },
		"CanWriteEof": func() error { _, err := c.CanWriteEof(bg(t), &smv1.CanWriteEofRequest{StreamId: id}); return err },
		"Close":       func() error { _, err := c.Close(bg(t), &smv1.CloseRequest{StreamId: id}); return err },
		"Abort":       func() error { _, err := c.Abort(bg(t), &smv1.AbortRequest{StreamId: id}); return err },
		"WaitClosed":  func() error { _, err := c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: id}); return err },
		"IsClosing":   func() error { _, err := c.IsClosing(bg(t), &smv1.IsClosingRequest{StreamId: id}); return err },
		"StartTls": func() error {
			_, err := c.StartTls(bg(t), &smv1.StartTlsRequest{StreamId: id, Tls: &smv1.TlsOptions{InsecureSkipVerify: true}})
			return err
		},
		"GetExtraInfo": func() error {
			_, err := c.GetExtraInfo(bg(t), &smv1.GetExtraInfoRequest{StreamId: id, Name: "peername"})
			return err
		},
	}
	for name, call := range streamCalls {
		t.Run(name, func(t *testing.T) {
			st := wantStatus(t, call(), codes.NotFound, ReasonStreamNotFound)
			if !strings.Contains(st.Message(), id) {
				t.Fatalf("message %q does not name the id", st.Message())
			}
		})
	}
	const sid = "srv-0123456789abcdef"
	serverCalls := map[string]func() error{
		"StartServing": func() error {
			_, err := c.StartServing(bg(t), &smv1.StartServingRequest{ServerId: sid})
			return err
		},
		"Accept":      func() error { _, err := c.Accept(bg(t), &smv1.AcceptRequest{ServerId: sid}); return err },
		"CloseServer": func() error { _, err := c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: sid}); return err },
		"Serve": func() error {
			s, err := c.Serve(bg(t), &smv1.ServeRequest{ServerId: sid})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		},
	}
	for name, call := range serverCalls {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, call(), codes.NotFound, ReasonServerNotFound)
		})
	}
}

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "keep\n")
	e.waitBuffered(t, id, 5)
	srv := e.startServer(t, nil)
	c := e.c
	tcp := func(host string, port uint32) *smv1.OpenRequest_Tcp {
		return &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: host, Port: port}}
	}
	srvTCP := func(port uint32) *smv1.StartServerRequest_Tcp {
		return &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}}
	}
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"ReadExactly n<0", "n", func() error {
			_, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: -1})
			return err
		}},
		{"ReadUntil empty separator", "separator", func() error {
			_, err := c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separator: []byte{}})
			return err
		}},
		{"ReadUntil empty separator in list", "separators[1]", func() error {
			_, err := c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separators: [][]byte{[]byte("\n"), {}}})
			return err
		}},
		{"ReadUntil both forms", "separators", func() error {
			_, err := c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separator: []byte("\n"), Separators: [][]byte{[]byte("x")}})
			return err
		}},
		{"Open port 0", "tcp.port", func() error { _, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("127.0.0.1", 0)}); return err }},
		{"Open port 65536", "tcp.port", func() error { _, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("127.0.0.1", 65536)}); return err }},
		{"Open no host", "tcp.host", func() error { _, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("", 80)}); return err }},
		{"Open no address", "address", func() error { _, err := c.Open(bg(t), &smv1.OpenRequest{}); return err }},
		{"Open empty unix path", "unix.path", func() error {
			_, err := c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{}}})
			return err
		}},
		{"Open limit 0", "limit", func() error {
			_, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("127.0.0.1", 1), Limit: i64(0)})
			return err
		}},
		{"Open limit over the message size", "limit", func() error {
			_, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("127.0.0.1", 1), Limit: i64(DefaultMaxMessageSize)})
			return err
		}},
		{"Open connect_timeout 0", "connect_timeout", func() error {
			_, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("127.0.0.1", 1), ConnectTimeout: durationpb.New(0)})
			return err
		}},
		{"Open local_addr port", "local_addr.port", func() error {
			_, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("127.0.0.1", 1), LocalAddr: &smv1.TcpAddress{Port: 65536}})
			return err
		}},
		{"Open bad ca_pem", "tls.ca_pem", func() error {
			_, err := c.Open(bg(t), &smv1.OpenRequest{Address: tcp("127.0.0.1", 1), Tls: &smv1.TlsOptions{CaPem: "not a certificate"}})
			return err
		}},
		{"Open unix TLS without server_hostname", "tls.server_hostname", func() error {
			_, err := c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: "/nonexistent"}}, Tls: &smv1.TlsOptions{}})
			return err
		}},
		{"OpenPair limit -1", "limit", func() error { _, err := c.OpenPair(bg(t), &smv1.OpenPairRequest{Limit: i64(-1)}); return err }},
		{"StartServer port 65536", "tcp.port", func() error {
			_, err := c.StartServer(bg(t), &smv1.StartServerRequest{Address: srvTCP(65536)})
			return err
		}},
		{"StartServer no address", "address", func() error { _, err := c.StartServer(bg(t), &smv1.StartServerRequest{}); return err }},
		{"StartServer backlog", "backlog", func() error {
			_, err := c.StartServer(bg(t), &smv1.StartServerRequest{Address: srvTCP(0), Backlog: -1})
			return err
		}},
		{"StartServer TLS without cert", "tls.cert_pem", func() error {
			_, err := c.StartServer(bg(t), &smv1.StartServerRequest{Address: srvTCP(0), Tls: &smv1.TlsOptions{}})
			return err
		}},
		{"Accept negative timeout", "timeout", func() error {
			_, err := c.Accept(bg(t), &smv1.AcceptRequest{ServerId: srv.ServerId, Timeout: durationpb.New(-time.Second)})
			return err
		}},
		{"StartTls without options", "tls", func() error { _, err := c.StartTls(bg(t), &smv1.StartTlsRequest{StreamId: id}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := wantStatus(t, tc.call(), codes.InvalidArgument, ReasonInvalidArgument)
			wantField(t, st, tc.field)
		})
	}
	if n := len(e.m.Servers(context.Background())); n != 1 {
		t.Fatal("a rejected StartServer left a server behind")
	}
	// The rejected reads consumed nothing.
	if got := e.readLine(t, id); string(got.Data) != "keep\n" {
		t.Fatalf("ReadLine after rejected calls = %q, want keep\\n", got.Data)
	}
}

func TestLimitOverrun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, data string
		consumed   int64
		found      bool
	}{
		{"separator found beyond the limit", "0123456789abcdef\nxyz", 16, true},
		{"separator not found", "0123456789", 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			resp, peer := e.openTCP(t, func(r *smv1.OpenRequest) { r.Limit = i64(8) })
			id := resp.StreamId
			peerWrite(t, peer, tc.data)
			e.waitBuffered(t, id, len(tc.data))
			_, err := e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id})
			st := wantStatus(t, err, codes.ResourceExhausted, ReasonLimitOverrun)
			if lo := limitDetail(t, st); lo.Consumed != tc.consumed || lo.Found != tc.found {
				t.Fatalf("LimitOverrunError = {consumed %d found %v}, want {%d %v}", lo.Consumed, lo.Found, tc.consumed, tc.found)
			}
			if info := e.info(t, id); info.Buffered != int64(len(tc.data)) || info.BytesIn != 0 {
				t.Fatalf("after the overrun buffered=%d bytes_in=%d, want %d and 0", info.Buffered, info.BytesIn, len(tc.data))
			}
			if got := e.readExactly(t, id, int64(len(tc.data))); string(got.Data) != tc.data {
				t.Fatalf("data after the overrun = %q, want %q", got.Data, tc.data)
			}
		})
	}
}

func TestReadLineTooLong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, data string
		consumed   int64
		found      bool
		left       int    // bytes left buffered after the failed readline
		next       string // what the peer sends next, if anything
		line       string // the next ReadLine
	}{
		{"newline found: the line is dropped", "0123456789\nnext\n", 10, true, 5, "", "next\n"},
		{"no newline: the buffer is cleared", "0123456789", 10, false, 0, "ab\n", "ab\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			resp, peer := e.openTCP(t, func(r *smv1.OpenRequest) { r.Limit = i64(8) })
			id := resp.StreamId
			peerWrite(t, peer, tc.data)
			e.waitBuffered(t, id, len(tc.data))
			_, err := e.c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id})
			st := wantStatus(t, err, codes.ResourceExhausted, ReasonLineTooLong)
			if lo := limitDetail(t, st); lo.Consumed != tc.consumed || lo.Found != tc.found {
				t.Fatalf("LimitOverrunError = {consumed %d found %v}, want {%d %v}", lo.Consumed, lo.Found, tc.consumed, tc.found)
			}
			if got := e.info(t, id).Buffered; got != int64(tc.left) {
				t.Fatalf("buffered after the failed readline = %d, want %d", got, tc.left)
			}
			if tc.next != "" {
				peerWrite(t, peer, tc.next)
			}
			if got := e.readLine(t, id); string(got.Data) != tc.line {
				t.Fatalf("next ReadLine = %q, want %q", got.Data, tc.line)
			}
		})
	}
}

func TestConcurrentRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	first := make(chan *smv1.ReadExactlyResponse, 1)
	go func() {
		r, err := e.c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: 10})
		if err != nil {
			t.Errorf("first ReadExactly: %v", err)
		}
		first <- r
	}()
	waitFor(t, "the first read to start", func() bool { return e.stream(t, id).active.Load() == 1 })
	time.Sleep(50 * time.Millisecond) // from "in the handler" to "waiting" is a few calls
	_, err := e.c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id})
	wantStatus(t, err, codes.FailedPrecondition, ReasonConcurrentRead)
	_, err = e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(1)})
	wantStatus(t, err, codes.FailedPrecondition, ReasonConcurrentRead)
	_, err = e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separator: []byte("x")})
	wantStatus(t, err, codes.FailedPrecondition, ReasonConcurrentRead)
	// read(0) never conflicts.
	if got := e.read(t, id, i64(0)); len(got.Data) != 0 {
		t.Fatalf("Read(0) = %q", got.Data)
	}
	peerWrite(t, peer, "0123456789")
	select {
	case got := <-first:
		if got == nil || string(got.Data) != "0123456789" {
			t.Fatalf("first read = %v, want all ten bytes", got)
		}
	case <-time.After(failAfter):
		t.Fatal("the first read never completed")
	}
}

func TestPeerReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	peerWrite(t, peer, "hidden")
	e.waitBuffered(t, id, 6)
	peer.SetLinger(0)
	peer.Close()
	waitFor(t, "the reset to arrive", func() bool { return e.stream(t, id).R.Exception() != nil })

	c := e.c
	for name, call := range map[string]func() error{
		"Read(-1)":       func() error { _, err := c.Read(bg(t), &smv1.ReadRequest{StreamId: id}); return err },
		"Read(0)":        func() error { _, err := c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(0)}); return err },
		"Read(3)":        func() error { _, err := c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(3)}); return err },
		"ReadExactly(0)": func() error { _, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id}); return err },
		"ReadExactly(3)": func() error { _, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: 3}); return err },
		"ReadLine":       func() error { _, err := c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id}); return err },
		"ReadUntil":      func() error { _, err := c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id}); return err },
		"WaitClosed":     func() error { _, err := c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: id}); return err },
		"Drain":          func() error { _, err := c.Drain(bg(t), &smv1.DrainRequest{StreamId: id}); return err },
		"Write": func() error {
			_, err := c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte("x")})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			for range 2 { // sticky
				st := wantStatus(t, call(), codes.Unavailable, ReasonConnectionReset)
				if got := errorInfo(st).Metadata["errno"]; got != fmt.Sprint(int(syscall.ECONNRESET)) {
					t.Fatalf("errno metadata = %q, want %d", got, syscall.ECONNRESET)
				}
			}
		})
	}
	// Argument errors still come first, as in asyncio.
	_, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: -1})
	wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
	_, err = c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separator: []byte{}})
	wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
	if e.atEOF(t, id) {
		t.Fatal("AtEof = true after a reset")
	}
	if !e.isClosing(t, id) {
		t.Fatal("IsClosing = false after a reset")
	}
	if info := e.info(t, id); info.State != "closed" {
		t.Fatalf("state = %q, want closed", info.State)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	free := listenTCP(t)
	port := portOf(free.Addr())
	free.Close()
	_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}}})
	st := wantStatus(t, err, codes.Unavailable, ReasonConnectionRefused)
	if got := errorInfo(st).Metadata["errno"]; got != fmt.Sprint(int(syscall.ECONNREFUSED)) {
		t.Fatalf("errno metadata = %q, want %d", got, syscall.ECONNREFUSED)
	}

	dir := tempDir(t)
	_, err = e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: filepath.Join(dir, "missing.sock")}}})
	wantStatus(t, err, codes.Unavailable, ReasonNoSuchSocket)

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: stale}}})
	wantStatus(t, err, codes.Unavailable, ReasonConnectionRefused)
	if n := len(e.m.Streams(context.Background())); n != 0 {
		t.Fatalf("%d streams registered after failed opens", n)
	}
}

// blackhole returns the address of a listener whose accept queue is full,
// so the kernel drops further SYNs and a connect hangs until it times out.
func blackhole(t *testing.T) (string, uint32) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(sa.(*syscall.SockaddrInet4).Port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			if isTimeoutErr(err) {
				return "127.0.0.1", port
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill a listen backlog to blackhole connects")
	return "", 0
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	host, port := blackhole(t)
	addr := &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: host, Port: port}}

	start := time.Now()
	_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: addr, ConnectTimeout: durationpb.New(200 * time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, ReasonConnectTimeout)
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("connect_timeout 200ms failed after %v", d)
	}

	// Without connect_timeout, the call's own deadline bounds the connect.
	_, err = e.c.Open(within(t, 200*time.Millisecond), &smv1.OpenRequest{Address: addr})
	wantStatus(t, err, codes.DeadlineExceeded, "")
	waitFor(t, "no stream left", func() bool { return len(e.m.Streams(context.Background())) == 0 })
}

// silentPeer accepts connections and never sends a byte.
func silentPeer(t *testing.T) uint32 {
	ln := listenTCP(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return portOf(ln.Addr())
}

func TestTLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	port := silentPeer(t)
	hs := durationpb.New(200 * time.Millisecond)
	start := time.Now()
	_, err := e.c.Open(bg(t), &smv1.OpenRequest{
		Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}},
		Tls:     &smv1.TlsOptions{InsecureSkipVerify: true, HandshakeTimeout: hs},
	})
	wantStatus(t, err, codes.DeadlineExceeded, ReasonHandshakeTimeout)
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("handshake timeout 200ms fired after %v", d)
	}

	// StartTls on a plain stream whose peer never answers.
	resp, peer := e.openTCP(t, nil)
	_, err = e.c.StartTls(bg(t), &smv1.StartTlsRequest{StreamId: resp.StreamId, Tls: &smv1.TlsOptions{InsecureSkipVerify: true, HandshakeTimeout: hs}})
	wantStatus(t, err, codes.DeadlineExceeded, ReasonHandshakeTimeout)
	if !e.isClosing(t, resp.StreamId) {
		t.Fatal("IsClosing = false after a failed StartTls")
	}
	// The peer got a ClientHello and then the close.
	peer.SetReadDeadline(time.Now().Add(failAfter))
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(peer); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("peer read: %v", err)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != 0x16 {
		t.Fatalf("peer got %d bytes, want a TLS handshake record", buf.Len())
	}
}

func TestTLSVerificationError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := pki(t)
	for _, tc := range []struct {
		name string
		opts *smv1.TlsOptions
	}{
		{"unknown authority", &smv1.TlsOptions{ServerHostname: "localhost"}},
		{"wrong host name", &smv1.TlsOptions{CaPem: p.caPEM, ServerHostname: "example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, _ := tlsPeer(t, p.peerServerTLS())
			_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}}, Tls: tc.opts})
			wantStatus(t, err, codes.Unavailable, ReasonTLSError)
		})
	}
}

// TestTLSPeerAlert: an alert the peer sends (here: it requires a client
// certificate the daemon did not present) is TLS_ERROR, not IO_ERROR,
// whether it ends the handshake or, in TLS 1.3, the first read.
func TestTLSPeerAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := pki(t)
	cfg := p.peerServerTLS()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	ln := listenTCP(t)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(failAfter))
		_ = tc.Handshake() // fails: it sends the alert
	}()
	addr := &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(ln.Addr())}}
	o, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: addr, Tls: &smv1.TlsOptions{CaPem: p.caPEM, ServerHostname: "localhost"}})
	if err == nil {
		_, err = e.c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: o.StreamId, N: 10})
	}
	wantStatus(t, err, codes.Unavailable, ReasonTLSError)
}

func TestAddressInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	taken := listenTCP(t)
	_, err := e.c.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(taken.Addr())}}})
	wantStatus(t, err, codes.AlreadyExists, ReasonAddressInUse)
}

func TestReadDeadlineConsumesNothing(t *testing.T) {
	t.Parallel()
	ops := map[string]func(c smv1.StreamServiceClient, ctx context.Context, id string) error{
		"ReadExactly": func(c smv1.StreamServiceClient, ctx context.Context, id string) error {
			_, err := c.ReadExactly(ctx, &smv1.ReadExactlyRequest{StreamId: id, N: 10})
			return err
		},
		"ReadUntil": func(c smv1.StreamServiceClient, ctx context.Context, id string) error {
			_, err := c.ReadUntil(ctx, &smv1.ReadUntilRequest{StreamId: id, Separator: []byte("--")})
			return err
		},
		"ReadLine": func(c smv1.StreamServiceClient, ctx context.Context, id string) error {
			_, err := c.ReadLine(ctx, &smv1.ReadLineRequest{StreamId: id})
			return err
		},
		"Read(-1)": func(c smv1.StreamServiceClient, ctx context.Context, id string) error {
			_, err := c.Read(ctx, &smv1.ReadRequest{StreamId: id})
			return err
		},
	}
	for name, op := range ops {
		for _, cancel := range []bool{false, true} {
			mode := "deadline"
			if cancel {
				mode = "cancel"
			}
			t.Run(name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Config{})
				resp, peer := e.openTCP(t, nil)
				id := resp.StreamId
				peerWrite(t, peer, "abcde")
				e.waitBuffered(t, id, 5)
				var err error
				if cancel {
					c, stop := context.WithCancel(bg(t))
					time.AfterFunc(150*time.Millisecond, stop)
					err = op(e.c, c, id)
					wantStatus(t, err, codes.Canceled, "")
				} else {
					err = op(e.c, within(t, 150*time.Millisecond), id)
					wantStatus(t, err, codes.DeadlineExceeded, "")
				}
				e.waitIdle(t, id)
				if info := e.info(t, id); info.Buffered != 5 || info.BytesIn != 0 {
					t.Fatalf("after the %s: buffered=%d bytes_in=%d, want 5 and 0", mode, info.Buffered, info.BytesIn)
				}
				if got := e.readExactly(t, id, 5); string(got.Data) != "abcde" {
					t.Fatalf("next read = %q, want abcde", got.Data)
				}
			})
		}
	}
}

// TestReadPutBack drives the handlers with a context that is already
// cancelled while the data is buffered: the read completes at once from the
// buffer, and Service.read must put the result back because nobody would
// receive it.
func TestReadPutBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	const data = "ab\ncd"
	peerWrite(t, peer, data)
	peer.CloseWrite()
	st := e.stream(t, id)
	waitFor(t, "data and EOF", func() bool { return st.R.Buffered() == len(data) && !st.R.IsReading() })

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	svc := e.svc
	for name, call := range map[string]func() error{
		"Read(3)":  func() error { _, err := svc.Read(gone, &smv1.ReadRequest{StreamId: id, N: i64(3)}); return err },
		"Read(-1)": func() error { _, err := svc.Read(gone, &smv1.ReadRequest{StreamId: id}); return err },
		"ReadLine": func() error { _, err := svc.ReadLine(gone, &smv1.ReadLineRequest{StreamId: id}); return err },
		"ReadUntil": func() error {
			_, err := svc.ReadUntil(gone, &smv1.ReadUntilRequest{StreamId: id, Separator: []byte("c")})
			return err
		},
		"ReadExactly(4)": func() error {
			_, err := svc.ReadExactly(gone, &smv1.ReadExactlyRequest{StreamId: id, N: 4})
			return err
		},
		"ReadExactly(10)": func() error {
			_, err := svc.ReadExactly(gone, &smv1.ReadExactlyRequest{StreamId: id, N: 10})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, call(), codes.Canceled, ReasonCancelled)
			if st.R.Buffered() != len(data) || st.R.Consumed() != 0 {
				t.Fatalf("after a read nobody received: buffered=%d consumed=%d, want %d and 0", st.R.Buffered(), st.R.Consumed(), len(data))
			}
		})
	}

	// A read that took the bytes but whose caller left before the answer
	// (Run without Delivered, as the handler does then): a read without
	// an offset gets them again, in order.
	took, _, err := st.R.Run(context.Background(), streamcore.FromDelivered, streamcore.ReadOp{Kind: streamcore.OpReadExactly, N: 4})
	if err != nil || string(took) != data[:4] {
		t.Fatalf("Run(ReadExactly 4) = %q, %v; want %q", took, err, data[:4])
	}
	if got := e.read(t, id, nil); string(got.Data) != data || !got.Eof {
		t.Fatalf("Read() = %q eof=%v, want %q in order, eof=true", got.Data, got.Eof, data)
	}
}

func TestResultTooLarge(t *testing.T) {
	t.Parallel()
	const maxMsg = 64 << 10
	e := newEnv(t, Config{MaxMessageSize: maxMsg})
	maxResult := e.svc.maxResult()

	t.Run("Read and ReadExactly", func(t *testing.T) {
		t.Parallel()
		resp, peer := e.openTCP(t, func(r *smv1.OpenRequest) { r.Limit = i64(16 << 10) })
		id := resp.StreamId
		// Too large for any response: refused at once, not after waiting.
		_, err := e.c.ReadExactly(within(t, 2*time.Second), &smv1.ReadExactlyRequest{StreamId: id, N: int64(maxResult) + 1})
		wantStatus(t, err, codes.ResourceExhausted, ReasonResultTooLarge)

		sent := pattern(100<<10, 3)
		peerWrite(t, peer, string(sent))
		// Read(-1) waits (the reader pauses at 2*limit and the wait resumes
		// it) until more is buffered than fits in a response, and fails
		// then, without waiting for an EOF that may never come.
		_, err = e.c.Read(within(t, 5*time.Second), &smv1.ReadRequest{StreamId: id})
		wantStatus(t, err, codes.ResourceExhausted, ReasonResultTooLarge)
		_, err = e.c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: int64(maxResult) + 1})
		wantStatus(t, err, codes.ResourceExhausted, ReasonResultTooLarge)
		peer.CloseWrite()
		if info := e.info(t, id); info.Buffered <= int64(maxResult) || info.BytesIn != 0 {
			t.Fatalf("after refused reads buffered=%d bytes_in=%d, want > %d and 0", info.Buffered, info.BytesIn, maxResult)
		}
		r := e.read(t, id, i64(1<<20)) // capped to what fits
		if len(r.Data) != maxResult {
			t.Fatalf("Read(1 MiB) returned %d bytes, want the %d that fit", len(r.Data), maxResult)
		}
		got := r.Data
		got = append(got, e.readExactly(t, id, 1000).Data...)
		for !r.Eof {
			r = e.read(t, id, i64(1<<20))
			got = append(got, r.Data...)
		}
		wantBytes(t, "everything read", got, sent)
	})

	t.Run("ReadLine with the default limit", func(t *testing.T) {
		t.Parallel()
		resp, peer := e.openTCP(t, nil)
		id := resp.StreamId
		line := strings.Repeat("x", maxResult+100) + "\n"
		peerWrite(t, peer, line)
		e.waitBuffered(t, id, len(line))
		// Without a limit the stream's limit shrinks to what a response can
		// carry, so the over-long line is asyncio's ValueError (the line and
		// its newline dropped), not a result too large for the message.
		_, err := e.c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id})
		wantStatus(t, err, codes.ResourceExhausted, ReasonLineTooLong)
		peerWrite(t, peer, "next\n")
		if got := e.readLine(t, id); string(got.Data) != "next\n" {
			t.Fatalf("ReadLine after the over-long line = %q, want %q", got.Data, "next\n")
		}
	})

	t.Run("request too large", func(t *testing.T) {
		t.Parallel()
		a, _ := e.openPair(t, i64(1024))
		_, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: a, Data: make([]byte, maxMsg+1)})
		wantStatus(t, err, codes.ResourceExhausted, "")
		if info := e.info(t, a); info.BytesOut != 0 {
			t.Fatalf("bytes_out = %d after a refused write", info.BytesOut)
		}
	})
}

func TestMaxStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxStreams: 2})
	a, _ := e.openPair(t, nil)

	ln := listenTCP(t)
	_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(ln.Addr())}}})
	wantStatus(t, err, codes.ResourceExhausted, ReasonTooManyStreams)
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("Open connected although the registry was full")
	}
	_, err = e.c.OpenPair(bg(t), &smv1.OpenPairRequest{})
	wantStatus(t, err, codes.ResourceExhausted, ReasonTooManyStreams)

	// A connection accepted while the registry is full is a stream too:
	// it is closed at once and counted as rejected.
	srv := e.startServer(t, nil)
	refused := dialPeer(t, "tcp", srv.Sockets[0])
	peerSeesEOF(t, refused)
	if info := e.serverInfo(t, srv.ServerId); info.Rejected != 1 || info.Queued != 0 {
		t.Fatalf("rejected %d queued %d with the registry full, want 1 and 0", info.Rejected, info.Queued)
	}

	// A closed stream makes room: it is evicted for the next connection.
	e.closeStream(t, a)
	if _, err := e.c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: a}); err != nil {
		t.Fatal(err)
	}
	peer := dialPeer(t, "tcp", srv.Sockets[0])
	id := e.accept(t, srv.ServerId).StreamId
	_, err = e.c.IsClosing(bg(t), &smv1.IsClosingRequest{StreamId: a})
	wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
	peerWrite(t, peer, "alive")
	if got := e.readExactly(t, id, 5); string(got.Data) != "alive" {
		t.Fatalf("ReadExactly = %q", got.Data)
	}
}

func TestMaxServers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxServers: 1})
	srv := e.startServer(t, nil)
	_, err := e.c.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
	wantStatus(t, err, codes.ResourceExhausted, ReasonTooManyServers)
	if _, err := e.c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: srv.ServerId}); err != nil {
		t.Fatal(err)
	}
	e.startServer(t, nil)
}

func TestAcceptQueueFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxAcceptQueue: 2})
	srv := e.startServer(t, nil)
	var peers []net.Conn
	for i := range 3 {
		peers = append(peers, dialPeer(t, "tcp", srv.Sockets[0]))
		waitFor(t, "the connection to be accepted", func() bool { return e.serverInfo(t, srv.ServerId).Accepted == int64(i+1) })
	}
	peerSeesEOF(t, peers[2])
	if info := e.serverInfo(t, srv.ServerId); info.Queued != 2 || info.Accepted != 3 || info.Rejected != 1 {
		t.Fatalf("queued/accepted/rejected = %d/%d/%d, want 2/3/1", info.Queued, info.Accepted, info.Rejected)
	}
	for i := range 2 {
		acc := e.accept(t, srv.ServerId)
		if acc.Peername != peers[i].LocalAddr().String() {
			t.Fatalf("Accept #%d got %s, want %s (FIFO)", i, acc.Peername, peers[i].LocalAddr())
		}
		e.write(t, acc.StreamId, "hi")
		if got := peerRead(t, peers[i], 2); got != "hi" {
			t.Fatalf("peer %d got %q", i, got)
		}
	}
}

func TestWriteBufferFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxWriteBuffer: 256 << 10})
	a, b := e.openPair(t, nil)
	var accepted []byte
	var err error
	for i := range 100 {
		chunk := pattern(64<<10, byte(i))
		if _, err = e.c.Write(bg(t), &smv1.WriteRequest{StreamId: a, Data: chunk}); err != nil {
			break
		}
		accepted = append(accepted, chunk...)
	}
	wantStatus(t, err, codes.ResourceExhausted, ReasonWriteBufferFull)
	if info := e.info(t, a); info.BytesOut != int64(len(accepted)) {
		t.Fatalf("bytes_out = %d, want the %d bytes accepted before the refusal", info.BytesOut, len(accepted))
	}
	_, err = e.c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: a, Lines: [][]byte{make([]byte, 200<<10), make([]byte, 100<<10)}})
	wantStatus(t, err, codes.ResourceExhausted, ReasonWriteBufferFull)
	if _, err := e.c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: a}); err != nil {
		t.Fatal(err)
	}
	got := e.read(t, b, nil)
	wantBytes(t, "bytes received", got.Data, accepted)
}

func TestShuttingDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	e.m.Close()
	_, err := e.c.OpenPair(bg(t), &smv1.OpenPairRequest{})
	wantStatus(t, err, codes.Unavailable, ReasonShuttingDown)
	_, err = e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: 1}}})
	wantStatus(t, err, codes.Unavailable, ReasonShuttingDown)
	_, err = e.c.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
	wantStatus(t, err, codes.Unavailable, ReasonShuttingDown)
}

// TestWriteLargerThanCap: a single write larger than --max-write-buffer is
// taken when nothing is unsent, so any write (up to the message size) can
// eventually succeed; while bytes are unsent, WRITE_BUFFER_FULL says how
// much may be sent now.
func TestWriteLargerThanCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxWriteBuffer: 64 << 10})
	a, b := e.openPair(t, nil)
	big := pattern(2<<20, 7)
	if _, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: a, Data: big}); err != nil {
		t.Fatalf("a 2 MiB write into an empty buffer with a 64 KiB cap: %v", err)
	}
	// The peer has not read: most of it is unsent, and the next write must
	// wait for Drain.
	_, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: a, Data: []byte("more")})
	wantStatus(t, err, codes.ResourceExhausted, ReasonWriteBufferFull)
	md := errorInfo(status.Convert(err)).GetMetadata()
	if md[MetaRoom] != "0" || md[MetaCap] != "65536" || md[MetaBuffered] == "" || md[MetaBuffered] == "0" {
		t.Fatalf("WRITE_BUFFER_FULL metadata %v: want room 0, cap 65536 and the unsent bytes", md)
	}
	var got []byte
	drained := make(chan error, 1)
	go func() {
		_, err := e.c.Drain(bg(t), &smv1.DrainRequest{StreamId: a})
		drained <- err
	}()
	for len(got) < len(big) {
		r, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: b, N: i64(1 << 20)})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Data...)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Write(bg(t), &smv1.WriteRequest{StreamId: a, Data: big}); err != nil {
		t.Fatalf("the same write after Drain: %v", err)
	}
	wantBytes(t, "bytes received", got, big)
}
