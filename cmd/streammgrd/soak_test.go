package main_test

// Soak test: hundreds of concurrent streams through a real streammgrd
// process, driven over grpc-go with the generated stubs. Every stream talks
// to a peer in this process that sends a seeded pseudo-random byte sequence
// (lines ending in "\n" or "\r\n", now and then one longer than the
// stream's limit) in random chunks with random pauses (a quarter of the
// peers slowly, so that reads wait in the daemon), then FIN, and checks
// what it receives. The client reads with random operations and writes
// random chunks, every Read, ReadLine, ReadExactly, ReadUntil, Write,
// WriteLines and Drain under a random 1-20 ms deadline (one call in ten,
// and every retry from the fourth on, under a long one), retrying what
// failed.
//
// Half of the streams use offsets and must deliver every byte exactly once
// both ways; the other half are the same workload from a naive client that
// sends no offsets and retries blindly, whose lost and duplicated bytes are
// counted and logged, from the same run. The subtest "kills" puts a proxy
// between the clients and the daemon that resets every gRPC connection at
// random moments, so responses the daemon sent are lost and the clients
// re-dial; half of the killed connections stay open on the daemon's side
// until the next kill, as when a connection dies where the daemon cannot
// see it. After all streams closed, they must be released after
// --closed-linger, and the daemon's goroutines (from --debug-listen's
// pprof) and file descriptors must return to their baseline.
//
// Size: STREAMMGR_SOAK=long runs rounds of more and longer streams for
// minutes; STREAMMGR_SOAK_STREAMS, STREAMMGR_SOAK_BYTES and
// STREAMMGR_SOAK_DURATION override the size, STREAMMGR_SOAK_SEED repeats a
// run's payloads and choices. The summary lines start with "soak:".

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

const (
	// soakConns is how many gRPC connections (grpc.ClientConn) the streams
	// share, round-robin.
	soakConns = 4
	// soakMaxChunk bounds a write's size and the peer's send chunks.
	soakMaxChunk = 4096
	// soakLongDeadline is the deadline of calls that are not meant to run
	// out of time: a failure bound, never reached by a healthy daemon.
	soakLongDeadline = 20 * time.Second
	// soakLinger is the daemon's --closed-linger: closed streams are
	// released this long after their last RPC.
	soakLinger = time.Second
	// soakMaxLog is how many recent calls a stream remembers per direction,
	// for failure reports.
	soakMaxLog = 24
	// soakReleaseSlack is how long after soakLinger every closed stream
	// must have been released: the reaper's period and a loaded machine.
	soakReleaseSlack = 20 * time.Second
	// soakSlowBudget is how long a slow peer pauses in all.
	soakSlowBudget = 1500 * time.Millisecond
)

// soakSize is how much one soak run does.
type soakSize struct {
	streams  int           // concurrent streams per round, half of them with offsets
	bytes    int           // mean payload bytes per stream and direction (each 0.5-1.5 times this)
	duration time.Duration // rounds start until this much time has passed (0: one round)
	bound    time.Duration // failure bound of a subtest
}

func soakSizeFromEnv(t *testing.T) soakSize {
	t.Helper()
	s := soakSize{streams: 200, bytes: 8 << 10, bound: 3 * time.Minute}
	if testing.Short() {
		s.streams, s.bytes = 40, 4<<10
	}
	if os.Getenv("STREAMMGR_SOAK") == "long" {
		s = soakSize{streams: 400, bytes: 64 << 10, duration: 3 * time.Minute, bound: 15 * time.Minute}
	}
	if v := os.Getenv("STREAMMGR_SOAK_STREAMS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("STREAMMGR_SOAK_STREAMS=%q: want a number >= 2", v)
		}
		s.streams = n
	}
	if v := os.Getenv("STREAMMGR_SOAK_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("STREAMMGR_SOAK_BYTES=%q: want a number >= 1", v)
		}
		s.bytes = n
	}
	if v := os.Getenv("STREAMMGR_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			t.Fatalf("STREAMMGR_SOAK_DURATION=%q: want a duration", v)
		}
		s.duration = d
		s.bound = max(s.bound, d+5*time.Minute)
	}
	return s
}

// TestSoak runs the soak twice, each time against a fresh daemon: straight
// to its Unix socket, and through a proxy that kills the gRPC connections.
// Not parallel: it loads the machine on purpose, which would only make the
// timing-sensitive end-to-end tests slower.
func TestSoak(t *testing.T) {
	size := soakSizeFromEnv(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("STREAMMGR_SOAK_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("STREAMMGR_SOAK_SEED=%q: %v", v, err)
		}
	}
	t.Logf("soak: seed=%d streams=%d bytes=%d duration=%v (STREAMMGR_SOAK_SEED=%d repeats the payloads and choices)", seed, size.streams, size.bytes, size.duration, seed)
	for _, kills := range []bool{false, true} {
		name := "direct"
		if kills {
			name = "kills"
		}
		t.Run(name, func(t *testing.T) { runSoak(t, size, seed, kills) })
	}
}

