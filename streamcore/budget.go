package streamcore

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Budget is a memory budget shared by many streams (Options.Budget): the
// bytes their read buffers, kept replay bytes and write buffers hold
// together, plus the read buffers they have reserved for bytes on the way.
//
// Reading is reserved from the budget before each socket read, so the total
// never goes past Max. Above the soft mark (7/8 of Max) streams stop
// reading their sockets, which pushes back on their peers through TCP; a
// stream whose read is waiting for data may still read up to Max, so that
// a caller that reads is never starved by streams whose callers do not.
// A write that would take the total past the soft mark fails with
// *BudgetError and accepts nothing (a write of at most 64 KiB into an empty
// write buffer may go up to Max: the socket most likely takes it at once).
// Paused streams resume, oldest first, as the total falls below the soft
// mark.
//
// A budget may be nested in another (Child), for example one per caller
// identity inside the daemon's: every byte charged to a child is charged
// to its parent too (and so on up), and a child has room only while it and
// every ancestor have room by their own marks. A stream stopped because a
// budget has no room resumes when that budget has room again. A budget
// holds no goroutine while nothing it stopped waits for room, and needs no
// closing: one that no stream uses any more is simply dropped.
type Budget struct {
	max, soft int64
	used      atomic.Int64
	parent    *Budget // nil for a budget of its own (NewBudget)

	mu      sync.Mutex
	paused  []pausedReader // readers paused by this budget, in the order paused
	npaused atomic.Int64   // len(paused), read without mu
	waking  bool           // a goroutine is resuming paused readers
}

// pausedReader is a reader a budget stopped; gen tells this pause from a
// later one of the same reader (transport.bgen).
type pausedReader struct {
	t   *transport
	gen uint64
}

// NewBudget returns a budget of max bytes (at least one read buffer).
func NewBudget(size int64) *Budget {
	size = max(size, readSize)
	return &Budget{max: size, soft: size - size/8}
}

// Child returns a budget of size bytes (at least one read buffer) nested in
// b. Every byte charged to the child is charged to b as well, and the child
// refuses (reading stops, a write fails with *BudgetError) when it or any
// ancestor has no room by its own soft mark and Max. The child reports its
// own Used and Max; its Tight is also true when an ancestor is tight.
// Children are cheap: a child nothing is charged to holds no goroutine and
// is garbage once dropped. A child may be larger than b (then b binds
// first).
func (b *Budget) Child(size int64) *Budget {
	c := NewBudget(size)
	c.parent = b
	return c
}

// Max returns the budget's size.
func (b *Budget) Max() int64 { return b.max }

// Used returns the bytes charged now (to this budget: a parent's Used
// includes its children's).
func (b *Budget) Used() int64 { return b.used.Load() }

// Tight reports whether the total has reached the soft mark, where streams
// stop reading, in this budget or any ancestor: a caller should not take on
// new streams then.
func (b *Budget) Tight() bool {
	for ; b != nil; b = b.parent {
		if b.used.Load() >= b.soft {
			return true
		}
	}
	return false
}

// BudgetError reports a write refused because the memory budget has no
// room for it. Nothing was accepted.
type BudgetError struct {
	Size      int   // bytes the write offered
	Used, Max int64 // the budget that refused (the stream's or an ancestor), when it refused
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("write of %d bytes refused: the memory budget holds %d of %d bytes", e.Size, e.Used, e.Max)
}

// reserve takes up to n bytes for a read that is about to happen, up to
// the soft mark, or up to Max for a stream with a waiting read, in b and
// every ancestor. It returns how many it took; when that is 0, also the
// budget that had no room.
func (b *Budget) reserve(n int64, waiting bool) (int64, *Budget) {
	take := b.reserveOwn(n, waiting)
	if take == 0 {
		return 0, b
	}
	if b.parent == nil {
		return take, nil
	}
	got, by := b.parent.reserve(take, waiting)
	if got < take {
		// An ancestor had less room: give back what it could not match.
		b.addOwn(got - take)
	}
	return got, by
}

