//go:build linux

package main_test

// TestIdleBench measures what idle streams cost the daemon, for the working
// tree and for a baseline commit in the same run:
//
//	STREAMMGR_BENCH=1 go test -run '^TestIdleBench$' -count=1 -v -timeout 30m ./cmd/streammgrd/
//
// (make bench runs it). For each daemon and each N it starts a fresh
// daemon, opens N TCP streams to a peer in this process (32 callers of the
// unary Open), leaves them idle, and reports the daemon's RSS and
// goroutines per stream (less what the daemon had before the first Open,
// after a GC: /debug/pprof/heap?gc=1), then closes them all (32 callers of
// the unary Close). The open and close rates are also given for the first
// and the last tenth of the handles, to show whether they stay flat as the
// live handles grow. The daemon is another process, so this process and
// the daemon each hold N descriptors.
//
// Environment:
//
//	STREAMMGR_BENCH=1                 run at all (otherwise skipped)
//	STREAMMGR_BENCH_IDLE_REPS         repetitions (default 3; medians are shown)
//	STREAMMGR_BENCH_IDLE_N            comma-separated N (default 1000,5000,15000)
//	STREAMMGR_BENCH_IDLE_BASELINE     commit of the baseline daemon (default 9ce900e)

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

const idleCallers = 32

// idleResult is one measurement of one daemon at one N.
type idleResult struct {
	rssPerConn      float64 // KiB
	goroutinesPer   float64
	openRate        float64 // per second, all N
	openFirst       float64 // the first tenth
	openLast        float64 // the last tenth
	closeRate       float64
	closeFirst      float64
	closeLast       float64
	baseRSS, maxRSS int64 // KiB
}

func TestIdleBench(t *testing.T) {
	if os.Getenv(benchGateEnv) != "1" {
		t.Skip("idle-connection benchmark; run with " + benchGateEnv + "=1 (make bench)")
	}
	reps := 3
	if s := os.Getenv("STREAMMGR_BENCH_IDLE_REPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("STREAMMGR_BENCH_IDLE_REPS=%q: want a positive integer", s)
		}
		reps = v
	}
	ns := []int{1000, 5000, 15000}
	if s := os.Getenv("STREAMMGR_BENCH_IDLE_N"); s != "" {
		ns = nil
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v <= 0 {
				t.Fatalf("STREAMMGR_BENCH_IDLE_N=%q: want positive integers", s)
			}
			ns = append(ns, v)
		}
	}
	baseline := os.Getenv("STREAMMGR_BENCH_IDLE_BASELINE")
	if baseline == "" {
		baseline = "9ce900e"
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		for _, n := range ns {
			if uint64(n)+200 > rl.Cur {
				t.Fatalf("N = %d needs more descriptors than RLIMIT_NOFILE (%d) allows", n, rl.Cur)
			}
		}
	}

	type build struct {
		name, bin string
		flags     []string
	}
	builds := []build{
		{"poller: working tree " + gitDescribe() + " --idle-poller", daemonBinary(t), []string{"--idle-poller"}},
		{"goroutines: working tree " + gitDescribe() + " --idle-poller=false", daemonBinary(t), []string{"--idle-poller=false"}},
	}
	if bin, note, err := buildBaseline(baseline); err != nil {
		t.Fatalf("baseline: %v", err)
	} else if note != "" {
		t.Logf("no baseline: %s", note)
	} else {
		builds = append(builds, build{"baseline " + baseline, bin, nil})
	}

	results := map[string][]idleResult{} // by build name and N
	key := func(b string, n int) string { return b + "\x00" + strconv.Itoa(n) }
	for rep := range reps {
		for _, n := range ns {
			// The builds take turns, so that the machine's load drifts
			// across them alike.
			for _, b := range builds {
				var r idleResult
				var err error
				// The sub-test's cleanups stop the daemon as soon as the
				// measurement is over.
				t.Run(fmt.Sprintf("%s/N=%d", strings.Fields(b.name)[0], n), func(t *testing.T) {
					r, err = measureIdle(t, b.bin, n, b.flags...)
				})
				if err != nil {
					t.Fatalf("%s, N = %d, repetition %d: %v", b.name, n, rep+1, err)
				}
				results[key(b.name, n)] = append(results[key(b.name, n)], r)
			}
		}
	}

	fmt.Printf("\nIdle streams: %d callers, R = %d repetitions, medians; load average %s\n\n", idleCallers, reps, loadAvg())
	fmt.Println("| Daemon | N | RSS KiB/conn | goroutines/conn | Open/s | first 10% | last 10% | Close/s | first 10% | last 10% | RSS before, at N (MiB) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, n := range ns {
		for _, b := range builds {
			rs := results[key(b.name, n)]
			med := func(f func(idleResult) float64) float64 {
				v := make([]float64, len(rs))
				for i, r := range rs {
					v[i] = f(r)
				}
				return median(v)
			}
			fmt.Printf("| %s | %d | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f, %.1f |\n", b.name, n,
				med(func(r idleResult) float64 { return r.rssPerConn }),
				med(func(r idleResult) float64 { return r.goroutinesPer }),
				med(func(r idleResult) float64 { return r.openRate }),
				med(func(r idleResult) float64 { return r.openFirst }),
				med(func(r idleResult) float64 { return r.openLast }),
				med(func(r idleResult) float64 { return r.closeRate }),
				med(func(r idleResult) float64 { return r.closeFirst }),
				med(func(r idleResult) float64 { return r.closeLast }),
				med(func(r idleResult) float64 { return float64(r.baseRSS) / 1024 }),
				med(func(r idleResult) float64 { return float64(r.maxRSS) / 1024 }))
		}
	}
	fmt.Println()
}