func runSoak(t *testing.T, size soakSize, seed uint64, kills bool) {
	start := time.Now()
	dbgDir, err := os.MkdirTemp("", "smdbg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dbgDir) })
	dbgSock := filepath.Join(dbgDir, "dbg.sock")
	d := startDaemon(t, false, "--debug-listen", "unix:"+dbgSock, "--closed-linger", soakLinger.String())
	ctx, cancel := context.WithTimeout(t.Context(), size.bound)
	defer cancel()

	target := "unix://" + d.sock
	var px *soakProxy
	if kills {
		px = startSoakProxy(t, d.sock)
		target = "passthrough:///" + px.ln.Addr().String()
	}
	clients := dialSoak(t, target)
	for _, c := range clients {
		// Every connection is up before the baseline is taken.
		if _, err := listStreams(ctx, c); err != nil {
			t.Fatalf("ListStreams: %v", err)
		}
	}
	probe := newDaemonProbe(t, d, dbgSock)
	base := probe.baseline(ctx)
	t.Logf("soak: daemon baseline: %d goroutines, %d fds", base.goroutines, base.fds)

	stopKills := func() {}
	if px != nil {
		stopKills = px.killAtRandom(ctx, rand.New(rand.NewPCG(seed, 0x5eed)))
	}
	totals := map[bool]*soakStats{true: {}, false: {}}
	rounds := 0
	for {
		r := soakRound{t: t, clients: clients, px: px, size: size, seed: seed, n: rounds, kills: kills}
		r.run(ctx, totals)
		rounds++
		if t.Failed() || time.Since(start) >= size.duration {
			break
		}
	}
	stopKills()
	wall := time.Since(start)
	nkills, nheld := px.kills()
	// Only reads with offsets supersede a waiting read, and the client
	// never sees it (the superseded call's caller is gone): the daemon's
	// call log tells.
	totals[true].superseded += int64(strings.Count(d.stderr.String(), "superseded by a read with an offset"))
	for _, offsets := range []bool{true, false} {
		t.Log(totals[offsets].summary(kills, offsets, rounds, nkills, nheld, wall))
	}
	if t.Failed() {
		return
	}
	if st := totals[true]; st.lostIn+st.dupIn+st.lostOut+st.dupOut != 0 {
		t.Errorf("with offsets: lost %d and duplicated %d bytes inbound, lost %d and duplicated %d outbound; want none", st.lostIn, st.dupIn, st.lostOut, st.dupOut)
	}

	// Leak check: every stream is released after --closed-linger (within
	// soakReleaseSlack), and the daemon is back to its goroutines and
	// descriptors of the baseline (the same gRPC connections, re-dialled if
	// they were killed).
	for _, c := range clients {
		if _, err := listStreams(ctx, c); err != nil {
			t.Fatalf("ListStreams: %v", err)
		}
	}
	closed := time.Now()
	releaseBy := closed.Add(soakLinger + soakReleaseSlack)
	deadline := closed.Add(soakLinger + 2*time.Minute)
	nextReport := closed.Add(5 * time.Second)
	var last daemonCounts
	var left int
	late := false
	for {
		resp, err := listStreams(ctx, clients[0])
		if err != nil {
			t.Fatalf("ListStreams: %v", err)
		}
		left = len(resp.Streams)
		last = probe.counts(ctx)
		if left == 0 && last.goroutines <= base.goroutines && last.fds <= base.fds {
			break
		}
		if left > 0 && !late && time.Now().After(releaseBy) {
			t.Errorf("%d of the closed streams are still held %v after the last Close, with --closed-linger %v", left, time.Since(closed).Round(time.Second), soakLinger)
			late = true
		}
		if time.Now().After(nextReport) {
			t.Logf("soak: still waiting for the baseline: %d streams left, %d goroutines, %d fds", left, last.goroutines, last.fds)
			nextReport = time.Now().Add(5 * time.Second)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not return to its baseline (%d goroutines, %d fds): %d streams left, %d goroutines, %d fds; goroutines now:\n%s",
				base.goroutines, base.fds, left, last.goroutines, last.fds, tail(probe.dump(ctx), 150))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("soak: daemon back to baseline after %v: %d goroutines, %d fds", time.Since(start)-wall, last.goroutines, last.fds)
}

// dialSoak opens soakConns gRPC connections to target. They re-dial at
// once when a connection dies, and calls wait for a connection (within
// their deadline) instead of failing while there is none.
func dialSoak(t *testing.T, target string) []smv1.StreamServiceClient {
	t.Helper()
	var out []smv1.StreamServiceClient
	for range soakConns {
		cc, err := grpc.NewClient(target,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
				MinConnectTimeout: 5 * time.Second,
			}),
			grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
		)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		out = append(out, smv1.NewStreamServiceClient(cc))
	}
	return out
}

func listStreams(ctx context.Context, c smv1.StreamServiceClient) (*smv1.ListStreamsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, soakLongDeadline)
	defer cancel()
	return c.ListStreams(ctx, &smv1.ListStreamsRequest{})
}

// soakRound is one round: size.streams streams opened, run to the end and
// closed.
type soakRound struct {
	t       *testing.T
	clients []smv1.StreamServiceClient
	px      *soakProxy // nil without kills
	size    soakSize
	seed    uint64
	n       int
	kills   bool
}

func (r *soakRound) run(ctx context.Context, totals map[bool]*soakStats) {
	t := r.t
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		fails   []string
		stopped int // streams that ended because another one failed
	)
	fail := func(s *soakStream, err error) {
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			stopped++
			return
		}
		fails = append(fails, fmt.Sprintf("%s: %v", s.name, err))
		cancel()
	}
	streams := make([]*soakStream, r.size.streams)
	var peers sync.WaitGroup
	defer func() { cancel(); peers.Wait() }()
	for i := range streams {
		s, err := newSoakStream(ctx, r, i, &peers)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}

	// Opens are not retried (a lost Open response would leave a stream
	// nobody knows), so connections are not killed while they run.
	r.px.pause()
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() {
			if err := s.open(ctx); err != nil {
				fail(s, err)
			}
		})
	}
	wg.Wait()
	r.px.resume()
	if ctx.Err() == nil {
		for _, s := range streams {
			wg.Go(func() {
				if err := s.run(ctx); err != nil {
					fail(s, err)
				}
			})
		}
		wg.Wait()
	}
	for _, s := range streams {
		totals[s.offsets].add(s.stats)
	}
	if len(fails) == 0 && stopped == 0 {
		return
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("round %d did not finish within %v", r.n, r.size.bound)
	}
	for i, f := range fails {
		if i == 5 {
			t.Errorf("... and %d more streams failed", len(fails)-i)
			break
		}
		t.Errorf("round %d: %s", r.n, f)
	}
	if stopped > 0 {
		t.Logf("round %d: %d more streams stopped when the round was cancelled", r.n, stopped)
	}
}

// Payloads.

// genPayload returns size pseudo-random bytes: lines of 0-99 random bytes
// other than CR and LF, each ending in "\n" or "\r\n", and now and then one
// longer than limit. The last line may lack its end.
func genPayload(rng *rand.Rand, size, limit int) []byte {
	b := make([]byte, 0, size+3*limit+2)
	for len(b) < size {
		n := rng.IntN(100)
		if rng.IntN(100) < 2 {
			n = limit + 1 + rng.IntN(2*limit)
		}
		for range n {
			c := byte(rng.UintN(254))
			if c >= '\n' {
				c++
			}
			if c >= '\r' {
				c++
			}
			b = append(b, c)
		}
		if rng.IntN(2) == 0 {
			b = append(b, '\r')
		}
		b = append(b, '\n')
	}
	return b[:size]
}

// Streams.

