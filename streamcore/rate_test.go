package streamcore

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The bandwidth limit of the rate tests, its burst, and how long each
// measures. The bounds they check: a limiter can only slow things down, so
// the upper bound is exact (the rate, plus the bucket's burst, plus one
// transfer per stream charged after the fact); the lower bound leaves 10%
// for a loaded machine.
const (
	testRate  = 2 << 20
	testBurst = 256 << 10
	rateSpan  = 2500 * time.Millisecond
	// fastSpan is how long an unlimited stream is measured; it must move
	// at least fastFactor times testRate.
	fastSpan   = time.Second
	fastFactor = 2
	// promptly bounds what a throttle wait must not hold up.
	promptly = 2 * time.Second
)

func testLimiter() *rate.Limiter { return rate.NewLimiter(testRate, testBurst) }

// wantRate checks bytes moved through one limiter of testRate in elapsed
// by the given number of streams: moved at most what the limiter allows,
// and delivered at least 70% of the rate less one 64 KiB write in flight
// (the floor only catches a limiter that holds back too much; a loaded
// machine running the race detector moved 82% over TLS).
func wantRate(t *testing.T, what string, moved, delivered int64, elapsed time.Duration, streams int) {
	t.Helper()
	secs := elapsed.Seconds()
	upper := testRate*secs + float64(testBurst*(1+streams))
	lower := 0.7*testRate*secs - 64<<10
	t.Logf("%s: %d bytes in %v (%.2f MiB/s; limit %.2f MiB/s)", what, moved, elapsed.Round(time.Millisecond), float64(moved)/secs/(1<<20), float64(testRate)/(1<<20))
	if float64(moved) > upper*1.001 {
		t.Errorf("%s: %d bytes in %v, more than the limit allows (%.0f)", what, moved, elapsed, upper)
	}
	if float64(delivered) < lower {
		t.Errorf("%s: %d bytes in %v, less than 70%% of the limit (%.0f)", what, delivered, elapsed, lower)
	}
}

// wantFast checks that an unlimited transfer beat the limit many times.
func wantFast(t *testing.T, what string, moved int64, elapsed time.Duration) {
	t.Helper()
	rate := float64(moved) / elapsed.Seconds()
	t.Logf("%s: %d bytes in %v (%.1f MiB/s)", what, moved, elapsed.Round(time.Millisecond), rate/(1<<20))
	if rate < fastFactor*testRate {
		t.Errorf("%s: %.1f MiB/s, want at least %d times the limit of the limited streams", what, rate/(1<<20), fastFactor)
	}
}

// flood writes to c, as fast as it takes them, until the test ends.
func flood(t *testing.T, e *env, c net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		stopStream(e.w)
		c.Close()
		<-done
	})
}

// counter reads c until the test ends; it returns the running count of
// bytes read.
func counter(t *testing.T, c net.Conn) *atomic.Int64 {
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256<<10)
		for {
			k, err := c.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return &n
}

// readFor reads e until span has passed since start (before the peer began
// to send); it returns the bytes read. It may run in a goroutine of its
// own. (Callers take the counts they check before the time they check them
// against: the bound grows with the time.)
func readFor(t *testing.T, e *env, start time.Time, span time.Duration) int64 {
	ctx, cancel := context.WithDeadline(testCtx(t), start.Add(span))
	defer cancel()
	var got int64
	for {
		data, err := e.r.Read(ctx, 1<<20)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("read: %v", err)
			}
			return got
		}
		got += int64(len(data))
	}
}

// writeFor writes to e, waiting in Drain, until span has passed since
// start. It may run in a goroutine of its own.
func writeFor(t *testing.T, e *env, start time.Time, span time.Duration) {
	ctx, cancel := context.WithDeadline(testCtx(t), start.Add(span))
	defer cancel()
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		if err := e.w.Write(buf); err != nil {
			t.Errorf("write: %v", err)
			break
		}
		if err := e.w.Drain(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("drain: %v", err)
			break
		}
	}
}

var rateKinds = []struct {
	name string
	open func(testing.TB, *Options) *env
}{
	{"tcp", openTCP},
	{"unix", openUnix},
	{"tls", openTLS},
}

