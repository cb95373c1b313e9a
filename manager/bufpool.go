package manager

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// dirtyPool is the daemon's gRPC buffer pool: buffers in powers of two
// from 256 B to 4 MiB, handed out as they were left. gRPC's default pool
// clears every buffer it hands out, and clears all of it: a 64 KiB message
// takes a 1 MiB buffer from it, cleared whole, which was a quarter of the
// daemon's CPU in a bulk Attach upload. gRPC fills each buffer it takes (a
// message read from the wire, or one being marshaled) before anything
// reads it, so the clearing buys nothing. Larger buffers are not pooled.
type dirtyPool struct {
	tiers [maxTier - minTier + 1]sync.Pool
}

const (
	minTier = 8  // 256 B
	maxTier = 22 // 4 MiB, the default --max-message-size
)

var _ mem.BufferPool = (*dirtyPool)(nil)

// tierOf is the power of two that holds n bytes.
func tierOf(n int) int {
	if n <= 1<<minTier {
		return minTier
	}
	return bits.Len(uint(n - 1))
}

// Get returns a buffer of length n, its contents left as they were.
func (p *dirtyPool) Get(n int) *[]byte {
	t := tierOf(n)
	if t > maxTier {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t-minTier].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<t)
	return &b
}

// Put takes back a buffer from Get; others are left to the collector.
func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<minTier || c > 1<<maxTier || c&(c-1) != 0 {
		return
	}
	p.tiers[bits.Len(uint(c))-1-minTier].Put(b)
}
