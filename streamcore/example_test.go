package streamcore_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/streammgr/streammgr/streamcore"
)

// ExampleOpenConnection is a TCP echo client: it writes a line and reads the
// echo back, as asyncio's open_connection would.
func ExampleOpenConnection() {
	// Something to talk to: a plain echo server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()

	ctx := context.Background()
	port := ln.Addr().(*net.TCPAddr).Port
	r, w, err := streamcore.OpenConnection(ctx, "127.0.0.1", port, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := w.Write([]byte("hello, world\n")); err != nil {
		fmt.Println(err)
		return
	}
	line, err := r.ReadLine(ctx)
	fmt.Printf("%q %v\n", line, err)
	w.Close()
	fmt.Println(w.WaitClosed(ctx))
	// Output:
	// "hello, world\n" <nil>
	// <nil>
}

// ExampleStartServer is an echo server: each accepted connection gets its
// own reader and writer, and the handler echoes lines until EOF.
func ExampleStartServer() {
	ctx := context.Background()
	echo := func(r *streamcore.Reader, w *streamcore.Writer) {
		defer w.Close()
		for {
			line, err := r.ReadLine(ctx)
			if err != nil || len(line) == 0 {
				return // error or EOF
			}
			if err := w.Write(line); err != nil {
				return
			}
			if err := w.Drain(ctx); err != nil {
				return
			}
		}
	}
	srv, err := streamcore.StartServer(ctx, echo, "127.0.0.1", 0, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	port := srv.Sockets()[0].(*net.TCPAddr).Port

	r, w, err := streamcore.OpenConnection(ctx, "127.0.0.1", port, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = w.WriteLines([]byte("one\n"), []byte("two\n"))
	for range 2 {
		line, _ := r.ReadLine(ctx)
		fmt.Printf("%q\n", line)
	}
	_ = w.WriteEOF() // the handler sees EOF and closes its end
	rest, err := r.Read(ctx, -1)
	fmt.Printf("%q %v\n", rest, err)
	w.Close()

	srv.Close()                      // stop listening; clients keep working
	fmt.Println(srv.WaitClosed(ctx)) // returns once every client is gone
	// Output:
	// "one\n"
	// "two\n"
	// "" <nil>
	// <nil>
}

// ExampleReader_ReadUntil reads up to a separator, and with several
// separators up to whichever ends first.
func ExampleReader_ReadUntil() {
	ctx := context.Background()
	r, w, _, peerW, err := streamcore.SocketPair(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	defer peerW.Close()

	_ = peerW.Write([]byte("HEAD / HTTP/1.0\r\nHost: example\r\n\r\nkey=value;next\n"))
	head, _ := r.ReadUntil(ctx, []byte("\r\n\r\n"))
	fmt.Printf("%q\n", head)
	field, _ := r.ReadUntil(ctx, []byte(";"), []byte("\n"))
	fmt.Printf("%q\n", field)
	field, _ = r.ReadUntil(ctx, []byte(";"), []byte("\n"))
	fmt.Printf("%q\n", field)
	// Output:
	// "HEAD / HTTP/1.0\r\nHost: example\r\n\r\n"
	// "key=value;"
	// "next\n"
}
