package streamcore

import "sync/atomic"

// idlePoller says whether plain sockets' read goroutines hand an idle
// socket to the shared poller (see the package comment). It is off unless
// SetIdlePoller turns it on.
var idlePoller atomic.Bool

// SetIdlePoller turns the shared idle poller on or off for streams that
// next find their socket idle (streams already waiting in the poller stay
// there until it is readable). On, an idle plain socket holds no
// goroutine: half the memory per idle connection, with busy streams still
// waiting in the runtime's netpoller (see the package comment). Off (the
// default), every stream keeps a read goroutine parked in the Go runtime's
// netpoller.
func SetIdlePoller(on bool) {
	if on {
		StartPoller()
	}
	idlePoller.Store(on)
}
