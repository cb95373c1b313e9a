package streamcore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// Defaults, as in asyncio.
const (
	// DefaultLimit is the reader's default buffer limit (asyncio's 64 KiB).
	DefaultLimit = 64 << 10
	// DefaultWriteHigh is the writer's default high-water mark.
	DefaultWriteHigh = 64 << 10
	// DefaultTLSWriteHigh is the default high-water mark of TLS streams.
	DefaultTLSWriteHigh = 512 << 10
	// DefaultMaxWriteBufferFactor times the high-water mark is the default
	// cap on unsent bytes.
	DefaultMaxWriteBufferFactor = 16
	// readSize is the most bytes one socket read asks for (asyncio: 256 KiB).
	readSize = 256 << 10
	// tlsReadSize is the read buffer of a TLS stream: one record's plaintext.
	tlsReadSize = 16 << 10
	// writeChunk is the most bytes handed to one socket write, so that the
	// buffer size and drain waiters update as the peer takes data.
	writeChunk = 64 << 10
)

// Options configures a stream. The zero value gives asyncio's defaults.
type Options struct {
	// Limit is the reader's buffer limit: readuntil and readline fail past
	// it, and reading from the socket pauses above 2*Limit. 0 means
	// DefaultLimit; negative is invalid.
	Limit int
	// WriteHigh and WriteLow are the drain water marks. Zero values follow
	// asyncio: high 64 KiB (512 KiB for TLS), low = high/4; only low given:
	// high = 4*low.
	WriteHigh, WriteLow int
	// MaxWriteBuffer caps the unsent bytes; a write that would go past it
	// fails with *WriteBufferFullError and accepts nothing, unless nothing
	// is unsent: a write into an empty buffer is taken whatever its size
	// (within the memory budget), so any single write succeeds once the
	// buffer has drained. 0 means DefaultMaxWriteBufferFactor * high;
	// negative means no cap.
	MaxWriteBuffer int
	// Replay keeps the bytes of each read until a later read acknowledges
	// them, so that a caller whose result was lost on the way can read them
	// again (Reader.Run). The kept bytes are at most one read's result,
	// which callers must not modify; they count against Budget, not
	// against the 2*Limit above which reading pauses.
	Replay bool
	// Budget, when set, is the memory budget this stream shares with
	// others (see Budget); it may be a child of another (Budget.Child).
	Budget *Budget
	// InRate and OutRate, when set, limit the bytes per second the stream
	// receives from and sends to its socket (nil: unlimited). One limiter
	// may be shared by many streams, which then share its rate. Limits
	// slow a stream down and never fail it.
	//
	// After each socket read of n bytes the stream takes n tokens from
	// InRate (ReserveN: into debt if the bucket has fewer) and its read
	// goroutine waits for the reservation's delay before the next socket
	// read; each read asks for at most InRate.Burst() bytes. The write
	// goroutine does the same with OutRate around each socket write, of
	// at most OutRate.Burst() bytes, and Write never sends inline past
	// the limit: Write keeps accepting up to MaxWriteBuffer while Drain
	// waits, as with a slow peer. Readers waiting for data and Drain wait
	// with their own contexts, as for any slow peer.
	//
	// The waits hold no goroutine (a timer wakes the stream's goroutine).
	// A read wait ends at once whenever reading stops: Close, Abort, the
	// connection's loss, StartTLS and Relay taking the socket over (what
	// was owed is still owed when reading resumes). A write wait ends at
	// once on Abort and the connection's loss; Close, StartTLS and Relay
	// flush the buffer first, at OutRate. While the read goroutine waits it
	// does not read the socket, so a peer's EOF or reset behind the bytes
	// already read is seen when the wait is over. A Relay of the stream
	// keeps to both limits. A limit of rate.Inf costs nothing; a limiter
	// whose burst is 0 is paid at its rate without the bucket.
	InRate, OutRate *rate.Limiter
}

func (o *Options) limit() (int, error) {
	if o == nil || o.Limit == 0 {
		return DefaultLimit, nil
	}
	if o.Limit < 0 {
		return 0, &ValueError{Msg: "Limit cannot be <= 0"}
	}
	return o.Limit, nil
}

