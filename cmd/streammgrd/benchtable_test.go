//go:build linux

package main_test

// TestBenchTable measures streammgrd against its baselines in one run and
// prints one markdown table:
//
//	STREAMMGR_BENCH=1 go test -run '^TestBenchTable$' -count=1 -v -timeout 30m ./cmd/streammgrd/
//
// (make bench runs it). Echo latency rows are round trips of 16 bytes to one
// echo server (CPython asyncio when python3 is there, else Go); throughput
// rows move STREAMMGR_BENCH_BYTES per run between fast Go peers. Every row
// runs once per repetition, the rows taking turns, so that a shared machine's
// load drifts across all of them alike; the table has the medians over the
// repetitions.
//
// The bare gRPC rows run against a second process: this test binary
// re-executed with STREAMMGR_BENCH_HELPER set (see init), serving the gRPC
// interop TestService (UnaryCall and FullDuplexCall echo) and an
// Attach-shaped StreamService that only counts or produces bytes.
//
// Environment:
//
//	STREAMMGR_BENCH=1            run at all (otherwise skipped)
//	STREAMMGR_BENCH_REPS         repetitions R (default 5)
//	STREAMMGR_BENCH_ROUNDTRIPS   round trips N per latency repetition (default 5000)
//	STREAMMGR_BENCH_BYTES        bytes per throughput run (default 256 MiB)
//	STREAMMGR_BENCH_BASELINE     commit of the baseline daemon (default 1601d00)

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore/streamtest"
)

const (
	benchGateEnv   = "STREAMMGR_BENCH"
	benchHelperEnv = "STREAMMGR_BENCH_HELPER" // a Unix socket path: serve bare gRPC there
	echoSize       = 16
	readN          = 65536    // n of the daemon reads in the echo rows
	chunkSize      = 64 << 10 // gRPC data messages of the throughput rows
	ackEvery       = 1 << 20  // Attach download clients ack this often
)

// init turns the test binary into the bare gRPC server when it is
// re-executed for the bare gRPC rows; nothing else of the tests runs then.
func init() {
	if path := os.Getenv(benchHelperEnv); path != "" {
		os.Exit(serveBareGRPC(path))
	}
}

// benchConfig is what the environment asks for.
type benchConfig struct {
	reps       int
	roundTrips int
	bytes      int64
	baseline   string
}

func benchConfigFromEnv(t *testing.T) benchConfig {
	t.Helper()
	num := func(name string, def int64) int64 {
		s := os.Getenv(name)
		if s == "" {
			return def
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			t.Fatalf("%s=%q: want a positive integer", name, s)
		}
		return v
	}
	cfg := benchConfig{
		reps:       int(num("STREAMMGR_BENCH_REPS", 5)),
		roundTrips: int(num("STREAMMGR_BENCH_ROUNDTRIPS", 5000)),
		bytes:      num("STREAMMGR_BENCH_BYTES", 256<<20),
		baseline:   os.Getenv("STREAMMGR_BENCH_BASELINE"),
	}
	if cfg.baseline == "" {
		cfg.baseline = "1601d00"
	}
	return cfg
}

// latencyTimeout bounds one repetition of n round trips.
func latencyTimeout(n int) time.Duration {
	return 30*time.Second + time.Duration(n)*5*time.Millisecond
}

// throughputTimeout bounds one throughput run: 4 MB/s at the least.
func throughputTimeout(total int64) time.Duration {
	return 30*time.Second + time.Duration(total/4e6)*time.Second
}

// benchRow is one line of the table.
type benchRow struct {
	name string
	// latency: an echo row (p50 and p99), else a throughput row (MB/s).
	latency bool
	// roundTrips runs n echo round trips; transfer moves total bytes and
	// returns the time it took. The one that fits is set unless the row
	// cannot run.
	roundTrips func(ctx context.Context, n int) ([]time.Duration, error)
	transfer   func(ctx context.Context, total int64) (time.Duration, error)
	// ratioTo names the row this row is compared with; "" for a baseline.
	ratioTo string
	// inverse: the ratio is ratioTo's figure over this row's (this row is
	// an older build of ratioTo).
	inverse bool
	// status is "" while the row runs; otherwise why it has no figure:
	// "n/a (...)", "unimplemented" or "error".
	status string
	err    error
	// per repetition: p50 and p99 in µs, or MB/s
	p50, p99, mbps []float64
}

// fail records why the row stops: UNIMPLEMENTED is a figure of its own.
func (r *benchRow) fail(err error) {
	if status.Code(err) == codes.Unimplemented {
		r.status = "unimplemented"
		return
	}
	r.status, r.err = "error", err
}

// measure runs the row once, n round trips or total bytes, within a
// timeout; nothing when the row cannot run (any more).
func (r *benchRow) measure(n int, total int64) ([]time.Duration, time.Duration, error) {
	switch {
	case r.status != "":
		return nil, 0, nil
	case r.roundTrips != nil:
		ctx, cancel := context.WithTimeout(context.Background(), latencyTimeout(n))
		defer cancel()
		samples, err := r.roundTrips(ctx, n)
		return samples, 0, err
	case r.transfer != nil:
		ctx, cancel := context.WithTimeout(context.Background(), throughputTimeout(total))
		defer cancel()
		d, err := r.transfer(ctx, total)
		return nil, d, err
	}
	return nil, 0, nil
}

