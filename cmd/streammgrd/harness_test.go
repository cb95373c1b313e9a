package main_test

// Harness for the end-to-end tests: it builds streammgrd, runs it as a
// separate process, drives it with the real grpcurl binary and parses
// grpcurl's output (JSON responses on stdout; "ERROR: Code/Message/Details"
// on stderr, exit code 64 + the gRPC code).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/streammgr/streammgr/streamcore/streamtest"
)

const (
	service = "streammgr.v1.StreamService"
	// grpcurlInstall is how CI gets grpcurl.
	grpcurlInstall = "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"
	// callTimeout bounds every grpcurl run, so a hung call fails the test
	// instead of the whole package timing out.
	callTimeout = 60 * time.Second
)

// m is a JSON object for requests.
type m = map[string]any

var binDir string // holds the built daemon, removed after the run

func TestMain(mm *testing.M) {
	// The scenarios mostly wait on sockets and subprocesses: unless told
	// otherwise, run more of them at once than -parallel's default
	// (GOMAXPROCS).
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "8")
	}
	dir, err := os.MkdirTemp("", "smbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := mm.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// daemonBinary builds streammgrd once per test run. Set
// STREAMMGR_E2E_RACE=1 to build it with the race detector.
func daemonBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go tool not found: %w", err)
			return
		}
		out := filepath.Join(binDir, "streammgrd")
		// With the VCS revision stamped, for --version (GOFLAGS may say
		// -buildvcs=false).
		args := []string{"build", "-buildvcs=true", "-o", out}
		if os.Getenv("STREAMMGR_E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool, append(args, ".")...)
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build streammgrd: %v\n%s", err, b)
			return
		}
		buildPath = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

var (
	grpcurlOnce sync.Once
	grpcurlBin  string
)

// grpcurlPath finds grpcurl on PATH, in $GOBIN or in $(go env GOPATH)/bin.
func grpcurlPath(t testing.TB) string {
	t.Helper()
	grpcurlOnce.Do(func() {
		if p, err := exec.LookPath("grpcurl"); err == nil {
			grpcurlBin = p
			return
		}
		var dirs []string
		if gobin := os.Getenv("GOBIN"); gobin != "" {
			dirs = append(dirs, gobin)
		}
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			for _, p := range filepath.SplitList(strings.TrimSpace(string(out))) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
		for _, d := range dirs {
			p := filepath.Join(d, "grpcurl")
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				grpcurlBin = p
				return
			}
		}
	})
	if grpcurlBin == "" {
		t.Fatalf("grpcurl not found on PATH, in $GOBIN or in $(go env GOPATH)/bin; install it with:\n\t%s", grpcurlInstall)
	}
	return grpcurlBin
}

// daemon is one streammgrd process.
type daemon struct {
	dir    string // short temp dir holding the socket
	sock   string // Unix socket path
	tcp    string // loopback host:port, "" when not listening on TCP
	cmd    *exec.Cmd
	stderr *streamtest.Buffer
	exited chan struct{} // closed when the process has exited
	state  *os.ProcessState
}

// startDaemon starts streammgrd on a Unix socket (and, with withTCP, on a
// free loopback port too) with extra flags, and waits until it answers.
// The daemon gets SIGTERM at cleanup and must exit 0.
func startDaemon(t testing.TB, withTCP bool, extra ...string) *daemon {
	t.Helper()
	grpcurlPath(t)
	bin := daemonBinary(t)
	for attempt := 1; ; attempt++ {
		d, retry := tryStartDaemon(t, bin, withTCP, extra)
		if d != nil {
			return d
		}
		if !retry || attempt == 3 {
			t.Fatal("streammgrd did not start")
		}
	}
}

