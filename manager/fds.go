package manager

import (
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/streammgr/streammgr/streamcore"
)

// fdTally counts the file descriptors streams and servers hold, so that
// a reserve is always left for the daemon's own work: control connections
// (up to --max-connections), TLS handshakes in progress, the log. Past it,
// new streams fail at once with TOO_MANY_OPEN_FILES instead of taking the
// descriptors the control listener and health need; the daemon recovers by
// itself as streams close. The process's limit (RLIMIT_NOFILE) is read on
// every use, so a changed limit takes effect at once.
type fdTally struct {
	used    atomic.Int64
	reserve int64
}

func newFDCount(cfg Config) *fdTally {
	return &fdTally{reserve: int64(cfg.MaxConnections) + streamcore.DefaultMaxHandshakes + 64}
}

// max is how many descriptors streams and servers may hold: the limit less
// the reserve, but never less than half the limit.
func (c *fdTally) max() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1 << 20
	}
	limit := int64(rl.Cur)
	return max(limit-c.reserve, limit/2)
}

// take claims n descriptors, or fails with *fdError.
func (c *fdTally) take(n int64) error {
	limit := c.max()
	for {
		u := c.used.Load()
		if u+n > limit {
			return &fdError{limit: limit}
		}
		if c.used.CompareAndSwap(u, u+n) {
			return nil
		}
	}
}

// give returns n descriptors.
func (c *fdTally) give(n int64) { c.used.Add(-n) }

// hold makes w's descriptor go back when its connection is lost.
func (c *fdTally) hold(w *streamcore.Writer) { w.AfterLost(func() { c.give(1) }) }

// fdError refuses a new stream when streams hold every descriptor outside
// the reserve.
type fdError struct{ limit int64 }

func (e *fdError) Error() string {
	return "too many open files: streams and servers hold the " + strconv.FormatInt(e.limit, 10) + " descriptors the daemon gives them"
}
