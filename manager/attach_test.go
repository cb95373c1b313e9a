package manager

// Tests of Attach against real sockets: the byte pipe both ways, the
// window and write backpressure, half-close, resuming by offset, taking
// over, errors, and that nothing leaks.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// attachClient drives one Attach call as a client must: one goroutine
// sends (data, write_eof, and acks coalesced to the latest offset), another
// receives; the receiver never waits on the sender, it only records the
// offset it reached and pokes the sender.
type attachClient struct {
	t      *testing.T
	cs     smv1.StreamService_AttachClient
	cancel context.CancelFunc
	first  *smv1.AttachResponse

	ops     chan *smv1.AttachRequest // sent in order; nil means CloseSend
	poke    chan struct{}            // an ack may be due (capacity 1)
	stop    chan struct{}            // closed to end the sender
	sent    chan struct{}            // closed when the sender has ended
	recvEnd chan struct{}            // closed when the receiver has ended

	recvOnce sync.Once

	mu      sync.Mutex
	autoAck bool
	in      []byte // inbound bytes received
	next    int64  // inbound offset after the last byte received
	acked   int64  // the latest ack sent
	written int64  // the latest written reported
	eof     bool
	err     error         // the call's end (nil: OK), once recvEnd is closed
	bad     error         // a response out of order
	changed chan struct{} // closed and replaced whenever state changes
}

// attachOpts configures startAttach.
type attachOpts struct {
	offset  *int64
	window  int64
	manual  bool          // no automatic acks
	noRecv  bool          // do not receive until startRecv
	timeout time.Duration // the call's (default 3*failAfter)
}

// startAttach attaches to id with the client c and returns once the first
// response came. Everything ends when the test does.
func startAttach(t *testing.T, c smv1.StreamServiceClient, id string, o attachOpts) *attachClient {
	t.Helper()
	a, err := tryAttach(t, c, id, o)
	if err != nil {
		t.Fatalf("Attach %s: %v", id, err)
	}
	return a
}

// tryAttach is startAttach returning the error of the first response.
func tryAttach(t *testing.T, c smv1.StreamServiceClient, id string, o attachOpts) (*attachClient, error) {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 3 * failAfter
	}
	ctx, cancel := context.WithTimeout(t.Context(), o.timeout)
	cs, err := c.Attach(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cs.Send(&smv1.AttachRequest{StreamId: id, Offset: o.offset, Window: o.window}); err != nil {
		cancel()
		_, err = cs.Recv()
		return nil, err
	}
	first, err := cs.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	a := &attachClient{
		t: t, cs: cs, cancel: cancel, first: first,
		ops: make(chan *smv1.AttachRequest, 2), poke: make(chan struct{}, 1),
		stop: make(chan struct{}), sent: make(chan struct{}), recvEnd: make(chan struct{}),
		autoAck: !o.manual,
		next:    first.Offset, acked: first.Offset, written: first.Written,
		changed: make(chan struct{}),
	}
	if first.Eof {
		a.eof = true
	}
	go a.sender()
	if !o.noRecv {
		a.startRecv()
	}
	t.Cleanup(a.end)
	return a, nil
}

// end cancels the call and waits for both goroutines.
func (a *attachClient) end() {
	a.cancel()
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.sent
	a.startRecv()
	select {
	case <-a.recvEnd:
	case <-time.After(failAfter):
		a.t.Errorf("the Attach receiver did not end after the call was cancelled")
	}
}

// startRecv starts the receiver of a call started with noRecv.
func (a *attachClient) startRecv() { a.recvOnce.Do(func() { go a.receiver() }) }

func (a *attachClient) signal() {
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *attachClient) receiver() {
	defer close(a.recvEnd)
	for {
		r, err := a.cs.Recv()
		a.mu.Lock()
		if err != nil {
			if err != io.EOF {
				a.err = err
			}
			a.signal()
			a.mu.Unlock()
			return
		}
		if r.Offset != a.next && a.bad == nil {
			// Every response, with data or not, stands where the data
			// before it ended.
			a.bad = fmt.Errorf("response at offset %d, want %d (eof %v, %d bytes)", r.Offset, a.next, r.Eof, len(r.Data))
		}
		if len(r.Data) > 0 {
			a.in = append(a.in, r.Data...)
			a.next = r.Offset + int64(len(r.Data))
		}
		if r.Eof {
			a.eof = true
		}
		a.written = max(a.written, r.Written)
		auto := a.autoAck && len(r.Data) > 0
		a.signal()
		a.mu.Unlock()
		if auto {
			select {
			case a.poke <- struct{}{}:
			default:
			}
		}
	}
}

func (a *attachClient) sender() {
	defer close(a.sent)
	closed := false
	ack := func() bool {
		a.mu.Lock()
		next, due := a.next, a.autoAck && a.next > a.acked
		if due {
			a.acked = next
		}
		a.mu.Unlock()
		if !due || closed {
			return true
		}
		return a.cs.Send(&smv1.AttachRequest{Ack: &next}) == nil
	}
	for {
		select {
		case <-a.stop:
			return
		case <-a.poke:
			if !ack() {
				return
			}
		case op := <-a.ops:
			if op == nil {
				if !closed {
					closed = true
					_ = a.cs.CloseSend()
				}
				continue
			}
			if closed {
				continue
			}
			if op.Ack != nil {
				a.mu.Lock()
				a.acked = max(a.acked, *op.Ack)
				a.mu.Unlock()
			}
			if err := a.cs.Send(op); err != nil {
				return
			}
			if !ack() {
				return
			}
		}
	}
}

// send queues one request (it may be called from any goroutine); it gives
// up once the call has ended.
func (a *attachClient) send(r *smv1.AttachRequest) {
	select {
	case a.ops <- r:
	case <-a.recvEnd:
	case <-a.sent:
	case <-time.After(3 * failAfter):
		a.t.Errorf("queueing an Attach request timed out")
	}
}