// idlePeer accepts connections and holds them, idle. It listens on
// idlePeerAddrs loopback addresses, which the Opens take in turns, so that
// the kernel's search for a free local port (per destination) stays short
// at N = 15,000 and the rates measure the daemon.
type idlePeer struct {
	lns      []net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted atomic.Int64
}

const idlePeerAddrs = 8

func newIdlePeer() (*idlePeer, error) {
	p := &idlePeer{}
	for i := range idlePeerAddrs {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", i+1))
		if err != nil {
			p.close()
			return nil, err
		}
		p.lns = append(p.lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				p.mu.Lock()
				p.conns = append(p.conns, c)
				p.mu.Unlock()
				p.accepted.Add(1)
			}
		}()
	}
	return p, nil
}

// addr is the i-th Open's destination.
func (p *idlePeer) addr(i int) *smv1.TcpAddress {
	a := p.lns[i%len(p.lns)].Addr().(*net.TCPAddr)
	return &smv1.TcpAddress{Host: a.IP.String(), Port: uint32(a.Port)}
}

func (p *idlePeer) close() {
	for _, ln := range p.lns {
		ln.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// measureIdle runs one measurement against a fresh daemon, which t's
// cleanups stop.
func measureIdle(t *testing.T, bin string, n int, extra ...string) (idleResult, error) {
	var res idleResult
	dir, err := os.MkdirTemp("", "smi")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	dbg := filepath.Join(dir, "dbg.sock")
	flags := append(logFlags(bin), "--max-streams", strconv.Itoa(n+100), "--idle-timeout", "0", "--debug-listen", "unix:"+dbg)
	flags = append(flags, extra...)
	d, cc, err := startBenchDaemon(t, bin, flags)
	if err != nil {
		return res, err
	}
	client := smv1.NewStreamServiceClient(cc)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", dbg)
	}}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	pid := d.cmd.Process.Pid

	p, err := newIdlePeer()
	if err != nil {
		return res, err
	}
	defer p.close()

	// Warm up: the first Open builds what every Open shares.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	open := func(i int) (string, error) {
		resp, err := client.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: p.addr(i)}})
		if err != nil {
			return "", err
		}
		return resp.StreamId, nil
	}
	closeID := func(id string) error {
		_, err := client.Close(ctx, &smv1.CloseRequest{StreamId: id})
		return err
	}
	for i := range idleCallers {
		id, err := open(i)
		if err != nil {
			return res, fmt.Errorf("warm-up Open: %w", err)
		}
		if err := closeID(id); err != nil {
			return res, fmt.Errorf("warm-up Close: %w", err)
		}
	}
	if err := gcDaemon(hc); err != nil {
		return res, err
	}
	baseRSS, err := vmRSS(pid)
	if err != nil {
		return res, err
	}
	baseG, err := daemonGoroutines(hc)
	if err != nil {
		return res, err
	}

	ids := make([]string, n)
	tenth := max(n/10, 1)
	openDur, firstDur, lastDur, err := parallel(n, tenth, func(i int) error {
		id, err := open(i)
		ids[i] = id
		return err
	})
	if err != nil {
		return res, fmt.Errorf("Open: %w", err)
	}
	for p.accepted.Load() < int64(n+idleCallers) {
		if ctx.Err() != nil {
			return res, fmt.Errorf("the peer accepted %d of %d connections", p.accepted.Load(), n+idleCallers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := gcDaemon(hc); err != nil {
		return res, err
	}
	rss, err := vmRSS(pid)
	if err != nil {
		return res, err
	}
	g, err := daemonGoroutines(hc)
	if err != nil {
		return res, err
	}
	closeDur, cfirst, clast, err := parallel(n, tenth, func(i int) error { return closeID(ids[i]) })
	if err != nil {
		return res, fmt.Errorf("Close: %w", err)
	}
	res = idleResult{
		rssPerConn:    float64(rss-baseRSS) / float64(n),
		goroutinesPer: float64(g-baseG) / float64(n),
		openRate:      float64(n) / openDur.Seconds(),
		openFirst:     float64(tenth) / firstDur.Seconds(),
		openLast:      float64(tenth) / lastDur.Seconds(),
		closeRate:     float64(n) / closeDur.Seconds(),
		closeFirst:    float64(tenth) / cfirst.Seconds(),
		closeLast:     float64(tenth) / clast.Seconds(),
		baseRSS:       baseRSS,
		maxRSS:        rss,
	}
	return res, nil
}

// parallel runs f(0..n-1) on idleCallers goroutines, in order of i, and
// returns the time for all of them and the times from the start to the
// tenth-th call done and from the n-tenth-th call done to the end.
func parallel(n, tenth int, f func(i int) error) (all, first, last time.Duration, err error) {
	var next, done atomic.Int64
	var firstAt, lastFrom atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range idleCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if e := f(i); e != nil {
					once.Do(func() { err = e })
					next.Store(int64(n))
					return
				}
				switch d := done.Add(1); {
				case d == int64(tenth):
					firstAt.Store(int64(time.Since(start)))
				case d == int64(n-tenth):
					lastFrom.Store(int64(time.Since(start)))
				}
			}
		}()
	}
	wg.Wait()
	all = time.Since(start)
	first = time.Duration(firstAt.Load())
	last = all - time.Duration(lastFrom.Load())
	if n == tenth {
		last = all
	}
	return all, first, last, err
}

// vmRSS returns a process's resident set in KiB.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// gcDaemon makes the daemon collect garbage (the heap profile's gc=1).
func gcDaemon(hc *http.Client) error {
	resp, err := hc.Get("http://daemon/debug/pprof/heap?gc=1")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	_, _ = bufio.NewReader(resp.Body).WriteTo(devNull{})
	return nil
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

// daemonGoroutines returns the daemon's goroutine count.
func daemonGoroutines(hc *http.Client) (int, error) {
	resp, err := hc.Get("http://daemon/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile: %q", line)
	}
	return strconv.Atoi(rest)
}
