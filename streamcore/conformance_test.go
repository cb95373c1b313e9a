package streamcore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failAfter bounds every wait in these tests. It is a failure bound for a
// loaded machine, never an assertion about speed.
const failAfter = 15 * time.Second

// testCtx returns a context that ends after failAfter.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	t.Cleanup(cancel)
	return ctx
}

// cancelledCtx returns a context that has already ended: a read given it
// fails at the point where it would have to wait.
func cancelledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// waitUntil polls cond until it holds, failing the test after failAfter.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// asErr asserts that err is (or wraps) a T and returns it.
func asErr[T error](t testing.TB, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("got error %v (%T), want %T", err, err, target)
	}
	return target
}

func wantBytes(t testing.TB, what string, got []byte, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: got error %v, want %q", what, err, want)
	}
	if string(got) != want {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func wantBuffered(t testing.TB, r *Reader, want string) {
	t.Helper()
	r.t.mu.Lock()
	got := string(r.t.buf.bytes())
	r.t.mu.Unlock()
	if got != want {
		t.Fatalf("buffer: got %q, want %q", got, want)
	}
}

func wantConnErr(t testing.TB, what string, err error, errno syscall.Errno) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Fatalf("%s: got %v, want %v", what, err, errno)
	}
}

// waitForWaiter waits until a read on r is blocked waiting for data.
func waitForWaiter(t testing.TB, r *Reader) {
	t.Helper()
	waitUntil(t, "a read is waiting", func() bool {
		r.t.mu.Lock()
		defer r.t.mu.Unlock()
		return r.t.waiting
	})
}

// eofReceived reports whether the peer's EOF reached the reader.
func eofReceived(r *Reader) bool {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.eof
}

// paused reports whether the reader stopped pulling from the socket.
func paused(r *Reader) bool {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.t.paused
}

// stopStream aborts a stream and waits until its goroutines are gone.
func stopStream(w *Writer) {
	w.Abort()
	<-w.Done()
	w.t.mu.Lock()
	re, we := w.t.readerEndLocked(), w.t.writerEndLocked()
	w.t.mu.Unlock()
	<-re
	<-we
}

// result is the outcome of a read run in a goroutine.
type result struct {
	data []byte
	err  error
}

func goRead(f func() ([]byte, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		d, err := f()
		ch <- result{d, err}
	}()
	return ch
}

func recv(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(failAfter):
		t.Fatal("timed out waiting for a read to finish")
	}
	return result{}
}

// env is one stream under test and the raw socket at the other end.
type env struct {
	t    testing.TB
	kind string
	r    *Reader
	w    *Writer
	peer net.Conn
	sent int64 // bytes the peer sent
}

// send writes each chunk from the peer, pausing briefly between chunks so
// they tend to arrive as separate reads.
func (e *env) send(chunks ...string) {
	for i, c := range chunks {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if _, err := e.peer.Write([]byte(c)); err != nil {
			e.t.Errorf("peer write: %v", err)
			return
		}
		e.sent += int64(len(c))
	}
}

// sendSync sends the chunks and waits until the reader has received them.
func (e *env) sendSync(chunks ...string) {
	e.t.Helper()
	e.send(chunks...)
	e.synced()
}

// synced waits until every byte the peer sent is in the reader's buffer.
func (e *env) synced() {
	e.t.Helper()
	want := e.sent
	waitUntil(e.t, fmt.Sprintf("the reader received %d bytes", want), func() bool {
		return e.r.t.nreceived.Load() >= want
	})
}

// fin half-closes the peer (shutdown(SHUT_WR)).
func (e *env) fin() {
	if err := e.peer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		e.t.Fatalf("peer CloseWrite: %v", err)
	}
}

// rst makes the peer vanish abortively: TCP sends an RST (SO_LINGER 0);
// a Unix socket closed with unread data resets its peer the same way.
func (e *env) rst() {
	switch c := e.peer.(type) {
	case *net.TCPConn:
		_ = c.SetLinger(0)
	case *tls.Conn:
		// Reset the TCP connection beneath, with no close_notify.
		_ = c.NetConn().(*net.TCPConn).SetLinger(0)
		_ = c.NetConn().Close()
		return
	case *net.UnixConn:
		if err := e.w.Write([]byte("unread")); err != nil {
			e.t.Fatalf("write: %v", err)
		}
		waitUntil(e.t, "the peer has unread data", func() bool { return e.w.BufferSize() == 0 })
	}
	_ = e.peer.Close()
}

// peerReadAll reads from the peer until EOF or an error.
func (e *env) peerReadAll() ([]byte, error) {
	_ = e.peer.SetReadDeadline(time.Now().Add(failAfter))
	return io.ReadAll(e.peer)
}

func openTCP(t testing.TB, opts *Options) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	r, w, err := OpenConnection(testCtx(t), "127.0.0.1", port, &DialOptions{Options: *opts})
	peer := <-accepted
	if err != nil {
		t.Fatalf("OpenConnection: %v", err)
	}
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		stopStream(w)
		peer.Close()
	})
	return &env{t: t, kind: "tcp", r: r, w: w, peer: peer}
}

// shortTempDir returns a directory whose paths fit in a sun_path.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// openTLS is a TLS client stream whose peer is a raw crypto/tls server.
func openTLS(t testing.TB, opts *Options) *env {
	t.Helper()
	p := getPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		tc := tls.Server(c, p.serverConfig())
		_ = tc.SetDeadline(time.Now().Add(failAfter))
		if err := tc.Handshake(); err != nil {
			c.Close()
			accepted <- nil
			return
		}
		_ = tc.SetDeadline(time.Time{})
		accepted <- tc
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	r, w, err := OpenConnection(testCtx(t), "127.0.0.1", port, &DialOptions{Options: *opts, TLS: p.clientConfig()})
	peer := <-accepted
	if err != nil {
		t.Fatalf("OpenConnection: %v", err)
	}
	if peer == nil {
		t.Fatal("accept or handshake failed")
	}
	t.Cleanup(func() {
		stopStream(w)
		peer.Close()
	})
	return &env{t: t, kind: "tls", r: r, w: w, peer: peer}
}

func openUnix(t testing.TB, opts *Options) *env {
	t.Helper()
	path := filepath.Join(shortTempDir(t), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	r, w, err := OpenUnixConnection(testCtx(t), path, &DialOptions{Options: *opts})
	peer := <-accepted
	if err != nil {
		t.Fatalf("OpenUnixConnection: %v", err)
	}
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		stopStream(w)
		peer.Close()
	})
	return &env{t: t, kind: "unix", r: r, w: w, peer: peer}
}

var streamKinds = []struct {
	name string
	open func(testing.TB, *Options) *env
}{
	{"tcp", openTCP},
	{"unix", openUnix},
}

// scenario is one row of the conformance table. Every row runs over
// loopback TCP and over a Unix socket, against a raw socket peer.
type scenario struct {
	name string
	opts Options
	// plainOnly rows depend on what TLS does differently: a peer's EOF
	// closes the whole TLS transport, WriteEOF is unsupported, writes are
	// never sent inline and the water marks are 512/128 KiB.
	plainOnly bool
	run       func(t *testing.T, e *env)
}