func (a *attachClient) sendData(b []byte) { a.send(&smv1.AttachRequest{Data: b}) }
func (a *attachClient) writeEOF()         { a.send(&smv1.AttachRequest{WriteEof: true}) }
func (a *attachClient) ack(off int64)     { a.send(&smv1.AttachRequest{Ack: &off}) }
func (a *attachClient) closeSend()        { a.send(nil) }

// setAutoAck turns automatic acks on or off.
func (a *attachClient) setAutoAck(on bool) {
	a.mu.Lock()
	a.autoAck = on
	a.mu.Unlock()
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// attachState is the client's view of the call.
type attachState struct {
	next, written int64
	eof, ended    bool
	err           error
	in            []byte
}

func (a *attachClient) state() attachState {
	a.mu.Lock()
	defer a.mu.Unlock()
	ended := false
	select {
	case <-a.recvEnd:
		ended = true
	default:
	}
	return attachState{next: a.next, written: a.written, eof: a.eof, ended: ended, err: a.err, in: a.in}
}

// waitUntil waits until cond holds for the client's state, failing if the
// call ends first or after failAfter.
func (a *attachClient) waitUntil(what string, cond func(attachState) bool) attachState {
	a.t.Helper()
	deadline := time.After(failAfter)
	for {
		a.mu.Lock()
		ch := a.changed
		bad := a.bad
		a.mu.Unlock()
		if bad != nil {
			a.t.Fatalf("Attach: %v", bad)
		}
		s := a.state()
		if cond(s) {
			return s
		}
		if s.ended {
			a.t.Fatalf("Attach ended (%v) before %s (next %d, written %d, eof %v)", s.err, what, s.next, s.written, s.eof)
		}
		select {
		case <-ch:
		case <-deadline:
			a.t.Fatalf("timed out waiting for %s (next %d, written %d, eof %v)", what, s.next, s.written, s.eof)
		}
	}
}

// wait waits for the call's end and returns its error (nil: OK).
func (a *attachClient) wait() error {
	a.t.Helper()
	select {
	case <-a.recvEnd:
	case <-time.After(failAfter):
		a.t.Fatalf("the Attach call did not end")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bad != nil {
		a.t.Fatalf("Attach: %v", a.bad)
	}
	return a.err
}

// waitOK waits for the call to end OK.
func (a *attachClient) waitOK() attachState {
	a.t.Helper()
	if err := a.wait(); err != nil {
		a.t.Fatalf("Attach ended with %v, want OK", err)
	}
	return a.state()
}

// peerResult is what a peer read: the bytes and the error that ended it.
type peerResult struct {
	data []byte
	err  error
}

// peerCollect reads c in the background until EOF or an error.
func peerCollect(c net.Conn) <-chan peerResult {
	ch := make(chan peerResult, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(3 * failAfter))
		b, err := io.ReadAll(c)
		ch <- peerResult{b, err}
	}()
	return ch
}

func waitPeer(t *testing.T, ch <-chan peerResult) peerResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(3 * failAfter):
		t.Fatal("the peer never reached EOF")
	}
	return peerResult{}
}

// waitPeerOf is waitPeer that fails at once if the Attach call a ends
// (with an error) first.
func waitPeerOf(t *testing.T, a *attachClient, ch <-chan peerResult) peerResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-a.recvEnd:
		if err := a.wait(); err != nil {
			t.Fatalf("the Attach call ended with %v before the peer reached EOF", err)
		}
		return waitPeer(t, ch)
	case <-time.After(3 * failAfter):
		t.Fatal("the peer never reached EOF")
	}
	return peerResult{}
}

// randomChunks splits b into pieces of 1..maxSize bytes.
func randomChunks(rng *rand.Rand, b []byte, maxSize int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(maxSize))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// peerWriteChunks writes b to c in random-size writes in the background,
// then half-closes c when eof is set.
func peerWriteChunks(c net.Conn, b []byte, seed uint64, eof bool) <-chan error {
	ch := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		_ = c.SetWriteDeadline(time.Now().Add(3 * failAfter))
		for _, p := range randomChunks(rng, b, 256<<10) {
			if _, err := c.Write(p); err != nil {
				ch <- err
				return
			}
		}
		if eof {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				ch <- cw.CloseWrite()
				return
			}
		}
		ch <- nil
	}()
	return ch
}

func waitErr(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(3 * failAfter):
		t.Fatalf("%s: timed out", what)
	}
}

// openKind opens a stream of kind ("tcp" or "unix") to a fresh peer.
func (e *env) openKind(t *testing.T, kind string) (string, net.Conn) {
	t.Helper()
	if kind == "unix" {
		r, p, _ := e.openUnix(t)
		return r.StreamId, p
	}
	r, p := e.openTCP(t, nil)
	return r.StreamId, p
}

// closeWrite half-closes the peer's end.
func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("peer CloseWrite: %v", err)
	}
}

// counter counts bytes a background goroutine moved.
type counter struct{ n atomic.Int64 }

// stalled polls until n has not moved for a while (tiny sleeps), and
// returns where it stands.
func stalled(t *testing.T, what string, n func() int64) int64 {
	t.Helper()
	var v int64
	waitFor(t, what+" to stall", func() bool {
		v = n()
		for range 10 {
			time.Sleep(5 * time.Millisecond)
			if n() != v {
				return false
			}
		}
		return true
	})
	return v
}

