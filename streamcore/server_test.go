package streamcore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// echoHandler echoes lines until EOF, then closes.
func echoHandler(r *Reader, w *Writer) {
	defer w.Close()
	for {
		line, err := r.ReadLine(context.Background())
		if err != nil || len(line) == 0 {
			return
		}
		if err := w.Write(line); err != nil {
			return
		}
	}
}

// startServer starts a TCP server that is shut down (clients aborted) when
// the test ends.
func startServer(t testing.TB, h Handler, host string, opts *ServerOptions) *Server {
	t.Helper()
	s, err := StartServer(testCtx(t), h, host, 0, opts)
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(func() { shutdown(t, s) })
	return s
}

func shutdown(t testing.TB, s *Server) {
	s.Close()
	s.AbortClients()
	if err := s.WaitClosed(testCtx(t)); err != nil {
		t.Errorf("server WaitClosed: %v", err)
	}
}

func tcpPort(t testing.TB, a net.Addr) int {
	t.Helper()
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.Port == 0 {
		t.Fatalf("socket address %v is not a resolved TCP address", a)
	}
	return ta.Port
}

// dial opens a client stream that is stopped when the test ends.
func dial(t testing.TB, host string, port int, opts *DialOptions) (*Reader, *Writer) {
	t.Helper()
	r, w, err := OpenConnection(testCtx(t), host, port, opts)
	if err != nil {
		t.Fatalf("OpenConnection %s:%d: %v", host, port, err)
	}
	t.Cleanup(func() { stopStream(w) })
	return r, w
}

func dialUnix(t testing.TB, path string, opts *DialOptions) (*Reader, *Writer) {
	t.Helper()
	r, w, err := OpenUnixConnection(testCtx(t), path, opts)
	if err != nil {
		t.Fatalf("OpenUnixConnection %s: %v", path, err)
	}
	t.Cleanup(func() { stopStream(w) })
	return r, w
}

// echo sends msg+"\n" and expects it back.
func echo(t testing.TB, r *Reader, w *Writer, msg string) {
	t.Helper()
	if err := w.Write([]byte(msg + "\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := r.ReadLine(testCtx(t))
	wantBytes(t, "echo", got, err, msg+"\n")
}

// wantRefused checks that nothing accepts connections at addr.
func wantRefused(t testing.TB, network, addr string) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, failAfter)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded, want refused", addr)
	}
	wantConnErr(t, "dial "+addr, err, syscall.ECONNREFUSED)
}

func TestStartServerTCP(t *testing.T) {
	infos := make(chan [2]string, 1)
	s := startServer(t, func(r *Reader, w *Writer) {
		if !w.IsServerSide() {
			t.Error("accepted stream is not server side")
		}
		infos <- [2]string{w.ExtraInfo("peername").(net.Addr).String(), w.ExtraInfo("sockname").(net.Addr).String()}
		echoHandler(r, w)
	}, "127.0.0.1", nil)
	socks := s.Sockets()
	if len(socks) != 1 || !s.IsServing() {
		t.Fatalf("sockets %v serving %v", socks, s.IsServing())
	}
	port := tcpPort(t, socks[0])
	r, w := dial(t, "127.0.0.1", port, nil)
	echo(t, r, w, "hello")
	info := <-infos
	if info[0] != w.ExtraInfo("sockname").(net.Addr).String() || info[1] != w.ExtraInfo("peername").(net.Addr).String() {
		t.Fatalf("server sees peer %s sock %s; client is %s -> %s", info[0], info[1], w.ExtraInfo("sockname"), w.ExtraInfo("peername"))
	}
	if s.Accepted() != 1 {
		t.Fatalf("Accepted %d", s.Accepted())
	}
}

