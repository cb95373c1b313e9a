package streamcore

import (
	"bytes"
	"errors"
	"testing"
)

// budgetIdle reports whether b queues no reader and runs no goroutine.
func budgetIdle(b *Budget) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.paused) == 0 && !b.waking && b.npaused.Load() == 0
}

// pausedOn returns the budget that stopped e's reading, or nil.
func pausedOn(e *env) *Budget {
	e.r.t.mu.Lock()
	defer e.r.t.mu.Unlock()
	if !e.r.t.bpaused {
		return nil
	}
	return e.r.t.pausedOn
}

// The accounting of nested budgets, without sockets: a charge goes to every
// level, the first level without room refuses (and is named), nothing
// stays charged after a refusal, and a child reports its own numbers.
func TestBudgetChildAccounting(t *testing.T) {
	t.Parallel()
	p := NewBudget(4 << 20)
	c1 := p.Child(1 << 20)
	c2 := p.Child(8 << 20) // larger than its parent: the parent binds
	if c1.Max() != 1<<20 || c2.Max() != 8<<20 || p.Max() != 4<<20 {
		t.Fatalf("Max: child %d, child %d, parent %d", c1.Max(), c2.Max(), p.Max())
	}
	if tiny := p.Child(1); tiny.Max() != readSize {
		t.Fatalf("a tiny child has Max %d, want one read buffer (%d)", tiny.Max(), readSize)
	}

	// c1 fills to its own soft mark and then refuses, naming itself.
	var in1 int64
	for {
		got, by := c1.reserve(readSize, false)
		if got == 0 {
			if by != c1 {
				t.Fatalf("c1 full: refused by %p, want c1 %p (parent %p)", by, c1, p)
			}
			break
		}
		if by != nil {
			t.Fatalf("reserve of %d gave %d and named %p", readSize, got, by)
		}
		in1 += got
	}
	if in1 != c1.soft || c1.Used() != c1.soft || p.Used() != c1.soft {
		t.Fatalf("c1 reserved %d: c1 used %d, parent used %d, want c1's soft mark %d in both", in1, c1.Used(), p.Used(), c1.soft)
	}
	if !c1.Tight() || p.Tight() || c2.Tight() {
		t.Fatalf("Tight: c1 %v (want true), parent %v, c2 %v (want false)", c1.Tight(), p.Tight(), c2.Tight())
	}
	if by := c1.take(1, false); by != c1 {
		t.Fatalf("a write into a full c1 refused by %p, want c1", by)
	}
	// A waiting read may still use the reserve, up to c1's Max.
	if got, _ := c1.reserve(1<<30, true); got != c1.max-c1.soft {
		t.Fatalf("a waiting read reserved %d, want %d", got, c1.max-c1.soft)
	}
	c1.add(-(c1.max - c1.soft))

	// c2 has room of its own but its parent fills: the parent refuses.
	var in2 int64
	for {
		got, by := c2.reserve(readSize, false)
		if got == 0 {
			if by != p {
				t.Fatalf("parent full: refused by %p, want the parent %p", by, p)
			}
			break
		}
		in2 += got
	}
	if p.Used() != p.soft || c2.Used() != p.soft-c1.soft || in2 != c2.Used() {
		t.Fatalf("parent used %d (soft %d), c2 used %d (reserved %d), c1 used %d", p.Used(), p.soft, c2.Used(), in2, c1.Used())
	}
	if c2.Used() >= c2.soft || !c2.Tight() {
		t.Fatalf("c2 used %d of soft %d and Tight %v: want Tight through its parent", c2.Used(), c2.soft, c2.Tight())
	}
	if by := c2.take(1, false); by != p {
		t.Fatalf("a write into c2 under a full parent refused by %p, want the parent", by)
	}
	if c2.Used() != in2 || c1.Used() != c1.soft {
		t.Fatalf("a refused write left charges: c2 %d (want %d), c1 %d", c2.Used(), in2, c1.Used())
	}
	// A grandchild charges all three levels, and the levels above refuse
	// for it.
	g := c2.Child(1 << 20)
	if by := g.take(10, false); by != p {
		t.Fatalf("grandchild write under a full grandparent refused by %p", by)
	}
	c1.add(-c1.Used())
	if by := g.take(10, false); by != nil {
		t.Fatalf("grandchild write refused by %p with room everywhere", by)
	}
	if g.Used() != 10 || c2.Used() != in2+10 || p.Used() != in2+10 {
		t.Fatalf("grandchild charge of 10: grandchild %d, child %d, parent %d", g.Used(), c2.Used(), p.Used())
	}
	g.add(-10)
	c2.add(-in2)
	for _, b := range []*Budget{p, c1, c2, g} {
		if b.Used() != 0 || b.Tight() || !budgetIdle(b) {
			t.Fatalf("budget %p: used %d, Tight %v, idle %v after everything went back", b, b.Used(), b.Tight(), budgetIdle(b))
		}
	}
}

