package streamcore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// refModel is a reference model of asyncio's StreamReader buffer logic
// (CPython 3.13 Lib/asyncio/streams.py: StreamReader and its transport) plus the transport's read
// loop: chunks fed by the peer wait in the connection until the reader
// pulls them, one read per chunk, and it stops pulling while more than
// 2*limit bytes are buffered.
type refModel struct {
	limit     int
	buf       []byte
	eof       bool
	paused    bool
	queue     [][]byte // sent by the peer, not yet read from the connection
	fin       bool     // the peer sent EOF after the queue
	delivered int64
}

func (m *refModel) feed(chunk []byte) {
	m.queue = append(m.queue, chunk)
	m.pump()
}

func (m *refModel) feedEOF() {
	m.fin = true
	m.pump()
}

// pump is the read loop: data_received per chunk, pause above 2*limit,
// eof_received once the queue is drained.
func (m *refModel) pump() {
	for !m.paused && !m.eof {
		if len(m.queue) > 0 {
			c := m.queue[0]
			m.queue = m.queue[1:]
			m.buf = append(m.buf, c...)
			m.delivered += int64(len(c))
			if len(m.buf) > 2*m.limit {
				m.paused = true
			}
			continue
		}
		if m.fin {
			m.eof = true
		}
		return
	}
}

// consume is "del buffer[:n]" followed by _maybe_resume_transport.
func (m *refModel) consume(n int) []byte {
	out := bytes.Clone(m.buf[:n])
	m.buf = m.buf[n:]
	m.maybeResume()
	return out
}

func (m *refModel) maybeResume() {
	if m.paused && len(m.buf) <= m.limit {
		m.paused = false
		m.pump()
	}
}

// waitResume is _wait_for_data's resume_reading: an operation that must
// wait resumes a paused transport first.
func (m *refModel) waitResume() {
	if m.paused {
		m.paused = false
		m.pump()
	}
}

// modelOp is one read operation as a resumable step function. step returns
// blocked when the operation would await _wait_for_data.
type modelOp interface {
	step(m *refModel) (blocked bool, data []byte, err error)
}

type opRead struct{ n int }

func (o *opRead) step(m *refModel) (bool, []byte, error) {
	if o.n < 0 {
		// read(-1) collects everything until EOF.
		if !m.eof {
			return true, nil, nil
		}
		return false, m.consume(len(m.buf)), nil
	}
	if o.n == 0 {
		return false, []byte{}, nil
	}
	if len(m.buf) == 0 && !m.eof {
		return true, nil, nil
	}
	return false, m.consume(min(o.n, len(m.buf))), nil
}

type opReadExactly struct{ n int }

func (o *opReadExactly) step(m *refModel) (bool, []byte, error) {
	if o.n < 0 {
		return false, nil, &ValueError{Msg: "readexactly size can not be less than zero"}
	}
	if o.n == 0 {
		return false, []byte{}, nil
	}
	if len(m.buf) >= o.n {
		return false, m.consume(o.n), nil
	}
	if m.eof {
		return false, nil, &IncompleteReadError{Partial: m.consume(len(m.buf)), Expected: o.n}
	}
	return true, nil, nil
}

// opReadUntil is CPython's StreamReader.readuntil scan loop, with
// readline's handling of its errors when line is set.
type opReadUntil struct {
	seps    [][]byte
	line    bool
	started bool
	offset  int
}

func (o *opReadUntil) step(m *refModel) (bool, []byte, error) {
	if !o.started {
		o.started = true
		if len(o.seps) == 0 {
			return false, nil, &ValueError{Msg: "Separator should contain at least one element"}
		}
		// Stable sort by length, shortest first.
		sorted := make([][]byte, 0, len(o.seps))
		for l := 0; len(sorted) < len(o.seps); l++ {
			for _, s := range o.seps {
				if len(s) == l {
					sorted = append(sorted, s)
				}
			}
		}
		o.seps = sorted
		if len(o.seps[0]) == 0 {
			return false, nil, &ValueError{Msg: "Separator should be at least one-byte string"}
		}
	}
	minLen, maxLen := len(o.seps[0]), len(o.seps[len(o.seps)-1])
	buflen := len(m.buf)
	if buflen-o.offset >= minLen {
		matchStart, matchEnd := -1, -1
		for _, sep := range o.seps {
			if i := bytes.Index(m.buf[o.offset:], sep); i >= 0 {
				end := o.offset + i + len(sep)
				if matchEnd < 0 || end < matchEnd {
					matchStart, matchEnd = o.offset+i, end
				}
			}
		}
		if matchEnd >= 0 {
			if matchStart > m.limit {
				return false, nil, o.overrun(m, &LimitOverrunError{Consumed: matchStart, Found: true})
			}
			return false, m.consume(matchEnd), nil
		}
		o.offset = max(0, buflen+1-maxLen)
		if o.offset > m.limit {
			return false, nil, o.overrun(m, &LimitOverrunError{Consumed: o.offset})
		}
	}
	if m.eof {
		partial := m.consume(len(m.buf))
		if o.line {
			return false, partial, nil
		}
		return false, nil, &IncompleteReadError{Partial: partial, Expected: -1}
	}
	return true, nil, nil
}

