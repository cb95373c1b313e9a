package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/streammgr/streammgr/streamcore/streamtest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// binDir holds streammgrd and streamctl, built once by TestMain from the
// repository this module sits in (../..).
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "smbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Other users must reach the binaries: the Kubernetes test runs the
	// daemon and its clients under the manifest's uids.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, name := range []string{"streammgrd", "streamctl"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

// proc is a started process that the test's cleanup kills and reaps.
type proc struct {
	cmd  *exec.Cmd
	out  *streamtest.Buffer
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// start runs cmd with its output collected; the test's cleanup kills it if
// it is still running and waits for it.
func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, out: &streamtest.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(cmd.Args, " "), p.out)
		}
	})
	return p
}

// stop sends SIGTERM and waits up to timeout for the process to exit.
func (p *proc) stop(t *testing.T, timeout time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s still running %v after SIGTERM", p.cmd.Path, timeout)
		return nil
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it returns nil, failing the test with cond's
// last error after timeout (long, for a loaded machine) or when the process
// p (if any) exits first.
func waitFor(t *testing.T, timeout time.Duration, what string, p *proc, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("waiting for %s: %s exited (%v); last: %v", what, p.cmd.Path, p.err, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// healthStatus asks the daemon on the Unix socket at path for its overall
// grpc.health.v1 status.
func healthStatus(path string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return 0, err
	}
	return resp.GetStatus(), nil
}

// waitServing waits until the daemon on path answers SERVING.
func waitServing(t *testing.T, path string, p *proc) {
	t.Helper()
	waitFor(t, 30*time.Second, "health SERVING on "+path, p, func() error {
		st, err := healthStatus(path)
		if err == nil && st != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("status %v", st)
		}
		return err
	})
}

// unit is a parsed systemd unit file: section, key, values in order.
type unit map[string]map[string][]string

// parseUnit reads a unit file as systemd does: comments (# ;), sections,
// Key=Value, backslash line continuations. An empty assignment resets the
// key's list, as it does for list settings.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	var cont string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cont = s
			continue
		}
		if line[0] == '[' && line[len(line)-1] == ']' {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not Key=Value in a section: %q", path, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if v == "" {
			u[section][k] = nil
			continue
		}
		u[section][k] = append(u[section][k], v)
	}
	return u
}

// one returns the single value of section.key, failing unless there is
// exactly one.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: got %q, want exactly one value", section, key, v)
	}
	return v[0]
}
