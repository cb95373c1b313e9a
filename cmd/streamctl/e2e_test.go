package main_test

// End-to-end tests: the streamctl and streammgrd binaries, built in
// TestMain, run as separate processes; the test is the peer of their
// connections, through plain sockets, pipes and a pseudo-terminal.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"go.uber.org/goleak"

	"github.com/streammgr/streammgr/cmd/streamctl/internal/testdaemon"
)

var (
	daemon   *testdaemon.Daemon
	ctlBin   string // the streamctl binary
	tmpFiles string // a directory for the tests' files
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tmpFiles = dir
	bin, err := testdaemon.Build(dir, "github.com/streammgr/streammgr/cmd/streammgrd", "streammgrd")
	if err == nil {
		ctlBin, err = testdaemon.Build(dir, "github.com/streammgr/streammgr/cmd/streamctl", "streamctl")
	}
	if err == nil {
		daemon, err = testdaemon.Start(bin, dir)
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

// proc is a running streamctl.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *testdaemon.Buffer
	done           chan struct{}
	code           int
}

// start runs streamctl with args against the test daemon. stdin may be
// nil; stderr may be a file (a terminal), else it is collected.
func start(t testing.TB, stdin io.Reader, stderr *os.File, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: &testdaemon.Buffer{}, stderr: &testdaemon.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(ctlBin, append([]string{"--addr", daemon.Addr}, args...)...)
	p.cmd.Stdin = stdin
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if stderr != nil {
		p.cmd.Stderr = stderr
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(30 * time.Second):
		t.Fatalf("streamctl %v did not exit; stderr %q", p.cmd.Args[1:], p.stderr.String())
		return -1
	}
}

// listening waits for "listening on ADDRESS (ID)" on stderr and returns
// the address.
func (p *proc) listening(t testing.TB) string {
	t.Helper()
	re := regexp.MustCompile(`listening on (\S+) \(srv-\w+\)\n`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("streamctl exited %d before listening; stderr %q", p.code, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("streamctl is not listening; stderr %q", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling its stderr
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// peerListener listens on loopback; accept returns its next connection.
func peerListener(t testing.TB) (net.Listener, func() net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, func() net.Conn {
		t.Helper()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// TestConnect: 1 MiB each way at once through connect, byte-exact: stdin
// to the peer (half-closed at its end), the peer's bytes to stdout.
func TestConnect(t *testing.T) {
	t.Parallel()
	ln, accept := peerListener(t)
	up, down := randomBytes(t, 1<<20), randomBytes(t, 1<<20)
	p := start(t, bytes.NewReader(up), nil, "connect", ln.Addr().String())
	c := accept()
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(down)
		wrote <- err
	}()
	got, err := io.ReadAll(c) // until connect half-closes at the end of stdin
	if err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite() // the peer's side ends: connect exits
	if code := p.wait(t); code != 0 {
		t.Fatalf("connect exited %d; stderr %q", code, p.stderr.String())
	}
	if !bytes.Equal(got, up) {
		t.Errorf("the peer got %d bytes, not the %d of stdin", len(got), len(up))
	}
	if out := p.stdout.Bytes(); !bytes.Equal(out, down) {
		t.Errorf("stdout got %d bytes, not the %d the peer sent", len(out), len(down))
	}
	if s := p.stderr.String(); s != "" {
		t.Errorf("stderr: %q", s)
	}
}

// TestConnectUnix: connect unix:PATH, and the peer closing first ends
// connect while its stdin is still open.
func TestConnectUnix(t *testing.T) {
	t.Parallel()
	path := filepath.Join(tmpFiles, "connect-unix.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stdin, feed, err := os.Pipe() // stdin never ends
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	p := start(t, stdin, nil, "connect", "unix:"+path)
	stdin.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := feed.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi\n" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	c.Write([]byte("bye\n"))
	c.Close()
	if code := p.wait(t); code != 0 || p.stdout.String() != "bye\n" {
		t.Fatalf("connect exited %d, stdout %q, stderr %q", code, p.stdout.String(), p.stderr.String())
	}
}

// TestConnectRefused: the error is printed once, readably, and exits 1.
func TestConnectRefused(t *testing.T) {
	t.Parallel()
	ln, _ := peerListener(t)
	addr := ln.Addr().String()
	ln.Close()
	p := start(t, nil, nil, "connect", addr)
	if code := p.wait(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got, want := p.stderr.String(), "streamctl: connect "+addr+": connection refused (CONNECTION_REFUSED)\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

// TestExitCodes: the binary's exit codes.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"ls"}, 0},
		{[]string{"health"}, 0},
		{[]string{"close", "s-0000000000000000"}, 1},
		{[]string{"frobnicate"}, 2},
		{[]string{"relay", "s-1"}, 2},
		{[]string{"--addr", "unix:/nonexistent/d.sock", "health"}, 3},
	}
	for _, tc := range cases {
		p := start(t, nil, nil, tc.args...)
		if code := p.wait(t); code != tc.code {
			t.Errorf("streamctl %s: exit %d, want %d; stderr %q", strings.Join(tc.args, " "), code, tc.code, p.stderr.String())
		}
	}
}

// TestListen: listen prints what each connection sends, one after the
// other, until SIGTERM; listen unix:PATH --once exits after one.
func TestListen(t *testing.T) {
	t.Parallel()
	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		p := start(t, nil, nil, "listen", "0")
		addr := p.listening(t)
		var want strings.Builder
		for i := range 3 {
			d, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			msg := fmt.Sprintf("connection %d\n", i)
			want.WriteString(msg)
			d.Write([]byte(msg))
			d.(*net.TCPConn).CloseWrite()
			// listen closes each connection once it has printed it.
			if _, err := io.ReadAll(d); err != nil {
				t.Fatal(err)
			}
			d.Close()
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t); code != 0 {
			t.Errorf("listen exited %d after SIGTERM; stderr %q", code, p.stderr.String())
		}
		if got := p.stdout.String(); got != want.String() {
			t.Errorf("stdout %q, want %q", got, want.String())
		}
		if n := strings.Count(p.stderr.String(), "connection from 127.0.0.1:"); n != 3 {
			t.Errorf("stderr names %d connections, want 3: %q", n, p.stderr.String())
		}
	})
	t.Run("unix once", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(tmpFiles, "listen.sock")
		p := start(t, nil, nil, "listen", "--once", "unix:"+path)
		if addr := p.listening(t); addr != path {
			t.Errorf("listening on %s, want %s", addr, path)
		}
		d, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		data := randomBytes(t, 300<<10)
		d.Write(data)
		d.Close()
		if code := p.wait(t); code != 0 {
			t.Fatalf("listen --once exited %d; stderr %q", code, p.stderr.String())
		}
		if !bytes.Equal(p.stdout.Bytes(), data) {
			t.Errorf("stdout has %d bytes, want the %d sent", len(p.stdout.Bytes()), len(data))
		}
	})
}

// TestListenExecCat: listen --exec cat echoes every connection, several at
// once, byte-exact.
func TestListenExecCat(t *testing.T) {
	t.Parallel()
	p := start(t, nil, nil, "listen", "--exec", "cat", "127.0.0.1:0")
	addr := p.listening(t)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer d.Close()
			data := randomBytes(t, (i+1)*256<<10)
			go func() {
				d.Write(data)
				d.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(d)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("connection %d: echoed %d bytes (%v), want %d", i, len(got), err, len(data))
			}
		}()
	}
	wg.Wait()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("listen --exec exited %d after SIGTERM; stderr %q", code, p.stderr.String())
	}
}

// TestSendRecv: send and recv between them, each way of connecting,
// byte-exact, without a progress bar on a pipe.
func TestSendRecv(t *testing.T) {
	t.Parallel()
	data := randomBytes(t, 4<<20)
	src := filepath.Join(tmpFiles, "send-recv.src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		listener   func(dst string) []string // the side that listens
		connecting func(dst, addr string) []string
	}{
		{"recv listens",
			func(dst string) []string { return []string{"recv", "0", dst} },
			func(_, addr string) []string { return []string{"send", src, addr} }},
		{"send listens",
			func(string) []string { return []string{"send", "--listen", src, "127.0.0.1:0"} },
			func(dst, addr string) []string { return []string{"recv", addr, dst} }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := filepath.Join(tmpFiles, fmt.Sprintf("send-recv.%d", i))
			l := start(t, nil, nil, tc.listener(dst)...)
			addr := l.listening(t)
			c := start(t, nil, nil, tc.connecting(dst, addr)...)
			if code := c.wait(t); code != 0 {
				t.Fatalf("%v exited %d; stderr %q", c.cmd.Args[3:], code, c.stderr.String())
			}
			if code := l.wait(t); code != 0 {
				t.Fatalf("%v exited %d; stderr %q", l.cmd.Args[3:], code, l.stderr.String())
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s has %d bytes (%v), want the %d of %s", dst, len(got), err, len(data), src)
			}
			if s := c.stderr.String(); s != "" {
				t.Errorf("no terminal, but stderr has %q", s)
			}
			if s := l.stderr.String(); !regexp.MustCompile(`^listening on \S+ \(srv-\w+\)\n$`).MatchString(s) {
				t.Errorf("no terminal, but stderr has %q", s)
			}
		})
	}
}

