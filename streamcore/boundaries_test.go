package streamcore

// Tests added after a mutation-testing audit: each one pins a boundary or a
// rule that the rest of the suite left unchecked.

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// ReadAll's max is inclusive: exactly max buffered bytes at EOF is a result,
// one more is a *ResultTooLargeError that consumes nothing.
func TestReadAllMaxIsInclusive(t *testing.T) {
	e := openTCP(t, &Options{})
	e.sendSync("abcde")
	e.fin()
	waitUntil(t, "EOF reached the reader", func() bool { return eofReceived(e.r) })
	_, err := e.r.ReadAll(testCtx(t), 4)
	tl := asErr[*ResultTooLargeError](t, err)
	if tl.Size != 5 || tl.Max != 4 {
		t.Fatalf("ResultTooLargeError: got size %d max %d, want 5 and 4", tl.Size, tl.Max)
	}
	wantBuffered(t, e.r, "abcde")
	got, err := e.r.ReadAll(testCtx(t), 5)
	wantBytes(t, "ReadAll(max=5) of 5 bytes", got, err, "abcde")
}

// gateConn is a memConn whose writes each wait for a release, so a test
// decides exactly when the write goroutine's chunk leaves the buffer. Every
// Write first reports its chunk on calls.
type gateConn struct {
	*memConn
	calls     chan string
	release   chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func newGateConn(c *memConn) *gateConn {
	return &gateConn{memConn: c, calls: make(chan string, 16), release: make(chan struct{}), closed: make(chan struct{})}
}

func (g *gateConn) Write(b []byte) (int, error) {
	g.calls <- string(b)
	select {
	case <-g.release:
	case <-g.closed:
		return 0, net.ErrClosed
	}
	return g.memConn.Write(b)
}

func (g *gateConn) Close() error {
	g.closeOnce.Do(func() { close(g.closed) })
	return g.memConn.Close()
}

// nextWrite waits until the write goroutine hands a chunk to the socket.
func (g *gateConn) nextWrite(t testing.TB) string {
	t.Helper()
	select {
	case c := <-g.calls:
		return c
	case <-time.After(failAfter):
		t.Fatal("timed out waiting for a socket write")
	}
	return ""
}

// gatedStream opens a stream over a gateConn with water marks high 8, low 4.
func gatedStream(t *testing.T) (*gateConn, *Writer) {
	a, b := newMemConnPair()
	g := newGateConn(a)
	_, w, err := NewStream(g, &Options{WriteHigh: 8, WriteLow: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopStream(w)
		b.Close()
	})
	return g, w
}

// drainPaused reports whether Drain would wait: given an ended context it
// returns at once either way.
func drainPaused(t *testing.T, w *Writer) bool {
	t.Helper()
	err := w.Drain(cancelledCtx())
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("drain: %v", err)
	}
	return err != nil
}

// TestDrainWaterMarkBoundaries: writing pauses only strictly above the
// high-water mark, and resumes as soon as the buffer is at (not below) the
// low-water mark.
func TestDrainWaterMarkBoundaries(t *testing.T) {
	t.Run("exactly high does not pause", func(t *testing.T) {
		g, w := gatedStream(t)
		if err := w.Write([]byte("12345678")); err != nil {
			t.Fatal(err)
		}
		if c := g.nextWrite(t); c != "12345678" {
			t.Fatalf("chunk %q", c)
		}
		if drainPaused(t, w) {
			t.Fatal("drain waits with exactly high (8) bytes buffered")
		}
		if err := w.Write([]byte("9")); err != nil {
			t.Fatal(err)
		}
		if !drainPaused(t, w) {
			t.Fatal("drain does not wait with 9 bytes buffered, above high (8)")
		}
		g.release <- struct{}{}
		g.nextWrite(t)
		g.release <- struct{}{}
	})
	t.Run("exactly low resumes", func(t *testing.T) {
		g, w := gatedStream(t)
		if err := w.Write([]byte("aaaaaa")); err != nil {
			t.Fatal(err)
		}
		if c := g.nextWrite(t); c != "aaaaaa" {
			t.Fatalf("chunk %q", c)
		}
		// 6 in flight + 4 new = 10 buffered, above high.
		if err := w.Write([]byte("bbbb")); err != nil {
			t.Fatal(err)
		}
		if !drainPaused(t, w) {
			t.Fatal("drain does not wait with 10 bytes buffered, above high (8)")
		}
		g.release <- struct{}{}
		// The next chunk is handed over only after the first one left the
		// buffer: 4 bytes, exactly the low-water mark, remain.
		if c := g.nextWrite(t); c != "bbbb" {
			t.Fatalf("chunk %q", c)
		}
		if n := w.BufferSize(); n != 4 {
			t.Fatalf("buffer size %d, want 4", n)
		}
		if drainPaused(t, w) {
			t.Fatal("drain still waits with the buffer at the low-water mark (4)")
		}
		g.release <- struct{}{}
	})
}

// EOF does not cut short a readexactly the buffer can satisfy: data beats
// EOF, and only the remainder is an IncompleteReadError.
func TestReadExactlyDataBeatsEOF(t *testing.T) {
	r, w, _, pw, err := SocketPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	defer pw.Abort()
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	if err := pw.Write([]byte("abcdef")); err != nil {
		t.Fatal(err)
	}
	if err := pw.WriteEOF(); err != nil {
		t.Fatal(err)
	}
	for {
		r.t.mu.Lock()
		eof := r.t.eof
		r.t.mu.Unlock()
		if eof {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("EOF never arrived")
		case <-time.After(time.Millisecond):
		}
	}
	for _, want := range []string{"abc", "def"} {
		if got, err := r.ReadExactly(ctx, 3); err != nil || string(got) != want {
			t.Fatalf("ReadExactly(3) = %q, %v; want %q", got, err, want)
		}
	}
	var ie *IncompleteReadError
	if _, err := r.ReadExactly(ctx, 1); !errors.As(err, &ie) || len(ie.Partial) != 0 || ie.Expected != 1 {
		t.Fatalf("ReadExactly(1) at EOF = %v, want IncompleteReadError with an empty partial", err)
	}
}
