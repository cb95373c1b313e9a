package manager

// Tests of Relay against real sockets: both directions and half-close,
// bytes buffered before it, TCP, Unix and TLS streams, how it ends (both
// EOFs, Close, Abort, a reset), a caller that goes away, the operations it
// refuses, the byte counts and leaks.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// relayResult is a Relay call's answer.
type relayResult struct {
	resp *smv1.RelayResponse
	err  error
}

// startRelay calls Relay in the background with ctx (bg when nil).
func (e *env) startRelay(t *testing.T, ctx context.Context, first, second string) <-chan relayResult {
	t.Helper()
	if ctx == nil {
		ctx = bg(t)
	}
	ch := make(chan relayResult, 1)
	go func() {
		r, err := e.c.Relay(ctx, &smv1.RelayRequest{FirstStreamId: first, SecondStreamId: second})
		ch <- relayResult{r, err}
	}()
	return ch
}

// waitRelay waits for the Relay call to return.
func waitRelay(t *testing.T, ch <-chan relayResult) relayResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(3 * failAfter):
		t.Fatal("the Relay call did not return")
	}
	return relayResult{}
}

// relayRunning reports whether the Relay call is still waiting.
func relayRunning(ch <-chan relayResult) bool { return len(ch) == 0 }

// waitRelayed waits until ListStreams shows the relay on both streams.
func (e *env) waitRelayed(t *testing.T, a, b string) {
	t.Helper()
	waitFor(t, "ListStreams to show the relay", func() bool {
		return e.info(t, a).RelayPeer == b && e.info(t, b).RelayPeer == a
	})
}

// bigPattern is pattern for large sizes: a block of a prime length
// repeated (every piece the tests move is shorter than the block).
func bigPattern(n int, seed byte) []byte {
	const block = 1048583
	p := pattern(min(n, block), seed)
	b := make([]byte, n)
	for i := 0; i < n; i += block {
		copy(b[i:], p)
	}
	return b
}

// relayPeers are the two peers' ends of a relayed pair of streams.
type relayPeers struct {
	a, b   string   // the stream handles
	pa, pb net.Conn // the peers' ends
}

// openRelayPair opens a stream of kind ka and one of kind kb.
func (e *env) openRelayPair(t *testing.T, ka, kb string) relayPeers {
	t.Helper()
	a, pa := e.openKind(t, ka)
	b, pb := e.openKind(t, kb)
	return relayPeers{a, b, pa, pb}
}

// TestRelayBothWays relays bytes both ways at once between TCP and Unix
// streams (every combination: TCP to TCP and Unix to TCP splice, TCP to
// Unix splices to EOF, Unix to Unix copies), checks every byte, the
// counts of the response, and ListStreams' byte counts and relay_peer.
func TestRelayBothWays(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		ka, kb string
		size   int
	}{
		{"tcp", "tcp", 16 << 20}, // TestRelayE2E moves 64 MiB each way through the daemon
		{"tcp", "unix", 8 << 20},
		{"unix", "tcp", 8 << 20},
		{"unix", "unix", 8 << 20},
	} {
		t.Run(c.ka+"-"+c.kb, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			p := e.openRelayPair(t, c.ka, c.kb)
			x, y := bigPattern(c.size, 1), bigPattern(c.size, 2)
			done := e.startRelay(t, nil, p.a, p.b)
			e.waitRelayed(t, p.a, p.b)
			gotA, gotB := peerCollect(p.pa), peerCollect(p.pb)
			wa := peerWriteChunks(p.pa, x, 1, true)
			wb := peerWriteChunks(p.pb, y, 2, true)
			waitErr(t, "peer a write", wa)
			waitErr(t, "peer b write", wb)
			rb, ra := waitPeer(t, gotB), waitPeer(t, gotA)
			if ra.err != nil || rb.err != nil {
				t.Fatalf("peer reads: %v, %v", ra.err, rb.err)
			}
			wantBytes(t, "a to b", rb.data, x)
			wantBytes(t, "b to a", ra.data, y)
			r := waitRelay(t, done)
			if r.err != nil {
				t.Fatalf("Relay: %v", r.err)
			}
			if r.resp.FirstToSecond != int64(c.size) || r.resp.SecondToFirst != int64(c.size) {
				t.Fatalf("Relay = %v, want %d both ways", r.resp, c.size)
			}
			for _, id := range []string{p.a, p.b} {
				info := e.info(t, id)
				if info.BytesIn != int64(c.size) || info.BytesOut != int64(c.size) || info.RelayPeer != "" {
					t.Fatalf("ListStreams %s: bytes_in %d, bytes_out %d, relay_peer %q; want %d, %d, none", id, info.BytesIn, info.BytesOut, info.RelayPeer, c.size, c.size)
				}
			}
		})
	}
}

