//go:build linux

package streamcore

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// idle reports whether the stream holds no goroutine: its socket waits in
// the poller and no write goroutine runs.
func idle(w *Writer) bool {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.armed && !t.writerGo && t.readerRun
}

func waitIdle(t testing.TB, w *Writer) {
	t.Helper()
	waitUntil(t, "the stream is idle in the poller", func() bool { return idle(w) })
}

// TestIdleStreamSeesDataFINAndRST: a stream parked in the poller (no
// goroutine of its own) still gets data, a FIN (half-open: it can still
// write) and a reset (the stored error), exactly as one with a read
// goroutine did.
func TestIdleStreamSeesDataFINAndRST(t *testing.T) {
	needPoller(t)
	for _, k := range streamKinds {
		t.Run(k.name+"/data", func(t *testing.T) {
			e := k.open(t, &Options{})
			for i := range 3 {
				waitIdle(t, e.w)
				msg := fmt.Sprintf("after idleness %d", i)
				e.send(msg)
				got, err := e.r.ReadExactly(testCtx(t), len(msg))
				wantBytes(t, "read", got, err, msg)
			}
			waitIdle(t, e.w)
		})
		t.Run(k.name+"/fin", func(t *testing.T) {
			e := k.open(t, &Options{})
			waitIdle(t, e.w)
			e.send("last")
			e.fin()
			got, err := e.r.Read(testCtx(t), -1)
			wantBytes(t, "read to EOF", got, err, "last")
			if !e.r.AtEOF() || e.w.IsClosing() {
				t.Fatalf("AtEOF %v, IsClosing %v: want a half-open stream", e.r.AtEOF(), e.w.IsClosing())
			}
			if err := e.w.Write([]byte("still writing")); err != nil {
				t.Fatalf("write after the peer's FIN: %v", err)
			}
			got, err = e.peerReadN(len("still writing"))
			wantBytes(t, "peer read", got, err, "still writing")
		})
		t.Run(k.name+"/rst", func(t *testing.T) {
			e := k.open(t, &Options{})
			waitIdle(t, e.w)
			e.rst()
			if _, err := e.r.Read(testCtx(t), 1); err == nil {
				t.Fatal("read after a reset: no error")
			}
			if e.r.Exception() == nil {
				t.Fatal("no stored error after a reset")
			}
			if err := e.w.WaitClosed(testCtx(t)); err == nil {
				t.Fatal("WaitClosed after a reset: nil, want the reset")
			}
		})
	}
}

// waitsInNetpoller reports whether the stream's read goroutine waits in
// the runtime's netpoller for a waiting read, with the socket out of the
// poller.
func waitsInNetpoller(w *Writer) bool {
	t := w.t
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waitRead && !t.armed && !t.pollAdded && t.waiting
}

// TestWaitingReadLeavesThePoller: a read that waits takes the socket out
// of the poller and has a read goroutine wait in the runtime's netpoller
// for it (one hop sooner than the poller's goroutine would start one); a
// read woken with too little waits there again; after a read that gives
// up the goroutine goes back to the poller, and the bytes that come later
// are all there for the next read.
func TestWaitingReadLeavesThePoller(t *testing.T) {
	needPoller(t)
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			e := k.open(t, &Options{})
			for i := range 3 {
				waitIdle(t, e.w)
				got := make(chan string, 1)
				go func() {
					b, err := e.r.ReadExactly(testCtx(t), 5)
					if err != nil {
						got <- err.Error()
					}
					got <- string(b)
				}()
				waitUntil(t, "the read waits in the netpoller", func() bool { return waitsInNetpoller(e.w) })
				e.sendSync("abc") // wakes the read, which waits again for two more
				waitUntil(t, "the read waits in the netpoller again", func() bool {
					return waitsInNetpoller(e.w) && e.r.Buffered() == 3
				})
				e.send(fmt.Sprint("d", i))
				if b := <-got; b != fmt.Sprint("abcd", i) {
					t.Fatalf("ReadExactly(5) = %q, want abcd%d", b, i)
				}
			}
			waitIdle(t, e.w)
			ctx, cancel := context.WithCancel(testCtx(t))
			gaveUp := make(chan error, 1)
			go func() {
				_, err := e.r.Read(ctx, 100)
				gaveUp <- err
			}()
			waitUntil(t, "the read waits in the netpoller", func() bool { return waitsInNetpoller(e.w) })
			cancel()
			if err := <-gaveUp; err != context.Canceled {
				t.Fatalf("cancelled read: %v, want context.Canceled", err)
			}
			waitIdle(t, e.w) // back in the poller: no goroutine waits for no one
			e.send("after the cancelled read")
			b, err := e.r.ReadExactly(testCtx(t), len("after the cancelled read"))
			wantBytes(t, "read", b, err, "after the cancelled read")
			waitIdle(t, e.w)
		})
	}
}

