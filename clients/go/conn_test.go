package streammgr_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

// TestConnNettest runs x/net/nettest's net.Conn conformance tests with a
// Conn as c1 and, as c2, a plain socket of the test process or another Conn
// (a Listener's).
func TestConnNettest(t *testing.T) {
	t.Parallel()
	c := dial(t)
	cases := []struct {
		name string
		mp   nettest.MakePipe
	}{
		{"TCPPeer", func() (net.Conn, net.Conn, func(), error) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, nil, nil, err
			}
			return pipeTo(c, ln, "tcp", ln.Addr().String(), func() (net.Conn, error) { return ln.Accept() })
		}},
		{"UnixPeer", func() (net.Conn, net.Conn, func(), error) {
			dir, err := os.MkdirTemp("", "smp")
			if err != nil {
				return nil, nil, nil, err
			}
			ln, err := net.Listen("unix", dir+"/p.sock")
			if err != nil {
				os.RemoveAll(dir)
				return nil, nil, nil, err
			}
			c1, c2, stop, err := pipeTo(c, ln, "unix", dir+"/p.sock", func() (net.Conn, error) { return ln.Accept() })
			return c1, c2, func() {
				if stop != nil {
					stop()
				}
				os.RemoveAll(dir)
			}, err
		}},
		{"DaemonListener", func() (net.Conn, net.Conn, func(), error) {
			ln, err := c.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				return nil, nil, nil, err
			}
			return pipeTo(c, ln, "tcp", ln.Addr().String(), func() (net.Conn, error) { return ln.Accept() })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nettest.TestConn(t, tc.mp)
		})
	}
}

// pipeTo opens a Conn to ln's address and pairs it with what ln accepts.
func pipeTo(c *streammgr.Client, ln net.Listener, network, addr string, accept func() (net.Conn, error)) (net.Conn, net.Conn, func(), error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c2, err := accept()
		ch <- res{c2, err}
	}()
	c1, err := c.Open(context.Background(), network, addr)
	if err != nil {
		ln.Close()
		<-ch
		return nil, nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		c1.Close()
		ln.Close()
		return nil, nil, nil, r.err
	}
	stop := func() {
		c1.Close()
		r.c.Close()
		ln.Close()
	}
	return c1, r.c, stop, nil
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange writes out to w and half-closes it, while reading r to EOF.
func exchange(w interface {
	io.Writer
	CloseWrite() error
}, r io.Reader, out []byte) (in []byte, werr, rerr error) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, werr = w.Write(out); werr == nil {
			werr = w.CloseWrite()
		}
	}()
	in, rerr = io.ReadAll(r)
	wg.Wait()
	return in, werr, rerr
}