// TestRelayCountsWhileRunning: between TCP streams the byte counts in
// ListStreams include relayed bytes while the relay runs.
func TestRelayCountsWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := e.openRelayPair(t, "tcp", "tcp")
	done := e.startRelay(t, nil, p.a, p.b)
	e.waitRelayed(t, p.a, p.b)
	const size = 8 << 20 // two of the relay's chunks
	x := bigPattern(size, 3)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, size)
		p.pb.SetReadDeadline(time.Now().Add(failAfter))
		n, _ := io.ReadFull(p.pb, b)
		got <- b[:n]
	}()
	waitErr(t, "peer write", peerWriteChunks(p.pa, x, 3, false))
	wantBytes(t, "relayed", <-got, x)
	waitFor(t, "the counts to include the relayed bytes", func() bool {
		return e.info(t, p.a).BytesIn == size && e.info(t, p.b).BytesOut == size
	})
	if !relayRunning(done) {
		t.Fatal("the relay ended before EOF")
	}
	closeWrite(t, p.pa)
	closeWrite(t, p.pb)
	if r := waitRelay(t, done); r.err != nil || r.resp.FirstToSecond != size || r.resp.SecondToFirst != 0 {
		t.Fatalf("Relay = %v, %v; want %d and 0", r.resp, r.err, size)
	}
}

// TestRelayHalfClose: one peer's FIN reaches the other peer as EOF while
// the other direction keeps flowing; the relay ends after both EOFs with
// exact counts.
func TestRelayHalfClose(t *testing.T) {
	t.Parallel()
	for _, kinds := range [][2]string{{"tcp", "tcp"}, {"tcp", "unix"}, {"unix", "tcp"}} {
		t.Run(kinds[0]+"-"+kinds[1], func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			p := e.openRelayPair(t, kinds[0], kinds[1])
			done := e.startRelay(t, nil, p.a, p.b)
			e.waitRelayed(t, p.a, p.b)
			peerWrite(t, p.pa, "question")
			closeWrite(t, p.pa)
			if got := peerReadAll(t, p.pb); got != "question" {
				t.Fatalf("b's peer read %q before EOF, want question", got)
			}
			// After the EOF one way, the other way still flows.
			answer := bigPattern(2<<20, 4)
			got := peerCollect(p.pa)
			waitErr(t, "peer b write", peerWriteChunks(p.pb, answer, 4, false))
			if !relayRunning(done) {
				t.Fatal("the relay ended after one EOF")
			}
			if info := e.info(t, p.a); info.RelayPeer != p.b {
				t.Fatalf("relay_peer = %q after one EOF, want %q", info.RelayPeer, p.b)
			}
			closeWrite(t, p.pb)
			r := waitPeer(t, got)
			if r.err != nil {
				t.Fatalf("a's peer: %v", r.err)
			}
			wantBytes(t, "b to a", r.data, answer)
			res := waitRelay(t, done)
			if res.err != nil || res.resp.FirstToSecond != 8 || res.resp.SecondToFirst != int64(len(answer)) {
				t.Fatalf("Relay = %v, %v; want 8 and %d", res.resp, res.err, len(answer))
			}
		})
	}
}

