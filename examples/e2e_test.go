//go:build linux

package examples

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"go/build"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore/streamtest"
)

// The setup command named when a client toolchain is missing.
const setupHint = "run examples/setup.sh from the repository root"

// runTimeout bounds every example run.
const runTimeout = 90 * time.Second

// world is what the examples run against: one streammgrd listening on a
// Unix socket and on loopback TCP, a plain echo server, an HTTP and an HTTPS
// server (self-signed certificate, its PEM in caFile).
type world struct {
	unixAddr   string // unix:/tmp/smNNN/d.sock
	tcpAddr    string // 127.0.0.1:port, the same daemon
	echoPort   int
	closedPort int // nobody listens there
	httpURL    string
	httpsURL   string
	httpPort   int
	httpsPort  int
	caFile     string
	client     smv1.StreamServiceClient
}

// language is one client of the examples.
type language struct {
	name string
	dir  string // its directory, absolute
	ext  string // script suffix
	// argv is the command line that runs a script of the language.
	argv func(script string) []string
	// repr shows a received string as the examples print it: Python prints
	// bytes (b'abc'), the others a quoted string ('abc').
	bytesRepr func(s string) string
	// sockname shows a TCP address as the echo server prints it.
	sockname func(host string, port int) string
	env      []string
	// ready fails the test, naming the setup command, when the
	// language's toolchain or dependencies are missing.
	ready func(t *testing.T)
	// errorsDemo are more lines errors_demo prints: the exceptions as the
	// language's streammgr package raises them, before the wire part that
	// every language shows the same way.
	errorsDemo []string
	// selfTests runs the language's own test suite against the daemon
	// (nil: the language has none here; the client packages' suites are
	// clients/*/run-tests.sh).
	selfTests func(t *testing.T, w *world, l *language)
}

func TestExamples(t *testing.T) {
	w := startWorld(t)
	t.Run("languages", func(t *testing.T) {
		for _, l := range languages(t) {
			t.Run(l.name, func(t *testing.T) {
				t.Parallel()
				l.ready(t)
				testLanguage(t, w, l)
			})
		}
	})
	if t.Failed() {
		return
	}
	// Every example closes what it opened: no server is left, and every
	// stream still known to the daemon is closed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers, err := w.client.ListServers(ctx, &smv1.ListServersRequest{})
	if err != nil {
		t.Fatalf("ListServers: %v", err)
	}
	for _, s := range servers.Servers {
		t.Errorf("server left behind: %v", s)
	}
	streams, err := w.client.ListStreams(ctx, &smv1.ListStreamsRequest{})
	if err != nil {
		t.Fatalf("ListStreams: %v", err)
	}
	for _, s := range streams.Streams {
		if s.State != "closed" {
			t.Errorf("stream left %s: %v", s.State, s)
		}
	}
}

