package streamcore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Handler receives each accepted connection (asyncio's client_connected_cb).
// It runs in its own goroutine; the stream stays open until the handler (or
// whoever it hands the stream to) closes it, or the server's clients are
// closed. A handler that panics is logged (ServerOptions.Logger) and its
// connection aborted, as asyncio reports an unhandled exception in
// client_connected_cb and closes the connection; the server keeps serving.
type Handler func(r *Reader, w *Writer)

// ServerOptions configures StartServer and StartUnixServer. The zero value
// gives asyncio's defaults.
type ServerOptions struct {
	// Options apply to every accepted stream.
	Options
	// Backlog is the listen() backlog; 0 means 100.
	Backlog int
	// ReusePort sets SO_REUSEPORT (TCP). SO_REUSEADDR is always set on TCP
	// sockets, as asyncio does on POSIX.
	ReusePort bool
	// TLS, when set, makes every accepted connection a TLS server.
	TLS *tls.Config
	// HandshakeTimeout bounds each accepted TLS handshake (0: 60 s).
	HandshakeTimeout time.Duration
	// Deferred binds the sockets without listening (asyncio's
	// start_serving=False): connections are refused until StartServing.
	Deferred bool
	// MaxHandshakes caps the TLS handshakes in progress; a connection
	// accepted beyond it is closed at once, so silent peers cannot pile up
	// goroutines and file descriptors. 0 means DefaultMaxHandshakes.
	MaxHandshakes int
	// Logger receives a panicking handler's report (nil: slog.Default()).
	Logger *slog.Logger
	// Check, when set, vets each address before it is bound: network
	// "tcp" with address "ip:port" (the unspecified addresses for an empty
	// host, every address a host name resolves to), or "unix" with the
	// path. An error fails the server and nothing stays bound.
	Check func(network, address string) error
}

// DefaultMaxHandshakes is the default cap on a TLS server's handshakes in
// progress.
const DefaultMaxHandshakes = 128

// acceptRetryDelay is how long accepting pauses after EMFILE and friends.
const acceptRetryDelay = time.Second

// Server is asyncio's Server: listening sockets plus the connections they
// accepted.
type Server struct {
	handler Handler
	opts    ServerOptions
	backlog int

	mu        sync.Mutex
	socks     []*boundSocket
	serving   bool
	closed    bool
	clients   map[*transport]struct{}
	done      chan struct{} // closed when closed and no clients remain
	doneOnce  sync.Once
	forever   bool
	closedCh  chan struct{} // closed by Close
	wg        sync.WaitGroup
	unixPath  string
	unixStat  os.FileInfo
	accepted  int64
	rejected  int64
	handshake sync.WaitGroup
	// handshakes holds a token per TLS handshake in progress.
	handshakes chan struct{}
}

type boundSocket struct {
	fd   int // -1 once listening or closed
	addr net.Addr
	ln   net.Listener
}

// StartServer is asyncio's start_server(cb, host, port). An empty host binds
// every interface with one socket per address family; port 0 lets the OS
// choose (each socket may get a different port).
func StartServer(ctx context.Context, handler Handler, host string, port int, opts *ServerOptions) (*Server, error) {
	s, err := newServer(handler, opts)
	if err != nil {
		return nil, err
	}
	if port < 0 || port > 65535 {
		return nil, &ValueError{Msg: fmt.Sprintf("port %d out of range", port)}
	}
	var ips []net.IP
	if host == "" {
		ips = []net.IP{net.IPv6zero, net.IPv4zero}
	} else {
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, a := range addrs {
			if !seen[a.IP.String()] {
				seen[a.IP.String()] = true
				ips = append(ips, a.IP)
			}
		}
	}
	if check := s.opts.Check; check != nil {
		for _, ip := range ips {
			if err := check("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port))); err != nil {
				return nil, err
			}
		}
	}
	var errs []error
	for _, ip := range ips {
		bs, err := bindTCP(ip, port, s.opts.ReusePort)
		if err != nil {
			if host == "" && ip.Equal(net.IPv6zero) && errors.Is(err, syscall.EAFNOSUPPORT) {
				continue // no IPv6 on this machine
			}
			errs = append(errs, err)
			break
		}
		s.socks = append(s.socks, bs)
	}
	if len(errs) > 0 || len(s.socks) == 0 {
		s.closeSockets()
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("could not bind on any address out of %v", ips))
		}
		return nil, errors.Join(errs...)
	}
	if !s.opts.Deferred {
		if err := s.StartServing(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// StartUnixServer is asyncio's start_unix_server(cb, path). A stale socket
// file at path (one nobody listens on) is removed first; a live socket or a
// non-socket file makes it fail with EADDRINUSE. Close removes the file if it
// is still the one this server bound. A leading "@" names a Linux abstract
// socket, which has no file.
func StartUnixServer(ctx context.Context, handler Handler, path string, opts *ServerOptions) (*Server, error) {
	s, err := newServer(handler, opts)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, &ValueError{Msg: "Neither host/port nor sock were specified"}
	}
	if check := s.opts.Check; check != nil {
		if err := check("unix", path); err != nil {
			return nil, err
		}
	}
	abstract := strings.HasPrefix(path, "@")
	if !abstract {
		if err := removeStaleSocket(ctx, path); err != nil {
			return nil, err
		}
	}
	bs, err := bindUnix(path)
	if err != nil {
		return nil, err
	}
	s.socks = []*boundSocket{bs}
	if !abstract {
		s.unixPath = path
		s.unixStat, _ = os.Stat(path)
	}
	if !s.opts.Deferred {
		if err := s.StartServing(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func newServer(handler Handler, opts *ServerOptions) (*Server, error) {
	if handler == nil {
		return nil, &ValueError{Msg: "a handler is required"}
	}
	s := &Server{handler: handler, clients: map[*transport]struct{}{}, done: make(chan struct{}), closedCh: make(chan struct{})}
	if opts != nil {
		s.opts = *opts
	}
	if _, err := s.opts.limit(); err != nil {
		return nil, err
	}
	s.backlog = s.opts.Backlog
	if s.backlog <= 0 {
		s.backlog = 100
	}
	if s.opts.MaxHandshakes <= 0 {
		s.opts.MaxHandshakes = DefaultMaxHandshakes
	}
	s.handshakes = make(chan struct{}, s.opts.MaxHandshakes)
	return s, nil
}

// removeStaleSocket unlinks a socket file nobody is listening on, if it
// belongs to this process's user: another user's socket file is never
// touched.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil // nothing there (or unreadable: bind will say)
	}
	inUse := &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"},
		Err: fmt.Errorf("address %q is already in use: %w", path, syscall.EADDRINUSE)}
	if fi.Mode()&os.ModeSocket == 0 {
		return inUse
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		inUse.Err = fmt.Errorf("address %q is already in use: a socket file of another user: %w", path, syscall.EADDRINUSE)
		return inUse
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return inUse
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return inUse
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

func bindTCP(ip net.IP, port int, reusePort bool) (*boundSocket, error) {
	family := syscall.AF_INET
	var sa syscall.Sockaddr
	if ip4 := ip.To4(); ip4 != nil {
		a := &syscall.SockaddrInet4{Port: port}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		family = syscall.AF_INET6
		a := &syscall.SockaddrInet6{Port: port}
		copy(a.Addr[:], ip.To16())
		sa = a
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	opts := [][2]int{{syscall.SOL_SOCKET, syscall.SO_REUSEADDR}}
	if reusePort {
		opts = append(opts, [2]int{syscall.SOL_SOCKET, soReusePort})
	}
	if family == syscall.AF_INET6 {
		opts = append(opts, [2]int{syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY})
	}
	for _, o := range opts {
		if err := syscall.SetsockoptInt(fd, o[0], o[1], 1); err != nil {
			syscall.Close(fd)
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, &net.OpError{Op: "bind", Net: "tcp", Addr: &net.TCPAddr{IP: ip, Port: port},
			Err: fmt.Errorf("error while attempting to bind on address %s: %w", net.JoinHostPort(ip.String(), strconv.Itoa(port)), err)}
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("getsockname", err)
	}
	var addr net.Addr
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		addr = &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *syscall.SockaddrInet6:
		addr = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return &boundSocket{fd: fd, addr: addr}, nil
}

func bindUnix(path string) (*boundSocket, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return nil, &net.OpError{Op: "bind", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: err}
	}
	return &boundSocket{fd: fd, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// StartServing is asyncio's start_serving(): it starts listening and
// accepting. It is idempotent.
func (s *Server) StartServing(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.serving {
		return nil
	}
	for _, bs := range s.socks {
		if bs.ln != nil {
			continue // listening since an earlier, partly failed call
		}
		if err := syscall.Listen(bs.fd, s.backlog); err != nil {
			return os.NewSyscallError("listen", err)
		}
		f := os.NewFile(uintptr(bs.fd), "listener")
		ln, err := net.FileListener(f)
		f.Close()
		bs.fd = -1
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // Close decides, by inode
		}
		bs.ln = ln
		s.wg.Add(1)
		go s.acceptLoop(ln)
	}
	s.serving = true
	return nil
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				select {
				case <-time.After(acceptRetryDelay):
				case <-s.closedCh:
					return
				}
			}
			continue
		}
		if s.opts.TLS != nil {
			select {
			case s.handshakes <- struct{}{}:
			default:
				conn.Close() // too many handshakes in progress
				s.mu.Lock()
				s.rejected++
				s.mu.Unlock()
				continue
			}
		}
		s.handshake.Add(1)
		go s.serveConn(conn)
	}
}

func (s *Server) serveConn(conn net.Conn) {
	registered := false
	defer func() {
		if !registered {
			s.handshake.Done()
		}
	}()
	var cfg *tls.Config
	if s.opts.TLS != nil {
		cfg = s.opts.TLS
		tc := tls.Server(conn, cfg)
		timeout := s.opts.HandshakeTimeout
		if timeout <= 0 {
			timeout = DefaultHandshakeTimeout
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.closedCh:
			case <-ctx.Done():
			}
			cancel()
		}()
		err := handshake(ctx, tc, timeout)
		cancel()
		<-s.handshakes
		if err != nil {
			conn.Close()
			return
		}
		conn = tc
	}
	t, err := newTransport(conn, &s.opts.Options, true)
	if err != nil {
		conn.Close()
		return
	}
	t.tlsConfig = cfg
	s.mu.Lock()
	s.accepted++
	s.clients[t] = struct{}{}
	s.mu.Unlock()
	registered = true
	s.handshake.Done()
	t.mu.Lock()
	lost := t.lostChLocked()
	t.mu.Unlock()
	go func() {
		<-lost
		s.mu.Lock()
		delete(s.clients, t)
		s.mu.Unlock()
		s.checkDone()
	}()
	r := &Reader{t: t}
	w := &Writer{t: t, r: r}
	defer func() {
		// As asyncio reports "Unhandled exception in client_connected_cb"
		// and closes the connection, a panicking handler is logged and its
		// connection aborted; the server keeps serving.
		if p := recover(); p != nil {
			s.logger().Error("streamcore: panic in connection handler", "panic", fmt.Sprint(p),
				"peer", addrText(t.peer), "stack", string(debug.Stack()))
			w.Abort()
		}
	}()
	s.handler(r, w)
}

func (s *Server) logger() *slog.Logger {
	if s.opts.Logger != nil {
		return s.opts.Logger
	}
	return slog.Default()
}

func addrText(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (s *Server) checkDone() {
	s.mu.Lock()
	done := s.closed && len(s.clients) == 0
	s.mu.Unlock()
	if done {
		s.doneOnce.Do(func() { close(s.done) })
	}
}

// Sockets returns the bound addresses (asyncio's sockets): port 0 resolved.
// It is empty after Close.
func (s *Server) Sockets() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	addrs := make([]net.Addr, len(s.socks))
	for i, bs := range s.socks {
		addrs[i] = bs.addr
	}
	return addrs
}

// IsServing is asyncio's is_serving().
func (s *Server) IsServing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serving && !s.closed
}

