//go:build !linux

package streamcore

import "syscall"

// Without epoll every stream keeps a read goroutine of its own.

func (t *transport) armLocked(syscall.RawConn) (ctlErr, pollErr error) { return nil, errNoPoller }

func (t *transport) disarmLocked() bool { return false }

// StartPoller does nothing: there is no poller.
func StartPoller() {}

// PollerGoroutine names the poller's goroutine, which only Linux has.
const PollerGoroutine = "github.com/streammgr/streammgr/streamcore.(*poller).run"

func (t *transport) unarmLocked() {}