// TestRelayBufferedFirst: bytes the daemon buffered before the relay, and
// writes pending before it, go first.
func TestRelayBufferedFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := e.openRelayPair(t, "tcp", "unix")
	peerWrite(t, p.pa, "early|")
	e.waitBuffered(t, p.a, 6)
	peerWrite(t, p.pb, "also early|")
	e.waitBuffered(t, p.b, 11)
	e.write(t, p.b, "written before|")
	done := e.startRelay(t, nil, p.a, p.b)
	e.waitRelayed(t, p.a, p.b)
	peerWrite(t, p.pa, "late")
	closeWrite(t, p.pa)
	peerWrite(t, p.pb, "late too")
	closeWrite(t, p.pb)
	if got := peerReadAll(t, p.pb); got != "written before|early|late" {
		t.Fatalf("b's peer read %q", got)
	}
	if got := peerReadAll(t, p.pa); got != "also early|late too" {
		t.Fatalf("a's peer read %q", got)
	}
	if r := waitRelay(t, done); r.err != nil || r.resp.FirstToSecond != 10 || r.resp.SecondToFirst != 19 {
		t.Fatalf("Relay = %v, %v; want 10 and 19", r.resp, r.err)
	}
	if info := e.info(t, p.a); info.BytesIn != 10 || info.Buffered != 0 {
		t.Fatalf("a: bytes_in %d, buffered %d; want 10, 0", info.BytesIn, info.Buffered)
	}
}

// TestRelayTLS relays between TLS streams (and between TLS and TCP): the
// bytes are copied both ways, and a peer's close_notify becomes one on the
// other side (TLS's half-close) while the other direction goes on.
func TestRelayTLS(t *testing.T) {
	t.Parallel()
	p := pki(t)
	openTLS := func(t *testing.T, e *env) (string, *tls.Conn) {
		t.Helper()
		port, peerConn := tlsPeer(t, p.peerServerTLS())
		resp, err := e.c.Open(bg(t), &smv1.OpenRequest{
			Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}},
			Tls:     &smv1.TlsOptions{CaPem: p.caPEM, ServerHostname: "localhost", HandshakeTimeout: durationpb.New(failAfter)},
		})
		if err != nil {
			t.Fatalf("Open TLS: %v", err)
		}
		return resp.StreamId, peerConn()
	}
	for _, second := range []string{"tls", "tcp"} {
		t.Run("tls-"+second, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			a, pa := openTLS(t, e)
			var b string
			var pb net.Conn
			if second == "tls" {
				b, pb = openTLS(t, e)
			} else {
				b, pb = e.openKind(t, "tcp")
			}
			if info := e.info(t, a); info.Kind != "tls" {
				t.Fatalf("kind %q, want tls", info.Kind)
			}
			done := e.startRelay(t, nil, a, b)
			e.waitRelayed(t, a, b)
			x, y := bigPattern(4<<20, 5), bigPattern(4<<20, 6)
			gotA, gotB := peerCollect(pa), peerCollect(pb)
			waitErr(t, "a's peer write", peerWriteChunks(pa, x, 5, true))
			rb := waitPeer(t, gotB)
			if rb.err != nil {
				t.Fatalf("b's peer: %v", rb.err)
			}
			wantBytes(t, "a to b", rb.data, x)
			waitErr(t, "b's peer write", peerWriteChunks(pb, y, 6, true))
			ra := waitPeer(t, gotA)
			if ra.err != nil {
				t.Fatalf("a's peer: %v", ra.err)
			}
			wantBytes(t, "b to a", ra.data, y)
			if r := waitRelay(t, done); r.err != nil || r.resp.FirstToSecond != int64(len(x)) || r.resp.SecondToFirst != int64(len(y)) {
				t.Fatalf("Relay = %v, %v; want %d both ways", r.resp, r.err, len(x))
			}
		})
	}
}