func TestConformance(t *testing.T) {
	kinds := append(streamKinds[:len(streamKinds):len(streamKinds)], struct {
		name string
		open func(testing.TB, *Options) *env
	}{"tls", openTLS})
	for _, sc := range conformance {
		for _, k := range kinds {
			if sc.plainOnly && k.name == "tls" {
				continue
			}
			t.Run(sc.name+"/"+k.name, func(t *testing.T) {
				t.Parallel()
				sc.run(t, k.open(t, &sc.opts))
			})
		}
	}
}

var conformance = []scenario{
	// ---- read(n) ----
	{name: "read/zero returns at once and consumes nothing", run: func(t *testing.T, e *env) {
		got, err := e.r.Read(cancelledCtx(), 0)
		wantBytes(t, "read(0) on empty", got, err, "")
		e.sendSync("abc")
		got, err = e.r.Read(cancelledCtx(), 0)
		wantBytes(t, "read(0)", got, err, "")
		wantBuffered(t, e.r, "abc")
	}},
	{name: "read/waits for data then takes what fits", run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.Read(testCtx(t), 100) })
		waitForWaiter(t, e.r)
		e.send("chunk1 ")
		res := recv(t, ch)
		wantBytes(t, "read(100)", res.data, res.err, "chunk1 ")
	}},
	{name: "read/partial result does not wait for n", run: func(t *testing.T, e *env) {
		e.sendSync("abc")
		got, err := e.r.Read(testCtx(t), 100)
		wantBytes(t, "read(100)", got, err, "abc")
	}},
	{name: "read/n across chunk boundaries leaves the rest", run: func(t *testing.T, e *env) {
		e.sendSync("li", "ne1\nli", "ne2\n")
		got, err := e.r.Read(testCtx(t), 5)
		wantBytes(t, "read(5)", got, err, "line1")
		wantBuffered(t, e.r, "\nline2\n")
	}},
	{name: "read/not capped by limit", opts: Options{Limit: 3}, run: func(t *testing.T, e *env) {
		e.sendSync("chunk")
		got, err := e.r.Read(testCtx(t), 5)
		wantBytes(t, "read(5) with limit 3", got, err, "chunk")
	}},
	{name: "read/pending read returns empty at EOF", run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.Read(testCtx(t), 1024) })
		waitForWaiter(t, e.r)
		e.fin()
		res := recv(t, ch)
		wantBytes(t, "read at EOF", res.data, res.err, "")
		if !e.r.AtEOF() {
			t.Fatal("AtEOF false after EOF with empty buffer")
		}
	}},
	{name: "read/-1 concatenates every chunk until EOF", opts: Options{Limit: 3}, run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.Read(testCtx(t), -1) })
		e.send("chunk1\n", "chunk2")
		big := strings.Repeat("x", 1<<20) // far beyond 2*limit: pauses and resumes
		e.send(big)
		e.fin()
		res := recv(t, ch)
		wantBytes(t, "read(-1)", res.data, res.err, "chunk1\nchunk2"+big)
		got, err := e.r.Read(testCtx(t), -7)
		wantBytes(t, "read(-7) at EOF", got, err, "")
	}},

	// ---- readline ----
	{name: "readline/joins chunks and keeps the rest", run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.ReadLine(testCtx(t)) })
		waitForWaiter(t, e.r)
		e.send("chunk1 ", "chunk2 ", "chunk3 \n chunk4")
		res := recv(t, ch)
		wantBytes(t, "readline", res.data, res.err, "chunk1 chunk2 chunk3 \n")
		e.synced()
		wantBuffered(t, e.r, " chunk4")
	}},
	{name: "readline/CRLF kept and lone CR does not end a line", run: func(t *testing.T, e *env) {
		e.sendSync("a\rb\r\nc\n")
		got, err := e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline", got, err, "a\rb\r\n")
		got, err = e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline", got, err, "c\n")
	}},
	{name: "readline/buffered lines without waiting", run: func(t *testing.T, e *env) {
		e.sendSync("line1\nline2\nline3\n")
		for _, want := range []string{"line1\n", "line2\n", "line3\n"} {
			got, err := e.r.ReadLine(cancelledCtx())
			wantBytes(t, "readline", got, err, want)
		}
	}},
	{name: "readline/EOF returns partial then empty", run: func(t *testing.T, e *env) {
		e.send("some data")
		e.fin()
		got, err := e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline at EOF", got, err, "some data")
		got, err = e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline at EOF, empty", got, err, "")
	}},
	{name: "readline/then read(n) continues at the right place", run: func(t *testing.T, e *env) {
		e.sendSync("line1\nline2\nline3\n")
		got, err := e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline", got, err, "line1\n")
		got, err = e.r.Read(testCtx(t), 7)
		wantBytes(t, "read(7)", got, err, "line2\nl")
		wantBuffered(t, e.r, "ine3\n")
	}},
	{name: "readline/over limit found drops the line and its newline", opts: Options{Limit: 3}, run: func(t *testing.T, e *env) {
		e.sendSync("li", "ne1\nline2\n")
		_, err := e.r.ReadLine(testCtx(t))
		le := asErr[*LineTooLongError](t, err)
		if err.Error() != "Separator is found, but chunk is longer than limit" || le.Consumed != 5 || !le.Found {
			t.Fatalf("got %v %+v", err, le)
		}
		wantBuffered(t, e.r, "line2\n")
	}},
	{name: "readline/over limit not found clears the buffer", opts: Options{Limit: 3}, run: func(t *testing.T, e *env) {
		e.sendSync("li", "ne1", "li")
		_, err := e.r.ReadLine(testCtx(t))
		le := asErr[*LineTooLongError](t, err)
		if err.Error() != "Separator is not found, and chunk exceed the limit" || le.Found {
			t.Fatalf("got %v %+v", err, le)
		}
		wantBuffered(t, e.r, "")
	}},
	{name: "readline/L6 tail of an over-long line reads as a fresh line", opts: Options{Limit: 4}, run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.ReadLine(testCtx(t)) })
		waitForWaiter(t, e.r)
		e.sendSync("0123456789")
		res := recv(t, ch)
		le := asErr[*LineTooLongError](t, res.err)
		if le.Found || le.Consumed != 10 {
			t.Fatalf("got %+v, want not found, consumed 10", le)
		}
		wantBuffered(t, e.r, "")
		e.send("abc\nnext\n")
		got, err := e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline after overrun", got, err, "abc\n")
		got, err = e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline", got, err, "next\n")
	}},
	{name: "readline/limit is strict: exactly limit is fine", opts: Options{Limit: 7}, run: func(t *testing.T, e *env) {
		e.sendSync("1234567\n12345678\n")
		got, err := e.r.ReadLine(testCtx(t))
		wantBytes(t, "7-byte line", got, err, "1234567\n")
		_, err = e.r.ReadLine(testCtx(t))
		if le := asErr[*LineTooLongError](t, err); !le.Found || le.Consumed != 8 {
			t.Fatalf("8-byte line: got %+v", le)
		}
		wantBuffered(t, e.r, "")
		e.sendSync("12345678")
		_, err = e.r.ReadLine(testCtx(t))
		if le := asErr[*LineTooLongError](t, err); le.Found || le.Consumed != 8 {
			t.Fatalf("unterminated 8 bytes: got %+v", le)
		}
		wantBuffered(t, e.r, "")
	}},

	// ---- readuntil ----
	{name: "readuntil/multi-byte separator", run: func(t *testing.T, e *env) {
		e.sendSync("lineAAA", "lineAAAxxx")
		got, err := e.r.ReadUntil(testCtx(t), []byte("AAA"))
		wantBytes(t, "readuntil", got, err, "lineAAA")
		got, err = e.r.ReadUntil(testCtx(t), []byte("AAA"))
		wantBytes(t, "readuntil", got, err, "lineAAA")
		wantBuffered(t, e.r, "xxx")
	}},
	{name: "readuntil/separator split across chunks with false starts", run: func(t *testing.T, e *env) {
		for _, chunks := range [][]string{
			{"QWEaa", "XYaa", "a"},
			{"QWEaa", "XYa", "aa"},
			{"aaa"},
			{"Xaaa"},
			{"XXX", "a", "a", "a"},
		} {
			ch := goRead(func() ([]byte, error) { return e.r.ReadUntil(testCtx(t), []byte("aaa")) })
			waitForWaiter(t, e.r)
			e.send(chunks...)
			res := recv(t, ch)
			wantBytes(t, fmt.Sprintf("readuntil over %q", chunks), res.data, res.err, strings.Join(chunks, ""))
			wantBuffered(t, e.r, "")
		}
	}},
	{name: "readuntil/EOF before separator", run: func(t *testing.T, e *env) {
		e.send("some dataA", "A")
		e.fin()
		waitUntil(t, "EOF", func() bool { return eofReceived(e.r) })
		_, err := e.r.ReadUntil(testCtx(t), []byte("AAA"))
		ie := asErr[*IncompleteReadError](t, err)
		if string(ie.Partial) != "some dataAA" || ie.Expected != -1 || err.Error() != "11 bytes read on a total of undefined expected bytes" {
			t.Fatalf("got %q %+v", err, ie)
		}
		wantBuffered(t, e.r, "")
		if !e.r.AtEOF() {
			t.Fatal("AtEOF false")
		}
	}},
	{name: "readuntil/not found over limit leaves the buffer", opts: Options{Limit: 3}, run: func(t *testing.T, e *env) {
		e.sendSync("some dataAA")
		_, err := e.r.ReadUntil(testCtx(t), []byte("AAA"))
		lo := asErr[*LimitOverrunError](t, err)
		if err.Error() != "Separator is not found, and chunk exceed the limit" || lo.Found || lo.Consumed != 9 {
			t.Fatalf("got %v %+v", err, lo)
		}
		wantBuffered(t, e.r, "some dataAA")
	}},
	{name: "readuntil/found over limit leaves the buffer", opts: Options{Limit: 3}, run: func(t *testing.T, e *env) {
		e.sendSync("some dataAAA")
		_, err := e.r.ReadUntil(testCtx(t), []byte("AAA"))
		lo := asErr[*LimitOverrunError](t, err)
		if err.Error() != "Separator is found, but chunk is longer than limit" || !lo.Found || lo.Consumed != 9 {
			t.Fatalf("got %v %+v", err, lo)
		}
		wantBuffered(t, e.r, "some dataAAA")
	}},
	{name: "readuntil/F2 overrun without waiting does not resume a paused reader", opts: Options{Limit: 3}, run: func(t *testing.T, e *env) {
		e.sendSync("some dataAA")
		for range 2 {
			_, err := e.r.ReadUntil(testCtx(t), []byte("AAA"))
			if lo := asErr[*LimitOverrunError](t, err); lo.Found || lo.Consumed != 9 {
				t.Fatalf("got %+v", lo)
			}
			if !paused(e.r) || e.r.IsReading() {
				t.Fatal("reader not paused with 11 > 2*3 bytes buffered")
			}
			e.send("A")
			time.Sleep(50 * time.Millisecond)
			wantBuffered(t, e.r, "some dataAA")
		}
		got, err := e.r.Read(testCtx(t), 2)
		wantBytes(t, "read(2)", got, err, "so")
		if !paused(e.r) {
			t.Fatal("resumed with 9 > limit bytes buffered")
		}
		got, err = e.r.Read(testCtx(t), 6)
		wantBytes(t, "read(6)", got, err, "me dat")
		// 3 <= limit: reading resumes and the two "A"s come in.
		e.synced()
		got, err = e.r.ReadUntil(testCtx(t), []byte("AAA"))
		wantBytes(t, "readuntil after resume", got, err, "aAAA")
		wantBuffered(t, e.r, "A")
	}},
	{name: "readuntil/separator at exactly limit", opts: Options{Limit: 7}, run: func(t *testing.T, e *env) {
		e.sendSync("1234567\n")
		got, err := e.r.ReadUntil(testCtx(t), []byte("\n"))
		wantBytes(t, "readuntil", got, err, "1234567\n")
		e.sendSync("1234567")
		if _, err := e.r.ReadUntil(cancelledCtx(), []byte("\n")); !errors.Is(err, context.Canceled) {
			t.Fatalf("7 bytes, no newline: got %v, want to wait", err)
		}
		e.sendSync("8")
		_, err = e.r.ReadUntil(testCtx(t), []byte("\n"))
		if lo := asErr[*LimitOverrunError](t, err); lo.Found || lo.Consumed != 8 {
			t.Fatalf("8 bytes: got %+v, want not found, consumed 8", lo)
		}
		wantBuffered(t, e.r, "12345678")
	}},
	{name: "readuntil/separator longer than limit", opts: Options{Limit: 2}, run: func(t *testing.T, e *env) {
		e.sendSync("XYZaXYZ")
		got, err := e.r.ReadUntil(testCtx(t), []byte("XYZ"))
		wantBytes(t, "readuntil", got, err, "XYZ")
		got, err = e.r.ReadUntil(testCtx(t), []byte("XYZ"))
		wantBytes(t, "readuntil", got, err, "aXYZ")
	}},
	{name: "readuntil/tuple earliest end wins even if longer", run: func(t *testing.T, e *env) {
		e.sendSync("line 1\nline 2\r")
		seps := [][]byte{[]byte("\r"), []byte("\n")}
		got, err := e.r.ReadUntil(testCtx(t), seps...)
		wantBytes(t, "readuntil", got, err, "line 1\n")
		got, err = e.r.ReadUntil(testCtx(t), seps...)
		wantBytes(t, "readuntil", got, err, "line 2\r")
		e.sendSync("ABCDEFG")
		got, err = e.r.ReadUntil(testCtx(t), []byte("DEF"), []byte("BCDE"))
		wantBytes(t, "readuntil", got, err, "ABCDE")
		wantBuffered(t, e.r, "FG")
	}},
	{name: "readuntil/tuple tie goes to the shorter separator", opts: Options{Limit: 1}, run: func(t *testing.T, e *env) {
		// "BCD" and "CD" both end at 4. The shorter wins, so the match starts
		// at 2 > limit; had "BCD" won it would start at 1 == limit.
		e.sendSync("ABCDX")
		for _, seps := range [][][]byte{{[]byte("BCD"), []byte("CD")}, {[]byte("CD"), []byte("BCD")}} {
			_, err := e.r.ReadUntil(testCtx(t), seps...)
			if lo := asErr[*LimitOverrunError](t, err); !lo.Found || lo.Consumed != 2 {
				t.Fatalf("got %+v, want found at 2", lo)
			}
		}
		wantBuffered(t, e.r, "ABCDX")
	}},
	{name: "readuntil/tuple threshold grows with the longest separator", opts: Options{Limit: 4}, run: func(t *testing.T, e *env) {
		seps := [][]byte{[]byte("\n"), []byte("0123456789")}
		e.sendSync("abcdefghijkl")
		if _, err := e.r.ReadUntil(cancelledCtx(), seps...); !errors.Is(err, context.Canceled) {
			t.Fatalf("12 bytes: got %v, want to wait (offset 3 <= limit)", err)
		}
		wantBuffered(t, e.r, "abcdefghijkl")
		ch := goRead(func() ([]byte, error) { return e.r.ReadUntil(testCtx(t), seps...) })
		waitForWaiter(t, e.r)
		e.send("mn")
		res := recv(t, ch)
		if lo := asErr[*LimitOverrunError](t, res.err); lo.Found || lo.Consumed != 5 {
			t.Fatalf("14 bytes: got %+v, want not found, consumed 5", lo)
		}
		wantBuffered(t, e.r, "abcdefghijklmn")
	}},
	{name: "readuntil/tuple buffer shorter than longest separator", run: func(t *testing.T, e *env) {
		e.sendSync("ab\n")
		got, err := e.r.ReadUntil(testCtx(t), []byte("\n"), []byte("0123456789"))
		wantBytes(t, "readuntil", got, err, "ab\n")
	}},
	{name: "readuntil/limit error beats EOF", opts: Options{Limit: 5}, run: func(t *testing.T, e *env) {
		e.send("abcdefgh")
		e.fin()
		waitUntil(t, "EOF", func() bool { return eofReceived(e.r) })
		_, err := e.r.ReadUntil(testCtx(t), []byte("\n"))
		if lo := asErr[*LimitOverrunError](t, err); lo.Found || lo.Consumed != 8 {
			t.Fatalf("got %+v", lo)
		}
		wantBuffered(t, e.r, "abcdefgh")
	}},
	{name: "readuntil/separator present beats EOF", run: func(t *testing.T, e *env) {
		e.send("ab\ncd")
		e.fin()
		waitUntil(t, "EOF", func() bool { return eofReceived(e.r) })
		got, err := e.r.ReadUntil(testCtx(t), []byte("\n"))
		wantBytes(t, "readuntil", got, err, "ab\n")
		_, err = e.r.ReadUntil(testCtx(t), []byte("\n"))
		if ie := asErr[*IncompleteReadError](t, err); string(ie.Partial) != "cd" {
			t.Fatalf("got %+v", ie)
		}
	}},
	{name: "readuntil/separator validation", run: func(t *testing.T, e *env) {
		e.sendSync("abc")
		for _, tc := range []struct {
			seps [][]byte
			msg  string
		}{
			{nil, "Separator should contain at least one element"},
			{[][]byte{{}}, "Separator should be at least one-byte string"},
			{[][]byte{[]byte("A"), {}}, "Separator should be at least one-byte string"},
		} {
			_, err := e.r.ReadUntil(testCtx(t), tc.seps...)
			if ve := asErr[*ValueError](t, err); ve.Msg != tc.msg {
				t.Fatalf("%q: got %q, want %q", tc.seps, ve.Msg, tc.msg)
			}
		}
		wantBuffered(t, e.r, "abc")
	}},

	// ---- readexactly ----
	{name: "readexactly/waits across chunks and keeps the surplus", run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.ReadExactly(testCtx(t), 7) })
		waitForWaiter(t, e.r)
		e.send("line1", "line2", "line3")
		res := recv(t, ch)
		wantBytes(t, "readexactly(7)", res.data, res.err, "line1li")
		e.synced()
		wantBuffered(t, e.r, "ne2line3")
	}},
	{name: "readexactly/not capped by limit and beyond 2*limit", opts: Options{Limit: 4}, run: func(t *testing.T, e *env) {
		big := strings.Repeat("0123456789abcdef", 1<<16)
		ch := goRead(func() ([]byte, error) { return e.r.ReadExactly(testCtx(t), len(big)) })
		e.send(big)
		res := recv(t, ch)
		wantBytes(t, "readexactly(1 MiB)", res.data, res.err, big)
	}},
	{name: "readexactly/EOF short gives IncompleteReadError", run: func(t *testing.T, e *env) {
		data := "line1\nline2\nline3\n"
		e.send(data)
		e.fin()
		_, err := e.r.ReadExactly(testCtx(t), 2*len(data))
		ie := asErr[*IncompleteReadError](t, err)
		if string(ie.Partial) != data || ie.Expected != 36 || err.Error() != "18 bytes read on a total of 36 expected bytes" {
			t.Fatalf("got %q %+v", err, ie)
		}
		wantBuffered(t, e.r, "")
		if !e.r.AtEOF() {
			t.Fatal("AtEOF false")
		}
	}},
	{name: "readexactly/zero and negative", run: func(t *testing.T, e *env) {
		e.sendSync("abc")
		got, err := e.r.ReadExactly(cancelledCtx(), 0)
		wantBytes(t, "readexactly(0)", got, err, "")
		_, err = e.r.ReadExactly(testCtx(t), -1)
		if ve := asErr[*ValueError](t, err); ve.Msg != "readexactly size can not be less than zero" {
			t.Fatalf("got %q", ve.Msg)
		}
		wantBuffered(t, e.r, "abc")
	}},

	// ---- at_eof ----
	{name: "ateof/only after EOF and an empty buffer", run: func(t *testing.T, e *env) {
		if e.r.AtEOF() {
			t.Fatal("AtEOF true on a fresh stream")
		}
		e.send("some data\n")
		e.fin()
		waitUntil(t, "EOF", func() bool { return eofReceived(e.r) })
		if e.r.AtEOF() {
			t.Fatal("AtEOF true with data buffered")
		}
		got, err := e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline", got, err, "some data\n")
		if !e.r.AtEOF() {
			t.Fatal("AtEOF false after draining")
		}
	}},

	// ---- connection errors ----
	{name: "errors/RST makes buffered bytes unreadable and wins validation order", run: func(t *testing.T, e *env) {
		e.sendSync("hello")
		e.rst()
		waitUntil(t, "the reset is seen", func() bool { return e.r.Exception() != nil })
		wantConnErr(t, "Exception", e.r.Exception(), syscall.ECONNRESET)
		for i := range 2 { // sticky
			_, err := e.r.Read(testCtx(t), 5)
			wantConnErr(t, "read(5)", err, syscall.ECONNRESET)
			_, err = e.r.Read(testCtx(t), 0)
			wantConnErr(t, "read(0)", err, syscall.ECONNRESET)
			_, err = e.r.Read(testCtx(t), -1)
			wantConnErr(t, "read(-1)", err, syscall.ECONNRESET)
			_, err = e.r.ReadExactly(testCtx(t), 0)
			wantConnErr(t, "readexactly(0)", err, syscall.ECONNRESET)
			_, err = e.r.ReadExactly(testCtx(t), 2)
			wantConnErr(t, "readexactly(2)", err, syscall.ECONNRESET)
			_, err = e.r.ReadUntil(testCtx(t), []byte("l"))
			wantConnErr(t, "readuntil", err, syscall.ECONNRESET)
			_, err = e.r.ReadLine(testCtx(t))
			wantConnErr(t, "readline", err, syscall.ECONNRESET)
			_, err = e.r.ReadExactly(testCtx(t), -1)
			asErr[*ValueError](t, err)
			_, err = e.r.ReadUntil(testCtx(t), []byte{})
			asErr[*ValueError](t, err)
			_, err = e.r.ReadUntil(testCtx(t))
			asErr[*ValueError](t, err)
			if i == 0 {
				wantBuffered(t, e.r, "hello")
			}
		}
		if e.r.AtEOF() {
			t.Fatal("AtEOF true after RST")
		}
		if !e.w.IsClosing() {
			t.Fatal("IsClosing false after RST")
		}
		wantConnErr(t, "WaitClosed", e.w.WaitClosed(testCtx(t)), syscall.ECONNRESET)
		wantConnErr(t, "Drain", e.w.Drain(testCtx(t)), syscall.ECONNRESET)
		wantConnErr(t, "Write", e.w.Write([]byte("x")), syscall.ECONNRESET)
	}},
	{name: "errors/RST wakes a pending read", run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.ReadLine(testCtx(t)) })
		waitForWaiter(t, e.r)
		e.rst()
		res := recv(t, ch)
		wantConnErr(t, "pending readline", res.err, syscall.ECONNRESET)
	}},
	{name: "errors/FIN leaves the stream half-open", plainOnly: true, run: func(t *testing.T, e *env) {
		e.send("bye")
		e.fin()
		got, err := e.r.Read(testCtx(t), -1)
		wantBytes(t, "read(-1)", got, err, "bye")
		if !e.r.AtEOF() || e.w.IsClosing() {
			t.Fatalf("AtEOF %v IsClosing %v, want true false", e.r.AtEOF(), e.w.IsClosing())
		}
		if err := e.w.Write([]byte("still here")); err != nil {
			t.Fatalf("write after peer FIN: %v", err)
		}
		if err := e.w.Drain(testCtx(t)); err != nil {
			t.Fatalf("drain after peer FIN: %v", err)
		}
		buf := make([]byte, 10)
		_ = e.peer.SetReadDeadline(time.Now().Add(failAfter))
		if _, err := io.ReadFull(e.peer, buf); err != nil || string(buf) != "still here" {
			t.Fatalf("peer read %q %v", buf, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := e.w.WaitClosed(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitClosed after peer FIN: got %v, want it to keep waiting", err)
		}
		e.w.Close()
		if err := e.w.WaitClosed(testCtx(t)); err != nil {
			t.Fatalf("WaitClosed after Close: %v", err)
		}
		if _, err := e.peerReadAll(); err != nil {
			t.Fatalf("peer sees %v, want EOF", err)
		}
	}},
	{name: "errors/RST after FIN goes unnoticed until we write", plainOnly: true, run: func(t *testing.T, e *env) {
		e.fin()
		waitUntil(t, "EOF", func() bool { return eofReceived(e.r) })
		if e.kind == "tcp" {
			e.rst()
		} else {
			_ = e.peer.Close() // after FIN the Unix peer's close is what we notice
		}
		time.Sleep(20 * time.Millisecond)
		if e.r.Exception() != nil || e.w.IsClosing() {
			t.Fatalf("reset noticed without a write: %v", e.r.Exception())
		}
		ctx := testCtx(t)
		var err error
		for err == nil && ctx.Err() == nil {
			if err = e.w.Write(make([]byte, 1024)); err == nil {
				err = e.w.Drain(ctx)
			}
		}
		if err == nil || ctx.Err() != nil {
			t.Fatal("writing to a vanished peer never failed")
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("got %v, want ECONNRESET or EPIPE", err)
		}
		if _, rerr := e.r.Read(testCtx(t), 1); rerr == nil {
			t.Fatal("read after the write error succeeded")
		}
		if !e.w.IsClosing() {
			t.Fatal("IsClosing false after a write error")
		}
	}},

	// ---- concurrency ----
	{name: "concurrency/a second waiting read is refused, a non-blocking one succeeds", run: func(t *testing.T, e *env) {
		ch := goRead(func() ([]byte, error) { return e.r.ReadExactly(testCtx(t), 10) })
		waitForWaiter(t, e.r)
		for _, tc := range []struct {
			op   string
			read func() ([]byte, error)
		}{
			{"read", func() ([]byte, error) { return e.r.Read(testCtx(t), 1) }},
			{"read", func() ([]byte, error) { return e.r.Read(testCtx(t), -1) }},
			{"readexactly", func() ([]byte, error) { return e.r.ReadExactly(testCtx(t), 5) }},
			{"readuntil", func() ([]byte, error) { return e.r.ReadUntil(testCtx(t), []byte("x")) }},
			{"readuntil", func() ([]byte, error) { return e.r.ReadLine(testCtx(t)) }},
		} {
			_, err := tc.read()
			ce := asErr[*ConcurrentReadError](t, err)
			if ce.Op != tc.op || !errors.Is(err, ErrConcurrentRead) ||
				err.Error() != tc.op+"() called while another coroutine is already waiting for incoming data" {
				t.Fatalf("got %q (Op %q), want Op %q", err, ce.Op, tc.op)
			}
		}
		got, err := e.r.Read(testCtx(t), 0)
		wantBytes(t, "read(0) never conflicts", got, err, "")
		e.sendSync("ab")
		got, err = e.r.Read(testCtx(t), 2)
		wantBytes(t, "non-blocking read(2)", got, err, "ab")
		e.send("0123456789")
		res := recv(t, ch)
		wantBytes(t, "the first read", res.data, res.err, "0123456789")
	}},

	// ---- cancellation ----
	{name: "cancel/a cancelled wait consumes nothing for every read", run: func(t *testing.T, e *env) {
		type readFn func(ctx context.Context) ([]byte, error)
		for _, tc := range []struct {
			name    string
			read    readFn
			more    string // sent after the cancel
			fin     bool
			want    string
			initial string
		}{
			{"read", func(ctx context.Context) ([]byte, error) { return e.r.Read(ctx, 10) }, "abc", false, "abc", ""},
			{"readexactly", func(ctx context.Context) ([]byte, error) { return e.r.ReadExactly(ctx, 6) }, "def", false, "abcdef", "abc"},
			{"readuntil", func(ctx context.Context) ([]byte, error) { return e.r.ReadUntil(ctx, []byte("\r\n")) }, "d\r\n", false, "abcd\r\n", "abc"},
			{"readline", func(ctx context.Context) ([]byte, error) { return e.r.ReadLine(ctx) }, "d\n", false, "abcd\n", "abc"},
			{"read(-1)", func(ctx context.Context) ([]byte, error) { return e.r.Read(ctx, -1) }, "def", true, "abcdef", "abc"},
		} {
			if tc.initial != "" {
				e.sendSync(tc.initial)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ch := goRead(func() ([]byte, error) { return tc.read(ctx) })
			waitForWaiter(t, e.r)
			cancel()
			res := recv(t, ch)
			if !errors.Is(res.err, context.Canceled) {
				t.Fatalf("%s: got %q %v, want context.Canceled", tc.name, res.data, res.err)
			}
			wantBuffered(t, e.r, tc.initial)
			e.send(tc.more)
			if tc.fin {
				e.fin()
			}
			got, err := tc.read(testCtx(t))
			wantBytes(t, tc.name+" after cancel", got, err, tc.want)
		}
	}},

	// ---- writer ----
	{name: "writer/write after WriteEOF or Close is refused", plainOnly: true, run: func(t *testing.T, e *env) {
		if !e.w.CanWriteEOF() {
			t.Fatal("CanWriteEOF false on a plain socket")
		}
		if err := e.w.Write([]byte("req")); err != nil {
			t.Fatal(err)
		}
		if err := e.w.WriteEOF(); err != nil {
			t.Fatal(err)
		}
		if err := e.w.WriteEOF(); err != nil {
			t.Fatalf("second WriteEOF: %v", err)
		}
		if err := e.w.Write([]byte("x")); !errors.Is(err, ErrWriteAfterEOF) {
			t.Fatalf("write after WriteEOF: got %v", err)
		}
		if err := e.w.WriteLines([]byte("x"), []byte("y")); !errors.Is(err, ErrWriteAfterEOF) {
			t.Fatalf("writelines after WriteEOF: got %v", err)
		}
		if e.w.IsClosing() {
			t.Fatal("IsClosing true after WriteEOF")
		}
		// A real half-close: the peer reads EOF and can still answer.
		got, err := e.peerReadAll()
		wantBytes(t, "peer reads", got, err, "req")
		e.send("resp")
		e.fin()
		got, err = e.r.Read(testCtx(t), -1)
		wantBytes(t, "read the answer", got, err, "resp")
		e.w.Close()
		if err := e.w.Write([]byte("x")); !errors.Is(err, ErrWriteAfterEOF) && !errors.Is(err, ErrClosed) {
			t.Fatalf("write after Close: got %v", err)
		}
		if err := e.w.WaitClosed(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}},
	{name: "writer/write after Close and Abort", plainOnly: true, run: func(t *testing.T, e *env) {
		e.w.Close()
		if err := e.w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after Close: got %v", err)
		}
		if err := e.w.WriteLines([]byte("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("writelines after Close: got %v", err)
		}
		if err := e.w.WriteEOF(); err != nil {
			t.Fatalf("WriteEOF after Close: %v", err)
		}
		e.w.Abort()
		if err := e.w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after Abort: got %v", err)
		}
		e.w.Close() // idempotent
		if err := e.w.WaitClosed(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}},
	{name: "writer/writelines writes the chunks in order", run: func(t *testing.T, e *env) {
		if err := e.w.WriteLines([]byte("a"), nil, []byte("bc"), []byte("\n")); err != nil {
			t.Fatal(err)
		}
		if err := e.w.WriteLines(); err != nil {
			t.Fatal(err)
		}
		if err := e.w.Write(nil); err != nil {
			t.Fatal(err)
		}
		if got := e.w.Written(); got != 4 {
			t.Fatalf("Written %d, want 4", got)
		}
		e.w.Close()
		got, err := e.peerReadAll()
		wantBytes(t, "peer reads", got, err, "abc\n")
	}},
	{name: "writer/drain after close is connection lost", plainOnly: true, run: func(t *testing.T, e *env) {
		if err := e.w.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
		e.w.Close()
		if err := e.w.Drain(testCtx(t)); !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("drain after close: got %v, want ErrConnectionLost", err)
		}
		if !e.w.IsClosing() {
			t.Fatal("IsClosing false after Close")
		}
		if err := e.w.WaitClosed(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		got, err := e.peerReadAll()
		wantBytes(t, "peer reads", got, err, "data")
	}},
	{name: "writer/drain and write against a vanished peer end with an error", run: func(t *testing.T, e *env) {
		if e.kind == "tcp" {
			e.rst()
		} else {
			_ = e.peer.Close()
		}
		ctx := testCtx(t)
		var err error
		for err == nil && ctx.Err() == nil {
			if err = e.w.Write(make([]byte, 64<<10)); err == nil {
				err = e.w.Drain(ctx)
			}
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write+drain never failed: %v", err)
		}
		if !e.w.IsClosing() {
			t.Fatal("IsClosing false")
		}
	}},
	{name: "writer/drain returns at once below the high-water mark", plainOnly: true, run: func(t *testing.T, e *env) {
		if low, high := e.w.WriteBufferLimits(); low != 16384 || high != 65536 {
			t.Fatalf("limits (%d, %d), want (16384, 65536)", low, high)
		}
		if err := e.w.Write([]byte("small")); err != nil {
			t.Fatal(err)
		}
		// An ended context shows Drain did not wait.
		if err := e.w.Drain(cancelledCtx()); err != nil {
			t.Fatalf("drain below high: %v", err)
		}
	}},
	{name: "writer/WriteBufferFullError accepts nothing", opts: Options{MaxWriteBuffer: 1000}, run: func(t *testing.T, e *env) {
		// Into an empty buffer a write of any size is taken: more than the
		// socket buffers hold, as the peer does not read yet.
		big := bytes.Repeat([]byte("x"), 32<<20)
		if err := e.w.Write(big); err != nil {
			t.Fatalf("a write into the empty buffer: %v", err)
		}
		err := e.w.Write([]byte("z"))
		we := asErr[*WriteBufferFullError](t, err)
		if we.Size != 1 || we.Cap != 1000 || we.Buffered == 0 || we.Room() != 0 {
			t.Fatalf("got %+v", we)
		}
		if err := e.w.WriteLines([]byte("a"), []byte("b")); err == nil {
			t.Fatal("writelines over the cap accepted")
		}
		if e.w.Written() != int64(len(big)) {
			t.Fatalf("Written %d after refused writes, want %d", e.w.Written(), len(big))
		}
		e.w.Close()
		got, err := e.peerReadAll()
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("peer reads %d bytes, %v; want the %d written", len(got), err, len(big))
		}
	}},
	{name: "writer/abort discards and keeps the reader's buffer", plainOnly: true, opts: Options{MaxWriteBuffer: -1}, run: func(t *testing.T, e *env) {
		e.sendSync("from peer")
		const size = 16 << 20
		if err := e.w.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if e.w.BufferSize() == 0 {
			t.Fatal("the kernel took 16 MiB at once")
		}
		e.w.Abort()
		if !e.w.IsClosing() {
			t.Fatal("IsClosing false after Abort")
		}
		if err := e.w.WaitClosed(testCtx(t)); err != nil {
			t.Fatalf("WaitClosed after Abort: %v", err)
		}
		if err := e.w.Drain(testCtx(t)); !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("drain after Abort: %v", err)
		}
		got, err := e.r.Read(testCtx(t), -1)
		wantBytes(t, "read after Abort", got, err, "from peer")
		data, err := e.peerReadAll()
		if err != nil || len(data) >= size {
			t.Fatalf("peer read %d bytes, err %v; want fewer than %d and EOF", len(data), err, size)
		}
	}},
	{name: "writer/unread puts bytes back", run: func(t *testing.T, e *env) {
		e.sendSync("hello world\n")
		got, err := e.r.Read(testCtx(t), 6)
		wantBytes(t, "read(6)", got, err, "hello ")
		if e.r.Consumed() != 6 {
			t.Fatalf("Consumed %d", e.r.Consumed())
		}
		e.r.Unread(got)
		if e.r.Consumed() != 0 {
			t.Fatalf("Consumed %d after Unread", e.r.Consumed())
		}
		got, err = e.r.ReadLine(testCtx(t))
		wantBytes(t, "readline", got, err, "hello world\n")
		ch := goRead(func() ([]byte, error) { return e.r.ReadLine(testCtx(t)) })
		waitForWaiter(t, e.r)
		e.r.Unread([]byte("put back\n"))
		res := recv(t, ch)
		wantBytes(t, "readline woken by Unread", res.data, res.err, "put back\n")
	}},
}

func TestOpenConnectionValidation(t *testing.T) {
	ctx := testCtx(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for _, limit := range []int{-1, -65536} {
		_, _, err := OpenConnection(ctx, "127.0.0.1", port, &DialOptions{Options: Options{Limit: limit}})
		if ve := asErr[*ValueError](t, err); ve.Msg != "Limit cannot be <= 0" {
			t.Fatalf("got %q", ve.Msg)
		}
		_, _, err = OpenUnixConnection(ctx, "/nonexistent", &DialOptions{Options: Options{Limit: limit}})
		asErr[*ValueError](t, err)
		_, _, _, _, err = SocketPair(&Options{Limit: limit})
		asErr[*ValueError](t, err)
	}
	_, _, err = OpenConnection(ctx, "127.0.0.1", port, nil)
	wantConnErr(t, "refused", err, syscall.ECONNREFUSED)

	dir := shortTempDir(t)
	_, _, err = OpenUnixConnection(ctx, filepath.Join(dir, "missing"), nil)
	wantConnErr(t, "missing path", err, syscall.ENOENT)

	// A socket file nobody listens on refuses.
	stale := filepath.Join(dir, "stale")
	makeStaleSocket(t, stale)
	_, _, err = OpenUnixConnection(ctx, stale, nil)
	wantConnErr(t, "stale socket", err, syscall.ECONNREFUSED)
}

// makeStaleSocket leaves a socket file at path that nobody listens on.
func makeStaleSocket(t testing.TB, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("stale socket not left behind: %v", err)
	}
}

func TestExtraInfo(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		e := openTCP(t, &Options{})
		if got, want := e.w.ExtraInfo("peername").(net.Addr).String(), e.peer.LocalAddr().String(); got != want {
			t.Fatalf("peername %s, want %s", got, want)
		}
		if got, want := e.w.ExtraInfo("sockname").(net.Addr).String(), e.peer.RemoteAddr().String(); got != want {
			t.Fatalf("sockname %s, want %s", got, want)
		}
		sock, ok := e.w.ExtraInfo("socket").(*net.TCPConn)
		if !ok {
			t.Fatalf("socket is %T", e.w.ExtraInfo("socket"))
		}
		rc, err := sock.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		nodelay := -1
		_ = rc.Control(func(fd uintptr) {
			nodelay, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
		})
		if nodelay != 1 {
			t.Fatalf("TCP_NODELAY %d, want 1", nodelay)
		}
		for _, name := range []string{"sslcontext", "peercert", "cipher", "compression", "ssl_object", "no such key"} {
			if v := e.w.ExtraInfo(name); v != nil {
				t.Fatalf("%s: got %v, want nil", name, v)
			}
		}
		if e.w.IsTLS() || e.w.IsServerSide() {
			t.Fatal("plain client stream reports TLS or server side")
		}
		e.w.Close()
		if e.w.ExtraInfo("peername") == nil {
			t.Fatal("peername gone after Close")
		}
	})
	t.Run("unix", func(t *testing.T) {
		e := openUnix(t, &Options{})
		if got, want := e.w.ExtraInfo("peername").(net.Addr).String(), e.peer.LocalAddr().String(); got != want {
			t.Fatalf("peername %q, want the path %q", got, want)
		}
		if sn := e.w.ExtraInfo("sockname"); sn != nil && sn.(net.Addr).String() != "" {
			t.Fatalf("sockname %q, want unnamed", sn)
		}
	})
}

