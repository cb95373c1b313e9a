package main_test

// End-to-end tests of Attach and Relay against the real daemon: a Go gRPC
// client on its Unix socket (and grpcurl from a shell), real TCP and Unix
// peers, a client process killed mid-transfer, and the daemon's memory,
// goroutines and descriptors read from /proc and its debug listener.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// arWait bounds every wait of these tests: a hung test fails instead of
// hanging; passing runs take a small fraction of it.
const arWait = 60 * time.Second

// arPeriod is the length of the byte sequences the tests send: a random
// block of a prime length above 1 MiB repeated, so that a lost, duplicated
// or reordered piece (every piece is at most 1 MiB) shows in a comparison.
const arPeriod = 1048583

// arSeq is an endless byte sequence: a random block repeated. Any piece of
// up to arPeriod bytes is a slice of twice the block.
type arSeq struct{ twice []byte }

func newArSeq(seed uint64) *arSeq {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, 2*arPeriod)
	for i := 0; i < arPeriod; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < arPeriod; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	copy(b[arPeriod:], b[:arPeriod])
	return &arSeq{twice: b}
}

// at returns the n bytes at offset off (n <= arPeriod).
func (s *arSeq) at(off int64, n int) []byte {
	i := int(off % arPeriod)
	return s.twice[i : i+n : i+n]
}

// check reports whether b is the sequence at offset off, piece by piece.
func (s *arSeq) check(off int64, b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), arPeriod)
		if !bytes.Equal(b[:n], s.at(off, n)) {
			return false
		}
		b, off = b[n:], off+int64(n)
	}
	return true
}

// arPeerSend writes total bytes of seq to c in random-size writes (1 byte
// to maxWrite), then half-closes c when fin is set. sent counts the bytes
// the kernel took.
func arPeerSend(c net.Conn, seq *arSeq, total int64, maxWrite int, seed uint64, fin bool, sent *atomicInt) <-chan error {
	ch := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 7))
		_ = c.SetWriteDeadline(time.Now().Add(arWait))
		for off := int64(0); off < total; {
			n := int(min(total-off, int64(1+rng.IntN(maxWrite))))
			k, err := c.Write(seq.at(off, n))
			off += int64(k)
			if sent != nil {
				sent.add(int64(k))
			}
			if err != nil {
				ch <- fmt.Errorf("peer write at %d: %w", off, err)
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

// arPeerCheck reads c to EOF, checking every byte against seq from offset
// 0; it answers the byte count.
func arPeerCheck(c net.Conn, seq *arSeq) <-chan arCount {
	ch := make(chan arCount, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(arWait))
		buf := make([]byte, 256<<10)
		var off int64
		for {
			n, err := c.Read(buf)
			if n > 0 && !seq.check(off, buf[:n]) {
				ch <- arCount{off, fmt.Errorf("the peer received wrong bytes at offset %d", off)}
				return
			}
			off += int64(n)
			if err == io.EOF {
				ch <- arCount{off, nil}
				return
			}
			if err != nil {
				ch <- arCount{off, fmt.Errorf("peer read at %d: %w", off, err)}
				return
			}
		}
	}()
	return ch
}

type arCount struct {
	n   int64
	err error
}

// atomicInt is a counter shared with a background goroutine.
type atomicInt struct {
	mu sync.Mutex
	v  int64
}

func (a *atomicInt) add(n int64) { a.mu.Lock(); a.v += n; a.mu.Unlock() }
func (a *atomicInt) get() int64  { a.mu.Lock(); defer a.mu.Unlock(); return a.v }

func arWaitCount(t testing.TB, what string, ch <-chan arCount) int64 {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r.n
	case <-time.After(arWait):
		t.Fatalf("%s: timed out", what)
	}
	return 0
}

func arWaitErr(t testing.TB, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(arWait):
		t.Fatalf("%s: timed out", what)
	}
}

