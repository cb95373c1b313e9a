package streammgr_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

// TestErrors: the daemon's errors match their sentinels, their errnos and
// the context errors with errors.Is, and read well.
func TestErrors(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ctx := testCtx(t)
	refused := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	taken := newPeer(t, "tcp").addr()
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	attached, _ := openTo(t, c, "tcp")
	other, _ := openTo(t, c, "tcp")
	cases := []struct {
		name string
		call func() error
		want []error
		text string // the error's text, when set
	}{
		{"refused", func() error { _, err := c.Open(ctx, "tcp", refused); return err },
			[]error{streammgr.ErrConnectionRefused, syscall.ECONNREFUSED},
			"connect " + refused + ": connection refused (CONNECTION_REFUSED)"},
		{"no such socket", func() error { _, err := c.Open(ctx, "unix", "/nonexistent/sm.sock"); return err },
			[]error{streammgr.ErrNoSuchSocket, syscall.ENOENT}, ""},
		{"destination denied", func() error { _, err := c.Open(ctx, "tcp", "169.254.169.254:80"); return err },
			[]error{streammgr.ErrDestinationDenied}, ""},
		{"bind denied", func() error { _, err := c.Listen(ctx, "tcp", "0.0.0.0:0"); return err },
			[]error{streammgr.ErrBindDenied}, ""},
		{"address in use", func() error { _, err := c.Listen(ctx, "tcp", taken); return err },
			[]error{streammgr.ErrAddressInUse, syscall.EADDRINUSE}, ""},
		{"stream not found (list)", func() error { _, err := c.Stream(ctx, "s-0000000000000000"); return err },
			[]error{streammgr.ErrStreamNotFound}, ""},
		{"stream not found (daemon)", func() error { return c.CloseStream(ctx, "s-0000000000000000") },
			[]error{streammgr.ErrStreamNotFound}, ""},
		{"server not found", func() error { return c.CloseServer(ctx, "srv-0000000000000000", streammgr.KeepClients) },
			[]error{streammgr.ErrServerNotFound}, ""},
		{"invalid argument", func() error { _, err := c.OpenStream(ctx, "unix", "/"+strings.Repeat("x", 200)); return err },
			[]error{streammgr.ErrInvalidArgument}, ""},
		{"stream attached", func() error { _, err := c.Relay(ctx, attached.ID(), other.ID()); return err },
			[]error{streammgr.ErrStreamAttached}, ""},
		{"deadline", func() error { _, err := c.Open(expired, "tcp", taken); return err },
			[]error{context.DeadlineExceeded}, ""},
		{"unauthenticated", func() error { _, err := dial(t, streammgr.WithToken(bogusToken)).Streams(ctx); return err },
			[]error{streammgr.ErrUnauthenticated}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatalf("got no error, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("errors.Is(%v, %v) = false", err, w)
				}
			}
			if tc.text != "" && err.Error() != tc.text {
				t.Errorf("got %q, want %q", err.Error(), tc.text)
			}
		})
	}

	t.Run("fields", func(t *testing.T) {
		_, err := c.Open(ctx, "tcp", "169.254.169.254:80")
		var e *streammgr.Error
		if !errors.As(err, &e) {
			t.Fatalf("got %T, want an *Error inside", err)
		}
		if e.Code.String() != "PermissionDenied" || e.Reason != streammgr.ErrDestinationDenied || e.Metadata["rule"] == "" || e.Message == "" {
			t.Errorf("got %+v, want code PermissionDenied, reason DESTINATION_DENIED, a rule and a message", *e)
		}
		_, err = c.OpenStream(ctx, "unix", "/"+strings.Repeat("x", 200))
		if !errors.As(err, &e) || e.Violations["unix.path"] == "" {
			t.Errorf("got %v, want a violation of unix.path", err)
		}
		if errors.Is(err, streammgr.ErrConnectionRefused) {
			t.Errorf("%v matches another reason", err)
		}
	})
}

// TestQuota: an identity past its max_servers gets ErrQuotaExceeded.
func TestQuota(t *testing.T) {
	t.Parallel()
	c := dial(t, streammgr.WithToken(cappedToken))
	ctx := testCtx(t)
	l, err := c.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = c.Listen(ctx, "tcp", "127.0.0.1:0")
	var e *streammgr.Error
	if !errors.Is(err, streammgr.ErrQuotaExceeded) || !errors.As(err, &e) || e.Metadata["identity"] != "capped" {
		t.Fatalf("second Listen: got %v, want ErrQuotaExceeded for capped", err)
	}
}

