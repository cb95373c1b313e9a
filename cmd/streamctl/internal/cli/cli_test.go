package cli_test

// The commands run in-process (cli.Main) against a real streammgrd; each
// test runs as an identity of its own (a bearer token), so it sees only its
// own streams and servers. cmd/streamctl's tests run the binary.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	streammgr "github.com/streammgr/streammgr/clients/go"
	"github.com/streammgr/streammgr/cmd/streamctl/internal/cli"
	"github.com/streammgr/streammgr/cmd/streamctl/internal/testdaemon"
)

var daemon *testdaemon.Daemon

// identities are the names the daemon has tokens for, one per test.
var identities = []string{"inspect", "close", "abort", "relay", "connect", "errors", "listen", "send",
	"ls0", "ls1", "ls2", "ls3", "ls4", "ls5", "ls6", "ls7", "ls8", "ls9"}

// lsRuns counts TestLs's runs: each needs an identity that owns nothing yet
// (closed streams stay listed for a minute), so -count=N runs up to 10.
var lsRuns atomic.Int32

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := testdaemon.Build(dir, "github.com/streammgr/streammgr/cmd/streammgrd", "streammgrd")
	if err == nil {
		daemon, err = testdaemon.Start(bin, dir, identities...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if err := daemon.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

// result is one run of streamctl.
type result struct {
	code           int
	stdout, stderr string
}

// streamctl runs a command line as identity who (its token), with stdin.
func streamctl(t testing.TB, who string, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--addr", daemon.Addr, "--token", daemon.Tokens[who]}, args...)
	code := cli.Main(ctx, full, stdin, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// client is a Go client as identity who.
func client(t testing.TB, who string) *streammgr.Client {
	t.Helper()
	c, err := streammgr.Dial(context.Background(), daemon.Addr, streammgr.WithToken(daemon.Tokens[who]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// peer is a TCP listener of the test; conns delivers what it accepts.
func peer(t testing.TB) (addr string, conns chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = make(chan net.Conn, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), conns
}

func accept(t testing.TB, conns chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("the peer accepted nothing")
		return nil
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func wantOK(t testing.TB, r result) {
	t.Helper()
	if r.code != cli.ExitOK {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
}

// column is where each header's column starts in a table's first line.
func columns(header string) map[string]int {
	cols := map[string]int{}
	for _, m := range regexp.MustCompile(`\S+`).FindAllStringIndex(header, -1) {
		cols[header[m[0]:m[1]]] = m[0]
	}
	return cols
}

// TestLs: ls shows "no streams" and "no servers", then aligned tables.
func TestLs(t *testing.T) {
	t.Parallel()
	who := fmt.Sprintf("ls%d", lsRuns.Add(1)-1)
	if _, ok := daemon.Tokens[who]; !ok {
		t.Skip("TestLs runs at most 10 times in one process")
	}
	r := streamctl(t, who, nil, "ls")
	wantOK(t, r)
	if r.stdout != "no streams\n\nno servers\n" {
		t.Fatalf("ls with nothing: got %q", r.stdout)
	}
	c := client(t, who)
	addr, conns := peer(t)
	conn, err := c.Open(ctx(t), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	accept(t, conns)
	l, err := c.Listen(ctx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	r = streamctl(t, who, nil, "ls")
	wantOK(t, r)
	tables := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n\n")
	if len(tables) != 2 {
		t.Fatalf("ls: want two tables, got:\n%s", r.stdout)
	}
	streams, servers := strings.Split(tables[0], "\n"), strings.Split(tables[1], "\n")
	if len(streams) != 2 || len(servers) != 2 {
		t.Fatalf("ls: want one stream and one server, got:\n%s", r.stdout)
	}
	cols := columns(streams[0])
	for _, h := range []string{"STREAM", "KIND", "STATE", "PEER", "LOCAL", "IN", "OUT", "AGE", "NOTES"} {
		if _, ok := cols[h]; !ok {
			t.Errorf("streams table lacks %s: %q", h, streams[0])
		}
	}
	row := streams[1]
	for h, want := range map[string]string{"STREAM": conn.ID(), "KIND": "tcp", "STATE": "open", "PEER": addr, "LOCAL": conn.LocalAddr().String(), "NOTES": "attached"} {
		if got := strings.Fields(row[cols[h]:])[0]; got != want {
			t.Errorf("streams %s column: got %q, want %q (row %q)", h, got, want, row)
		}
	}
	cols = columns(servers[0])
	row = servers[1]
	for h, want := range map[string]string{"SERVER": l.ID(), "STATE": "serving", "SOCKETS": l.Addr().String(), "ACCEPTED": "0", "QUEUED": "0"} {
		if got := strings.Fields(row[cols[h]:])[0]; got != want {
			t.Errorf("servers %s column: got %q, want %q (row %q)", h, got, want, row)
		}
	}
}

// fieldsOf parses inspect's "name: value" lines.
func fieldsOf(t testing.TB, out string) map[string]string {
	t.Helper()
	f := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("inspect line %q is not name: value", line)
		}
		f[k] = strings.TrimSpace(v)
	}
	return f
}

// TestInspect: inspect shows every field of a stream and of a server.
func TestInspect(t *testing.T) {
	t.Parallel()
	c := client(t, "inspect")
	addr, conns := peer(t)
	conn, err := c.Open(ctx(t), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := accept(t, conns)
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(p, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	r := streamctl(t, "inspect", nil, "inspect", conn.ID())
	wantOK(t, r)
	f := fieldsOf(t, r.stdout)
	want := map[string]string{
		"stream": conn.ID(), "kind": "tcp", "state": "open", "peer": addr, "local": conn.LocalAddr().String(),
		"bytes in": "0", "bytes out": "5", "buffered": "0", "retained": "0", "earliest offset": "0",
		"write buffered": "0", "server": "-", "attached": "true", "relay peer": "-", "owner": "inspect", "shared with": "-",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("inspect %s: got %q, want %q", k, f[k], v)
		}
	}
	for _, k := range []string{"calls in progress", "age"} {
		if f[k] == "" {
			t.Errorf("inspect lacks %s:\n%s", k, r.stdout)
		}
	}
	if len(f) != 18 {
		t.Errorf("inspect shows %d fields, want 18:\n%s", len(f), r.stdout)
	}

	l, err := c.Listen(ctx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r = streamctl(t, "inspect", nil, "inspect", l.ID())
	wantOK(t, r)
	f = fieldsOf(t, r.stdout)
	want = map[string]string{
		"server": l.ID(), "state": "serving", "sockets": l.Addr().String(), "accepted": "0", "queued": "0",
		"rejected": "0", "serve calls": "1", "bytes in": "0", "bytes out": "0", "owner": "inspect", "shared with": "-",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("inspect %s: got %q, want %q", k, f[k], v)
		}
	}
	if len(f) != 12 {
		t.Errorf("inspect shows %d fields, want 12:\n%s", len(f), r.stdout)
	}
}

// TestCloseAndAbort: close flushes and closes a stream, closes a server;
// abort aborts a stream and refuses a server id.
func TestCloseAndAbort(t *testing.T) {
	t.Parallel()
	c := client(t, "close")
	addr, conns := peer(t)
	t.Run("close stream", func(t *testing.T) {
		id, err := c.OpenStream(ctx(t), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		p := accept(t, conns)
		r := streamctl(t, "close", nil, "close", id)
		wantOK(t, r)
		if r.stdout != "closed "+id+"\n" {
			t.Errorf("got %q", r.stdout)
		}
		if b, err := io.ReadAll(p); err != nil || len(b) != 0 {
			t.Errorf("peer: got %q, %v; want EOF", b, err)
		}
	})
	t.Run("abort stream", func(t *testing.T) {
		id, err := c.OpenStream(ctx(t), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		p := accept(t, conns)
		r := streamctl(t, "close", nil, "abort", id)
		wantOK(t, r)
		if r.stdout != "aborted "+id+"\n" {
			t.Errorf("got %q", r.stdout)
		}
		_, _ = io.ReadAll(p) // EOF or reset, as the kernel decides
		if s, err := c.Stream(ctx(t), id); err == nil && s.State != "closed" {
			t.Errorf("after abort the stream is %s", s.State)
		}
	})
	t.Run("close server", func(t *testing.T) {
		id := startServer(t, c)
		r := streamctl(t, "close", nil, "close", "--close-clients", id)
		wantOK(t, r)
		if r.stdout != "closed "+id+"\n" {
			t.Errorf("got %q", r.stdout)
		}
		if _, err := c.Server(ctx(t), id); err == nil {
			t.Errorf("server %s still listed after close", id)
		}
	})
	t.Run("abort server", func(t *testing.T) {
		id := startServer(t, c)
		r := streamctl(t, "close", nil, "abort", id)
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "abort takes a stream id") {
			t.Errorf("abort %s: got %+v, want usage exit 2", id, r)
		}
	})
}

// startServer starts a server without a Listener (no Serve call).
func startServer(t testing.TB, c *streammgr.Client) string {
	t.Helper()
	l, err := c.Listen(ctx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.ID()
}

// TestRelay: relay joins two stream ids, or two addresses it opens.
func TestRelay(t *testing.T) {
	t.Parallel()
	c := client(t, "relay")
	for _, byID := range []bool{true, false} {
		t.Run(fmt.Sprintf("ids=%v", byID), func(t *testing.T) {
			addrA, connsA := peer(t)
			addrB, connsB := peer(t)
			args := []string{"relay", addrA, addrB}
			if byID {
				a, err := c.OpenStream(ctx(t), "tcp", addrA)
				if err != nil {
					t.Fatal(err)
				}
				b, err := c.OpenStream(ctx(t), "tcp", addrB)
				if err != nil {
					t.Fatal(err)
				}
				args = []string{"relay", a, b}
				defer c.CloseStream(ctx(t), a)
				defer c.CloseStream(ctx(t), b)
			}
			done := make(chan result, 1)
			go func() { done <- streamctl(t, "relay", nil, args...) }()
			pa, pb := accept(t, connsA), accept(t, connsB)
			go func() {
				pa.Write([]byte("from a, 17 bytes"))
				pa.(*net.TCPConn).CloseWrite()
			}()
			pb.Write([]byte("from b"))
			pb.(*net.TCPConn).CloseWrite()
			gotB, _ := io.ReadAll(pb)
			gotA, _ := io.ReadAll(pa)
			if string(gotB) != "from a, 17 bytes" || string(gotA) != "from b" {
				t.Errorf("peers got %q and %q", gotA, gotB)
			}
			r := <-done
			wantOK(t, r)
			re := regexp.MustCompile(`^(s-\w+) -> (s-\w+): 16 bytes\n(s-\w+) -> (s-\w+): 6 bytes\n$`)
			m := re.FindStringSubmatch(r.stdout)
			if m == nil || m[1] != m[4] || m[2] != m[3] {
				t.Errorf("relay printed %q", r.stdout)
			}
			if byID && m != nil && (m[1] != args[1] || m[2] != args[2]) {
				t.Errorf("relay printed %q, want ids %s and %s", r.stdout, args[1], args[2])
			}
		})
	}
}

// TestHealth: health prints the daemon's and the budget's status.
func TestHealth(t *testing.T) {
	t.Parallel()
	r := streamctl(t, "errors", nil, "health")
	wantOK(t, r)
	f := fieldsOf(t, r.stdout)
	if f["address"] != daemon.Addr || f["daemon"] != "SERVING" || f["memory budget"] != "SERVING" {
		t.Errorf("health printed %q", r.stdout)
	}
}

// TestHealthService: --service chooses what health checks; a wrong
// choice is a usage error.
func TestHealthService(t *testing.T) {
	t.Parallel()
	for _, svc := range []string{"all", "daemon", "budget"} {
		r := streamctl(t, "errors", nil, "health", "--service", svc)
		wantOK(t, r)
		if f := fieldsOf(t, r.stdout); f["daemon"] != "SERVING" {
			t.Errorf("--service %s printed %q", svc, r.stdout)
		}
	}
	r := streamctl(t, "errors", nil, "health", "--service", "nope")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "want all, daemon or budget") {
		t.Errorf("--service nope: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestConnect: connect sends stdin, half-closes, prints what the peer
// sends, and exits once the peer's side ended.
func TestConnect(t *testing.T) {
	t.Parallel()
	addr, conns := peer(t)
	up := make([]byte, 256<<10)
	rand.Read(up)
	done := make(chan result, 1)
	go func() { done <- streamctl(t, "connect", bytes.NewReader(up), "connect", addr) }()
	p := accept(t, conns)
	got, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(got, up) {
		t.Fatalf("peer read %d bytes (%v), want %d", len(got), err, len(up))
	}
	p.Write([]byte("reply"))
	p.Close()
	r := <-done
	wantOK(t, r)
	if r.stdout != "reply" || r.stderr != "" {
		t.Errorf("connect printed %q, stderr %q", r.stdout, r.stderr)
	}
}

// TestExitCodes: usage errors exit 2, daemon errors 1, an unreachable
// daemon 3; each error is printed once, readably.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string // a regexp for the whole of stderr
	}{
		{"unknown command", []string{"bogus"}, cli.ExitUsage, `^streamctl: unknown command "bogus" for "streamctl"\nRun 'streamctl --help' for usage.\n$`},
		{"unknown flag", []string{"ls", "--bogus"}, cli.ExitUsage, `^streamctl: unknown flag: --bogus\n`},
		{"extra argument", []string{"ls", "x"}, cli.ExitUsage, `^streamctl: want 0 argument\(s\), ; got 1\n`},
		{"missing argument", []string{"connect"}, cli.ExitUsage, `^streamctl: want 1 argument\(s\), ADDRESS; got 0\n`},
		{"bad address", []string{"connect", "nowhere"}, cli.ExitUsage, `^streamctl: "nowhere": want HOST:PORT or unix:PATH\n`},
		{"bad listen address", []string{"listen", "x:y"}, cli.ExitUsage, `want \[HOST:\]PORT`},
		{"refused", []string{"connect", refused}, cli.ExitError,
			`^streamctl: connect ` + regexp.QuoteMeta(refused) + `: connection refused \(CONNECTION_REFUSED\)\n$`},
		{"not found", []string{"close", "s-0000000000000000"}, cli.ExitError,
			`^streamctl: close s-0000000000000000: .*\(STREAM_NOT_FOUND\)\n$`},
		{"server not found", []string{"inspect", "srv-0000000000000000"}, cli.ExitError, `\(SERVER_NOT_FOUND\)\n$`},
		{"bind denied", []string{"listen", "0.0.0.0:0"}, cli.ExitError, `\(BIND_DENIED\)\n$`},
		{"missing file", []string{"send", "/nonexistent/file", refused}, cli.ExitError, `^streamctl: open /nonexistent/file: no such file or directory\n$`},
		{"unreachable", []string{"--addr", "unix:/nonexistent/d.sock", "ls"}, cli.ExitUnreachable,
			`^streamctl: cannot reach the daemon at unix:/nonexistent/d.sock: .*no such file or directory\n$`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := streamctl(t, "errors", nil, tc.args...)
			if r.code != tc.code || !regexp.MustCompile(tc.stderr).MatchString(r.stderr) {
				t.Errorf("streamctl %s: exit %d, stderr %q; want exit %d, stderr matching %s",
					strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.stderr)
			}
		})
	}
	t.Run("unauthenticated", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := cli.Main(ctx(t), []string{"--addr", daemon.Addr, "--token", "not-a-token-0123456789", "ls"}, strings.NewReader(""), &out, &errOut)
		if code != cli.ExitError || !strings.HasSuffix(errOut.String(), "(UNAUTHENTICATED)\n") {
			t.Errorf("exit %d, stderr %q; want 1 and UNAUTHENTICATED", code, errOut.String())
		}
	})
	t.Run("help", func(t *testing.T) {
		r := streamctl(t, "errors", nil, "connect", "--help")
		if r.code != cli.ExitOK || !strings.Contains(r.stdout, "Exit codes:") || !strings.Contains(r.stdout, "3  the daemon cannot be reached") {
			t.Errorf("connect --help: exit %d, %q", r.code, r.stdout)
		}
	})
}

// TestListenOnce: listen --once prints one connection's bytes and exits.
func TestListenOnce(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	done := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		code := cli.Main(ctx(t), []string{"--addr", daemon.Addr, "--token", daemon.Tokens["listen"], "listen", "--once", "0"}, strings.NewReader(""), &out, pw)
		pw.Close()
		done <- result{code: code, stdout: out.String()}
	}()
	line, err := readLine(pr)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^listening on (127\.0\.0\.1:\d+) \((srv-\w+)\)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("listen printed %q", line)
	}
	go io.Copy(io.Discard, pr)
	d, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("some bytes\n"))
	d.Close()
	r := <-done
	wantOK(t, r)
	if r.stdout != "some bytes\n" {
		t.Errorf("listen printed %q", r.stdout)
	}
}

// readLine reads one line from r, byte by byte.
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := r.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

// TestSendRecvInProcess: send and recv in one process, through stdin and
// stdout ("-"), byte-exact.
func TestSendRecvInProcess(t *testing.T) {
	t.Parallel()
	data := make([]byte, 1<<20)
	rand.Read(data)
	pr, pw := io.Pipe()
	done := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		code := cli.Main(ctx(t), []string{"--addr", daemon.Addr, "--token", daemon.Tokens["send"], "recv", "0", "-"}, strings.NewReader(""), &out, pw)
		pw.Close()
		done <- result{code: code, stdout: out.String()}
	}()
	line, err := readLine(pr)
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`^listening on (127\.0\.0\.1:\d+) `).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("recv printed %q", line)
	}
	s := streamctl(t, "send", bytes.NewReader(data), "send", "-", m[1])
	wantOK(t, s)
	if s.stderr != "" || s.stdout != "" {
		t.Errorf("send without a terminal printed %q, %q", s.stdout, s.stderr)
	}
	r := <-done
	wantOK(t, r)
	if r.stdout != string(data) {
		t.Errorf("recv wrote %d bytes, want the %d sent", len(r.stdout), len(data))
	}
}
