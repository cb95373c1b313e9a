package manager

import (
	"context"
	"errors"
	"net"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore"
)

// sockOpt is one socket option SetSockOpt and GetSockOpt allow.
type sockOpt struct{ level, opt int }

// sockOpts is the allow-list, by the names Python's socket module uses.
var sockOpts = map[string]sockOpt{
	"TCP_NODELAY":   {unix.IPPROTO_TCP, unix.TCP_NODELAY},
	"SO_KEEPALIVE":  {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	"TCP_KEEPIDLE":  {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
	"TCP_KEEPINTVL": {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
	"TCP_KEEPCNT":   {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
	"SO_RCVBUF":     {unix.SOL_SOCKET, unix.SO_RCVBUF},
	"SO_SNDBUF":     {unix.SOL_SOCKET, unix.SO_SNDBUF},
	"SO_LINGER":     {unix.SOL_SOCKET, unix.SO_LINGER},
}

func sockOptNames() string {
	names := make([]string, 0, len(sockOpts))
	for n := range sockOpts {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// sockOptError is a socket option the kernel refused.
type sockOptError struct {
	name string
	err  error
}

func (e *sockOptError) Error() string { return e.name + ": " + e.err.Error() }

func (e *sockOptError) Unwrap() error { return e.err }

// notApplicable reports an option the socket does not have.
func (e *sockOptError) notApplicable() bool {
	return errors.Is(e.err, syscall.ENOPROTOOPT) || errors.Is(e.err, syscall.EOPNOTSUPP)
}

// sockOptOf validates an option name and value.
func sockOptOf(name string, value *int64) (sockOpt, error) {
	o, ok := sockOpts[name]
	if !ok {
		return o, invalid("name", "not an allowed socket option; allowed: "+sockOptNames())
	}
	if value != nil {
		switch {
		case name == "SO_LINGER" && (*value < -1 || *value > 1<<31-1):
			return o, invalid("value", "SO_LINGER takes seconds >= 0, or -1 for off")
		case name != "SO_LINGER" && (*value < 0 || *value > 1<<31-1):
			return o, invalid("value", "must be 0..2147483647")
		}
	}
	return o, nil
}

// sockControl runs f on the file descriptor of the stream's socket.
func sockControl(st *Stream, f func(fd int)) error {
	c, ok := st.W.ExtraInfo("socket").(syscall.Conn)
	if !ok {
		return streamcore.ErrClosed
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return streamcore.ErrClosed
	}
	if err := rc.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return streamcore.ErrClosed
		}
		return err
	}
	return nil
}

func getSockOpt(fd int, name string, o sockOpt) (int64, error) {
	if name == "SO_LINGER" {
		l, err := unix.GetsockoptLinger(fd, o.level, o.opt)
		if err != nil {
			return 0, &sockOptError{name, err}
		}
		if l.Onoff == 0 {
			return -1, nil
		}
		return int64(l.Linger), nil
	}
	v, err := unix.GetsockoptInt(fd, o.level, o.opt)
	if err != nil {
		return 0, &sockOptError{name, err}
	}
	return int64(v), nil
}

// SetSockOpt implements StreamService.SetSockOpt.
func (s *Service) SetSockOpt(ctx context.Context, req *smv1.SetSockOptRequest) (*smv1.SetSockOptResponse, error) {
	o, err := sockOptOf(req.Name, &req.Value)
	if err != nil {
		return nil, toStatus(err)
	}
	var got int64
	err = s.withStream(ctx, req.StreamId, func(st *Stream) error {
		var serr error
		cerr := sockControl(st, func(fd int) {
			if req.Name == "SO_LINGER" {
				l := &unix.Linger{}
				if req.Value >= 0 {
					l.Onoff, l.Linger = 1, int32(req.Value)
				}
				serr = unix.SetsockoptLinger(fd, o.level, o.opt, l)
			} else {
				serr = unix.SetsockoptInt(fd, o.level, o.opt, int(req.Value))
			}
			if serr != nil {
				serr = &sockOptError{req.Name, serr}
				return
			}
			got, serr = getSockOpt(fd, req.Name, o)
		})
		return errors.Join(cerr, serr)
	})
	if err != nil {
		return nil, err
	}
	return &smv1.SetSockOptResponse{Value: got}, nil
}

// GetSockOpt implements StreamService.GetSockOpt.
func (s *Service) GetSockOpt(ctx context.Context, req *smv1.GetSockOptRequest) (*smv1.GetSockOptResponse, error) {
	o, err := sockOptOf(req.Name, nil)
	if err != nil {
		return nil, toStatus(err)
	}
	var got int64
	err = s.withStream(ctx, req.StreamId, func(st *Stream) error {
		var serr error
		cerr := sockControl(st, func(fd int) { got, serr = getSockOpt(fd, req.Name, o) })
		return errors.Join(cerr, serr)
	})
	if err != nil {
		return nil, err
	}
	return &smv1.GetSockOptResponse{Value: got}, nil
}