func tryStartDaemon(t testing.TB, bin string, withTCP bool, extra []string) (*daemon, bool) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "d.sock"), stderr: &streamtest.Buffer{}, exited: make(chan struct{})}
	args := []string{"--listen", "unix:" + d.sock}
	if withTCP {
		d.tcp = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		args = append(args, "--listen", d.tcp, "--insecure-tcp")
	}
	args = append(args, extra...)
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	if dbg := os.Getenv("STREAMMGR_E2E_DEBUG"); dbg != "" {
		// keep whole daemon logs (and any SIGQUIT goroutine dump)
		if f, err := os.Create(filepath.Join(dbg, filepath.Base(dir)+".log")); err == nil {
			t.Cleanup(func() { f.Close() })
			d.cmd.Stderr = io.MultiWriter(d.stderr, f)
			d.cmd.Stdout = d.cmd.Stderr
		}
	}
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start streammgrd: %v", err)
	}
	go func() {
		_ = d.cmd.Wait()
		d.state = d.cmd.ProcessState
		close(d.exited)
	}()
	if err := d.waitReady(15 * time.Second); err != nil {
		d.kill()
		os.RemoveAll(dir)
		log := d.stderr.String()
		if strings.Contains(log, "address already in use") {
			t.Logf("streammgrd lost the race for its TCP port, retrying: %s", log)
			return nil, true
		}
		t.Fatalf("streammgrd %s: %v\nlog:\n%s", strings.Join(args, " "), err, log)
	}
	t.Cleanup(func() {
		defer os.RemoveAll(dir)
		if t.Failed() {
			t.Logf("streammgrd log (tail):\n%s", tail(d.stderr.String(), 40))
		}
		select {
		case <-d.exited:
			return // a test stopped it already
		default:
		}
		if err := d.terminate(10 * time.Second); err != nil {
			t.Errorf("stopping streammgrd: %v", err)
		}
	})
	return d, false
}