// TestCloseFlushesLargeWrite: Close sends everything that is buffered before
// it closes, and the reader still sees its buffered bytes, then EOF.
func TestCloseFlushesLargeWrite(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			e := k.open(t, &Options{MaxWriteBuffer: -1})
			e.sendSync("buffered before close")
			data := make([]byte, 16<<20)
			for i := range data {
				data[i] = byte(i * 7)
			}
			if err := e.w.Write(data); err != nil {
				t.Fatal(err)
			}
			if e.w.BufferSize() == 0 {
				t.Fatal("the kernel took 16 MiB at once; the test proves nothing")
			}
			e.w.Close()
			if !e.w.IsClosing() {
				t.Fatal("IsClosing false after Close")
			}
			// Bytes sent after Close are never delivered to our reader.
			e.send("late")
			time.Sleep(20 * time.Millisecond)
			var got []byte
			var rerr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				got, rerr = e.peerReadAll()
			}()
			if err := e.w.WaitClosed(testCtx(t)); err != nil {
				t.Fatalf("WaitClosed: %v", err)
			}
			<-done
			if rerr != nil || !bytes.Equal(got, data) {
				t.Fatalf("peer read %d bytes (err %v), want all %d", len(got), rerr, len(data))
			}
			rest, err := e.r.Read(testCtx(t), -1)
			wantBytes(t, "reader after Close", rest, err, "buffered before close")
			if !e.r.AtEOF() {
				t.Fatal("AtEOF false")
			}
		})
	}
}