// arPoll polls cond (tiny sleeps) until it holds, failing after arWait.
func arPoll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(arWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// arClient is the client side of one Attach call: a goroutine that sends
// (data, write_eof and acks, coalesced to the latest offset received) and
// one that receives; the receiver never waits on the sender.
type arClient struct {
	t      testing.TB
	cs     smv1.StreamService_AttachClient
	cancel context.CancelFunc
	first  *smv1.AttachResponse

	ops     chan *smv1.AttachRequest // sent in order; nil: CloseSend
	poke    chan struct{}
	stop    chan struct{}
	sent    chan struct{} // closed when the sender ended
	recvEnd chan struct{} // closed when the receiver ended

	mu      sync.Mutex
	autoAck bool
	next    int64 // inbound offset reached
	acked   int64
	written int64
	eof     bool
	err     error
	onData  func(off int64, b []byte) error
	changed chan struct{}
}

// arAttach attaches to id and returns once the first response came.
// onData sees every inbound piece; an error it returns fails the test.
func arAttach(t testing.TB, c smv1.StreamServiceClient, first *smv1.AttachRequest, autoAck bool, onData func(off int64, b []byte) error) *arClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*arWait)
	cs, err := c.Attach(ctx)
	if err != nil {
		cancel()
		t.Fatalf("Attach: %v", err)
	}
	if err := cs.Send(first); err != nil {
		cancel()
		t.Fatalf("Attach: send the first message: %v", err)
	}
	resp, err := cs.Recv()
	if err != nil {
		cancel()
		t.Fatalf("Attach: the first response: %v", err)
	}
	a := &arClient{
		t: t, cs: cs, cancel: cancel, first: resp,
		ops: make(chan *smv1.AttachRequest, 8), poke: make(chan struct{}, 1),
		stop: make(chan struct{}), sent: make(chan struct{}), recvEnd: make(chan struct{}),
		autoAck: autoAck, next: resp.Offset, acked: resp.Offset, written: resp.Written,
		onData: onData, changed: make(chan struct{}),
	}
	go a.sender()
	go a.receiver()
	t.Cleanup(a.end)
	return a
}

func (a *arClient) end() {
	a.cancel()
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.sent
	<-a.recvEnd
}

func (a *arClient) receiver() {
	defer close(a.recvEnd)
	for {
		r, err := a.cs.Recv()
		a.mu.Lock()
		if err != nil {
			if err != io.EOF {
				a.err = err
			}
		} else {
			if r.Offset != a.next && a.err == nil {
				a.err = fmt.Errorf("a response at offset %d, want %d", r.Offset, a.next)
			}
			if len(r.Data) > 0 && a.onData != nil && a.err == nil {
				a.err = a.onData(r.Offset, r.Data)
			}
			a.next = r.Offset + int64(len(r.Data))
			a.eof = a.eof || r.Eof
			a.written = max(a.written, r.Written)
		}
		close(a.changed)
		a.changed = make(chan struct{})
		fail := a.err != nil && err == nil
		a.mu.Unlock()
		if err != nil || fail {
			if fail {
				a.cancel()
			}
			return
		}
		select {
		case a.poke <- struct{}{}:
		default:
		}
	}
}

