package main_test

// Attacks on the daemon's gRPC front door, against a real daemon process:
// each must cost the attacker its connection and the daemon nothing, while
// an honest client keeps being answered.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// rawConn opens a raw HTTP/2 connection to the daemon's socket, sends the
// client preface and SETTINGS, and returns its framer.
func rawConn(t *testing.T, sock string) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

// dialSock connects a gRPC client to a daemon's Unix socket. It is closed
// when the test ends; closing it sooner is harmless.
func dialSock(t testing.TB, sock string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// closedWithin reads (answering nothing) until the daemon closes c, and
// fails if that takes longer than d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection was still open after %v", what, d)
	}
}

// headerBlock encodes a gRPC call's request headers, then repeat times
// the extra field (with one encoder: its dynamic table indexes the rest).
func headerBlock(method string, extra hpack.HeaderField, repeat int) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: method}, {Name: ":authority", Value: "localhost"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	} {
		_ = enc.WriteField(f)
	}
	for range repeat {
		_ = enc.WriteField(extra)
	}
	return buf.Bytes()
}

func healthy(t *testing.T, sock string) {
	t.Helper()
	cc := dialSock(t, sock)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check while under attack: %v", err)
	}
}

// Connections that send only the preface, or a header block and no
// message, are closed after --first-request-timeout.
func TestSilentConnectionsClosed(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--first-request-timeout", "300ms")
	preface, _ := rawConn(t, d.sock)
	headers, fr := rawConn(t, d.sock)
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock("/streammgr.v1.StreamService/ListStreams", hpack.HeaderField{Name: "x-a", Value: "b"}, 1), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	healthy(t, d.sock)
	closedWithin(t, preface, 10*time.Second, "a connection that sent only the preface")
	closedWithin(t, headers, 10*time.Second, "a connection that sent one header block")
	healthy(t, d.sock)
}

// Headers that decode to more than --max-header-list-size are refused
// while they decode: indexed references to one large dynamic-table entry
// (a few bytes on the wire each) cannot make the daemon hold megabytes.
func TestHeaderBombRefused(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false)
	c, fr := rawConn(t, d.sock)
	// One 3 KB field into the dynamic table, then 2,000 one-byte references
	// to it: 6 KB on the wire, 6 MB decoded.
	big := hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 3000)}
	block := headerBlock("/streammgr.v1.StreamService/ListStreams", big, 2000)
	if len(block) > 16<<10 {
		t.Fatalf("the bomb takes %d bytes on the wire", len(block))
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// An empty ListStreamsRequest: the call would be served.
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	// The daemon resets the stream, answers it with an error or drops the
	// connection; what it must not do is serve it.
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for refused := false; !refused; {
		f, err := fr.ReadFrame()
		switch f := f.(type) {
		case nil:
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("no answer to headers that decode to 16 MB")
			}
			refused = true // the connection was dropped
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			refused = true
		case *http2.MetaHeadersFrame:
			if !f.StreamEnded() {
				continue
			}
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" && hf.Value == "0" {
					t.Fatalf("the daemon served a call whose headers decode to 16 MB")
				}
			}
			refused = true
		}
	}
	healthy(t, d.sock)
}

// At most --max-connections connections at once: one more is closed at
// once; when one goes, a new one is served.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--max-connections", "3", "--first-request-timeout", "1m")
	var held []net.Conn
	for range 3 {
		c, _ := rawConn(t, d.sock)
		held = append(held, c)
	}
	extra, err := net.Dial("unix", d.sock) // no preface: the daemon may close it before
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	closedWithin(t, extra, 10*time.Second, "a connection past --max-connections")
	held[0].Close()
	eventually(t, 10*time.Second, "a connection served once one went away", func() bool {
		cc := dialSock(t, d.sock)
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil
	})
}

// At most --max-concurrent-streams calls at once on one connection: one
// more waits (the client holds it back), while another connection is
// served.
func TestConcurrentStreamsCap(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--max-concurrent-streams", "2")
	cc := dialSock(t, d.sock)
	defer cc.Close()
	c := smv1.NewStreamServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pair, err := c.OpenPair(ctx, &smv1.OpenPairRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Two calls that wait: WaitClosed on each end.
	for _, id := range []string{pair.FirstStreamId, pair.SecondStreamId} {
		go func() { _, _ = c.WaitClosed(ctx, &smv1.WaitClosedRequest{StreamId: id}) }()
	}
	eventually(t, 10*time.Second, "both calls in progress at the daemon", func() bool {
		return callsInProgress(t, d, pair.FirstStreamId) == 1 && callsInProgress(t, d, pair.SecondStreamId) == 1
	})
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	_, err = c.AtEof(short, &smv1.AtEofRequest{StreamId: pair.FirstStreamId})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a third call on a connection with 2 in progress = %v, want it held back until its deadline", err)
	}
	healthy(t, d.sock)
}

