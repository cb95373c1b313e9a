package main_test

// A hostile client against a real daemon with a small memory budget: fast
// peers fill read buffers, peers that never read fill write buffers, and
// new streams are asked for on top. The daemon's RSS must stay bounded by
// its budget, an honest client must keep being answered quickly, the
// attacker must get MEMORY_BUDGET, and everything must come back after.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

const (
	attackBudget = 32 << 20
	// attackOverhead is what the daemon may hold beyond its budget: read
	// buffers grow by doubling, so their capacity can be twice what they
	// hold, and the garbage collector keeps as much again in headroom
	// (README: "Memory budget").
	attackOverhead = 2*attackBudget + 64<<20
)

// procStats reads a process's resident memory and open descriptors.
func procStats(t *testing.T, pid int) (rss int64, fds int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return kb << 10, len(ents)
}

// goroutines reads the daemon's goroutine count from its debug listener.
func goroutines(t *testing.T, debugSock string) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", debugSock)
		},
	}}
	resp, err := c.Get("http://streammgrd/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total ")))
	if err != nil {
		t.Fatalf("goroutine profile: %q", line)
	}
	return n
}

// prober is an honest client: Health, then a 16-byte Write + ReadExactly
// echo, over and over, recording how long each round took.
type prober struct {
	mu   sync.Mutex
	lat  []time.Duration
	errs []error
	stop chan struct{}
	done chan struct{}
	cc   *grpc.ClientConn
}

func startProber(t *testing.T, sock string) *prober {
	t.Helper()
	cc := dialSock(t, sock)
	c, h := smv1.NewStreamServiceClient(cc), healthpb.NewHealthClient(cc)
	echo := newPeer(t)
	ctx := context.Background()
	o, err := c.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(echo.port())}}})
	if err != nil {
		t.Fatal(err)
	}
	conn := echo.accept(t)
	go func() { _, _ = io.Copy(conn, conn) }()
	p := &prober{stop: make(chan struct{}), done: make(chan struct{}), cc: cc}
	msg := []byte("honest client 16")
	go func() {
		defer close(p.done)
		var in, out int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				_, _ = c.Abort(ctx, &smv1.AbortRequest{StreamId: o.StreamId})
				return
			case <-tick.C:
			}
			start := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := h.Check(rctx, &healthpb.HealthCheckRequest{})
			if err == nil {
				var w *smv1.WriteResponse
				if w, err = c.Write(rctx, &smv1.WriteRequest{StreamId: o.StreamId, Data: msg, Offset: &out}); err == nil {
					out = w.NextOffset
					var r *smv1.ReadExactlyResponse
					if r, err = c.ReadExactly(rctx, &smv1.ReadExactlyRequest{StreamId: o.StreamId, N: 16, Offset: &in}); err == nil {
						in = r.NextOffset
					}
				}
			}
			cancel()
			p.mu.Lock()
			p.lat = append(p.lat, time.Since(start))
			if err != nil {
				p.errs = append(p.errs, err)
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// moreRounds waits until the honest client has made n more rounds, calling
// each while it waits.
func (p *prober) moreRounds(t *testing.T, n int, each func()) {
	t.Helper()
	rounds := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.lat)
	}
	want := rounds() + n
	eventually(t, time.Minute, "the honest client's rounds under the attack", func() bool {
		each()
		return rounds() >= want
	})
}

// finish stops the honest client and returns the median, 99th percentile
// and slowest of its rounds, and how many it made.
func (p *prober) finish(t *testing.T) (p50, p99, slowest time.Duration, n int) {
	t.Helper()
	close(p.stop)
	<-p.done
	p.cc.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		t.Errorf("the honest client got %d errors during the attack, first: %v", len(p.errs), p.errs[0])
	}
	lat := slices.Clone(p.lat)
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("the honest client made no round")
	}
	return lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], len(lat)
}

