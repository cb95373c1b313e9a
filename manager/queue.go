package manager

import (
	"context"
	"sync"

	"github.com/streammgr/streammgr/streamcore"
)

// pending is an accepted connection not yet claimed.
type pending struct {
	r *streamcore.Reader
	w *streamcore.Writer
}

// acceptQueue is a bounded FIFO of accepted connections. pop waits; an item
// can be put back at the head, so a claim that fails to deliver loses
// nothing.
type acceptQueue struct {
	mu     sync.Mutex
	items  []pending
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

// push appends p; false when the queue is full or closed.
func (q *acceptQueue) push(p pending) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.items) >= q.cap {
		return false
	}
	q.items = append(q.items, p)
	q.notifyLocked()
	return true
}

// pushFront puts p back at the head (even when full: it was just taken).
func (q *acceptQueue) pushFront(p pending) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.items = append([]pending{p}, q.items...)
	q.notifyLocked()
	return true
}

// errQueueClosed is returned by pop once the server is closed.
type errQueueClosed struct{}

func (errQueueClosed) Error() string { return "server closed" }

// pop takes the head, waiting until one arrives, ctx ends or the queue
// closes.
func (q *acceptQueue) pop(ctx context.Context) (pending, error) {
	for {
		if err := ctx.Err(); err != nil {
			return pending{}, err // a caller that is gone claims nothing
		}
		q.mu.Lock()
		if len(q.items) > 0 {
			p := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return p, nil
		}
		if q.closed {
			q.mu.Unlock()
			return pending{}, errQueueClosed{}
		}
		ready := q.ready
		q.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return pending{}, ctx.Err()
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
func (q *acceptQueue) drain() []pending {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}
