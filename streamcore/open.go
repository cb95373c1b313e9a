package streamcore

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// DialOptions configures OpenConnection and OpenUnixConnection.
type DialOptions struct {
	Options
	// LocalAddr is bound before connecting ("host:port"; TCP only).
	LocalAddr string
	// ConnectTimeout bounds establishing the connection (0: only ctx).
	ConnectTimeout time.Duration
	// TLS, when set, makes this a TLS client. Its ServerName defaults to the
	// host being dialled.
	TLS *tls.Config
	// HandshakeTimeout bounds the TLS handshake (0: 60 s, as in asyncio).
	HandshakeTimeout time.Duration
	// Check, when set, vets each address just before it is connected:
	// network "tcp4"/"tcp6" with address "ip:port" (every address a host
	// name resolves to, as it is tried), or "unix" with the path. An error
	// skips that address; the connection is only ever made to an address
	// Check allowed, so a name that resolves differently later gains
	// nothing.
	Check func(network, address string) error
}

// dialer is the net.Dialer of opts.
func (opts *DialOptions) dialer() net.Dialer {
	d := net.Dialer{Timeout: opts.ConnectTimeout}
	if check := opts.Check; check != nil {
		d.ControlContext = func(_ context.Context, network, address string, _ syscall.RawConn) error {
			return check(network, address)
		}
	}
	return d
}

// OpenConnection is asyncio's open_connection(host, port): it connects over
// TCP (IPv4 or IPv6), performs the TLS handshake when opts.TLS is set, and
// returns the stream's reader and writer.
func OpenConnection(ctx context.Context, host string, port int, opts *DialOptions) (*Reader, *Writer, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	if _, err := opts.limit(); err != nil {
		return nil, nil, err
	}
	if port < 0 || port > 65535 {
		return nil, nil, &ValueError{Msg: fmt.Sprintf("port %d out of range", port)}
	}
	d := opts.dialer()
	if opts.LocalAddr != "" {
		la, err := net.ResolveTCPAddr("tcp", opts.LocalAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("local address %q: %w", opts.LocalAddr, err)
		}
		d.LocalAddr = la
	}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, nil, err
	}
	return openConn(ctx, conn, host, opts)
}

// OpenUnixConnection is asyncio's open_unix_connection(path). A leading "@"
// names a Linux abstract socket.
func OpenUnixConnection(ctx context.Context, path string, opts *DialOptions) (*Reader, *Writer, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	if _, err := opts.limit(); err != nil {
		return nil, nil, err
	}
	if opts.TLS != nil && opts.TLS.ServerName == "" && !opts.TLS.InsecureSkipVerify {
		return nil, nil, &ValueError{Msg: "you have to pass server_hostname when using ssl"}
	}
	d := opts.dialer()
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, nil, err
	}
	return openConn(ctx, conn, "", opts)
}

func openConn(ctx context.Context, conn net.Conn, host string, opts *DialOptions) (*Reader, *Writer, error) {
	var cfg *tls.Config
	if opts.TLS != nil {
		cfg = opts.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		timeout := opts.HandshakeTimeout
		if timeout <= 0 {
			timeout = DefaultHandshakeTimeout
		}
		if err := handshake(ctx, tc, timeout); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = tc
	}
	r, w, err := NewStream(conn, &opts.Options)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	w.t.tlsConfig = cfg
	return r, w, nil
}

// NewStream adopts a connected net.Conn (asyncio's open_connection(sock=...)).
// The stream owns conn from now on. A *tls.Conn must have completed its
// handshake.
func NewStream(conn net.Conn, opts *Options) (*Reader, *Writer, error) {
	return newStream(conn, opts, false)
}

func newStream(conn net.Conn, opts *Options, server bool) (*Reader, *Writer, error) {
	t, err := newTransport(conn, opts, server)
	if err != nil {
		return nil, nil, err
	}
	r := &Reader{t: t}
	return r, &Writer{t: t, r: r}, nil
}

// FromFile adopts a connected socket given as a file (asyncio's sock=). The
// file is duplicated, so the caller still owns (and should close) f.
func FromFile(f *os.File, opts *Options) (*Reader, *Writer, error) {
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, nil, fmt.Errorf("adopt %s: %w", f.Name(), err)
	}
	r, w, err := NewStream(conn, opts)
	if err != nil {
		conn.Close()
	}
	return r, w, err
}

// SocketPair is asyncio's socket.socketpair() passed to open_connection: two
// connected Unix streams. Bytes written to one are read from the other.
func SocketPair(opts *Options) (r1 *Reader, w1 *Writer, r2 *Reader, w2 *Writer, err error) {
	if _, err := opts.limit(); err != nil {
		return nil, nil, nil, nil, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, nil, nil, os.NewSyscallError("socketpair", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, ferr := net.FileConn(f)
		f.Close()
		if ferr != nil {
			err = ferr
		}
		conns[i] = c
	}
	if err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, nil, nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	r1, w1, _ = NewStream(conns[0], opts)
	r2, w2, _ = NewStream(conns[1], opts)
	return r1, w1, r2, w2, nil
}