// callsInProgress is ListStreams' calls_in_progress of id, asked on a
// connection of its own.
func callsInProgress(t *testing.T, d *daemon, id string) int64 {
	t.Helper()
	cc := dialSock(t, d.sock)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := smv1.NewStreamServiceClient(cc).ListStreams(ctx, &smv1.ListStreamsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range resp.Streams {
		if st.StreamId == id {
			return st.CallsInProgress
		}
	}
	return -1
}

// Streams never take the descriptors the daemon keeps for itself: past its
// share of RLIMIT_NOFILE a new stream fails at once with
// TOO_MANY_OPEN_FILES, health and new control connections still answer,
// and closing streams makes room again.
func TestDescriptorReserve(t *testing.T) {
	t.Parallel()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux) is needed: %v", err)
	}
	d := startDaemon(t, false, "--max-connections", "16")
	// The reserve is 16 connections + 128 handshakes + 64: with 400
	// descriptors, streams and servers get 200.
	if out, err := exec.Command(prlimit, "--pid", strconv.Itoa(d.cmd.Process.Pid), "--nofile=400:400").CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v\n%s", err, out)
	}
	cc := dialSock(t, d.sock)
	defer cc.Close()
	c := smv1.NewStreamServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pairs []*smv1.OpenPairResponse
	for {
		p, err := c.OpenPair(ctx, &smv1.OpenPairRequest{})
		if err != nil {
			if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(fmt.Sprint(st.Details()), "TOO_MANY_OPEN_FILES") {
				t.Fatalf("OpenPair past the descriptors = %v, want RESOURCE_EXHAUSTED TOO_MANY_OPEN_FILES", err)
			}
			break
		}
		pairs = append(pairs, p)
		if len(pairs) > 200 {
			t.Fatal("200 pairs (400 descriptors) and still no TOO_MANY_OPEN_FILES")
		}
	}
	if len(pairs) != 100 {
		t.Errorf("%d pairs before TOO_MANY_OPEN_FILES, want 100 (200 descriptors)", len(pairs))
	}
	for range 10 { // new control connections and health still answer
		healthy(t, d.sock)
	}
	p := newPeer(t)
	_, err = c.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(p.port())}}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Open past the descriptors = %v, want RESOURCE_EXHAUSTED", err)
	}
	for _, pr := range pairs[:5] {
		for _, id := range []string{pr.FirstStreamId, pr.SecondStreamId} {
			if _, err := c.Abort(ctx, &smv1.AbortRequest{StreamId: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 10*time.Second, "room for a pair once streams closed", func() bool {
		_, err := c.OpenPair(ctx, &smv1.OpenPairRequest{})
		return err == nil
	})
}

// Shutdown completes within --shutdown-timeout plus a second however much
// is going on: thousands of streams, calls waiting on them, a server with a
// Serve call and a full accept queue, writes nobody reads.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--shutdown-timeout", "1s")
	cc := dialSock(t, d.sock)
	defer cc.Close()
	c := smv1.NewStreamServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ids []string
	for range 1000 {
		p, err := c.OpenPair(ctx, &smv1.OpenPairRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.FirstStreamId, p.SecondStreamId)
	}
	for _, id := range ids[:200] { // calls that wait on streams
		go func() { _, _ = c.Read(ctx, &smv1.ReadRequest{StreamId: id, N: ptr(int64(10))}) }()
	}
	junk := make([]byte, 1<<20)
	for _, id := range ids[200:220] { // unsent bytes
		_, _ = c.Write(ctx, &smv1.WriteRequest{StreamId: id, Data: junk})
	}
	srv, err := c.StartServer(ctx, &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	serve, err := c.Serve(ctx, &smv1.ServeRequest{ServerId: srv.ServerId})
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if conn, err := net.Dial("tcp", srv.Sockets[0]); err == nil {
			defer conn.Close()
		}
	}
	if _, err := serve.Recv(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the waiting reads in progress", func() bool {
		return callsInProgress(t, d, ids[199]) == 1
	})
	start := time.Now()
	// The bound is 1s + 1s; the rest is the process's exit on a loaded
	// machine.
	if err := d.terminate(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("exited %v after SIGTERM with 2000 streams and 200 waiting reads", took.Round(time.Millisecond))
	if took > 4*time.Second {
		t.Errorf("shutdown took %v, want at most --shutdown-timeout + 1s (2s) and a little", took)
	}
}

// Without XDG_RUNTIME_DIR the default socket lives in a directory the
// daemon creates for this user alone; one that someone else could have
// prepared is refused.
func TestDaemonDefaultSocketDir(t *testing.T) {
	t.Parallel()
	bin := daemonBinary(t)
	tmp, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	env := []string{"TMPDIR=" + tmp, "PATH=" + os.Getenv("PATH")}
	dir := filepath.Join(tmp, "streammgrd-"+strconv.Itoa(os.Getuid()))
	sock := filepath.Join(dir, "streammgrd.sock")

	cmd := exec.Command(bin)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	eventually(t, 20*time.Second, "the default socket", func() bool { _, err := os.Stat(sock); return err == nil })
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory %v, %v; want mode 0700", fi.Mode(), err)
	}
	healthy(t, sock)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()

	// A directory open to others is refused.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	again := exec.CommandContext(ctx, bin)
	again.Env = env
	out, err := again.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "refusing to use it") {
		t.Fatalf("daemon with a socket directory of mode 0777: %v\n%s", err, out)
	}
}