func TestBenchTable(t *testing.T) {
	if os.Getenv(benchGateEnv) != "1" {
		t.Skip("benchmark table; run with " + benchGateEnv + "=1 (make bench)")
	}
	cfg := benchConfigFromEnv(t)
	env := newBenchEnv(t, cfg)
	rows := env.rows(t)

	// Warm every row up once (and find the unimplemented ones), then let
	// the rows take turns, repetition by repetition.
	for _, r := range rows {
		if _, _, err := r.measure(max(200, cfg.roundTrips/10), min(cfg.bytes, 32<<20)); err != nil {
			r.fail(fmt.Errorf("warm-up: %w", err))
		}
	}
	start := time.Now()
	for rep := range cfg.reps {
		for _, r := range rows {
			samples, d, err := r.measure(cfg.roundTrips, cfg.bytes)
			switch {
			case err != nil:
				r.fail(fmt.Errorf("repetition %d: %w", rep+1, err))
			case samples != nil:
				r.p50 = append(r.p50, micros(percentile(samples, 50)))
				r.p99 = append(r.p99, micros(percentile(samples, 99)))
			case d > 0:
				r.mbps = append(r.mbps, float64(cfg.bytes)/d.Seconds()/1e6)
			}
		}
	}
	env.elapsed = time.Since(start)
	env.print(os.Stdout, rows)
	for _, r := range rows {
		if r.status == "error" {
			t.Errorf("%s: %v", r.name, r.err)
		}
	}
}

// benchEnv is everything the rows run against.
type benchEnv struct {
	cfg        benchConfig
	python     string // python3's path; "" when missing
	echoAddr   string
	echoKind   string
	bare       *grpc.ClientConn
	current    *grpc.ClientConn
	curFlags   []string
	alt        *grpc.ClientConn // the same daemon with altFlag
	baseline   *grpc.ClientConn // nil when baseNote says why
	baseFlags  []string
	baseNote   string
	baseErr    error
	source     *peer // throughput peers
	sink       *peer
	elapsed    time.Duration
	loadBefore string
}

func newBenchEnv(t *testing.T, cfg benchConfig) *benchEnv {
	t.Helper()
	e := &benchEnv{cfg: cfg, loadBefore: loadAvg()}
	if p, err := exec.LookPath("python3"); err == nil {
		e.python = p
	}
	e.echoAddr, e.echoKind = startEchoServer(t, e.python)

	sockDir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	bareSock := filepath.Join(sockDir, "bare.sock")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper, err := startChild(t, "bare gRPC server", []string{benchHelperEnv + "=" + bareSock}, self)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := helper.next(30 * time.Second); err != nil || line != "ready" {
		t.Fatalf("bare gRPC server: got %q, %v", line, err)
	}
	e.bare = dialUnix(t, bareSock)

	bin := daemonBinary(t)
	e.curFlags = logFlags(bin)
	_, e.current, err = startBenchDaemon(t, bin, e.curFlags)
	if err != nil {
		t.Fatal(err)
	}
	_, e.alt, err = startBenchDaemon(t, bin, append(logFlags(bin), altFlag))
	if err != nil {
		t.Fatal(err)
	}
	e.startBaseline(t)

	e.source, e.sink = newPeer(t), newPeer(t)
	return e
}

// altFlag is the flag of the alt daemon's rows, which compare the idle
// poller with the runtime's netpoller on the data path, in the same run.
const altFlag = "--idle-poller"

// startBaseline builds and starts the daemon of cfg.baseline; when git or
// the commit is missing the baseline row says n/a.
func (e *benchEnv) startBaseline(t *testing.T) {
	t.Helper()
	bin, note, err := buildBaseline(e.cfg.baseline)
	if err == nil && note == "" {
		e.baseFlags = logFlags(bin)
		_, e.baseline, err = startBenchDaemon(t, bin, e.baseFlags)
	}
	e.baseNote, e.baseErr = note, err
}

// rows builds the table's rows in order.
func (e *benchEnv) rows(t *testing.T) []*benchRow {
	t.Helper()
	const asyncio = "CPython asyncio echo"
	const unary = "streammgrd unary Write+Read"
	const upBase = "bare gRPC stream, 64 KiB messages, client→server"
	const downBase = "bare gRPC stream, 64 KiB messages, server→client"
	const copyBase = "direct TCP copy"
	cur := smv1.NewStreamServiceClient(e.current)
	alt := smv1.NewStreamServiceClient(e.alt)
	const session = "streammgrd Session echo"
	const attachDown = "Attach download"
	bareAttach := smv1.NewStreamServiceClient(e.bare)
	bareTest := testpb.NewTestServiceClient(e.bare)

	rows := []*benchRow{
		{name: "direct TCP echo", latency: true, ratioTo: asyncio, roundTrips: tcpEcho(e.echoAddr)},
		{name: asyncio, latency: true},
		{name: "bare gRPC unary ping-pong", latency: true, ratioTo: asyncio, roundTrips: bareUnary(bareTest)},
		{name: "bare gRPC bidi ping-pong", latency: true, ratioTo: asyncio, roundTrips: bareBidi(bareTest)},
		{name: unary, latency: true, ratioTo: asyncio},
		{name: unary + " (baseline commit " + e.cfg.baseline + ")", latency: true, ratioTo: unary, inverse: true},
		{name: session, latency: true, ratioTo: asyncio},
		{name: unary + " (" + altFlag + ")", latency: true, ratioTo: unary},
		{name: session + " (" + altFlag + ")", latency: true, ratioTo: session},

		{name: upBase, transfer: bareUpload(bareAttach)},
		{name: downBase, transfer: bareDownload(bareAttach)},
		{name: "Attach upload", ratioTo: upBase, transfer: e.attachUpload(cur)},
		{name: attachDown, ratioTo: downBase, transfer: e.attachDownload(cur)},
		{name: attachDown + " (" + altFlag + ")", ratioTo: attachDown, transfer: e.attachDownload(alt)},
		{name: copyBase, transfer: e.directCopy()},
		{name: "Relay", ratioTo: copyBase, transfer: e.relay(cur)},
		{name: "Relay (" + altFlag + ")", ratioTo: "Relay", transfer: e.relay(alt)},
	}
	// set takes a row's round trips, or records why there are none.
	set := func(r *benchRow, run func(context.Context, int) ([]time.Duration, error), err error) {
		if err != nil {
			r.fail(err)
			return
		}
		r.roundTrips = run
	}
	if e.python != "" {
		run, err := pythonEcho(t, e.python, e.echoAddr)
		set(rows[1], run, err)
	} else {
		rows[1].status = "n/a (no python3)"
	}
	run, err := daemonUnary(t, cur, e.echoAddr)
	set(rows[4], run, err)
	switch {
	case e.baseErr != nil:
		rows[5].fail(e.baseErr)
	case e.baseNote != "":
		rows[5].status = "n/a (" + e.baseNote + ")"
	default:
		run, err := daemonUnary(t, smv1.NewStreamServiceClient(e.baseline), e.echoAddr)
		set(rows[5], run, err)
	}
	run, err = daemonSession(t, cur, e.echoAddr)
	set(rows[6], run, err)
	run, err = daemonUnary(t, alt, e.echoAddr)
	set(rows[7], run, err)
	run, err = daemonSession(t, alt, e.echoAddr)
	set(rows[8], run, err)
	return rows
}