// peerSendCounting writes b to c in random-size writes, counting what the
// kernel took, then half-closes c when fin is set.
func peerSendCounting(c net.Conn, b []byte, seed uint64, fin bool, sent *counter) <-chan error {
	ch := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		_ = c.SetWriteDeadline(time.Now().Add(3 * failAfter))
		for _, p := range randomChunks(rng, b, 256<<10) {
			n, err := c.Write(p)
			sent.n.Add(int64(n))
			if err != nil {
				ch <- err
				return
			}
		}
		if fin {
			ch <- c.(interface{ CloseWrite() error }).CloseWrite()
			return
		}
		ch <- nil
	}()
	return ch
}

// TestAttachBothWays moves bytes both ways at once, in random-size client
// messages of up to 1 MiB and random-size peer writes, over TCP and Unix,
// and checks every byte and the final counts.
func TestAttachBothWays(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"tcp", "unix"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			id, peer := e.openKind(t, kind)
			const size = 16 << 20
			out, in := bigPattern(size, 3), bigPattern(size, 11)
			rng := rand.New(rand.NewPCG(1, 2))
			a := startAttach(t, e.c, id, attachOpts{})
			if a.first.Offset != 0 || a.first.Written != 0 || len(a.first.Data) != 0 || a.first.Eof {
				t.Fatalf("first response %v, want offset 0, written 0", a.first)
			}
			got := peerCollect(peer)
			wrote := peerWriteChunks(peer, in, 5, true)
			for _, p := range randomChunks(rng, out, 1<<20) {
				a.sendData(p)
			}
			a.writeEOF()
			a.waitUntil("eof", func(s attachState) bool { return s.eof })
			a.closeSend()
			s := a.waitOK()
			waitErr(t, "peer write", wrote)
			r := waitPeerOf(t, a, got)
			if r.err != nil {
				t.Fatalf("peer read: %v", r.err)
			}
			wantBytes(t, "outbound", r.data, out)
			wantBytes(t, "inbound", s.in, in)
			if s.next != size || s.written != size {
				t.Fatalf("inbound offset %d, written %d; want %d both", s.next, s.written, size)
			}
			info := e.info(t, id)
			if info.BytesIn != size || info.BytesOut != size || info.Attached {
				t.Fatalf("ListStreams: bytes_in %d, bytes_out %d, attached %v; want %d, %d, false", info.BytesIn, info.BytesOut, info.Attached, size, size)
			}
		})
	}
}

// TestAttachSlowPeer: a peer that does not read pushes back to the client.
// The daemon's write buffer stays within its cap (ListStreams
// write_buffered too), the client's sends block, and messages bigger than
// the room left in the buffer wait instead of failing; once the peer
// reads, every byte arrives.
func TestAttachSlowPeer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	id, peer := e.openKind(t, "tcp")
	st := e.stream(t, id)
	maxBuf := e.m.Config().MaxWriteBuffer
	const size = 48 << 20 // more than the kernel and HTTP/2 hold in flight
	out := bigPattern(size, 5)
	a := startAttach(t, e.c, id, attachOpts{})

	var maxSeen atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := int64(st.W.BufferSize()); n > maxSeen.Load() {
				maxSeen.Store(n)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	defer func() { close(stopSampling); <-sampled }()

	var queued atomic.Int64
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		rng := rand.New(rand.NewPCG(7, 7))
		// Sizes of 512 KiB to 1 MiB: most cannot fit beside what a slow
		// peer leaves in the write buffer.
		for b := out; len(b) > 0; {
			n := min(len(b), 512<<10+rng.IntN(512<<10+1))
			a.sendData(b[:n])
			queued.Add(int64(n))
			b = b[n:]
		}
		a.writeEOF()
	}()

	// Above the high-water mark the daemon takes no more messages until
	// the socket takes bytes, which it never does while the peer reads
	// nothing.
	_, high := st.W.WriteBufferLimits()
	waitFor(t, "the write buffer to pass its high-water mark", func() bool { return st.W.BufferSize() > high })
	written := st.W.Written()
	stalled(t, "the client's sends", queued.Load)
	if w := st.W.Written(); w != written {
		t.Fatalf("the daemon accepted %d more bytes above its high-water mark", w-written)
	}
	select {
	case <-produced:
		t.Fatalf("the client sent all %d bytes to a peer that reads nothing", size)
	default:
	}
	if info := e.info(t, id); info.WriteBuffered > int64(maxBuf) || info.WriteBuffered <= int64(high) {
		t.Fatalf("ListStreams write_buffered = %d, want %d..%d", info.WriteBuffered, high+1, maxBuf)
	}
	t.Logf("stalled: %d bytes accepted, %d queued by the client, %d unsent", written, queued.Load(), st.W.BufferSize())

	// The peer reads slowly at first (many drains, each leaving a part of
	// a chunk unsent), then at full speed.
	got := make(chan peerResult, 1)
	go func() {
		var all []byte
		buf := make([]byte, 32<<10)
		_ = peer.SetReadDeadline(time.Now().Add(3 * failAfter))
		for {
			n, err := peer.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				got <- peerResult{all, err}
				return
			}
			if len(all) < 8<<20 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	r := waitPeerOf(t, a, got)
	if r.err != io.EOF {
		t.Fatalf("peer read: %v", r.err)
	}
	wantBytes(t, "outbound", r.data, out)
	if m := maxSeen.Load(); m > int64(maxBuf) {
		t.Fatalf("the write buffer held %d bytes, over its cap of %d", m, maxBuf)
	}
	closeWrite(t, peer)
	a.waitUntil("eof", func(s attachState) bool { return s.eof })
	a.closeSend()
	if s := a.waitOK(); s.written != size {
		t.Fatalf("written = %d, want %d", s.written, size)
	}
}

