package streammgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

const (
	// maxMessage is the most outbound bytes one Attach message carries.
	maxMessage = 256 << 10
	// minChunk is the least room a Write waits for before it queues part
	// of its bytes (all of them, when fewer), so that a nearly full window
	// does not cut writes into tiny messages.
	minChunk = 16 << 10
	// ackEvery is how many consumed bytes make an acknowledgement due on
	// its own; smaller ones ride on the next outbound message.
	ackEvery = 64 << 10
)

// Conn is a net.Conn over a stream in the daemon, carried by one Attach
// call: what the daemon's socket receives arrives in order, what is written
// goes to the socket in order.
//
// Inbound bytes are acknowledged as Read consumes them: the daemon sends at
// most the client's window (WithWindow) ahead, and once that much is
// unread it stops reading the socket, so TCP pushes back on the peer.
// Outbound bytes are sent at most half the window ahead of what the daemon
// has taken; past that Write waits, so a peer that does not read holds the
// writer back. Half the window keeps the answers of an echoing peer room to
// come back while acknowledgements wait behind outbound bytes.
//
// Deadlines work as for any net.Conn: past one, Read and Write fail with an
// error matching os.ErrDeadlineExceeded whose Timeout() is true. A Write
// that returns has handed its bytes to the Conn; errors after that show up
// in later calls. Errors other than io.EOF are *net.OpError values wrapping
// the daemon's *Error.
type Conn struct {
	client  *Client
	id      string
	network string
	local   net.Addr
	remote  net.Addr
	linger  time.Duration
	// writeWindow bounds the outbound bytes queued or sent and not yet
	// taken by the daemon.
	writeWindow int64

	stream   smv1.StreamService_AttachClient
	cancel   context.CancelFunc // ends the Attach call
	recvDone chan struct{}      // closed when recvLoop returned
	sendDone chan struct{}      // closed when sendLoop returned

	mu   sync.Mutex
	cond *sync.Cond // on mu: every change of the state below

	// Inbound.
	in       [][]byte // received and not yet read
	inNext   int64    // the inbound offset after the bytes received
	consumed int64    // the inbound offset after the bytes read (or discarded)
	acked    int64    // the last acknowledgement sent
	eof      bool     // the peer's EOF came, after every byte before it
	ended    bool     // the Attach call ended
	endErr   error    // how it ended; nil: OK (both sides closed)

	// Outbound.
	out        [][]byte // bytes queued for sendLoop, in order
	queued     int64    // the outbound offset after the bytes queued
	written    int64    // the outbound bytes the daemon took
	wantEOF    bool     // CloseWrite was called
	eofSent    bool     // and its write_eof was sent
	sendFailed bool     // a Send failed: the call's error comes from Recv

	closed     bool
	readDL     time.Time
	writeDL    time.Time
	readTimer  *time.Timer
	writeTimer *time.Timer
}

// Open connects through the daemon, as net.Dial does, and returns the
// connection as a *Conn. network is "tcp" (also "tcp4", "tcp6") with
// address "host:port", or "unix" with a socket path.
func (c *Client) Open(ctx context.Context, network, address string) (*Conn, error) {
	r, err := c.open(ctx, network, address)
	if err != nil {
		return nil, err
	}
	kind := netKind(network)
	conn, err := c.attach(ctx, r.GetStreamId(), kind, parseAddr(kind, r.GetSockname()), parseAddr(kind, r.GetPeername()))
	if err != nil {
		c.abortQuietly(r.GetStreamId())
		return nil, fmt.Errorf("connect %s: %w", address, err)
	}
	return conn, nil
}

// OpenStream connects as Open does but leaves the stream in the daemon
// without attaching to it, for Relay, another program or a later Attach:
// it returns the stream's id.
func (c *Client) OpenStream(ctx context.Context, network, address string) (string, error) {
	r, err := c.open(ctx, network, address)
	if err != nil {
		return "", err
	}
	return r.GetStreamId(), nil
}