func TestStartServerAllInterfaces(t *testing.T) {
	s := startServer(t, echoHandler, "", nil)
	socks := s.Sockets()
	if len(socks) != 2 {
		t.Fatalf("host \"\" bound %v, want one socket per family", socks)
	}
	var v4, v6 int
	for _, a := range socks {
		ta := a.(*net.TCPAddr)
		switch {
		case ta.IP.Equal(net.IPv4zero):
			v4 = tcpPort(t, a)
		case ta.IP.Equal(net.IPv6unspecified):
			v6 = tcpPort(t, a)
		}
	}
	if v4 == 0 || v6 == 0 {
		t.Fatalf("sockets %v: want 0.0.0.0 and ::", socks)
	}
	r, w := dial(t, "127.0.0.1", v4, nil)
	echo(t, r, w, "over IPv4")
	r6, w6 := dial(t, "::1", v6, nil)
	echo(t, r6, w6, "over IPv6")
	// IPV6_V6ONLY: the IPv6 socket does not take IPv4 connections, so unless
	// the ports happen to match, IPv4 to the IPv6 port is refused.
	if v4 != v6 {
		wantRefused(t, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(v6)))
	}
}

func TestStartServerErrors(t *testing.T) {
	ctx := testCtx(t)
	s := startServer(t, echoHandler, "127.0.0.1", nil)
	port := tcpPort(t, s.Sockets()[0])
	_, err := StartServer(ctx, echoHandler, "127.0.0.1", port, nil)
	wantConnErr(t, "second bind", err, syscall.EADDRINUSE)
	if want := fmt.Sprintf("error while attempting to bind on address 127.0.0.1:%d", port); !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("bind error %q does not say %q", err, want)
	}
	for _, limit := range []int{-1, -100} {
		_, err := StartServer(ctx, echoHandler, "127.0.0.1", 0, &ServerOptions{Options: Options{Limit: limit}})
		if ve := asErr[*ValueError](t, err); ve.Msg != "Limit cannot be <= 0" {
			t.Fatalf("got %q", ve.Msg)
		}
		_, err = StartUnixServer(ctx, echoHandler, filepath.Join(shortTempDir(t), "s"), &ServerOptions{Options: Options{Limit: limit}})
		asErr[*ValueError](t, err)
	}
	_, err = StartServer(ctx, nil, "127.0.0.1", 0, nil)
	asErr[*ValueError](t, err)
	_, err = StartServer(ctx, echoHandler, "127.0.0.1", 70000, nil)
	asErr[*ValueError](t, err)
}

func TestServerLimitApplies(t *testing.T) {
	s := startServer(t, func(r *Reader, w *Writer) {
		defer w.Close()
		_, err := r.ReadLine(context.Background())
		var le *LineTooLongError
		if errors.As(err, &le) {
			_ = w.Write([]byte("too long\n"))
		}
	}, "127.0.0.1", &ServerOptions{Options: Options{Limit: 4}})
	r, w := dial(t, "127.0.0.1", tcpPort(t, s.Sockets()[0]), nil)
	if err := w.Write([]byte("12345\n")); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadLine(testCtx(t))
	wantBytes(t, "answer", got, err, "too long\n")
}

func TestStartServerDeferred(t *testing.T) {
	s := startServer(t, echoHandler, "127.0.0.1", &ServerOptions{Deferred: true})
	if s.IsServing() {
		t.Fatal("deferred server is serving")
	}
	socks := s.Sockets()
	if len(socks) != 1 {
		t.Fatalf("sockets %v", socks)
	}
	port := tcpPort(t, socks[0])
	wantRefused(t, "tcp", socks[0].String())
	if err := s.StartServing(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.StartServing(testCtx(t)); err != nil {
		t.Fatalf("StartServing is not idempotent: %v", err)
	}
	if !s.IsServing() {
		t.Fatal("not serving after StartServing")
	}
	r, w := dial(t, "127.0.0.1", port, nil)
	echo(t, r, w, "now")
}

// TestServerCloseAndWaitClosed: Close stops listening but leaves clients
// working; WaitClosed blocks until the server is closed and every client is
// gone, and blocks before Close even with no clients at all.
func TestServerCloseAndWaitClosed(t *testing.T) {
	s := startServer(t, echoHandler, "127.0.0.1", nil)
	addr := s.Sockets()[0].String()
	short := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		return s.WaitClosed(ctx)
	}
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitClosed before Close with no clients: got %v, want to block", err)
	}
	r, w := dial(t, "127.0.0.1", tcpPort(t, s.Sockets()[0]), nil)
	echo(t, r, w, "before close")
	s.Close()
	s.Close() // idempotent
	if s.IsServing() || len(s.Sockets()) != 0 {
		t.Fatalf("after Close: serving %v sockets %v", s.IsServing(), s.Sockets())
	}
	wantRefused(t, "tcp", addr)
	echo(t, r, w, "after close")
	if err := short(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitClosed with a live client: got %v, want to block", err)
	}
	w.Close()
	if err := s.WaitClosed(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitClosed(cancelledCtx()); err != nil {
		t.Fatalf("WaitClosed once done: %v", err)
	}
	if err := s.StartServing(testCtx(t)); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("StartServing after Close: %v", err)
	}
}