// transport is the connection shared by one Reader and one Writer. Its
// fields are grouped so that the flags pack together: an idle stream is
// mostly this struct (see the package comment).
type transport struct {
	mu        sync.Mutex
	conn      net.Conn
	tlsConn   *tls.Conn
	tlsConfig *tls.Config
	peer      net.Addr

	// reader state
	buf       readBuf
	err       error         // stored exception, sticky
	wake      chan struct{} // closed when the reader's state changes while waiting
	readCond  *sync.Cond    // made when first waited on (condLocked)
	limit     int
	readerEnd chan struct{}   // closed when reading stops (readerRun goes false)
	waitCtx   context.Context // the waiting read's context
	waitLeft  chan struct{}   // closed when the waiting read leaves
	// poller (plain sockets): pollID names t's events (see armed);
	// hotUntil (unix nanoseconds) is when the stream turns idle, hotFor
	// after its socket last had data (see readLoop).
	pollID   uint64
	hotUntil int64

	// replay: bytes consumed since the last acknowledged offset are kept
	// (kept, keptLen) so that a caller that lost them can read them again;
	// delivered is the offset up to which results reached their callers.
	kept      [][]byte
	keptLen   int
	delivered int64
	highWater int64 // the most bytes ever consumed: a replay moves back from it

	// budget: the shared memory budget (Options.Budget), what this stream
	// has charged to it, and whether a budget (this one or an ancestor:
	// pausedOn) stopped its reading (bpaused); bgen counts those pauses.
	budget    *Budget
	charged   int64
	pausedOn  *Budget
	bgen      uint64
	refusedBy *Budget // the budget that had no room for the last reserve (read goroutine only)
	tlsPre    []byte  // bytes read while pausing: the peer's first TLS bytes

	// writer state
	wbuf       []byte
	writeCond  *sync.Cond // made when first waited on (condLocked)
	high, low  int
	maxWrite   int
	drainCh    chan struct{} // closed when writing resumes
	lostErr    error
	lostCh     chan struct{} // closed on the loss; made when first asked for (lostChLocked)
	afterLost  []*func()     // Writer.AfterLost callbacks not yet called
	writerEnd  chan struct{} // closed when writing stops (writerRun goes false)
	nread      atomic.Int64  // bytes consumed by reads
	nwritten   atomic.Int64  // bytes accepted by writes
	nreceived  atomic.Int64  // bytes received from the socket into the buffer
	rawSyscall syscall.RawConn

	relay *relayRun // the Relay that owns the socket, if any
	rl    *rates    // the bandwidth limits, nil without any

	readWaits atomic.Bool // waiting, for reserve

	server bool // accepted by a server (start_tls is server side)

	// reader flags
	eof       bool
	waiting   bool
	paused    bool
	stopRead  bool // close()/abort(): bytes arriving from now on are dropped
	readerRun bool // reading is on: a read goroutine runs, or the poller holds the socket (armed)
	// armed is set while the socket waits in the poller for readability,
	// with no read goroutine; pollAdded says its descriptor is in the
	// epoll set.
	armed     bool
	pollAdded bool
	// waitRead is set while the read goroutine waits in the runtime's
	// netpoller with a read deadline of its own (coolDL; dlPast once it
	// has passed), at which it checks whether the stream turned idle.
	waitRead bool
	coolDL   bool
	dlPast   bool
	pausing  bool // start_tls is stopping the read goroutine
	// superseded tells the waiting read that a read with an offset took
	// its place (see Reader.Run).
	superseded bool
	replay     bool
	bpaused    bool

	// writer flags
	writerBusy  bool // the write goroutine has a chunk in flight
	userHigh    bool // water marks were set by the user
	wpaused     bool
	eofWanted   bool
	eofSent     bool
	closing     bool
	aborted     bool // Abort: no close_notify, the socket closes at once
	lost        bool
	writerRun   bool // writing is on (not stopped by StartTLS, a Relay or the loss)
	writerGo    bool // the write goroutine runs: only while there is work for it
	canHalfShut bool
}

// rates holds a stream's bandwidth limits (Options.InRate, OutRate): no
// socket read before inUntil, no socket write before outUntil (the bytes
// already taken are paid for then); the timers wake the waiting goroutine.
// Only a limited stream has one.
type rates struct {
	in, out           *rate.Limiter
	inUntil, outUntil time.Time
	inTimer, outTimer *time.Timer
}

// inRate and outRate are t's limiters (nil: unlimited).
func (t *transport) inRate() *rate.Limiter {
	if t.rl == nil {
		return nil
	}
	return t.rl.in
}

func (t *transport) outRate() *rate.Limiter {
	if t.rl == nil {
		return nil
	}
	return t.rl.out
}

// halfCloser is a connection that can send FIN while still reading.
type halfCloser interface {
	CloseWrite() error
}