// Streams on a child budget: charges show in the child and its parent; a
// child at its limit stops only its own streams while a sibling's keep
// reading; a write the child refuses reports the child's numbers; reading
// brings the room back and the stopped stream resumes.
func TestBudgetChildStreams(t *testing.T) {
	t.Parallel()
	p := NewBudget(64 << 20)
	c1, c2 := p.Child(1<<20), p.Child(1<<20)
	a := openTCP(t, &Options{Limit: 4 << 20, Budget: c1})
	b := openTCP(t, &Options{Limit: 4 << 20, Budget: c2})

	b.sendSync("0123456789")
	// (Eventually: the read goroutine reserves a read buffer while it
	// looks for more.)
	waitUntil(t, "10 bytes charged to c2 and the parent", func() bool {
		return c2.Used() == 10 && p.Used() == 10 && c1.Used() == 0
	})
	wantBytes(t, "b's first bytes", mustRead(t, b, 10), nil, "0123456789")

	// a's peer floods: a stops at c1's soft mark, stopped by c1.
	sent := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	go func() { _, _ = a.peer.Write(sent) }()
	waitUntil(t, "a's reading stopped by c1", func() bool { return pausedOn(a) == c1 })
	if used := c1.Used(); used > c1.Max() || used < c1.soft-readSize {
		t.Fatalf("c1 used %d of %d (soft %d) when a stopped", used, c1.Max(), c1.soft)
	}
	if p.Used() != c1.Used() {
		t.Fatalf("parent used %d, c1 used %d: the child's charge is not the parent's", p.Used(), c1.Used())
	}
	if !c1.Tight() || c2.Tight() || p.Tight() {
		t.Fatalf("Tight: c1 %v, c2 %v, parent %v", c1.Tight(), c2.Tight(), p.Tight())
	}

	// A write c1 refuses reports c1's numbers, not the parent's.
	used := c1.Used()
	err := a.w.Write(make([]byte, 1<<20))
	var be *BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("a write past c1 = %v, want *BudgetError", err)
	}
	if be.Max != c1.Max() || be.Used != used || be.Size != 1<<20 {
		t.Fatalf("BudgetError %+v, want Used %d Max %d (c1's)", *be, used, c1.Max())
	}
	if a.w.BufferSize() != 0 || c1.Used() != used {
		t.Fatal("a refused write charged bytes")
	}

	// The sibling child keeps reading while a stays stopped.
	chunk := bytes.Repeat([]byte("x"), 512<<10)
	b.send(string(chunk))
	b.synced()
	if pausedOn(a) != c1 {
		t.Fatal("a resumed while c1 had no room")
	}
	if got := mustReadN(t, b, len(chunk)); !bytes.Equal(got, chunk) {
		t.Fatal("b's bytes are wrong")
	}

	// Reading a brings the room back: a resumes and everything arrives.
	if got := mustReadN(t, a, len(sent)); !bytes.Equal(got, sent) {
		t.Fatal("a's bytes lost or reordered under c1")
	}
	waitUntil(t, "every budget empty and idle", func() bool {
		return p.Used() == 0 && c1.Used() == 0 && c2.Used() == 0 && budgetIdle(p) && budgetIdle(c1) && budgetIdle(c2)
	})
}