// waitReady waits until the Unix socket accepts connections and the health
// service answers SERVING on every address.
func (d *daemon) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("exited early: %v", d.state)
		default:
		}
		if c, err := net.DialTimeout("unix", d.sock, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return errors.New("socket never accepted a connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
	targets := []target{d.unix()}
	if d.tcp != "" {
		targets = append(targets, d.tcpTarget())
	}
	for _, tg := range targets {
		for {
			r := tg.exec(context.Background(), "grpc.health.v1.Health/Check", m{}, "-max-time", "5")
			if r.code == 0 && strings.Contains(r.stdout, `"SERVING"`) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("health check on %s: exit %d: %s%s", tg.name, r.code, r.stdout, r.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// terminate sends SIGTERM and waits for the exit; a non-zero exit or a
// timeout is an error (the process is killed on timeout).
func (d *daemon) terminate(timeout time.Duration) error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-d.exited:
	case <-time.After(timeout):
		d.kill()
		return fmt.Errorf("no exit within %v of SIGTERM", timeout)
	}
	if code := d.state.ExitCode(); code != 0 {
		return fmt.Errorf("exit status %d after SIGTERM (%v)", code, d.state)
	}
	return nil
}

func (d *daemon) kill() {
	_ = d.cmd.Process.Kill()
	<-d.exited
}

func (d *daemon) unix() target {
	return target{name: "unix", addr: []string{"-unix", d.sock}}
}

func (d *daemon) tcpTarget() target {
	return target{name: "tcp", addr: []string{d.tcp}}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// target is a daemon address as grpcurl arguments.
type target struct {
	name string
	addr []string // "-unix", path or host:port; always last before the method
	// creds replace -plaintext when set: TLS files, -H authorization, ...
	creds []string
	// runAs runs grpcurl through this command (setpriv as another user),
	// with bin, a copy of grpcurl that user may run.
	runAs []string
	bin   string
}

// result is one finished grpcurl run.
type result struct {
	args           []string
	stdout, stderr string
	code           int // exit code; grpcurl uses 64 + gRPC code
}

func (r result) String() string {
	return fmt.Sprintf("grpcurl %s\nexit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

var (
	calledMu sync.Mutex
	called   = map[string]bool{} // StreamService methods invoked
)

func fullMethod(method string) string {
	if strings.Contains(method, "/") {
		return method
	}
	calledMu.Lock()
	called[method] = true
	calledMu.Unlock()
	return service + "/" + method
}

// command builds a grpcurl invocation: flags, then the address, then the
// method. The request JSON goes through stdin ("-d @") so large payloads
// do not hit argument limits.
func (tg target) command(ctx context.Context, method string, flags []string) *exec.Cmd {
	args := []string{"-plaintext"}
	if tg.creds != nil {
		args = slices.Clone(tg.creds)
	}
	args = append(args, "-connect-timeout", "20")
	if !slices.Contains(flags, "-max-time") && !slices.Contains(flags, "-no-max-time") {
		// grpcurl's own limit, below callTimeout, so that a stuck call
		// says which stage (dial, reflection, the RPC) it was stuck in
		args = append(args, "-max-time", "45")
	}
	flags = slices.DeleteFunc(slices.Clone(flags), func(f string) bool { return f == "-no-max-time" })
	args = append(args, flags...)
	args = append(args, tg.addr...)
	if method != "" {
		args = append(args, fullMethod(method))
	}
	cmd := exec.CommandContext(ctx, grpcurlBin, args...)
	if tg.runAs != nil {
		cmd = exec.CommandContext(ctx, tg.runAs[0], append(append(slices.Clone(tg.runAs[1:]), tg.bin), args...)...)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func requestJSON(req any) []byte {
	b, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	return b
}

// exec runs grpcurl once. req nil sends no request (list, describe).
func (tg target) exec(ctx context.Context, method string, req any, flags ...string) result {
	for attempt := 0; ; attempt++ {
		r := tg.execOnce(ctx, method, req, flags...)
		// setpriv's exec of the grpcurl copy can meet ETXTBSY: a process
		// forked meanwhile by another test still holds the copy's write
		// descriptor until its own exec (Go issue 22315). Nothing ran.
		if tg.runAs == nil || r.code != 126 || !strings.Contains(r.stderr, "Text file busy") || attempt == 20 {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tg target) execOnce(ctx context.Context, method string, req any, flags ...string) result {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if req != nil {
		flags = append(flags, "-d", "@")
	}
	cmd := tg.command(ctx, method, flags)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if req != nil {
		cmd.Stdin = bytes.NewReader(requestJSON(req))
	}
	err := cmd.Run()
	if ctx.Err() != nil && os.Getenv("STREAMMGR_E2E_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "HUNG grpcurl %v\n", cmd.Args)
	}
	r := result{args: cmd.Args[1:], stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		r.code = -1
		r.stderr += "\n(run: " + err.Error() + ")"
	}
	return r
}

// tool runs grpcurl without a method: list, describe ...
func (tg target) tool(t testing.TB, words ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	args := append([]string{"-plaintext"}, tg.addr...)
	args = append(args, words...)
	out, err := exec.CommandContext(ctx, grpcurlPath(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// call runs method, requires success and decodes the JSON response into a
// T, refusing fields T does not know (so response shapes are checked too).
func call[T any](t testing.TB, tg target, method string, req any, flags ...string) T {
	t.Helper()
	r := tg.exec(context.Background(), method, req, flags...)
	var v T
	if r.code != 0 {
		t.Fatalf("%s %s: want success, got:\n%s", tg.name, method, r)
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s %s: decoding the response into %T: %v\n%s", tg.name, method, v, err, r)
	}
	return v
}

// empty is a response without fields: grpcurl prints "{}".
type empty struct{}

// rpcError is grpcurl's rendering of a failed call.
type rpcError struct {
	Code    string
	Message string
	Details []map[string]any
	raw     result
}

var detailStart = regexp.MustCompile(`^\s+\d+\)\t(.*)$`)

// parseError parses grpcurl's error output:
//
//	ERROR:
//	  Code: NotFound
//	  Message: ...
//	  Details:
//	  1)	{
//	    	  "@type": "...",
//	    	}
func parseError(out string) (*rpcError, error) {
	e := &rpcError{}
	var details []string
	state := 0 // 0 before ERROR:, 1 header, 2 details
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch state {
		case 0:
			if line == "ERROR:" {
				state = 1
			}
		case 1:
			trimmed := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(trimmed, "Code: "):
				e.Code = strings.TrimPrefix(trimmed, "Code: ")
			case strings.HasPrefix(trimmed, "Message: "):
				e.Message = strings.TrimPrefix(trimmed, "Message: ")
			case trimmed == "Details:":
				state = 2
			}
		case 2:
			if mm := detailStart.FindStringSubmatch(line); mm != nil {
				details = append(details, mm[1]+"\n")
				continue
			}
			if i := strings.IndexByte(line, '\t'); i >= 0 && len(details) > 0 {
				details[len(details)-1] += line[i+1:] + "\n"
				continue
			}
			if strings.TrimSpace(line) != "" {
				return nil, fmt.Errorf("unexpected line in details: %q", line)
			}
		}
	}
	if state == 0 || e.Code == "" {
		return nil, errors.New("no \"ERROR:\" block with a Code")
	}
	for _, d := range details {
		var v map[string]any
		if err := json.Unmarshal([]byte(d), &v); err != nil {
			return nil, fmt.Errorf("detail %q: %v", d, err)
		}
		e.Details = append(e.Details, v)
	}
	return e, nil
}

// detail returns the detail of the given type (short name, e.g.
// "google.rpc.ErrorInfo"), or nil.
func (e *rpcError) detail(typ string) map[string]any {
	for _, d := range e.Details {
		if d["@type"] == "type.googleapis.com/"+typ {
			return d
		}
	}
	return nil
}

// reason is the google.rpc.ErrorInfo reason ("" when absent).
func (e *rpcError) reason() string {
	if d := e.detail("google.rpc.ErrorInfo"); d != nil {
		s, _ := d["reason"].(string)
		return s
	}
	return ""
}

// fieldViolations lists the google.rpc.BadRequest field names.
func (e *rpcError) fieldViolations() []string {
	d := e.detail("google.rpc.BadRequest")
	if d == nil {
		return nil
	}
	var out []string
	vs, _ := d["fieldViolations"].([]any)
	for _, v := range vs {
		fv, _ := v.(map[string]any)
		f, _ := fv["field"].(string)
		out = append(out, f)
	}
	return out
}

// checkError checks a finished run against code and reason ("" accepts
// any reason; the ErrorInfo domain must be streammgr when a reason is
// wanted) and returns the parsed error.
func checkError(t testing.TB, r result, code codes.Code, reason string) *rpcError {
	t.Helper()
	if want := 64 + int(code); r.code != want {
		t.Fatalf("want exit %d (%v, %s), got:\n%s", want, code, reason, r)
	}
	e, err := parseError(r.stderr)
	if err != nil {
		t.Fatalf("parsing grpcurl's error output: %v\n%s", err, r)
	}
	e.raw = r
	if e.Code != code.String() {
		t.Fatalf("Code: got %q, want %q\n%s", e.Code, code.String(), r)
	}
	if reason != "" {
		if got := e.reason(); got != reason {
			t.Fatalf("ErrorInfo reason: got %q, want %q\n%s", got, reason, r)
		}
		if dom := e.detail("google.rpc.ErrorInfo")["domain"]; dom != "streammgr" {
			t.Fatalf("ErrorInfo domain: got %v, want streammgr\n%s", dom, r)
		}
	}
	return e
}

// fail runs method and requires it to fail with code and reason.
func fail(t testing.TB, tg target, method string, req any, code codes.Code, reason string, flags ...string) *rpcError {
	t.Helper()
	r := tg.exec(context.Background(), method, req, flags...)
	return checkError(t, r, code, reason)
}

// timed runs method with grpcurl's -max-time d, for calls that are meant
// to run out of time in the RPC itself. grpcurl's limit also covers its
// dial and reflection requests: when a loaded machine makes those miss it
// (grpcurl then exits 1 with "Failed to ..."), the run is repeated.
func timed(t testing.TB, tg target, method string, req any, d time.Duration) result {
	t.Helper()
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	for attempt := 1; ; attempt++ {
		r := tg.exec(context.Background(), method, req, "-max-time", secs)
		if r.code == 1 && strings.Contains(r.stderr, "Failed to") && attempt < 3 {
			t.Logf("grpcurl ran out of time before the RPC (attempt %d), retrying:\n%s", attempt, r)
			continue
		}
		return r
	}
}

// bgCall is a grpcurl run in the background; its stdout is decoded into
// JSON messages as they arrive (server streaming).
type bgCall struct {
	msgs   chan json.RawMessage
	done   chan struct{}
	res    result
	cancel context.CancelFunc
}

func background(t testing.TB, tg target, method string, req any, flags ...string) *bgCall {
	t.Helper()
	b, _ := startBackground(t, tg, method, bytes.NewReader(requestJSON(req)), flags...)
	return b
}

// startBackground starts grpcurl on method with "-d @" in the background,
// its requests read from stdin; with stdin nil they come through the
// returned writer (closed at the end of the test), as a script would pipe
// them.
func startBackground(t testing.TB, tg target, method string, stdin io.Reader, flags ...string) (*bgCall, io.WriteCloser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	flags = append(flags, "-d", "@")
	cmd := tg.command(ctx, method, flags)
	var in io.WriteCloser
	if stdin != nil {
		cmd.Stdin = stdin
	} else {
		w, err := cmd.StdinPipe()
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		in = w
	}
	stderr := &streamtest.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	b := &bgCall{msgs: make(chan json.RawMessage, 64), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(b.done)
		defer cancel()
		var out bytes.Buffer
		dec := json.NewDecoder(io.TeeReader(stdout, &out))
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				break
			}
			b.msgs <- raw
		}
		close(b.msgs)
		_, _ = io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		b.res = result{args: cmd.Args[1:], stdout: out.String(), stderr: stderr.String()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			b.res.code = ee.ExitCode()
		} else if err != nil {
			b.res.code = -1
		}
	}()
	t.Cleanup(func() {
		if in != nil {
			in.Close()
		}
		cancel()
		<-b.done
	})
	return b, in
}

// next returns the next streamed message decoded into v.
func (b *bgCall) next(t testing.TB, v any) {
	t.Helper()
	select {
	case raw, ok := <-b.msgs:
		if !ok {
			<-b.done
			t.Fatalf("stream ended early:\n%s", b.res)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("decoding %s: %v", raw, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no streamed message within 20s")
	}
}

// wait waits for the run to finish.
func (b *bgCall) wait(t testing.TB, timeout time.Duration) result {
	t.Helper()
	select {
	case <-b.done:
		return b.res
	case <-time.After(timeout):
		t.Fatalf("background grpcurl still running after %v", timeout)
		return result{}
	}
}

// running reports whether the run is still going.
func (b *bgCall) running() bool {
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// Response shapes (grpcurl's JSON: lowerCamel names, int64 as strings,
// default values omitted).
type (
	openResp struct {
		StreamID string `json:"streamId"`
		Peername string `json:"peername"`
		Sockname string `json:"sockname"`
	}
	pairResp struct {
		First  string `json:"firstStreamId"`
		Second string `json:"secondStreamId"`
	}
	startServerResp struct {
		ServerID string   `json:"serverId"`
		Sockets  []string `json:"sockets"`
	}
	acceptResp struct {
		StreamID string `json:"streamId"`
		Peername string `json:"peername"`
	}
	readResp struct {
		Data       []byte `json:"data"`
		EOF        bool   `json:"eof"`
		NextOffset int64  `json:"nextOffset,string"`
	}
	readExactlyResp struct {
		Data       []byte `json:"data"`
		Incomplete bool   `json:"incomplete"`
		Expected   int64  `json:"expected,string"`
		NextOffset int64  `json:"nextOffset,string"`
	}
	readUntilResp struct {
		Data       []byte `json:"data"`
		Incomplete bool   `json:"incomplete"`
		NextOffset int64  `json:"nextOffset,string"`
	}
	writeResp struct {
		Buffered   int64 `json:"buffered,string"`
		NextOffset int64 `json:"nextOffset,string"`
	}
	atEOFResp struct {
		AtEOF bool `json:"atEof"`
	}
	canWriteEOFResp struct {
		CanWriteEOF bool `json:"canWriteEof"`
	}
	isClosingResp struct {
		IsClosing bool `json:"isClosing"`
	}
	extraResp struct {
		Value any `json:"value"`
	}
	streamInfo struct {
		StreamID string   `json:"streamId"`
		Kind     string   `json:"kind"`
		Peername string   `json:"peername"`
		Sockname string   `json:"sockname"`
		State    string   `json:"state"`
		BytesIn  int64    `json:"bytesIn,string"`
		BytesOut int64    `json:"bytesOut,string"`
		Buffered int64    `json:"buffered,string"`
		Age      string   `json:"age"`
		ServerID string   `json:"serverId"`
		Retained int64    `json:"retained,string"`
		Earliest int64    `json:"earliestOffset,string"`
		WriteBuf int64    `json:"writeBuffered,string"`
		Calls    int64    `json:"callsInProgress,string"`
		Attached bool     `json:"attached"`
		Relay    string   `json:"relayPeer"`
		Owner    string   `json:"owner"`
		Shared   []string `json:"sharedWith"`
	}
	listStreamsResp struct {
		Streams          []streamInfo `json:"streams"`
		BufferedBytes    int64        `json:"bufferedBytes,string"`
		MaxBufferedBytes int64        `json:"maxBufferedBytes,string"`
	}
	serverInfo struct {
		ServerID string   `json:"serverId"`
		Sockets  []string `json:"sockets"`
		State    string   `json:"state"`
		Accepted int64    `json:"accepted,string"`
		Queued   int64    `json:"queued,string"`
		Rejected int64    `json:"rejected,string"`
		Serving  int64    `json:"serveCalls,string"`
		BytesIn  int64    `json:"bytesIn,string"`
		BytesOut int64    `json:"bytesOut,string"`
		Age      string   `json:"age"`
		Owner    string   `json:"owner"`
		Shared   []string `json:"sharedWith"`
	}
	listServersResp struct {
		Servers          []serverInfo `json:"servers"`
		BufferedBytes    int64        `json:"bufferedBytes,string"`
		MaxBufferedBytes int64        `json:"maxBufferedBytes,string"`
	}
)

// RPC shorthands.

func openTCP(t testing.TB, tg target, port int, extra m) openResp {
	t.Helper()
	req := m{"tcp": m{"host": "127.0.0.1", "port": port}}
	for k, v := range extra {
		req[k] = v
	}
	return call[openResp](t, tg, "Open", req)
}

func write(t testing.TB, tg target, id string, data []byte) writeResp {
	t.Helper()
	return call[writeResp](t, tg, "Write", m{"streamId": id, "data": data})
}

func read(t testing.TB, tg target, id string, n int) readResp {
	t.Helper()
	return call[readResp](t, tg, "Read", m{"streamId": id, "n": n})
}

// readFull reads with Read(n) until want bytes came, and checks them.
func readFull(t testing.TB, tg target, id string, want []byte) {
	t.Helper()
	var got []byte
	for len(got) < len(want) {
		r := read(t, tg, id, len(want)-len(got))
		if len(r.Data) == 0 {
			t.Fatalf("Read: EOF after %q, want %q", got, want)
		}
		got = append(got, r.Data...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func streamByID(t testing.TB, tg target, id string) (streamInfo, bool) {
	t.Helper()
	for _, s := range call[listStreamsResp](t, tg, "ListStreams", m{}).Streams {
		if s.StreamID == id {
			return s, true
		}
	}
	return streamInfo{}, false
}

func serverByID(t testing.TB, tg target, id string) (serverInfo, bool) {
	t.Helper()
	for _, s := range call[listServersResp](t, tg, "ListServers", m{}).Servers {
		if s.ServerID == id {
			return s, true
		}
	}
	return serverInfo{}, false
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitBuffered waits until the daemon holds n unread bytes for the stream
// (ListStreams does not count as use of the stream).
func waitBuffered(t testing.TB, tg target, id string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, ok := streamByID(t, tg, id)
		if ok && s.Buffered == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d bytes buffered on %s; last seen: listed %v, %+v", n, id, ok, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flagValue is the value of a registered flag ("" when unknown).
func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// Remote peers: plain Go sockets in the test process.

// peer is a loopback TCP listener whose connections the test takes.
type peer struct {
	ln    net.Listener
	conns chan net.Conn
}

func newPeer(t testing.TB) *peer {
	t.Helper()
	return newPeerWith(t, net.ListenConfig{})
}

func newPeerWith(t testing.TB, lc net.ListenConfig) *peer {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return servePeer(t, ln)
}

func newUnixPeer(t testing.TB, path string) *peer {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return servePeer(t, ln)
}

func servePeer(t testing.TB, ln net.Listener) *peer {
	p := &peer{ln: ln, conns: make(chan net.Conn, 16)}
	var mu sync.Mutex
	var all []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(p.conns)
				return
			}
			mu.Lock()
			all = append(all, c)
			mu.Unlock()
			p.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range all {
			c.Close()
		}
	})
	return p
}

func (p *peer) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// accept returns the next connection the peer accepted.
func (p *peer) accept(t testing.TB) net.Conn {
	t.Helper()
	select {
	case c, ok := <-p.conns:
		if !ok {
			t.Fatal("peer listener closed")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("peer: no connection within 10s")
	}
	return nil
}

// echo copies everything back until EOF, then half-closes; sawEOF is closed
// when the peer has read EOF.
func echo(c net.Conn) (sawEOF chan struct{}) {
	sawEOF = make(chan struct{})
	go func() {
		_, _ = io.Copy(c, c)
		close(sawEOF)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	return sawEOF
}

// readPeer reads exactly len(want) bytes from c and checks them.
func readPeer(t testing.TB, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("peer read: %v (got %q)", err, got)
	}
	if string(got) != want {
		t.Fatalf("peer read %q, want %q", got, want)
	}
}

// expectPeerEOF waits until the daemon's side of c is closed.
func expectPeerEOF(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("peer: want EOF, got %v after %q", err, b)
	}
}

func writePeer(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("peer write: %v", err)
	}
}

// testCA is a throwaway certificate authority and a server certificate for
// 127.0.0.1 and localhost signed by it.
type testCA struct {
	caPEM   string
	pool    *x509.CertPool
	server  tls.Certificate
	certPEM string // the server certificate and its key, as PEM
	keyPEM  string
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	p, err := streamtest.NewPKI(&streamtest.PKIOptions{ServerCommonName: "e2e-peer"})
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{caPEM: p.CAPEM, pool: p.CertPool, server: p.Server, certPEM: p.ServerCertPEM, keyPEM: p.ServerKeyPEM}
}

func sortedKeys(mp map[string]bool) []string {
	out := make([]string, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ptr returns a pointer to v, for optional proto fields.
func ptr[T any](v T) *T { return &v }