func TestServerCloseClients(t *testing.T) {
	const size = 4 << 20
	data := bytes.Repeat([]byte("closeclients"), size/12)
	written := make(chan struct{})
	s := startServer(t, func(r *Reader, w *Writer) {
		if _, err := r.ReadLine(context.Background()); err != nil {
			return
		}
		if err := w.Write(data); err != nil {
			t.Errorf("server write: %v", err)
		}
		close(written)
		_, _ = r.ReadLine(context.Background()) // until closed
	}, "127.0.0.1", &ServerOptions{Options: Options{MaxWriteBuffer: -1}})
	r, w := dial(t, "127.0.0.1", tcpPort(t, s.Sockets()[0]), nil)
	if err := w.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	<-written
	s.Close()
	s.CloseClients()
	// close_clients is graceful: the pending bytes arrive, then EOF.
	got, err := r.Read(testCtx(t), -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("client read %d bytes (%v), want %d then EOF", len(got), err, len(data))
	}
	if err := s.WaitClosed(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestServerAbortClients(t *testing.T) {
	const size = 16 << 20
	written := make(chan int, 1)
	s := startServer(t, func(r *Reader, w *Writer) {
		if _, err := r.ReadLine(context.Background()); err != nil {
			return
		}
		if err := w.Write(make([]byte, size)); err != nil {
			t.Errorf("server write: %v", err)
		}
		written <- w.BufferSize()
		_, _ = r.ReadLine(context.Background())
	}, "127.0.0.1", &ServerOptions{Options: Options{MaxWriteBuffer: -1}})
	// A raw client that reads nothing until the server is aborted.
	c, err := net.Dial("tcp", s.Sockets()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if pending := <-written; pending == 0 {
		t.Fatal("the kernel took 16 MiB; abort proves nothing")
	}
	s.Close()
	s.AbortClients()
	if err := s.WaitClosed(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(failAfter))
	got, err := io.ReadAll(c)
	if err != nil || len(got) >= size {
		t.Fatalf("client read %d bytes (%v); want fewer than %d, then EOF", len(got), err, size)
	}
}

func TestServeForever(t *testing.T) {
	t.Run("cancelled", func(t *testing.T) {
		s := startServer(t, echoHandler, "127.0.0.1", &ServerOptions{Deferred: true})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- s.ServeForever(ctx) }()
		waitUntil(t, "ServeForever starts serving", s.IsServing)
		if err := s.ServeForever(testCtx(t)); !errors.Is(err, ErrServing) {
			t.Fatalf("second ServeForever: %v", err)
		}
		r, w := dial(t, "127.0.0.1", tcpPort(t, s.Sockets()[0]), nil)
		echo(t, r, w, "served")
		cancel()
		waitUntil(t, "the server closes", func() bool { return !s.IsServing() })
		if len(s.Sockets()) != 0 {
			t.Fatal("sockets left after cancel")
		}
		select {
		case err := <-errc:
			t.Fatalf("ServeForever returned %v with a client still connected", err)
		case <-time.After(30 * time.Millisecond):
		}
		echo(t, r, w, "still served")
		w.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("ServeForever: %v", err)
			}
		case <-time.After(failAfter):
			t.Fatal("ServeForever did not return after its client left")
		}
		if err := s.ServeForever(testCtx(t)); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ServeForever on a closed server: %v", err)
		}
	})
	t.Run("closed elsewhere", func(t *testing.T) {
		s := startServer(t, echoHandler, "127.0.0.1", nil)
		errc := make(chan error, 1)
		go func() { errc <- s.ServeForever(testCtx(t)) }()
		r, w := dial(t, "127.0.0.1", tcpPort(t, s.Sockets()[0]), nil)
		echo(t, r, w, "x")
		waitUntil(t, "ServeForever runs", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.forever
		})
		s.Close()
		s.CloseClients()
		select {
		case err := <-errc:
			if !errors.Is(err, ErrServerClosed) {
				t.Fatalf("ServeForever: %v", err)
			}
		case <-time.After(failAfter):
			t.Fatal("ServeForever did not return after Close")
		}
	})
}

