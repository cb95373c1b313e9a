package streamcore

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// readBuf against a flat buffer: pushes of random sizes, takes, drops and
// put-backs of random sizes give the same bytes, results keep their bytes
// whatever is pushed later, and an empty buffer holds no segment.
func TestReadBufMatchesFlat(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	var (
		b     readBuf
		flat  []byte
		next  byte
		taken []struct{ got, want []byte }
	)
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 5:
			p := make([]byte, rng.IntN(3000))
			for i := range p {
				p[i] = next
				next++
			}
			b.push(p)
			flat = append(flat, p...)
			clear(p) // the buffer holds a copy
		case op < 8 && len(flat) > 0:
			n := rng.IntN(len(flat) + 1)
			got := b.take(n)
			if len(got) != cap(got) {
				t.Fatalf("step %d: take(%d) has capacity %d", step, n, cap(got))
			}
			taken = append(taken, struct{ got, want []byte }{got, bytes.Clone(flat[:n])})
			flat = flat[n:]
		case op < 9 && len(flat) > 0:
			n := rng.IntN(len(flat) + 1)
			var dropped []byte
			b.drop(n, func(p []byte) { dropped = append(dropped, p...) })
			if !bytes.Equal(dropped, flat[:n]) {
				t.Fatalf("step %d: drop(%d) handed %d bytes", step, n, len(dropped))
			}
			flat = flat[n:]
		case len(taken) > 0:
			k := taken[len(taken)-1]
			taken = taken[:len(taken)-1]
			b.pushFront(k.got)
			flat = append(bytes.Clone(k.want), flat...)
		}
		if b.len() != len(flat) || !bytes.Equal(b.bytes(), flat) {
			t.Fatalf("step %d: buffer holds %d bytes, want %d", step, b.len(), len(flat))
		}
		if len(flat) == 0 && b.segs != nil {
			t.Fatalf("step %d: an empty buffer holds %d segments", step, len(b.segs))
		}
		if len(flat) > 0 {
			if i := rng.IntN(len(flat)); b.at(i) != flat[i] {
				t.Fatalf("step %d: at(%d) = %d, want %d", step, i, b.at(i), flat[i])
			}
		}
	}
	for i, k := range taken {
		if !bytes.Equal(k.got, k.want) {
			t.Fatalf("result %d was overwritten", i)
		}
	}
}

// A scan of a buffer fed as its bytes arrive finds the match that a scan
// of the whole finds, starting again after the front changes.
func TestReadBufScan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	for round := range 2000 {
		seps := sortedSeps(t, [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")}[:1+rng.IntN(2)])
		if rng.IntN(2) == 0 {
			// More separators than bytes.Index is asked about.
			seps = sortedSeps(t, append(seps, []byte("x1"), []byte("x2"), []byte("x3"), []byte("x4")))
		}
		var b readBuf
		f := newSepFinder(seps)
		front := b.front
		var flat []byte
		for range 40 {
			p := make([]byte, rng.IntN(4))
			for i := range p {
				p[i] = "\r\nab"[rng.IntN(4)]
			}
			b.push(p)
			flat = append(flat, p...)
			if rng.IntN(8) == 0 && len(flat) > 0 {
				n := 1 + rng.IntN(len(flat))
				b.drop(n, nil)
				flat = flat[n:]
			}
			if b.front != front {
				f.reset()
				front = b.front
			}
			wantS, wantE := naiveFind(flat, seps)
			gotS, gotE := b.scan(f)
			if gotS != wantS || gotE != wantE {
				t.Fatalf("round %d: scan of %q for %q = %d,%d; want %d,%d", round, flat, seps, gotS, gotE, wantS, wantE)
			}
			if gotE >= 0 {
				break
			}
		}
	}
}