// TestProgressBar: send and recv show a progress bar (bytes, rate, time
// left) when stderr is a terminal; with a pipe they show none
// (TestSendRecv).
func TestProgressBar(t *testing.T) {
	t.Parallel()
	data := randomBytes(t, 2<<20)
	src := filepath.Join(tmpFiles, "progress.src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(tmpFiles, "progress.dst")

	// screen collects what a program writes to a new terminal, until it
	// is closed.
	screen := func() (term *os.File, out *testdaemon.Buffer, done chan struct{}) {
		master, term, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		out, done = &testdaemon.Buffer{}, make(chan struct{})
		go func() {
			defer close(done)
			defer master.Close()
			_, _ = io.Copy(out, master) // ends with EIO once the terminal is closed
		}()
		return term, out, done
	}
	recvTerm, recvOut, recvDone := screen()
	r := start(t, nil, recvTerm, "recv", "0", dst)
	recvTerm.Close()
	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" {
		if m := regexp.MustCompile(`listening on (\S+) \(srv-`).FindStringSubmatch(recvOut.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("recv never listened: %q", recvOut.String())
		}
		time.Sleep(10 * time.Millisecond) // polling its terminal
	}
	sendTerm, sendOut, sendDone := screen()
	s := start(t, nil, sendTerm, "send", src, addr)
	sendTerm.Close()
	if code := s.wait(t); code != 0 {
		t.Fatalf("send exited %d", code)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("recv exited %d", code)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatalf("%s has %d bytes, want %d", dst, len(got), len(data))
	}
	<-sendDone
	<-recvDone
	out := sendOut.String()
	for _, want := range []string{"send 100%", "/2.1 MB", "MB/s", "sent 2097152 bytes to " + addr} {
		if !strings.Contains(out, want) {
			t.Errorf("send's terminal lacks %q:\n%q", want, out)
		}
	}
	if !regexp.MustCompile(`\[\d+s:\d+s\]`).MatchString(out) {
		t.Errorf("send's terminal shows no time left:\n%q", out)
	}
	out = recvOut.String()
	for _, want := range []string{"recv", "2.1 MB", "B/s", "received 2097152 bytes from "} {
		if !strings.Contains(out, want) {
			t.Errorf("recv's terminal lacks %q:\n%q", want, out)
		}
	}
}