func (a *arClient) sender() {
	defer close(a.sent)
	closed := false
	ack := func() error {
		a.mu.Lock()
		next, due := a.next, a.autoAck && a.next > a.acked
		if due {
			a.acked = next
		}
		a.mu.Unlock()
		if !due || closed {
			return nil
		}
		return a.cs.Send(&smv1.AttachRequest{Ack: &next})
	}
	for {
		var err error
		select {
		case <-a.stop:
			return
		case <-a.poke:
			err = ack()
		case op := <-a.ops:
			switch {
			case op == nil && !closed:
				closed = true
				err = a.cs.CloseSend()
			case op == nil || closed:
			default:
				if err = a.cs.Send(op); err == nil {
					err = ack()
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// send queues one request; false once the call has ended.
func (a *arClient) send(r *smv1.AttachRequest) bool {
	select {
	case a.ops <- r:
		return true
	case <-a.recvEnd:
		return false
	case <-a.sent:
		return false
	case <-time.After(arWait):
		a.t.Errorf("queueing an Attach request timed out")
		return false
	}
}

func (a *arClient) setAutoAck(on bool) {
	a.mu.Lock()
	a.autoAck = on
	a.mu.Unlock()
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// waitUntil waits until cond holds on (next, eof), failing if the call
// ends first or after arWait.
func (a *arClient) waitUntil(what string, cond func(next int64, eof bool) bool) {
	a.t.Helper()
	deadline := time.After(arWait)
	for {
		a.mu.Lock()
		next, eof, err, ch := a.next, a.eof, a.err, a.changed
		a.mu.Unlock()
		if cond(next, eof) {
			return
		}
		select {
		case <-a.recvEnd:
			a.mu.Lock()
			next, eof, err = a.next, a.eof, a.err
			a.mu.Unlock()
			if cond(next, eof) {
				return
			}
			a.t.Fatalf("Attach ended (%v) before %s (at %d, eof %v)", err, what, next, eof)
		case <-ch:
		case <-deadline:
			a.t.Fatalf("timed out waiting for %s (at %d, eof %v, err %v)", what, next, eof, err)
		}
	}
}

// offset is the inbound offset the client has reached.
func (a *arClient) offset() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.next
}

// result waits for the call's end: the last written it reported and its
// error (nil: OK).
func (a *arClient) result() (int64, error) {
	a.t.Helper()
	select {
	case <-a.recvEnd:
	case <-time.After(arWait):
		a.t.Fatal("the Attach call did not end")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.written, a.err
}

// arSendSeq sends seq's bytes [from, to) as data messages of random sizes
// (1 byte to maxMsg), each with its offset when withOffset is set.
func (a *arClient) sendSeq(seq *arSeq, from, to int64, maxMsg int, seed uint64, withOffset bool) bool {
	rng := rand.New(rand.NewPCG(seed, 3))
	for off := from; off < to; {
		n := int(min(to-off, int64(1+rng.IntN(maxMsg))))
		req := &smv1.AttachRequest{Data: seq.at(off, n)}
		if withOffset {
			req.Offset = ptr(off)
		}
		if !a.send(req) {
			return false
		}
		off += int64(n)
	}
	return true
}

// arDaemon is a daemon with a Go client on its Unix socket.
type arDaemon struct {
	*daemon
	cc  *grpc.ClientConn
	c   smv1.StreamServiceClient
	pid int
}

func startArDaemon(t *testing.T, extra ...string) *arDaemon {
	t.Helper()
	d := startDaemon(t, false, extra...)
	cc := dialSock(t, d.sock)
	return &arDaemon{daemon: d, cc: cc, c: smv1.NewStreamServiceClient(cc), pid: d.cmd.Process.Pid}
}

func (d *arDaemon) ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), arWait)
	t.Cleanup(cancel)
	return ctx
}

// open opens a stream to a fresh TCP peer and returns its handle and the
// peer's end.
func (d *arDaemon) open(t testing.TB) (string, *net.TCPConn) {
	t.Helper()
	p := newPeer(t)
	o, err := d.c.Open(d.ctx(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(p.port())}}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return o.StreamId, p.accept(t).(*net.TCPConn)
}

// openUnix opens a stream to a fresh Unix peer.
func (d *arDaemon) openUnix(t testing.TB) (string, *net.UnixConn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := newUnixPeer(t, filepath.Join(dir, "p.sock"))
	o, err := d.c.Open(d.ctx(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: p.ln.Addr().String()}}})
	if err != nil {
		t.Fatalf("Open unix: %v", err)
	}
	return o.StreamId, p.accept(t).(*net.UnixConn)
}

// info is the stream's ListStreams entry (nil when not listed).
func (d *arDaemon) info(t testing.TB, id string) *smv1.StreamInfo {
	t.Helper()
	r, err := d.c.ListStreams(d.ctx(t), &smv1.ListStreamsRequest{})
	if err != nil {
		t.Fatalf("ListStreams: %v", err)
	}
	for _, s := range r.Streams {
		if s.StreamId == id {
			return s
		}
	}
	return nil
}

func (d *arDaemon) rss(t testing.TB) int64 {
	rss, _ := procStats(t.(*testing.T), d.pid)
	return rss
}

// TestAttachE2EBulk moves 256 MiB both ways at once through a real daemon
// process: client messages of 1 byte to 1 MiB, peer writes of random
// sizes, every byte checked.
func TestAttachE2EBulk(t *testing.T) {
	t.Parallel()
	const total = 256 << 20
	d := startArDaemon(t)
	id, peer := d.open(t)
	out, in := newArSeq(1), newArSeq(2)
	start := time.Now()
	a := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id}, true, func(off int64, b []byte) error {
		if !in.check(off, b) {
			return fmt.Errorf("inbound bytes differ at offset %d", off)
		}
		return nil
	})
	got := arPeerCheck(peer, out)
	wrote := arPeerSend(peer, in, total, 1<<20, 9, true, nil)
	if !a.sendSeq(out, 0, total, 1<<20, 4, false) || !a.send(&smv1.AttachRequest{WriteEof: true}) {
		_, err := a.result()
		t.Fatalf("the Attach call ended while sending: %v", err)
	}
	a.waitUntil("eof", func(_ int64, eof bool) bool { return eof })
	a.send(nil)
	written, err := a.result()
	if err != nil {
		t.Fatalf("Attach ended with %v, want OK", err)
	}
	arWaitErr(t, "the peer's writes", wrote)
	if n := arWaitCount(t, "the peer's reads", got); n != total {
		t.Fatalf("the peer received %d bytes, want %d", n, total)
	}
	if next := a.offset(); next != total || written != total {
		t.Fatalf("inbound reached %d, written %d; want %d both", next, written, total)
	}
	el := time.Since(start)
	t.Logf("%d MiB each way in %v: %.0f MiB/s each way", total>>20, el.Round(time.Millisecond), float64(total>>20)/el.Seconds())
}