// Accepted returns how many connections the server has accepted.
func (s *Server) Accepted() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Rejected returns how many connections were closed at once because
// MaxHandshakes TLS handshakes were already in progress.
func (s *Server) Rejected() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Close is asyncio's close(): it stops listening, closes the listening
// sockets and removes a Unix socket file it still owns. Accepted connections
// keep working. Close is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.serving = false
	close(s.closedCh)
	s.mu.Unlock()
	s.closeSockets()
	s.wg.Wait()
	s.handshake.Wait()
	if s.unixPath != "" && s.unixStat != nil {
		if fi, err := os.Stat(s.unixPath); err == nil && os.SameFile(fi, s.unixStat) {
			_ = os.Remove(s.unixPath)
		}
	}
	s.checkDone()
}

func (s *Server) closeSockets() {
	for _, bs := range s.socks {
		if bs.ln != nil {
			bs.ln.Close()
		}
		if bs.fd >= 0 {
			syscall.Close(bs.fd)
			bs.fd = -1
		}
	}
}

func (s *Server) eachClient(f func(w *Writer)) {
	s.mu.Lock()
	ts := make([]*transport, 0, len(s.clients))
	for t := range s.clients {
		ts = append(ts, t)
	}
	s.mu.Unlock()
	for _, t := range ts {
		f(&Writer{t: t})
	}
}

// CloseClients is asyncio's close_clients(): Close on every accepted
// connection still open.
func (s *Server) CloseClients() { s.eachClient((*Writer).Close) }

// AbortClients is asyncio's abort_clients(): Abort on every accepted
// connection still open.
func (s *Server) AbortClients() { s.eachClient((*Writer).Abort) }

// WaitClosed is asyncio's wait_closed(): it returns once the server is
// closed and every connection it accepted is gone.
func (s *Server) WaitClosed(ctx context.Context) error {
	select {
	case <-s.done:
		return nil // already closed: no coin toss with an ended ctx
	default:
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeForever is asyncio's serve_forever(): it starts serving if needed and
// waits until ctx ends or the server is closed; then it closes the server,
// waits for every client to go, and returns ctx's error or ErrServerClosed.
func (s *Server) ServeForever(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.forever {
		s.mu.Unlock()
		return ErrServing
	}
	s.forever = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.forever = false
		s.mu.Unlock()
	}()
	if err := s.StartServing(ctx); err != nil {
		return err
	}
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.closedCh:
		err = ErrServerClosed
	}
	s.Close()
	<-s.done
	return err
}
