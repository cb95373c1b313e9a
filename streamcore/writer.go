package streamcore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Writer is asyncio's StreamWriter over a connection. Its methods are safe
// for concurrent use.
type Writer struct {
	t *transport
	r *Reader
}

// Reader returns the reader that shares this writer's connection.
func (w *Writer) Reader() *Reader { return w.r }

// writableLocked reports why a write cannot be accepted, or nil.
func (w *Writer) writableLocked() error {
	t := w.t
	if t.eofWanted {
		return ErrWriteAfterEOF
	}
	if t.lost && t.lostErr != nil {
		return t.lostErr
	}
	if t.closing {
		return ErrClosed
	}
	return nil
}

// Write is asyncio's write(data): it never blocks. When nothing is queued the
// bytes go to the socket at once; what the kernel does not take is buffered
// and sent in the background. Write fails after WriteEOF
// (ErrWriteAfterEOF), after Close or Abort (ErrClosed), after the connection
// was lost with an error (that error), and when the unsent bytes would exceed
// Options.MaxWriteBuffer (*WriteBufferFullError); a failed write accepts
// nothing.
func (w *Writer) Write(data []byte) error {
	return w.WriteLines(data)
}

// WriteLines is asyncio's writelines(lines): the chunks written in order,
// all or nothing.
func (w *Writer) WriteLines(lines ...[]byte) error {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.writeLinesLocked(lines)
}

func totalLen(lines [][]byte) int {
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	return size
}

func (w *Writer) writeLinesLocked(lines [][]byte) error {
	t := w.t
	if err := w.writableLocked(); err != nil {
		return err
	}
	size := totalLen(lines)
	if size == 0 {
		return nil
	}
	// A write into an empty buffer is taken whatever its size (the memory
	// budget still applies), so that any single write can succeed once
	// the buffer has drained.
	if limit := t.maxWriteLocked(); len(t.wbuf) > 0 && len(t.wbuf)+size > limit {
		return &WriteBufferFullError{Buffered: len(t.wbuf), Size: size, Cap: limit}
	}
	if b := t.budget; b != nil {
		// Charged in advance, so that writes on other streams cannot take
		// the same room; what the socket takes at once is given back. Up to
		// the soft mark, so the rest stays for reads that wait; a small
		// write into an empty buffer (which the socket most likely takes
		// at once) may use that rest too.
		small := len(t.wbuf) == 0 && size <= smallWrite
		if by := b.take(int64(size), small); by != nil {
			// The numbers of the budget that refused: the stream's own,
			// or an ancestor's (Budget.Child).
			return &BudgetError{Size: size, Used: by.Used(), Max: by.max}
		}
		t.charged += int64(size)
	}
	if len(lines) == 1 {
		t.writeLocked(lines[0])
		return nil
	}
	joined := make([]byte, 0, size)
	for _, l := range lines {
		joined = append(joined, l...)
	}
	t.writeLocked(joined)
	return nil
}