// TestAttackMemoryBudget runs alone in its package (not in parallel): it
// measures latency.
func TestAttackMemoryBudget(t *testing.T) {
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dbg := filepath.Join(dir, "dbg.sock")
	d := startDaemon(t, false, "--max-buffered-bytes", strconv.Itoa(attackBudget), "--debug-listen", "unix:"+dbg, "--max-write-buffer", strconv.Itoa(4<<20), "--closed-linger", "1s")
	pid := d.cmd.Process.Pid
	rss0, fds0 := procStats(t, pid)
	g0 := goroutines(t, dbg)

	cc := dialSock(t, d.sock)
	defer cc.Close()
	c := smv1.NewStreamServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	honest := startProber(t, d.sock)
	var maxRSS int64
	sample := func() {
		if rss, _ := procStats(t, pid); rss > maxRSS {
			maxRSS = rss
		}
	}

	// Fast peers: 60 streams with a 1 MiB limit, each peer sending 2 MiB.
	src := newPeer(t)
	var peers []net.Conn
	var ids []string
	payload := make([]byte, 2<<20) // 4 x the budget in all
	for range 60 {
		o, err := c.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(src.port())}}, Limit: ptr(int64(1 << 20))})
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, src.accept(t))
		ids = append(ids, o.StreamId)
	}
	for _, conn := range peers {
		go func() { _, _ = conn.Write(payload) }()
	}
	budgetOf := func() (int64, int64) {
		r, err := c.ListStreams(ctx, &smv1.ListStreamsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.BufferedBytes, r.MaxBufferedBytes
	}
	eventually(t, 30*time.Second, "the budget to fill", func() bool {
		sample()
		used, max := budgetOf()
		return used >= max*7/8
	})

	// The budget's health service says so.
	eventually(t, 10*time.Second, "the budget's health NOT_SERVING", func() bool {
		r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "streammgr.budget"})
		return err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING
	})
	// New streams are refused.
	_, err = c.OpenPair(ctx, &smv1.OpenPairRequest{})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(fmt.Sprint(st.Details()), "MEMORY_BUDGET") {
		t.Fatalf("OpenPair with the budget full = %v, want RESOURCE_EXHAUSTED MEMORY_BUDGET", err)
	}
	// Writes nobody reads, on the streams we have: refused past the budget.
	sawBudget := false
	chunk := make([]byte, 1<<20)
	for _, id := range ids[:20] {
		for range 4 {
			_, err := c.Write(ctx, &smv1.WriteRequest{StreamId: id, Data: chunk})
			if st := status.Convert(err); err != nil {
				if strings.Contains(fmt.Sprint(st.Details()), "MEMORY_BUDGET") {
					sawBudget = true
				}
				break
			}
		}
		sample()
	}
	if !sawBudget {
		t.Error("no write was refused with MEMORY_BUDGET")
	}
	honest.moreRounds(t, 200, sample) // 2 s more of the attack, sampling RSS meanwhile
	used, _ := budgetOf()
	if used > attackBudget {
		t.Errorf("budget used %d > %d", used, attackBudget)
	}
	p50, p99, slowest, n := honest.finish(t)
	t.Logf("attack: budget %d MiB, RSS %d -> %d MiB at most, honest client p50 %v p99 %v slowest %v over %d rounds",
		attackBudget>>20, rss0>>20, maxRSS>>20, p50.Round(time.Microsecond), p99.Round(time.Microsecond), slowest.Round(time.Microsecond), n)
	if grown := maxRSS - rss0; grown > attackBudget+attackOverhead {
		t.Errorf("RSS grew by %d MiB, want at most the budget %d MiB + overhead %d MiB", grown>>20, attackBudget>>20, attackOverhead>>20)
	}
	// The target is 100 ms (STREAMMGR_ATTACK_STRICT=1 holds the run to it).
	// CI runs other packages' tests beside this one on 2 cores, so there
	// the bound is 3 s: a starved client waits out its 10 s round (an error
	// above), a slow machine does not.
	bound := 3 * time.Second
	if os.Getenv("STREAMMGR_ATTACK_STRICT") == "1" {
		bound = 100 * time.Millisecond
	}
	if p99 > bound {
		t.Errorf("honest client p99 %v during the attack, want under %v", p99, bound)
	}

	// The attacker leaves: everything comes back.
	for _, id := range ids {
		_, _ = c.Abort(ctx, &smv1.AbortRequest{StreamId: id})
	}
	// (An aborted stream's unread bytes stay readable, and charged, until
	// its handle goes: --closed-linger.)
	eventually(t, 10*time.Second, "the budget's health SERVING again", func() bool {
		r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "streammgr.budget"})
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	})
	for _, p := range peers {
		p.Close()
	}
	cc.Close()
	var fds, g int
	eventually(t, 30*time.Second, "descriptors and goroutines back to their baseline", func() bool {
		_, fds = procStats(t, pid)
		g = goroutines(t, dbg)
		if fds <= fds0 && g <= g0 {
			return true
		}
		return false
	})
}