// TestAttachBigMessages: a data message larger than the room left in the
// write buffer, or than the whole buffer, waits for the socket instead of
// failing with WRITE_BUFFER_FULL.
func TestAttachBigMessages(t *testing.T) {
	t.Parallel()
	t.Run("beside unsent bytes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		id, peer := e.openKind(t, "tcp")
		// Write until the daemon holds some unsent bytes, below its
		// high-water mark: the socket is full (the peer reads nothing yet).
		st := e.stream(t, id)
		_, high := st.W.WriteBufferLimits()
		chunk := pattern(16<<10, 1)
		var sent []byte
		for {
			w := e.write(t, id, string(chunk))
			sent = append(sent, chunk...)
			if w.Buffered >= int64(high)/2 {
				break
			}
		}
		a := startAttach(t, e.c, id, attachOpts{})
		big := bigPattern(e.m.Config().MaxWriteBuffer, 2) // as large as the whole buffer
		a.sendData(big)
		a.writeEOF()
		// The daemon takes what fits, then waits for the socket.
		waitFor(t, "the daemon to take the message", func() bool {
			return st.W.Written() > int64(len(sent)) || a.state().ended
		})
		r := waitPeerOf(t, a, peerCollect(peer))
		if r.err != nil {
			t.Fatalf("peer read: %v", r.err)
		}
		wantBytes(t, "outbound", r.data, append(sent, big...))
		closeWrite(t, peer)
		a.waitUntil("eof", func(s attachState) bool { return s.eof })
		a.closeSend()
		a.waitOK()
	})
	t.Run("beside Writes over the high-water mark", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		id, peer := e.openKind(t, "tcp")
		chunk := pattern(64<<10, 4)
		var sent []byte
		for {
			w := e.write(t, id, string(chunk))
			sent = append(sent, chunk...)
			if w.Buffered >= 512<<10 {
				break
			}
		}
		a := startAttach(t, e.c, id, attachOpts{})
		big := bigPattern(e.m.Config().MaxWriteBuffer, 5)
		a.sendData(big)
		a.writeEOF()
		r := waitPeerOf(t, a, peerCollect(peer))
		if r.err != nil {
			t.Fatalf("peer read: %v", r.err)
		}
		wantBytes(t, "outbound", r.data, append(sent, big...))
		closeWrite(t, peer)
		a.waitUntil("eof", func(s attachState) bool { return s.eof })
		a.closeSend()
		a.waitOK()
	})
	t.Run("larger than the buffer", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{MaxWriteBuffer: 256 << 10})
		id, peer := e.openKind(t, "unix")
		got := peerCollect(peer)
		a := startAttach(t, e.c, id, attachOpts{})
		out := bigPattern(8<<20, 3)
		for off := 0; off < len(out); off += 1 << 20 {
			a.sendData(out[off : off+1<<20])
		}
		a.writeEOF()
		r := waitPeerOf(t, a, got)
		if r.err != nil {
			t.Fatalf("peer read: %v", r.err)
		}
		wantBytes(t, "outbound", r.data, out)
		closeWrite(t, peer)
		a.waitUntil("eof", func(s attachState) bool { return s.eof })
		a.closeSend()
		if s := a.waitOK(); s.written != int64(len(out)) {
			t.Fatalf("written = %d, want %d", s.written, len(out))
		}
	})
}

// TestAttachSlowClient: a client that stops acknowledging, or reading,
// stops the daemon reading the socket: the bytes it holds for the stream
// (buffered and retained) stay within the window plus the read buffer,
// and the peer's writes stall; once the client acks again every byte
// arrives once.
func TestAttachSlowClient(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"no acks", "no reads"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			id, peer := e.openKind(t, "tcp")
			st := e.stream(t, id)
			const window = 1 << 20
			const size = 32 << 20
			in := bigPattern(size, 9)
			a := startAttach(t, e.c, id, attachOpts{window: window, manual: true, noRecv: mode == "no reads"})
			var sent counter
			wrote := peerSendCounting(peer, in, 3, true, &sent)
			if mode == "no acks" {
				a.waitUntil("a window of bytes", func(s attachState) bool { return s.next == window })
			}
			// Reading pauses above 2*limit and resumes at or below limit:
			// with nothing taken from the buffer it ends above limit.
			waitFor(t, "the daemon to buffer", func() bool { return st.R.Buffered() > st.R.Limit() })
			n := stalled(t, "the peer's writes", sent.n.Load)
			if n >= size {
				t.Fatalf("the peer wrote all %d bytes to a client that does not ack", n)
			}
			info := e.info(t, id)
			bound := int64(window + 2*st.R.Limit() + 256<<10)
			if held := info.Buffered + info.Retained; held > bound || info.Retained > window {
				t.Fatalf("the daemon holds %d buffered + %d retained bytes, want at most %d (retained at most %d)", info.Buffered, info.Retained, bound, window)
			}
			if mode == "no acks" {
				if s := a.state(); s.next != window {
					t.Fatalf("the client received %d bytes beyond its window of %d", s.next, window)
				}
				if info.Retained != window {
					t.Fatalf("retained = %d, want the window, %d", info.Retained, window)
				}
			}
			t.Logf("%s: the peer stalled after %d bytes; the daemon holds %d buffered, %d retained", mode, n, info.Buffered, info.Retained)
			a.setAutoAck(true)
			a.startRecv()
			waitErr(t, "peer write", wrote)
			a.waitUntil("eof", func(s attachState) bool { return s.eof })
			a.closeSend()
			wantBytes(t, "inbound", a.waitOK().in, in)
		})
	}
}