// Drain is asyncio's drain(): it returns at once unless the write buffer is
// above the high-water mark, and then waits until it is at or below the
// low-water mark. It returns the reader's stored error if there is one,
// ErrConnectionLost once the connection is gone, and the connection's error
// if it is lost with one while waiting (nil for a clean loss).
func (w *Writer) Drain(ctx context.Context) error {
	t := w.t
	t.mu.Lock()
	if t.err != nil {
		defer t.mu.Unlock()
		return t.err
	}
	if t.lost {
		t.mu.Unlock()
		return ErrConnectionLost
	}
	if !t.wpaused {
		t.mu.Unlock()
		return nil
	}
	if t.drainCh == nil {
		t.drainCh = make(chan struct{})
	}
	drained, lost := t.drainCh, t.lostChLocked()
	t.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-lost:
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.lostErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CanWriteEOF is asyncio's can_write_eof(): true for TCP and Unix streams,
// false for TLS.
func (w *Writer) CanWriteEOF() bool {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.canHalfShut
}

// WriteEOF is asyncio's write_eof(): once the buffered bytes are sent it
// half-closes the connection (FIN). Reading still works. A second call, or a
// call after Close, does nothing; on TLS it returns ErrCannotWriteEOF.
func (w *Writer) WriteEOF() error {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.canHalfShut {
		return ErrCannotWriteEOF
	}
	if t.closing || t.eofWanted {
		return nil
	}
	t.eofWanted = true
	t.wakeWriterLocked()
	return nil
}

// Close is asyncio's close(): it stops reading at once (bytes arriving later
// are never delivered), sends what is buffered, then closes the socket. The
// connection is then lost cleanly: the reader sees EOF after its buffered
// bytes and WaitClosed returns nil. Close is idempotent.
func (w *Writer) Close() {
	t := w.t
	t.stopRelay()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return
	}
	t.closing = true
	t.stopRead = true
	broadcast(t.readCond)
	// With nothing left to send the connection is lost now, not when the
	// write goroutine next runs, so that a Drain right after Close reliably
	// reports ErrConnectionLost (asyncio's drain yields once for this).
	// During StartTLS the writer is parked on purpose: the upgrade starts a
	// new one, which flushes and then closes.
	if !t.pausing && (!t.writerRun || (len(t.wbuf) == 0 && !t.writerBusy)) {
		t.connectionLostLocked(nil)
		return
	}
	t.wakeWriterLocked()
}

// Abort is the transport's abort(): pending writes are discarded and the
// socket is closed at once. The connection is lost cleanly.
func (w *Writer) Abort() {
	t := w.t
	t.stopRelay()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wbuf = nil
	t.aborted = true
	t.connectionLostLocked(nil)
}

// IsClosing is asyncio's is_closing(): true after Close, Abort or the loss
// of the connection; false after a peer FIN or WriteEOF.
func (w *Writer) IsClosing() bool {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.closing
}

// WaitClosed is asyncio's wait_closed(): it waits until the connection is
// lost and returns the loss's error (nil for a clean loss). It does not close
// the stream itself.
func (w *Writer) WaitClosed(ctx context.Context) error {
	t := w.t
	t.mu.Lock()
	if !t.lost {
		// Not lost yet: wait. (Checked first so that an already-lost
		// stream reports its result even to an ended ctx.)
		lost := t.lostChLocked()
		t.mu.Unlock()
		select {
		case <-lost:
		case <-ctx.Done():
			return ctx.Err()
		}
		t.mu.Lock()
	}
	defer t.mu.Unlock()
	return t.lostErr
}

// Done returns a channel closed once the connection is lost.
func (w *Writer) Done() <-chan struct{} {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.lostChLocked()
}

// AfterLost arranges for f to run in its own goroutine once the connection
// is lost (at once if it already is), as context.AfterFunc does for a
// context. stop unregisters f; it reports whether it stopped f from being
// run. Nothing waits while the connection is alive.
func (w *Writer) AfterLost(f func()) (stop func() bool) {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost {
		go f()
		return func() bool { return false }
	}
	fp := &f
	t.afterLost = append(t.afterLost, fp)
	return func() bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		for i, g := range t.afterLost {
			if g == fp {
				t.afterLost = append(t.afterLost[:i], t.afterLost[i+1:]...)
				return true
			}
		}
		return false
	}
}

// BufferSize is the transport's get_write_buffer_size(): bytes accepted and
// not yet handed to the kernel.
func (w *Writer) BufferSize() int {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return len(w.t.wbuf)
}

// WriteBufferLimits is get_write_buffer_limits(): (low, high).
func (w *Writer) WriteBufferLimits() (low, high int) {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.low, w.t.high
}

