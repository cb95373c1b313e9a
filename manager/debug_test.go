package manager

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// debugGet fetches path from a debug listener at addr ("unix:/path" or
// host:port) on a connection of its own, closed afterwards.
func debugGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	host := addr
	if sock, ok := strings.CutPrefix(addr, "unix:"); ok {
		host = "unix"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(bg(t), http.MethodGet, "http://"+host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s on %s: reading the body: %v", path, addr, err)
	}
	return resp.StatusCode, string(body)
}

var goroutineTotal = regexp.MustCompile(`(?m)^goroutine profile: total (\d+)$`)

// serveDaemon runs d.Serve until the test's stop func is called, which
// waits for Serve to return.
func serveDaemon(t *testing.T, d *Daemon) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve = %v", err)
			}
		case <-time.After(failAfter):
			t.Fatal("Serve did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestDebugListen: --debug-listen serves net/http/pprof on a 0600 Unix
// socket or loopback TCP, is removed on exit, and is off by default. Not
// parallel: binding a Unix socket changes the process umask for a moment.
func TestDebugListen(t *testing.T) {
	t.Run("unix", func(t *testing.T) {
		dir := tempDir(t)
		sock := filepath.Join(dir, "dbg.sock")
		d, err := NewDaemon(Config{Listen: []string{"unix:" + filepath.Join(dir, "d.sock")}, DebugListen: "unix:" + sock}, discardLog())
		if err != nil {
			t.Fatalf("NewDaemon: %v", err)
		}
		if got := d.DebugAddr(); got != "unix:"+sock {
			t.Fatalf("DebugAddr = %q, want unix:%s", got, sock)
		}
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("debug socket mode = %v, want a socket with 0600", fi.Mode())
		}
		stop := serveDaemon(t, d)
		code, body := debugGet(t, d.DebugAddr(), "/debug/pprof/goroutine?debug=1")
		if code != http.StatusOK || !goroutineTotal.MatchString(body) {
			t.Fatalf("goroutine profile: status %d, body:\n%.300s", code, body)
		}
		if code, body := debugGet(t, d.DebugAddr(), "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
			t.Fatalf("/debug/pprof/ index: status %d, body:\n%.300s", code, body)
		}
		if code, _ := debugGet(t, d.DebugAddr(), "/"); code != http.StatusNotFound {
			t.Fatalf("GET / = %d, want 404: only /debug/pprof/ is served", code)
		}
		stop()
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("debug socket file after shutdown: %v, want it removed", err)
		}
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			t.Fatal("the debug socket still accepts connections after shutdown")
		}
	})

	t.Run("tcp", func(t *testing.T) {
		dir := tempDir(t)
		d, err := NewDaemon(Config{Listen: []string{"unix:" + filepath.Join(dir, "d.sock")}, DebugListen: "127.0.0.1:0"}, discardLog())
		if err != nil {
			t.Fatalf("NewDaemon: %v", err)
		}
		addr := d.DebugAddr()
		if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
			t.Fatalf("DebugAddr = %q, want 127.0.0.1 with the port resolved", addr)
		}
		stop := serveDaemon(t, d)
		if code, body := debugGet(t, addr, "/debug/pprof/cmdline"); code != http.StatusOK {
			t.Fatalf("cmdline: status %d, body %q", code, body)
		}
		stop()
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatal("the debug port still accepts connections after shutdown")
		}
	})

	t.Run("off", func(t *testing.T) {
		dir := tempDir(t)
		d, err := NewDaemon(Config{Listen: []string{"unix:" + filepath.Join(dir, "d.sock")}}, discardLog())
		if err != nil {
			t.Fatalf("NewDaemon: %v", err)
		}
		if got := d.DebugAddr(); got != "" {
			t.Fatalf("DebugAddr = %q without DebugListen, want \"\"", got)
		}
		serveDaemon(t, d)()
	})

	t.Run("refused", func(t *testing.T) {
		dir := tempDir(t)
		grpcSock := filepath.Join(dir, "d.sock")
		for _, tc := range []struct{ addr, wantErr string }{
			{"0.0.0.0:0", "not a loopback address"},
			{":0", "not a loopback address"},
			{"[::]:0", "not a loopback address"},
			{"localhost", "want unix:/path or a loopback host:port"},
			{"unix:", "empty socket path"},
		} {
			// AllowRemote is for the gRPC API; it never opens the debug
			// listener to the network.
			_, err := NewDaemon(Config{Listen: []string{"unix:" + grpcSock}, AllowRemote: true, DebugListen: tc.addr}, discardLog())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "debug listen") {
				t.Errorf("DebugListen %q: NewDaemon = %v, want an error about the debug listener mentioning %q", tc.addr, err, tc.wantErr)
			}
			// The gRPC listener bound before the refusal is gone again.
			if _, err := os.Lstat(grpcSock); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("DebugListen %q refused: the gRPC socket file is left behind (%v)", tc.addr, err)
			}
		}
	})
}

// TestDebugListenFlag: --debug-listen fills Config.DebugListen and is off
// by default.
func TestDebugListenFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--debug-listen", "unix:/tmp/x.sock"}, "unix:/tmp/x.sock"},
		{[]string{"--debug-listen=127.0.0.1:6060"}, "127.0.0.1:6060"},
	} {
		var c Config
		fs := flag.NewFlagSet("streammgrd", flag.ContinueOnError)
		c.BindFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("parse %q: %v", tc.args, err)
		}
		if c.DebugListen != tc.want {
			t.Errorf("%q: DebugListen = %q, want %q", tc.args, c.DebugListen, tc.want)
		}
	}
}