// TestAttachHalfClose: the client's write_eof reaches the peer as EOF
// while inbound bytes keep flowing, the peer's FIN arrives as eof after
// every byte while the client keeps writing, and the call ends OK only
// once both happened and the client closed its side.
func TestAttachHalfClose(t *testing.T) {
	t.Parallel()
	t.Run("client first", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		id, peer := e.openKind(t, "tcp")
		a := startAttach(t, e.c, id, attachOpts{})
		a.sendData([]byte("request"))
		a.writeEOF()
		if got := peerReadAll(t, peer); got != "request" {
			t.Fatalf("peer read %q before EOF, want %q", got, "request")
		}
		// After the client's EOF, the answer still flows in.
		answer := pattern(4<<20, 1)
		waitErr(t, "peer write", peerWriteChunks(peer, answer, 1, false))
		s := a.waitUntil("the answer", func(s attachState) bool { return s.next == int64(len(answer)) })
		if s.eof {
			t.Fatal("eof before the peer sent FIN")
		}
		closeWrite(t, peer)
		a.waitUntil("eof", func(s attachState) bool { return s.eof })
		if !e.info(t, id).Attached {
			t.Fatal("the call ended at eof, before the client closed its side")
		}
		a.closeSend()
		s = a.waitOK()
		wantBytes(t, "inbound", s.in, answer)
		if s.written != 7 {
			t.Fatalf("written = %d, want 7", s.written)
		}
		if info := e.info(t, id); info.Attached || info.State != "eof" {
			t.Fatalf("after the call: attached %v, state %q; want false, eof", info.Attached, info.State)
		}
	})
	t.Run("peer first", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Config{})
		id, peer := e.openKind(t, "unix")
		a := startAttach(t, e.c, id, attachOpts{})
		peerWrite(t, peer, "banner")
		closeWrite(t, peer)
		s := a.waitUntil("eof", func(s attachState) bool { return s.eof })
		if string(s.in) != "banner" || s.next != 6 {
			t.Fatalf("before eof: %q at %d, want banner at 6", s.in, s.next)
		}
		// After the peer's FIN the client keeps writing.
		got := peerCollect(peer)
		out := pattern(4<<20, 2)
		for _, p := range randomChunks(rand.New(rand.NewPCG(2, 2)), out, 1<<20) {
			a.sendData(p)
		}
		a.writeEOF()
		a.closeSend()
		if s := a.waitOK(); s.written != int64(len(out)) {
			t.Fatalf("written = %d, want %d", s.written, len(out))
		}
		r := waitPeerOf(t, a, got)
		if r.err != nil {
			t.Fatalf("peer read: %v", r.err)
		}
		wantBytes(t, "outbound", r.data, out)
	})
}

// TestAttachResume: a client that goes away mid-transfer (its gRPC
// connection closed) loses nothing: a new Attach from the last ack gets
// exactly the rest, and data sent from the first response's written
// (even overlapping what was accepted) is written once.
func TestAttachResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	id, peer := e.openKind(t, "tcp")
	st := e.stream(t, id)
	const size = 8 << 20
	in, out := bigPattern(size, 4), bigPattern(size, 6)
	wrote := peerWriteChunks(peer, in, 4, true)
	got := peerCollect(peer)

	cc := e.dial(t)
	a := startAttach(t, smv1.NewStreamServiceClient(cc), id, attachOpts{manual: true})
	const firstSends = 32 * 100000
	go func() {
		for off := 0; off < firstSends; off += 100000 {
			a.send(&smv1.AttachRequest{Data: out[off : off+100000], Offset: i64(int64(off))})
		}
	}()
	a.waitUntil("3 MiB", func(s attachState) bool { return s.next >= 3<<20 })
	const acked = 2<<20 + 12345
	a.ack(acked)
	waitFor(t, "the ack to be applied", func() bool { return e.info(t, id).EarliestOffset == acked })
	waitFor(t, "outbound bytes", func() bool { return st.W.Written() >= 1<<20 })
	wantBytes(t, "received before the loss", a.state().in[:acked], in[:acked])
	cc.Close() // the client is gone mid-transfer
	if err := a.wait(); err == nil {
		t.Fatal("the first call ended OK after its connection closed")
	}
	e.waitIdle(t, id)

	b := startAttach(t, e.c, id, attachOpts{offset: i64(acked)})
	if b.first.Offset != acked {
		t.Fatalf("resumed at %d, want %d", b.first.Offset, acked)
	}
	from := b.first.Written
	if from < 1<<20 || from > firstSends {
		t.Fatalf("written = %d, want what the first call sent, 1 MiB to %d", from, firstSends)
	}
	retry := max(from-1000, 0) // a retry overlapping what was accepted
	for off := retry; off < size; off += 1 << 20 {
		end := min(off+1<<20, size)
		b.send(&smv1.AttachRequest{Data: out[off:end], Offset: i64(off)})
	}
	b.writeEOF()
	b.waitUntil("eof", func(s attachState) bool { return s.eof })
	b.closeSend()
	s := b.waitOK()
	waitErr(t, "peer write", wrote)
	wantBytes(t, "inbound after resuming", s.in, in[acked:])
	r := waitPeer(t, got)
	if r.err != nil {
		t.Fatalf("peer read: %v", r.err)
	}
	wantBytes(t, "outbound", r.data, out)
}

// TestAttachResumeOffsets: without an offset an Attach resumes from the
// last ack; offsets before it or past the stream fail with OUT_OF_RANGE.
func TestAttachResumeOffsets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	id, peer := e.openKind(t, "tcp")
	peerWrite(t, peer, "0123456789")
	a := startAttach(t, e.c, id, attachOpts{manual: true})
	a.waitUntil("ten bytes", func(s attachState) bool { return s.next == 10 })
	a.ack(4)
	waitFor(t, "the ack", func() bool { return e.info(t, id).EarliestOffset == 4 })
	a.closeSend()
	a.cancel()
	_ = a.wait()
	e.waitIdle(t, id)

	_, err := tryAttach(t, e.c, id, attachOpts{offset: i64(3)})
	wantStatus(t, err, codes.OutOfRange, ReasonOffsetBehind)
	_, err = tryAttach(t, e.c, id, attachOpts{offset: i64(11)})
	wantStatus(t, err, codes.OutOfRange, ReasonOffsetAhead)

	b := startAttach(t, e.c, id, attachOpts{})
	if b.first.Offset != 4 {
		t.Fatalf("resumed without an offset at %d, want the last ack, 4", b.first.Offset)
	}
	s := b.waitUntil("the rest", func(s attachState) bool { return s.next == 10 })
	if string(s.in) != "456789" {
		t.Fatalf("resumed with %q, want 456789", s.in)
	}
}