// SetWriteBufferLimits is set_write_buffer_limits(high, low) with asyncio's
// rules: only high given, low = high/4; only low given, high = 4*low.
func (w *Writer) SetWriteBufferLimits(high, low int) error {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.userHigh = true
	if high == 0 && low == 0 {
		t.high, t.low = 0, 0
	} else if err := t.setWriteLimitsLocked(high, low); err != nil {
		return err
	}
	if !t.wpaused && len(t.wbuf) > t.pauseAboveLocked() {
		t.wpaused = true
	} else if t.wpaused && len(t.wbuf) <= t.resumeAtLocked() {
		t.resumeDrainLocked()
	}
	return nil
}

// Written returns the number of bytes writes have accepted so far.
func (w *Writer) Written() int64 { return w.t.nwritten.Load() }

// CipherInfo is the value of the "cipher" extra info, as Python's
// SSLSocket.cipher() tuple.
type CipherInfo struct {
	Name     string
	Protocol string
	Bits     int
}

// ExtraInfo is asyncio's get_extra_info(name). It returns nil for unknown
// names and for names that do not apply (TLS names on a plain stream):
//
//   - "peername", "sockname": net.Addr, cached when the stream opened
//   - "socket": the underlying net.Conn
//   - "sslcontext": *tls.Config
//   - "ssl_object": tls.ConnectionState
//   - "peercert": *x509.Certificate, the verified peer certificate
//   - "peercert_chain": []*x509.Certificate, as presented
//   - "cipher": CipherInfo
//   - "compression": always nil
func (w *Writer) ExtraInfo(name string) any {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	switch name {
	case "peername":
		return t.peer
	case "sockname":
		return t.localAddr()
	case "socket":
		return t.rawConn()
	}
	if t.tlsConn == nil {
		return nil
	}
	st := t.tlsConn.ConnectionState()
	switch name {
	case "sslcontext":
		return t.tlsConfig
	case "ssl_object":
		return st
	case "peercert":
		if len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
			return st.VerifiedChains[0][0]
		}
		return nil
	case "peercert_chain":
		return st.PeerCertificates
	case "cipher":
		return CipherInfo{Name: tls.CipherSuiteName(st.CipherSuite), Protocol: tlsVersionName(st.Version), Bits: cipherBits(st.CipherSuite)}
	}
	return nil
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

func cipherBits(id uint16) int {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA:
		return 128
	}
	return 256
}

// IsTLS reports whether the stream is encrypted.
func (w *Writer) IsTLS() bool {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.tlsConn != nil
}

// IsServerSide reports whether the stream was accepted by a server.
func (w *Writer) IsServerSide() bool { return w.t.server }

