package streamcore

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// naiveFind is readuntil's match rule written out: for every separator its
// first occurrence, and of those the one that ends first, a tie going to
// the shorter separator.
func naiveFind(buf []byte, seps [][]byte) (int, int) {
	start, end := -1, -1
	for _, sep := range seps {
		if i := bytes.Index(buf, sep); i >= 0 && (end < 0 || i+len(sep) < end || (i+len(sep) == end && len(sep) < end-start)) {
			start, end = i, i+len(sep)
		}
	}
	return start, end
}

func sortedSeps(t testing.TB, seps [][]byte) [][]byte {
	t.Helper()
	s, err := sortSeparators(seps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSepFinderMatchesNaive(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3000 {
		alphabet := []byte("ab\n\r")[:1+rng.IntN(4)]
		word := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			return b
		}
		seps := make([][]byte, 1+rng.IntN(12))
		for i := range seps {
			seps[i] = word(1 + rng.IntN(5))
		}
		seps = sortedSeps(t, seps)
		buf := word(rng.IntN(60))
		wantS, wantE := naiveFind(buf, seps)
		gotS, gotE := newSepFinder(seps).find(buf)
		if gotS != wantS || gotE != wantE {
			t.Fatalf("round %d: find(%q, %q) = %d,%d; want %d,%d", round, buf, seps, gotS, gotE, wantS, wantE)
		}
	}
}

func FuzzSepFinder(f *testing.F) {
	f.Add([]byte("xx\r\n\r\nyy"), []byte("\r\n\r\n|\n\n|\n|ab|b|abc|bc|c|d"))
	f.Add([]byte("aaaaab"), []byte("aab|ab|b|aaab|aaaab|c"))
	f.Fuzz(func(t *testing.T, buf, sepList []byte) {
		seps := slices.DeleteFunc(bytes.Split(sepList, []byte("|")), func(s []byte) bool { return len(s) == 0 })
		if len(seps) == 0 {
			return
		}
		seps = sortedSeps(t, seps)
		wantS, wantE := naiveFind(buf, seps)
		gotS, gotE := newSepFinder(seps).find(buf)
		if gotS != wantS || gotE != wantE {
			t.Fatalf("find(%q, %q) = %d,%d; want %d,%d", buf, seps, gotS, gotE, wantS, wantE)
		}
	})
}

// A readuntil over many separators is linear in the buffer: 100,000
// one-byte separators that never match and a full buffer take one pass per
// arrival, not one per separator. (A bound for a loaded machine, not a
// speed test: the quadratic scan took minutes.)
func TestReadUntilManySeparatorsIsLinear(t *testing.T) {
	t.Parallel()
	e := openTCP(t, &Options{Limit: 1 << 20})
	seps := make([][]byte, 0, 100_000)
	for i := range 100_000 {
		seps = append(seps, []byte{byte(i%200 + 1), byte(i / 200), 'z'})
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
	defer cancel()
	read := goRead(func() ([]byte, error) { return e.r.ReadUntil(ctx, seps...) })
	e.send(string(bytes.Repeat([]byte{0}, 512<<10)))
	e.synced()
	e.send("\x05\x00z")
	res := recv(t, read)
	if res.err != nil || len(res.data) != 512<<10+3 {
		t.Fatalf("ReadUntil = %d bytes, %v", len(res.data), res.err)
	}
}

// A finder fed a buffer in pieces finds what find finds in the whole of
// it, whether the match lies in one piece or spans several.
func TestSepFinderInPieces(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 3000 {
		alphabet := []byte("ab\n\r")[:1+rng.IntN(4)]
		word := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			return b
		}
		seps := make([][]byte, 1+rng.IntN(8)) // both bytes.Index and the automaton
		for i := range seps {
			seps[i] = word(1 + rng.IntN(6))
		}
		seps = sortedSeps(t, seps)
		buf := word(rng.IntN(60))
		wantS, wantE := naiveFind(buf, seps)
		f := newSepFinder(seps)
		gotS, gotE := -1, -1
		var pieces [][]byte
		for rest := buf; len(rest) > 0 && gotE < 0; {
			n := min(len(rest), rng.IntN(5))
			pieces = append(pieces, rest[:n])
			gotS, gotE = f.next(rest[:n])
			rest = rest[n:]
		}
		if gotS != wantS || gotE != wantE {
			t.Fatalf("round %d: pieces %q, seps %q: got %d,%d; want %d,%d", round, pieces, seps, gotS, gotE, wantS, wantE)
		}
	}
}