// TestAttachErrors covers the requests an Attach refuses.
func TestAttachErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	id, _ := e.openKind(t, "tcp")
	first := func(t *testing.T, req *smv1.AttachRequest) error {
		cs, err := e.c.Attach(bg(t))
		if err != nil {
			t.Fatal(err)
		}
		if req != nil {
			if err := cs.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		cs.CloseSend()
		for {
			if _, err := cs.Recv(); err != nil {
				return err
			}
		}
	}
	for _, c := range []struct {
		name   string
		req    *smv1.AttachRequest
		code   codes.Code
		reason string
		field  string
	}{
		{"no first message", nil, codes.InvalidArgument, ReasonInvalidArgument, "stream_id"},
		{"unknown stream", &smv1.AttachRequest{StreamId: "s-0000000000000000"}, codes.NotFound, ReasonStreamNotFound, ""},
		{"no stream", &smv1.AttachRequest{}, codes.NotFound, ReasonStreamNotFound, ""},
		{"negative window", &smv1.AttachRequest{StreamId: id, Window: -1}, codes.InvalidArgument, ReasonInvalidArgument, "window"},
		{"window too large", &smv1.AttachRequest{StreamId: id, Window: MaxAttachWindow + 1}, codes.InvalidArgument, ReasonInvalidArgument, "window"},
		{"data in the first message", &smv1.AttachRequest{StreamId: id, Data: []byte("x")}, codes.InvalidArgument, ReasonInvalidArgument, "data"},
		{"write_eof in the first message", &smv1.AttachRequest{StreamId: id, WriteEof: true}, codes.InvalidArgument, ReasonInvalidArgument, "data"},
		{"ack in the first message", &smv1.AttachRequest{StreamId: id, Ack: i64(0)}, codes.InvalidArgument, ReasonInvalidArgument, "data"},
		{"negative offset", &smv1.AttachRequest{StreamId: id, Offset: i64(-1)}, codes.InvalidArgument, ReasonInvalidArgument, "offset"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := wantStatus(t, first(t, c.req), c.code, c.reason)
			if c.field != "" {
				wantField(t, st, c.field)
			}
		})
	}
	if info := e.info(t, id); info.Attached {
		t.Fatal("a refused Attach left the stream attached")
	}

	// Errors in later messages end the call.
	for _, c := range []struct {
		name   string
		req    *smv1.AttachRequest
		code   codes.Code
		reason string
		field  string
	}{
		{"ack ahead", &smv1.AttachRequest{Ack: i64(1)}, codes.InvalidArgument, ReasonInvalidArgument, "ack"},
		{"stream_id again", &smv1.AttachRequest{StreamId: id}, codes.InvalidArgument, ReasonInvalidArgument, "stream_id"},
		{"window again", &smv1.AttachRequest{Window: 5}, codes.InvalidArgument, ReasonInvalidArgument, "stream_id"},
		{"data offset ahead", &smv1.AttachRequest{Data: []byte("x"), Offset: i64(1)}, codes.OutOfRange, ReasonOffsetAhead, "offset"},
		{"negative data offset", &smv1.AttachRequest{Data: []byte("x"), Offset: i64(-1)}, codes.InvalidArgument, ReasonInvalidArgument, "offset"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := startAttach(t, e.c, id, attachOpts{manual: true})
			a.send(c.req)
			st := wantStatus(t, a.wait(), c.code, c.reason)
			if c.field != "" {
				wantField(t, st, c.field)
			}
			e.waitIdle(t, id)
		})
	}
	t.Run("write after write_eof", func(t *testing.T) {
		id, _ := e.openKind(t, "tcp")
		a := startAttach(t, e.c, id, attachOpts{})
		a.writeEOF()
		a.sendData([]byte("late"))
		wantStatus(t, a.wait(), codes.FailedPrecondition, ReasonWriteAfterEOF)
	})
}