// arSockets lists the socket descriptors of process pid (the daemon's
// splice pipes come and go with its garbage collection: not counted).
func arSockets(t testing.TB, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); strings.HasPrefix(l, "socket:") {
			out = append(out, l)
		}
	}
	return out
}

// TestAttachE2ESlowClient pushes 512 MiB at a client that stops
// acknowledging: the daemon stops reading the socket, the peer's writes
// stall, and the daemon's memory (VmRSS) grows by a small fraction of
// that; the stream holds at most the window plus its read buffer.
func TestAttachE2ESlowClient(t *testing.T) {
	t.Parallel()
	const total = 512 << 20
	d := startArDaemon(t)
	id, peer := d.open(t)
	in := newArSeq(5)
	rss0 := d.rss(t)
	a := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id}, true, func(off int64, b []byte) error {
		if !in.check(off, b) {
			return fmt.Errorf("inbound bytes differ at offset %d", off)
		}
		return nil
	})
	var sent atomicInt
	wrote := arPeerSend(peer, in, total, 1<<20, 5, false, &sent)
	a.waitUntil("16 MiB", func(next int64, _ bool) bool { return next >= 16<<20 })
	a.setAutoAck(false)
	// Reading pauses above twice the limit (64 KiB) and resumes at or
	// below it: with nothing taken from the buffer it ends above it.
	arPoll(t, "the daemon to buffer", func() bool { return d.info(t, id).Buffered > 64<<10 })
	var last int64
	arPoll(t, "the peer's writes to stall", func() bool {
		v := sent.get()
		if v != last {
			last = v
			return false
		}
		for range 10 {
			time.Sleep(5 * time.Millisecond)
			if sent.get() != v {
				return false
			}
		}
		return true
	})
	rss := d.rss(t)
	info := d.info(t, id)
	t.Logf("stalled after the peer wrote %d MiB: daemon VmRSS %d MiB (+%d MiB), buffered %d, retained %d", last>>20, rss>>20, (rss-rss0)>>20, info.Buffered, info.Retained)
	if last > 128<<20 {
		t.Fatalf("the peer wrote %d MiB to a client that stopped acking", last>>20)
	}
	if bound := int64(4<<20 + 2*64<<10 + 256<<10); info.Buffered+info.Retained > bound {
		t.Fatalf("the stream holds %d buffered + %d retained bytes, want at most %d", info.Buffered, info.Retained, bound)
	}
	if grew := rss - rss0; grew > 64<<20 {
		t.Fatalf("daemon VmRSS grew by %d MiB with a stalled client, want well under the 512 MiB pushed", grew>>20)
	}
	// Acking again, the bytes flow once more; the memory stays bounded.
	a.setAutoAck(true)
	from := a.offset()
	a.waitUntil("64 MiB more", func(next int64, _ bool) bool { return next >= from+64<<20 })
	if grew := d.rss(t) - rss0; grew > 64<<20 {
		t.Fatalf("daemon VmRSS grew by %d MiB while streaming, want a bounded amount", grew>>20)
	}
	if _, err := d.c.Abort(d.ctx(t), &smv1.AbortRequest{StreamId: id}); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	<-wrote
	a.waitUntil("eof after the abort", func(_ int64, eof bool) bool { return eof })
	a.send(nil)
	if _, err := a.result(); err != nil {
		t.Fatalf("Attach ended with %v, want OK", err)
	}
}

