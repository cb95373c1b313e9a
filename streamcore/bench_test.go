package streamcore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
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

// BenchmarkLargeLimit reads 64 MiB through a stream with a large limit,
// cycling through read(1 MiB), readexactly(256 KiB) and readuntil over
// records of 512 KiB. "eager" reads as fast as it can; "lagging" is a
// reader slower than its peer, which starts each read only once the
// buffer holds 2*limit bytes and reading has paused; "bufio" does the
// eager reads over a bufio.Reader of the limit's size.
func BenchmarkLargeLimit(b *testing.B) {
	const total = 64 << 20
	record := append(bytes.Repeat([]byte("x"), 512<<10-2), '\r', '\n')
	sep := []byte("\r\n")
	// run reads total bytes with read, which does step i of the cycle.
	run := func(b *testing.B, read func(i int) ([]byte, error)) {
		for i, got := 0, 0; got < total; i++ {
			data, err := read(i % 3)
			if len(data) == 0 || (err != nil && !(errors.Is(err, io.EOF) && got+len(data) == total)) {
				b.Fatalf("after %d bytes: got %d bytes, %v", got, len(data), err)
			}
			got += len(data)
		}
	}
	stream := func(b *testing.B, limit int, lag bool) {
		ctx := context.Background()
		b.SetBytes(total)
		b.ReportAllocs()
		for range b.N {
			in, out := rawPair(b)
			r, w, err := NewStream(in, &Options{Limit: limit})
			if err != nil {
				b.Fatal(err)
			}
			done := feeder(b, out, record, total)
			run(b, func(i int) ([]byte, error) {
				for lag && r.IsReading() {
					time.Sleep(20 * time.Microsecond)
				}
				var data []byte
				switch i {
				case 0:
					data, err = r.Read(ctx, 1<<20)
				case 1:
					data, err = r.ReadExactly(ctx, 256<<10)
				default:
					data, err = r.ReadUntil(ctx, sep)
				}
				if ie, ok := err.(*IncompleteReadError); ok {
					return ie.Partial, io.EOF
				}
				return data, err
			})
			<-done
			stopStream(w)
		}
	}
	for _, limit := range []int{1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("limit=%dMiB", limit>>20), func(b *testing.B) {
			b.Run("eager", func(b *testing.B) { stream(b, limit, false) })
			b.Run("lagging", func(b *testing.B) { stream(b, limit, true) })
			b.Run("bufio", func(b *testing.B) {
				b.SetBytes(total)
				b.ReportAllocs()
				for range b.N {
					in, out := rawPair(b)
					br := bufio.NewReaderSize(in, limit)
					done := feeder(b, out, record, total)
					run(b, func(i int) ([]byte, error) {
						switch i {
						case 0:
							buf := make([]byte, 1<<20)
							n, err := br.Read(buf)
							return buf[:n], err
						case 1:
							buf := make([]byte, 256<<10)
							n, err := io.ReadFull(br, buf)
							if err == io.ErrUnexpectedEOF {
								err = io.EOF
							}
							return buf[:n], err
						default:
							// A line ends at each record's "\r\n".
							return br.ReadBytes('\n')
						}
					})
					<-done
					in.Close()
				}
			})
		})
	}
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