// Echo latency rows.

// tcpEcho is a Go client straight to the echo server.
func tcpEcho(addr string) func(context.Context, int) ([]time.Duration, error) {
	return func(ctx context.Context, n int) ([]time.Duration, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dial echo server: %w", err)
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		out, in := make([]byte, echoSize), make([]byte, echoSize)
		samples := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			if _, err := c.Write(out); err != nil {
				return nil, fmt.Errorf("write: %w", err)
			}
			if _, err := io.ReadFull(c, in); err != nil {
				return nil, fmt.Errorf("read: %w", err)
			}
			samples = append(samples, time.Since(t0))
		}
		return samples, nil
	}
}

// pythonEcho runs testdata/echo_client.py: one connection, timed in Python.
func pythonEcho(t *testing.T, python, addr string) (func(context.Context, int) ([]time.Duration, error), error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	c, err := startChild(t, "asyncio echo client", nil, python, "testdata/echo_client.py", host, port, strconv.Itoa(echoSize))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, n int) ([]time.Duration, error) {
		if _, err := fmt.Fprintf(c.stdin, "%d\n", n); err != nil {
			return nil, fmt.Errorf("asyncio echo client: %w", err)
		}
		dl, _ := ctx.Deadline()
		line, err := c.next(time.Until(dl))
		if err != nil {
			return nil, err
		}
		fields := strings.Fields(line)
		if len(fields) != n {
			return nil, fmt.Errorf("asyncio echo client: %d samples, want %d: %.200s", len(fields), n, line)
		}
		samples := make([]time.Duration, n)
		for i, f := range fields {
			ns, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("asyncio echo client: %w", err)
			}
			samples[i] = time.Duration(ns)
		}
		return samples, nil
	}, nil
}

// bareUnary is one UnaryCall carrying the payload both ways.
func bareUnary(client testpb.TestServiceClient) func(context.Context, int) ([]time.Duration, error) {
	return func(ctx context.Context, n int) ([]time.Duration, error) {
		req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, echoSize)}}
		samples := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			resp, err := client.UnaryCall(ctx, req)
			if err != nil {
				return nil, fmt.Errorf("UnaryCall: %w", err)
			}
			if len(resp.GetPayload().GetBody()) != echoSize {
				return nil, fmt.Errorf("UnaryCall: %d bytes back, want %d", len(resp.GetPayload().GetBody()), echoSize)
			}
			samples = append(samples, time.Since(t0))
		}
		return samples, nil
	}
}

// bareBidi is one message each way on a FullDuplexCall stream.
func bareBidi(client testpb.TestServiceClient) func(context.Context, int) ([]time.Duration, error) {
	return func(ctx context.Context, n int) ([]time.Duration, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := client.FullDuplexCall(ctx)
		if err != nil {
			return nil, fmt.Errorf("FullDuplexCall: %w", err)
		}
		req := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, echoSize)}}
		samples := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			if err := s.Send(req); err != nil {
				_, err = s.Recv() // the status
				return nil, fmt.Errorf("FullDuplexCall send: %w", err)
			}
			resp, err := s.Recv()
			if err != nil {
				return nil, fmt.Errorf("FullDuplexCall: %w", err)
			}
			if len(resp.GetPayload().GetBody()) != echoSize {
				return nil, fmt.Errorf("FullDuplexCall: %d bytes back, want %d", len(resp.GetPayload().GetBody()), echoSize)
			}
			samples = append(samples, time.Since(t0))
		}
		if err := s.CloseSend(); err != nil {
			return nil, err
		}
		if _, err := s.Recv(); err != io.EOF {
			return nil, fmt.Errorf("FullDuplexCall end: %v", err)
		}
		return samples, nil
	}
}

// openEcho opens a daemon stream to the echo server.
func openEcho(t *testing.T, client smv1.StreamServiceClient, addr string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: host, Port: uint32(p)}}})
	if err != nil {
		return "", fmt.Errorf("Open %s: %w", addr, err)
	}
	id := resp.StreamId
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.Close(ctx, &smv1.CloseRequest{StreamId: id})
	})
	return id, nil
}

// daemonUnary is a unary Write, then unary Reads until the payload is back.
func daemonUnary(t *testing.T, client smv1.StreamServiceClient, addr string) (func(context.Context, int) ([]time.Duration, error), error) {
	t.Helper()
	id, err := openEcho(t, client, addr)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, n int) ([]time.Duration, error) {
		wreq := &smv1.WriteRequest{StreamId: id, Data: make([]byte, echoSize)}
		rreq := &smv1.ReadRequest{StreamId: id, N: ptr(int64(readN))}
		samples := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			if _, err := client.Write(ctx, wreq); err != nil {
				return nil, fmt.Errorf("Write: %w", err)
			}
			for got := 0; got < echoSize; {
				resp, err := client.Read(ctx, rreq)
				if err != nil {
					return nil, fmt.Errorf("Read: %w", err)
				}
				if len(resp.Data) == 0 {
					return nil, errors.New("Read: EOF from the echo server")
				}
				got += len(resp.Data)
			}
			samples = append(samples, time.Since(t0))
		}
		return samples, nil
	}, nil
}