func newTransport(conn net.Conn, opts *Options, server bool) (*transport, error) {
	limit, err := opts.limit()
	if err != nil {
		return nil, err
	}
	t := &transport{
		conn:   conn,
		server: server,
		peer:   unnamedUnix(conn.RemoteAddr()),
		limit:  limit,
	}
	t.setConnLocked(conn)
	high, low := 0, 0
	maxWrite := 0
	if opts != nil {
		high, low, maxWrite = opts.WriteHigh, opts.WriteLow, opts.MaxWriteBuffer
		t.userHigh = high != 0 || low != 0
	}
	if err := t.setWriteLimitsLocked(high, low); err != nil {
		return nil, err
	}
	t.maxWrite = maxWrite
	if opts != nil {
		t.replay, t.budget = opts.Replay, opts.Budget
		if opts.InRate != nil || opts.OutRate != nil {
			t.rl = &rates{in: opts.InRate, out: opts.OutRate}
		}
	}
	t.startLocked()
	return t, nil
}

// unnamedUnix maps Go's rendering of an unnamed Unix socket's address ("@",
// as if it were an empty abstract name) to asyncio's "".
func unnamedUnix(a net.Addr) net.Addr {
	if ua, ok := a.(*net.UnixAddr); ok && ua != nil && ua.Name == "@" {
		return &net.UnixAddr{Name: "", Net: ua.Net}
	}
	return a
}

// rawConn is the connection beneath TLS, or conn itself.
func (t *transport) rawConn() net.Conn {
	if t.tlsConn != nil {
		return t.tlsConn.NetConn()
	}
	return t.conn
}

// localAddr is the socket's own address.
func (t *transport) localAddr() net.Addr { return unnamedUnix(t.conn.LocalAddr()) }

// setConnLocked installs conn (plain or TLS) and derives what depends on it.
func (t *transport) setConnLocked(conn net.Conn) {
	t.conn = conn
	t.rawSyscall = nil
	t.canHalfShut = false
	if tc, ok := conn.(*tls.Conn); ok {
		t.tlsConn = tc
		return
	}
	t.tlsConn = nil
	_, t.canHalfShut = conn.(halfCloser)
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			t.rawSyscall = rc
		}
	}
}

// startLocked turns writing and reading on. The writer first: the read
// goroutine may lose the connection at once, which reads the writer's state
// (newTransport runs this before anyone else holds t).
func (t *transport) startLocked() {
	t.startWriterLocked()
	t.startReaderLocked()
}

// startReaderLocked turns reading on with a read goroutine; on a plain
// socket it hands the socket to the poller as soon as a read would block.
func (t *transport) startReaderLocked() {
	t.readerRun = true
	t.readerEnd = nil // made when someone waits for it
	go t.readLoop(t.conn, false)
}

// endReaderLocked records that reading has stopped.
func (t *transport) endReaderLocked() {
	if t.readerRun {
		t.readerRun = false
		if t.readerEnd != nil {
			close(t.readerEnd)
			t.readerEnd = nil
		}
	}
}

// readerEndLocked returns a channel closed once reading stops.
func (t *transport) readerEndLocked() chan struct{} {
	if !t.readerRun {
		return closedChan
	}
	if t.readerEnd == nil {
		t.readerEnd = make(chan struct{})
	}
	return t.readerEnd
}

// writerEndLocked returns a channel closed once writing stops.
func (t *transport) writerEndLocked() chan struct{} {
	if !t.writerRun {
		return closedChan
	}
	if t.writerEnd == nil {
		t.writerEnd = make(chan struct{})
	}
	return t.writerEnd
}

// lostChLocked returns a channel closed once the connection is lost, made
// when first asked for.
func (t *transport) lostChLocked() chan struct{} {
	if t.lostCh == nil {
		if t.lost {
			return closedChan
		}
		t.lostCh = make(chan struct{})
	}
	return t.lostCh
}

// condLocked returns *c, a condition variable on t.mu made when first
// waited on; broadcast and signal wake its waiters, if it has any.
func (t *transport) condLocked(c **sync.Cond) *sync.Cond {
	if *c == nil {
		*c = sync.NewCond(&t.mu)
	}
	return *c
}

func broadcast(c *sync.Cond) {
	if c != nil {
		c.Broadcast()
	}
}

func signal(c *sync.Cond) {
	if c != nil {
		c.Signal()
	}
}

// closedChan is a closed channel: what stopped has stopped.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// resumeDrainLocked ends drain's wait: writing resumes.
func (t *transport) resumeDrainLocked() {
	t.wpaused = false
	if t.drainCh != nil {
		close(t.drainCh)
		t.drainCh = nil
	}
}