// TestAttachE2ESlowPeer pushes 128 MiB at a peer that reads nothing: the
// client's sends block, the stream's write_buffered stays within the
// daemon's --max-write-buffer, and its memory stays bounded; once the peer
// reads, every byte arrives.
func TestAttachE2ESlowPeer(t *testing.T) {
	t.Parallel()
	const total = 128 << 20
	const maxWrite = 2 << 20
	d := startArDaemon(t, "--max-write-buffer", strconv.Itoa(maxWrite))
	id, peer := d.open(t)
	out := newArSeq(6)
	rss0 := d.rss(t)
	a := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id}, true, nil)
	var queued atomicInt
	produced := make(chan bool, 1)
	go func() {
		rng := rand.New(rand.NewPCG(6, 6))
		for off := int64(0); off < total; {
			n := int(min(total-off, int64(1+rng.IntN(1<<20))))
			if !a.send(&smv1.AttachRequest{Data: out.at(off, n)}) {
				produced <- false
				return
			}
			queued.add(int64(n))
			off += int64(n)
		}
		produced <- a.send(&smv1.AttachRequest{WriteEof: true})
	}()
	// Above its high-water mark (64 KiB) the daemon takes no more until
	// the socket takes bytes, which it never does while the peer reads
	// nothing.
	arPoll(t, "the write buffer to pass its high-water mark", func() bool { return d.info(t, id).WriteBuffered > 64<<10 })
	var last int64
	arPoll(t, "the client's sends to block", func() bool {
		v := queued.get()
		if v != last {
			last = v
			return false
		}
		for range 10 {
			time.Sleep(5 * time.Millisecond)
			if queued.get() != v {
				return false
			}
		}
		return true
	})
	info := d.info(t, id)
	rss := d.rss(t)
	t.Logf("the client's sends blocked after %d MiB; write_buffered %d; daemon VmRSS +%d MiB", last>>20, info.WriteBuffered, (rss-rss0)>>20)
	if last >= total {
		t.Fatal("the client sent everything to a peer that reads nothing")
	}
	if info.WriteBuffered > maxWrite || info.WriteBuffered <= 64<<10 {
		t.Fatalf("write_buffered = %d, want 64 KiB..%d", info.WriteBuffered, maxWrite)
	}
	if grew := rss - rss0; grew > 64<<20 {
		t.Fatalf("daemon VmRSS grew by %d MiB, want a bounded amount", grew>>20)
	}
	got := arPeerCheck(peer, out)
	if n := arWaitCount(t, "the peer's reads", got); n != total {
		t.Fatalf("the peer received %d bytes, want %d", n, total)
	}
	select {
	case ok := <-produced:
		if !ok {
			t.Fatal("the call ended while sending")
		}
	case <-time.After(arWait):
		t.Fatal("the client's sends never finished")
	}
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	a.waitUntil("eof", func(_ int64, eof bool) bool { return eof })
	a.send(nil)
	if written, err := a.result(); err != nil || written != total {
		t.Fatalf("Attach ended with %v, written %d; want OK, %d", err, written, total)
	}
}

// Environment of the Attach client process that TestAttachE2EResume kills.
const (
	arChildEnv   = "STREAMMGR_AR_CHILD" // daemon socket, stream id, ack, bytes to send
	arChildTotal = 32 << 20             // the peer's bytes
)

// TestAttachE2EChild is the client process TestAttachE2EResume starts
// and kills: it attaches, receives past the offset it acknowledges, sends
// outbound bytes with offsets, says so on stdout and waits to be killed.
func TestAttachE2EChild(t *testing.T) {
	env := os.Getenv(arChildEnv)
	if env == "" {
		t.Skip("the client process of TestAttachE2EResume")
	}
	os.RemoveAll(binDir) // a killed process leaves nothing behind
	var (
		sock, id  string
		ack, outN int64
	)
	if _, err := fmt.Sscan(env, &sock, &id, &ack, &outN); err != nil {
		t.Fatalf("%s=%q: %v", arChildEnv, env, err)
	}
	cc := dialSock(t, sock)
	in, out := newArSeq(7), newArSeq(8)
	a := arAttach(t, smv1.NewStreamServiceClient(cc), &smv1.AttachRequest{StreamId: id}, false, func(off int64, b []byte) error {
		if !in.check(off, b) {
			return fmt.Errorf("inbound bytes differ at offset %d", off)
		}
		return nil
	})
	a.waitUntil("bytes past the ack", func(next int64, _ bool) bool { return next >= ack+1<<20 })
	a.send(&smv1.AttachRequest{Ack: ptr(ack)})
	fmt.Println("acked")
	a.sendSeq(out, 0, outN, 1<<20, 8, true)
	fmt.Println("sent")
	time.Sleep(arWait) // until killed
	t.Fatal("not killed")
}