// TestAttachOwnsReads: while an Attach is live the stream's reads fail
// with STREAM_ATTACHED and ListStreams shows attached; a read that was
// waiting is superseded without consuming anything; writes still work and
// go in the same outbound order as the call's data; after the call the
// bytes it did not acknowledge are read again.
func TestAttachOwnsReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	id, peer := e.openKind(t, "tcp")

	waiting := make(chan error, 1)
	go func() {
		_, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(5)})
		waiting <- err
	}()
	waitFor(t, "the read to wait", func() bool { return e.info(t, id).CallsInProgress == 1 })
	a := startAttach(t, e.c, id, attachOpts{manual: true})
	select {
	case err := <-waiting:
		wantStatus(t, err, codes.Aborted, ReasonReadSuperseded)
	case <-time.After(failAfter):
		t.Fatal("the waiting read was not superseded")
	}
	if !e.info(t, id).Attached {
		t.Fatal("ListStreams: attached = false during an Attach")
	}

	c := e.c
	for name, call := range map[string]func() error{
		"Read":        func() error { _, err := c.Read(bg(t), &smv1.ReadRequest{StreamId: id, N: i64(1)}); return err },
		"ReadLine":    func() error { _, err := c.ReadLine(bg(t), &smv1.ReadLineRequest{StreamId: id}); return err },
		"ReadExactly": func() error { _, err := c.ReadExactly(bg(t), &smv1.ReadExactlyRequest{StreamId: id, N: 1}); return err },
		"ReadUntil": func() error {
			_, err := c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: id, Separators: [][]byte{[]byte("\n")}})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { wantStatus(t, call(), codes.FailedPrecondition, ReasonStreamAttached) })
	}

	// Writes interleave with the call's data in one outbound order.
	a.sendData([]byte("one|"))
	if got := peerRead(t, peer, 4); got != "one|" {
		t.Fatalf("peer read %q", got)
	}
	w := e.write(t, id, "two|")
	if w.NextOffset != 8 {
		t.Fatalf("Write next_offset = %d, want 8", w.NextOffset)
	}
	if got := peerRead(t, peer, 4); got != "two|" {
		t.Fatalf("peer read %q", got)
	}
	a.send(&smv1.AttachRequest{Data: []byte("three"), Offset: i64(w.NextOffset)})
	if got := peerRead(t, peer, 5); got != "three" {
		t.Fatalf("peer read %q", got)
	}

	peerWrite(t, peer, "hello world")
	a.waitUntil("the inbound bytes", func(s attachState) bool { return s.next == 11 })
	a.ack(6)
	waitFor(t, "the ack", func() bool { return e.info(t, id).EarliestOffset == 6 })
	closeWrite(t, peer)
	a.waitUntil("eof", func(s attachState) bool { return s.eof })
	a.closeSend()
	if s := a.waitOK(); s.written != 13 {
		t.Fatalf("written = %d, want 13", s.written)
	}
	if e.info(t, id).Attached {
		t.Fatal("ListStreams: attached = true after the call")
	}
	// The bytes after the last ack are the stream's again.
	if got := e.read(t, id, nil); string(got.Data) != "world" {
		t.Fatalf("Read after the call = %q, want the unacknowledged world", got.Data)
	}
}

// TestAttachSupersede: a second Attach takes the stream over and the first
// ends with ABORTED, reason ATTACH_SUPERSEDED, also when the first
// client stopped reading and its call is stuck sending.
func TestAttachSupersede(t *testing.T) {
	t.Parallel()
	for _, stuck := range []bool{false, true} {
		t.Run(fmt.Sprintf("stuck=%v", stuck), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{})
			id, peer := e.openKind(t, "tcp")
			const size = 16 << 20
			in := bigPattern(size, 8)
			wrote := peerWriteChunks(peer, in, 8, true)
			// The first call lasts longer than any wait here: only the
			// takeover can end it in time.
			a := startAttach(t, e.c, id, attachOpts{manual: true, noRecv: stuck, timeout: 6 * failAfter})
			st := e.stream(t, id)
			if stuck {
				// Its responses fill the HTTP/2 window; the call waits
				// in Send.
				waitFor(t, "the daemon to buffer", func() bool { return st.R.Buffered() > st.R.Limit() })
				stalled(t, "the first call's delivery", func() int64 { return int64(st.R.Retained()) })
			} else {
				a.waitUntil("some bytes", func(s attachState) bool { return s.next > 0 })
			}
			start := time.Now()
			b := startAttach(t, smv1.NewStreamServiceClient(e.dial(t)), id, attachOpts{offset: i64(0), timeout: failAfter})
			t.Logf("took over in %v", time.Since(start))
			a.startRecv()
			wantStatus(t, a.wait(), codes.Aborted, ReasonAttachSuperseded)
			if !e.info(t, id).Attached {
				t.Fatal("not attached after the takeover")
			}
			waitErr(t, "peer write", wrote)
			b.waitUntil("eof", func(s attachState) bool { return s.eof })
			b.closeSend()
			wantBytes(t, "inbound of the new call", b.waitOK().in, in)
		})
	}
}

// TestAttachPeerReset: a reset by the peer ends the call with UNAVAILABLE,
// reason CONNECTION_RESET, after the bytes that came before it, also
// those the window held back when the reset came.
func TestAttachPeerReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	resp, peer := e.openTCP(t, nil)
	id := resp.StreamId
	a := startAttach(t, e.c, id, attachOpts{window: 4, manual: true})
	peerWrite(t, peer, "before the reset")
	a.waitUntil("a window of bytes", func(s attachState) bool { return s.next == 4 })
	e.waitBuffered(t, id, 12)
	peer.SetLinger(0)
	peer.Close()
	waitFor(t, "the reset to arrive", func() bool { return e.stream(t, id).R.Exception() != nil })
	a.setAutoAck(true)
	st := wantStatus(t, a.wait(), codes.Unavailable, ReasonConnectionReset)
	_ = st
	if s := a.state(); string(s.in) != "before the reset" {
		t.Fatalf("received %q before the error, want %q", s.in, "before the reset")
	}
}

