package streammgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// Listener is a server in the daemon (StartServer) as a net.Listener:
// Accept takes the connections the daemon's Serve call delivers and
// attaches to each, returning *Conns.
type Listener struct {
	c       *Client
	id      string
	network string
	sockets []string
	addr    net.Addr

	serve    smv1.StreamService_ServeClient
	cancel   context.CancelFunc // ends the Serve call
	conns    chan *smv1.ServeResponse
	done     chan struct{} // closed by Close
	recvDone chan struct{} // closed when the Serve call ended

	mu       sync.Mutex
	serveErr error // why the Serve call ended
	once     sync.Once
	closeErr error
}

// Listen starts a server in the daemon, as net.Listen does: network "tcp"
// (also "tcp4", "tcp6") with address "host:port" (port 0: one the kernel
// picks; an empty host: every interface, which the daemon's default policy
// refuses), or "unix" with a socket path.
func (c *Client) Listen(ctx context.Context, network, address string) (*Listener, error) {
	req := &smv1.StartServerRequest{}
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", address, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("listen %s: bad port %q", address, port)
		}
		req.Address = &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: host, Port: uint32(p)}}
	case "unix":
		req.Address = &smv1.StartServerRequest_Unix{Unix: &smv1.UnixAddress{Path: address}}
	default:
		return nil, fmt.Errorf("listen %s: network %q: want tcp or unix", address, network)
	}
	r, err := c.api.StartServer(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", address, fromStatus(err))
	}
	kind := netKind(network)
	l := &Listener{
		c: c, id: r.GetServerId(), network: kind, sockets: r.GetSockets(),
		conns: make(chan *smv1.ServeResponse), done: make(chan struct{}), recvDone: make(chan struct{}),
	}
	if len(l.sockets) > 0 {
		l.addr = parseAddr(kind, l.sockets[0])
	} else {
		l.addr = parseAddr(kind, address)
	}
	callCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.serve, err = c.api.Serve(callCtx, &smv1.ServeRequest{ServerId: l.id})
	if err != nil {
		cancel()
		_ = c.CloseServer(ctx, l.id, AbortClients)
		return nil, fmt.Errorf("listen %s: %w", address, fromStatus(err))
	}
	go l.recvLoop()
	return l, nil
}

// recvLoop takes the connections Serve delivers and hands them to Accept.
// Once the Listener is closed, connections still arriving are aborted.
func (l *Listener) recvLoop() {
	defer close(l.recvDone)
	defer close(l.conns)
	for {
		r, err := l.serve.Recv()
		if err != nil {
			l.mu.Lock()
			if err == io.EOF {
				l.serveErr = fmt.Errorf("server %s closed: %w", l.id, ErrServerClosed)
			} else {
				l.serveErr = fromStatus(err)
			}
			l.mu.Unlock()
			return
		}
		select {
		case l.conns <- r:
		case <-l.done:
			l.c.abortQuietly(r.GetStreamId())
		}
	}
}

// ID is the daemon's handle of the server.
func (l *Listener) ID() string { return l.id }

// Addr is the first address the server is bound to.
func (l *Listener) Addr() net.Addr { return l.addr }

// Sockets lists every address the server is bound to.
func (l *Listener) Sockets() []string { return append([]string(nil), l.sockets...) }

// Accept waits for the next connection; see AcceptConn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptConn()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptConn waits for the next connection and returns it attached. After
// Close it fails with an error matching net.ErrClosed. A connection that
// is gone before it could be attached is skipped.
func (l *Listener) AcceptConn() (*Conn, error) {
	for {
		var (
			r  *smv1.ServeResponse
			ok bool
		)
		select {
		case <-l.done:
			return nil, l.opErr(net.ErrClosed)
		case r, ok = <-l.conns:
		}
		if !ok {
			select {
			case <-l.done:
				return nil, l.opErr(net.ErrClosed)
			default:
			}
			l.mu.Lock()
			err := l.serveErr
			l.mu.Unlock()
			return nil, l.opErr(err)
		}
		local := l.addr
		if len(l.sockets) > 1 {
			ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			if info, err := l.c.Stream(ctx, r.GetStreamId()); err == nil {
				local = parseAddr(l.network, info.Local)
			}
			cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		conn, err := l.c.attach(ctx, r.GetStreamId(), l.network, local, parseAddr(l.network, r.GetPeername()))
		cancel()
		if err == nil {
			return conn, nil
		}
		if errors.Is(err, ErrDaemonUnreachable) {
			return nil, l.opErr(err)
		}
		l.c.abortQuietly(r.GetStreamId())
	}
}

// Close stops the server listening and releases it (the connections
// accepted so far stay open); a pending Accept fails with net.ErrClosed.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		err := l.c.CloseServer(ctx, l.id, KeepClients)
		cancel()
		if err == nil {
			// The Serve call ends by itself once the server closed;
			// connections it still delivers are aborted.
			select {
			case <-l.recvDone:
			case <-time.After(cleanupTimeout):
			}
		} else if !errors.Is(err, ErrServerNotFound) {
			l.closeErr = &net.OpError{Op: "close", Net: l.network, Addr: l.addr, Err: err}
		}
		l.cancel()
		<-l.recvDone
	})
	return l.closeErr
}

func (l *Listener) opErr(err error) error {
	return &net.OpError{Op: "accept", Net: l.network, Addr: l.addr, Err: err}
}

var _ net.Listener = (*Listener)(nil)
