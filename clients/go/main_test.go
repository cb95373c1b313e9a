package streammgr_test

// The tests run against a real streammgrd: TestMain builds it, starts it on
// a short Unix socket path with a token file and a policy, and stops it at
// the end, before the goroutine leak check.

import (
	"github.com/streammgr/streammgr/streamcore"

	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

// Tokens the daemon knows (--token-file) and the identities they name.
const (
	cappedToken = "capped-token-0123456789" // identity "capped": max_servers = 1
	bogusToken  = "not-a-known-token-0000000"
)

// daemonAddr is the test daemon's address ("unix:/...").
var daemonAddr string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	stop, err := startDaemon(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "streammgrd:", err)
		return 1
	}
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping streammgrd:", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreAnyFunction(streamcore.PollerGoroutine)); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

// lockedBuffer collects the daemon's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon builds streammgrd into dir and starts it on dir/d.sock.
func startDaemon(dir string) (stop func() error, err error) {
	bin := filepath.Join(dir, "streammgrd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/streammgr/streammgr/cmd/streammgrd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(cappedToken+",capped\n"), 0o600); err != nil {
		return nil, err
	}
	policy := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(policy, []byte("[identity.capped]\nmax_servers = 1\n"), 0o644); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "d.sock")
	log := &lockedBuffer{}
	cmd := exec.Command(bin, "--listen", "unix:"+sock, "--config", policy, "--token-file", tokens)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	daemonAddr = "unix:" + sock
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := streammgr.Dial(ctx, daemonAddr)
		cancel()
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("not answering: %v\n%s", err, log.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for the socket to appear
	}
	return func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("%v\n%s", err, log.String())
			}
			return nil
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("did not exit on SIGTERM\n%s", log.String())
		}
	}, nil
}

// dial connects to the test daemon; the client is closed at cleanup.
func dial(t testing.TB, opts ...streammgr.Option) *streammgr.Client {
	t.Helper()
	c, err := streammgr.Dial(context.Background(), daemonAddr, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a context that ends with the test (or after a minute).
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// peer is a TCP (or Unix) listener in the test process that the daemon
// connects to.
type peer struct {
	ln    net.Listener
	conns chan net.Conn
}

func newPeer(t testing.TB, network string) *peer {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		dir, err := os.MkdirTemp("", "smp")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "p.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{ln: ln, conns: make(chan net.Conn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(p.conns)
		for c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *peer) addr() string { return p.ln.Addr().String() }

// accept returns the next connection the peer accepted; the test closes it.
func (p *peer) accept(t testing.TB) net.Conn {
	t.Helper()
	select {
	case c := <-p.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("the peer accepted no connection")
		return nil
	}
}

// openTo opens a Conn to a new peer and returns both ends.
func openTo(t testing.TB, c *streammgr.Client, network string) (*streammgr.Conn, net.Conn) {
	t.Helper()
	p := newPeer(t, network)
	conn, err := c.Open(testCtx(t), network, p.addr())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, p.accept(t)
}

// freePort returns a loopback port nothing listens on.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