// TestAttachE2EResume: a client process killed (SIGKILL) mid-transfer
// loses nothing: a new Attach (a new process's connection) from its last
// ack receives exactly the rest, and outbound data resumed from the first
// response's written, overlapping what was accepted, is written once.
func TestAttachE2EResume(t *testing.T) {
	t.Parallel()
	const ack = 2<<20 + 4321 // within the default window: the child receives past it unacked
	const childOut = 6 << 20
	const totalOut = 16 << 20
	d := startArDaemon(t)
	id, peer := d.open(t)
	in, out := newArSeq(7), newArSeq(8)
	wrote := arPeerSend(peer, in, arChildTotal, 1<<20, 7, true, nil)
	got := arPeerCheck(peer, out)

	ctx, cancel := context.WithTimeout(context.Background(), arWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAttachE2EChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d %d", arChildEnv, d.sock, id, ack, childOut))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	for _, want := range []string{"acked", "sent"} {
		select {
		case l, ok := <-lines:
			for ok && l != want {
				l, ok = <-lines
			}
			if !ok {
				err := <-exited
				t.Fatalf("the client process ended (%v) before saying %s:\n%s", err, want, stderr.String())
			}
		case <-time.After(arWait):
			t.Fatalf("the client process never said %s:\n%s", want, stderr.String())
		}
	}
	arPoll(t, "the daemon to apply the ack", func() bool { return d.info(t, id).EarliestOffset == ack })
	arPoll(t, "the daemon to accept outbound bytes", func() bool { return d.info(t, id).BytesOut >= 1<<20 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(arWait):
		t.Fatal("the client process did not die")
	}

	a := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id, Offset: ptr(int64(ack))}, true, func(off int64, b []byte) error {
		if !in.check(off, b) {
			return fmt.Errorf("inbound bytes differ at offset %d", off)
		}
		return nil
	})
	if a.first.Offset != ack {
		t.Fatalf("resumed at %d, want %d", a.first.Offset, ack)
	}
	from := a.first.Written
	if from <= 0 || from > childOut {
		t.Fatalf("written = %d, want what the killed client sent, 1..%d", from, childOut)
	}
	retry := max(from-1000, 0)
	if !a.sendSeq(out, retry, totalOut, 1<<20, 9, true) || !a.send(&smv1.AttachRequest{WriteEof: true}) {
		_, err := a.result()
		t.Fatalf("the call ended while sending: %v", err)
	}
	a.waitUntil("eof", func(_ int64, eof bool) bool { return eof })
	a.send(nil)
	if written, err := a.result(); err != nil || written != totalOut {
		t.Fatalf("Attach ended with %v, written %d; want OK, %d", err, written, totalOut)
	}
	if next := a.offset(); next != arChildTotal {
		t.Fatalf("inbound reached %d, want %d", next, arChildTotal)
	}
	arWaitErr(t, "the peer's writes", wrote)
	if n := arWaitCount(t, "the peer's reads", got); n != totalOut {
		t.Fatalf("the peer received %d bytes, want %d", n, totalOut)
	}
	t.Logf("the killed client had %d outbound bytes accepted; resumed from %d with %d bytes overlapping", from, retry, from-retry)
}

// arAttachResp is grpcurl's JSON rendering of an AttachResponse.
type arAttachResp struct {
	Data    []byte `json:"data"`
	Offset  int64  `json:"offset,string"`
	EOF     bool   `json:"eof"`
	Written int64  `json:"written,string"`
}