// daemonSession pipelines a write and a read per round trip on one Session
// and waits for both answers (more reads if the echo came in pieces).
func daemonSession(t *testing.T, client smv1.StreamServiceClient, addr string) (func(context.Context, int) ([]time.Duration, error), error) {
	t.Helper()
	id, err := openEcho(t, client, addr)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, n int) ([]time.Duration, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := client.Session(ctx)
		if err != nil {
			return nil, fmt.Errorf("Session: %w", err)
		}
		// send returns the call's status when the session broke.
		send := func(req *smv1.SessionRequest) error {
			if err := s.Send(req); err != nil {
				_, err = s.Recv()
				return fmt.Errorf("Session send: %w", err)
			}
			return nil
		}
		data := make([]byte, echoSize)
		read := func(callID int64) *smv1.SessionRequest {
			return &smv1.SessionRequest{CallId: callID, Op: &smv1.SessionRequest_Read{Read: &smv1.ReadRequest{StreamId: id, N: ptr(int64(readN))}}}
		}
		var callID int64
		samples := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			callID++
			if err := send(&smv1.SessionRequest{CallId: callID, Op: &smv1.SessionRequest_Write{Write: &smv1.WriteRequest{StreamId: id, Data: data}}}); err != nil {
				return nil, err
			}
			callID++
			if err := send(read(callID)); err != nil {
				return nil, err
			}
			for pending, got := 2, 0; pending > 0; {
				resp, err := s.Recv()
				if err != nil {
					return nil, fmt.Errorf("Session: %w", err)
				}
				pending--
				switch r := resp.Result.(type) {
				case *smv1.SessionResponse_Error:
					return nil, fmt.Errorf("Session call %d: %w", resp.CallId, status.Error(codes.Code(r.Error.Code), r.Error.Message))
				case *smv1.SessionResponse_Write:
				case *smv1.SessionResponse_Read:
					if len(r.Read.Data) == 0 {
						return nil, errors.New("Session read: EOF from the echo server")
					}
					if got += len(r.Read.Data); got < echoSize {
						callID++
						if err := send(read(callID)); err != nil {
							return nil, err
						}
						pending++
					}
				default:
					return nil, fmt.Errorf("Session call %d: unexpected %T", resp.CallId, r)
				}
			}
			samples = append(samples, time.Since(t0))
		}
		if err := s.CloseSend(); err != nil {
			return nil, err
		}
		if _, err := s.Recv(); err != io.EOF {
			return nil, fmt.Errorf("Session end: %v", err)
		}
		return samples, nil
	}, nil
}

// Throughput rows.

// bareUpload sends total bytes to the helper's Attach, which counts them
// and answers written once the client half-closed.
func bareUpload(client smv1.StreamServiceClient) func(context.Context, int64) (time.Duration, error) {
	return func(ctx context.Context, total int64) (time.Duration, error) {
		var end time.Time
		start, err := attachUpload(ctx, client, &smv1.AttachRequest{StreamId: "upload"}, total, func(resp *smv1.AttachResponse) {
			if resp.Written >= total && end.IsZero() {
				end = time.Now()
			}
		}, nil)
		if err != nil {
			return 0, err
		}
		if end.IsZero() {
			return 0, errors.New("bare upload: no written = total")
		}
		return end.Sub(start), nil
	}
}

// bareDownload receives total bytes the helper's Attach produces.
func bareDownload(client smv1.StreamServiceClient) func(context.Context, int64) (time.Duration, error) {
	return func(ctx context.Context, total int64) (time.Duration, error) {
		return attachDownload(ctx, client, &smv1.AttachRequest{StreamId: "download:" + strconv.FormatInt(total, 10)}, total, func() {})
	}
}

// attachUpload runs the client side of an upload through Attach: the first
// request, the first response, total bytes in chunkSize messages with
// write_eof on the last, then every response until the call ends (onResp
// sees each; the call must end OK). It returns when the data started.
// wait, when set, is awaited before the call's end is.
func attachUpload(ctx context.Context, client smv1.StreamServiceClient, first *smv1.AttachRequest, total int64, onResp func(*smv1.AttachResponse), wait func() error) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := client.Attach(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("Attach: %w", err)
	}
	if err := s.Send(first); err != nil {
		_, err = s.Recv()
		return time.Time{}, fmt.Errorf("Attach send: %w", err)
	}
	if _, err := s.Recv(); err != nil {
		return time.Time{}, fmt.Errorf("Attach first response: %w", err)
	}
	recvDone := make(chan error, 1)
	go func() {
		for {
			resp, err := s.Recv()
			if err == io.EOF {
				recvDone <- nil
				return
			}
			if err != nil {
				recvDone <- err
				return
			}
			onResp(resp)
		}
	}()
	start := time.Now()
	buf := make([]byte, chunkSize)
	for sent := int64(0); sent < total; {
		n := min(int64(chunkSize), total-sent)
		sent += n
		if err := s.Send(&smv1.AttachRequest{Data: buf[:n], WriteEof: sent == total}); err != nil {
			select {
			case err = <-recvDone: // the call's status
			case <-ctx.Done():
			}
			return time.Time{}, fmt.Errorf("Attach send after %d bytes: %w", sent-n, err)
		}
	}
	if err := s.CloseSend(); err != nil {
		return time.Time{}, err
	}
	if wait != nil {
		if err := wait(); err != nil {
			return time.Time{}, err
		}
	}
	select {
	case err := <-recvDone:
		if err != nil {
			return time.Time{}, fmt.Errorf("Attach: %w", err)
		}
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("Attach: no end: %w", ctx.Err())
	}
	return start, nil
}

