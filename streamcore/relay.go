package streamcore

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// relayChunk is how many bytes one direction of a relay moves between
// updates of the streams' byte counts.
const relayChunk = 4 << 20

// relayRun is a Relay in progress; both transports point at it.
type relayRun struct {
	stopped chan struct{} // closed by stop
	done    chan struct{} // closed when the relay has handed both streams back
	conns   [2]net.Conn

	mu      sync.Mutex
	pumping bool // the pumps own the sockets: stop interrupts them
	over    bool // the pumps have ended: deadlines must not be touched again
	shut    bool // stop was called
}

// stop interrupts the relay's socket operations; the relay then hands the
// streams back as they are. Before the pumps run it touches no deadline:
// the streams' own write goroutines may still be flushing, and a write
// deadline would end their connections with a timeout.
func (r *relayRun) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut || r.over {
		return
	}
	r.shut = true
	close(r.stopped)
	if !r.pumping {
		return
	}
	past := time.Unix(1, 0)
	for _, c := range r.conns {
		if c != nil {
			_ = c.SetDeadline(past)
		}
	}
}

// startPumps clears the read deadlines claimRelay set and hands the
// sockets to the pumps; false when stop came first.
func (r *relayRun) startPumps() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut {
		return false
	}
	for _, c := range r.conns {
		_ = c.SetReadDeadline(time.Time{})
	}
	r.pumping = true
	return true
}

// finish marks the pumps over, before the streams are handed back.
func (r *relayRun) finish() {
	r.mu.Lock()
	r.over = true
	r.mu.Unlock()
}

func (r *relayRun) isStopped() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

// stopRelay ends a relay of the stream, if one runs, and waits until it
// has handed the stream back. Close and Abort call it first.
func (t *transport) stopRelay() {
	t.mu.Lock()
	r := t.relay
	t.mu.Unlock()
	if r == nil {
		return
	}
	r.stop()
	<-r.done
}

// Relay pumps bytes between two streams, both ways, until both directions
// reached EOF or one failed: what a's reader receives is written to b and
// what b's reader receives is written to a. Bytes already buffered go
// first. A peer's FIN on one side becomes a WriteEOF on the other. Between
// plain TCP and Unix sockets the kernel moves the bytes (splice) without
// copying them through user space; TLS streams are copied.
//
// Relay takes over both streams: their pending writes are flushed first,
// and until it returns nothing else may read or write them. Close or Abort
// of either stream ends the relay (it returns nil); a connection error on
// either ends it with that error, which a stream whose TCP socket was reset
// keeps as its own (its reads return it); the other stream goes on as it
// was. The byte counts of both
// streams (Consumed, Written) include the relayed bytes.
//
// The streams' bandwidth limits apply (Options.InRate, OutRate): bytes
// read from a stream count against its InRate and bytes written to a
// stream against its OutRate, in chunks of at most the smaller burst, and
// a direction waits between chunks until both are paid for (after what
// the streams still owed from before). Close, Abort and the end of the
// other direction interrupt that wait; a relay of limited streams copies
// through user space where it would splice everything to EOF at once
// (TCP to Unix).
//
// A stream that is closing, has sent EOF, is in start_tls, has a read
// waiting or is relayed already cannot be relayed.
func Relay(a, b *Writer) (aToB, bToA int64, err error) {
	ta, tb := a.t, b.t
	if ta == tb {
		return 0, 0, &ValueError{Msg: "a stream cannot be relayed to itself"}
	}
	run := &relayRun{stopped: make(chan struct{}), done: make(chan struct{})}
	defer close(run.done)
	if err := ta.claimRelay(run, 0); err != nil {
		return 0, 0, err
	}
	if err := tb.claimRelay(run, 1); err != nil {
		run.finish()
		ta.waitReader()
		ta.handBack(run)
		return 0, 0, err
	}
	defer tb.handBack(run)
	defer ta.handBack(run)
	defer run.finish()
	if !ta.stopLoops(run) || !tb.stopLoops(run) || !run.startPumps() {
		ta.waitReader()
		tb.waitReader()
		return 0, 0, nil
	}
	var (
		wg         sync.WaitGroup
		errA, errB error
	)
	wg.Add(2)
	go func() { defer wg.Done(); aToB, errA = pump(ta, tb, run) }()
	go func() { defer wg.Done(); bToA, errB = pump(tb, ta, run) }()
	wg.Wait()
	if run.isStopped() && (errors.Is(errA, errRelayStopped) || errors.Is(errB, errRelayStopped)) {
		// Close or Abort ended it; an error one direction had meanwhile
		// is the stream's to report.
		if errA == errRelayStopped {
			errA = nil
		}
		if errB == errRelayStopped {
			errB = nil
		}
	}
	if err := errors.Join(errA, errB); err != nil {
		// The sockets' own errors went to the pumps (a reset is reported
		// once): a stream whose socket died keeps the error, so that its
		// reads answer it as they would have without the relay.
		for _, t := range []*transport{ta, tb} {
			t.mu.Lock()
			if socketReset(t.rawConn()) {
				t.connectionLostLocked(err)
			}
			t.mu.Unlock()
		}
		return aToB, bToA, err
	}
	return aToB, bToA, nil
}