// TestRelayEndsOnClose: Close or Abort of either stream ends the relay:
// the call returns the counts so far, the other stream is handed back
// usable, and the closed one's peer sees EOF.
func TestRelayEndsOnClose(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		second bool // close the second stream
		abort  bool
	}{
		{"close first", false, false},
		{"close second", true, false},
		{"abort first", false, true},
		{"abort second", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			p := e.openRelayPair(t, "tcp", "tcp")
			done := e.startRelay(t, nil, p.a, p.b)
			e.waitRelayed(t, p.a, p.b)
			peerWrite(t, p.pa, "through")
			if got := peerRead(t, p.pb, 7); got != "through" {
				t.Fatalf("b's peer read %q", got)
			}
			gone, goneP, kept, keptP := p.a, p.pa, p.b, p.pb
			if c.second {
				gone, goneP, kept, keptP = p.b, p.pb, p.a, p.pa
			}
			if c.abort {
				if _, err := e.c.Abort(bg(t), &smv1.AbortRequest{StreamId: gone}); err != nil {
					t.Fatalf("Abort: %v", err)
				}
			} else {
				e.closeStream(t, gone)
			}
			r := waitRelay(t, done)
			if r.err != nil || r.resp.FirstToSecond != 7 || r.resp.SecondToFirst != 0 {
				t.Fatalf("Relay = %v, %v; want 7 and 0", r.resp, r.err)
			}
			peerSeesEOF(t, goneP)
			if info := e.info(t, kept); info.RelayPeer != "" || info.State != "open" {
				t.Fatalf("the other stream: relay_peer %q, state %q; want none, open", info.RelayPeer, info.State)
			}
			e.write(t, kept, "still here")
			if got := peerRead(t, keptP, 10); got != "still here" {
				t.Fatalf("the other stream's peer read %q", got)
			}
			peerWrite(t, keptP, "and back")
			if got := e.readExactly(t, kept, 8); string(got.Data) != "and back" {
				t.Fatalf("read %q from the other stream", got.Data)
			}
		})
	}
}

// TestRelayPeerReset: a reset on one side ends the relay with that error
// (UNAVAILABLE); the other stream is handed back and stays usable.
func TestRelayPeerReset(t *testing.T) {
	t.Parallel()
	for _, second := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset second=%v", second), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			p := e.openRelayPair(t, "tcp", "tcp")
			done := e.startRelay(t, nil, p.a, p.b)
			e.waitRelayed(t, p.a, p.b)
			peerWrite(t, p.pa, "ping")
			if got := peerRead(t, p.pb, 4); got != "ping" {
				t.Fatalf("b's peer read %q", got)
			}
			reset, gone, kept, keptP := p.pa, p.a, p.b, p.pb
			if second {
				reset, gone, kept, keptP = p.pb, p.b, p.a, p.pa
			}
			reset.(*net.TCPConn).SetLinger(0)
			reset.Close()
			r := waitRelay(t, done)
			wantStatus(t, r.err, codes.Unavailable, ReasonConnectionReset)
			if info := e.info(t, kept); info.RelayPeer != "" || info.State != "open" {
				t.Fatalf("the other stream: relay_peer %q, state %q; want none, open", info.RelayPeer, info.State)
			}
			e.write(t, kept, "fine")
			if got := peerRead(t, keptP, 4); got != "fine" {
				t.Fatalf("the other stream's peer read %q", got)
			}
			peerWrite(t, keptP, "ok")
			if got := e.readExactly(t, kept, 2); string(got.Data) != "ok" {
				t.Fatalf("read %q from the other stream", got.Data)
			}
			// The reset stream is handed back too, no longer relayed, with
			// the reset the relay met: its reads answer it, as they would
			// have without the relay.
			if info := e.info(t, gone); info.RelayPeer != "" {
				t.Fatalf("the reset stream: relay_peer %q", info.RelayPeer)
			}
			_, rerr := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: gone, N: i64(10)})
			wantStatus(t, rerr, codes.Unavailable, ReasonConnectionReset)
			_, err := e.c.WaitClosed(bg(t), &smv1.WaitClosedRequest{StreamId: gone})
			wantStatus(t, err, codes.Unavailable, "")
		})
	}
}