// attachDownload runs the client side of a download through Attach: it
// receives total bytes, acknowledging every ackEvery bytes, until eof, then
// half-closes the stream (write_eof) and its side of the call, which must
// end OK. started runs when the first response came; the time counts from
// there to the last byte.
func attachDownload(ctx context.Context, client smv1.StreamServiceClient, first *smv1.AttachRequest, total int64, started func()) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := client.Attach(ctx)
	if err != nil {
		return 0, fmt.Errorf("Attach: %w", err)
	}
	if err := s.Send(first); err != nil {
		_, err = s.Recv()
		return 0, fmt.Errorf("Attach send: %w", err)
	}
	resp, err := s.Recv()
	if err != nil {
		return 0, fmt.Errorf("Attach first response: %w", err)
	}
	start := time.Now()
	started()
	var elapsed time.Duration
	off, acked, got := resp.Offset, resp.Offset, int64(0)
	for {
		if len(resp.Data) > 0 && resp.Offset != off {
			return 0, fmt.Errorf("Attach: data at offset %d, want %d", resp.Offset, off)
		}
		off += int64(len(resp.Data))
		got += int64(len(resp.Data))
		if got >= total && elapsed == 0 {
			elapsed = time.Since(start)
		}
		if resp.Eof {
			break
		}
		if off-acked >= ackEvery {
			acked = off
			if err := s.Send(&smv1.AttachRequest{Ack: ptr(acked)}); err != nil {
				_, err = s.Recv()
				return 0, fmt.Errorf("Attach ack: %w", err)
			}
		}
		if resp, err = s.Recv(); err != nil {
			return 0, fmt.Errorf("Attach after %d bytes: %w", got, err)
		}
	}
	if got != total {
		return 0, fmt.Errorf("Attach: eof after %d bytes, want %d", got, total)
	}
	if err := s.Send(&smv1.AttachRequest{Ack: ptr(off), WriteEof: true}); err != nil {
		_, err = s.Recv()
		return 0, fmt.Errorf("Attach write_eof: %w", err)
	}
	if err := s.CloseSend(); err != nil {
		return 0, err
	}
	for {
		if resp, err = s.Recv(); err == io.EOF {
			return elapsed, nil
		} else if err != nil {
			return 0, fmt.Errorf("Attach end: %w", err)
		} else if len(resp.Data) > 0 {
			return 0, fmt.Errorf("Attach: %d bytes after eof", len(resp.Data))
		}
	}
}

// attachUpload is the daemon's Attach writing to the sink peer; the time
// runs until the sink has every byte.
func (e *benchEnv) attachUpload(client smv1.StreamServiceClient) func(context.Context, int64) (time.Duration, error) {
	return func(ctx context.Context, total int64) (time.Duration, error) {
		id, err := e.open(ctx, client, e.sink)
		if err != nil {
			return 0, err
		}
		defer e.closeStream(client, id)
		conn, err := acceptWithin(e.sink, 10*time.Second)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		gotAll, sinkDone := sink(ctx, conn, total)
		var end time.Time
		wait := func() error {
			select {
			case end = <-gotAll:
				return nil
			case err := <-sinkDone:
				return fmt.Errorf("sink: %w", err)
			case <-ctx.Done():
				return fmt.Errorf("sink: %w", ctx.Err())
			}
		}
		start, err := attachUpload(ctx, client, &smv1.AttachRequest{StreamId: id}, total, func(*smv1.AttachResponse) {}, wait)
		if err != nil {
			return 0, err
		}
		if err := waitErr(ctx, sinkDone); err != nil {
			return 0, fmt.Errorf("sink: %w", err)
		}
		return end.Sub(start), nil
	}
}

// attachDownload is the daemon's Attach reading from the source peer.
func (e *benchEnv) attachDownload(client smv1.StreamServiceClient) func(context.Context, int64) (time.Duration, error) {
	return func(ctx context.Context, total int64) (time.Duration, error) {
		id, err := e.open(ctx, client, e.source)
		if err != nil {
			return 0, err
		}
		defer e.closeStream(client, id)
		conn, err := acceptWithin(e.source, 10*time.Second)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		start := make(chan struct{})
		srcDone := source(ctx, conn, total, start)
		d, err := attachDownload(ctx, client, &smv1.AttachRequest{StreamId: id}, total, func() { close(start) })
		if err != nil {
			return 0, err
		}
		if err := waitErr(ctx, srcDone); err != nil {
			return 0, fmt.Errorf("source: %w", err)
		}
		return d, nil
	}
}

// directCopy is io.Copy in this process between a socket to the source
// peer and one to the sink peer, both ways, as Relay does.
func (e *benchEnv) directCopy() func(context.Context, int64) (time.Duration, error) {
	return func(ctx context.Context, total int64) (time.Duration, error) {
		var d net.Dialer
		a, err := d.DialContext(ctx, "tcp", e.source.ln.Addr().String())
		if err != nil {
			return 0, err
		}
		defer a.Close()
		b, err := d.DialContext(ctx, "tcp", e.sink.ln.Addr().String())
		if err != nil {
			return 0, err
		}
		defer b.Close()
		srcConn, err := acceptWithin(e.source, 10*time.Second)
		if err != nil {
			return 0, err
		}
		defer srcConn.Close()
		sinkConn, err := acceptWithin(e.sink, 10*time.Second)
		if err != nil {
			return 0, err
		}
		defer sinkConn.Close()
		gotAll, sinkDone := sink(ctx, sinkConn, total)
		start := make(chan struct{})
		srcDone := source(ctx, srcConn, total, start)
		copied := make(chan error, 2)
		pump := func(dst, src net.Conn) {
			_, err := io.Copy(dst, src)
			if err == nil {
				err = dst.(*net.TCPConn).CloseWrite()
			}
			copied <- err
		}
		t0 := time.Now()
		close(start)
		go pump(b, a)
		go pump(a, b)
		var end time.Time
		select {
		case end = <-gotAll:
		case err := <-sinkDone:
			return 0, fmt.Errorf("sink: %w", err)
		case <-ctx.Done():
			return 0, fmt.Errorf("sink: %w", ctx.Err())
		}
		for _, ch := range []<-chan error{sinkDone, srcDone, copied, copied} {
			if err := waitErr(ctx, ch); err != nil {
				return 0, err
			}
		}
		return end.Sub(t0), nil
	}
}

