package streamcore

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller watches the sockets of idle plain streams for readability with
// one epoll instance and one goroutine for the whole process, so that an
// idle stream holds no goroutine: its read goroutine arms the socket here
// (level-triggered, EPOLLONESHOT) when a read would block, and exits; the
// poller starts a new one when the socket is readable, has a FIN or an
// error pending. The Go runtime's poller keeps its own registration of the
// same socket, which does no harm.
//
// An event names its stream by an id, never by its descriptor or a
// pointer, so that an event about a descriptor closed (or closed and
// reused) since it was armed finds nothing, or a stream that is no longer
// armed, and is dropped. A stream deregisters before its socket closes
// (disarmLocked); a socket closed under the stream by someone else leaves
// the epoll set by itself (the kernel removes it with the last reference
// to the file), and every epoll_ctl on it runs inside RawConn.Control, so
// that it never reaches a descriptor number reused by another file.
type poller struct {
	epfd int

	mu     sync.Mutex
	byID   map[uint64]*transport
	nextID uint64
}

// PollerGoroutine names the function of the one goroutine the package
// keeps for the whole process once a stream has used the poller, for leak
// checkers such as goleak.IgnoreAnyFunction.
const PollerGoroutine = "github.com/streammgr/streammgr/streamcore.(*poller).run"

var (
	thePoller     *poller
	thePollerOnce sync.Once
)

// StartPoller starts the process's poller now, instead of when a stream
// first waits for readability, so that a daemon's baseline of goroutines
// and descriptors (the poller has one of each) already includes it.
func StartPoller() { getPoller() }

// getPoller returns the process's poller, started on first use, or nil when
// epoll is unavailable (streams then keep a read goroutine each).
func getPoller() *poller {
	thePollerOnce.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		thePoller = &poller{epfd: fd, byID: map[uint64]*transport{}}
		go thePoller.run()
	})
	return thePoller
}

// run waits for events for ever (the epoll instance lives as long as the
// process).
func (p *poller) run() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			// EINTR; nothing else can happen to a valid epoll descriptor
			// with a valid buffer.
			continue
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			t := p.byID[id]
			p.mu.Unlock()
			if t != nil {
				t.readable(id)
			}
		}
	}
}

// register gives t an id for its events.
func (p *poller) register(t *transport) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	p.byID[p.nextID] = t
	return p.nextID
}

func (p *poller) unregister(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byID, id)
}

// registered returns how many streams have an id (for tests).
func (p *poller) registered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byID)
}

// armLocked asks the poller to start t's read goroutine once rc is
// readable. ctlErr is rc's (its descriptor is closed); pollErr is epoll's,
// after which t reads with a goroutine of its own.
func (t *transport) armLocked(rc syscall.RawConn) (ctlErr, pollErr error) {
	p := getPoller()
	if p == nil {
		return nil, errNoPoller
	}
	if t.pollID == 0 {
		t.pollID = p.register(t)
	}
	id := t.pollID
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	ctlErr = rc.Control(func(fd uintptr) {
		op := unix.EPOLL_CTL_ADD
		if t.pollAdded {
			op = unix.EPOLL_CTL_MOD
		}
		pollErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		switch {
		case pollErr == unix.EEXIST:
			pollErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		case pollErr == unix.ENOENT:
			pollErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if ctlErr == nil && pollErr == nil {
		t.pollAdded = true
		t.armed = true
	}
	return ctlErr, pollErr
}

// disarmLocked takes t out of the poller (before its socket closes) and
// reports whether it was armed, that is, whether its read goroutine was
// parked here.
func (t *transport) disarmLocked() bool {
	was := t.armed
	t.unarmLocked()
	if t.pollID != 0 {
		getPoller().unregister(t.pollID)
		t.pollID = 0
	}
	return was
}

// unarmLocked takes t's socket out of the epoll set, keeping its id (for
// a read goroutine that waits in the runtime's netpoller instead, and for
// disarmLocked). Only plain sockets are armed, through their rawSyscall,
// and a stream leaves the poller before StartTLS replaces its connection.
func (t *transport) unarmLocked() {
	t.armed = false
	if t.pollAdded && t.rawSyscall != nil {
		p := getPoller()
		_ = t.rawSyscall.Control(func(fd uintptr) {
			_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	t.pollAdded = false
}

// readable is the poller's event for id: t's socket can be read.
func (t *transport) readable(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.armed || t.pollID != id {
		return
	}
	t.armed = false
	go t.readLoop(t.conn, true)
}