func testLanguage(t *testing.T, w *world, l *language) {
	echoWant := func(msg string) string {
		return fmt.Sprintf("Send: '%s'\nReceived: '%s'\nClose the connection\n", msg, msg)
	}
	t.Run("echo_client", func(t *testing.T) {
		out := l.mustRun(t, nil, "echo_client", w.unixAddr, "--port", strconv.Itoa(w.echoPort))
		if want := echoWant("Hello World!"); out != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
		}
	})
	t.Run("echo_client_tcp_daemon", func(t *testing.T) {
		msg := "through a TCP daemon address"
		out := l.mustRun(t, nil, "echo_client", w.tcpAddr, "--host", "127.0.0.1", "--port", strconv.Itoa(w.echoPort), "--message", msg)
		if want := echoWant(msg); out != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
		}
	})
	t.Run("echo_client_refused", func(t *testing.T) {
		_, stderr := l.mustFail(t, nil, "echo_client", w.unixAddr, "--port", strconv.Itoa(w.closedPort))
		if !strings.Contains(strings.ToLower(stderr), "refused") {
			t.Errorf("stderr does not say the connection was refused:\n%s", stderr)
		}
	})
	t.Run("echo_client_interrupted", func(t *testing.T) { testInterruptedClient(t, w, l) })
	t.Run("echo_server", func(t *testing.T) { testEchoServer(t, w, l) })
	t.Run("http_headers", func(t *testing.T) {
		path := "/headers/plain?lang=" + l.name
		out := l.mustRun(t, nil, "http_headers", w.unixAddr, w.httpURL+path)
		checkHeaders(t, out, path, fmt.Sprintf("127.0.0.1:%d", w.httpPort))
	})
	t.Run("http_headers_encoded_path", func(t *testing.T) {
		// A space in the URL goes out percent-encoded, not as a bare space
		// that would make the request line invalid (400 Bad Request).
		out := l.mustRun(t, nil, "http_headers", w.unixAddr, w.httpURL+"/headers/a b?q=x y")
		checkHeaders(t, out, "/headers/a%20b?q=x%20y", fmt.Sprintf("127.0.0.1:%d", w.httpPort))
	})
	t.Run("http_headers_https", func(t *testing.T) {
		path := "/headers/tls"
		out := l.mustRun(t, nil, "http_headers", w.unixAddr, w.httpsURL+path, "--cafile", w.caFile)
		checkHeaders(t, out, path, fmt.Sprintf("localhost:%d", w.httpsPort))
	})
	t.Run("http_headers_https_untrusted", func(t *testing.T) {
		// Without --cafile the test CA's certificate is not trusted.
		_, stderr := l.mustFail(t, nil, "http_headers", w.unixAddr, w.httpsURL+"/")
		if !strings.Contains(stderr, "certificate") {
			t.Errorf("stderr does not mention the certificate:\n%s", stderr)
		}
	})
	t.Run("socketpair", func(t *testing.T) {
		out := l.mustRun(t, nil, "socketpair", w.unixAddr)
		if want := "Received: " + l.bytesRepr("abc") + "\n"; out != want {
			t.Errorf("stdout %q, want %q", out, want)
		}
	})
	t.Run("socketpair_unix_url", func(t *testing.T) {
		// unix:///abs/path is an address too, even with STREAMMGR_ADDR set
		// to something else.
		path := strings.TrimPrefix(w.unixAddr, "unix:")
		out := l.mustRun(t, []string{"STREAMMGR_ADDR=unix:/nonexistent/sm.sock"}, "socketpair", "unix://"+path)
		if want := "Received: " + l.bytesRepr("abc") + "\n"; out != want {
			t.Errorf("stdout %q, want %q", out, want)
		}
	})
	t.Run("socketpair_env_address", func(t *testing.T) {
		out := l.mustRun(t, []string{"STREAMMGR_ADDR=" + w.unixAddr}, "socketpair")
		if want := "Received: " + l.bytesRepr("abc") + "\n"; out != want {
			t.Errorf("stdout %q, want %q", out, want)
		}
	})
	t.Run("no_address", func(t *testing.T) {
		_, stderr := l.mustFail(t, nil, "socketpair")
		if !strings.Contains(stderr, "STREAMMGR_ADDR") {
			t.Errorf("stderr does not say how to give the address:\n%s", stderr)
		}
	})
	t.Run("errors_demo", func(t *testing.T) {
		out := l.mustRun(t, nil, "errors_demo", w.unixAddr)
		for _, want := range []string{
			"ReadUntil over the limit: RESOURCE_EXHAUSTED LIMIT_OVERRUN consumed=16\n",
			"data kept: " + l.bytesRepr("0123456789ABCDEF") + "\n",
			"ReadExactly past EOF: incomplete partial=" + l.bytesRepr("abc") + " expected=10\n",
			// Offsets: the timed-out read lost nothing, the daemon replays
			// an answer read again, and a retried write is accepted once.
			"Peer sent " + l.bytesRepr("late data") + " after the timeout\n" +
				"Next read at offset 0: " + l.bytesRepr("late data") + ", next offset 9: nothing lost\n" +
				"Read again at offset 0 (a lost answer): " + l.bytesRepr("late data") + " replayed\n" +
				"Read " + l.bytesRepr("more") + " at offset 9: the bytes before 9 are acknowledged, next offset 13\n" +
				"Read at offset 0: OUT_OF_RANGE OFFSET_BEHIND earliest_offset=9\n" +
				"Read at offset 99: OUT_OF_RANGE OFFSET_AHEAD next_offset=13\n" +
				"Write " + l.bytesRepr("once") + " at offset 13: next offset 17\n" +
				"Write " + l.bytesRepr("once") + " at offset 13 again (a retry): next offset 17\n" +
				"Received to EOF: " + l.bytesRepr("once") + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		for _, want := range l.errorsDemo {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		if !regexp.MustCompile(`(?m)^Read timed out after \d+ ms: offset still 0$`).MatchString(out) {
			t.Errorf("stdout lacks `Read timed out after N ms: offset still 0`:\n%s", out)
		}
	})
	if l.name == "python" {
		// The echo benchmark is a measurement; here it only has to run.
		t.Run("bench_echo", func(t *testing.T) {
			out := l.mustRun(t, nil, "bench_echo", w.unixAddr, "--rounds", "20")
			re := regexp.MustCompile(`(?m)^asyncio +\d+ round trips/s.*\n^streammgrd +\d+ round trips/s.*\n^streammgrd takes [\d.]+x`)
			if !re.MatchString(out) {
				t.Errorf("bench_echo output:\n%s", out)
			}
		})
	}
	if l.selfTests != nil {
		t.Run("tests", func(t *testing.T) { l.selfTests(t, w, l) })
	}
}

func checkHeaders(t *testing.T, out, path, host string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !regexp.MustCompile(`^HTTP header> HTTP/1\.[01] 200 OK$`).MatchString(lines[0]) {
		t.Errorf("first line %q is not the status line; stdout:\n%s", lines[0], out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "HTTP header> ") || strings.TrimSpace(l) != l {
			t.Errorf("line %q is not `HTTP header> ...` stripped", l)
		}
	}
	for _, want := range []string{
		"HTTP header> X-Example: streammgr",
		"HTTP header> X-Request-Path: " + path,
		"HTTP header> X-Request-Host: " + host,
	} {
		if !strings.Contains(out+"\n", want+"\n") {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

// testInterruptedClient runs the echo client against a server that never
// answers, interrupts it with SIGINT while it waits in its read, and checks
// that it exits 130 (not killed) and aborted its stream in the daemon.
func testInterruptedClient(t *testing.T, w *world, l *language) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	peer := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := l.command(ctx, nil, "echo_client", w.unixAddr, "--port", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stream := func() *smv1.StreamInfo {
		streams, err := w.client.ListStreams(ctx, &smv1.ListStreamsRequest{})
		if err != nil {
			t.Fatalf("ListStreams: %v", err)
		}
		for _, s := range streams.Streams {
			if s.Peername == peer {
				return s
			}
		}
		return nil
	}
	// The client has sent its message when the daemon has it written.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if s := stream(); s != nil && s.BytesOut > 0 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("echo_client exited before reading: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("echo_client did not write within 30s")
		}
	}
	time.Sleep(300 * time.Millisecond) // into its read
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		t.Fatal("echo_client still running 20s after SIGINT")
	}
	if ee, ok := werr.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("echo_client after SIGINT: %v, want exit status 130\nstdout:\n%s\nstderr:\n%s", werr, stdout.String(), stderr.String())
	}
	if s := stream(); s != nil && s.State != "closed" {
		t.Errorf("the interrupted client left its stream %s: %v", s.State, s)
	}
}