// TestAttachE2EGrpcurl drives Attach from a shell: grpcurl -d @ with one
// JSON request per line (bytes in base64); the peer answers and sends
// FIN; grpcurl prints the responses (data, offset, eof, written) and the
// call ends OK once its input ends.
func TestAttachE2EGrpcurl(t *testing.T) {
	t.Parallel()
	d := startArDaemon(t)
	id, peer := d.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), arWait)
	defer cancel()
	cmd := d.unix().command(ctx, "Attach", []string{"-d", "@"})
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan arAttachResp, 16)
	decoded := make(chan error, 1)
	go func() {
		defer close(msgs)
		dec := json.NewDecoder(stdout)
		for {
			var r arAttachResp
			if err := dec.Decode(&r); err != nil {
				if err == io.EOF {
					err = nil
				}
				decoded <- err
				return
			}
			msgs <- r
		}
	}()
	next := func(what string) arAttachResp {
		t.Helper()
		select {
		case r, ok := <-msgs:
			if !ok {
				t.Fatalf("grpcurl's output ended before %s (%v):\n%s", what, <-decoded, stderr.String())
			}
			return r
		case <-time.After(arWait):
			t.Fatalf("grpcurl printed no %s", what)
		}
		return arAttachResp{}
	}
	line := func(v any) {
		t.Helper()
		if _, err := stdin.Write(append(requestJSON(v), '\n')); err != nil {
			t.Fatalf("grpcurl's input: %v", err)
		}
	}

	line(m{"stream_id": id})
	if r := next("the first response"); r.Offset != 0 || r.Written != 0 || len(r.Data) != 0 || r.EOF {
		t.Fatalf("first response %+v, want offset 0, written 0", r)
	}
	line(m{"data": []byte("hello, ")}) // encoding/json writes []byte as base64
	line(m{"data": []byte("peer")})
	line(m{"write_eof": true})
	readPeer(t, peer, "hello, peer")
	expectPeerEOF(t, peer)

	writePeer(t, peer, "hello, client")
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var in []byte
	var last arAttachResp
	for !last.EOF {
		last = next("eof")
		if int(last.Offset) != len(in) {
			t.Fatalf("a response at offset %d after %d bytes", last.Offset, len(in))
		}
		in = append(in, last.Data...)
	}
	if string(in) != "hello, client" || last.Offset != 13 || last.Written != 11 {
		t.Fatalf("received %q, eof at %d with written %d; want %q at 13, written 11", in, last.Offset, last.Written, "hello, client")
	}
	line(m{"ack": "13"})
	stdin.Close()
	for r := range msgs {
		if len(r.Data) > 0 || r.Offset != 13 {
			t.Fatalf("after eof: %+v", r)
		}
	}
	if err := <-decoded; err != nil {
		t.Fatalf("grpcurl's output: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("grpcurl: %v\n%s", err, stderr.String())
	}
	if info := d.info(t, id); info.Attached || info.EarliestOffset != 13 || info.BytesOut != 11 {
		t.Fatalf("after the call: %v; want detached, acked to 13, 11 bytes out", info)
	}
}

// arRelayResp is grpcurl's JSON rendering of a RelayResponse.
type arRelayResp struct {
	FirstToSecond int64 `json:"firstToSecond,string"`
	SecondToFirst int64 `json:"secondToFirst,string"`
}

// TestRelayE2E relays 64 MiB each way between a TCP and a Unix stream of a
// real daemon, called from grpcurl: ListStreams shows relay_peer on both
// while it runs, a FIN one way is an EOF on the other side while the other
// way still flows, and grpcurl prints the counts at the end.
func TestRelayE2E(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	d := startArDaemon(t)
	a, pa := d.open(t)
	b, pb := d.openUnix(t)
	call := background(t, d.unix(), "Relay", m{"firstStreamId": a, "secondStreamId": b}, "-max-time", "60")
	arPoll(t, "ListStreams to show the relay", func() bool {
		return d.info(t, a).RelayPeer == b && d.info(t, b).RelayPeer == a
	})
	x, y := newArSeq(10), newArSeq(11)
	start := time.Now()
	gotB := arPeerCheck(pb, x)
	gotA := arPeerCheck(pa, y)
	arWaitErr(t, "a's peer", arPeerSend(pa, x, size, 1<<20, 10, true, nil))
	if n := arWaitCount(t, "b's peer", gotB); n != size {
		t.Fatalf("b's peer received %d bytes before EOF, want %d", n, size)
	}
	if !call.running() {
		t.Fatalf("the relay ended after one EOF:\n%s", call.wait(t, time.Second))
	}
	arWaitErr(t, "b's peer", arPeerSend(pb, y, size, 1<<20, 11, true, nil))
	if n := arWaitCount(t, "a's peer", gotA); n != size {
		t.Fatalf("a's peer received %d bytes, want %d", n, size)
	}
	var r arRelayResp
	call.next(t, &r)
	if res := call.wait(t, arWait); res.code != 0 {
		t.Fatalf("Relay:\n%s", res)
	}
	if r.FirstToSecond != size || r.SecondToFirst != size {
		t.Fatalf("Relay = %+v, want %d both ways", r, size)
	}
	t.Logf("relayed %d MiB each way in %v", size>>20, time.Since(start).Round(time.Millisecond))
	for _, id := range []string{a, b} {
		if info := d.info(t, id); info.RelayPeer != "" || info.BytesIn != size || info.BytesOut != size {
			t.Fatalf("after the relay: %v", info)
		}
	}
	// A relayed stream refuses reads; grpcurl shows the reason.
	c, pc := d.open(t)
	e, _ := d.open(t)
	call = background(t, d.unix(), "Relay", m{"firstStreamId": c, "secondStreamId": e})
	arPoll(t, "the second relay", func() bool { return d.info(t, c).RelayPeer == e })
	fail(t, d.unix(), "Read", m{"streamId": c, "n": 1}, codes.FailedPrecondition, "STREAM_RELAYED")
	if _, err := d.c.Close(d.ctx(t), &smv1.CloseRequest{StreamId: c}); err != nil {
		t.Fatal(err)
	}
	expectPeerEOF(t, pc)
	call.next(t, &r)
	if res := call.wait(t, arWait); res.code != 0 {
		t.Fatalf("Relay after Close:\n%s", res)
	}
}