// A stream reading through InRate receives at the limit, plain and TLS,
// while unlimited streams (and a rate.Inf limit) run far faster.
func TestInRate(t *testing.T) {
	t.Parallel()
	for _, k := range rateKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			e := k.open(t, &Options{Limit: 1 << 20, InRate: testLimiter()})
			start := time.Now()
			flood(t, e, e.peer)
			got := readFor(t, e, start, rateSpan)
			received := e.r.t.nreceived.Load()
			wantRate(t, "read through InRate", received, got, time.Since(start), 1)
		})
	}
	for _, c := range []struct {
		name string
		lim  *rate.Limiter
	}{{"unlimited", nil}, {"inf", rate.NewLimiter(rate.Inf, 0)}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := openTCP(t, &Options{Limit: 1 << 20, InRate: c.lim})
			start := time.Now()
			flood(t, e, e.peer)
			got := readFor(t, e, start, fastSpan)
			wantFast(t, c.name+" read", got, time.Since(start))
		})
	}
}

// A stream writing through OutRate sends at the limit, plain and TLS,
// while an unlimited one runs far faster.
func TestOutRate(t *testing.T) {
	t.Parallel()
	for _, k := range rateKinds {
		if k.name == "unix" {
			continue // as tcp for the write goroutine
		}
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			e := k.open(t, &Options{OutRate: testLimiter()})
			n := counter(t, e.peer)
			start := time.Now()
			writeFor(t, e, start, rateSpan)
			got := n.Load()
			wantRate(t, "written through OutRate", got, got, time.Since(start), 1)
		})
	}
	t.Run("unlimited", func(t *testing.T) {
		t.Parallel()
		e := openTCP(t, &Options{})
		n := counter(t, e.peer)
		start := time.Now()
		writeFor(t, e, start, fastSpan)
		wantFast(t, "unlimited write", n.Load(), time.Since(start))
	})
}