// noLeaks runs cycle once to warm up, then n times, and checks that the
// goroutines and sockets of the process are back where they were after
// the warm-up once settled reports that the streams are gone. (Sockets,
// not all descriptors: splice keeps a pool of pipes that shrinks only with
// garbage collection.)
func noLeaks(t *testing.T, n int, settled func() bool, cycle func()) {
	t.Helper()
	cycle() // warm up lazily created goroutines and descriptors
	waitFor(t, "the warm-up streams to be released", settled)
	base := goleak.IgnoreCurrent()
	sockets := len(socketFDs(t))
	for range n {
		cycle()
	}
	waitFor(t, "the streams to be released", settled)
	// Find retries for a while by itself.
	leaked := goleak.Find(base)
	for deadline := time.Now().Add(failAfter); leaked != nil && time.Now().Before(deadline); {
		leaked = goleak.Find(base)
	}
	if leaked != nil {
		t.Fatalf("goroutines not back to the baseline: %v", leaked)
	}
	deadline := time.Now().Add(failAfter)
	for len(socketFDs(t)) > sockets {
		if time.Now().After(deadline) {
			t.Fatalf("%d sockets open, %d at the baseline: %v", len(socketFDs(t)), sockets, socketFDs(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// socketFDs lists the process's socket descriptors.
func socketFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var out []string
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(l, "socket:") {
			out = append(out, e.Name()+"="+l)
		}
	}
	return out
}

// closeOrGone closes a stream of a leak test, which may have been lost
// and released already (a short ClosedLinger).
func (e *env) closeOrGone(t *testing.T, id string) {
	t.Helper()
	if _, err := e.c.Close(bg(t), &smv1.CloseRequest{StreamId: id}); err != nil && status.Code(err) != codes.NotFound {
		t.Fatalf("Close: %v", err)
	}
}

// peerListeners are one TCP and one Unix listener whose connections a
// test takes, so that a loop opening streams holds no descriptor beyond
// the streams it has not closed.
type peerListeners struct {
	tcp, unix net.Listener
	path      string
}

func newPeerListeners(t *testing.T) *peerListeners {
	t.Helper()
	path := tempDir(t) + "/p.sock"
	u, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return &peerListeners{tcp: listenTCP(t), unix: u, path: path}
}

// open opens a stream of kind to the listeners and returns the handle and
// the peer's end, which the caller closes.
func (l *peerListeners) open(t *testing.T, e *env, kind string) (string, net.Conn) {
	t.Helper()
	ln := l.tcp
	req := &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: portOf(l.tcp.Addr())}}}
	if kind == "unix" {
		ln = l.unix
		req = &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: l.path}}}
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	resp, err := e.c.Open(bg(t), req)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	select {
	case c, ok := <-accepted:
		if !ok {
			t.Fatal("accept failed")
		}
		return resp.StreamId, c
	case <-time.After(failAfter):
		t.Fatal("no connection accepted")
	}
	return "", nil
}

// TestAttachNoLeaks: goroutines are back to where they were once attaches
// end, however they end (OK, the client cancelling mid-transfer, its
// connection closing, a takeover, a reset), and the sockets are released
// once the streams are closed. Not parallel: it counts goroutines and
// descriptors of the process.
func TestAttachNoLeaks(t *testing.T) {
	e := newEnv(t, Config{ClosedLinger: 50 * time.Millisecond})
	l := newPeerListeners(t)
	mib, big := pattern(1<<20, 1), bigPattern(32<<20, 2)
	cycle := func() {
		// OK
		id, peer := l.open(t, e, "tcp")
		got := peerCollect(peer)
		a := startAttach(t, e.c, id, attachOpts{})
		a.sendData(mib)
		a.writeEOF()
		peerWrite(t, peer, "x")
		closeWrite(t, peer)
		a.waitUntil("eof", func(s attachState) bool { return s.eof })
		a.closeSend()
		a.waitOK()
		a.end()
		waitPeer(t, got)
		peer.Close()
		e.closeOrGone(t, id)

		// Cancelled mid-transfer, both ways busy.
		id, peer = l.open(t, e, "unix")
		wrote := peerWriteChunks(peer, big, 2, false)
		a = startAttach(t, e.c, id, attachOpts{})
		sending := make(chan struct{})
		go func() {
			defer close(sending)
			for range 32 {
				a.sendData(mib)
			}
		}()
		a.waitUntil("some bytes", func(s attachState) bool { return s.next > 1<<20 })
		a.cancel()
		wantStatus(t, a.wait(), codes.Canceled, "")
		a.end()
		<-sending
		e.closeOrGone(t, id)
		peer.Close()
		<-wrote

		// The client's connection closes mid-transfer; then a takeover,
		// then a reset.
		id, peer = l.open(t, e, "tcp")
		wrote = peerWriteChunks(peer, big, 2, false)
		cc := e.dial(t)
		a = startAttach(t, smv1.NewStreamServiceClient(cc), id, attachOpts{})
		a.waitUntil("some bytes", func(s attachState) bool { return s.next > 1<<20 })
		cc.Close()
		_ = a.wait()
		a.end()
		b := startAttach(t, e.c, id, attachOpts{})
		c := startAttach(t, e.c, id, attachOpts{})
		wantStatus(t, b.wait(), codes.Aborted, ReasonAttachSuperseded)
		b.end()
		c.waitUntil("some bytes", func(s attachState) bool { return s.next > 0 })
		peer.(*net.TCPConn).SetLinger(0)
		peer.Close()
		<-wrote
		if err := c.wait(); err == nil {
			t.Fatal("the call ended OK after a reset")
		}
		c.end()
		e.closeOrGone(t, id)
	}
	noLeaks(t, 3, func() bool {
		resp, err := e.c.ListStreams(bg(t), &smv1.ListStreamsRequest{})
		return err == nil && len(resp.Streams) == 0
	}, cycle)
}

// TestAttachAskWrittenAndAbort: an empty message asks where the stream
// stands (a report of written once it moved), and Abort of the stream ends
// an Attach that had delivered EOF without waiting for the client.
func TestAttachAskWrittenAndAbort(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a, b := e.openPair(t, nil)
	at, err := e.c.Attach(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := at.Send(&smv1.AttachRequest{StreamId: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := at.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := at.Send(&smv1.AttachRequest{Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	// Without asking, 5 bytes are below the periodic report; asking gets it.
	if err := at.Send(&smv1.AttachRequest{}); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := at.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Written == 5 {
			break
		}
	}
	if r := e.readExactly(t, b, 5); string(r.Data) != "hello" {
		t.Fatalf("peer read %q", r.Data)
	}
	// b's FIN: a delivers EOF, then waits for the client; Abort ends it.
	if _, err := e.c.WriteEof(bg(t), &smv1.WriteEofRequest{StreamId: b}); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := at.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Eof {
			break
		}
	}
	if _, err := e.c.Abort(bg(t), &smv1.AbortRequest{StreamId: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := at.Recv(); err != io.EOF {
		t.Fatalf("after Abort the Attach goes on: %v, want it to end OK", err)
	}
}