// TestAttackQueuedConnections floods a server with connections that send
// and are never claimed: they are streams, so the memory budget and
// --max-streams bound them (past them new connections are closed at once),
// the honest client keeps being answered, and closing the server gives
// everything back.
func TestAttackQueuedConnections(t *testing.T) {
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dbg := filepath.Join(dir, "dbg.sock")
	d := startDaemon(t, false, "--max-buffered-bytes", strconv.Itoa(attackBudget), "--debug-listen", "unix:"+dbg,
		"--max-accept-queue", "1000", "--max-streams", "400")
	pid := d.cmd.Process.Pid
	rss0, fds0 := procStats(t, pid)
	g0 := goroutines(t, dbg)
	cc := dialSock(t, d.sock)
	c := smv1.NewStreamServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := c.StartServer(ctx, &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	honest := startProber(t, d.sock)
	var maxRSS int64
	payload := make([]byte, 1<<20)
	var conns []net.Conn
	for range 500 {
		conn, err := net.Dial("tcp", srv.Sockets[0])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		go func() { _, _ = conn.Write(payload) }()
		if rss, _ := procStats(t, pid); rss > maxRSS {
			maxRSS = rss
		}
	}
	var info *smv1.ServerInfo
	eventually(t, 30*time.Second, "every connection queued or rejected", func() bool {
		r, err := c.ListServers(ctx, &smv1.ListServersRequest{})
		if err != nil || len(r.Servers) != 1 {
			return false
		}
		if rss, _ := procStats(t, pid); rss > maxRSS {
			maxRSS = rss
		}
		info = r.Servers[0]
		return info.Queued+info.Rejected == 500 && r.BufferedBytes <= attackBudget
	})
	honest.moreRounds(t, 200, func() {}) // 2 s more with the queue full
	p50, p99, slowest, n := honest.finish(t)
	t.Logf("queued flood: %d queued, %d rejected, RSS %d -> %d MiB at most, honest client p50 %v p99 %v slowest %v over %d rounds",
		info.Queued, info.Rejected, rss0>>20, maxRSS>>20, p50.Round(time.Microsecond), p99.Round(time.Microsecond), slowest.Round(time.Microsecond), n)
	if info.Queued > 400 || info.Rejected == 0 {
		t.Errorf("queued %d, rejected %d: want at most --max-streams queued and the rest rejected", info.Queued, info.Rejected)
	}
	if grown := maxRSS - rss0; grown > attackBudget+attackOverhead {
		t.Errorf("RSS grew by %d MiB, want at most %d MiB", grown>>20, (attackBudget+attackOverhead)>>20)
	}
	if p99 > 3*time.Second {
		t.Errorf("honest client p99 %v during the flood", p99)
	}
	if _, err := c.CloseServer(ctx, &smv1.CloseServerRequest{ServerId: srv.ServerId}); err != nil {
		t.Fatal(err)
	}
	for _, conn := range conns {
		conn.Close()
	}
	cc.Close()
	eventually(t, 30*time.Second, "descriptors and goroutines back to their baseline", func() bool {
		_, fds := procStats(t, pid)
		return fds <= fds0 && goroutines(t, dbg) <= g0
	})
}

// TestAttackFrontDoor attacks the gRPC door itself while an honest client
// works: HPACK bombs, connections holding hundreds of calls that send
// headers and never a message, and connections that send only the
// preface. The daemon must refuse or time out all of it, stay small,
// answer the honest client, and come back to its baseline.
func TestAttackFrontDoor(t *testing.T) {
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dbg := filepath.Join(dir, "dbg.sock")
	d := startDaemon(t, false, "--debug-listen", "unix:"+dbg, "--first-request-timeout", "2s")
	pid := d.cmd.Process.Pid
	rss0, fds0 := procStats(t, pid)
	g0 := goroutines(t, dbg)
	honest := startProber(t, d.sock)
	var maxRSS int64
	sample := func() {
		if rss, _ := procStats(t, pid); rss > maxRSS {
			maxRSS = rss
		}
	}
	big := hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 3000)}
	bomb := headerBlock("/streammgr.v1.StreamService/ListStreams", big, 2000)
	headersOnly := headerBlock("/streammgr.v1.StreamService/ListStreams", hpack.HeaderField{Name: "x-a", Value: "b"}, 1)
	var conns []net.Conn
	for i := range 60 {
		c, fr := rawConn(t, d.sock)
		conns = append(conns, c)
		go func() { _, _ = io.Copy(io.Discard, c) }() // read what the daemon answers
		switch i % 3 {
		case 0: // bombs
			for s := uint32(1); s < 40; s += 2 {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s, BlockFragment: bomb, EndHeaders: true})
			}
		case 1: // 300 calls with headers and no message
			for s := uint32(1); s < 600; s += 2 {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s, BlockFragment: headersOnly, EndHeaders: true})
			}
		}
		// case 2: the preface only
		sample()
	}
	honest.moreRounds(t, 200, sample) // 2 s more of the attack, sampling RSS meanwhile
	p50, p99, slowest, n := honest.finish(t)
	t.Logf("front door: RSS %d -> %d MiB at most, honest client p50 %v p99 %v slowest %v over %d rounds",
		rss0>>20, maxRSS>>20, p50.Round(time.Microsecond), p99.Round(time.Microsecond), slowest.Round(time.Microsecond), n)
	// 20 connections x 256 calls waiting for a message hold a goroutine
	// each until --first-request-timeout cancels them.
	if grown := maxRSS - rss0; grown > 128<<20 {
		t.Errorf("RSS grew by %d MiB under the attack, want at most 128 MiB", grown>>20)
	}
	bound := 3 * time.Second
	if os.Getenv("STREAMMGR_ATTACK_STRICT") == "1" {
		bound = 100 * time.Millisecond
	}
	if p99 > bound {
		t.Errorf("honest client p99 %v during the attack, want under %v", p99, bound)
	}
	// The daemon closes the silent and the bombed connections, and cancels
	// the header-only calls, by itself: nothing of the attacker's is closed
	// here.
	eventually(t, 30*time.Second, "descriptors and goroutines back to their baseline", func() bool {
		_, fds := procStats(t, pid)
		return fds <= fds0 && goroutines(t, dbg) <= g0
	})
	for _, c := range conns {
		c.Close()
	}
}