// TestReasonsMatchDaemon: every reason the daemon declares (Reason* in
// manager/errors.go) has a sentinel, and no sentinel is unknown to it.
func TestReasonsMatchDaemon(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join("..", "..", "manager", "errors.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var daemon []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if strings.HasPrefix(name.Name, "Reason") && i < len(vs.Values) {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
					s, _ := strconv.Unquote(lit.Value)
					daemon = append(daemon, s)
				}
			}
		}
		return true
	})
	if len(daemon) < 40 {
		t.Fatalf("found only %d reasons in manager/errors.go", len(daemon))
	}
	var ours []string
	for _, r := range streammgr.Reasons() {
		ours = append(ours, string(r))
	}
	slices.Sort(daemon)
	slices.Sort(ours)
	for _, r := range daemon {
		if !slices.Contains(ours, r) {
			t.Errorf("the daemon's reason %s has no sentinel", r)
		}
	}
	for _, r := range ours {
		if !slices.Contains(daemon, r) {
			t.Errorf("sentinel %s is not a reason of the daemon", r)
		}
	}
}

// TestListenAccept: a Listener's Accept returns Conns for the connections
// the daemon accepts; Servers lists it until Close, after which Accept
// fails with net.ErrClosed.
func TestListenAccept(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ctx := testCtx(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				dir, err := os.MkdirTemp("", "sml")
				if err != nil {
					t.Fatal(err)
				}
				defer os.RemoveAll(dir)
				addr = filepath.Join(dir, "l.sock")
			}
			l, err := c.Listen(ctx, network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if l.Addr().Network() != network || (network == "unix" && l.Addr().String() != addr) {
				t.Errorf("Addr %v (%s), want a %s address", l.Addr(), l.Addr().Network(), network)
			}
			const n = 3
			for i := range n {
				d, err := net.Dial(network, l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				conn, err := l.Accept()
				if err != nil {
					t.Fatalf("Accept: %v", err)
				}
				msg := fmt.Sprintf("hello %d", i)
				if _, err := d.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				d.(interface{ CloseWrite() error }).CloseWrite()
				got, err := io.ReadAll(conn)
				if err != nil || string(got) != msg {
					t.Fatalf("accepted Conn read %q, %v; want %q", got, err, msg)
				}
				if network == "tcp" && conn.RemoteAddr().String() != d.LocalAddr().String() {
					t.Errorf("RemoteAddr %v, want %v", conn.RemoteAddr(), d.LocalAddr())
				}
				if _, err := conn.Write([]byte("bye")); err != nil {
					t.Fatal(err)
				}
				conn.Close()
				got, err = io.ReadAll(d)
				if err != nil || string(got) != "bye" {
					t.Fatalf("client read %q, %v; want \"bye\"", got, err)
				}
				d.Close()
			}
			info, err := c.Server(ctx, l.ID())
			if err != nil {
				t.Fatal(err)
			}
			if info.Accepted != n || info.State != "serving" || info.ServeCalls != 1 || !slices.Contains(info.Sockets, l.Addr().String()) {
				t.Errorf("Server: got %+v, want %d accepted, serving, one Serve call, socket %s", info, n, l.Addr())
			}
			accepted := make(chan error, 1)
			go func() {
				_, err := l.Accept()
				accepted <- err
			}()
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := <-accepted; !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept during Close: got %v, want net.ErrClosed", err)
			}
			if _, err := c.Server(ctx, l.ID()); !errors.Is(err, streammgr.ErrServerNotFound) {
				t.Errorf("Server after Close: got %v, want ErrServerNotFound", err)
			}
		})
	}
}

// TestRelay: two streams opened without attaching are joined in the
// daemon; each peer gets the other's bytes and EOF, and Relay counts them.
func TestRelay(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ctx := testCtx(t)
	pa, pb := newPeer(t, "tcp"), newPeer(t, "unix")
	a, err := c.OpenStream(ctx, "tcp", pa.addr())
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.OpenStream(ctx, "unix", pb.addr())
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := pa.accept(t), pb.accept(t)
	type res struct {
		r   streammgr.RelayResult
		err error
	}
	done := make(chan res, 1)
	go func() {
		r, err := c.Relay(ctx, a, b)
		done <- res{r, err}
	}()
	waitFor(t, "the relay to start", 10*time.Second, func() bool {
		s, err := c.Stream(ctx, a)
		return err == nil && s.RelayPeer == b
	})
	toB, toA := randomBytes(t, 300<<10), randomBytes(t, 200<<10)
	gotA, gotB := make(chan []byte, 1), make(chan []byte, 1)
	go func() { got, _ := io.ReadAll(ca); gotA <- got }()
	go func() { got, _ := io.ReadAll(cb); gotB <- got }()
	if _, err := ca.Write(toB); err != nil {
		t.Fatal(err)
	}
	ca.(*net.TCPConn).CloseWrite()
	if _, err := cb.Write(toA); err != nil {
		t.Fatal(err)
	}
	cb.(*net.UnixConn).CloseWrite()
	if got := <-gotB; string(got) != string(toB) {
		t.Errorf("b's peer got %d bytes, want %d", len(got), len(toB))
	}
	if got := <-gotA; string(got) != string(toA) {
		t.Errorf("a's peer got %d bytes, want %d", len(got), len(toA))
	}
	r := <-done
	if r.err != nil || r.r.AToB != int64(len(toB)) || r.r.BToA != int64(len(toA)) {
		t.Errorf("Relay: got %+v, %v; want %d and %d bytes", r.r, r.err, len(toB), len(toA))
	}
	for _, id := range []string{a, b} {
		if err := c.CloseStream(ctx, id); err != nil {
			t.Error(err)
		}
	}
}