// Attach returns a *Conn over a stream that already exists (opened by
// OpenStream, another program it is shared with, ...). A Conn attached
// later to the same stream takes over from this one, which then fails with
// ErrAttachSuperseded.
func (c *Client) Attach(ctx context.Context, id string) (*Conn, error) {
	info, err := c.Stream(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", id, errors.Unwrap(err))
	}
	kind := "tcp"
	switch info.Kind {
	case "unix", "pair":
		kind = info.Kind
	}
	conn, err := c.attach(ctx, id, kind, parseAddr(kind, info.Local), parseAddr(kind, info.Peer))
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", id, err)
	}
	return conn, nil
}

// open runs the Open call.
func (c *Client) open(ctx context.Context, network, address string) (*smv1.OpenResponse, error) {
	req := &smv1.OpenRequest{}
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", address, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("connect %s: bad port %q", address, port)
		}
		if host == "" {
			host = "localhost"
		}
		req.Address = &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: host, Port: uint32(p)}}
	case "unix":
		req.Address = &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: address}}
	default:
		return nil, fmt.Errorf("connect %s: network %q: want tcp or unix", address, network)
	}
	r, err := c.api.Open(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", address, fromStatus(err))
	}
	return r, nil
}

// abortQuietly aborts a stream nobody will use, ignoring errors.
func (c *Client) abortQuietly(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, _ = c.api.Abort(ctx, &smv1.AbortRequest{StreamId: id})
}

// netKind is the network name a Conn reports.
func netKind(network string) string {
	if network == "unix" {
		return "unix"
	}
	return "tcp"
}

// attach starts the Attach call on stream id and waits, within ctx, for
// its first response.
func (c *Client) attach(ctx context.Context, id, network string, local, remote net.Addr) (*Conn, error) {
	callCtx, cancel := context.WithCancel(context.Background())
	stream, err := c.api.Attach(callCtx)
	if err != nil {
		cancel()
		return nil, fromStatus(err)
	}
	// A failed Send (io.EOF) leaves the call's status to Recv.
	_ = stream.Send(&smv1.AttachRequest{StreamId: id, Window: int64(c.cfg.window)})
	type first struct {
		resp *smv1.AttachResponse
		err  error
	}
	ch := make(chan first, 1)
	go func() {
		r, err := stream.Recv()
		ch <- first{r, err}
	}()
	var f first
	select {
	case f = <-ch:
	case <-ctx.Done():
		cancel()
		<-ch
		return nil, ctx.Err()
	}
	if f.err != nil {
		cancel()
		return nil, fromStatus(f.err)
	}
	conn := &Conn{
		client: c, id: id, network: network, local: local, remote: remote,
		linger: c.cfg.linger, writeWindow: int64(c.cfg.window / 2),
		stream: stream, cancel: cancel,
		recvDone: make(chan struct{}), sendDone: make(chan struct{}),
		inNext: f.resp.GetOffset(), consumed: f.resp.GetOffset(), acked: f.resp.GetOffset(),
		queued: f.resp.GetWritten(), written: f.resp.GetWritten(),
	}
	conn.cond = sync.NewCond(&conn.mu)
	go conn.recvLoop()
	go conn.sendLoop()
	return conn, nil
}