// A parent at its limit stops the streams of every child, each on the
// parent, even a child with nothing charged; reading brings them all back.
func TestBudgetChildParentFull(t *testing.T) {
	t.Parallel()
	p := NewBudget(1 << 20)
	c1, c2, c3 := p.Child(4<<20), p.Child(4<<20), p.Child(4<<20)
	a := openTCP(t, &Options{Limit: 4 << 20, Budget: c1})
	b := openTCP(t, &Options{Limit: 4 << 20, Budget: c2})
	d := openTCP(t, &Options{Budget: c3})

	sentA := bytes.Repeat([]byte("a0123456789abcde"), 2<<20/16)
	sentB := bytes.Repeat([]byte("b0123456789abcde"), 2<<20/16)
	go func() { _, _ = a.peer.Write(sentA) }()
	go func() { _, _ = b.peer.Write(sentB) }()
	waitUntil(t, "a and b stopped by the parent", func() bool { return pausedOn(a) == p && pausedOn(b) == p })
	if used := p.Used(); used > p.Max() || used < p.soft {
		t.Fatalf("parent used %d of %d (soft %d) with every reader stopped", used, p.Max(), p.soft)
	}
	if p.Used() != c1.Used()+c2.Used() {
		t.Fatalf("parent used %d, children %d + %d", p.Used(), c1.Used(), c2.Used())
	}
	if !c3.Tight() || c3.Used() != 0 || c1.Used() >= c1.soft {
		t.Fatalf("c3: Tight %v used %d (want Tight through the parent, 0); c1 used %d", c3.Tight(), c3.Used(), c1.Used())
	}

	// d's child is empty, but the parent has no room: d stops on it
	// without taking a byte.
	d.send("hello")
	waitUntil(t, "d stopped by the parent", func() bool { return pausedOn(d) == p })
	if n := d.r.t.nreceived.Load(); n != 0 {
		t.Fatalf("d received %d bytes with the parent full", n)
	}

	// A write refused by the parent reports the parent's numbers.
	used := p.Used()
	var be *BudgetError
	if err := d.w.Write(make([]byte, 1<<20)); !errors.As(err, &be) || be.Max != p.Max() || be.Used != used {
		t.Fatalf("write under a full parent = %v, want *BudgetError with Used %d Max %d", err, used, p.Max())
	}

	// Reading frees the parent: everybody resumes.
	if got := mustReadN(t, a, len(sentA)); !bytes.Equal(got, sentA) {
		t.Fatal("a's bytes lost or reordered")
	}
	if got := mustReadN(t, b, len(sentB)); !bytes.Equal(got, sentB) {
		t.Fatal("b's bytes lost or reordered")
	}
	wantBytes(t, "d after the parent had room", mustReadN(t, d, 5), nil, "hello")
	waitUntil(t, "every budget empty and idle", func() bool {
		for _, x := range []*Budget{p, c1, c2, c3} {
			if x.Used() != 0 || !budgetIdle(x) {
				return false
			}
		}
		return true
	})
}

// Streams closed while stopped by a budget leave nothing queued on it, and
// short-lived children leave nothing behind.
func TestBudgetChildDropped(t *testing.T) {
	t.Parallel()
	p := NewBudget(64 << 20)
	for i := range 3 {
		c := p.Child(1 << 20)
		e := openTCP(t, &Options{Limit: 4 << 20, Budget: c})
		go func() { _, _ = e.peer.Write(make([]byte, 2<<20)) }()
		waitUntil(t, "the stream stopped by its child", func() bool { return pausedOn(e) == c })
		if i%2 == 0 {
			e.w.Abort()
		} else {
			e.w.Close()
		}
		<-e.w.Done()
		c.mu.Lock()
		queued := len(c.paused)
		c.mu.Unlock()
		if queued != 0 {
			t.Fatal("a lost stream is still queued on its budget")
		}
		e.r.Discard() // the bytes buffered stay readable (and charged) until then
		waitUntil(t, "the child empty and idle", func() bool { return c.Used() == 0 && budgetIdle(c) })
	}
	waitUntil(t, "the parent empty and idle", func() bool { return p.Used() == 0 && budgetIdle(p) })
}

// mustRead reads up to n bytes from e.
func mustRead(t *testing.T, e *env, n int) []byte {
	t.Helper()
	data, err := e.r.Read(testCtx(t), n)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mustReadN reads exactly n bytes from e, a read at a time.
func mustReadN(t *testing.T, e *env, n int) []byte {
	t.Helper()
	got := make([]byte, 0, n)
	for len(got) < n {
		got = append(got, mustRead(t, e, min(n-len(got), 256<<10))...)
	}
	return got
}