// TestConnBothWays: 1 MiB each way at once, byte-exact, over TCP and Unix,
// each side half-closing when done.
func TestConnBothWays(t *testing.T) {
	t.Parallel()
	c := dial(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			conn, p := openTo(t, c, network)
			up, down := randomBytes(t, 1<<20), randomBytes(t, 1<<20)
			type result struct {
				in         []byte
				werr, rerr error
			}
			peerDone := make(chan result, 1)
			go func() {
				in, werr, rerr := exchange(p.(interface {
					io.ReadWriter
					CloseWrite() error
				}), p, down)
				peerDone <- result{in, werr, rerr}
			}()
			got, werr, rerr := exchange(conn, conn, up)
			if werr != nil || rerr != nil {
				t.Fatalf("Conn: write %v, read %v", werr, rerr)
			}
			pr := <-peerDone
			if pr.werr != nil || pr.rerr != nil {
				t.Fatalf("peer: write %v, read %v", pr.werr, pr.rerr)
			}
			if !bytes.Equal(got, down) {
				t.Errorf("Conn read %d bytes, not the %d the peer sent", len(got), len(down))
			}
			if !bytes.Equal(pr.in, up) {
				t.Errorf("peer read %d bytes, not the %d the Conn sent", len(pr.in), len(up))
			}
			if err := conn.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestConnEcho: 8 MiB, far more than the window, through a peer that
// echoes what it reads as it reads it: acknowledgements must get through
// while outbound bytes wait for the peer.
func TestConnEcho(t *testing.T) {
	t.Parallel()
	c := dial(t, streammgr.WithWindow(1<<20))
	conn, p := openTo(t, c, "tcp")
	go func() {
		_, _ = io.Copy(p, p)
		_ = p.(*net.TCPConn).CloseWrite()
	}()
	out := randomBytes(t, 8<<20)
	got, werr, rerr := exchange(conn, conn, out)
	if werr != nil || rerr != nil {
		t.Fatalf("write %v, read %v", werr, rerr)
	}
	if !bytes.Equal(got, out) {
		t.Fatalf("echo: got %d bytes back, want the %d sent", len(got), len(out))
	}
}

// TestConnHalfClose: after CloseWrite the peer reads EOF and can still
// send; the Conn reads that, then EOF, and a Write fails.
func TestConnHalfClose(t *testing.T) {
	t.Parallel()
	c := dial(t)
	conn, p := openTo(t, c, "tcp")
	if _, err := conn.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p)
	if err != nil || string(got) != "question" {
		t.Fatalf("peer read %q, %v; want \"question\" then EOF", got, err)
	}
	if _, err := p.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	p.Close()
	got, err = io.ReadAll(conn)
	if err != nil || string(got) != "answer" {
		t.Fatalf("Conn read %q, %v; want \"answer\" then EOF", got, err)
	}
	if _, err := conn.Write([]byte("x")); !errors.Is(err, streammgr.ErrWriteAfterEOF) {
		t.Errorf("Write after CloseWrite: got %v, want ErrWriteAfterEOF", err)
	}
}

// TestConnDeadlines: a passed deadline fails Read and Write with a timeout
// that matches os.ErrDeadlineExceeded, and clearing it makes them work
// again; a future one interrupts a waiting Read.
func TestConnDeadlines(t *testing.T) {
	t.Parallel()
	c := dial(t)
	conn, p := openTo(t, c, "tcp")
	buf := make([]byte, 10)
	checkTimeout := func(what string, err error) {
		t.Helper()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: got %v, want a timeout matching os.ErrDeadlineExceeded", what, err)
		}
	}
	if err := conn.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	checkTimeout("Read past the deadline", err)
	if n != 0 {
		t.Errorf("Read past the deadline read %d bytes", n)
	}
	n, err = conn.Write([]byte("x"))
	checkTimeout("Write past the deadline", err)
	if n != 0 {
		t.Errorf("Write past the deadline wrote %d bytes", n)
	}
	start := time.Now()
	if err := conn.SetReadDeadline(start.Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Read(buf)
	checkTimeout("Read until a future deadline", err)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Read timed out after %v, before its deadline", d)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(p, buf[:4]); err != nil || string(buf[:4]) != "ping" {
		t.Fatalf("peer read %q, %v", buf[:4], err)
	}
	if _, err := p.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, buf[:4]); err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("Conn read %q, %v after clearing the deadline", buf[:4], err)
	}
}

// TestConnBackpressure: a peer that does not read stops the Conn's writes
// (a write deadline ends them) and one that the Conn does not read is
// stopped too; nothing is lost either way.
func TestConnBackpressure(t *testing.T) {
	t.Parallel()
	c := dial(t, streammgr.WithWindow(1<<20))
	conn, p := openTo(t, c, "tcp")
	const bound = 64 << 20 // far more than every buffer on the way together
	chunk := make([]byte, 64<<10)

	// Outbound: write until a Write times out.
	sent := 0
	for {
		conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := conn.Write(chunk)
		sent += n
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Write: %v", err)
			}
			break
		}
		if sent > bound {
			t.Fatalf("wrote %d bytes to a peer that reads nothing", sent)
		}
	}
	conn.SetWriteDeadline(time.Time{})
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, p)
	if err != nil || n != int64(sent) {
		t.Fatalf("peer read %d bytes (%v), want the %d written", n, err, sent)
	}

	// Inbound: the peer writes until its write times out.
	var received int
	for {
		p.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := p.Write(chunk)
		received += n
		if err != nil {
			break
		}
		if received > bound {
			t.Fatalf("the peer wrote %d bytes to a Conn nobody reads", received)
		}
	}
	p.Close()
	m, err := io.Copy(io.Discard, conn)
	if err != nil || m != int64(received) {
		t.Fatalf("Conn read %d bytes (%v), want the %d the peer wrote", m, err, received)
	}
}