// TestHotStreamWaitsInTheNetpoller: a stream whose socket had data keeps
// its read goroutine in the runtime's netpoller for hotFor after the last
// data, so that a busy stream pays no poller hop, and only then goes to the
// poller.
func TestHotStreamWaitsInTheNetpoller(t *testing.T) {
	needPoller(t)
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			e := k.open(t, &Options{})
			waitIdle(t, e.w) // a new stream starts idle
			var last time.Time
			for i := range 3 {
				last = time.Now() // before the data, so a lower bound
				e.sendSync(fmt.Sprint(i))
			}
			waitIdle(t, e.w)
			if d := time.Since(last); d < hotFor {
				t.Fatalf("idle %v after the last data, want at least hotFor (%v)", d, hotFor)
			}
			got, err := e.r.ReadExactly(testCtx(t), 3)
			wantBytes(t, "read", got, err, "012")
		})
	}
}

// TestIdleBackpressureHoldsReading: a stream above 2*limit stops reading
// and resumes once read below limit, with the poller in between.
func TestIdleBackpressureHoldsReading(t *testing.T) {
	needPoller(t)
	e := openTCP(t, &Options{Limit: 16})
	waitIdle(t, e.w)
	e.sendSync("0123456789abcdef0123456789abcdef!") // 33 > 2*16
	waitUntil(t, "reading paused", func() bool { return !e.r.IsReading() })
	got, err := e.r.ReadExactly(testCtx(t), 33)
	wantBytes(t, "read", got, err, "0123456789abcdef0123456789abcdef!")
	waitIdle(t, e.w)
	e.send("more")
	got, err = e.r.ReadExactly(testCtx(t), 4)
	wantBytes(t, "read", got, err, "more")
}

// TestOpenCloseCyclesLeakNothing: 10,000 streams opened, left idle in the
// poller, and closed leave no descriptor, poller entry or goroutine
// behind (goleak checks the goroutines when the package's tests end).
func TestOpenCloseCyclesLeakNothing(t *testing.T) {
	needPoller(t)
	n := 10000
	if testing.Short() {
		n = 1000
	}
	path := filepath.Join(shortTempDir(t), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	openCycle := func() {
		r, w, err := OpenUnixConnection(testCtx(t), path, nil)
		if err != nil {
			t.Fatalf("OpenUnixConnection: %v", err)
		}
		peer := <-accepted
		waitIdle(t, w)
		w.Close()
		if err := w.WaitClosed(testCtx(t)); err != nil {
			t.Fatalf("WaitClosed: %v", err)
		}
		if _, err := r.Read(testCtx(t), 1); err != nil {
			t.Fatalf("read after Close: %v", err)
		}
		peer.Close()
	}
	openCycle() // the poller starts, and keeps its descriptor
	fds, regs := openFDs(t), getPoller().registered()
	for range n {
		openCycle()
	}
	if got := openFDs(t); got > fds {
		t.Fatalf("%d descriptors open after %d cycles, %d before", got, n, fds)
	}
	if got := getPoller().registered(); got > regs {
		t.Fatalf("%d poller entries after %d cycles, %d before", got, n, regs)
	}
}

// TestPollerSurvivesFDClosedUnderIt: a socket closed behind the stream's
// back leaves the epoll set by itself; the stream's own close later must
// not touch the descriptor number (which another stream may have taken
// over meanwhile), and the poller keeps serving every other stream.
func TestPollerSurvivesFDClosedUnderIt(t *testing.T) {
	needPoller(t)
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			old := k.open(t, &Options{})
			waitIdle(t, old.w)
			if err := old.w.ExtraInfo("socket").(net.Conn).Close(); err != nil {
				t.Fatal(err)
			}
			// Likely given the descriptor number just freed.
			e := k.open(t, &Options{})
			waitIdle(t, e.w)
			old.w.Close()
			old.w.Abort()
			if err := old.w.WaitClosed(testCtx(t)); err != nil {
				t.Fatalf("WaitClosed of the stream closed under: %v", err)
			}
			_, _ = old.peer.Write([]byte("to nobody")) // may fail: nobody is there
			for i := range 3 {
				waitIdle(t, e.w)
				msg := fmt.Sprintf("still served %d", i)
				e.send(msg)
				got, err := e.r.ReadExactly(testCtx(t), len(msg))
				wantBytes(t, "read", got, err, msg)
			}
		})
	}
}

// needPoller skips a test of the poller's path when the run turned the
// poller off (STREAMMGR_IDLE_POLLER=0, see TestMain).
func needPoller(t *testing.T) {
	t.Helper()
	if !idlePoller.Load() {
		t.Skip("the idle poller is off (STREAMMGR_IDLE_POLLER=0)")
	}
}