// TestDrainWaterMarks: Drain waits while more than the high-water mark is
// buffered, and every waiting Drain is released together once the buffer
// falls to the low-water mark.
func TestDrainWaterMarks(t *testing.T) {
	for _, k := range streamKinds {
		t.Run(k.name, func(t *testing.T) {
			e := k.open(t, &Options{MaxWriteBuffer: -1})
			const size = 16 << 20
			data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
			if err := e.w.Write(data); err != nil {
				t.Fatal(err)
			}
			if e.w.BufferSize() <= 65536 {
				t.Fatalf("buffer %d: the kernel took nearly everything", e.w.BufferSize())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			err := e.w.Drain(ctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("drain above high: got %v, want it to wait", err)
			}
			var wg sync.WaitGroup
			sizes := make(chan int, 10)
			for range 10 {
				wg.Go(func() {
					if err := e.w.Drain(testCtx(t)); err != nil {
						t.Errorf("drain: %v", err)
					}
					sizes <- e.w.BufferSize()
				})
			}
			got, err := e.peerReadN(size)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("peer read %d bytes: %v", len(got), err)
			}
			wg.Wait()
			close(sizes)
			for s := range sizes {
				if s > 16384 {
					t.Fatalf("drain returned with %d bytes buffered, above the low-water mark", s)
				}
			}
		})
	}
}