// testEchoServer starts the echo server example on a free port, talks to it
// with plain Go TCP clients, stops it with SIGTERM and checks that it
// closed its server in the daemon.
func testEchoServer(t *testing.T, w *world, l *language) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := l.command(ctx, nil, "echo_server", w.unixAddr, "--port", "0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr streamtest.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start echo_server: %v", err)
	}
	exited := make(chan error, 1)
	waited := false
	var out streamtest.Buffer
	firstLine := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			select {
			case firstLine <- sc.Text():
			default:
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		if !waited {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("echo_server stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	}()

	// Serving on ('127.0.0.1', 41234) / Serving on 127.0.0.1:41234
	var serving string
	select {
	case serving = <-firstLine:
	case err := <-exited:
		waited = true
		t.Fatalf("echo_server exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no `Serving on` line within 30s")
	}
	m := regexp.MustCompile(`^Serving on .*?(\d+)\)?$`).FindStringSubmatch(serving)
	if m == nil {
		t.Fatalf("first line %q, want `Serving on ...`", serving)
	}
	port, _ := strconv.Atoi(m[1])
	if want := "Serving on " + l.sockname("127.0.0.1", port); serving != want {
		t.Errorf("first line %q, want %q", serving, want)
	}

	// Two clients at once: each is served as it arrives.
	type result struct {
		msg, got, peer string
		err            error
	}
	results := make(chan result, 2)
	for i := range 2 {
		go func() {
			msg := fmt.Sprintf("hello %d from a Go client of the %s echo server", i, l.name)
			r := result{msg: msg}
			defer func() { results <- r }()
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 10*time.Second)
			if err != nil {
				r.err = err
				return
			}
			defer c.Close()
			a := c.LocalAddr().(*net.TCPAddr)
			r.peer = l.sockname(a.IP.String(), a.Port)
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, r.err = io.WriteString(c, msg); r.err != nil {
				return
			}
			var got []byte
			got, r.err = io.ReadAll(c) // the server closes after echoing
			r.got = string(got)
		}()
	}
	var wantLines []string
	for range 2 {
		r := <-results
		if r.err != nil || r.got != r.msg {
			t.Errorf("echo of %q: got %q, %v", r.msg, r.got, r.err)
		}
		wantLines = append(wantLines, fmt.Sprintf("Received '%s' from %s", r.msg, r.peer), fmt.Sprintf("Send: '%s'", r.msg))
	}
	// The server prints "Close the connection" just before closing: wait for
	// both to reach us.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "Close the connection\n") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range append(wantLines, "Close the connection") {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("stdout lacks %q", want)
		}
	}

	// The example's server in the daemon, to find the streams it accepted.
	sockAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	serverID := ""
	servers, err := w.client.ListServers(ctx, &smv1.ListServersRequest{})
	if err != nil {
		t.Fatalf("ListServers: %v", err)
	}
	for _, s := range servers.Servers {
		for _, sock := range s.Sockets {
			if sock == sockAddr {
				serverID = s.ServerId
			}
		}
	}
	if serverID == "" {
		t.Fatalf("no server on %s in the daemon: %v", sockAddr, servers.Servers)
	}
	// A client that connects and sends nothing: its handler waits in a read
	// when SIGTERM comes, and the server must not leave its stream open.
	idle, err := net.DialTimeout("tcp", sockAddr, 10*time.Second)
	if err != nil {
		t.Fatalf("idle client: %v", err)
	}
	defer idle.Close()
	live := func() (open []*smv1.StreamInfo) {
		streams, err := w.client.ListStreams(ctx, &smv1.ListStreamsRequest{})
		if err != nil {
			t.Fatalf("ListStreams: %v", err)
		}
		for _, s := range streams.Streams {
			if s.ServerId != serverID {
				continue
			}
			switch s.State {
			case "open", "eof", "closing":
				open = append(open, s)
			}
		}
		return open
	}
	// Wait until the daemon has accepted it (the two echoed connections may
	// already be released) and the handler had a moment to start reading.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if len(live()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle client's connection never showed up in ListStreams")
		}
	}
	time.Sleep(300 * time.Millisecond)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Errorf("echo_server after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("echo_server still running 20s after SIGTERM")
	}
	servers, err = w.client.ListServers(ctx, &smv1.ListServersRequest{})
	if err != nil {
		t.Fatalf("ListServers: %v", err)
	}
	for _, s := range servers.Servers {
		if s.ServerId == serverID {
			t.Errorf("the example's server is still open in the daemon: %v", s)
		}
	}
	// Every stream the server accepted is closed or released, the idle
	// client's included.
	for _, s := range live() {
		t.Errorf("stream of the example's server left %s after SIGTERM: %v", s.State, s)
	}
}

