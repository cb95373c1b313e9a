package streamcore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/streammgr/streammgr/streamcore/streamtest"
)

// A handler that panics is reported and its connection closed, as asyncio
// reports an unhandled exception in client_connected_cb; the server goes on
// serving.
func TestHandlerPanicClosesConnection(t *testing.T) {
	var logs streamtest.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	srv, err := StartServer(ctx, func(r *Reader, w *Writer) {
		line, err := r.ReadLine(ctx)
		if err == nil && string(line) == "boom\n" {
			panic("handler exploded")
		}
		_ = w.Write(line)
		w.Close()
	}, "127.0.0.1", 0, &ServerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Close(); _ = srv.WaitClosed(ctx) }()
	addr := srv.Sockets()[0].String()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("boom\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("peer of the panicking handler read %v, want the connection closed", err)
	}
	if out := logs.String(); !strings.Contains(out, "panic in connection handler") || !strings.Contains(out, "handler exploded") {
		t.Fatalf("log:\n%s", out)
	}

	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write([]byte("still serving\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c2)
	if err != nil || string(got) != "still serving\n" {
		t.Fatalf("second client got %q, %v", got, err)
	}
}
