package streamcore

import "bytes"

// sepFinder finds, in one pass over a buffer, the match of any of
// readuntil's separators that ends first, a tie going to the shorter
// separator (as CPython's readuntil with a tuple). With a few separators it
// asks bytes.Index for each; with more it runs an Aho-Corasick automaton
// built once per call, so that a scan is linear in the bytes scanned
// whatever the separator list.
//
// The finder is fed the buffer piece by piece (next), as its segments come
// and as bytes arrive, and carries what it needs from one piece to the
// next: the automaton's state, or for bytes.Index the last bytes fed that
// a match could begin in.
type sepFinder struct {
	seps  [][]byte // shortest first
	nodes []acNode // the automaton; nil when bytes.Index does
	root  [256]int32

	fed   int    // bytes fed since the last reset
	state int32  // the automaton's state after them
	tail  []byte // for bytes.Index: the last len(longest)-1 of them
}

// acNode is a state of the automaton: the separator prefix it stands for
// has edges to longer prefixes, a failure link to its longest proper suffix
// that is also a prefix, and out, the shortest separator that ends here
// (-1 for none).
type acNode struct {
	edges []acEdge
	fail  int32
	out   int32
}

type acEdge struct {
	b  byte
	to int32
}

// indexSeparators is how many separators bytes.Index is asked about before
// the automaton is worth building.
const indexSeparators = 4

// newSepFinder returns a finder for seps, sorted shortest first.
func newSepFinder(seps [][]byte) *sepFinder {
	f := &sepFinder{seps: seps}
	if len(seps) <= indexSeparators {
		return f
	}
	f.nodes = []acNode{{out: -1}}
	for i, sep := range seps {
		s := int32(0)
		for _, b := range sep {
			next := f.edge(s, b)
			if next <= 0 {
				next = int32(len(f.nodes))
				f.nodes = append(f.nodes, acNode{out: -1})
				f.addEdge(s, b, next)
			}
			s = next
		}
		if f.nodes[s].out < 0 {
			f.nodes[s].out = int32(i) // seps are sorted: the first is the shortest
		}
	}
	// Failure links, breadth first: a node's suffixes are shallower.
	queue := make([]int32, 0, len(f.nodes))
	for b := range 256 {
		if c := f.root[b]; c > 0 {
			queue = append(queue, c)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if o := f.nodes[f.nodes[u].fail].out; o >= 0 {
			// A separator that is a suffix of this prefix is shorter than
			// any that ends at this node itself.
			f.nodes[u].out = o
		}
		for _, e := range f.nodes[u].edges {
			fl := f.nodes[u].fail
			for fl != 0 && f.edge(fl, e.b) <= 0 {
				fl = f.nodes[fl].fail
			}
			if next := f.edge(fl, e.b); next > 0 && next != e.to {
				f.nodes[e.to].fail = next
			}
			queue = append(queue, e.to)
		}
	}
	return f
}

// edge is the automaton's edge from s on b, or 0 for none (the root is
// never an edge's target).
func (f *sepFinder) edge(s int32, b byte) int32 {
	if s == 0 {
		return f.root[b]
	}
	for _, e := range f.nodes[s].edges {
		if e.b == b {
			return e.to
		}
	}
	return 0
}

func (f *sepFinder) addEdge(s int32, b byte, to int32) {
	if s == 0 {
		f.root[b] = to
		return
	}
	f.nodes[s].edges = append(f.nodes[s].edges, acEdge{b, to})
}

// reset forgets the bytes fed: the next byte fed is the first of a buffer.
func (f *sepFinder) reset() {
	f.fed, f.state, f.tail = 0, 0, f.tail[:0]
}

// find returns the start and end of the first-ending match in buf, or
// -1, -1.
func (f *sepFinder) find(buf []byte) (start, end int) {
	f.reset()
	return f.next(buf)
}

// next feeds p, the bytes that follow those fed since the last reset, and
// returns the start and end of the first-ending match, counted from the
// first byte fed, or -1, -1. After a match the finder must be reset.
func (f *sepFinder) next(p []byte) (start, end int) {
	base := f.fed
	f.fed += len(p)
	if f.nodes != nil {
		s := f.state
		for i, b := range p {
			for {
				if next := f.edge(s, b); next > 0 {
					s = next
					break
				}
				if s == 0 {
					break
				}
				s = f.nodes[s].fail
			}
			if o := f.nodes[s].out; o >= 0 {
				return base + i + 1 - len(f.seps[o]), base + i + 1
			}
		}
		f.state = s
		return -1, -1
	}
	// A match that begins in the bytes fed before ends in the first
	// keep bytes of p: it lies in tail followed by those.
	keep := len(f.seps[len(f.seps)-1]) - 1
	if len(f.tail) > 0 {
		from := base - len(f.tail)
		f.tail = append(f.tail, p[:min(len(p), keep)]...)
		if i, j := f.index(f.tail); j >= 0 {
			return from + i, from + j
		}
		f.tail = f.tail[:len(f.tail)-min(len(p), keep)]
	}
	if i, j := f.index(p); j >= 0 {
		return base + i, base + j
	}
	f.tail = append(f.tail, p[max(0, len(p)-keep):]...)
	if extra := len(f.tail) - keep; extra > 0 {
		f.tail = f.tail[:copy(f.tail, f.tail[extra:])]
	}
	return -1, -1
}

// index is find for a few separators: bytes.Index for each.
func (f *sepFinder) index(buf []byte) (start, end int) {
	start, end = -1, -1
	for _, sep := range f.seps {
		limit := len(buf)
		if end >= 0 {
			// Only a match ending before the best so far can win.
			limit = end - 1
		}
		if limit < len(sep) {
			continue
		}
		if i := bytes.Index(buf[:limit], sep); i >= 0 {
			start, end = i, i+len(sep)
		}
	}
	return start, end
}