// recvLoop takes the daemon's responses: inbound bytes, EOF and how much
// of the outbound bytes it took.
func (c *Conn) recvLoop() {
	defer close(c.recvDone)
	var protoErr error
	for {
		resp, err := c.stream.Recv()
		c.mu.Lock()
		if err != nil {
			c.ended = true
			switch {
			case protoErr != nil:
				c.endErr = protoErr
			case err != io.EOF:
				c.endErr = fromStatus(err)
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.written = max(c.written, resp.GetWritten())
		if data := resp.GetData(); len(data) > 0 && protoErr == nil {
			if resp.GetOffset() != c.inNext {
				protoErr = fmt.Errorf("the daemon sent inbound offset %d, want %d", resp.GetOffset(), c.inNext)
				c.cancel()
			} else {
				c.inNext += int64(len(data))
				if c.closed {
					c.consumed = c.inNext
				} else {
					c.in = append(c.in, data)
				}
			}
		}
		if resp.GetEof() {
			c.eof = true
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// sendLoop sends the Attach messages: queued bytes, acknowledgements (on
// every message, and on their own when ackEvery bytes were read),
// write_eof, and at last the end of the client's side.
func (c *Conn) sendLoop() {
	defer close(c.sendDone)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.ended || c.sendFailed {
			return
		}
		msg := &smv1.AttachRequest{}
		send, final := false, false
		switch {
		case len(c.out) > 0:
			msg.Data = c.out[0]
			c.out[0] = nil
			c.out = c.out[1:]
			send = true
		case c.wantEOF && !c.eofSent:
			msg.WriteEof = true
			c.eofSent = true
			send = true
		case c.closed || (c.eofSent && c.eof):
			// Nothing more to send, and nothing more to acknowledge that
			// anyone will read: ending our side lets the call end.
			final = true
		case !c.eof && c.consumed-c.acked >= ackEvery:
			send = true
		default:
			c.cond.Wait()
			continue
		}
		if !c.eof && c.consumed > c.acked {
			ack := c.consumed
			msg.Ack = &ack
			c.acked = ack
			send = true
		}
		c.mu.Unlock()
		var err error
		if send {
			err = c.stream.Send(msg)
		}
		if err == nil && final {
			err = c.stream.CloseSend()
		}
		c.mu.Lock()
		if err != nil {
			c.sendFailed = true
			c.cond.Broadcast()
			return
		}
		if final {
			return
		}
	}
}

// ID is the daemon's handle of the stream.
func (c *Conn) ID() string { return c.id }

// LocalAddr is the daemon's end of the connection: a *net.TCPAddr or a
// *net.UnixAddr (with an empty name for an unnamed Unix client socket).
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Read reads inbound bytes as they come; io.EOF after the peer's EOF.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.closed {
			return 0, c.opErr("read", net.ErrClosed)
		}
		if len(c.in) > 0 {
			if len(p) == 0 {
				return 0, nil
			}
			n := 0
			for n < len(p) && len(c.in) > 0 {
				k := copy(p[n:], c.in[0])
				n += k
				if k == len(c.in[0]) {
					c.in[0] = nil
					c.in = c.in[1:]
				} else {
					c.in[0] = c.in[0][k:]
				}
			}
			c.consumed += int64(n)
			if c.consumed-c.acked >= ackEvery {
				c.cond.Broadcast()
			}
			return n, nil
		}
		if c.eof {
			return 0, io.EOF
		}
		if c.ended {
			if c.endErr != nil {
				return 0, c.opErr("read", c.endErr)
			}
			return 0, io.EOF
		}
		if past(c.readDL) {
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		if len(p) == 0 {
			return 0, nil
		}
		c.cond.Wait()
	}
}

// Write queues p for the daemon, waiting while half the window is sent
// and not yet taken.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for {
		switch {
		case c.closed:
			return n, c.opErr("write", net.ErrClosed)
		case c.wantEOF:
			return n, c.opErr("write", fmt.Errorf("write after CloseWrite: %w", ErrWriteAfterEOF))
		case c.ended && c.endErr != nil:
			return n, c.opErr("write", c.endErr)
		case c.ended:
			return n, c.opErr("write", io.ErrClosedPipe)
		case past(c.writeDL):
			return n, c.opErr("write", os.ErrDeadlineExceeded)
		case n == len(p):
			return n, nil
		}
		rest := len(p) - n
		room := c.writeWindow - (c.queued - c.written)
		if c.sendFailed || room < int64(min(rest, minChunk)) {
			c.cond.Wait()
			continue
		}
		k := int(min(int64(rest), room, maxMessage))
		if last := len(c.out) - 1; last >= 0 && len(c.out[last])+k <= maxMessage {
			c.out[last] = append(c.out[last], p[n:n+k]...)
		} else {
			c.out = append(c.out, append(make([]byte, 0, max(k, minChunk)), p[n:n+k]...))
		}
		c.queued += int64(k)
		n += k
		c.cond.Broadcast()
	}
}