// TestStreamsAndServers: Streams, Stream and Servers show the caller's
// handles with their figures; CloseStream and AbortStream act on them.
func TestStreamsAndServers(t *testing.T) {
	t.Parallel()
	c := dial(t)
	ctx := testCtx(t)
	conn, p := openTo(t, c, "tcp")
	if _, err := conn.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(p, buf); err != nil {
		t.Fatal(err)
	}
	all, err := c.Streams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(s streammgr.StreamInfo) bool { return s.ID == conn.ID() })
	if i < 0 {
		t.Fatalf("Streams does not list %s: %+v", conn.ID(), all)
	}
	s := all[i]
	if s.Kind != "tcp" || s.State != "open" || !s.Attached || s.BytesOut != 5 || s.Peer != p.LocalAddr().String() ||
		s.Local != p.RemoteAddr().String() || s.Owner != "uid:"+strconv.Itoa(os.Getuid()) || s.Age <= 0 {
		t.Errorf("StreamInfo: got %+v", s)
	}

	l, err := c.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	servers, err := c.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(servers, func(s streammgr.ServerInfo) bool { return s.ID == l.ID() && s.State == "serving" }) {
		t.Errorf("Servers does not list %s serving: %+v", l.ID(), servers)
	}
	if !streammgr.IsServerID(l.ID()) || streammgr.IsServerID(conn.ID()) {
		t.Errorf("IsServerID(%s), IsServerID(%s) wrong", l.ID(), conn.ID())
	}

	pa := newPeer(t, "tcp")
	for _, tc := range []struct {
		name string
		act  func(ctx context.Context, id string) error
	}{
		{"close", c.CloseStream},
		{"abort", c.AbortStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := c.OpenStream(ctx, "tcp", pa.addr())
			if err != nil {
				t.Fatal(err)
			}
			pc := pa.accept(t)
			if err := tc.act(ctx, id); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(pc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("peer: %v", err)
			}
			waitFor(t, "the stream to close", 10*time.Second, func() bool {
				s, err := c.Stream(ctx, id)
				return errors.Is(err, streammgr.ErrStreamNotFound) || (err == nil && s.State == "closed")
			})
		})
	}
}

// TestHealth: a running daemon serves.
func TestHealth(t *testing.T) {
	t.Parallel()
	h, err := dial(t).Health(testCtx(t))
	if err != nil || !h.Serving() || h.Status != "SERVING" || h.Budget != "SERVING" {
		t.Fatalf("Health: got %+v, %v; want SERVING", h, err)
	}
}

// TestDial: where Dial looks for the daemon, and what it says when nothing
// answers.
func TestDial(t *testing.T) {
	tmp := os.TempDir()
	cases := []struct {
		name, addr, xdg, want string
	}{
		{"STREAMMGR_ADDR", "unix:/x/y.sock", "/run/user/7", "unix:/x/y.sock"},
		{"XDG_RUNTIME_DIR", "", "/run/user/7", "unix:/run/user/7/streammgrd.sock"},
		{"private dir", "", "", "unix:" + filepath.Join(tmp, fmt.Sprintf("streammgrd-%d", os.Getuid()), "streammgrd.sock")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("STREAMMGR_ADDR", tc.addr)
			t.Setenv("XDG_RUNTIME_DIR", tc.xdg)
			if got := streammgr.DefaultAddr(); got != tc.want {
				t.Errorf("DefaultAddr() = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("STREAMMGR_ADDR", daemonAddr)
		c, err := streammgr.Dial(testCtx(t), "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Addr() != daemonAddr {
			t.Errorf("Addr %q, want %q", c.Addr(), daemonAddr)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		_, err := streammgr.Dial(testCtx(t), "unix:/nonexistent/streammgrd.sock")
		if !errors.Is(err, streammgr.ErrDaemonUnreachable) {
			t.Errorf("got %v, want ErrDaemonUnreachable", err)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		if _, err := streammgr.Dial(testCtx(t), "nonsense"); err == nil {
			t.Error("Dial(\"nonsense\") succeeded")
		}
	})
}
