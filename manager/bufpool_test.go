package manager

import "testing"

// The daemon's gRPC buffer pool hands out buffers of the length asked for,
// in power-of-two capacities, reuses what comes back, and keeps out what
// it does not own.
func TestDirtyPool(t *testing.T) {
	var p dirtyPool
	for _, n := range []int{0, 1, 256, 257, 16 << 10, 64<<10 + 10, 4 << 20} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d): len %d", n, len(*b))
		}
		if c := cap(*b); c < n || c&(c-1) != 0 || c > 2*max(n, 256) {
			t.Fatalf("Get(%d): cap %d, want the power of two that holds it", n, c)
		}
		p.Put(b)
	}
	// A buffer larger than the largest tier is not pooled.
	if b := p.Get(4<<20 + 1); len(*b) != 4<<20+1 {
		t.Fatalf("Get(4 MiB + 1): len %d", len(*b))
	}
	// Foreign buffers (not a power of two, too small, too large) are
	// dropped, never handed out for a tier they do not fill.
	for _, c := range []int{100, 3000, 8 << 20} {
		b := make([]byte, c)
		p.Put(&b)
	}
	for _, n := range []int{100, 3000} {
		b := p.Get(n)
		if c := cap(*b); c&(c-1) != 0 {
			t.Fatalf("Get(%d) after foreign Puts: cap %d", n, c)
		}
	}
}