// TestRelayOutlivesCaller: the relay runs on its own: cancelling the call
// only stops the waiting; bytes keep flowing and ListStreams shows
// relay_peer on both until both EOFs end it.
func TestRelayOutlivesCaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := e.openRelayPair(t, "tcp", "unix")
	ctx, cancel := context.WithCancel(bg(t))
	done := e.startRelay(t, ctx, p.a, p.b)
	e.waitRelayed(t, p.a, p.b)
	cancel()
	wantStatus(t, waitRelay(t, done).err, codes.Canceled, "")
	peerWrite(t, p.pb, "after the caller left")
	if got := peerRead(t, p.pa, 21); got != "after the caller left" {
		t.Fatalf("a's peer read %q", got)
	}
	e.waitRelayed(t, p.a, p.b)
	if info := e.info(t, p.a); info.CallsInProgress != 1 {
		// The relay keeps the stream in use, so it is never reaped.
		t.Fatalf("calls_in_progress = %d during a relay without its caller, want 1", info.CallsInProgress)
	}
	closeWrite(t, p.pa)
	closeWrite(t, p.pb)
	peerSeesEOF(t, p.pa)
	peerSeesEOF(t, p.pb)
	waitFor(t, "the relay to end", func() bool { return e.info(t, p.a).RelayPeer == "" && e.info(t, p.b).RelayPeer == "" })
	e.waitIdle(t, p.a)
	e.waitIdle(t, p.b)
}

// TestRelayRefusals: reads, writes, WriteEof, StartTls and Attach on a
// relayed stream fail with STREAM_RELAYED; a stream cannot be relayed to
// itself, twice, while attached, or while a read waits on it.
func TestRelayRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	p := e.openRelayPair(t, "tcp", "tcp")
	done := e.startRelay(t, nil, p.a, p.b)
	e.waitRelayed(t, p.a, p.b)
	c := e.c
	for which, id := range map[string]string{"first": p.a, "second": p.b} {
		for name, call := range map[string]func() error{
			"Read":        func() error { _, err := c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(1)}); return err },
			"ReadLine":    func() error { _, err := c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id}); return err },
			"ReadExactly": func() error { _, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: 1}); return err },
			"ReadUntil": func() error {
				_, err := c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separators: [][]byte{[]byte("\n")}})
				return err
			},
			"Write": func() error {
				_, err := c.Write(bg(t), &smv1.WriteRequest{StreamId: id, Data: []byte("x")})
				return err
			},
			"WriteLines": func() error {
				_, err := c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: id, Lines: [][]byte{[]byte("x")}})
				return err
			},
			"WriteEof": func() error { _, err := c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: id}); return err },
			"StartTls": func() error {
				_, err := c.StartTls(bg(t), &smv1.StartTlsRequest{StreamId: id, Tls: &smv1.TlsOptions{ServerHostname: "localhost"}})
				return err
			},
			"Attach": func() error { _, err := tryAttach(t, c, id, attachOpts{}); return err },
			"Relay again": func() error {
				other, _ := e.openKind(t, "tcp")
				_, err := c.Relay(bg(t), &smv1.RelayRequest{FirstStreamId: other, SecondStreamId: id})
				return err
			},
		} {
			t.Run(which+"/"+name, func(t *testing.T) { wantStatus(t, call(), codes.FailedPrecondition, ReasonStreamRelayed) })
		}
	}
	// Nothing of the refused calls went through.
	closeWrite(t, p.pa)
	closeWrite(t, p.pb)
	peerSeesEOF(t, p.pa)
	peerSeesEOF(t, p.pb)
	if r := waitRelay(t, done); r.err != nil || r.resp.FirstToSecond != 0 || r.resp.SecondToFirst != 0 {
		t.Fatalf("Relay = %v, %v; want nothing relayed", r.resp, r.err)
	}

	t.Run("to itself", func(t *testing.T) {
		id, _ := e.openKind(t, "tcp")
		_, err := c.Relay(bg(t), &smv1.RelayRequest{FirstStreamId: id, SecondStreamId: id})
		wantField(t, wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument), "second_stream_id")
	})
	t.Run("unknown", func(t *testing.T) {
		id, _ := e.openKind(t, "tcp")
		_, err := c.Relay(bg(t), &smv1.RelayRequest{FirstStreamId: id, SecondStreamId: "s-0000000000000000"})
		wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
		_, err = c.Relay(bg(t), &smv1.RelayRequest{FirstStreamId: "s-0000000000000000", SecondStreamId: id})
		wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
		if info := e.info(t, id); info.RelayPeer != "" || info.CallsInProgress != 0 {
			t.Fatalf("a refused relay left relay_peer %q, %d calls", info.RelayPeer, info.CallsInProgress)
		}
	})
	t.Run("attached", func(t *testing.T) {
		x, _ := e.openKind(t, "tcp")
		y, _ := e.openKind(t, "tcp")
		startAttach(t, c, x, attachOpts{})
		for _, req := range []*smv1.RelayRequest{{FirstStreamId: x, SecondStreamId: y}, {FirstStreamId: y, SecondStreamId: x}} {
			_, err := c.Relay(bg(t), req)
			wantStatus(t, err, codes.FailedPrecondition, ReasonStreamAttached)
		}
		if info := e.info(t, y); info.RelayPeer != "" {
			t.Fatalf("a refused relay left relay_peer %q", info.RelayPeer)
		}
	})
	t.Run("waiting read", func(t *testing.T) {
		// The stream that can be relayed stays usable: the relay that was
		// refused handed it back whole (repeated: the hand-back raced with
		// its interrupted read).
		for i := range 50 {
			w, pw := e.openKind(t, "tcp")
			y, py := e.openKind(t, "tcp")
			reading := make(chan error, 1)
			go func() {
				_, err := c.Read(bg(t), &smv1.ReadRequest{StreamId: w, N: i64(4)})
				reading <- err
			}()
			waitFor(t, "the read to wait", func() bool { return e.info(t, w).CallsInProgress == 1 })
			req := &smv1.RelayRequest{FirstStreamId: w, SecondStreamId: y}
			if i%2 == 1 {
				req = &smv1.RelayRequest{FirstStreamId: y, SecondStreamId: w}
			}
			_, err := c.Relay(bg(t), req)
			wantStatus(t, err, codes.FailedPrecondition, ReasonConcurrentRead)
			peerWrite(t, py, "usable")
			if got, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: y, N: 6}); err != nil || string(got.Data) != "usable" {
				t.Fatalf("round %d: the stream a refused relay handed back: %v, %v", i, got, err)
			}
			e.write(t, y, "back")
			if got := peerRead(t, py, 4); got != "back" {
				t.Fatalf("round %d: peer read %q", i, got)
			}
			peerWrite(t, pw, "read")
			select {
			case err := <-reading:
				if err != nil {
					t.Fatalf("the waiting read: %v", err)
				}
			case <-time.After(failAfter):
				t.Fatal("the waiting read did not finish")
			}
		}
	})
}

