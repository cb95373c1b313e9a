package manager

import (
	"context"
	"slices"
	"sync"
)

// acceptQueue is a bounded FIFO of accepted connections (registered
// streams in state "queued"). pop waits; an item can be put back at the
// head, so a claim that fails to deliver loses nothing.
type acceptQueue struct {
	mu     sync.Mutex
	items  []*Stream
	cap    int
	closed bool
	ready  chan struct{} // closed and replaced when items arrive or on close
}

func newAcceptQueue(capacity int) *acceptQueue {
	return &acceptQueue{cap: capacity, ready: make(chan struct{})}
}

func (q *acceptQueue) notifyLocked() {
	close(q.ready)
	q.ready = make(chan struct{})
}

// push appends st; false when the queue is full or closed.
func (q *acceptQueue) push(st *Stream) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.items) >= q.cap {
		return false
	}
	q.items = append(q.items, st)
	q.notifyLocked()
	return true
}

// pushFront puts st back at the head (even when full: it was just taken).
func (q *acceptQueue) pushFront(st *Stream) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.items = append([]*Stream{st}, q.items...)
	q.notifyLocked()
	return true
}

// remove takes st out of the queue, if it is there.
func (q *acceptQueue) remove(st *Stream) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.items, st); i >= 0 {
		q.items = slices.Delete(q.items, i, i+1)
	}
}

// errQueueClosed is returned by pop once the server is closed.
type errQueueClosed struct{}

func (errQueueClosed) Error() string { return "server closed" }

// pop takes the head, waiting until one arrives, ctx ends or the queue
// closes.
func (q *acceptQueue) pop(ctx context.Context) (*Stream, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err // a caller that is gone claims nothing
		}
		q.mu.Lock()
		if len(q.items) > 0 {
			st := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return st, nil
		}
		if q.closed {
			q.mu.Unlock()
			return nil, errQueueClosed{}
		}
		ready := q.ready
		q.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (q *acceptQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *acceptQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.notifyLocked()
	}
}

// drain removes and returns everything queued.
func (q *acceptQueue) drain() []*Stream {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}