// relay is the daemon relaying from a stream to the source peer to a
// stream to the sink peer; the time runs from the source's first byte
// (once ListStreams shows the relay) to the sink's last.
func (e *benchEnv) relay(client smv1.StreamServiceClient) func(context.Context, int64) (time.Duration, error) {
	return func(ctx context.Context, total int64) (time.Duration, error) {
		a, err := e.open(ctx, client, e.source)
		if err != nil {
			return 0, err
		}
		defer e.closeStream(client, a)
		srcConn, err := acceptWithin(e.source, 10*time.Second)
		if err != nil {
			return 0, err
		}
		defer srcConn.Close()
		b, err := e.open(ctx, client, e.sink)
		if err != nil {
			return 0, err
		}
		defer e.closeStream(client, b)
		sinkConn, err := acceptWithin(e.sink, 10*time.Second)
		if err != nil {
			return 0, err
		}
		defer sinkConn.Close()
		gotAll, sinkDone := sink(ctx, sinkConn, total)
		start := make(chan struct{})
		srcDone := source(ctx, srcConn, total, start)
		type relayed struct {
			resp *smv1.RelayResponse
			err  error
		}
		done := make(chan relayed, 1)
		go func() {
			resp, err := client.Relay(ctx, &smv1.RelayRequest{FirstStreamId: a, SecondStreamId: b})
			done <- relayed{resp, err}
		}()
		for running := false; !running; {
			select {
			case r := <-done:
				if r.err != nil {
					return 0, fmt.Errorf("Relay: %w", r.err)
				}
				return 0, fmt.Errorf("Relay ended before any byte: %v", r.resp)
			case <-ctx.Done():
				return 0, fmt.Errorf("relay_peer never shown: %w", ctx.Err())
			case <-time.After(2 * time.Millisecond):
			}
			list, err := client.ListStreams(ctx, &smv1.ListStreamsRequest{})
			if err != nil {
				return 0, fmt.Errorf("ListStreams: %w", err)
			}
			for _, s := range list.Streams {
				running = running || s.StreamId == a && s.RelayPeer == b
			}
		}
		t0 := time.Now()
		close(start)
		var end time.Time
		select {
		case end = <-gotAll:
		case err := <-sinkDone:
			return 0, fmt.Errorf("sink: %w", err)
		case r := <-done:
			return 0, fmt.Errorf("Relay ended before the sink had every byte: %v, %v", r.resp, r.err)
		case <-ctx.Done():
			return 0, fmt.Errorf("sink: %w", ctx.Err())
		}
		var r relayed
		select {
		case r = <-done:
		case <-ctx.Done():
			return 0, fmt.Errorf("Relay did not end: %w", ctx.Err())
		}
		if r.err != nil {
			return 0, fmt.Errorf("Relay: %w", r.err)
		}
		if r.resp.FirstToSecond != total || r.resp.SecondToFirst != 0 {
			return 0, fmt.Errorf("Relay counted %d and %d bytes, want %d and 0", r.resp.FirstToSecond, r.resp.SecondToFirst, total)
		}
		for _, ch := range []<-chan error{sinkDone, srcDone} {
			if err := waitErr(ctx, ch); err != nil {
				return 0, err
			}
		}
		return end.Sub(t0), nil
	}
}

// open opens a daemon stream to p.
func (e *benchEnv) open(ctx context.Context, client smv1.StreamServiceClient, p *peer) (string, error) {
	resp, err := client.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(p.port())}}})
	if err != nil {
		return "", fmt.Errorf("Open: %w", err)
	}
	return resp.StreamId, nil
}

// closeStream aborts a stream (the run is over, or failed).
func (e *benchEnv) closeStream(client smv1.StreamServiceClient, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = client.Abort(ctx, &smv1.AbortRequest{StreamId: id})
}

// waitErr waits for the error of a peer or a pump, or ctx's end.
func waitErr(ctx context.Context, ch <-chan error) error {
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func acceptWithin(p *peer, d time.Duration) (net.Conn, error) {
	select {
	case c, ok := <-p.conns:
		if !ok {
			return nil, errors.New("peer listener closed")
		}
		return c, nil
	case <-time.After(d):
		return nil, fmt.Errorf("peer: no connection within %v", d)
	}
}

// source writes total bytes to c once start is closed, half-closes, and
// reads until EOF.
func source(ctx context.Context, c net.Conn, total int64, start <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			if dl, ok := ctx.Deadline(); ok {
				_ = c.SetDeadline(dl)
			}
			select {
			case <-start:
			case <-ctx.Done():
				return ctx.Err()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			buf := make([]byte, 256<<10)
			for sent := int64(0); sent < total; {
				n, err := c.Write(buf[:min(int64(len(buf)), total-sent)])
				if err != nil {
					return fmt.Errorf("write after %d bytes: %w", sent, err)
				}
				sent += int64(n)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				return fmt.Errorf("reading to EOF: %w", err)
			}
			return nil
		}()
	}()
	return done
}

// sink reads from c, sends the time on gotAll when total bytes came, and
// after EOF half-closes; done says whether exactly total bytes came.
func sink(ctx context.Context, c net.Conn, total int64) (gotAll <-chan time.Time, done <-chan error) {
	all := make(chan time.Time, 1)
	fin := make(chan error, 1)
	go func() {
		fin <- func() error {
			if dl, ok := ctx.Deadline(); ok {
				_ = c.SetDeadline(dl)
			}
			buf := make([]byte, 256<<10)
			var got int64
			for {
				n, err := c.Read(buf)
				got += int64(n)
				if got >= total && n > 0 && got-int64(n) < total {
					all <- time.Now()
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("read after %d bytes: %w", got, err)
				}
			}
			if got != total {
				return fmt.Errorf("%d bytes before EOF, want %d", got, total)
			}
			return c.(*net.TCPConn).CloseWrite()
		}()
	}()
	return all, fin
}