// soakStream is one stream: its payloads, its peer, and the client's view.
type soakStream struct {
	name    string
	offsets bool
	c       smv1.StreamServiceClient
	limit   int
	in      []byte // what the peer sends, the client reads
	out     []byte // what the client writes, the peer receives
	id      string
	peer    *soakPeer
	rngR    *rand.Rand
	rngW    *rand.Rand
	born    time.Time
	slow    bool // the peer sends slowly: reads wait in the daemon

	inCover []uint8 // times each inbound byte reached the client (saturating)
	placed  []placement
	rlog    callLog
	wlog    callLog
	rstats  soakStats // the reader's counters
	wstats  soakStats // the writer's counters
	stats   soakStats // everything, once the stream is done
}

// placement is where a naive write landed: its chunk out[from:from+n] was
// accepted as the outbound bytes [at, at+n).
type placement struct{ from, at, n int }

func newSoakStream(ctx context.Context, r *soakRound, i int, peers *sync.WaitGroup) (*soakStream, error) {
	offsets := i%2 == 0
	mode := "offsets"
	if !offsets {
		mode = "naive"
	}
	base := r.seed ^ uint64(r.n)<<40 ^ uint64(i)<<8
	if r.kills {
		base ^= 1 << 63
	}
	gen := rand.New(rand.NewPCG(base, 1))
	limit := 256 + gen.IntN(1793)
	size := r.size.bytes/2 + gen.IntN(r.size.bytes+1)
	s := &soakStream{
		name:    fmt.Sprintf("round %d stream %d (%s, limit %d)", r.n, i, mode, limit),
		offsets: offsets,
		c:       r.clients[i%len(r.clients)],
		limit:   limit,
		in:      genPayload(gen, size, limit),
		out:     genPayload(gen, r.size.bytes/2+gen.IntN(r.size.bytes+1), limit),
		rngR:    rand.New(rand.NewPCG(base, 2)),
		rngW:    rand.New(rand.NewPCG(base, 3)),
		born:    time.Now(),
	}
	s.inCover = make([]uint8, len(s.in))
	s.slow = gen.IntN(4) == 0
	if s.slow {
		s.name += " slow peer"
	}
	p, err := startSoakPeer(ctx, s.in, s.out, offsets, s.slow, rand.New(rand.NewPCG(base, 4)), peers)
	if err != nil {
		return nil, err
	}
	s.peer = p
	return s, nil
}

func (s *soakStream) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, soakLongDeadline)
	defer cancel()
	resp, err := s.c.Open(ctx, &smv1.OpenRequest{
		Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(s.peer.port())}},
		Limit:   ptr(int64(s.limit)),
	})
	if err != nil {
		return fmt.Errorf("Open: %w", err)
	}
	s.id = resp.StreamId
	s.name += " " + s.id
	return nil
}

// run reads and writes concurrently until both directions are done, closes
// the stream and collects the peer's verdict.
func (s *soakStream) run(ctx context.Context) error {
	var rerr, werr error
	var wg sync.WaitGroup
	dirCtx, stop := context.WithCancel(ctx) // one direction failing stops the other
	wg.Go(func() {
		if rerr = s.readAll(dirCtx); rerr != nil {
			stop()
		}
	})
	wg.Go(func() {
		if werr = s.writeAll(dirCtx); werr != nil {
			stop()
		}
	})
	wg.Wait()
	stop()
	if ctx.Err() == nil {
		// Only the failure, not the other direction's "context canceled".
		if errors.Is(rerr, context.Canceled) && werr != nil {
			rerr = nil
		}
		if errors.Is(werr, context.Canceled) && rerr != nil {
			werr = nil
		}
	}
	s.stats.add(s.rstats)
	s.stats.add(s.wstats)
	s.stats.streams = 1
	if s.slow {
		s.stats.slowPeers = 1
	}
	s.stats.inBytes = int64(len(s.in))
	s.stats.outBytes = int64(len(s.out))
	for _, c := range s.inCover {
		switch {
		case c == 0:
			s.stats.lostIn++
		case c > 1:
			s.stats.dupIn += int64(c) - 1
		}
	}
	if err := errors.Join(rerr, werr); err != nil {
		return err
	}
	if err := s.closeStream(ctx); err != nil {
		return err
	}
	var v peerVerdict
	select {
	case v = <-s.peer.done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the peer: %w", ctx.Err())
	}
	if v.err != nil {
		return fmt.Errorf("peer: %w\nrecent writes:\n%s", v.err, s.wlog.String())
	}
	if s.offsets {
		s.stats.lostOut = int64(max(0, len(s.out)-len(v.got)))
		s.stats.dupOut = int64(max(0, len(v.got)-len(s.out)))
		if !bytes.Equal(v.got, s.out) {
			return fmt.Errorf("the peer received %d bytes, want the %d written", len(v.got), len(s.out))
		}
		return nil
	}
	// Naive: every chunk was accepted at least once; where its successful
	// write put it is known, the other copies are duplicates.
	covered := make([]bool, len(s.out))
	for _, p := range s.placed {
		if p.at+p.n <= len(v.got) && bytes.Equal(v.got[p.at:p.at+p.n], s.out[p.from:p.from+p.n]) {
			for i := p.from; i < p.from+p.n; i++ {
				covered[i] = true
			}
		}
	}
	unique := 0
	for _, c := range covered {
		if c {
			unique++
		}
	}
	s.stats.lostOut = int64(len(s.out) - unique)
	s.stats.dupOut = int64(max(0, len(v.got)-unique))
	return nil
}

// closeStream closes the stream and waits until its connection is gone.
func (s *soakStream) closeStream(ctx context.Context) error {
	tried := false
	err := s.retry(ctx, &s.wstats, &s.wlog, "Close", func(ctx context.Context) error {
		_, err := s.c.Close(ctx, &smv1.CloseRequest{StreamId: s.id})
		if tried && status.Code(err) == codes.NotFound {
			return nil // an earlier attempt closed it, and it was released
		}
		tried = true
		return err
	}, true)
	if err != nil {
		return err
	}
	return s.retry(ctx, &s.wstats, &s.wlog, "WaitClosed", func(ctx context.Context) error {
		_, err := s.c.WaitClosed(ctx, &smv1.WaitClosedRequest{StreamId: s.id})
		if status.Code(err) == codes.NotFound {
			// Closed, lost and then released after --closed-linger
			// (retries can take that long while connections are killed).
			return nil
		}
		return err
	}, true)
}

