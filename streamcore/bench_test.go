package streamcore

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// rawPair returns a connected pair of Unix stream sockets as net.Conns.
func rawPair(b *testing.B) (net.Conn, net.Conn) {
	b.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	return conns[0], conns[1]
}

// feeder writes total bytes of the repeated pattern to c, then closes it.
func feeder(b *testing.B, c net.Conn, pattern []byte, total int) <-chan struct{} {
	done := make(chan struct{})
	block := bytes.Repeat(pattern, max(1, (64<<10)/len(pattern)))
	go func() {
		defer close(done)
		defer c.Close()
		for total > 0 {
			n := min(total, len(block))
			if _, err := c.Write(block[:n]); err != nil {
				b.Errorf("feed: %v", err)
				return
			}
			total -= n
		}
	}()
	return done
}

// benchRead runs op b.N times over a stream fed with pattern, against
// streamcore ("streamcore") and against a bufio.Reader on the same kind of
// socket ("bufio"). Each op consumes one record of len(pattern) bytes.
func benchRead(b *testing.B, pattern []byte, stream func(ctx context.Context, r *Reader) ([]byte, error), buffered func(br *bufio.Reader) ([]byte, error)) {
	b.Run("streamcore", func(b *testing.B) {
		in, out := rawPair(b)
		r, w, err := NewStream(in, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer stopStream(w)
		done := feeder(b, out, pattern, b.N*len(pattern))
		ctx := context.Background()
		b.SetBytes(int64(len(pattern)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if rec, err := stream(ctx, r); err != nil || len(rec) != len(pattern) {
				b.Fatalf("got %d bytes, %v", len(rec), err)
			}
		}
		b.StopTimer()
		<-done
	})
	b.Run("bufio", func(b *testing.B) {
		in, out := rawPair(b)
		defer in.Close()
		br := bufio.NewReaderSize(in, 64<<10)
		done := feeder(b, out, pattern, b.N*len(pattern))
		b.SetBytes(int64(len(pattern)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if rec, err := buffered(br); err != nil || len(rec) != len(pattern) {
				b.Fatalf("got %d bytes, %v", len(rec), err)
			}
		}
		b.StopTimer()
		<-done
	})
}

func BenchmarkReadLine(b *testing.B) {
	line := append(bytes.Repeat([]byte("x"), 79), '\n')
	benchRead(b, line,
		func(ctx context.Context, r *Reader) ([]byte, error) { return r.ReadLine(ctx) },
		func(br *bufio.Reader) ([]byte, error) { return br.ReadBytes('\n') })
}

func BenchmarkReadUntil(b *testing.B) {
	// An HTTP-like header block ending in a multi-byte separator.
	rec := []byte("GET /index.html HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\nUser-Agent: bench\r\n\r\n")
	sep := []byte("\r\n\r\n")
	benchRead(b, rec,
		func(ctx context.Context, r *Reader) ([]byte, error) { return r.ReadUntil(ctx, sep) },
		func(br *bufio.Reader) ([]byte, error) {
			// bufio has no multi-byte separator: collect lines up to the
			// empty one.
			var out []byte
			for {
				line, err := br.ReadSlice('\n')
				out = append(out, line...)
				if err != nil || bytes.Equal(line, []byte("\r\n")) {
					return out, err
				}
			}
		})
}

func BenchmarkReadExactly(b *testing.B) {
	rec := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	benchRead(b, rec,
		func(ctx context.Context, r *Reader) ([]byte, error) { return r.ReadExactly(ctx, len(rec)) },
		func(br *bufio.Reader) ([]byte, error) {
			buf := make([]byte, len(rec))
			_, err := io.ReadFull(br, buf)
			return buf, err
		})
}

// BenchmarkEcho measures round trips of 64 KiB blocks through a streamcore
// echo server and through a bare net.Conn echo (io.Copy), with the same raw
// TCP client.
func BenchmarkEcho(b *testing.B) {
	block := bytes.Repeat([]byte("echo"), (64<<10)/4)
	run := func(b *testing.B, addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, len(block))
		b.SetBytes(int64(len(block)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(block); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
	}
	b.Run("streamcore", func(b *testing.B) {
		ctx := context.Background()
		s, err := StartServer(ctx, func(r *Reader, w *Writer) {
			defer w.Close()
			for {
				data, err := r.Read(ctx, 64<<10)
				if err != nil || len(data) == 0 {
					return
				}
				if w.Write(data) != nil || w.Drain(ctx) != nil {
					return
				}
			}
		}, "127.0.0.1", 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			s.Close()
			s.AbortClients()
			_ = s.WaitClosed(ctx)
		}()
		run(b, s.Sockets()[0].String())
	})
	b.Run("net.Conn", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
		run(b, ln.Addr().String())
		ln.Close()
		<-done
	})
}