// At most --max-calls calls in progress in all: one more is refused at
// once with RESOURCE_EXHAUSTED, from any connection; and a call whose
// request message never comes is cancelled after --first-request-timeout,
// giving its place back.
func TestCallCap(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--max-calls", "2", "--first-request-timeout", "500ms")
	dial := func() smv1.StreamServiceClient { return smv1.NewStreamServiceClient(dialSock(t, d.sock)) }
	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pair, err := c.OpenPair(ctx, &smv1.OpenPairRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Two calls that wait (one refused while the probe below is in
	// progress tries again).
	for _, id := range []string{pair.FirstStreamId, pair.SecondStreamId} {
		go func() {
			for {
				_, err := c.WaitClosed(ctx, &smv1.WaitClosedRequest{StreamId: id})
				if status.Code(err) != codes.ResourceExhausted {
					return
				}
			}
		}()
	}
	other := dial()
	eventually(t, 10*time.Second, "a third call refused", func() bool {
		_, err := other.AtEof(ctx, &smv1.AtEofRequest{StreamId: pair.FirstStreamId})
		return status.Code(err) == codes.ResourceExhausted
	})
	cancel() // the waiting calls end: room again
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	eventually(t, 10*time.Second, "calls served again", func() bool {
		_, err := other.AtEof(ctx2, &smv1.AtEofRequest{StreamId: pair.FirstStreamId})
		return err == nil
	})

	// Headers without a message, on a connection that has been served:
	// the call is cancelled, and its place comes back.
	conn, fr := rawConn(t, d.sock)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock("/grpc.health.v1.Health/Check", hpack.HeaderField{Name: "x-a", Value: "b"}, 1), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // two calls with headers only
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(3 + 2*i), BlockFragment: headerBlock("/streammgr.v1.StreamService/ListStreams", hpack.HeaderField{Name: "x-a", Value: "b"}, 1), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	ended := map[uint32]bool{}
	for len(ended) < 3 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the daemon's answers: %v (ended %v)", err, ended)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.RSTStreamFrame:
			ended[f.StreamID] = true
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			_ = fr.WritePing(true, f.Data)
		}
	}
	if _, err := other.AtEof(ctx2, &smv1.AtEofRequest{StreamId: pair.FirstStreamId}); err != nil {
		t.Fatalf("a call after the headers-only calls were cancelled: %v", err)
	}
}

// A client that pings more often than every 5 s is told to calm down
// (GOAWAY ENHANCE_YOUR_CALM) and disconnected: pings cost the daemon work.
func TestPingFloodClosed(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false)
	c, fr := rawConn(t, d.sock)
	// A served call first, so the connection is not closed for want of one.
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock("/grpc.health.v1.Health/Check", hpack.HeaderField{Name: "x-a", Value: "b"}, 1), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		for i := range 100 {
			if fr.WritePing(false, [8]byte{byte(i)}) != nil {
				return
			}
		}
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the connection ended without a GOAWAY for the pings: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g.ErrCode)
			}
			break
		}
	}
	closedWithin(t, c, 10*time.Second, "a connection that flooded pings")
	healthy(t, d.sock)
}
