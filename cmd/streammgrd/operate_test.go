package main_test

// Operating the daemon: --version, usage, stray arguments, log levels and
// formats, systemd socket activation.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streammgr/streammgr/streamcore/streamtest"
)

func runDaemon(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, daemonBinary(t), args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("streammgrd %v: %v", args, err)
	return "", -1
}

// TestDaemonVersion: --version names the module version and the VCS
// revision it was built from.
func TestDaemonVersion(t *testing.T) {
	t.Parallel()
	out, code := runDaemon(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "streammgrd ") {
		t.Fatalf("--version: exit %d\n%s", code, out)
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD (the tests run in a checkout): %v", err)
	}
	if want := strings.TrimSpace(string(rev)); !strings.Contains(out, "rev "+want) {
		t.Fatalf("--version = %q, want the revision %s", out, want)
	}
}

// TestDaemonUsage: --help names streammgrd and says what it is; a stray
// argument is refused with exit 2.
func TestDaemonUsage(t *testing.T) {
	t.Parallel()
	out, code := runDaemon(t, "--help")
	for _, want := range []string{"streammgrd owns TCP, Unix and TLS sockets", "Usage: streammgrd [flags]", "-log-format", "-config"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "go-build") || strings.Contains(out, "/tmp/") && strings.Contains(out, "Usage of") {
		t.Errorf("--help shows a build path:\n%s", out)
	}
	if code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	out, code = runDaemon(t, "--listen", "unix:/tmp/x.sock", "stray")
	if code != 2 || !strings.Contains(out, `unexpected argument "stray"`) {
		t.Fatalf("a stray argument: exit %d\n%s", code, out)
	}
	out, code = runDaemon(t, "--log-format", "yaml")
	if code != 1 || !strings.Contains(out, "want text or json") {
		t.Fatalf("--log-format yaml: exit %d\n%s", code, out)
	}
}

// TestDaemonLogs: at the default level there is no line per call; at debug
// every call has one; --log-format json writes one JSON object per line.
func TestDaemonLogs(t *testing.T) {
	t.Parallel()
	quiet := startDaemon(t, false)
	call[pairResp](t, quiet.unix(), "OpenPair", m{})
	call[listStreamsResp](t, quiet.unix(), "ListStreams", m{})
	if log := quiet.stderr.String(); strings.Contains(log, "grpc.method=ListStreams") || strings.Contains(log, "finished call") {
		t.Errorf("a per-call line at info:\n%s", log)
	}
	loud := startDaemon(t, false, "--log-level", "debug", "--log-format", "json")
	call[listStreamsResp](t, loud.unix(), "ListStreams", m{})
	var sawCall bool
	eventually(t, 10*time.Second, "the call's debug line", func() bool {
		sawCall = false
		sc := bufio.NewScanner(strings.NewReader(loud.stderr.String()))
		for sc.Scan() {
			var v map[string]any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Fatalf("not a JSON line: %q", sc.Text())
			}
			if v["grpc.method"] == "ListStreams" && v["level"] == "DEBUG" {
				sawCall = true
			}
		}
		return sawCall
	})
}

// TestSocketActivation: with LISTEN_FDS the daemon serves the socket it
// inherits (descriptor 3) instead of its default one, and leaves the
// socket file to whoever made it.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) { testSocketActivation(t, false) })
	// A unit that also names the socket with --listen (so it runs the same
	// without its socket unit) serves the inherited listener once.
	t.Run("listen the same path", func(t *testing.T) { testSocketActivation(t, true) })
}

func testSocketActivation(t *testing.T, listenToo bool) {
	t.Parallel()
	grpcurlPath(t)
	dir, err := os.MkdirTemp("", "smact")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "act.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	runtimeDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// systemd sets LISTEN_PID to the daemon's pid: the shell's, kept by exec.
	args := []string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=control exec "$0" "$@"`, daemonBinary(t)}
	if listenToo {
		args = append(args, "--listen", "unix:"+sock)
	}
	cmd := exec.Command("sh", args...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir)
	out := &streamtest.Buffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon exit: %v\n%s", err, out)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("the daemon did not exit on SIGINT")
		}
		if _, err := os.Stat(sock); err != nil {
			t.Errorf("the daemon removed the inherited socket file: %v", err)
		}
	}()
	tg := target{name: "activated", addr: []string{"-unix", sock}}
	eventually(t, 15*time.Second, "the daemon to answer on the inherited socket", func() bool {
		return tg.exec(context.Background(), "ListStreams", m{}).code == 0
	})
	call[pairResp](t, tg, "OpenPair", m{})
	if _, err := os.Stat(filepath.Join(runtimeDir, "streammgrd.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the default socket was created too: %v", err)
	}
}