// StartTLS is asyncio's start_tls(): it upgrades the open stream to TLS in
// place — as a server if the stream was accepted by a Server, otherwise as a
// client. Pending writes are flushed first; bytes already in the reader's
// buffer stay there as plaintext, except on the server side a buffered
// ClientHello (the client may start TLS as soon as it has our last plaintext
// reply, before this call) goes to the handshake. handshakeTimeout 0 means
// 60 s. If the handshake fails the connection is lost with that error. If
// ctx ends before the handshake starts, the stream is left as it was.
func (w *Writer) StartTLS(ctx context.Context, config *tls.Config, handshakeTimeout time.Duration) error {
	if config == nil {
		return &ValueError{Msg: "start_tls needs a TLS configuration"}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := w.t
	t.mu.Lock()
	for t.waiting && t.waitCtx.Err() != nil {
		// A read whose caller gave up is leaving: let it go first.
		if err := t.waitForWaiterLocked(ctx); err != nil {
			t.mu.Unlock()
			return err
		}
	}
	if t.closing {
		t.mu.Unlock()
		return ErrClosed
	}
	if t.pausing {
		t.mu.Unlock()
		return &ValueError{Msg: "start_tls is already in progress"}
	}
	if t.eofWanted {
		t.mu.Unlock()
		return ErrWriteAfterEOF
	}
	if t.waiting {
		t.mu.Unlock()
		return &ConcurrentReadError{Op: "start_tls"}
	}
	// Stop both goroutines: the writer once it has flushed, the reader by
	// interrupting its read.
	t.pausing = true
	conn := t.conn
	broadcast(t.readCond)
	broadcast(t.writeCond)
	t.stopIdleLocked()
	readerEnd, writerEnd := t.readerEndLocked(), t.writerEndLocked()
	t.mu.Unlock()
	_ = conn.SetReadDeadline(time.Unix(1, 0))

	resume := func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.pausing = false
		_ = conn.SetReadDeadline(time.Time{})
		if len(t.tlsPre) > 0 {
			// No TLS after all: what was read meanwhile is plain data.
			t.buf.push(t.tlsPre)
			t.nreceived.Add(int64(len(t.tlsPre)))
			t.tlsPre = nil
			t.signalLocked()
		}
		t.settleLocked()
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
	// The reader stops at once (its read deadline has passed); the writer
	// once it has flushed, which may take as long as the peer wants.
	<-readerEnd
	select {
	case <-writerEnd:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		resume()
		return ctx.Err()
	}
	t.mu.Lock()
	if t.lost {
		t.pausing = false
		err := t.lostErr
		t.mu.Unlock()
		if err == nil {
			err = ErrConnectionLost
		}
		return err
	}
	pre := t.tlsPre
	t.tlsPre = nil
	if t.server {
		if buffered := t.buf.bytes(); startsTLSHandshake(buffered) {
			// The client's ClientHello arrived, and was buffered, between
			// the handler's last plaintext write and this call (asyncio has
			// no such window: its reader is paused before the loop runs
			// again). It belongs to the handshake, not to the plaintext
			// stream.
			pre = append(buffered, pre...)
			t.buf.reset()
			t.paused = false
		}
	}
	t.settleLocked()
	t.mu.Unlock()
	_ = conn.SetReadDeadline(time.Time{})
	hconn := conn
	if len(pre) > 0 {
		hconn = &prefixConn{Conn: conn, pre: pre}
	}

	if handshakeTimeout <= 0 {
		handshakeTimeout = DefaultHandshakeTimeout
	}
	var tc *tls.Conn
	if t.server {
		tc = tls.Server(hconn, config)
	} else {
		tc = tls.Client(hconn, config)
	}
	if err := handshake(ctx, tc, handshakeTimeout); err != nil {
		// The socket is mid-handshake and cannot go back to plaintext. The
		// stream keeps an error of its own: the caller's cancel or deadline
		// must not become every later read's answer.
		lost := err
		if ctx.Err() != nil {
			local := t.localAddr()
			lost = &net.OpError{Op: "start_tls", Net: local.Network(), Source: local, Addr: t.peer,
				Err: fmt.Errorf("handshake interrupted (%v): %w", err, syscall.ECONNABORTED)}
		}
		t.mu.Lock()
		t.pausing = false
		t.connectionLostLocked(lost)
		t.mu.Unlock()
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pausing = false
	if t.lost {
		return ErrConnectionLost
	}
	t.setConnLocked(tc)
	t.tlsConfig = config
	if !t.userHigh {
		_ = t.setWriteLimitsLocked(0, 0)
	}
	if !t.eof && !t.stopRead {
		t.startReaderLocked()
	}
	t.startWriterLocked()
	return nil
}

// startsTLSHandshake reports whether b begins like a TLS handshake record
// (content type 22, version 3.x), as far as it goes.
func startsTLSHandshake(b []byte) bool {
	return len(b) > 0 && b[0] == 0x16 &&
		(len(b) < 2 || b[1] == 0x03) &&
		(len(b) < 3 || b[2] <= 0x04)
}

// DefaultHandshakeTimeout is asyncio's TLS handshake timeout.
const DefaultHandshakeTimeout = 60 * time.Second

// handshake runs the TLS handshake with a timeout, reporting the timeout as
// a *HandshakeTimeoutError.
func handshake(ctx context.Context, tc *tls.Conn, timeout time.Duration) error {
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && hctx.Err() != nil {
		return &HandshakeTimeoutError{After: timeout}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &HandshakeTimeoutError{After: timeout}
	}
	return err
}