// overrun is readuntil's LimitOverrunError, or readline's trimming and
// ValueError.
func (o *opReadUntil) overrun(m *refModel, e *LimitOverrunError) error {
	if !o.line {
		return e
	}
	if e.Consumed < len(m.buf) && m.buf[e.Consumed] == '\n' {
		m.buf = m.buf[e.Consumed+1:]
	} else {
		m.buf = nil
	}
	m.maybeResume()
	return &LineTooLongError{LimitOverrunError: *e}
}

// outcome renders a read's result so the model and streamcore compare.
func outcome(data []byte, err error) string {
	var (
		ie *IncompleteReadError
		le *LineTooLongError
		lo *LimitOverrunError
		ve *ValueError
		ce *ConcurrentReadError
	)
	switch {
	case err == nil:
		return fmt.Sprintf("ok %q", data)
	case errors.As(err, &ie):
		return fmt.Sprintf("incomplete %q expected %d", ie.Partial, ie.Expected)
	case errors.As(err, &le):
		return fmt.Sprintf("line too long found=%v consumed=%d", le.Found, le.Consumed)
	case errors.As(err, &lo):
		return fmt.Sprintf("limit overrun found=%v consumed=%d", lo.Found, lo.Consumed)
	case errors.As(err, &ve):
		return "value error: " + ve.Msg
	case errors.As(err, &ce):
		return "concurrent " + ce.Op
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "error: " + err.Error()
}

// fuzzAlphabet is what fed chunks are made of: separators' bytes and a
// filler, so that separators, false starts and splits are common.
const fuzzAlphabet = "ab\nXYZ\r0"

var fuzzSeparators = [][]string{
	{"\n"},
	{"XYZ"},
	{"\r\n"},
	{"\n", "XY"},
	{"ab", "b"},
	{"Z", "XYZ", "\r\n"},
	{"aaa"},
	{"0", "ab0X"},
	{"XY", "bXY"},
	{""},
	{},
	{"a", "", "b"},
}

type fuzzAction struct {
	kind  byte // 'f' feed, 'e' EOF, 'r' read, 'x' readexactly, 'u' readuntil, 'l' readline
	chunk []byte
	n     int
	seps  int
	live  bool // run with a live context, feeding more data while it waits
}

func decodeFuzz(data []byte) (limit int, acts []fuzzAction) {
	if len(data) == 0 {
		return 0, nil
	}
	limit = 1 + int(data[0]%12)
	data = data[1:]
	next := func() (byte, bool) {
		if len(data) == 0 {
			return 0, false
		}
		b := data[0]
		data = data[1:]
		return b, true
	}
	for len(acts) < 200 {
		b, ok := next()
		if !ok {
			break
		}
		arg, ok := next()
		if !ok {
			break
		}
		a := fuzzAction{live: b&8 != 0}
		switch b % 8 {
		case 0, 1, 2:
			a.kind = 'f'
			for range int(arg % 20) {
				c, ok := next()
				if !ok {
					break
				}
				a.chunk = append(a.chunk, fuzzAlphabet[c%byte(len(fuzzAlphabet))])
			}
		case 3:
			a.kind = 'e'
		case 4:
			a.kind, a.n = 'r', int(arg%24)-2
		case 5:
			a.kind, a.n = 'x', int(arg%24)-1
		case 6:
			a.kind, a.seps = 'u', int(arg)%len(fuzzSeparators)
		case 7:
			a.kind = 'l'
		}
		acts = append(acts, a)
	}
	return limit, acts
}

// countingCtx counts how often a read started waiting on it: Reader.wait
// calls Done once per wait.
type countingCtx struct {
	context.Context
	waits atomic.Int32
}

func (c *countingCtx) Done() <-chan struct{} {
	c.waits.Add(1)
	return c.Context.Done()
}

// spinUntil polls cond quickly (a fuzz run syncs thousands of times) and
// reports whether it held within the bound.
func spinUntil(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; !cond(); i++ {
		if time.Now().After(deadline) {
			return false
		}
		if i < 200 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
	return true
}

// runReaderModel feeds the actions to the model and to a Reader over an
// in-memory connection, comparing every result and, after every action,
// the whole reader state.
func runReaderModel(t *testing.T, data []byte) {
	limit, acts := decodeFuzz(data)
	if limit == 0 {
		return
	}
	a, b := newMemConnPair()
	r, w, err := NewStream(a, &Options{Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopStream(w)
		b.Close()
	}()
	m := &refModel{limit: limit}
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("limit %d, after\n  %s\n%s", limit, strings.Join(log, "\n  "), fmt.Sprintf(format, args...))
	}
	realState := func() (int64, bool, bool, []byte) {
		r.t.mu.Lock()
		defer r.t.mu.Unlock()
		return r.t.nreceived.Load(), r.t.paused, r.t.eof, r.t.buf.bytes()
	}
	sync := func() {
		t.Helper()
		var got []byte
		ok := spinUntil(func() bool {
			n, p, e, buf := realState()
			got = buf
			return n == m.delivered && p == m.paused && e == m.eof
		})
		n, p, e, _ := realState()
		if !ok || !bytes.Equal(got, m.buf) {
			fail("state: streamcore received %d paused %v eof %v buffer %q\n       model received %d paused %v eof %v buffer %q",
				n, p, e, got, m.delivered, m.paused, m.eof, m.buf)
		}
	}
	send := func(act fuzzAction) bool {
		switch {
		case act.kind == 'f' && len(act.chunk) > 0 && !m.fin:
			log = append(log, fmt.Sprintf("peer sends %q", act.chunk))
			if _, err := b.Write(act.chunk); err != nil {
				t.Fatal(err)
			}
			m.feed(act.chunk)
			return true
		case act.kind == 'e' && !m.fin:
			log = append(log, "peer sends EOF")
			_ = b.CloseWrite()
			m.feedEOF()
			return true
		}
		return false
	}
	used := make([]bool, len(acts))
	// nextFeed sends the next unused feed or EOF action, or EOF when none
	// is left, so a waiting read always ends.
	nextFeed := func(from int) {
		for j := from; j < len(acts); j++ {
			if !used[j] && (acts[j].kind == 'f' || acts[j].kind == 'e') {
				used[j] = true
				if send(acts[j]) {
					return
				}
			}
		}
		send(fuzzAction{kind: 'e'})
	}
	for i, act := range acts {
		if used[i] {
			continue
		}
		used[i] = true
		var op modelOp
		var call func(ctx context.Context) ([]byte, error)
		var desc string
		switch act.kind {
		case 'f', 'e':
			send(act)
			sync()
			continue
		case 'r':
			op, desc = &opRead{n: act.n}, fmt.Sprintf("read(%d)", act.n)
			call = func(ctx context.Context) ([]byte, error) { return r.Read(ctx, act.n) }
		case 'x':
			op, desc = &opReadExactly{n: act.n}, fmt.Sprintf("readexactly(%d)", act.n)
			call = func(ctx context.Context) ([]byte, error) { return r.ReadExactly(ctx, act.n) }
		case 'u':
			var seps [][]byte
			for _, s := range fuzzSeparators[act.seps] {
				seps = append(seps, []byte(s))
			}
			op, desc = &opReadUntil{seps: seps}, fmt.Sprintf("readuntil(%q)", fuzzSeparators[act.seps])
			call = func(ctx context.Context) ([]byte, error) { return r.ReadUntil(ctx, seps...) }
		case 'l':
			op, desc = &opReadUntil{seps: [][]byte{{'\n'}}, line: true}, "readline()"
			call = func(ctx context.Context) ([]byte, error) { return r.ReadLine(ctx) }
		}
		// A live wait is only deterministic when no chunk is queued: the
		// read loop would otherwise race the woken read. Such a read runs
		// with an ended context instead.
		live := act.live && len(m.queue) == 0
		if !live {
			blocked, data, merr := op.step(m)
			want := outcome(data, merr)
			if blocked {
				want = "cancelled" // wait() fails before resuming the transport
			}
			got := outcome(call(cancelledCtx()))
			log = append(log, fmt.Sprintf("%s (ended ctx) -> %s", desc, want))
			if got != want {
				fail("%s: streamcore %s, model %s", desc, got, want)
			}
			sync()
			continue
		}
		cctx := &countingCtx{Context: context.Background()}
		ch := goRead(func() ([]byte, error) { return call(cctx) })
		log = append(log, desc+" (waiting)")
		var want string
		var res *result // the real read's result, once it is in
		for waits := int32(1); ; waits++ {
			blocked, data, merr := op.step(m)
			if !blocked {
				want = outcome(data, merr)
				break
			}
			// The model waits for the waits-th time: so must streamcore
			// (it may also have been woken since, and finished).
			ok := spinUntil(func() bool {
				if cctx.waits.Load() >= waits {
					return true
				}
				if res == nil {
					select {
					case got := <-ch:
						res = &got
					default:
					}
				}
				return res != nil
			})
			if !ok || cctx.waits.Load() < waits {
				got := "still running"
				if res != nil {
					got = outcome(res.data, res.err)
				}
				fail("%s: streamcore %s, model waits (wait %d)", desc, got, waits)
			}
			eof := m.eof
			m.waitResume()
			if m.eof != eof {
				continue // resuming let the pending EOF in
			}
			if res != nil {
				fail("%s: streamcore %s after %d waits, model waits for more data", desc, outcome(res.data, res.err), waits)
			}
			nextFeed(i + 1)
		}
		if res == nil {
			got := recv(t, ch)
			res = &got
		}
		got := outcome(res.data, res.err)
		log = append(log, "  -> "+want)
		if got != want {
			fail("%s: streamcore %s, model %s", desc, got, want)
		}
		sync()
	}
}

// fuzzScript encodes a readable script as fuzz input (see decodeFuzz).
func fuzzScript(limit int, steps ...string) []byte {
	out := []byte{byte(limit - 1)}
	for _, s := range steps {
		live := byte(0)
		if strings.HasPrefix(s, "~") {
			live, s = 8, s[1:]
		}
		kind, arg, _ := strings.Cut(s, " ")
		switch kind {
		case "feed":
			arg = strings.NewReplacer(`\n`, "\n", `\r`, "\r").Replace(arg)
			out = append(out, 0|live, byte(len(arg)))
			for _, c := range []byte(arg) {
				out = append(out, byte(strings.IndexByte(fuzzAlphabet, c)))
			}
		case "eof":
			out = append(out, 3|live, 0)
		case "read":
			var n int
			fmt.Sscan(arg, &n)
			out = append(out, 4|live, byte(n+2))
		case "readexactly":
			var n int
			fmt.Sscan(arg, &n)
			out = append(out, 5|live, byte(n+1))
		case "readuntil":
			var k int
			fmt.Sscan(arg, &k)
			out = append(out, 6|live, byte(k))
		case "readline":
			out = append(out, 7|live, 0)
		}
	}
	return out
}

func fuzzSeeds() [][]byte {
	seeds := [][]byte{
		// L6: the tail of an over-long line reads as a fresh line.
		fuzzScript(4, "feed abababab0a", "readline", "feed ab\\nX\\n", "readline", "readline"),
		// Over-limit found: the line and its newline are dropped.
		fuzzScript(3, "feed ab", "feed ab0\\nab\\n", "readline", "readline"),
		// The threshold grows with the longest separator; waiting resumes.
		fuzzScript(4, "feed aaaaaaaaaaaa", "readuntil 7", "~readuntil 7", "feed 00", "feed X"),
		// F2: an overrun without waiting does not resume the paused reader.
		fuzzScript(3, "feed abXYab0", "readuntil 1", "feed Z", "readuntil 1", "read 2", "read 4", "readuntil 1"),
		// Separator split across chunks, with false starts.
		fuzzScript(12, "~readuntil 6", "feed 0aa", "feed Xaa", "feed a"),
		// readexactly beyond 2*limit, and EOF short.
		fuzzScript(2, "~readexactly 9", "feed abab", "feed XYZXYZ", "feed a", "readexactly 20", "eof", "readexactly 3"),
		// A limit error beats EOF; a separator beats EOF.
		fuzzScript(5, "feed aaaaaaa", "eof", "readuntil 0", "read 3", "readline", "readline"),
		fuzzScript(8, "feed ab\\nXY", "eof", "readuntil 0", "readuntil 0", "read -1"),
		// read(-1) across pauses.
		fuzzScript(1, "~read -1", "feed abXY", "feed Z", "feed \\r\\n", "eof"),
		// Validation.
		fuzzScript(4, "feed ab", "readuntil 9", "readuntil 10", "readuntil 11", "readexactly -1", "read 0"),
		// A waiting read resumes the paused reader, which lets the pending
		// EOF in (found by the fuzzer; a harness bug at the time).
		[]byte("00920000200000000000C07070\xedA0"),
		fuzzScript(1, "feed \\naaaa\\naaaaaaaaaaa", "eof", "readline", "readline", "~readexactly 16"),
		// Tuples: earliest end, ties to the shorter.
		fuzzScript(1, "feed abXY", "readuntil 8", "feed ZXYZ", "readuntil 5", "readuntil 4"),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		b := make([]byte, 8+rng.IntN(120))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzReaderModel compares streamcore's Reader with a reference model of
// CPython's StreamReader over random chunkings and random operations. The
// seed corpus runs in every go test.
func FuzzReaderModel(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(runReaderModel)
}