// startWriterLocked turns writing on; a write goroutine starts only when
// there is something for it to do (wakeWriterLocked).
func (t *transport) startWriterLocked() {
	t.writerRun = true
	t.writerEnd = nil // made when someone waits for it
	t.wakeWriterLocked()
}

// endWriterLocked records that writing has stopped.
func (t *transport) endWriterLocked() {
	if t.writerRun {
		t.writerRun = false
		if t.writerEnd != nil {
			close(t.writerEnd)
			t.writerEnd = nil
		}
	}
}

// writerWorkLocked reports whether the write goroutine has something to do.
func (t *transport) writerWorkLocked() bool {
	return len(t.wbuf) > 0 || t.lost || (t.eofWanted && !t.eofSent) || t.closing || t.pausing
}

// wakeWriterLocked wakes the write goroutine, or starts one when writing is
// on and there is work for it.
func (t *transport) wakeWriterLocked() {
	broadcast(t.writeCond)
	if t.writerRun && !t.writerGo && t.writerWorkLocked() {
		t.writerGo = true
		go t.writeLoop(t.conn)
	}
}

// stopIdleLocked stops reading and writing where no goroutine runs (for
// StartTLS and Relay, which have set pausing): a socket armed in the
// poller leaves it, and an idle writer has nothing to flush.
func (t *transport) stopIdleLocked() {
	if t.disarmLocked() {
		t.endReaderLocked()
	}
	if !t.writerGo {
		t.endWriterLocked()
	}
}

// signalLocked wakes the waiting read, if any.
func (t *transport) signalLocked() {
	if t.waiting && t.wake != nil {
		close(t.wake)
		t.wake = nil // the next wait makes another
	}
}

// hotFor is how long a stream whose socket had data, or whose read waited,
// keeps its read goroutine waiting in the runtime's netpoller before its
// socket goes to the shared poller (when that is on): a busy stream pays
// no poller hop, an idle one holds no goroutine. A variable for tests.
var hotFor = time.Second

// hotLocked says whether the read goroutine waits for the socket in the
// runtime's netpoller: while a read waits (and is not woken yet) or the
// stream is hot (see hotFor). A hot stream has a read deadline, hotFor
// after it turned hot, at which the loop decides again (and sets the next
// one if still hot): it is set once a second, not per read, because
// setting a deadline can wake a thread sleeping in the runtime's poller.
// A stream no longer hot clears its deadline, and its socket goes to the
// poller when a read would block. Deadlines are set with the lock held,
// so that one set by StartTLS or a Relay to interrupt the read (after
// setting pausing) is never overwritten.
func (t *transport) hotLocked(conn net.Conn) bool {
	now := time.Now()
	if (t.waiting && t.wake != nil) || now.UnixNano() < t.hotUntil {
		if !t.coolDL || t.dlPast {
			_ = conn.SetReadDeadline(now.Add(hotFor))
			t.coolDL, t.dlPast = true, false
		}
		t.waitRead = true
		return true
	}
	if t.coolDL {
		_ = conn.SetReadDeadline(time.Time{})
		t.coolDL, t.dlPast = false, false
	}
	return false
}

