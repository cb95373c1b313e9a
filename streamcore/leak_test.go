package streamcore

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"
)

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(entries)
}

// TestOpenCloseNoLeaks opens and closes streams many times and checks that
// no goroutine and no file descriptor outlives them.
func TestOpenCloseNoLeaks(t *testing.T) {
	pairs, conns := 10000, 1000
	if testing.Short() {
		pairs, conns = 1000, 100
	}
	ctx := testCtx(t)

	pairCycle := func() {
		r1, w1, r2, w2, err := SocketPair(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w1.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r2.ReadLine(ctx)
		wantBytes(t, "ping", line, err, "ping\n")
		w2.Close()
		if got, err := r1.Read(ctx, -1); err != nil || len(got) != 0 {
			t.Fatalf("read to EOF: %q %v", got, err)
		}
		w1.Close()
		if err := w1.WaitClosed(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w2.WaitClosed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s, err := StartServer(ctx, echoHandler, "127.0.0.1", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	port := tcpPort(t, s.Sockets()[0])
	connCycle := func() {
		r, w, err := OpenConnection(ctx, "127.0.0.1", port, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadLine(ctx)
		wantBytes(t, "echo", line, err, "ping\n")
		w.Close()
		if err := w.WaitClosed(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Warm up (the netpoller, pools, the server's accept loop), then take
	// the baseline.
	pairCycle()
	connCycle()
	settle := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(failAfter)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: goroutines %d, fds %d", what, runtime.NumGoroutine(), openFDs(t))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	goroutines := runtime.NumGoroutine()
	settle("before", func() bool {
		// The warm-up's handler may still be returning.
		n := runtime.NumGoroutine()
		if n < goroutines {
			goroutines = n
		}
		return n <= goroutines
	})
	fds := openFDs(t)

	start := time.Now()
	for range pairs {
		pairCycle()
	}
	for range conns {
		connCycle()
	}
	t.Logf("%d socketpair and %d TCP open/close cycles in %v", pairs, conns, time.Since(start))
	settle("after the cycles", func() bool {
		return runtime.NumGoroutine() <= goroutines && openFDs(t) <= fds
	})

	s.Close()
	if err := s.WaitClosed(ctx); err != nil {
		t.Fatal(err)
	}
	settle("after the server closed", func() bool {
		return runtime.NumGoroutine() < goroutines && openFDs(t) < fds
	})
}

// TestServerClientLeaks: clients closed by the server (CloseClients and
// AbortClients) leave nothing behind either.
func TestServerClientLeaks(t *testing.T) {
	ctx := context.Background()
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	for _, abort := range []bool{false, true} {
		s, err := StartServer(ctx, func(r *Reader, w *Writer) {
			_, _ = r.ReadLine(context.Background())
		}, "127.0.0.1", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		port := tcpPort(t, s.Sockets()[0])
		var ws []*Writer
		for range 50 {
			_, w, err := OpenConnection(ctx, "127.0.0.1", port, nil)
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		waitUntil(t, "all accepted", func() bool { return s.Accepted() == 50 })
		s.Close()
		if abort {
			s.AbortClients()
		} else {
			s.CloseClients()
		}
		if err := s.WaitClosed(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			stopStream(w)
		}
	}
	waitUntil(t, "goroutines and fds return to the baseline", func() bool {
		return runtime.NumGoroutine() <= goroutines && openFDs(t) <= fds
	})
}