// peerReadN reads exactly n bytes at the peer.
func (e *env) peerReadN(n int) ([]byte, error) {
	_ = e.peer.SetReadDeadline(time.Now().Add(failAfter))
	buf := make([]byte, n)
	_, err := io.ReadFull(e.peer, buf)
	return buf, err
}

// TestDrainReleasedAtLowWaterMark: the release happens at the low-water
// mark, not when the buffer is empty.
func TestDrainReleasedAtLowWaterMark(t *testing.T) {
	e := openTCP(t, &Options{MaxWriteBuffer: -1})
	if err := e.w.Write(make([]byte, 16<<20)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- e.w.Drain(testCtx(t)) }()
	time.Sleep(10 * time.Millisecond)
	select {
	case err := <-ch:
		t.Fatalf("drain returned %v while the peer reads nothing", err)
	default:
	}
	// Raise the marks above what is buffered: the buffer is now below low.
	if err := e.w.SetWriteBufferLimits(0, 32<<20); err != nil {
		t.Fatal(err)
	}
	if low, high := e.w.WriteBufferLimits(); low != 32<<20 || high != 128<<20 {
		t.Fatalf("limits (%d, %d)", low, high)
	}
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(failAfter):
		t.Fatal("drain not released")
	}
	if e.w.BufferSize() == 0 {
		t.Fatal("buffer empty: release at the low mark not shown")
	}
}