// reserveOwn is reserve in b alone.
func (b *Budget) reserveOwn(n int64, waiting bool) int64 {
	limit := b.soft
	if waiting {
		limit = b.max
	}
	for {
		u := b.used.Load()
		take := min(n, limit-u)
		if take <= 0 {
			return 0
		}
		if b.used.CompareAndSwap(u, u+take) {
			return take
		}
	}
}

// smallWrite is the largest write that may use the budget's reserve.
const smallWrite = 64 << 10

// take charges n bytes for a write, unless that would go past the soft
// mark (past Max for a small write) of b or an ancestor. It returns nil, or
// the budget that had no room (and then nothing is charged).
func (b *Budget) take(n int64, small bool) *Budget {
	if !b.takeOwn(n, small) {
		return b
	}
	if b.parent != nil {
		if by := b.parent.take(n, small); by != nil {
			b.addOwn(-n)
			return by
		}
	}
	return nil
}

// takeOwn is take in b alone.
func (b *Budget) takeOwn(n int64, small bool) bool {
	limit := b.soft
	if small {
		limit = b.max
	}
	for {
		u := b.used.Load()
		if u+n > limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// add changes the charge of b and its ancestors by d (negative: released),
// resuming paused readers where there may be room again.
func (b *Budget) add(d int64) {
	for ; b != nil; b = b.parent {
		b.addOwn(d)
	}
}

// addOwn is add in b alone.
func (b *Budget) addOwn(d int64) {
	b.used.Add(d)
	if d < 0 && b.npaused.Load() > 0 {
		b.kick()
	}
}

// kick starts resuming paused readers, unless that is under way.
func (b *Budget) kick() {
	b.mu.Lock()
	start := len(b.paused) > 0 && !b.waking
	b.waking = b.waking || start
	b.mu.Unlock()
	if start {
		go b.resume()
	}
}

// unpause forgets a paused reader (its connection is gone, or a read that
// waits resumed it). t's lock is held.
func (b *Budget) unpause(t *transport) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.paused = slices.DeleteFunc(b.paused, func(p pausedReader) bool { return p.t == t })
	b.npaused.Store(int64(len(b.paused)))
}

// pause queues a reader the budget stopped; the caller kicks the budget
// afterwards, so that room that came back meanwhile resumes it. t's lock
// is held.
func (b *Budget) pause(t *transport, gen uint64) {
	b.mu.Lock()
	b.paused = append(b.paused, pausedReader{t, gen})
	b.npaused.Add(1)
	b.mu.Unlock()
}

// resume lets paused readers read again, oldest first, while there is
// room: below the soft mark, or below Max for a reader whose read waits;
// about as many as the room can feed, one read buffer each. (A resumed
// reader that finds no room in an ancestor pauses again, on that one.)
func (b *Budget) resume() {
	for {
		b.mu.Lock()
		used := b.used.Load()
		var batch []pausedReader
		keep := b.paused[:0]
		for _, p := range b.paused {
			mark := b.soft
			if p.t.readWaits.Load() {
				mark = b.max
			}
			if used < mark {
				batch = append(batch, p)
				used += readSize // what it may take
			} else {
				keep = append(keep, p)
			}
		}
		clear(b.paused[len(keep):])
		b.paused = keep
		b.npaused.Store(int64(len(keep)))
		if len(batch) == 0 {
			b.waking = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		for _, p := range batch {
			t := p.t
			t.mu.Lock()
			// Only the pause this entry was queued for: the reader may
			// have been resumed by a waiting read and paused again since.
			if t.bpaused && t.pausedOn == b && t.bgen == p.gen {
				t.bpaused = false
				t.pausedOn = nil
				signal(t.readCond)
			}
			t.mu.Unlock()
		}
	}
}