// callCtx returns the context of one attempt: a random 1-20 ms deadline,
// or (one call in ten, and from the fourth attempt on, so that every
// operation finishes on a loaded machine) soakLongDeadline.
func callCtx(ctx context.Context, rng *rand.Rand, attempt int) (context.Context, context.CancelFunc, time.Duration) {
	d := time.Duration(1+rng.IntN(20)) * time.Millisecond
	if attempt >= 3 || rng.IntN(10) == 0 {
		d = soakLongDeadline
	}
	c, cancel := context.WithTimeout(ctx, d)
	return c, cancel, d
}

// retry runs an idempotent call until it succeeds, with random deadlines
// unless long is set.
func (s *soakStream) retry(ctx context.Context, st *soakStats, log *callLog, what string, call func(context.Context) error, long bool) error {
	rng := s.rngW
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, cancel, d := callCtx(ctx, rng, attempt)
		if long {
			cancel()
			c, cancel = context.WithTimeout(ctx, soakLongDeadline)
			d = soakLongDeadline
		}
		err := call(c)
		cancel()
		st.rpcs++
		log.add(s.born, "%s dl=%v -> %s", what, d, errString(err))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e := parseRPCErr(err)
		if !e.retryable() {
			return fmt.Errorf("%s: %w\nrecent calls:\n%s", what, err, log.String())
		}
		st.countRetry(e)
	}
}

// Reading.

type readKind int

const (
	opRead readKind = iota
	opReadLine
	opReadExactly
	opReadUntil
)

// soakSeparators are the separator sets ReadUntil picks from.
var soakSeparators = [][][]byte{
	{[]byte("\n")},
	{[]byte("\r\n")},
	{[]byte("\n"), []byte("\r\n")},
	{[]byte("\r\n"), []byte("\n\r"), []byte{0}},
}

type readOp struct {
	kind readKind
	n    int
	seps [][]byte
}

func (o readOp) String() string {
	switch o.kind {
	case opRead:
		return fmt.Sprintf("Read(%d)", o.n)
	case opReadLine:
		return "ReadLine"
	case opReadExactly:
		return fmt.Sprintf("ReadExactly(%d)", o.n)
	}
	return fmt.Sprintf("ReadUntil(%q)", o.seps)
}

// pickRead picks a random read; onlyRead makes it a Read (after a
// LIMIT_OVERRUN, which leaves the stream where it was).
func (s *soakStream) pickRead(onlyRead bool) readOp {
	rng := s.rngR
	k := rng.IntN(10)
	switch {
	case onlyRead || k < 3:
		return readOp{kind: opRead, n: 1 + rng.IntN(2*s.limit)}
	case k < 6:
		return readOp{kind: opReadLine}
	case k < 8:
		return readOp{kind: opReadExactly, n: 1 + rng.IntN(2*s.limit)}
	}
	return readOp{kind: opReadUntil, seps: soakSeparators[rng.IntN(len(soakSeparators))]}
}

// readResult is any read's response.
type readResult struct {
	data       []byte
	next       int64
	eof        bool // Read and ReadLine: at_eof() after the read
	incomplete bool // ReadExactly and ReadUntil
	expected   int64
}

func (s *soakStream) doRead(ctx context.Context, op readOp, off *int64) (readResult, error) {
	switch op.kind {
	case opRead:
		r, err := s.c.Read(ctx, &smv1.ReadRequest{StreamId: s.id, N: ptr(int64(op.n)), Offset: off})
		if err != nil {
			return readResult{}, err
		}
		return readResult{data: r.Data, next: r.NextOffset, eof: r.Eof}, nil
	case opReadLine:
		r, err := s.c.ReadLine(ctx, &smv1.ReadLineRequest{StreamId: s.id, Offset: off})
		if err != nil {
			return readResult{}, err
		}
		return readResult{data: r.Data, next: r.NextOffset, eof: r.Eof}, nil
	case opReadExactly:
		r, err := s.c.ReadExactly(ctx, &smv1.ReadExactlyRequest{StreamId: s.id, N: int64(op.n), Offset: off})
		if err != nil {
			return readResult{}, err
		}
		return readResult{data: r.Data, next: r.NextOffset, incomplete: r.Incomplete, expected: r.Expected}, nil
	}
	req := &smv1.ReadUntilRequest{StreamId: s.id, Offset: off}
	if len(op.seps) == 1 && s.rngR.IntN(2) == 0 {
		req.Separator = op.seps[0]
	} else {
		req.Separators = op.seps
	}
	r, err := s.c.ReadUntil(ctx, req)
	if err != nil {
		return readResult{}, err
	}
	return readResult{data: r.Data, next: r.NextOffset, incomplete: r.Incomplete}, nil
}

// readAll reads the stream to its end. With offsets every call carries the
// offset reached and a failed call is retried from it; naive calls carry
// none. Every result is checked against the payload at the offset the
// daemon reports, and counted in inCover.
func (s *soakStream) readAll(ctx context.Context) error {
	st := &s.rstats
	var off int64 // offsets: the offset reached; naive: unused by the calls
	onlyRead := false
	for {
		forced := onlyRead
		op := s.pickRead(forced)
		onlyRead = false
	attempts:
		for attempt := 0; ; attempt++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			var offp *int64
			if s.offsets {
				offp = ptr(off)
			}
			c, cancel, d := callCtx(ctx, s.rngR, attempt)
			res, err := s.doRead(c, op, offp)
			cancel()
			st.rpcs++
			if err == nil {
				s.rlog.add(s.born, "%v off=%s dl=%v -> %d bytes next=%d eof=%v incomplete=%v", op, offString(offp), d, len(res.data), res.next, res.eof, res.incomplete)
				done, err := s.checkRead(op, off, res)
				if err != nil {
					return s.readFailure(err)
				}
				off = res.next
				if done {
					return nil
				}
				break attempts
			}
			e := parseRPCErr(err)
			s.rlog.add(s.born, "%v off=%s dl=%v -> %s", op, offString(offp), d, errString(err))
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case e.retryable():
				st.countRetry(e)
				if s.rngR.IntN(2) == 0 {
					op = s.pickRead(forced)
				}
			case !s.offsets && e.code == codes.FailedPrecondition && e.reason == "CONCURRENT_READ":
				// A naive read met its own predecessor, still waiting in
				// the daemon (its connection died and the daemon does not
				// know yet).
				st.concurrent++
			case op.kind == opReadLine && e.code == codes.ResourceExhausted && e.reason == "LINE_TOO_LONG" && e.lo != nil:
				st.lineTooLong++
				if err := s.checkDropped(off, e.lo); err != nil {
					return s.readFailure(err)
				}
				off = e.lo.NextOffset
				break attempts
			case op.kind == opReadUntil && e.code == codes.ResourceExhausted && e.reason == "LIMIT_OVERRUN" && e.lo != nil:
				st.limitOverrun++
				if s.offsets && e.lo.NextOffset != off {
					return s.readFailure(fmt.Errorf("LIMIT_OVERRUN at offset %d says next_offset %d: a ReadUntil overrun consumes nothing", off, e.lo.NextOffset))
				}
				onlyRead = true
				break attempts
			default:
				return s.readFailure(fmt.Errorf("%v at offset %d: %w", op, off, err))
			}
		}
	}
}