func TestStartUnixServer(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "s")
	infos := make(chan [2]string, 1)
	s, err := StartUnixServer(testCtx(t), func(r *Reader, w *Writer) {
		infos <- [2]string{w.ExtraInfo("sockname").(net.Addr).String(), w.ExtraInfo("peername").(net.Addr).String()}
		echoHandler(r, w)
	}, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, s)
	if socks := s.Sockets(); len(socks) != 1 || socks[0].String() != path {
		t.Fatalf("sockets %v", socks)
	}
	r, w := dialUnix(t, path, nil)
	echo(t, r, w, "unix")
	if got := w.ExtraInfo("peername").(net.Addr).String(); got != path {
		t.Fatalf("client peername %q, want %q", got, path)
	}
	if got := w.ExtraInfo("sockname").(net.Addr).String(); got != "" {
		t.Fatalf("client sockname %q, want \"\"", got)
	}
	if info := <-infos; info[0] != path || info[1] != "" {
		t.Fatalf("server sockname %q peername %q, want %q and \"\"", info[0], info[1], path)
	}
	s.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after Close: %v", err)
	}
	echo(t, r, w, "after close")
}

func TestUnixServerPath(t *testing.T) {
	ctx := testCtx(t)
	t.Run("stale socket removed", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		makeStaleSocket(t, path)
		s, err := StartUnixServer(ctx, echoHandler, path, nil)
		if err != nil {
			t.Fatalf("over a stale socket: %v", err)
		}
		defer shutdown(t, s)
		r, w := dialUnix(t, path, nil)
		echo(t, r, w, "fresh")
	})
	t.Run("regular file kept", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := StartUnixServer(ctx, echoHandler, path, nil)
		wantConnErr(t, "bind over a file", err, syscall.EADDRINUSE)
		if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
			t.Fatalf("file changed: %q %v", b, err)
		}
	})
	t.Run("live socket refused", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, err = StartUnixServer(ctx, echoHandler, path, nil)
		wantConnErr(t, "bind over a live socket", err, syscall.EADDRINUSE)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the live listener lost its path: %v", err)
		}
		c.Close()
	})
	t.Run("live server refused", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		s, err := StartUnixServer(ctx, echoHandler, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer shutdown(t, s)
		_, err = StartUnixServer(ctx, echoHandler, path, nil)
		wantConnErr(t, "second server", err, syscall.EADDRINUSE)
		r, w := dialUnix(t, path, nil)
		echo(t, r, w, "first server still serves")
	})
	t.Run("replaced file kept on close", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		s, err := StartUnixServer(ctx, echoHandler, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("someone else's"), 0o600); err != nil {
			t.Fatal(err)
		}
		shutdown(t, s)
		if b, err := os.ReadFile(path); err != nil || string(b) != "someone else's" {
			t.Fatalf("replaced file removed or changed: %q %v", b, err)
		}
	})
	t.Run("file already gone", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		s, err := StartUnixServer(ctx, echoHandler, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		shutdown(t, s)
	})
	t.Run("abstract", func(t *testing.T) {
		name := fmt.Sprintf("@streamcore-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		s, err := StartUnixServer(ctx, echoHandler, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer shutdown(t, s)
		r, w := dialUnix(t, name, nil)
		echo(t, r, w, "abstract")
		if _, err := os.Lstat(name); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("abstract socket made a file: %v", err)
		}
	})
	t.Run("deferred", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		s, err := StartUnixServer(ctx, echoHandler, path, &ServerOptions{Deferred: true})
		if err != nil {
			t.Fatal(err)
		}
		defer shutdown(t, s)
		if s.IsServing() {
			t.Fatal("deferred server is serving")
		}
		wantRefused(t, "unix", path)
		if err := s.StartServing(ctx); err != nil {
			t.Fatal(err)
		}
		r, w := dialUnix(t, path, nil)
		echo(t, r, w, "served")
	})
	t.Run("empty path", func(t *testing.T) {
		_, err := StartUnixServer(ctx, echoHandler, "", nil)
		asErr[*ValueError](t, err)
	})
}