// The bare gRPC server (the helper process).

// bareTestService echoes, for the bare gRPC ping-pong rows.
type bareTestService struct {
	testpb.UnimplementedTestServiceServer
}

func (bareTestService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: req.Payload}, nil
}

func (bareTestService) FullDuplexCall(s testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: req.Payload}); err != nil {
			return err
		}
	}
}

// bareStreamService is Attach-shaped with no stream behind it: the first
// request's stream_id is "upload" (count the data, answer written when the
// client sends write_eof) or "download:N" (send N bytes in chunkSize
// messages, then eof; acks are read and dropped).
type bareStreamService struct {
	smv1.UnimplementedStreamServiceServer
}

func (bareStreamService) Attach(s smv1.StreamService_AttachServer) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	if err := s.Send(&smv1.AttachResponse{}); err != nil {
		return err
	}
	if first.StreamId == "upload" {
		var written int64
		for {
			req, err := s.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			written += int64(len(req.Data))
			if req.WriteEof {
				if err := s.Send(&smv1.AttachResponse{Written: written, Eof: true}); err != nil {
					return err
				}
			}
		}
	}
	total, err := strconv.ParseInt(strings.TrimPrefix(first.StreamId, "download:"), 10, 64)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "stream_id %q: want upload or download:N", first.StreamId)
	}
	acks := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				if err == io.EOF {
					err = nil
				}
				acks <- err
				return
			}
		}
	}()
	buf := make([]byte, chunkSize)
	for off := int64(0); off < total; {
		n := min(int64(chunkSize), total-off)
		if err := s.Send(&smv1.AttachResponse{Data: buf[:n], Offset: off}); err != nil {
			return err
		}
		off += n
	}
	if err := s.Send(&smv1.AttachResponse{Offset: total, Eof: true}); err != nil {
		return err
	}
	return <-acks
}

// serveBareGRPC serves the bare services on a Unix socket, says "ready" on
// stdout, and stops when stdin closes. It returns the exit code.
func serveBareGRPC(path string) int {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare gRPC server:", err)
		return 1
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, bareTestService{})
	smv1.RegisterStreamServiceServer(srv, bareStreamService{})
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Stop()
	return 0
}

// Processes.

// child is a helper process that takes its work on stdin, answers in
// lines on stdout, and exits when stdin closes. Cleanup closes stdin and
// kills it if it is still there 5s later.
type child struct {
	name   string
	stdin  io.WriteCloser
	lines  chan string
	stderr *streamtest.Buffer
	exited chan struct{}
}

func startChild(t *testing.T, name string, env []string, argv ...string) (*child, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{name: name, lines: make(chan string), stderr: &streamtest.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	c.stdin = stdin
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	w.Close()
	quit := make(chan struct{})
	go func() {
		defer r.Close()
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case c.lines <- strings.TrimSuffix(line, "\n"):
			case <-quit:
				return
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		defer close(quit)
		c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-c.exited
		}
	})
	return c, nil
}

// next returns the child's next line of output.
func (c *child) next(timeout time.Duration) (string, error) {
	select {
	case line := <-c.lines:
		return line, nil
	case <-c.exited:
		return "", fmt.Errorf("%s exited: %s", c.name, tail(c.stderr.String(), 10))
	case <-time.After(timeout):
		return "", fmt.Errorf("%s: no answer within %v", c.name, timeout)
	}
}

// startEchoServer starts the echo server all echo rows share: CPython
// asyncio when python3 is there, else Go in this process.
func startEchoServer(t *testing.T, python string) (addr, kind string) {
	t.Helper()
	if python != "" {
		c, err := startChild(t, "asyncio echo server", nil, python, "testdata/echo_server.py")
		if err != nil {
			t.Fatal(err)
		}
		port, err := c.next(15 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return net.JoinHostPort("127.0.0.1", port), "CPython asyncio (asyncio.start_server)"
	}
	p := newPeer(t)
	go func() {
		for c := range p.conns {
			echo(c)
		}
	}()
	return p.ln.Addr().String(), "Go (io.Copy, in the test process)"
}

// startBenchDaemon starts bin on a Unix socket with extra flags, logging to
// a file, and waits until its health service answers SERVING. (The
// harness's startDaemon needs grpcurl; this needs nothing but the binary.)
// The daemon gets SIGTERM at cleanup and must exit 0.
func startBenchDaemon(t *testing.T, bin string, extra []string) (*daemon, *grpc.ClientConn, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		return nil, nil, err
	}
	logPath := filepath.Join(dir, "d.log")
	logf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "d.sock"), exited: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"--listen", "unix:" + d.sock}, extra...)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	logf.Close()
	go func() {
		_ = d.cmd.Wait()
		d.state = d.cmd.ProcessState
		close(d.exited)
	}()
	logTail := func() string {
		b, _ := os.ReadFile(logPath)
		return tail(string(b), 40)
	}
	cc := dialUnix(t, d.sock)
	t.Cleanup(func() {
		defer os.RemoveAll(dir)
		if err := d.terminate(10 * time.Second); err != nil {
			t.Errorf("stopping %s: %v\nlog (tail):\n%s", bin, err, logTail())
		}
	})
	health := healthpb.NewHealthClient(cc)
	for deadline := time.Now().Add(15 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return d, cc, nil
		}
		select {
		case <-d.exited:
			return nil, nil, fmt.Errorf("%s exited early: %v\nlog (tail):\n%s", bin, d.state, logTail())
		default:
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%s: not SERVING within 15s: %v, %v\nlog (tail):\n%s", bin, resp, err, logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialUnix(t *testing.T, path string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// logFlags is --log-level=warn when bin has that flag (so it logs no
// line per call), else nothing: the daemon's defaults.
func logFlags(bin string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if strings.Contains(string(out), "-log-level") {
		return []string{"--log-level=warn"}
	}
	return nil
}

// buildBaseline builds streammgrd as of commit (git archive, go build) and
// returns the binary. note says why there is none when git or the commit
// is missing; err is a failed build.
func buildBaseline(commit string) (bin, note string, err error) {
	git, lookErr := exec.LookPath("git")
	if lookErr != nil {
		return "", "no git", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, gitErr := exec.CommandContext(ctx, git, "rev-parse", "--show-toplevel").Output()
	if gitErr != nil {
		return "", "not a git checkout", nil
	}
	repo := strings.TrimSpace(string(root))
	if exec.CommandContext(ctx, git, "-C", repo, "rev-parse", "--verify", "--quiet", commit+"^{commit}").Run() != nil {
		return "", "no commit " + commit, nil
	}
	src, err := os.MkdirTemp("", "smbase")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, git, "-C", repo, "archive", commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", "", err
	}
	untar.Stdin = pipe
	var archiveErr, untarErr streamtest.Buffer
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		return "", "", fmt.Errorf("tar: %w", err)
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", "", fmt.Errorf("git archive %s: %v: %s", commit, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", "", fmt.Errorf("tar -x: %v: %s", err, untarErr.String())
	}
	bin = filepath.Join(binDir, "streammgrd-"+commit)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/streammgrd")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build streammgrd at %s: %v\n%s", commit, err, out)
	}
	return bin, "", nil
}