func (s *soakStream) readFailure(err error) error {
	return fmt.Errorf("reading: %w\nrecent reads:\n%s", err, s.rlog.String())
}

// checkRead checks one read's result, taken at offset off (offsets), and
// reports whether the stream is at its end.
func (s *soakStream) checkRead(op readOp, off int64, res readResult) (bool, error) {
	n := int64(len(res.data))
	total := int64(len(s.in))
	start := res.next - n
	if s.offsets && start != off {
		return false, fmt.Errorf("%v at offset %d returned %d bytes with next_offset %d, want next_offset %d", op, off, n, res.next, off+n)
	}
	if start < 0 || res.next > total {
		return false, fmt.Errorf("%v returned %d bytes with next_offset %d, outside the %d-byte payload", op, n, res.next, total)
	}
	if want := s.in[start:res.next]; !bytes.Equal(res.data, want) {
		i := firstDiff(res.data, want)
		return false, fmt.Errorf("%v returned bytes [%d, %d) that differ from the payload first at offset %d (got %q, want %q)", op, start, res.next, start+int64(i), snippet(res.data, i), snippet(want, i))
	}
	for i := start; i < res.next; i++ {
		s.inCover[i] = min(s.inCover[i]+1, 255)
	}
	atEnd := res.next == total
	data := res.data
	switch op.kind {
	case opRead:
		if n == 0 {
			if !atEnd || !res.eof {
				return false, fmt.Errorf("Read returned nothing at offset %d of %d (eof=%v): it returns empty only at EOF", start, total, res.eof)
			}
			return true, nil
		}
		if n > int64(op.n) {
			return false, fmt.Errorf("%v returned %d bytes", op, n)
		}
	case opReadLine:
		if n == 0 {
			if !atEnd {
				return false, fmt.Errorf("ReadLine returned nothing at offset %d of %d", start, total)
			}
			return true, nil
		}
		if bytes.IndexByte(data[:n-1], '\n') >= 0 {
			return false, fmt.Errorf("ReadLine at offset %d returned more than one line: %q", start, data)
		}
		if data[n-1] != '\n' && !atEnd {
			return false, fmt.Errorf("ReadLine at offset %d returned a line without its newline before EOF (%d bytes)", start, n)
		}
		if data[n-1] == '\n' && int(n-1) > s.limit {
			return false, fmt.Errorf("ReadLine at offset %d returned a %d-byte line, over the limit %d", start, n, s.limit)
		}
	case opReadExactly:
		if res.expected != int64(op.n) {
			return false, fmt.Errorf("%v answered expected=%d", op, res.expected)
		}
		if res.incomplete {
			if n >= int64(op.n) || !atEnd {
				return false, fmt.Errorf("%v at offset %d: incomplete with %d bytes, at offset %d of %d", op, start, n, res.next, total)
			}
			return true, nil
		}
		if n != int64(op.n) {
			return false, fmt.Errorf("%v returned %d bytes", op, n)
		}
	case opReadUntil:
		for _, sep := range op.seps {
			if i := bytes.Index(data, sep); i >= 0 && (res.incomplete || i+len(sep) < int(n)) {
				return false, fmt.Errorf("%v at offset %d: %q ends at %d of the %d bytes returned (incomplete=%v)", op, start, sep, i+len(sep), n, res.incomplete)
			}
		}
		if res.incomplete {
			if !atEnd {
				return false, fmt.Errorf("%v at offset %d: incomplete before EOF (%d bytes, offset %d of %d)", op, start, n, res.next, total)
			}
			return true, nil
		}
		shortest := -1
		for _, sep := range op.seps {
			if bytes.HasSuffix(data, sep) && (shortest < 0 || len(sep) < shortest) {
				shortest = len(sep)
			}
		}
		if shortest < 0 {
			return false, fmt.Errorf("%v at offset %d returned %d bytes not ending in a separator", op, start, n)
		}
		if int(n)-shortest > s.limit {
			return false, fmt.Errorf("%v at offset %d found its separator at %d, past the limit %d", op, start, int(n)-shortest, s.limit)
		}
	}
	if res.eof {
		if !atEnd {
			return false, fmt.Errorf("%v says eof at offset %d of %d", op, res.next, total)
		}
		return true, nil
	}
	return false, nil
}

// checkDropped checks the bytes a LINE_TOO_LONG dropped: asyncio drops the
// line and its newline when the newline was found past the limit
// (consumed is where it starts), otherwise the whole buffer, which holds
// more than limit bytes and no newline (consumed is its length).
func (s *soakStream) checkDropped(off int64, lo *smv1.LimitOverrunError) error {
	next := lo.NextOffset
	k := lo.Consumed
	if lo.Found {
		k++
	}
	start := next - k
	total := int64(len(s.in))
	if s.offsets && start != off {
		return fmt.Errorf("LINE_TOO_LONG at offset %d: next_offset %d, consumed %d, found %v: the dropped bytes should start at the offset", off, next, lo.Consumed, lo.Found)
	}
	if start < 0 || next > total {
		return fmt.Errorf("LINE_TOO_LONG dropped [%d, %d), outside the %d-byte payload", start, next, total)
	}
	drop := s.in[start:next]
	body := drop
	if lo.Found {
		if drop[len(drop)-1] != '\n' {
			return fmt.Errorf("LINE_TOO_LONG dropped [%d, %d) (found): it does not end in a newline", start, next)
		}
		body = drop[:len(drop)-1]
	}
	if i := bytes.IndexByte(body, '\n'); i >= 0 {
		return fmt.Errorf("LINE_TOO_LONG dropped [%d, %d) (found %v) with a newline inside at %d", start, next, lo.Found, start+int64(i))
	}
	if len(body) <= s.limit {
		return fmt.Errorf("LINE_TOO_LONG dropped a %d-byte line at %d, not over the limit %d", len(body), start, s.limit)
	}
	for i := start; i < next; i++ {
		s.inCover[i] = min(s.inCover[i]+1, 255)
	}
	return nil
}

