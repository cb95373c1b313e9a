package streamcore

import "bytes"

// sepFinder finds, in one pass over a buffer, the match of any of
// readuntil's separators that ends first, a tie going to the shorter
// separator (as CPython's readuntil with a tuple). With a few separators it
// asks bytes.Index for each; with more it runs an Aho-Corasick automaton
// built once per call, so that a scan is linear in the bytes scanned
// whatever the separator list.
type sepFinder struct {
	seps  [][]byte // shortest first
	nodes []acNode // the automaton; nil when bytes.Index does
	root  [256]int32
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

// find returns the start and end of the first-ending match in buf, or
// -1, -1.
func (f *sepFinder) find(buf []byte) (start, end int) {
	if f.nodes == nil {
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
	s := int32(0)
	for i, b := range buf {
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
			return i + 1 - len(f.seps[o]), i + 1
		}
	}
	return -1, -1
}