// TestAttachRelayE2ENoLeaks: the daemon's goroutines and sockets are back
// to where they were once attaches and relays have ended (however they
// ended) and their streams are closed.
func TestAttachRelayE2ENoLeaks(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dbg := filepath.Join(dir, "dbg.sock")
	d := startArDaemon(t, "--debug-listen", "unix:"+dbg)
	p := newPeer(t)
	open := func() (string, net.Conn) {
		o, err := d.c.Open(d.ctx(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(p.port())}}})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return o.StreamId, p.accept(t)
	}
	closeAll := func(ids []string, conns []net.Conn) {
		for _, id := range ids {
			if _, err := d.c.Close(d.ctx(t), &smv1.CloseRequest{StreamId: id}); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	seq := newArSeq(12)
	cycle := func() {
		// An Attach that ends OK, one cancelled mid-transfer, one taken
		// over.
		id, c := open()
		a := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id}, true, nil)
		a.sendSeq(seq, 0, 1<<20, 64<<10, 1, false)
		a.send(&smv1.AttachRequest{WriteEof: true})
		writePeer(t, c, "x")
		c.(*net.TCPConn).CloseWrite()
		a.waitUntil("eof", func(_ int64, eof bool) bool { return eof })
		a.send(nil)
		if _, err := a.result(); err != nil {
			t.Fatalf("Attach: %v", err)
		}
		a.end()
		id2, c2 := open()
		wrote := arPeerSend(c2, seq, 64<<20, 256<<10, 2, false, nil)
		b := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id2}, true, nil)
		b.waitUntil("1 MiB", func(next int64, _ bool) bool { return next >= 1<<20 })
		b.cancel()
		b.result()
		b.end()
		x := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id2}, true, nil)
		y := arAttach(t, d.c, &smv1.AttachRequest{StreamId: id2}, true, nil)
		if _, err := x.result(); status.Code(err) != codes.Aborted {
			t.Fatalf("the superseded Attach ended with %v, want ABORTED", err)
		}
		x.end()
		y.end()
		// A relay that ends with both EOFs, one ended by Close.
		r1, p1 := open()
		r2, p2 := open()
		call := background(t, d.unix(), "Relay", m{"firstStreamId": r1, "secondStreamId": r2})
		arPoll(t, "the relay", func() bool { return d.info(t, r1).RelayPeer == r2 })
		p1.(*net.TCPConn).CloseWrite()
		p2.(*net.TCPConn).CloseWrite()
		call.wait(t, arWait)
		r3, p3 := open()
		r4, p4 := open()
		call = background(t, d.unix(), "Relay", m{"firstStreamId": r3, "secondStreamId": r4})
		arPoll(t, "the relay", func() bool { return d.info(t, r3).RelayPeer == r4 })
		closeAll([]string{r3}, nil)
		call.wait(t, arWait)
		closeAll([]string{id, id2, r1, r2, r4}, []net.Conn{c, c2, p1, p2, p3, p4})
		<-wrote
	}
	cycle() // warm up
	settled := func() (int, int) {
		return goroutines(t, dbg), len(arSockets(t, d.pid))
	}
	var g0, s0 int
	arPoll(t, "the daemon to settle", func() bool {
		g, s := settled()
		time.Sleep(20 * time.Millisecond)
		g1, s1 := settled()
		g0, s0 = g1, s1
		return g == g1 && s == s1
	})
	for range 3 {
		cycle()
	}
	var g, s int
	deadline := time.Now().Add(arWait)
	for g, s = settled(); g > g0 || s > s0; g, s = settled() {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon has %d goroutines and %d sockets, %d and %d before", g, s, g0, s0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("daemon: %d goroutines, %d sockets (baseline %d, %d)", g, s, g0, s0)
}
