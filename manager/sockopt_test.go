package manager

import (
	"net"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// realSockOpt sets an option on a socket of our own and reads it back:
// what the daemon's answer must match.
func realSockOpt(t *testing.T, o sockOpt, name string, v int64) int64 {
	t.Helper()
	ln := listenTCP(t)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if name == "SO_LINGER" {
			l := &unix.Linger{}
			if v >= 0 {
				l.Onoff, l.Linger = 1, int32(v)
			}
			serr = unix.SetsockoptLinger(int(fd), o.level, o.opt, l)
		} else {
			serr = unix.SetsockoptInt(int(fd), o.level, o.opt, int(v))
		}
		if serr == nil {
			got, serr = getSockOpt(int(fd), name, o)
		}
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return got
}

func TestSockOpts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	o, _ := e.openTCP(t, nil)
	for _, tc := range []struct {
		name  string
		value int64
	}{
		{"TCP_NODELAY", 0}, {"TCP_NODELAY", 1},
		{"SO_KEEPALIVE", 1}, {"SO_KEEPALIVE", 0},
		{"TCP_KEEPIDLE", 30}, {"TCP_KEEPINTVL", 5}, {"TCP_KEEPCNT", 4},
		{"SO_RCVBUF", 65536}, {"SO_SNDBUF", 32768},
		{"SO_LINGER", 5}, {"SO_LINGER", 0}, {"SO_LINGER", -1},
	} {
		r, err := e.c.SetSockOpt(bg(t), &smv1.SetSockOptRequest{StreamId: o.StreamId, Name: tc.name, Value: tc.value})
		if err != nil {
			t.Fatalf("SetSockOpt %s=%d: %v", tc.name, tc.value, err)
		}
		want := realSockOpt(t, sockOpts[tc.name], tc.name, tc.value)
		if r.Value != want {
			t.Errorf("SetSockOpt %s=%d answered %d, a real socket reports %d", tc.name, tc.value, r.Value, want)
		}
		g, err := e.c.GetSockOpt(bg(t), &smv1.GetSockOptRequest{StreamId: o.StreamId, Name: tc.name})
		if err != nil || g.Value != want {
			t.Errorf("GetSockOpt %s = %v, %v; want %d", tc.name, g, err, want)
		}
	}
	// The daemon really set it: the stream's own socket says so.
	st := e.stream(t, o.StreamId)
	if err := sockControl(st, func(fd int) {
		if v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); v != 30 {
			t.Errorf("the stream's socket has TCP_KEEPIDLE %d, want 30", v)
		}
	}); err != nil {
		t.Fatal(err)
	}

	a, _ := e.openPair(t, nil)
	for _, tc := range []struct {
		what   string
		req    *smv1.SetSockOptRequest
		code   codes.Code
		reason string
		errno  syscall.Errno
	}{
		{"unknown option", &smv1.SetSockOptRequest{StreamId: o.StreamId, Name: "SO_REUSEADDR", Value: 1}, codes.InvalidArgument, ReasonInvalidArgument, 0},
		{"negative", &smv1.SetSockOptRequest{StreamId: o.StreamId, Name: "SO_RCVBUF", Value: -5}, codes.InvalidArgument, ReasonInvalidArgument, 0},
		{"kernel refuses", &smv1.SetSockOptRequest{StreamId: o.StreamId, Name: "TCP_KEEPIDLE", Value: 0}, codes.InvalidArgument, ReasonSocketOption, syscall.EINVAL},
		{"TCP option on a Unix socket", &smv1.SetSockOptRequest{StreamId: a, Name: "TCP_NODELAY", Value: 1}, codes.FailedPrecondition, ReasonSocketOption, syscall.EOPNOTSUPP},
		{"unknown stream", &smv1.SetSockOptRequest{StreamId: "s-nope", Name: "TCP_NODELAY", Value: 1}, codes.NotFound, ReasonStreamNotFound, 0},
	} {
		_, err := e.c.SetSockOpt(bg(t), tc.req)
		wantStatus(t, err, tc.code, tc.reason)
		if tc.errno != 0 {
			if got := errorInfo(status.Convert(err)).GetMetadata()[MetaErrno]; got != strconv.Itoa(int(tc.errno)) {
				t.Errorf("%s: errno %q, want %d", tc.what, got, tc.errno)
			}
		}
	}
	// SO_RCVBUF works on a Unix socket too.
	if r, err := e.c.SetSockOpt(bg(t), &smv1.SetSockOptRequest{StreamId: a, Name: "SO_RCVBUF", Value: 65536}); err != nil || r.Value <= 0 {
		t.Fatalf("SO_RCVBUF on a pair: %v, %v", r, err)
	}
	// A closed stream's socket is gone.
	e.closeStream(t, o.StreamId)
	waitFor(t, "the stream to close", func() bool { return e.stream(t, o.StreamId).lost() })
	_, err := e.c.GetSockOpt(bg(t), &smv1.GetSockOptRequest{StreamId: o.StreamId, Name: "TCP_NODELAY"})
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamClosed)
}