// TestConnClose: Close ends a waiting Read, delivers what was written
// before it, and the daemon closes the stream.
func TestConnClose(t *testing.T) {
	t.Parallel()
	c := dial(t)
	conn, p := openTo(t, c, "tcp")
	readErr := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		readErr <- err
	}()
	waitFor(t, "the stream to be attached", 10*time.Second, func() bool {
		s, err := c.Stream(testCtx(t), conn.ID())
		return err == nil && s.Attached
	})
	data := randomBytes(t, 1<<20)
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-readErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read during Close: got %v, want net.ErrClosed", err)
	}
	got, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("peer read %d bytes (%v), want the %d written before Close", len(got), err, len(data))
	}
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: got %v, want net.ErrClosed", err)
	}
	if _, err := conn.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: got %v, want net.ErrClosed", err)
	}
	if err := conn.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: got %v, want net.ErrClosed", err)
	}
	waitFor(t, "the daemon to close the stream", 10*time.Second, func() bool {
		s, err := c.Stream(testCtx(t), conn.ID())
		return errors.Is(err, streammgr.ErrStreamNotFound) || (err == nil && s.State == "closed" && !s.Attached)
	})
}

// TestConnReset: a reset by the peer fails Read with an error matching
// ErrConnectionReset and syscall.ECONNRESET, after the bytes before it.
func TestConnReset(t *testing.T) {
	t.Parallel()
	c := dial(t)
	conn, p := openTo(t, c, "tcp")
	if _, err := p.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	p.(*net.TCPConn).SetLinger(0)
	p.Close()
	_, err := io.ReadAll(conn)
	if !errors.Is(err, streammgr.ErrConnectionReset) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset: got %v, want ErrConnectionReset and ECONNRESET", err)
	}
	var e *streammgr.Error
	if !errors.As(err, &e) || e.Code.String() != "Unavailable" || e.Reason != streammgr.ErrConnectionReset {
		t.Errorf("got %#v, want an *Error with code Unavailable, reason CONNECTION_RESET", e)
	}
}

// TestConnAddrs: LocalAddr and RemoteAddr are the daemon's ends as the
// peer sees them.
func TestConnAddrs(t *testing.T) {
	t.Parallel()
	c := dial(t)
	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		conn, p := openTo(t, c, "tcp")
		if got, want := conn.RemoteAddr().String(), p.LocalAddr().String(); got != want {
			t.Errorf("RemoteAddr %s, want %s", got, want)
		}
		if got, want := conn.LocalAddr().String(), p.RemoteAddr().String(); got != want {
			t.Errorf("LocalAddr %s, want %s", got, want)
		}
		if _, ok := conn.RemoteAddr().(*net.TCPAddr); !ok {
			t.Errorf("RemoteAddr is a %T, want *net.TCPAddr", conn.RemoteAddr())
		}
	})
	t.Run("unix", func(t *testing.T) {
		t.Parallel()
		conn, p := openTo(t, c, "unix")
		ra, ok := conn.RemoteAddr().(*net.UnixAddr)
		if !ok || ra.Name != p.LocalAddr().String() {
			t.Errorf("RemoteAddr %#v, want the peer's path %s", conn.RemoteAddr(), p.LocalAddr())
		}
		if conn.LocalAddr() == nil || conn.LocalAddr().Network() != "unix" {
			t.Errorf("LocalAddr %#v, want a unix address", conn.LocalAddr())
		}
	})
}

// TestAttachTakesOver: a second Conn attached to the same stream takes it
// over; the first fails with ErrAttachSuperseded.
func TestAttachTakesOver(t *testing.T) {
	t.Parallel()
	c := dial(t)
	first, p := openTo(t, c, "tcp")
	second, err := c.Attach(testCtx(t), first.ID())
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer second.Close()
	if _, err := io.ReadAll(first); !errors.Is(err, streammgr.ErrAttachSuperseded) {
		t.Errorf("first Conn: got %v, want ErrAttachSuperseded", err)
	}
	if _, err := p.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(second, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("second Conn read %q, %v", buf, err)
	}
}