// readLoop reads the socket while reading is on. On a plain socket with
// the poller on it exits when a read would block and the stream is idle
// (hotLocked), leaving the socket armed in the poller, which starts it
// again once the socket is readable; it keeps running while the stream is
// paused (backpressure, the memory budget) or waits for its bandwidth
// limit.
//
// woke says the poller started it: the socket is readable. A stream closed
// meanwhile still reads once (and drops what it reads), as a read
// goroutine waiting in the socket's read did before the close, so that
// bytes that arrived after Close do not turn the socket's close into a
// reset.
func (t *transport) readLoop(conn net.Conn, woke bool) {
	var rc syscall.RawConn
	if sc, ok := conn.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	poll := rc != nil && idlePoller.Load()
	for {
		t.mu.Lock()
		for !t.stopRead && !t.pausing {
			if t.paused || t.bpaused {
				t.condLocked(&t.readCond).Wait()
			} else if rl := t.rl; rl != nil && rl.in != nil && time.Now().Before(rl.inUntil) {
				// The bytes read so far are not paid for yet. Whatever
				// stops the reading broadcasts readCond, which ends this
				// wait too.
				t.sleepLocked(t.condLocked(&t.readCond), &rl.inTimer, rl.inUntil)
			} else {
				break
			}
		}
		if (t.stopRead && !woke) || t.pausing {
			t.endReaderLocked()
			t.mu.Unlock()
			return
		}
		woke = false
		nonblock := poll && !t.hotLocked(conn)
		t.mu.Unlock()
		n, reserved, chunk, err := readChunk(conn, rc, rateChunk(t.inRate(), readSize), t.reserve, nonblock)
		if err == errWouldBlock {
			t.mu.Lock()
			if t.stopRead || t.pausing {
				t.endReaderLocked()
				t.mu.Unlock()
				return
			}
			if t.waiting && t.wake != nil {
				// A read began to wait meanwhile: wait for it.
				t.mu.Unlock()
				continue
			}
			ctlErr, pollErr := t.armLocked(rc)
			t.mu.Unlock()
			switch {
			case ctlErr != nil:
				// The socket was closed under the stream: the next read
				// reports it.
			case pollErr != nil:
				poll = false // no poller: wait in the runtime's, as before
			default:
				return // armed: the poller starts a read goroutine again
			}
			continue
		}
		var until time.Time
		if n > 0 && t.inRate() != nil {
			until = charge(t.rl.in, time.Now(), n)
		}
		t.mu.Lock()
		t.waitRead = false
		if n > 0 && poll {
			t.hotUntil = time.Now().Add(hotFor).UnixNano()
		}
		if t.coolDL && !t.pausing && !t.stopRead && err != nil && isTimeout(err) {
			// The deadline of a hot stream: the loop's top decides where
			// to wait now.
			t.dlPast = true
			if t.budget != nil {
				t.budget.add(-reserved)
			}
			if chunk != nil {
				putChunk(chunk)
			}
			t.mu.Unlock()
			continue
		}
		if !until.IsZero() && until.After(t.rl.inUntil) {
			t.rl.inUntil = until
		}
		if err == errNoBudget {
			// A budget has no room: wait until that one has. Room that came
			// back meanwhile, or a read that began to wait meanwhile (it may
			// use the reserve), is seen by the kick: no wake-up is lost.
			by := t.refusedBy
			t.refusedBy = nil
			if by == nil {
				by = t.budget
			}
			if !t.stopRead && !t.pausing && !t.bpaused {
				t.bpaused = true
				t.pausedOn = by
				t.bgen++
				by.pause(t, t.bgen)
			}
			t.mu.Unlock()
			by.kick()
			continue
		}
		kept := false
		if n > 0 && !t.stopRead && t.pausing {
			// start_tls has taken over the socket: as in asyncio, bytes not
			// yet delivered when it was called belong to the TLS layer.
			t.tlsPre = append(t.tlsPre, (*chunk)[:n]...)
			kept = true
		} else if n > 0 && !t.stopRead {
			t.buf.push((*chunk)[:n])
			kept = true
			t.nreceived.Add(int64(n))
			t.signalLocked()
			if !t.paused && t.buf.len() > 2*t.limit {
				t.paused = true
			}
		}
		if t.budget != nil {
			// The reservation pays for the bytes kept; the rest goes back.
			if kept {
				t.charged += int64(n)
				t.budget.add(int64(n) - reserved)
			} else {
				t.budget.add(-reserved)
			}
		}
		if chunk != nil {
			putChunk(chunk)
		}
		if err != nil {
			t.endReaderLocked()
			switch {
			case t.stopRead:
			case t.pausing && isTimeout(err):
				// start_tls interrupted the read; nothing was lost.
			case errors.Is(err, io.EOF) && t.tlsConn == nil:
				// Peer FIN: half-open. The socket is not read again.
				t.eof = true
				t.signalLocked()
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				// A TLS peer's EOF closes the whole transport.
				t.connectionLostLocked(nil)
			default:
				t.connectionLostLocked(err)
			}
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
}

// chunkPool holds read buffers of readSize bytes, tlsChunkPool smaller
// ones for TLS streams; putChunk returns a buffer to its pool.
var (
	chunkPool    = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}
	tlsChunkPool = sync.Pool{New: func() any { b := make([]byte, tlsReadSize); return &b }}
)

func putChunk(b *[]byte) {
	if cap(*b) == tlsReadSize {
		tlsChunkPool.Put(b)
	} else {
		chunkPool.Put(b)
	}
}

// readChunk reads once (at most size bytes) from conn into a pooled buffer,
// which the caller returns with putChunk. For a socket (rc != nil) it waits
// for readability before taking a buffer, so an idle stream holds no read
// buffer at all.
//
// reserve says how many bytes the read may take (the memory budget's room;
// 0: none, and readChunk returns errNoBudget without reading); readChunk
// returns how many it reserved, which the caller settles.
//
// With poll, a socket read that would block returns errWouldBlock at once
// instead of waiting.
func readChunk(conn net.Conn, rc syscall.RawConn, size int, reserve func(int) int64, poll bool) (int, int64, *[]byte, error) {
	if rc == nil {
		pool := &chunkPool
		if _, ok := conn.(*tls.Conn); ok {
			// A TLS read returns at most one record (16 KiB of plaintext),
			// and an idle TLS stream holds its buffer while it waits.
			pool, size = &tlsChunkPool, min(size, tlsReadSize)
		}
		r := reserve(size)
		if r == 0 {
			return 0, 0, nil, errNoBudget
		}
		buf := pool.Get().(*[]byte)
		n, err := conn.Read((*buf)[:r])
		return n, r, buf, err
	}
	var (
		n    int
		r    int64
		serr error
		buf  *[]byte
	)
	err := rc.Read(func(fd uintptr) bool {
		if r = reserve(size); r == 0 {
			serr = errNoBudget
			return true
		}
		buf = chunkPool.Get().(*[]byte)
		for {
			n, serr = syscall.Read(int(fd), (*buf)[:r])
			if serr != syscall.EINTR {
				break
			}
		}
		if serr == syscall.EAGAIN {
			// Nothing there: wait for readability holding no buffer and
			// no reservation.
			reserve(-int(r))
			r = 0
			chunkPool.Put(buf)
			buf = nil
			if poll {
				serr = errWouldBlock
				return true
			}
			return false
		}
		return true
	})
	switch {
	case serr == errNoBudget:
		return 0, 0, nil, errNoBudget
	case serr == errWouldBlock && err == nil:
		return 0, 0, nil, errWouldBlock
	case err != nil:
		return 0, r, buf, err
	case serr != nil:
		return 0, r, buf, &net.OpError{Op: "read", Net: conn.LocalAddr().Network(), Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: os.NewSyscallError("read", serr)}
	case n <= 0:
		return 0, r, buf, io.EOF
	}
	return n, r, buf, nil
}

// errNoBudget is readChunk's answer when the memory budget has no room.
var errNoBudget = errors.New("no room in the memory budget")

// errWouldBlock is readChunk's answer when a poll read finds nothing.
var errWouldBlock = errors.New("the read would block")

// errNoPoller says the process has no poller.
var errNoPoller = errors.New("no poller")

// reserve is readChunk's reservation: n > 0 asks the budget for up to n
// bytes (all of them without a budget); n < 0 gives -n back.
func (t *transport) reserve(n int) int64 {
	if t.budget == nil {
		return int64(max(n, 0))
	}
	if n < 0 {
		t.budget.add(int64(n))
		return 0
	}
	// Not t.mu: this runs inside the socket's read, which a Close under
	// t.mu waits for.
	r, by := t.budget.reserve(int64(n), t.readWaits.Load())
	if r == 0 {
		t.refusedBy = by
	}
	return r
}

// budgetResumeLocked ends a pause by a memory budget, whose queue forgets
// the stream.
func (t *transport) budgetResumeLocked() {
	if t.bpaused {
		t.bpaused = false
		t.pausedOn.unpause(t)
		t.pausedOn = nil
	}
}

// sleepLocked waits on c, whose lock is t.mu (held), until until or until c
// is signalled, whichever comes first; the caller checks its conditions
// again. *timer is the wait's timer, made on first use and stopped after
// each wait, so that a stream holds no goroutine while it waits.
func (t *transport) sleepLocked(c *sync.Cond, timer **time.Timer, until time.Time) {
	d := time.Until(until)
	if d <= 0 {
		return
	}
	if *timer == nil {
		*timer = time.AfterFunc(d, func() {
			t.mu.Lock()
			c.Broadcast()
			t.mu.Unlock()
		})
	} else {
		(*timer).Reset(d)
	}
	c.Wait()
	(*timer).Stop()
}

// settleLocked brings the stream's charge to the memory budget in line with
// the bytes it holds.
func (t *transport) settleLocked() {
	if t.budget == nil {
		return
	}
	held := int64(t.buf.len() + t.keptLen + len(t.wbuf) + len(t.tlsPre))
	if d := held - t.charged; d != 0 {
		t.charged = held
		t.budget.add(d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeLoop sends the write buffer while there is work for it (see
// writerWorkLocked), then exits: an idle stream has no write goroutine.
func (t *transport) writeLoop(conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() { t.writerGo = false }()
	for {
		if !t.writerWorkLocked() {
			return
		}
		if t.lost {
			t.endWriterLocked()
			return
		}
		if len(t.wbuf) > 0 {
			if rl := t.rl; rl != nil && rl.out != nil && time.Now().Before(rl.outUntil) {
				// The bytes sent so far are not paid for yet; Abort and
				// the connection's loss broadcast writeCond.
				t.sleepLocked(t.condLocked(&t.writeCond), &rl.outTimer, rl.outUntil)
				continue
			}
			n := min(len(t.wbuf), writeChunk, rateChunk(t.outRate(), writeChunk))
			chunk := t.wbuf[:n]
			t.writerBusy = true
			t.mu.Unlock()
			sent, err := conn.Write(chunk)
			var until time.Time
			if sent > 0 && t.outRate() != nil {
				until = charge(t.rl.out, time.Now(), sent)
			}
			t.mu.Lock()
			t.writerBusy = false
			if !until.IsZero() && until.After(t.rl.outUntil) {
				t.rl.outUntil = until
			}
			if t.lost {
				// Lost (Abort, a read error, a peer EOF on TLS) while the
				// chunk was in flight: the buffer is already discarded.
				t.endWriterLocked()
				return
			}
			if err != nil {
				t.connectionLostLocked(err)
				t.endWriterLocked()
				return
			}
			t.consumeWriteLocked(n)
			continue
		}
		if t.pausing {
			t.endWriterLocked()
			broadcast(t.writeCond)
			return
		}
		if t.eofWanted && !t.eofSent {
			t.eofSent = true
			if hc, ok := conn.(halfCloser); ok {
				if err := hc.CloseWrite(); err != nil {
					t.connectionLostLocked(err)
					t.endWriterLocked()
					return
				}
			}
			continue
		}
		if t.closing {
			// Flushed: close the socket; the connection is lost cleanly.
			t.connectionLostLocked(nil)
			t.endWriterLocked()
			return
		}
	}
}

// consumeWriteLocked removes n sent bytes from the front of the write buffer.
func (t *transport) consumeWriteLocked(n int) {
	t.wbuf = t.wbuf[n:]
	if len(t.wbuf) == 0 {
		t.wbuf = nil
	}
	t.settleLocked()
	if t.wpaused && len(t.wbuf) <= t.resumeAtLocked() {
		t.resumeDrainLocked()
	}
}

// connectionLostLocked ends the connection: err nil is a clean loss (EOF for
// the reader), otherwise err is stored and every later read returns it.
func (t *transport) connectionLostLocked(err error) {
	if t.lost {
		return
	}
	t.lost = true
	t.lostErr = err
	t.closing = true
	t.stopRead = true
	if err != nil {
		if t.err == nil {
			t.err = err
		}
	} else {
		t.eof = true
	}
	t.wbuf = nil
	t.settleLocked()
	t.budgetResumeLocked()
	if t.wpaused {
		t.resumeDrainLocked()
	}
	t.signalLocked()
	broadcast(t.readCond)
	broadcast(t.writeCond)
	// Out of the poller before the socket closes; reading and writing that
	// hold no goroutine stop here.
	if t.disarmLocked() {
		t.endReaderLocked()
	}
	if !t.writerGo {
		t.endWriterLocked()
	}
	if t.lostCh != nil {
		close(t.lostCh)
	}
	for _, f := range t.afterLost {
		go (*f)()
	}
	t.afterLost = nil
	raw, tlsConn := t.rawConn(), t.tlsConn
	if tlsConn != nil && err == nil && !t.writerBusy && !t.aborted {
		// Send close_notify without holding the lock; it may wait briefly.
		go func() {
			_ = tlsConn.SetWriteDeadline(time.Now().Add(time.Second))
			_ = tlsConn.Close()
			_ = raw.Close()
		}()
	} else {
		// Closing the socket beneath TLS, not the tls.Conn: its Close would
		// send close_notify and could wait on a peer that does not read.
		_ = raw.Close()
	}
}

// setWriteLimitsLocked applies asyncio's set_write_buffer_limits rules.
func (t *transport) setWriteLimitsLocked(high, low int) error {
	if high == 0 && low == 0 && !t.userHigh {
		high = DefaultWriteHigh
		if t.tlsConn != nil {
			high = DefaultTLSWriteHigh
		}
		low = high / 4
	} else if high == 0 && low != 0 {
		high = 4 * low
	} else if low == 0 && high != 0 {
		low = high / 4
	}
	if high < low || low < 0 {
		return &ValueError{Msg: fmt.Sprintf("high (%d) must be >= low (%d) must be >= 0", high, low)}
	}
	t.high, t.low = high, low
	return nil
}

// pauseAboveLocked is the buffer size above which Drain waits: the
// high-water mark, but never more than half the cap on unsent bytes, so
// that a Drain which returns leaves room for a write (with a cap below the
// high-water mark, Drain would otherwise return while writes are refused).
func (t *transport) pauseAboveLocked() int {
	if t.maxWrite > 0 && t.high > t.maxWrite/2 {
		return t.maxWrite / 2
	}
	return t.high
}

// resumeAtLocked is the buffer size at or below which Drain returns: the
// low-water mark, clamped as pauseAboveLocked clamps the high one.
func (t *transport) resumeAtLocked() int {
	if h := t.pauseAboveLocked(); h < t.high {
		return min(t.low, h/4)
	}
	return t.low
}

func (t *transport) maxWriteLocked() int {
	switch {
	case t.maxWrite < 0:
		return int(^uint(0) >> 1)
	case t.maxWrite == 0:
		return DefaultMaxWriteBufferFactor * max(t.high, DefaultWriteHigh)
	}
	return t.maxWrite
}

// writeLocked buffers data (or sends it at once when nothing is queued and
// no bandwidth limit applies: a limited stream sends from its write
// goroutine only, which keeps to the limit).
func (t *transport) writeLocked(data []byte) {
	t.nwritten.Add(int64(len(data)))
	if len(t.wbuf) == 0 && !t.writerBusy && t.writerRun && t.rawSyscall != nil && !limited(t.outRate()) {
		n, err := t.trySendLocked(data)
		if err != nil {
			t.connectionLostLocked(err)
			return
		}
		data = data[n:]
		if len(data) == 0 {
			// The socket took it all: give back the charge the write took
			// in advance.
			t.settleLocked()
			return
		}
	}
	t.wbuf = append(t.wbuf, data...)
	t.settleLocked()
	if !t.wpaused && len(t.wbuf) > t.pauseAboveLocked() {
		t.wpaused = true
	}
	t.wakeWriterLocked()
}

// trySendLocked makes one non-blocking send, as asyncio does when its write
// buffer is empty. It returns how many bytes the kernel took.
func (t *transport) trySendLocked(data []byte) (int, error) {
	var n int
	var serr error
	err := t.rawSyscall.Write(func(fd uintptr) bool {
		for {
			n, serr = syscall.Write(int(fd), data)
			if serr == syscall.EINTR {
				continue
			}
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if serr == syscall.EAGAIN {
		return 0, nil
	}
	if serr != nil {
		local := t.localAddr()
		return 0, &net.OpError{Op: "write", Net: local.Network(), Source: local, Addr: t.peer, Err: os.NewSyscallError("write", serr)}
	}
	if n < 0 {
		n = 0
	}
	return n, nil
}

// maybeResumeLocked resumes a paused reader if the buffer is at or below
// limit. (Bytes kept for replay do not count here, as in asyncio only the
// buffer does; they count against the memory budget.)
func (t *transport) maybeResumeLocked() {
	if t.paused && t.buf.len() <= t.limit {
		t.paused = false
		signal(t.readCond)
	}
}

// consumeLocked removes and returns the first n buffered bytes (keeping
// them for replay when the reader replays).
func (t *transport) consumeLocked(n int) []byte {
	data := t.buf.take(n)
	if t.replay && n > 0 {
		t.kept = append(t.kept, data)
		t.keptLen += n
	}
	t.consumedLocked(n)
	return data
}

// dropLocked is consumeLocked for bytes that no result holds.
func (t *transport) dropLocked(n int) {
	var keep func([]byte)
	if t.replay {
		keep = func(p []byte) {
			t.kept = append(t.kept, p)
			t.keptLen += len(p)
		}
	}
	t.buf.drop(n, keep)
	t.consumedLocked(n)
}

// consumedLocked accounts for n bytes that left the buffer.
func (t *transport) consumedLocked(n int) {
	t.highWater = max(t.highWater, t.nread.Add(int64(n)))
	t.settleLocked()
	t.maybeResumeLocked()
}

// prependLocked puts segs back in front of the buffer, in order; the buffer
// takes them over.
func (t *transport) prependLocked(segs ...[]byte) {
	t.buf.pushFront(segs...)
	t.settleLocked()
}

// prefixConn replays bytes that the read goroutine took from the socket
// before a TLS handshake took it over.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
