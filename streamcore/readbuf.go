package streamcore

// maxSegment caps the capacity readBuf gives a segment to gather reads in:
// a result taken from a segment keeps all of it alive.
const maxSegment = 1 << 20

// readBuf is a stream's read buffer: a queue of segments that bytes are
// copied into once, as they arrive, and that never move afterwards, so
// that the buffer grows without reallocating. A segment gathers the bytes
// of consecutive socket reads while it has room; a new one has room for
// the read or for as many bytes as are buffered already, whichever is more
// (up to maxSegment), so that its spare capacity is at most what the
// stream held when it was made, and an empty buffer holds no segment.
//
// Bytes leave from the front: a take within the first segment returns a
// subslice of it, one that spans segments a copy. Every slice handed out
// is capped at its length and covers bytes that are never written again,
// because bytes are only ever appended past the end of the last segment.
type readBuf struct {
	segs [][]byte // segs[0] is the front; no segment is empty
	n    int      // the bytes in all segments
	// front changes whenever bytes leave the front or are put back there,
	// so that a scan of the buffer knows to start again.
	front uint64
}

// len returns the number of bytes buffered.
func (b *readBuf) len() int { return b.n }

// push appends a copy of p.
func (b *readBuf) push(p []byte) {
	if len(p) == 0 {
		return
	}
	last := len(b.segs) - 1
	if last >= 0 && cap(b.segs[last])-len(b.segs[last]) >= len(p) {
		b.segs[last] = append(b.segs[last], p...)
	} else {
		seg := make([]byte, len(p), max(len(p), min(b.n, maxSegment)))
		copy(seg, p)
		b.segs = append(b.segs, seg)
	}
	b.n += len(p)
}

// pushFront puts segs back in front of the buffer, in order. The buffer
// takes them over: they must not be modified afterwards, by anyone.
func (b *readBuf) pushFront(segs ...[]byte) {
	front := make([][]byte, 0, len(segs)+len(b.segs))
	for _, s := range segs {
		if len(s) > 0 {
			front = append(front, s[:len(s):len(s)])
			b.n += len(s)
		}
	}
	b.segs = append(front, b.segs...)
	b.front++
}

// take removes the first n bytes and returns them (nil for n == 0).
func (b *readBuf) take(n int) []byte {
	if n == 0 {
		return nil
	}
	if first := b.segs[0]; n <= len(first) {
		b.drop(n, nil)
		return first[:n:n]
	}
	data := make([]byte, 0, n)
	b.drop(n, func(p []byte) { data = append(data, p...) })
	return data
}

// drop removes the first n bytes, handing them to each (when not nil) a
// segment's worth at a time.
func (b *readBuf) drop(n int, each func([]byte)) {
	b.n -= n
	b.front++
	for n > 0 {
		first := b.segs[0]
		k := min(n, len(first))
		if each != nil {
			each(first[:k:k])
		}
		n -= k
		if k < len(first) {
			b.segs[0] = first[k:]
			break
		}
		b.segs[0] = nil
		b.segs = b.segs[1:]
	}
	if b.n == 0 {
		b.segs = nil
	}
}

// reset empties the buffer.
func (b *readBuf) reset() {
	b.segs, b.n = nil, 0
	b.front++
}

// at returns the byte at index i.
func (b *readBuf) at(i int) byte {
	for _, s := range b.segs {
		if i < len(s) {
			return s[i]
		}
		i -= len(s)
	}
	panic("streamcore: readBuf index out of range")
}

// bytes returns a copy of every byte buffered.
func (b *readBuf) bytes() []byte {
	out := make([]byte, 0, b.n)
	for _, s := range b.segs {
		out = append(out, s...)
	}
	return out
}

// scan feeds f the buffered bytes it has not been fed yet, segment by
// segment, and returns the first match as indexes into the buffer, or -1,
// -1. The buffer's front must not have changed since f was reset.
func (b *readBuf) scan(f *sepFinder) (start, end int) {
	skip := f.fed
	for _, s := range b.segs {
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		if start, end = f.next(s[skip:]); end >= 0 {
			return start, end
		}
		skip = 0
	}
	return -1, -1
}
