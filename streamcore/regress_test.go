package streamcore

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// StartTLS with a context that has already ended leaves the stream as it
// was: the reader and writer come back, nothing is lost.
func TestStartTLSEndedContextKeepsStream(t *testing.T) {
	for i := range 200 {
		r1, w1, r2, w2, err := SocketPair(nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := w1.StartTLS(ctx, &tls.Config{InsecureSkipVerify: true}, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("StartTLS(ended ctx) = %v, want context.Canceled", err)
		}
		if err := w2.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), failAfter)
		line, err := r1.ReadLine(rctx)
		if err != nil || string(line) != "ping\n" {
			t.Fatalf("iteration %d: ReadLine after the refused StartTLS = %q, %v", i, line, err)
		}
		if err := w1.Write([]byte("pong\n")); err != nil {
			t.Fatalf("iteration %d: Write after the refused StartTLS: %v", i, err)
		}
		if line, err := r2.ReadLine(rctx); err != nil || string(line) != "pong\n" {
			t.Fatalf("iteration %d: peer ReadLine = %q, %v", i, line, err)
		}
		rcancel()
		w1.Abort()
		w2.Abort()
	}
}

// A cancelled StartTLS handshake loses the connection with an error of its
// own, not the caller's context error.
func TestStartTLSInterruptedHandshakeError(t *testing.T) {
	r1, w1, _, w2, err := SocketPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Abort()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// The peer never answers the ClientHello.
	err = w1.StartTLS(ctx, &tls.Config{InsecureSkipVerify: true}, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("StartTLS = %v, want the call's deadline", err)
	}
	stored := r1.Exception()
	if stored == nil || errors.Is(stored, context.DeadlineExceeded) || errors.Is(stored, context.Canceled) {
		t.Fatalf("stored error = %v, want a connection error that is not the caller's context", stored)
	}
	if _, err := r1.Read(context.Background(), 1); !errors.Is(err, stored) {
		t.Fatalf("Read = %v, want the stored %v", err, stored)
	}
}

// Unread while a readline waits: the waiting scan starts over, so the line
// boundary comes from the bytes put back.
func TestUnreadWhileReadLineWaits(t *testing.T) {
	r1, w1, _, w2, err := SocketPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Abort()
	defer w2.Abort()
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	if err := w2.Write([]byte("a\nbcdef")); err != nil {
		t.Fatal(err)
	}
	for r1.Buffered() < 7 {
		time.Sleep(time.Millisecond)
	}
	got, err := r1.Read(ctx, 3) // "a\nb"
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan string, 1)
	go func() {
		line, err := r1.ReadLine(ctx) // waits: "cdef" holds no newline
		if err != nil {
			res <- err.Error()
			return
		}
		res <- string(line)
	}()
	for !r1.t.isWaiting() {
		time.Sleep(time.Millisecond)
	}
	r1.Unread(got)
	select {
	case line := <-res:
		if line != "a\n" {
			t.Fatalf("ReadLine = %q, want %q", line, "a\n")
		}
	case <-ctx.Done():
		t.Fatal("ReadLine never saw the newline put back")
	}
	if rest, err := r1.Read(ctx, 100); err != nil || string(rest) != "bcdef" {
		t.Fatalf("rest = %q, %v", rest, err)
	}
}

func (t *transport) isWaiting() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waiting
}

// A TLS server closes connections beyond MaxHandshakes at once instead of
// holding a goroutine and a descriptor for each silent peer.
func TestTLSServerCapsHandshakes(t *testing.T) {
	pki := getPKI(t)
	const limit, clients = 4, 20
	srv, err := StartServer(context.Background(), func(r *Reader, w *Writer) { w.Abort() }, "127.0.0.1", 0,
		&ServerOptions{TLS: pki.serverConfig(), MaxHandshakes: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Close(); _ = srv.WaitClosed(context.Background()) }()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range clients {
		c, err := net.Dial("tcp", srv.Sockets()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	closed := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
			closed++
		}
	}
	if closed != clients-limit || srv.Rejected() != clients-limit {
		t.Fatalf("%d of %d silent clients were closed (Rejected %d), want %d (limit %d)", closed, clients, srv.Rejected(), clients-limit, limit)
	}
}
