package streamcore

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// memPipe is one direction of a memConn pair. It keeps the chunks as they
// were written, so a reader sees exactly the chunking the writer chose: one
// Read returns at most one chunk. That makes the transport's view of the
// data deterministic, which socket tests cannot promise.
type memPipe struct {
	mu       sync.Mutex
	chunks   [][]byte
	fin      bool  // the writer half-closed (or closed): EOF after the chunks
	rst      error // the writer reset the connection: Read fails at once
	rclosed  bool  // the reading end was closed locally
	deadline time.Time
	changed  chan struct{} // closed and replaced on every state change
	taken    int           // bytes handed to readers so far
}

func newMemPipe() *memPipe { return &memPipe{changed: make(chan struct{})} }

func (p *memPipe) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *memPipe) read(b []byte) (int, error) {
	for {
		p.mu.Lock()
		switch {
		case p.rclosed:
			p.mu.Unlock()
			return 0, net.ErrClosed
		case p.rst != nil:
			err := p.rst
			p.mu.Unlock()
			return 0, err
		case len(p.chunks) > 0 && len(b) > 0:
			n := copy(b, p.chunks[0])
			if n == len(p.chunks[0]) {
				p.chunks = p.chunks[1:]
			} else {
				p.chunks[0] = p.chunks[0][n:]
			}
			p.taken += n
			p.mu.Unlock()
			return n, nil
		case p.fin:
			p.mu.Unlock()
			return 0, io.EOF
		}
		var tm *time.Timer
		var timeout <-chan time.Time
		if !p.deadline.IsZero() {
			d := time.Until(p.deadline)
			if d <= 0 {
				p.mu.Unlock()
				return 0, os.ErrDeadlineExceeded
			}
			tm = time.NewTimer(d)
			timeout = tm.C
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
		}
		if tm != nil {
			tm.Stop()
		}
	}
}

func (p *memPipe) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fin || p.rst != nil {
		return 0, syscall.EPIPE
	}
	if p.rclosed {
		return 0, syscall.ECONNRESET
	}
	if len(b) == 0 {
		return 0, nil
	}
	p.chunks = append(p.chunks, append([]byte(nil), b...))
	p.notifyLocked()
	return len(b), nil
}

// memConn is an in-memory net.Conn with half-close (CloseWrite) and reset,
// made for testing/synctest: every wait is on a channel or a timer, so a
// goroutine blocked in Read is durably blocked. Unlike net.Pipe, writes never
// block and chunk boundaries are kept.
type memConn struct {
	in, out *memPipe
	laddr   memAddr
	raddr   memAddr
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// newMemConnPair returns two connected memConns.
func newMemConnPair() (*memConn, *memConn) {
	ab, ba := newMemPipe(), newMemPipe()
	return &memConn{in: ba, out: ab, laddr: "a", raddr: "b"},
		&memConn{in: ab, out: ba, laddr: "b", raddr: "a"}
}

func (c *memConn) Read(b []byte) (int, error) {
	n, err := c.in.read(b)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		err = &net.OpError{Op: "read", Net: "mem", Source: c.laddr, Addr: c.raddr, Err: err}
	}
	return n, err
}

func (c *memConn) Write(b []byte) (int, error) {
	n, err := c.out.write(b)
	if err != nil {
		err = &net.OpError{Op: "write", Net: "mem", Source: c.laddr, Addr: c.raddr, Err: err}
	}
	return n, err
}

// CloseWrite sends EOF to the peer; this end can still read.
func (c *memConn) CloseWrite() error {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	c.out.fin = true
	c.out.notifyLocked()
	return nil
}

// Close closes both directions: the peer reads EOF after what was sent.
func (c *memConn) Close() error {
	c.in.mu.Lock()
	c.in.rclosed = true
	c.in.notifyLocked()
	c.in.mu.Unlock()
	return c.CloseWrite()
}

// Reset closes the connection abortively: the peer's reads fail with
// ECONNRESET at once, even if data was still queued for it.
func (c *memConn) Reset() {
	c.out.mu.Lock()
	c.out.rst = syscall.ECONNRESET
	c.out.chunks = nil
	c.out.notifyLocked()
	c.out.mu.Unlock()
	c.in.mu.Lock()
	c.in.rclosed = true
	c.in.notifyLocked()
	c.in.mu.Unlock()
}

func (c *memConn) LocalAddr() net.Addr  { return c.laddr }
func (c *memConn) RemoteAddr() net.Addr { return c.raddr }

func (c *memConn) SetDeadline(t time.Time) error {
	return c.SetReadDeadline(t)
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	c.in.deadline = t
	c.in.notifyLocked()
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// TestReadDeadlineSynctest: in a synctest bubble over a memConn, a read
// whose context times out returns at exactly the deadline and consumes
// nothing, and a reset wakes a waiting read with ECONNRESET.
func TestReadDeadlineSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newMemConnPair()
		r, w, err := NewStream(a, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			stopStream(w)
			b.Close()
		}()
		if _, err := b.Write([]byte("partial")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the read loop has delivered it
		wantBuffered(t, r, "partial")

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err = r.ReadLine(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 5*time.Second {
			t.Fatalf("got %v after %v, want DeadlineExceeded after 5s", err, time.Since(start))
		}
		wantBuffered(t, r, "partial")

		ch := goRead(func() ([]byte, error) { return r.ReadExactly(context.Background(), 100) })
		synctest.Wait()
		if _, err := r.ReadLine(context.Background()); !errors.Is(err, ErrConcurrentRead) {
			t.Fatalf("second waiting read: %v", err)
		}
		b.Reset()
		res := <-ch
		wantConnErr(t, "waiting read after reset", res.err, syscall.ECONNRESET)
		if err := w.WaitClosed(context.Background()); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("WaitClosed: %v", err)
		}
	})
}
