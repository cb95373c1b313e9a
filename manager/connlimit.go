package manager

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// connLimiter bounds the daemon's control connections: at most max at
// once (more are closed as they arrive), and each must receive its first
// request within firstRequest or it is closed: a connection that sends
// only the HTTP/2 preface, or headers and no message, holds nothing for
// long.
type connLimiter struct {
	net.Listener
	max          int64
	firstRequest time.Duration
	log          *slog.Logger
	active       *atomic.Int64 // shared by every listener of the daemon
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.max {
			l.active.Add(-1)
			l.log.Warn("control connection refused: too many connections", "max", l.max)
			c.Close()
			continue
		}
		tc := &trackedConn{Conn: c, active: l.active}
		tc.timer = time.AfterFunc(l.firstRequest, func() {
			if !tc.served.Load() {
				l.log.Warn("control connection closed: no request in time", "after", l.firstRequest)
				tc.Close()
			}
		})
		return tc, nil
	}
}

// trackedConn is a control connection: it knows whether a request has
// arrived on it (firstRequestHandler marks it) and gives its place back when
// closed.
type trackedConn struct {
	net.Conn
	active *atomic.Int64
	served atomic.Bool
	timer  *time.Timer
	once   sync.Once
}

// NetConn is the accepted connection, for the peer credentials of a Unix
// socket.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.timer.Stop()
		c.active.Add(-1)
	})
	return c.Conn.Close()
}

// RemoteAddr is the peer's address, carrying the connection along so that
// the stats handler can find it (gRPC hands stats handlers the address,
// not the connection).
func (c *trackedConn) RemoteAddr() net.Addr { return connAddr{c.Conn.RemoteAddr(), c} }

type connAddr struct {
	net.Addr
	c *trackedConn
}

type connKey struct{}

// firstRequestHandler marks a control connection served once a request
// message arrives on it.
type firstRequestHandler struct{}

func (firstRequestHandler) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if a, ok := info.RemoteAddr.(connAddr); ok {
		return context.WithValue(ctx, connKey{}, a.c)
	}
	return ctx
}

func (firstRequestHandler) HandleConn(context.Context, stats.ConnStats) {}

func (firstRequestHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (firstRequestHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	// A request message, not the end of a call: a call that ends without
	// one (cancelled for want of it) does not make its connection served.
	switch s.(type) {
	case *stats.InPayload:
		if c, ok := ctx.Value(connKey{}).(*trackedConn); ok {
			c.served.Store(true)
		}
		if st, ok := ctx.Value(callKey{}).(*callState); ok {
			st.timer.Stop()
		}
	}
}

// callLimiter is the daemon's tap on every new call, before its handler
// (and before its request is decoded): at most max calls in progress in
// all, and a call whose request message has not arrived within
// firstRequest is cancelled, so that headers without a body hold nothing
// for long (firstRequestHandler stops its timer).
type callLimiter struct {
	max          int64
	firstRequest time.Duration
	inflight     atomic.Int64
}

type callKey struct{}

// callState is one call's timer: it cancels the call unless a request
// message arrives first.
type callState struct{ timer *time.Timer }

func (l *callLimiter) tap(ctx context.Context, _ *tap.Info) (context.Context, error) {
	if l.inflight.Add(1) > l.max {
		l.inflight.Add(-1)
		return nil, status.Errorf(codes.ResourceExhausted, "too many calls in progress (limit %d)", l.max)
	}
	ctx, cancel := context.WithCancel(ctx)
	st := &callState{timer: time.AfterFunc(l.firstRequest, cancel)}
	context.AfterFunc(ctx, func() {
		st.timer.Stop()
		l.inflight.Add(-1)
	})
	return context.WithValue(ctx, callKey{}, st), nil
}