func languages(t *testing.T) []*language {
	abs := func(dir string) string {
		d, err := filepath.Abs(dir)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	pyDir, nodeDir, shDir := abs("python"), abs("node"), abs("grpcurl")
	venvPython := filepath.Join(pyDir, ".venv", "bin", "python")
	quoted := func(s string) string { return "'" + s + "'" }
	hostPort := func(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	grpcurl := findGrpcurl()
	return []*language{
		{
			name: "python", dir: pyDir, ext: ".py",
			argv:      func(script string) []string { return []string{venvPython, script} },
			bytesRepr: func(s string) string { return "b'" + s + "'" },
			sockname:  func(host string, port int) string { return fmt.Sprintf("('%s', %d)", host, port) },
			errorsDemo: []string{
				"readuntil() over the limit: asyncio.LimitOverrunError consumed=16\n",
				"  raised asyncio.exceptions.LimitOverrunError('Separator is not found, and chunk exceed the limit', consumed=16)\n",
				"wait_for(reader.read(100), 0.05) timed out; the next read got b'late data': nothing lost\n",
				"  raised asyncio.exceptions.IncompleteReadError: 3 bytes read on a total of 10 expected bytes\n",
			},
			ready: func(t *testing.T) {
				// The streammgr package of clients/python, installed (with
				// its generated stubs) into the virtualenv.
				if _, err := os.Stat(venvPython); err != nil {
					t.Fatalf("the Python examples are not set up (%v): %s (or examples/python/setup.sh)", err, setupHint)
				}
				if out, err := exec.Command(venvPython, "-c", "import streammgr, streammgr.v1.streammgr_pb2_grpc").CombinedOutput(); err != nil {
					t.Fatalf("the streammgr package is not installed in %s (%v: %s): %s (or examples/python/setup.sh)", venvPython, err, out, setupHint)
				}
			},
		},
		{
			name: "node", dir: nodeDir, ext: ".js",
			argv:      func(script string) []string { return []string{"node", script} },
			bytesRepr: quoted,
			sockname:  hostPort,
			errorsDemo: []string{
				"readUntil() over the limit: LimitOverrunError consumed=16\n",
				"  threw IncompleteReadError: 3 bytes read on a total of 10 expected bytes\n",
			},
			ready: func(t *testing.T) {
				if _, err := exec.LookPath("node"); err != nil {
					t.Fatalf("node is not installed (%v): install Node.js 20 or later, then %s", err, setupHint)
				}
				// The streammgr package, linked from clients/node, and its
				// own dependencies there.
				for _, f := range []string{
					filepath.Join(nodeDir, "node_modules", "streammgr", "package.json"),
					filepath.Join(nodeDir, "..", "..", "clients", "node", "node_modules", "@grpc", "grpc-js", "package.json"),
				} {
					if _, err := os.Stat(f); err != nil {
						t.Fatalf("the Node examples are not set up (%v): %s", err, setupHint)
					}
				}
			},
		},
		{
			name: "grpcurl", dir: shDir, ext: ".sh",
			argv:      func(script string) []string { return []string{"bash", script} },
			bytesRepr: quoted,
			sockname:  hostPort,
			env:       []string{"GRPCURL=" + grpcurl},
			ready: func(t *testing.T) {
				if fi, err := os.Stat(grpcurl); grpcurl == "" || err != nil || fi.Mode()&0o111 == 0 {
					t.Fatalf("grpcurl not found ($GRPCURL, PATH, $GOPATH/bin): %s (or go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4)", setupHint)
				}
				for _, tool := range []string{"bash", "base64", "iconv", "sed", "paste"} {
					if _, err := exec.LookPath(tool); err != nil {
						t.Fatalf("the grpcurl examples need %s: %v", tool, err)
					}
				}
			},
			selfTests: func(t *testing.T, w *world, l *language) {
				// The scripts are the tests; check they are valid bash.
				scripts, _ := filepath.Glob(filepath.Join(shDir, "*.sh"))
				for _, s := range scripts {
					if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
						t.Errorf("bash -n %s: %v\n%s", filepath.Base(s), err, out)
					}
				}
				t.Run("retries", func(t *testing.T) { testShellRetries(t, w, grpcurl) })
			},
		},
	}
}

// fakeGrpcurl stands in for grpcurl in testShellRetries. When
// $FAKE_DIR/lose.METHOD exists (it is removed: once), the call is made and
// its answer lost: grpcurl's UNAVAILABLE for a broken connection (no
// details); deadline.METHOD, the same with DEADLINE_EXCEEDED;
// superseded.METHOD answers ABORTED READ_SUPERSEDED and reset.METHOD the
// daemon's UNAVAILABLE CONNECTION_RESET, without calling. Every call's
// method is appended to $FAKE_DIR/calls.
const fakeGrpcurl = `#!/usr/bin/env bash
m=${!#}
m=${m##*/}
echo "$m" >>"$FAKE_DIR/calls"
if [[ -e $FAKE_DIR/lose.$m ]]; then
  rm "$FAKE_DIR/lose.$m"
  "$REAL_GRPCURL" "$@" >/dev/null 2>&1
  printf 'ERROR:\n  Code: Unavailable\n  Message: error reading from server: EOF\n' >&2
  exit 78
fi
if [[ -e $FAKE_DIR/deadline.$m ]]; then
  rm "$FAKE_DIR/deadline.$m"
  "$REAL_GRPCURL" "$@" >/dev/null 2>&1
  printf 'ERROR:\n  Code: DeadlineExceeded\n  Message: context deadline exceeded\n' >&2
  exit 68
fi
if [[ -e $FAKE_DIR/superseded.$m ]]; then
  rm "$FAKE_DIR/superseded.$m"
  printf '{\n  "code": 10,\n  "message": "the read was superseded by a read with an offset",\n  "details": [\n    {\n      "@type": "type.googleapis.com/google.rpc.ErrorInfo",\n      "domain": "streammgr",\n      "reason": "READ_SUPERSEDED"\n    }\n  ]\n}\n' >&2
  exit 74
fi
if [[ -e $FAKE_DIR/reset.$m ]]; then
  rm "$FAKE_DIR/reset.$m"
  printf '{\n  "code": 14,\n  "message": "connection reset by peer",\n  "details": [\n    {\n      "@type": "type.googleapis.com/google.rpc.ErrorInfo",\n      "domain": "streammgr",\n      "reason": "CONNECTION_RESET"\n    }\n  ]\n}\n' >&2
  exit 78
fi
exec "$REAL_GRPCURL" "$@"
`

// shellRetries drives lib.sh's offset helpers through fakeGrpcurl.
const shellRetries = `source "$LIB"
sm_init "$ADDR"
sm_call OpenPair '{}'
sid=$(sm_field firstStreamId <<<"$SM_OUT")
peer=$(sm_field secondStreamId <<<"$SM_OUT")
sm_track "$sid"
sm_track "$peer"
lose() { touch "$FAKE_DIR/$1"; }
lose lose.Write
sm_write "$peer" "$(sm_b64 'lost once')"
lose deadline.Write
sm_write "$peer" "$(sm_b64 '!')"
echo "write: next offset ${SM_WRITE_OFFSET[$peer]}"
lose lose.ReadExactly
sm_read ReadExactly "$sid" '"n": 10'
echo "read: $(sm_repr_b64 "$(sm_field data <<<"$SM_OUT")") next offset ${SM_READ_OFFSET[$sid]}"
lose reset.Read
rc=0
sm_read Read "$sid" '"n": 10' 2>/dev/null || rc=$?
echo "reset: exit $rc $(sm_field reason <<<"$SM_ERR") offset ${SM_READ_OFFSET[$sid]}"
# Exit 1: grpcurl's -max-time covers its dial, which it could not finish.
rc=0
SM_TIMEOUT=0.2 sm_read Read "$sid" '"n": 10' 2>/dev/null || rc=$?
if ((rc == 68 || rc == 1)); then rc=timeout; fi
echo "own timeout: $rc, offset ${SM_READ_OFFSET[$sid]}"
lose lose.Write
rc=0
sm Write "{\"stream_id\": \"$peer\", \"data\": \"$(sm_b64 x)\"}" >/dev/null 2>&1 || rc=$?
echo "write without offset: exit $rc"
lose lose.Drain
sm Drain "{\"stream_id\": \"$peer\"}" >/dev/null
lose superseded.Read
sm_read Read "$sid" '"n": 10'
echo "read: $(sm_repr_b64 "$(sm_field data <<<"$SM_OUT")") next offset ${SM_READ_OFFSET[$sid]}"
for id in "$sid" "$peer"; do
  sm Close "{\"stream_id\": \"$id\"}" >/dev/null
  sm WaitClosed "{\"stream_id\": \"$id\"}" >/dev/null
  sm_untrack "$id"
done
`

// testShellRetries checks that lib.sh retries, at the same offset, a read
// or write whose answer was lost (UNAVAILABLE with no reason, or
// DEADLINE_EXCEEDED of its own -max-time) and a superseded read, so that
// nothing is lost or duplicated, and retries nothing else: the daemon's own
// UNAVAILABLE, the caller's deadline (SM_TIMEOUT), a write without offset.
func testShellRetries(t *testing.T, w *world, grpcurl string) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "grpcurl")
	script := filepath.Join(dir, "retries.sh")
	if err := os.WriteFile(fake, []byte(fakeGrpcurl), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(shellRetries), 0o644); err != nil {
		t.Fatal(err)
	}
	lib, err := filepath.Abs(filepath.Join("grpcurl", "lib.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "GRPCURL="+fake, "REAL_GRPCURL="+grpcurl, "FAKE_DIR="+dir, "LIB="+lib, "ADDR="+w.unixAddr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("retries.sh: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	want := "write: next offset 10\n" +
		"read: 'lost once!' next offset 10\n" +
		"reset: exit 78 CONNECTION_RESET offset 10\n" +
		"own timeout: timeout, offset 10\n" +
		"write without offset: exit 78\n" +
		"read: 'x' next offset 11\n"
	if got := stdout.String(); got != want {
		t.Errorf("retries.sh stdout:\n%s\nwant:\n%s\nstderr:\n%s", got, want, stderr.String())
	}
	calls, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, m := range strings.Fields(string(calls)) {
		count[m]++
	}
	// Write: lost + retry, deadline + retry, without offset (not retried).
	// ReadExactly: lost + retry; Read: reset, own timeout, the last read
	// superseded + retry. Drain: lost + retry.
	if count["Write"] != 5 || count["ReadExactly"] != 2 || count["Read"] != 4 || count["Drain"] != 2 {
		t.Errorf("calls made: %v, want Write 5, ReadExactly 2, Read 4, Drain 2", count)
	}
}

// findGrpcurl returns grpcurl's path: $GRPCURL, on PATH, or in GOPATH/bin.
func findGrpcurl() string {
	if p := os.Getenv("GRPCURL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	for _, dir := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(dir, "bin", "grpcurl")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// command builds the command running an example in its own process group,
// with STREAMMGR_ADDR removed from the environment unless extraEnv sets it.
func (l *language) command(ctx context.Context, extraEnv []string, example string, args ...string) *exec.Cmd {
	argv := append(l.argv(filepath.Join(l.dir, example+l.ext)), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = l.dir
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STREAMMGR_ADDR=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(append(env, l.env...), extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs an example to its end.
func (l *language) run(t *testing.T, extraEnv []string, example string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := l.command(ctx, extraEnv, example, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustRun runs an example that must succeed and returns its stdout.
func (l *language) mustRun(t *testing.T, extraEnv []string, example string, args ...string) string {
	t.Helper()
	stdout, stderr, err := l.run(t, extraEnv, example, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", example+l.ext, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// mustFail runs an example that must exit non-zero (not killed).
func (l *language) mustFail(t *testing.T, extraEnv []string, example string, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := l.run(t, extraEnv, example, args...)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() <= 0 {
		t.Fatalf("%s %s: got %v, want a non-zero exit\nstdout:\n%s\nstderr:\n%s", example+l.ext, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout, stderr
}

// startWorld builds and starts streammgrd and the local servers; all are
// stopped when the test ends.
func startWorld(t *testing.T) *world {
	w := &world{}
	dir, err := os.MkdirTemp("", "sm") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	bin := filepath.Join(dir, "streammgrd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/streammgrd")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build streammgrd: %v\n%s", err, out)
	}
	startDaemon(t, w, bin, filepath.Join(dir, "d.sock"))

	// A plain echo server for the echo clients.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	w.echoPort = ln.Addr().(*net.TCPAddr).Port

	// A port nobody listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.closedPort = closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	// HTTP and HTTPS servers answering HEAD with headers that echo the request.
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Example", "streammgr")
		rw.Header().Set("X-Request-Path", r.URL.RequestURI())
		rw.Header().Set("X-Request-Host", r.Host)
		rw.WriteHeader(http.StatusOK)
	})
	quiet := log.New(io.Discard, "", 0) // the untrusted-certificate run makes the server log a handshake error
	hs := httptest.NewUnstartedServer(handler)
	hs.Config.ErrorLog = quiet
	hs.Start()
	t.Cleanup(hs.Close)
	w.httpPort = hs.Listener.Addr().(*net.TCPAddr).Port
	w.httpURL = fmt.Sprintf("http://127.0.0.1:%d", w.httpPort)

	cert, certPEM := serverCert(t)
	w.caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(w.caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(handler)
	tlsSrv.Config.ErrorLog = quiet
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	w.httpsPort = tlsSrv.Listener.Addr().(*net.TCPAddr).Port
	w.httpsURL = fmt.Sprintf("https://localhost:%d", w.httpsPort)
	return w
}

// startDaemon runs streammgrd on sock and on a loopback port, and reads both
// addresses from its "listening" log lines.
func startDaemon(t *testing.T, w *world, bin, sock string) {
	cmd := exec.Command(bin, "--listen", "unix:"+sock, "--listen", "127.0.0.1:0", "--insecure-tcp")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start streammgrd: %v", err)
	}
	var logs streamtest.Buffer
	addrs := make(chan string, 2)
	done := make(chan error, 1)
	go func() {
		re := regexp.MustCompile(`msg=listening addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1]
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("streammgrd exited with %v after SIGTERM", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("streammgrd still running 15s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("streammgrd log:\n%s", logs.String())
		}
	})
	for range 2 {
		select {
		case a := <-addrs:
			if tcp, ok := strings.CutPrefix(a, "tcp:"); ok {
				w.tcpAddr = tcp
			} else if strings.HasPrefix(a, "unix:") {
				w.unixAddr = a
			}
		case err := <-done:
			t.Fatalf("streammgrd exited: %v\n%s", err, logs.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("streammgrd did not log its addresses within 30s:\n%s", logs.String())
		}
	}
	if w.unixAddr != "unix:"+sock || w.tcpAddr == "" {
		t.Fatalf("streammgrd listens on %q and %q, want unix:%s and a loopback port", w.unixAddr, w.tcpAddr, sock)
	}
	conn, err := grpc.NewClient(w.unixAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w.client = smv1.NewStreamServiceClient(conn)
}

// serverCert makes a throwaway CA and a server certificate signed by it
// for localhost, 127.0.0.1 and ::1, and returns the server certificate and
// the CA certificate in PEM form (for use as a CA file). It is not
// self-signed any more, but like a self-signed certificate it is trusted only
// when the CA file is given.
func serverCert(t *testing.T) (tls.Certificate, []byte) {
	p, err := streamtest.NewPKI(nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.Server, []byte(p.CAPEM)
}
