package streamcore

import (
	"time"

	"golang.org/x/time/rate"
)

// Bandwidth limits (Options.InRate, Options.OutRate) work on the debt
// model: a transfer of n bytes happens first and is then charged to the
// limiter (ReserveN at the time it ended), and the next transfer on the
// same side of the stream waits for the reservation's delay. Each transfer
// is at most the limiter's burst, so a reservation never fails, and the
// bytes a limiter lets through in any span of t seconds stay within
// rate*t plus one burst of the bucket plus one transfer per stream that
// shares it.

// limited reports whether lim limits anything.
func limited(lim *rate.Limiter) bool {
	return lim != nil && lim.Limit() != rate.Inf
}

// rateChunk caps a transfer of size bytes at lim's burst.
func rateChunk(lim *rate.Limiter, size int) int {
	if !limited(lim) {
		return size
	}
	if b := lim.Burst(); b > 0 && b < size {
		return b
	}
	return size
}

// charge charges n transferred bytes to lim at now and returns the time
// before which the next transfer must not start (the zero time when it need
// not wait).
func charge(lim *rate.Limiter, now time.Time, n int) time.Time {
	var until time.Time
	for n > 0 && limited(lim) {
		k := min(n, lim.Burst())
		if k <= 0 {
			// A burst of 0 lets nothing through the bucket: pay for the
			// bytes at the limiter's rate instead.
			wait := rate.InfDuration
			if l := lim.Limit(); l > 0 {
				if secs := float64(n) / float64(l); secs < float64(rate.InfDuration/time.Second) {
					wait = time.Duration(secs * float64(time.Second))
				}
			}
			return later(until, now.Add(wait))
		}
		r := lim.ReserveN(now, k)
		if !r.OK() {
			// The burst shrank since it was read: try again with the new one.
			continue
		}
		until = later(until, now.Add(r.DelayFrom(now)))
		n -= k
	}
	return until
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// sleepUntil waits until until, or until stop is closed first (false).
func sleepUntil(until time.Time, stop <-chan struct{}) bool {
	d := time.Until(until)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-stop:
		return false
	}
}