// Reporting.

func percentile(samples []time.Duration, p float64) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is half the range of v relative to its median, in percent.
func spread(v []float64) string {
	if len(v) < 2 {
		return ""
	}
	return fmt.Sprintf("±%.0f%%", (slices.Max(v)-slices.Min(v))/2/median(v)*100)
}

func (e *benchEnv) print(w io.Writer, rows []*benchRow) {
	byName := map[string]*benchRow{}
	for _, r := range rows {
		byName[r.name] = r
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Machine: %s, %d cores (GOMAXPROCS %d), Linux %s; load average %s before, %s after\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), firstLine("/proc/sys/kernel/osrelease"), e.loadBefore, loadAvg())
	fmt.Fprintf(w, "Go: %s; Python: %s\n", runtime.Version(), e.pythonVersion())
	fmt.Fprintf(w, "Echo server: %s; daemons on Unix sockets, Go gRPC clients\n", e.echoKind)
	race := ""
	if os.Getenv("STREAMMGR_E2E_RACE") == "1" {
		race = ", built with -race"
	}
	fmt.Fprintf(w, "Daemon: working tree %s%s%s; baseline: %s%s\n", gitDescribe(), race, flagNote(e.curFlags), e.cfg.baseline, flagNote(e.baseFlags))
	fmt.Fprintf(w, "R = %d repetitions (rows take turns), %v in all; echo: N = %d round trips of %d bytes each; throughput: %d MiB per run\n",
		e.cfg.reps, e.elapsed.Round(time.Second), e.cfg.roundTrips, echoSize, e.cfg.bytes>>20)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Row | p50 µs | p99 µs | MB/s | Ratio | Ratio of | Spread |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---:|")
	for _, r := range rows {
		fig := [3]string{"", "", ""}
		var ratio, of, spr string
		lat := r.latency
		switch {
		case r.status != "" && len(r.p50) == 0 && len(r.mbps) == 0:
			cell := r.status
			if lat {
				fig[0], fig[1] = cell, cell
			} else {
				fig[2] = cell
			}
		case lat:
			fig[0], fig[1] = fmt.Sprintf("%.1f", median(r.p50)), fmt.Sprintf("%.1f", median(r.p99))
			spr = spread(r.p50)
		default:
			fig[2] = fmt.Sprintf("%.0f", median(r.mbps))
			spr = spread(r.mbps)
		}
		if r.status != "" && (len(r.p50) > 0 || len(r.mbps) > 0) {
			spr += " (" + r.status + " in a later repetition)"
		}
		base := byName[r.ratioTo]
		switch {
		case r.ratioTo == "":
			of = "baseline"
			if r.status == "" {
				ratio = "1.00"
			}
		case r.inverse:
			of = r.ratioTo + " ÷ this"
			ratio = ratioCell(lat, base, r)
		default:
			of = "this ÷ " + r.ratioTo
			ratio = ratioCell(lat, r, base)
		}
		if ratio == "" {
			ratio = "n/a"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.name, fig[0], fig[1], fig[2], ratio, of, spr)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ratios: latency rows p50 / p99 (above 1: slower than what it is compared with); MB/s rows (below 1: slower). MB = 10^6 bytes.")
	fmt.Fprintln(w, "Spread: half the range of the per-repetition p50 (or MB/s) over the repetitions, relative to the median.")
	fmt.Fprintln(w)
}

// ratioCell is num's figures over den's.
func ratioCell(lat bool, num, den *benchRow) string {
	if num == nil || den == nil {
		return ""
	}
	if lat {
		if len(num.p50) == 0 || len(den.p50) == 0 {
			return ""
		}
		return fmt.Sprintf("%.2f / %.2f", median(num.p50)/median(den.p50), median(num.p99)/median(den.p99))
	}
	if len(num.mbps) == 0 || len(den.mbps) == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", median(num.mbps)/median(den.mbps))
}

func flagNote(flags []string) string {
	if len(flags) == 0 {
		return " (defaults)"
	}
	return " (" + strings.Join(flags, " ") + ")"
}

func (e *benchEnv) pythonVersion() string {
	if e.python == "" {
		return "none"
	}
	out, err := output(e.python, "--version")
	if err != nil {
		return "? (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func firstLine(path string) string {
	b, _ := os.ReadFile(path)
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

func gitDescribe() string {
	out, err := output("git", "describe", "--always", "--dirty")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// output runs a short command for the table's header, within 10s.
func output(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}
