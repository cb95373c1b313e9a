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
// write buffer may go up to Max: the socket most likely takes it at once). Paused streams resume, oldest first, as the total falls
// below the soft mark.
type Budget struct {
	max, soft int64
	used      atomic.Int64

	mu      sync.Mutex
	paused  []*transport // readers paused by the budget, in the order paused
	npaused atomic.Int64 // len(paused), read without mu
	waking  bool         // a goroutine is resuming paused readers
}

// NewBudget returns a budget of max bytes (at least one read buffer).
func NewBudget(size int64) *Budget {
	size = max(size, readSize)
	return &Budget{max: size, soft: size - size/8}
}

// Max returns the budget's size.
func (b *Budget) Max() int64 { return b.max }

// Used returns the bytes charged now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Tight reports whether the total has reached the soft mark, where streams
// stop reading: a caller should not take on new streams then.
func (b *Budget) Tight() bool { return b.used.Load() >= b.soft }

// BudgetError reports a write refused because the memory budget has no
// room for it. Nothing was accepted.
type BudgetError struct {
	Size      int   // bytes the write offered
	Used, Max int64 // the budget when it was refused
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("write of %d bytes refused: the memory budget holds %d of %d bytes", e.Size, e.Used, e.Max)
}

// reserve takes up to n bytes for a read that is about to happen, up to
// the soft mark, or up to Max for a stream with a waiting read. It returns
// how many it took (0: none).
func (b *Budget) reserve(n int64, waiting bool) int64 {
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
// mark (past Max for a small write).
func (b *Budget) take(n int64, small bool) bool {
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

// add changes the charge by d (negative: released), resuming paused
// readers when there may be room again.
func (b *Budget) add(d int64) {
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

// unpause forgets a paused reader whose connection is gone. t's lock is
// held.
func (b *Budget) unpause(t *transport) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.paused, t); i >= 0 {
		b.paused = slices.Delete(b.paused, i, i+1)
		b.npaused.Add(-1)
	}
}

// pause queues a reader the budget stopped, and resumes it at once if room
// came back meanwhile. t's lock is held.
func (b *Budget) pause(t *transport) {
	b.mu.Lock()
	b.paused = append(b.paused, t)
	b.npaused.Add(1)
	b.mu.Unlock()
}

// resume lets paused readers read again, oldest first, while there is
// room: below the soft mark, or below Max for a reader whose read waits;
// about as many as the room can feed, one read buffer each.
func (b *Budget) resume() {
	for {
		b.mu.Lock()
		used := b.used.Load()
		var batch []*transport
		keep := b.paused[:0]
		for _, t := range b.paused {
			mark := b.soft
			if t.readWaits.Load() {
				mark = b.max
			}
			if used < mark {
				batch = append(batch, t)
				used += readSize // what it may take
			} else {
				keep = append(keep, t)
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
		for _, t := range batch {
			t.mu.Lock()
			if t.bpaused {
				t.bpaused = false
				t.readCond.Signal()
			}
			t.mu.Unlock()
		}
	}
}