// Under OutRate, Write keeps accepting up to the buffer's cap while Drain
// waits, as with a slow peer; Abort does not wait for the limit.
func TestOutRateBackpressure(t *testing.T) {
	t.Parallel()
	lim := rate.NewLimiter(64<<10, 64<<10)
	e := openTCP(t, &Options{OutRate: lim, MaxWriteBuffer: 1 << 20})
	n := counter(t, e.peer)
	start := time.Now()
	// Small writes into an empty buffer are not sent inline past the limit.
	for range 16 {
		if err := e.w.Write(make([]byte, 32<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if e.w.BufferSize() < 512<<10-2*64<<10 {
		t.Fatalf("buffer holds %d of 512 KiB written at once through a 64 KiB/s limit", e.w.BufferSize())
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	if err := e.w.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want it to wait for the limit", err)
	}
	if err := e.w.Write(make([]byte, 1<<20)); !errors.As(err, new(*WriteBufferFullError)) {
		t.Fatalf("a write past the cap = %v, want *WriteBufferFullError", err)
	}
	if err := e.w.Write(make([]byte, 1<<20-e.w.BufferSize())); err != nil {
		t.Fatalf("a write up to the cap: %v", err)
	}
	// At most the burst, one write charged after the fact, and the rate.
	if got, allowed := n.Load(), int64(2*64<<10+time.Since(start).Seconds()*(64<<10)); got > allowed {
		t.Fatalf("the peer got %d bytes through a 64 KiB/s limit, more than %d", got, allowed)
	}
	start = time.Now()
	e.w.Abort()
	waitStopped(t, e.w, start)
}

// waitStopped requires w's connection lost and its goroutines ended
// within promptly of start.
func waitStopped(t *testing.T, w *Writer, start time.Time) {
	t.Helper()
	w.t.mu.Lock()
	re, we := w.t.readerEndLocked(), w.t.writerEndLocked()
	w.t.mu.Unlock()
	timer := time.NewTimer(promptly - time.Since(start))
	defer timer.Stop()
	for _, ch := range []<-chan struct{}{w.Done(), re, we} {
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("the stream did not stop within %v: it waits for its limit", promptly)
		}
	}
}

// throttled opens a stream with InRate at 1 KiB/s whose reader has taken
// more than the burst, so that its next socket read is a minute away: it
// holds 320 KiB, not consumed.
func throttled(t *testing.T, open func(testing.TB, *Options) *env) *env {
	t.Helper()
	// The burst holds the whole first send, however it arrives; then the
	// limiter is put a minute into debt, and one more byte makes the reader
	// owe it.
	lim := rate.NewLimiter(1<<10, 320<<10)
	e := open(t, &Options{Limit: 1 << 20, InRate: lim})
	e.send(string(make([]byte, 320<<10-1)))
	e.synced()
	lim.ReserveN(time.Now(), 64<<10)
	e.send("x")
	e.synced()
	waitUntil(t, "the reader owes a minute", func() bool {
		e.r.t.mu.Lock()
		defer e.r.t.mu.Unlock()
		return time.Until(e.r.t.untilIn()) > 30*time.Second
	})
	return e
}

// Whatever stops a stream's reading ends a throttle wait at once: Close,
// Abort, StartTLS and a Relay taking the socket over (and Close ends the
// relay's wait).
func TestRateWaitInterruptible(t *testing.T) {
	t.Parallel()
	t.Run("close", func(t *testing.T) {
		t.Parallel()
		e := throttled(t, openTCP)
		start := time.Now()
		e.w.Close()
		if err := e.w.WaitClosed(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, e.w, start)
	})
	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		e := throttled(t, openUnix)
		start := time.Now()
		e.w.Abort()
		waitStopped(t, e.w, start)
	})
	t.Run("start_tls", func(t *testing.T) {
		t.Parallel()
		p := getPKI(t)
		e := throttled(t, openTCP)
		var wg sync.WaitGroup
		wg.Go(func() {
			tc := tls.Server(e.peer, p.serverConfig())
			_ = tc.SetDeadline(time.Now().Add(failAfter))
			_ = tc.Handshake()
		})
		defer wg.Wait()
		cfg := p.clientConfig()
		cfg.ServerName = "localhost"
		start := time.Now()
		ctx, cancel := context.WithTimeout(testCtx(t), promptly)
		defer cancel()
		if err := e.w.StartTLS(ctx, cfg, 0); err != nil {
			t.Fatalf("StartTLS of a throttled stream: %v (after %v)", err, time.Since(start))
		}
		if d := time.Since(start); d > promptly {
			t.Fatalf("StartTLS took %v", d)
		}
		// The plaintext read before stays readable.
		e.r.t.mu.Lock()
		got := e.r.t.buffered()
		e.r.t.mu.Unlock()
		if got != 320<<10 {
			t.Fatalf("%d bytes buffered after StartTLS, want %d", got, 320<<10)
		}
	})
	t.Run("relay", func(t *testing.T) {
		t.Parallel()
		a := throttled(t, openTCP)
		b := openTCP(t, &Options{})
		n := counter(t, b.peer)
		type res struct {
			aToB, bToA int64
			err        error
		}
		done := make(chan res, 1)
		go func() {
			x, y, err := Relay(a.w, b.w)
			done <- res{x, y, err}
		}()
		// The relay starts at once and sends what a holds; then it owes
		// the limit a minute, and Close must not wait for that.
		waitUntil(t, "the relay sent a's buffered bytes", func() bool { return n.Load() == 320<<10 })
		start := time.Now()
		a.w.Close()
		select {
		case r := <-done:
			if r.err != nil || r.aToB != 320<<10 {
				t.Fatalf("Relay = %d, %d, %v; want %d bytes a to b and no error", r.aToB, r.bToA, r.err, 320<<10)
			}
		case <-time.After(promptly):
			t.Fatal("Close did not end a relay waiting for its limit")
		}
		waitStopped(t, a.w, start)
	})
}

// Bytes a relay reads from a stream count against its InRate, bytes it
// writes to a stream against its OutRate, spliced or copied; an unlimited
// relay runs far faster.
func TestRelayRate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		bOpen  func(testing.TB, *Options) *env
		in     bool // a's InRate, else b's OutRate
		noRate bool
	}{
		{"in/tcp-tcp", openTCP, true, false},
		{"out/tcp-tcp", openTCP, false, false},
		{"in/tcp-unix", openUnix, true, false},
		{"unlimited", openTCP, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var aOpts, bOpts Options
			switch {
			case c.noRate:
			case c.in:
				aOpts.InRate = testLimiter()
			default:
				bOpts.OutRate = testLimiter()
			}
			a := openTCP(t, &aOpts)
			b := c.bOpen(t, &bOpts)
			n := counter(t, b.peer)
			done := make(chan error, 1)
			go func() {
				_, _, err := Relay(a.w, b.w)
				done <- err
			}()
			start := time.Now()
			flood(t, a, a.peer)
			span := rateSpan
			if c.noRate {
				span = fastSpan
			}
			time.Sleep(span)
			got := n.Load()
			elapsed := time.Since(start)
			if c.noRate {
				wantFast(t, "unlimited relay", got, elapsed)
			} else {
				wantRate(t, "relayed", got, got, elapsed, 1)
			}
			a.w.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Relay: %v", err)
				}
			case <-time.After(promptly):
				t.Fatal("Close did not end the relay promptly")
			}
		})
	}
}

