package streamcore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// Streams sharing a budget stop reading at its soft mark, never hold more
// than its size, refuse writes with no room, let a stream whose read waits
// use the reserve, and give everything back.
func TestBudget(t *testing.T) {
	t.Parallel()
	b := NewBudget(1 << 20)
	opts := &Options{Limit: 4 << 20, Budget: b} // the budget binds first
	a := openTCP(t, opts)
	c := openTCP(t, opts)

	// A fast peer on a: reading stops near the soft mark; TCP holds the rest.
	sent := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	go func() { _, _ = a.peer.Write(sent) }()
	waitUntil(t, "a's reading stopped by the budget", func() bool {
		a.r.t.mu.Lock()
		defer a.r.t.mu.Unlock()
		return a.r.t.bpaused
	})
	if used := b.Used(); used > b.Max() || used < b.soft-readSize {
		t.Fatalf("budget used %d of %d (soft %d) when reading stopped", used, b.Max(), b.soft)
	}
	if a.r.IsReading() {
		t.Fatal("IsReading while stopped by the budget")
	}
	if !b.Tight() {
		t.Fatal("Tight() = false above the soft mark")
	}

	// A write with no room is refused whole.
	before := c.w.Written()
	if err := c.w.Write(make([]byte, b.Max())); !errors.As(err, new(*BudgetError)) {
		t.Fatalf("write past the budget = %v, want *BudgetError", err)
	}
	if c.w.Written() != before || c.w.BufferSize() != 0 {
		t.Fatal("a refused write accepted bytes")
	}

	// c's read waits: it may use the reserve above the soft mark.
	read := goRead(func() ([]byte, error) { return c.r.ReadExactly(testCtx(t), 5) })
	waitForWaiter(t, c.r)
	c.send("hello")
	res := recv(t, read)
	wantBytes(t, "a waiting read under a tight budget", res.data, res.err, "hello")
	if used := b.Used(); used > b.Max() {
		t.Fatalf("budget used %d > max %d", used, b.Max())
	}

	// a's reader takes everything, in order; the budget resumes its socket.
	got := make([]byte, 0, len(sent))
	for len(got) < len(sent) {
		data, err := a.r.Read(testCtx(t), 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, data...)
		if used := b.Used(); used > b.Max() {
			t.Fatalf("budget used %d > max %d", used, b.Max())
		}
	}
	if !bytes.Equal(got, sent) {
		t.Fatal("bytes lost or reordered under the budget")
	}
	waitUntil(t, "the budget emptied", func() bool { return b.Used() == 0 })
}

// Bytes kept for replay, buffered writes and buffered reads are charged;
// Discard and the connection's loss give them back.
func TestBudgetAccounting(t *testing.T) {
	t.Parallel()
	b := NewBudget(64 << 20)
	e := openTCP(t, &Options{Replay: true, Budget: b})
	e.sendSync("0123456789")
	if b.Used() != 10 {
		t.Fatalf("used %d with 10 bytes buffered", b.Used())
	}
	run(t, e.r, 0, readN(4))
	if b.Used() != 10 {
		t.Fatalf("used %d with 6 buffered and 4 kept", b.Used())
	}
	run(t, e.r, 4, readN(0))
	if b.Used() != 6 {
		t.Fatalf("used %d with 6 buffered, nothing kept", b.Used())
	}
	e.r.Discard()
	if b.Used() != 0 {
		t.Fatalf("used %d after Discard", b.Used())
	}
	// Writes the peer does not read stay buffered and charged.
	if err := e.w.SetWriteBufferLimits(1, 0); err != nil {
		t.Fatal(err)
	}
	for e.w.BufferSize() == 0 {
		if err := e.w.Write(make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Used(); got != int64(e.w.BufferSize()) {
		t.Fatalf("used %d with %d bytes unsent", got, e.w.BufferSize())
	}
	e.w.Abort()
	if b.Used() != 0 {
		t.Fatalf("used %d after Abort", b.Used())
	}
}

// A read that waits is never starved by streams nobody reads, whenever its
// bytes arrive: before it waits (its socket was paused by the budget) or
// while (its reader meets the budget as it begins to wait).
func TestBudgetWaitingReadNotStarved(t *testing.T) {
	t.Parallel()
	b := NewBudget(8 << 20)
	flood := &Options{Limit: 1 << 20, Budget: b}
	var peers []*env
	for range 20 {
		peers = append(peers, openTCP(t, flood))
	}
	honest := openTCP(t, &Options{Budget: b, Replay: true})
	go func() { _, _ = io.Copy(honest.peer, honest.peer) }()
	payload := make([]byte, 4<<20)
	for _, p := range peers {
		go func() { _, _ = p.peer.Write(payload) }()
	}
	msg := []byte("honest client 16")
	var in int64
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		if err := honest.w.Write(msg); err != nil {
			t.Fatalf("honest write: %v", err)
		}
		ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
		data, next, err := honest.r.Run(ctx, in, ReadOp{Kind: OpReadExactly, N: len(msg)})
		cancel()
		if err != nil {
			t.Fatalf("honest read at offset %d with the budget at %d of %d: %v", in, b.Used(), b.Max(), err)
		}
		wantBytes(t, "echo", data, nil, string(msg))
		in = next
	}
}

// TestBudgetWriteSentAtOnce: a write the socket takes at once gives its
// charge back: writing much more than the budget, in writes the peer
// reads as they come, never runs it out.
func TestBudgetWriteSentAtOnce(t *testing.T) {
	b := NewBudget(1 << 20)
	e := openTCP(t, &Options{Budget: b})
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, e.peer)
		done <- n
	}()
	chunk := make([]byte, 16<<10)
	for i := range 1024 { // 16 MiB through a 1 MiB budget
		if err := e.w.Write(chunk); err != nil {
			t.Fatalf("write %d: %v (budget used %d)", i, err, b.Used())
		}
		if err := e.w.Drain(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the charge to be given back", func() bool { return b.Used() < 512<<10 })
	e.w.Close()
	if n := <-done; n != 16<<20 {
		t.Fatalf("peer got %d bytes", n)
	}
}
