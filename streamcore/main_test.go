package streamcore

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// stream, server and peer a test opens must be gone when it ends.
//
// The package's tests run with the idle poller on (the daemon's
// --idle-poller): every stream test then also tests the poller's path.
// STREAMMGR_IDLE_POLLER=0 runs them on the default path.
func TestMain(m *testing.M) {
	SetIdlePoller(os.Getenv("STREAMMGR_IDLE_POLLER") != "0")
	// Streams turn idle sooner than the daemon's, so that the tests that
	// wait for it wait less (TestHotStreamWaitsInTheNetpoller checks the
	// rule itself).
	hotFor = 100 * time.Millisecond
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(PollerGoroutine))
}
