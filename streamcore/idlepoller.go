package streamcore

import "sync/atomic"

// idlePoller says whether plain sockets' read goroutines hand an idle
// socket to the shared poller (see the package comment). It is off unless
// SetIdlePoller turns it on.
var idlePoller atomic.Bool

// SetIdlePoller turns the shared idle poller on or off for streams that
// next find their socket idle (streams already waiting in the poller stay
// there until it is readable). On, an idle plain socket holds no
// goroutine: about a third of the memory per idle connection. Off (the
// default), every stream keeps a read goroutine parked in the Go runtime's
// netpoller, which wakes a waiting read one hop sooner: the poller adds a
// goroutine start to the first read after idleness, measured as up to 30%
// on a unary echo round trip on a loaded 2-core machine.
func SetIdlePoller(on bool) {
	if on {
		StartPoller()
	}
	idlePoller.Store(on)
}