// Writing.

// writeAll writes the outbound payload in random chunks (Write or
// WriteLines), drains now and then, and half-closes. With offsets every
// write carries its first byte's offset and a failed write is retried from
// the offset reached; naive writes carry none and repeat the chunk.
func (s *soakStream) writeAll(ctx context.Context) error {
	st := &s.wstats
	rng := s.rngW
	total := len(s.out)
	woff, maxEnd := 0, 0
	for woff < total {
		k := 1 + rng.IntN(min(soakMaxChunk, total-woff))
		for attempt := 0; ; attempt++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			chunk := s.out[woff : woff+k]
			maxEnd = max(maxEnd, woff+k)
			var offp *int64
			if s.offsets {
				offp = ptr(int64(woff))
			}
			c, cancel, d := callCtx(ctx, rng, attempt)
			next, what, err := s.doWrite(c, chunk, offp)
			cancel()
			st.rpcs++
			s.wlog.add(s.born, "%s(%d bytes) off=%s dl=%v -> next=%d %s", what, k, offString(offp), d, next, errString(err))
			if err == nil {
				if s.offsets {
					if next < int64(woff+k) || next > int64(maxEnd) {
						return s.writeFailure(fmt.Errorf("%s of [%d, %d) answered next_offset %d; the most ever sent ends at %d", what, woff, woff+k, next, maxEnd))
					}
					woff = int(next)
				} else {
					s.placed = append(s.placed, placement{from: woff, at: int(next) - k, n: k})
					woff += k
				}
				break
			}
			e := parseRPCErr(err)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case e.retryable():
				st.countRetry(e)
				if s.offsets && rng.IntN(2) == 0 {
					// Retry with another chunk from the same offset: the
					// daemon skips what an earlier attempt got in.
					k = 1 + rng.IntN(min(soakMaxChunk, total-woff))
				}
			case e.code == codes.ResourceExhausted && e.reason == "WRITE_BUFFER_FULL":
				st.bufferFull++
				if err := s.drain(ctx); err != nil {
					return err
				}
			default:
				return s.writeFailure(fmt.Errorf("%s of [%d, %d): %w", what, woff, woff+k, err))
			}
		}
		if rng.IntN(5) == 0 {
			if err := s.drain(ctx); err != nil {
				return err
			}
		}
	}
	if err := s.drain(ctx); err != nil {
		return err
	}
	return s.retry(ctx, st, &s.wlog, "WriteEof", func(ctx context.Context) error {
		_, err := s.c.WriteEof(ctx, &smv1.WriteEofRequest{StreamId: s.id})
		return err
	}, true)
}

func (s *soakStream) writeFailure(err error) error {
	return fmt.Errorf("writing: %w\nrecent writes:\n%s", err, s.wlog.String())
}

func (s *soakStream) doWrite(ctx context.Context, chunk []byte, off *int64) (int64, string, error) {
	if len(chunk) > 1 && s.rngW.IntN(4) == 0 {
		cut := 1 + s.rngW.IntN(len(chunk)-1)
		r, err := s.c.WriteLines(ctx, &smv1.WriteLinesRequest{StreamId: s.id, Lines: [][]byte{chunk[:cut], chunk[cut:]}, Offset: off})
		return r.GetNextOffset(), "WriteLines", err
	}
	r, err := s.c.Write(ctx, &smv1.WriteRequest{StreamId: s.id, Data: chunk, Offset: off})
	return r.GetNextOffset(), "Write", err
}

// drain drains with random deadlines until a Drain succeeds (Drain is
// idempotent).
func (s *soakStream) drain(ctx context.Context) error {
	return s.retry(ctx, &s.wstats, &s.wlog, "Drain", func(ctx context.Context) error {
		_, err := s.c.Drain(ctx, &smv1.DrainRequest{StreamId: s.id})
		return err
	}, false)
}

// Errors.

// rpcErr is a failed call's status, with the streammgr reason and
// LimitOverrunError detail when it has them.
type rpcErr struct {
	code    codes.Code
	reason  string
	lo      *smv1.LimitOverrunError
	bareEOF bool // a bare io.EOF from grpc-go, not a status
}

func parseRPCErr(err error) rpcErr {
	if errors.Is(err, io.EOF) {
		// grpc-go can end a unary call with a bare io.EOF when its
		// connection breaks while the request is written (see
		// grpc/grpc-go#7230): as with UNAVAILABLE, the daemon may or may
		// not have got the request.
		return rpcErr{code: codes.Unavailable, bareEOF: true}
	}
	st := status.Convert(err)
	e := rpcErr{code: st.Code()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.Domain == "streammgr" {
				e.reason = d.Reason
			}
		case *smv1.LimitOverrunError:
			e.lo = d
		}
	}
	return e
}