func TestSetWriteBufferLimits(t *testing.T) {
	_, w, _, w2, err := SocketPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stopStream(w)
	defer stopStream(w2)
	for _, tc := range []struct {
		high, low         int
		wantLow, wantHigh int
		err               string
	}{
		{high: 1000, wantLow: 250, wantHigh: 1000},
		{low: 100, wantLow: 100, wantHigh: 400},
		{high: 10, low: 5, wantLow: 5, wantHigh: 10},
		{wantLow: 0, wantHigh: 0},
		{high: 10, low: 20, err: "high (10) must be >= low (20) must be >= 0"},
	} {
		err := w.SetWriteBufferLimits(tc.high, tc.low)
		if tc.err != "" {
			if ve := asErr[*ValueError](t, err); ve.Msg != tc.err {
				t.Fatalf("got %q, want %q", ve.Msg, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if low, high := w.WriteBufferLimits(); low != tc.wantLow || high != tc.wantHigh {
			t.Fatalf("(%d, %d): got (%d, %d), want (%d, %d)", tc.high, tc.low, low, high, tc.wantLow, tc.wantHigh)
		}
	}
}

// TestReaderBackpressure: above 2*limit the reader stops pulling from the
// socket, so the kernel fills and the peer's writes block; consuming down to
// the limit resumes reading.
func TestReaderBackpressure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// A fixed receive buffer keeps the kernel from absorbing megabytes.
	_ = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	const limit = 16 << 10
	r, w, err := NewStream(conn, &Options{Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer stopStream(w)

	const total = 16 << 20
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(i % 251)
	}
	var sent sync.WaitGroup
	var progress int64
	var mu sync.Mutex
	sent.Go(func() {
		for off := 0; off < total; off += 64 << 10 {
			if _, err := client.Write(data[off : off+64<<10]); err != nil {
				t.Errorf("peer write: %v", err)
				return
			}
			mu.Lock()
			progress = int64(off + 64<<10)
			mu.Unlock()
		}
	})
	waitUntil(t, "the reader pauses", func() bool { return !r.IsReading() })
	if n := r.Buffered(); n <= 2*limit || n > 2*limit+readSize {
		t.Fatalf("paused with %d bytes buffered, want in (2*limit, 2*limit+%d]", n, readSize)
	}
	// The peer stalls: the kernel buffers are full.
	var last int64 = -1
	stable := 0
	waitUntil(t, "the peer's writes stall", func() bool {
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		p := progress
		mu.Unlock()
		if p == last {
			stable++
		} else {
			stable, last = 0, p
		}
		return stable >= 5
	})
	if last >= total {
		t.Fatal("the peer wrote everything although the reader paused")
	}
	buffered := r.Buffered()
	if got := r.t.nreceived.Load(); got != int64(buffered) {
		t.Fatalf("received %d but buffered %d", got, buffered)
	}
	// Consume down to the limit without waiting: reading resumes.
	got, err := r.Read(testCtx(t), buffered-limit)
	if err != nil || !bytes.Equal(got, data[:buffered-limit]) {
		t.Fatalf("read: %v", err)
	}
	waitUntil(t, "reading resumes", func() bool { return r.t.nreceived.Load() > int64(buffered) })
	rest, err := r.ReadExactly(testCtx(t), total-len(got))
	if err != nil || !bytes.Equal(rest, data[len(got):]) {
		t.Fatalf("readexactly of the rest: %v", err)
	}
	sent.Wait()
}

// TestDrainLeavesRoomUnderSmallCap: with a cap on unsent bytes below the
// high-water mark, a Drain that returns leaves room for a write of half
// the cap, so a writer that drains before each write is never refused
// (Drain used to return below the 64 KiB high-water mark while a 16 KiB
// cap refused the write).
func TestDrainLeavesRoomUnderSmallCap(t *testing.T) {
	const capBytes = 16 << 10
	e := openTCP(t, &Options{MaxWriteBuffer: capBytes})
	var want bytes.Buffer
	first := bytes.Repeat([]byte("a"), 8<<20) // more than the kernel holds
	if err := e.w.Write(first); err != nil {
		t.Fatal(err)
	}
	want.Write(first)
	// The peer reads in small steps; after each, a Drain that does not
	// wait must be followed by a write the stream accepts.
	step := make([]byte, 4<<10)
	var got bytes.Buffer
	writes := 0
	for writes < 300 {
		_ = e.peer.SetReadDeadline(time.Now().Add(failAfter))
		n, err := e.peer.Read(step)
		if err != nil {
			t.Fatalf("peer read after %d bytes: %v", got.Len(), err)
		}
		got.Write(step[:n])
		if err := e.w.Drain(cancelledCtx()); err != nil {
			continue // Drain waits: the buffer is above its mark
		}
		chunk := bytes.Repeat([]byte{byte('b' + writes%20)}, capBytes/2)
		if err := e.w.Write(chunk); err != nil {
			t.Fatalf("write %d after a Drain that returned (buffered %d): %v", writes, e.w.BufferSize(), err)
		}
		want.Write(chunk)
		writes++
	}
	e.w.Close()
	rest, err := e.peerReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got.Write(rest)
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("peer got %d bytes, want the %d written", got.Len(), want.Len())
	}
}