// TestRelayNoLeaks: goroutines and descriptors are back where they were
// once relays end, however they end. Not parallel: it counts the
// process's goroutines and descriptors.
func TestRelayNoLeaks(t *testing.T) {
	e := newEnv(t, Config{ClosedLinger: 50 * time.Millisecond})
	l := newPeerListeners(t)
	cycle := func() {
		for _, end := range []string{"eof", "close", "reset", "caller"} {
			a, pa := l.open(t, e, "tcp")
			b, pb := l.open(t, e, "unix")
			ctx, cancel := context.WithCancel(bg(t))
			done := e.startRelay(t, ctx, a, b)
			e.waitRelayed(t, a, b)
			peerWrite(t, pa, "x")
			if got := peerRead(t, pb, 1); got != "x" {
				t.Fatalf("relayed %q", got)
			}
			switch end {
			case "eof":
				closeWrite(t, pa)
				closeWrite(t, pb)
			case "close":
				e.closeOrGone(t, b)
			case "reset":
				pa.(*net.TCPConn).SetLinger(0)
				pa.Close()
			case "caller":
				cancel()
				<-done
				e.closeOrGone(t, a)
			}
			if end != "caller" {
				waitRelay(t, done)
			}
			cancel()
			e.closeOrGone(t, a)
			e.closeOrGone(t, b)
			pa.Close()
			pb.Close()
		}
	}
	noLeaks(t, 3, func() bool {
		resp, err := e.c.ListStreams(bg(t), &smv1.ListStreamsRequest{})
		return err == nil && len(resp.Streams) == 0
	}, cycle)
}