// retryable reports a failure of the call, not of the stream: its deadline
// or cancel, the gRPC connection (UNAVAILABLE without a streammgr reason),
// or a read superseded by a later one.
func (e rpcErr) retryable() bool {
	switch e.code {
	case codes.DeadlineExceeded:
		return e.reason == "" || e.reason == "DEADLINE_EXCEEDED"
	case codes.Canceled:
		return e.reason == "" || e.reason == "CANCELLED"
	case codes.Unavailable:
		return e.reason == ""
	case codes.Aborted:
		return e.reason == "READ_SUPERSEDED"
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	e := parseRPCErr(err)
	if e.bareEOF {
		return "io.EOF"
	}
	if e.reason != "" {
		return e.code.String() + " " + e.reason
	}
	return e.code.String()
}

func offString(off *int64) string {
	if off == nil {
		return "none"
	}
	return strconv.FormatInt(*off, 10)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func snippet(b []byte, at int) []byte {
	return b[at:min(len(b), at+16)]
}

// callLog keeps a stream's recent calls in one direction, for failure
// reports (a reproduction of what led to the failure).
type callLog struct {
	mu      sync.Mutex
	entries []string
	first   int
}

func (l *callLog) add(born time.Time, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := fmt.Sprintf("  +%v ", time.Since(born).Round(10*time.Microsecond)) + fmt.Sprintf(format, args...)
	if len(l.entries) < soakMaxLog {
		l.entries = append(l.entries, e)
		return
	}
	l.entries[l.first] = e
	l.first = (l.first + 1) % soakMaxLog
}

func (l *callLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i := range l.entries {
		b.WriteString(l.entries[(l.first+i)%len(l.entries)])
		b.WriteByte('\n')
	}
	return b.String()
}

// Counters.

type soakStats struct {
	streams           int64
	inBytes, outBytes int64
	lostIn, dupIn     int64
	lostOut, dupOut   int64
	rpcs              int64
	deadline          int64 // retries after DEADLINE_EXCEEDED or CANCELLED
	transport         int64 // retries after UNAVAILABLE from the gRPC connection
	superseded        int64 // reads superseded, in the daemon's log (the caller of one is gone)
	concurrent        int64 // naive reads that met CONCURRENT_READ
	lineTooLong       int64
	limitOverrun      int64
	bufferFull        int64
	bareEOF           int64 // transport retries after grpc-go's bare io.EOF
	slowPeers         int64
}

func (a *soakStats) add(b soakStats) {
	a.streams += b.streams
	a.inBytes += b.inBytes
	a.outBytes += b.outBytes
	a.lostIn += b.lostIn
	a.dupIn += b.dupIn
	a.lostOut += b.lostOut
	a.dupOut += b.dupOut
	a.rpcs += b.rpcs
	a.deadline += b.deadline
	a.transport += b.transport
	a.superseded += b.superseded
	a.concurrent += b.concurrent
	a.lineTooLong += b.lineTooLong
	a.limitOverrun += b.limitOverrun
	a.bufferFull += b.bufferFull
	a.bareEOF += b.bareEOF
	a.slowPeers += b.slowPeers
}

func (a *soakStats) countRetry(e rpcErr) {
	switch e.code {
	case codes.Unavailable:
		a.transport++
		if e.bareEOF {
			a.bareEOF++
		}
	case codes.Aborted:
		// READ_SUPERSEDED reaching a sequential client: counted with the
		// deadlines (the daemon's log counts every supersession).
		a.deadline++
	default:
		a.deadline++
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (a *soakStats) summary(kills, offsets bool, rounds int, connKills, halfOpen int64, wall time.Duration) string {
	return fmt.Sprintf("soak: kills=%s offsets=%s lost=%d dup=%d lost_in=%d dup_in=%d lost_out=%d dup_out=%d streams=%d slow_peers=%d rounds=%d bytes_in=%d bytes_out=%d rpcs=%d deadline_retries=%d transport_retries=%d bare_eof=%d superseded=%d concurrent_read=%d line_too_long=%d limit_overrun=%d buffer_full=%d conn_kills=%d half_open=%d wall=%v",
		onOff(kills), onOff(offsets), a.lostIn+a.lostOut, a.dupIn+a.dupOut, a.lostIn, a.dupIn, a.lostOut, a.dupOut,
		a.streams, a.slowPeers, rounds, a.inBytes, a.outBytes, a.rpcs, a.deadline, a.transport, a.bareEOF, a.superseded, a.concurrent,
		a.lineTooLong, a.limitOverrun, a.bufferFull, connKills, halfOpen, wall.Round(100*time.Millisecond))
}

// The peer.

// soakPeer is the remote end of one stream: a loopback listener for the
// daemon's one connection, which it sends in to (then FIN) while it
// receives until EOF.
type soakPeer struct {
	ln   net.Listener
	done chan peerVerdict
}

type peerVerdict struct {
	got []byte // what it received
	err error
}

func (p *soakPeer) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// startSoakPeer listens for one connection. It sends in in random chunks
// with small random pauses (slow: small chunks with pauses of up to 100 ms,
// for at most soakSlowBudget in all, so that the client's reads wait) and
// receives until EOF; strict checks the bytes received against want as
// they come (naive streams receive duplicates: they are only collected).
// It gives up when ctx ends.
func startSoakPeer(ctx context.Context, in, want []byte, strict, slow bool, rng *rand.Rand, wg *sync.WaitGroup) (*soakPeer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &soakPeer{ln: ln, done: make(chan peerVerdict, 1)}
	stopLn := context.AfterFunc(ctx, func() { ln.Close() })
	wg.Go(func() {
		c, err := ln.Accept()
		stopLn()
		ln.Close()
		if err != nil {
			p.done <- peerVerdict{err: fmt.Errorf("accept: %w", err)}
			return
		}
		defer c.Close()
		stopConn := context.AfterFunc(ctx, func() { c.Close() })
		defer stopConn()
		sent := make(chan error, 1)
		go func() {
			maxChunk, budget := soakMaxChunk, time.Duration(0)
			if slow {
				maxChunk, budget = 512, soakSlowBudget
			}
			for rest := in; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(maxChunk))
				if _, err := c.Write(rest[:n]); err != nil {
					sent <- fmt.Errorf("sending byte %d: %w", len(in)-len(rest), err)
					return
				}
				rest = rest[n:]
				// Pacing, part of the workload: the client's reads wait
				// for bytes now and then, some longer than their
				// deadlines.
				var pause time.Duration
				switch {
				case budget > 0:
					pause = min(budget, time.Duration(5+rng.IntN(96))*time.Millisecond)
					budget -= pause
				case rng.IntN(4) == 0:
					pause = time.Duration(rng.IntN(2000)) * time.Microsecond
				}
				time.Sleep(pause)
			}
			sent <- c.(*net.TCPConn).CloseWrite()
		}()
		got, rerr := receive(c, want, strict)
		serr := <-sent
		p.done <- peerVerdict{got: got, err: errors.Join(rerr, serr)}
	})
	return p, nil
}

// receive reads c until EOF. strict: every byte must be the next byte of
// want, and nothing may follow it.
func receive(c net.Conn, want []byte, strict bool) ([]byte, error) {
	limit := 4*len(want) + 1<<20
	var got []byte
	var bad error
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if strict && bad == nil && n > 0 {
			chunk := buf[:n]
			at := len(got)
			switch {
			case at+n > len(want):
				bad = fmt.Errorf("received %d bytes, more than the %d written", at+n, len(want))
			case !bytes.Equal(chunk, want[at:at+n]):
				i := firstDiff(chunk, want[at:at+n])
				bad = fmt.Errorf("byte %d is %q..., want %q...", at+i, snippet(chunk, i), snippet(want[at:at+n], i))
			}
		}
		got = append(got, buf[:n]...)
		if len(got) > limit {
			return got, fmt.Errorf("received over %d bytes, for %d written", limit, len(want))
		}
		if errors.Is(err, io.EOF) {
			if bad == nil && strict && len(got) != len(want) {
				bad = fmt.Errorf("EOF after %d bytes, want %d", len(got), len(want))
			}
			return got, bad
		}
		if err != nil {
			return got, errors.Join(bad, fmt.Errorf("receiving after %d bytes: %w", len(got), err))
		}
	}
}

// The proxy.

// soakProxy forwards loopback TCP connections to the daemon's Unix socket
// and kills them all at random moments: the client side with a reset, so
// what is in flight either way is lost. Half of the killed connections are
// left half-open on the daemon's side until the next kill, as when a
// connection dies somewhere the daemon cannot see: the daemon keeps their
// calls running (a read keeps waiting), and the clients' retries on their
// new connections meet them.
type soakProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]*proxied // by client side
	held    []net.Conn            // daemon sides of killed connections, still open
	paused  bool
	nkills  atomic.Int64
	nheld   atomic.Int64
	wg      sync.WaitGroup
	stopped bool
}

