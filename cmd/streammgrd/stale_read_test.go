package main_test

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// TestStaleReadAfterReconnect: a read whose connection died on the
// client's side only, so that the daemon gets its request after the
// client's retry on a new connection has succeeded, must not strand the
// client. The stale read carries the same explicit offset as its retry, so
// it moves the stream back; the client's next read, at the offset it was
// given, must still succeed (not OUT_OF_RANGE OFFSET_AHEAD). The soak
// test's "kills" subtest found this interleaving.
//
// The interleaving, made deterministic with a proxy that holds what the
// client sends:
//
//  1. the peer sends "hello\nworld\n"; the daemon buffers it;
//  2. on connection A, Read(n=1, offset=0) is sent, and held by the proxy;
//  3. connection A is reset on the client's side (its daemon side stays
//     open) and the Read fails UNAVAILABLE;
//  4. on connection B, the retry ReadLine(offset=0) returns "hello\n",
//     next_offset 6;
//  5. the proxy delivers the held Read to the daemon over A's daemon side;
//  6. on B, ReadLine(offset=6) must return "world\n", next_offset 12.
func TestStaleReadAfterReconnect(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, false, "--log-level=debug") // the call log tells when the Read has ended
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	gp := startGateProxy(t, d.sock)
	dial := func(target string) smv1.StreamServiceClient {
		cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return smv1.NewStreamServiceClient(cc)
	}
	viaA := dial("passthrough:///" + gp.ln.Addr().String()) // through the proxy
	viaB := dial("unix://" + d.sock)                        // the connection re-dialled

	p := newPeer(t)
	o, err := viaB.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: uint32(p.port())}}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	writePeer(t, p.accept(t), "hello\nworld\n")
	eventually(t, 10*time.Second, "the daemon to buffer 12 bytes", func() bool {
		resp, err := viaB.ListStreams(ctx, &smv1.ListStreamsRequest{})
		return err == nil && len(resp.Streams) == 1 && resp.Streams[0].Buffered == 12
	})
	if _, err := viaA.ListStreams(ctx, &smv1.ListStreamsRequest{}); err != nil {
		t.Fatalf("ListStreams through the proxy: %v", err) // connection A is up
	}

	// 2, 3: the Read is held, then A is reset on the client's side.
	gp.hold()
	stale := make(chan error, 1)
	go func() {
		_, err := viaA.Read(ctx, &smv1.ReadRequest{StreamId: o.StreamId, N: ptr(int64(1)), Offset: ptr(int64(0))})
		stale <- err
	}()
	eventually(t, 10*time.Second, "the Read request to reach the proxy", gp.heldRequest)
	gp.resetClientSide()
	if err := <-stale; status.Code(err) == 0 {
		t.Fatalf("the Read on the reset connection succeeded")
	}

	// 4: the retry, on B.
	l1, err := viaB.ReadLine(ctx, &smv1.ReadLineRequest{StreamId: o.StreamId, Offset: ptr(int64(0))})
	if err != nil || string(l1.Data) != "hello\n" || l1.NextOffset != 6 {
		t.Fatalf("ReadLine(offset=0) on the new connection = %q next_offset %d, %v; want \"hello\\n\", 6", l1.GetData(), l1.GetNextOffset(), err)
	}

	// 5: the daemon gets the stale Read, and answers it into the void.
	gp.release()
	eventually(t, 10*time.Second, "the daemon to finish the stale Read", func() bool {
		return strings.Contains(d.stderr.String(), "grpc.method=Read ")
	})

	// 6: the client goes on from the offset it was given.
	l2, err := viaB.ReadLine(ctx, &smv1.ReadLineRequest{StreamId: o.StreamId, Offset: ptr(int64(6))})
	if err != nil || string(l2.Data) != "world\n" || l2.NextOffset != 12 {
		t.Fatalf("ReadLine(offset=6) after a stale Read(n=1, offset=0) reached the daemon = %q next_offset %d, %v; want \"world\\n\", 12", l2.GetData(), l2.GetNextOffset(), err)
	}
}

// gateProxy forwards one loopback TCP connection at a time to the
// daemon's Unix socket; on hold it keeps what the client sends instead of
// forwarding it, until release.
type gateProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	c, u    net.Conn   // client side, daemon side of the latest connection
	all     []net.Conn // every side of every connection, closed at the end
	holding bool
	held    []byte
	wg      sync.WaitGroup
}

func startGateProxy(t *testing.T, sock string) *gateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gateProxy{ln: ln, target: sock}
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", sock)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.c, g.u = c, u
			g.all = append(g.all, c, u)
			g.mu.Unlock()
			g.wg.Go(func() { g.up(c, u) })
			g.wg.Go(func() { _, _ = copyUntilError(c, u) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		for _, c := range g.all {
			c.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

// up forwards what the client sends, or keeps it while holding.
func (g *gateProxy) up(c, u net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		g.mu.Lock()
		if g.holding {
			g.held = append(g.held, buf[:n]...)
		} else if _, werr := u.Write(buf[:n]); werr != nil {
			err = werr
		}
		g.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func copyUntilError(dst, src net.Conn) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err != nil {
			return total, err
		}
	}
}

func (g *gateProxy) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holding = true
}

// heldRequest reports whether the held bytes hold a whole unary request:
// HTTP/2 frames ending with a DATA frame that has END_STREAM.
func (g *gateProxy) heldRequest() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for b := g.held; len(b) >= 9; {
		n := int(binary.BigEndian.Uint32(append([]byte{0}, b[:3]...)))
		typ, flags := b[3], b[4]
		if len(b) < 9+n {
			return false
		}
		if typ == 0 && flags&1 != 0 { // DATA, END_STREAM
			return true
		}
		b = b[9+n:]
	}
	return false
}

// resetClientSide resets the client's side of the connection; the
// daemon's side stays open.
func (g *gateProxy) resetClientSide() {
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = g.c.(*net.TCPConn).SetLinger(0)
	g.c.Close()
}

// release delivers the held bytes to the daemon.
func (g *gateProxy) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holding = false
	_, _ = g.u.Write(g.held)
	g.held = nil
}