// CloseWrite half-closes the connection (StreamWriter.write_eof()): the
// peer reads EOF after the bytes written before; reading goes on.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	if c.ended && c.endErr != nil {
		return c.opErr("close", c.endErr)
	}
	c.wantEOF = true
	c.cond.Broadcast()
	return nil
}

// Close closes the connection: pending Reads and Writes fail at once, the
// daemon gets the bytes already written (Close waits for that, discarding
// inbound bytes, until the linger time, WithLinger, or the write deadline
// passes, whichever comes first), then closes the stream as
// StreamWriter.close() does, sending what it holds before the FIN. A Conn
// that another one attached to the same stream took over from leaves the
// stream open.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	c.in = nil
	c.consumed = c.inNext
	stopTimer(c.readTimer)
	stopTimer(c.writeTimer)
	c.cond.Broadcast()
	lingerEnd := time.Now().Add(c.linger)
	if !c.writeDL.IsZero() && c.writeDL.Before(lingerEnd) {
		lingerEnd = c.writeDL
	}
	t := time.AfterFunc(time.Until(lingerEnd), c.wake)
	for !c.ended && c.written < c.queued && time.Now().Before(lingerEnd) {
		c.cond.Wait()
	}
	t.Stop()
	// A Conn another Conn took over from leaves the stream to it.
	superseded := c.ended && errors.Is(c.endErr, ErrAttachSuperseded)
	c.mu.Unlock()

	var err error
	if !superseded {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		_, err = c.client.api.Close(ctx, &smv1.CloseRequest{StreamId: c.id})
		cancel()
	}
	c.cancel()
	<-c.recvDone
	<-c.sendDone
	if err = fromStatus(err); err != nil && !errors.Is(err, ErrStreamNotFound) {
		return c.opErr("close", err)
	}
	return nil
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of pending and future Reads; the zero
// time means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opErr("set deadline", net.ErrClosed)
	}
	c.readDL = t
	c.readTimer = c.resetTimer(c.readTimer, t)
	c.cond.Broadcast()
	return nil
}

// SetWriteDeadline sets the deadline of pending and future Writes; the
// zero time means none. A Write that times out may have queued part of its
// bytes (the count it returns).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opErr("set deadline", net.ErrClosed)
	}
	c.writeDL = t
	c.writeTimer = c.resetTimer(c.writeTimer, t)
	c.cond.Broadcast()
	return nil
}

// resetTimer replaces tm with a timer that wakes the waiters at t.
func (c *Conn) resetTimer(tm *time.Timer, t time.Time) *time.Timer {
	stopTimer(tm)
	if t.IsZero() || !time.Now().Before(t) {
		return nil
	}
	return time.AfterFunc(time.Until(t), c.wake)
}

// wake wakes every waiter, to look at the clock.
func (c *Conn) wake() {
	c.mu.Lock()
	c.cond.Broadcast()
	c.mu.Unlock()
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// past reports whether the deadline dl is set and has passed.
func past(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// opErr wraps err as net.Conn implementations do.
func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.network, Source: c.local, Addr: c.remote, Err: err}
}

// addr is an address that is neither an IP address and port nor a Unix
// path (a host name, a pair's empty address).
type addr struct{ network, s string }

// Network returns the network name.
func (a addr) Network() string { return a.network }

// String returns the address as the daemon reported it.
func (a addr) String() string { return a.s }

// parseAddr turns an address the daemon reports into a net.Addr.
func parseAddr(network, s string) net.Addr {
	switch network {
	case "unix":
		return &net.UnixAddr{Name: s, Net: "unix"}
	case "tcp":
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return net.TCPAddrFromAddrPort(ap)
		}
	}
	return addr{network: network, s: s}
}

var _ net.Conn = (*Conn)(nil)