// Streams sharing one limiter share its rate.
func TestRateShared(t *testing.T) {
	t.Parallel()
	t.Run("in", func(t *testing.T) {
		t.Parallel()
		lim := testLimiter()
		es := []*env{openTCP(t, &Options{Limit: 1 << 20, InRate: lim}), openUnix(t, &Options{Limit: 1 << 20, InRate: lim})}
		var wg sync.WaitGroup
		var got [2]int64
		start := time.Now()
		for i, e := range es {
			flood(t, e, e.peer)
			wg.Go(func() { got[i] = readFor(t, e, start, rateSpan) })
		}
		wg.Wait()
		moved := es[0].r.t.nreceived.Load() + es[1].r.t.nreceived.Load()
		wantRate(t, "two streams read through one InRate", moved, got[0]+got[1], time.Since(start), 2)
		if got[0] == 0 || got[1] == 0 {
			t.Errorf("one stream starved: %d and %d bytes", got[0], got[1])
		}
	})
	t.Run("out", func(t *testing.T) {
		t.Parallel()
		lim := testLimiter()
		es := []*env{openTCP(t, &Options{OutRate: lim}), openUnix(t, &Options{OutRate: lim})}
		var ns []*atomic.Int64
		var wg sync.WaitGroup
		for _, e := range es {
			ns = append(ns, counter(t, e.peer))
		}
		start := time.Now()
		for _, e := range es {
			wg.Go(func() { writeFor(t, e, start, rateSpan) })
		}
		wg.Wait()
		a, b := ns[0].Load(), ns[1].Load()
		wantRate(t, "two streams written through one OutRate", a+b, a+b, time.Since(start), 2)
		if a == 0 || b == 0 {
			t.Errorf("one stream starved: %d and %d bytes", a, b)
		}
	})
}

// charge, the debt model: transfers are charged after the fact in pieces
// of at most the burst; rate.Inf and nil cost nothing; a burst of 0 is paid
// at the rate without the bucket.
func TestRateCharge(t *testing.T) {
	t.Parallel()
	now := time.Now()
	if u := charge(nil, now, 1<<20); !u.IsZero() {
		t.Fatalf("nil limiter: wait until %v", u)
	}
	if u := charge(rate.NewLimiter(rate.Inf, 0), now, 1<<20); !u.IsZero() {
		t.Fatalf("rate.Inf: wait until %v", u)
	}
	if got := rateChunk(rate.NewLimiter(rate.Inf, 0), readSize); got != readSize {
		t.Fatalf("rate.Inf caps a read at %d", got)
	}
	lim := rate.NewLimiter(1000, 100)
	if got := rateChunk(lim, readSize); got != 100 {
		t.Fatalf("a burst of 100 caps a read at %d", got)
	}
	// 100 from the full bucket, then 100 and 50 in debt: 150 ms.
	if u := charge(lim, now, 250); u.Sub(now) != 150*time.Millisecond {
		t.Fatalf("250 bytes at 1000/s, burst 100: wait %v, want 150ms", u.Sub(now))
	}
	// The debt stays in the limiter: 100 more are due 250 ms from now.
	if u := charge(lim, now, 100); u.Sub(now) != 250*time.Millisecond {
		t.Fatalf("100 bytes more: wait %v, want 250ms", u.Sub(now))
	}
	zero := rate.NewLimiter(1000, 0)
	if got := rateChunk(zero, readSize); got != readSize {
		t.Fatalf("a burst of 0 caps a read at %d", got)
	}
	if u := charge(zero, now, 500); u.Sub(now) != 500*time.Millisecond {
		t.Fatalf("500 bytes at 1000/s, burst 0: wait %v, want 500ms", u.Sub(now))
	}
	if u := charge(rate.NewLimiter(0, 0), now, 1); u.Sub(now) < time.Hour {
		t.Fatalf("a limit of 0: wait only %v", u.Sub(now))
	}
	if u := charge(rate.NewLimiter(0, 10), now, 20); u.Sub(now) < time.Hour {
		t.Fatalf("a limit of 0 past its burst: wait only %v", u.Sub(now))
	}
}