// errRelayStopped is a direction interrupted by stop.
var errRelayStopped = errors.New("relay stopped")

// claimRelay makes run the relay of t and starts stopping its goroutines.
func (t *transport) claimRelay(run *relayRun, i int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closing || t.lost:
		return ErrClosed
	case t.relay != nil:
		return &ValueError{Msg: "the stream is relayed already"}
	case t.pausing:
		return &ValueError{Msg: "start_tls is in progress"}
	case t.eofWanted:
		return ErrWriteAfterEOF
	case t.waiting && t.waitCtx.Err() == nil:
		return &ConcurrentReadError{Op: "relay"}
	}
	t.relay = run
	t.pausing = true
	broadcast(t.readCond)
	broadcast(t.writeCond)
	t.stopIdleLocked()
	run.conns[i] = t.conn
	_ = t.conn.SetReadDeadline(time.Unix(1, 0))
	return nil
}

// stopLoops waits until t's read goroutine has stopped and its write
// goroutine has flushed and stopped; false when the relay was stopped
// first.
func (t *transport) stopLoops(run *relayRun) bool {
	t.mu.Lock()
	readerEnd, writerEnd := t.readerEndLocked(), t.writerEndLocked()
	t.mu.Unlock()
	for _, end := range []chan struct{}{readerEnd, writerEnd} {
		select {
		case <-end:
		case <-run.stopped:
			return false
		}
	}
	return true
}

// waitReader waits until t's read goroutine, which claimRelay interrupted
// with a past read deadline, has stopped (at once, as in StartTLS). A
// stream handed back before that could meet the interrupted read once it
// is no longer pausing, and lose its connection to the timeout.
func (t *transport) waitReader() {
	t.mu.Lock()
	end := t.readerEndLocked()
	t.mu.Unlock()
	<-end
}

// handBack ends t's part in run: the goroutines start again where the
// stream still has a direction open.
func (t *transport) handBack(run *relayRun) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.relay != run {
		return
	}
	t.relay = nil
	t.pausing = false
	_ = t.conn.SetDeadline(time.Time{})
	if len(t.tlsPre) > 0 {
		// Read while the relay was starting and not relayed: plain data.
		t.buf.push(t.tlsPre)
		t.nreceived.Add(int64(len(t.tlsPre)))
		t.tlsPre = nil
		t.signalLocked()
	}
	t.settleLocked()
	t.signalLocked()
	broadcast(t.writeCond)
	if t.lost {
		return
	}
	if !t.readerRun && !t.eof && !t.stopRead {
		t.startReaderLocked()
	}
	if !t.writerRun {
		t.startWriterLocked()
	}
}

// untilIn and untilOut are the times before which t may not read or write
// (zero without limits).
func (t *transport) untilIn() time.Time {
	if t.rl == nil {
		return time.Time{}
	}
	return t.rl.inUntil
}

func (t *transport) untilOut() time.Time {
	if t.rl == nil {
		return time.Time{}
	}
	return t.rl.outUntil
}