// proxied is one forwarded connection.
type proxied struct {
	u    net.Conn // the daemon side
	held bool     // killed, but u is left open
}

func startSoakProxy(t *testing.T, sock string) *soakProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &soakProxy{ln: ln, target: sock, conns: map[net.Conn]*proxied{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
		p.killAll(nil, true)
		p.releaseHeld()
		p.wg.Wait()
	})
	return p
}

func (p *soakProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("unix", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		e := &proxied{u: u}
		p.conns[c] = e
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, e) })
	}
}

// pipe copies both ways until either side ends, then closes both (the
// daemon side of a held connection is closed by a later kill).
func (p *soakProxy) pipe(c net.Conn, e *proxied) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(e.u, c)
	go cp(c, e.u)
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	held := e.held
	p.mu.Unlock()
	c.Close()
	if !held {
		e.u.Close()
	}
	<-done
}

// killAll resets every connection at once, first closing the daemon sides
// held since the previous kill. With rng, half of the daemon sides are
// held open in their turn. Unless force is set, it does nothing while the
// kills are paused, and reports whether it killed.
func (p *soakProxy) killAll(rng *rand.Rand, force bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused && !force {
		return false
	}
	for _, u := range p.held {
		u.Close()
	}
	p.held = nil
	for c, e := range p.conns {
		_ = c.(*net.TCPConn).SetLinger(0)
		if rng != nil && rng.IntN(2) == 0 {
			e.held = true
			p.held = append(p.held, e.u)
			p.nheld.Add(1)
		} else {
			e.u.Close()
		}
		c.Close()
		delete(p.conns, c)
	}
	return true
}

// releaseHeld closes the daemon sides still held open.
func (p *soakProxy) releaseHeld() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.held {
		u.Close()
	}
	p.held = nil
}

// killAtRandom kills every connection at random moments, 20-200 ms
// apart, until the returned func is called.
func (p *soakProxy) killAtRandom(ctx context.Context, rng *rand.Rand) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			tm := time.NewTimer(time.Duration(20+rng.IntN(181)) * time.Millisecond)
			select {
			case <-ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			}
			if p.killAll(rng, false) {
				p.nkills.Add(1)
			}
		}
	})
	return func() { cancel(); wg.Wait(); p.releaseHeld() }
}

// pause stops the kills until resume: no kill happens after pause returns
// (killAll checks under the same lock). Both do nothing on a nil proxy.
func (p *soakProxy) pause() {
	if p != nil {
		p.mu.Lock()
		p.paused = true
		p.mu.Unlock()
	}
}

func (p *soakProxy) resume() {
	if p != nil {
		p.mu.Lock()
		p.paused = false
		p.mu.Unlock()
	}
}

// kills returns how many times every connection was killed, and how many
// connections were left half-open.
func (p *soakProxy) kills() (int64, int64) {
	if p == nil {
		return 0, 0
	}
	return p.nkills.Load(), p.nheld.Load()
}

// The daemon's goroutines and descriptors.

type daemonCounts struct{ goroutines, fds int }

// daemonProbe reads the daemon's goroutine count from its debug listener
// and its descriptors from /proc.
type daemonProbe struct {
	t     *testing.T
	pid   int
	http  *http.Client
	noFds sync.Once
}

func newDaemonProbe(t *testing.T, d *daemon, debugSock string) *daemonProbe {
	tr := &http.Transport{
		DisableKeepAlives: true, // no connection of ours stays open in the daemon
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", debugSock)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &daemonProbe{t: t, pid: d.cmd.Process.Pid, http: &http.Client{Transport: tr, Timeout: soakLongDeadline}}
}

var goroutineTotalRE = regexp.MustCompile(`(?m)^goroutine profile: total (\d+)$`)

func (p *daemonProbe) get(ctx context.Context, path string) string {
	p.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://streammgrd"+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		p.t.Fatalf("debug listener: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(bufio.NewReader(resp.Body))
	if err != nil || resp.StatusCode != http.StatusOK {
		p.t.Fatalf("debug listener: GET %s: status %d, %v", path, resp.StatusCode, err)
	}
	return string(body)
}

func (p *daemonProbe) counts(ctx context.Context) daemonCounts {
	p.t.Helper()
	body := p.get(ctx, "/debug/pprof/goroutine?debug=1")
	m := goroutineTotalRE.FindStringSubmatch(body)
	if m == nil {
		p.t.Fatalf("debug listener: no goroutine total in:\n%.300s", body)
	}
	g, _ := strconv.Atoi(m[1])
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.noFds.Do(func() { p.t.Log("soak: no /proc here: descriptors are not counted") })
		fds = nil
	case err != nil:
		p.t.Fatalf("counting the daemon's descriptors: %v", err)
	}
	return daemonCounts{goroutines: g, fds: len(fds)}
}

// baseline returns the smallest counts of ten readings: what is only
// passing through (the debug listener's connection of the previous
// reading, a call still ending) only ever adds.
func (p *daemonProbe) baseline(ctx context.Context) daemonCounts {
	p.t.Helper()
	b := p.counts(ctx)
	for range 9 {
		time.Sleep(20 * time.Millisecond)
		c := p.counts(ctx)
		b = daemonCounts{goroutines: min(b.goroutines, c.goroutines), fds: min(b.fds, c.fds)}
	}
	return b
}

func (p *daemonProbe) dump(ctx context.Context) string {
	return p.get(ctx, "/debug/pprof/goroutine?debug=1")
}