// pump moves src's inbound bytes to dst until src's EOF (then half-closes
// dst), an error, or stop.
func pump(src, dst *transport, run *relayRun) (int64, error) {
	src.mu.Lock()
	pre := src.takeAllLocked()
	srcEOF := src.eof
	srcConn := src.conn
	in, inUntil := src.inRate(), src.untilIn()
	src.mu.Unlock()
	dst.mu.Lock()
	dstConn := dst.conn
	out, outUntil := dst.outRate(), dst.untilOut()
	dst.mu.Unlock()
	lim := limited(in) || limited(out)
	chunk := rateChunk(out, rateChunk(in, relayChunk))
	if lim {
		// What the pump still owes when it ends is the streams' to pay.
		defer func() {
			src.mu.Lock()
			if src.rl != nil {
				src.rl.inUntil = later(src.rl.inUntil, inUntil)
			}
			src.mu.Unlock()
			dst.mu.Lock()
			if dst.rl != nil {
				dst.rl.outUntil = later(dst.rl.outUntil, outUntil)
			}
			dst.mu.Unlock()
		}()
	}

	var total int64
	for len(pre) > 0 {
		// Bytes read before the relay: src paid for them already.
		p := pre
		if limited(out) {
			p = pre[:min(len(pre), chunk)]
			if !sleepUntil(outUntil, run.stopped) {
				return total, errRelayStopped
			}
		}
		n, err := dstConn.Write(p)
		dst.nwritten.Add(int64(n))
		total += int64(n)
		if err != nil {
			return total, relayErr(run, err)
		}
		outUntil = later(outUntil, charge(out, time.Now(), n))
		pre = pre[n:]
	}
	for !srcEOF {
		if lim && !sleepUntil(later(inUntil, outUntil), run.stopped) {
			return total, errRelayStopped
		}
		n, eof, err := copyChunk(dstConn, srcConn, int64(chunk), lim)
		if n > 0 && lim {
			now := time.Now()
			inUntil = later(inUntil, charge(in, now, int(n)))
			outUntil = later(outUntil, charge(out, now, int(n)))
		}
		src.mu.Lock()
		src.nreceived.Add(n)
		src.highWater = max(src.highWater, src.nread.Add(n))
		src.delivered = src.nread.Load()
		src.mu.Unlock()
		dst.nwritten.Add(n)
		total += n
		if err != nil {
			return total, relayErr(run, err)
		}
		srcEOF = eof
	}
	src.mu.Lock()
	src.eof = true
	src.signalLocked()
	src.mu.Unlock()
	dst.mu.Lock()
	defer dst.mu.Unlock()
	if dst.eofWanted || dst.lost {
		return total, nil
	}
	dst.eofWanted, dst.eofSent = true, true
	if hc, ok := dstConn.(halfCloser); ok {
		if err := hc.CloseWrite(); err != nil {
			return total, relayErr(run, err)
		}
	}
	return total, nil
}

// relayErr is a direction's error: errRelayStopped when stop caused it,
// and then the other direction is stopped too.
func relayErr(run *relayRun, err error) error {
	if run.isStopped() {
		return errRelayStopped
	}
	run.stop()
	return err
}

// takeAllLocked consumes and returns every buffered byte (and bytes the
// read goroutine took while stopping), acknowledged at once: a relay keeps
// nothing for replay.
func (t *transport) takeAllLocked() []byte {
	var out []byte
	if n := t.buffered(); n > 0 {
		out = append(out, t.consumeLocked(n)...)
		t.ackLocked(t.nread.Load())
	}
	if len(t.tlsPre) > 0 {
		out = append(out, t.tlsPre...)
		n := int64(len(t.tlsPre))
		t.nreceived.Add(n)
		t.nread.Add(n)
		t.highWater = max(t.highWater, t.nread.Load())
		t.tlsPre = nil
		t.settleLocked()
	}
	return out
}

// copyChunk moves up to size bytes from src to dst, by splice where the
// kernel can, and reports whether src reached EOF. A limited copy (a
// bandwidth limit applies) moves at most size bytes even where the kernel
// would splice more.
func copyChunk(dst, src net.Conn, size int64, limited bool) (int64, bool, error) {
	if st, ok := src.(*net.TCPConn); ok && !limited {
		if du, ok := dst.(*net.UnixConn); ok {
			// TCP to Unix splices only through TCPConn.WriteTo, which has
			// no limit: one call moves everything to EOF.
			n, err := st.WriteTo(du)
			return n, err == nil, err
		}
	}
	lr := &io.LimitedReader{R: src, N: size}
	var (
		n   int64
		err error
	)
	if dt, ok := dst.(*net.TCPConn); ok {
		n, err = dt.ReadFrom(lr) // splice from TCP or Unix
	} else {
		buf := relayBufPool.Get().(*[]byte)
		n, err = io.CopyBuffer(dst, lr, *buf)
		relayBufPool.Put(buf)
	}
	return n, err == nil && n < size, err
}

// relayBufPool holds the buffers of relays that cannot splice.
var relayBufPool = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}
