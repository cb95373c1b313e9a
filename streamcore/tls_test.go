package streamcore

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/streammgr/streammgr/streamcore/streamtest"
)

// testPKI is a throwaway CA with a server and a client certificate, made
// in memory for the test run (ECDSA P-256) by streamtest.
type testPKI struct {
	roots  *x509.CertPool
	server tls.Certificate // localhost, example.test, 127.0.0.1, ::1
	client tls.Certificate // CN "client", client auth
	st     *streamtest.PKI // the fixture the fields above come from
}

var (
	pkiOnce sync.Once
	pki     *testPKI
	pkiErr  error
)

func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki, pkiErr = newTestPKI() })
	if pkiErr != nil {
		t.Fatalf("generate certificates: %v", pkiErr)
	}
	return pki
}

func newTestPKI() (*testPKI, error) {
	p, err := streamtest.NewPKI(&streamtest.PKIOptions{
		ServerCommonName: "server",
		ClientCommonName: "client",
		ExtraDNSNames:    []string{"example.test"},
	})
	if err != nil {
		return nil, err
	}
	return &testPKI{roots: p.CertPool, server: p.Server, client: p.Client, st: p}, nil
}

func (p *testPKI) serverConfig() *tls.Config { return p.st.ServerConfig() }

func (p *testPKI) clientConfig() *tls.Config { return p.st.ClientConfig() }

// tlsPeer is a raw crypto/tls server for one connection: it runs serve on
// the handshaken connection and closes it.
func tlsPeer(t testing.TB, cfg *tls.Config, serve func(c *tls.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(failAfter))
		if err := tc.Handshake(); err != nil {
			return
		}
		serve(tc)
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// echoLines echoes lines on a raw connection until EOF.
func echoLines(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestTLSClient(t *testing.T) {
	p := getPKI(t)
	t.Run("custom roots and extra info", func(t *testing.T) {
		port := tlsPeer(t, p.serverConfig(), func(c *tls.Conn) { echoLines(c) })
		r, w := dial(t, "127.0.0.1", port, &DialOptions{TLS: p.clientConfig()})
		echo(t, r, w, "over TLS")
		if !w.IsTLS() || w.CanWriteEOF() {
			t.Fatalf("IsTLS %v CanWriteEOF %v", w.IsTLS(), w.CanWriteEOF())
		}
		if err := w.WriteEOF(); !errors.Is(err, ErrCannotWriteEOF) {
			t.Fatalf("WriteEOF on TLS: %v", err)
		}
		if low, high := w.WriteBufferLimits(); low != 131072 || high != 524288 {
			t.Fatalf("TLS water marks (%d, %d)", low, high)
		}
		ci, ok := w.ExtraInfo("cipher").(CipherInfo)
		if !ok || ci.Protocol != "TLSv1.3" || ci.Name == "" || (ci.Bits != 128 && ci.Bits != 256) {
			t.Fatalf("cipher %+v", w.ExtraInfo("cipher"))
		}
		cfg, ok := w.ExtraInfo("sslcontext").(*tls.Config)
		if !ok || cfg == nil || cfg.ServerName != "127.0.0.1" {
			t.Fatalf("sslcontext %+v", w.ExtraInfo("sslcontext"))
		}
		cert, ok := w.ExtraInfo("peercert").(*x509.Certificate)
		if !ok || cert == nil || cert.Subject.CommonName != "server" {
			t.Fatalf("peercert %v", w.ExtraInfo("peercert"))
		}
		if st, ok := w.ExtraInfo("ssl_object").(tls.ConnectionState); !ok || !st.HandshakeComplete {
			t.Fatalf("ssl_object %v", w.ExtraInfo("ssl_object"))
		}
		if w.ExtraInfo("compression") != nil {
			t.Fatal("compression not nil")
		}
		if _, ok := w.ExtraInfo("socket").(*net.TCPConn); !ok {
			t.Fatalf("socket is %T, want the TCP socket beneath TLS", w.ExtraInfo("socket"))
		}
	})
	t.Run("unknown authority", func(t *testing.T) {
		port := tlsPeer(t, p.serverConfig(), func(c *tls.Conn) {})
		_, _, err := OpenConnection(testCtx(t), "127.0.0.1", port, &DialOptions{TLS: &tls.Config{}})
		asErr[x509.UnknownAuthorityError](t, err)
	})
	t.Run("SNI", func(t *testing.T) {
		names := make(chan string, 1)
		cfg := p.serverConfig()
		cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			names <- h.ServerName
			return nil, nil
		}
		port := tlsPeer(t, cfg, func(c *tls.Conn) { echoLines(c) })
		ccfg := p.clientConfig()
		ccfg.ServerName = "example.test"
		r, w := dial(t, "127.0.0.1", port, &DialOptions{TLS: ccfg})
		echo(t, r, w, "sni")
		if got := <-names; got != "example.test" {
			t.Fatalf("server saw SNI %q", got)
		}
		port = tlsPeer(t, p.serverConfig(), func(c *tls.Conn) {})
		ccfg = p.clientConfig()
		ccfg.ServerName = "wrong.test"
		_, _, err := OpenConnection(testCtx(t), "127.0.0.1", port, &DialOptions{TLS: ccfg})
		asErr[x509.HostnameError](t, err)
	})
	t.Run("ALPN", func(t *testing.T) {
		cfg := p.serverConfig()
		cfg.NextProtos = []string{"h2", "streammgr/1"}
		port := tlsPeer(t, cfg, func(c *tls.Conn) { echoLines(c) })
		ccfg := p.clientConfig()
		ccfg.NextProtos = []string{"streammgr/1"}
		r, w := dial(t, "127.0.0.1", port, &DialOptions{TLS: ccfg})
		echo(t, r, w, "alpn")
		if st := w.ExtraInfo("ssl_object").(tls.ConnectionState); st.NegotiatedProtocol != "streammgr/1" {
			t.Fatalf("ALPN %q", st.NegotiatedProtocol)
		}
	})
	t.Run("client certificate", func(t *testing.T) {
		cfg := p.serverConfig()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.roots
		cns := make(chan string, 1)
		port := tlsPeer(t, cfg, func(c *tls.Conn) {
			cns <- c.ConnectionState().PeerCertificates[0].Subject.CommonName
			echoLines(c)
		})
		ccfg := p.clientConfig()
		ccfg.Certificates = []tls.Certificate{p.client}
		r, w := dial(t, "127.0.0.1", port, &DialOptions{TLS: ccfg})
		echo(t, r, w, "mutual")
		if cn := <-cns; cn != "client" {
			t.Fatalf("server saw client %q", cn)
		}
	})
	t.Run("handshake timeout", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		held := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				held <- c // accepted, never answered
			}
			close(held)
		}()
		const timeout = 200 * time.Millisecond
		_, _, err = OpenConnection(testCtx(t), "127.0.0.1", ln.Addr().(*net.TCPAddr).Port,
			&DialOptions{TLS: p.clientConfig(), HandshakeTimeout: timeout})
		he := asErr[*HandshakeTimeoutError](t, err)
		if he.After != timeout || !he.Timeout() ||
			err.Error() != "SSL handshake is taking longer than 0.2 seconds: aborting the connection" {
			t.Fatalf("got %q %+v", err, he)
		}
		if c := <-held; c != nil {
			// The client gave up and closed its socket.
			_ = c.SetReadDeadline(time.Now().Add(failAfter))
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("peer after the timeout: %v", err)
			}
			c.Close()
		}
	})
	t.Run("insecure", func(t *testing.T) {
		port := tlsPeer(t, p.serverConfig(), func(c *tls.Conn) { echoLines(c) })
		r, w := dial(t, "127.0.0.1", port, &DialOptions{TLS: &tls.Config{InsecureSkipVerify: true}})
		echo(t, r, w, "unverified")
		if cert, _ := w.ExtraInfo("peercert").(*x509.Certificate); cert != nil {
			t.Fatal("peercert set although nothing was verified")
		}
		if chain, _ := w.ExtraInfo("peercert_chain").([]*x509.Certificate); len(chain) != 1 {
			t.Fatalf("peercert_chain %v", chain)
		}
	})
	t.Run("peer EOF closes the transport", func(t *testing.T) {
		port := tlsPeer(t, p.serverConfig(), func(c *tls.Conn) {
			_, _ = c.Write([]byte("bye"))
			_ = c.CloseWrite() // close_notify
		})
		r, w := dial(t, "127.0.0.1", port, &DialOptions{TLS: p.clientConfig()})
		got, err := r.Read(testCtx(t), -1)
		wantBytes(t, "read(-1)", got, err, "bye")
		if err := w.WaitClosed(testCtx(t)); err != nil {
			t.Fatalf("WaitClosed: %v", err)
		}
		if !w.IsClosing() {
			t.Fatal("IsClosing false after a TLS EOF")
		}
	})
}

func TestTLSServer(t *testing.T) {
	p := getPKI(t)
	type seen struct {
		cn     string
		cfg    any
		server bool
	}
	seenc := make(chan seen, 4)
	cfg := p.serverConfig()
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = p.roots
	s := startServer(t, func(r *Reader, w *Writer) {
		var sn seen
		if c, _ := w.ExtraInfo("peercert").(*x509.Certificate); c != nil {
			sn.cn = c.Subject.CommonName
		}
		sn.cfg, sn.server = w.ExtraInfo("sslcontext"), w.IsServerSide()
		seenc <- sn
		echoHandler(r, w)
	}, "127.0.0.1", &ServerOptions{TLS: cfg})
	port := tcpPort(t, s.Sockets()[0])

	ccfg := p.clientConfig()
	ccfg.Certificates = []tls.Certificate{p.client}
	r, w := dial(t, "127.0.0.1", port, &DialOptions{TLS: ccfg})
	echo(t, r, w, "verified client")
	sn := <-seenc
	if sn.cn != "client" || sn.cfg != any(cfg) || !sn.server {
		t.Fatalf("server side saw %+v", sn)
	}

	// Without a certificate the server refuses; with TLS 1.3 the client
	// learns it on its first read.
	r2, w2, err := OpenConnection(testCtx(t), "127.0.0.1", port, &DialOptions{TLS: p.clientConfig()})
	if err == nil {
		defer stopStream(w2)
		_, err = r2.ReadLine(testCtx(t))
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if s.Accepted() != 1 {
		t.Fatalf("Accepted %d, want only the verified client", s.Accepted())
	}

	t.Run("unix needs a server name", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "s")
		us, err := StartUnixServer(testCtx(t), echoHandler, path, &ServerOptions{TLS: p.serverConfig()})
		if err != nil {
			t.Fatal(err)
		}
		defer shutdown(t, us)
		_, _, err = OpenUnixConnection(testCtx(t), path, &DialOptions{TLS: p.clientConfig()})
		if ve := asErr[*ValueError](t, err); ve.Msg != "you have to pass server_hostname when using ssl" {
			t.Fatalf("got %q", ve.Msg)
		}
		ccfg := p.clientConfig()
		ccfg.ServerName = "localhost"
		r, w := dialUnix(t, path, &DialOptions{TLS: ccfg})
		echo(t, r, w, "TLS over AF_UNIX")
	})
}

func TestTLSServerHandshakeTimeout(t *testing.T) {
	p := getPKI(t)
	s := startServer(t, echoHandler, "127.0.0.1", &ServerOptions{TLS: p.serverConfig(), HandshakeTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", s.Sockets()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(failAfter))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("silent client: got %v, want the server to hang up", err)
	}
	if s.Accepted() != 0 {
		t.Fatal("a connection that never shook hands was handed to the handler")
	}

	// Close does not wait out a pending handshake's 60 s.
	s2 := startServer(t, echoHandler, "127.0.0.1", &ServerOptions{TLS: p.serverConfig()})
	c2, err := net.Dial("tcp", s2.Sockets()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	// Give the accept loop time to hand the connection to its handshake.
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		s2.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(failAfter):
		t.Fatal("Close waited for a pending handshake")
	}
	_ = c2.SetReadDeadline(time.Now().Add(failAfter))
	if _, err := io.ReadAll(c2); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("pending client after Close: %v", err)
	}
}

// TestStartTLS upgrades both ends of a plain stream mid-stream, as in
// CPython's test_start_tls: echo in plaintext, upgrade, echo over TLS.
func TestStartTLS(t *testing.T) {
	p := getPKI(t)
	for _, kind := range []string{"tcp", "unix"} {
		t.Run(kind, func(t *testing.T) {
			handler := func(r *Reader, w *Writer) {
				defer w.Close()
				ctx := context.Background()
				line, err := r.ReadLine(ctx)
				if err != nil {
					return
				}
				_ = w.Write(line)
				if err := w.Drain(ctx); err != nil {
					return
				}
				if w.ExtraInfo("sslcontext") != nil {
					t.Error("server sslcontext set before StartTLS")
				}
				if err := w.StartTLS(ctx, p.serverConfig(), 0); err != nil {
					t.Errorf("server StartTLS: %v", err)
					return
				}
				if w.ExtraInfo("sslcontext") == nil {
					t.Error("server sslcontext nil after StartTLS")
				}
				line, err = r.ReadLine(ctx)
				if err != nil {
					return
				}
				_ = w.Write(line)
			}
			var s *Server
			var err error
			dialIt := func(opts *DialOptions) (*Reader, *Writer) {
				return dial(t, "127.0.0.1", tcpPort(t, s.Sockets()[0]), opts)
			}
			if kind == "tcp" {
				s, err = StartServer(testCtx(t), handler, "127.0.0.1", 0, nil)
			} else {
				path := filepath.Join(shortTempDir(t), "s")
				s, err = StartUnixServer(testCtx(t), handler, path, nil)
				dialIt = func(opts *DialOptions) (*Reader, *Writer) { return dialUnix(t, path, opts) }
			}
			if err != nil {
				t.Fatal(err)
			}
			defer shutdown(t, s)
			for i := range 20 {
				r, w := dialIt(nil)
				echo(t, r, w, "hello world 1!")
				if w.ExtraInfo("sslcontext") != nil || !w.CanWriteEOF() {
					t.Fatal("client looks like TLS before StartTLS")
				}
				ccfg := p.clientConfig()
				ccfg.ServerName = "localhost"
				if err := w.StartTLS(testCtx(t), ccfg, 0); err != nil {
					t.Fatalf("round %d: client StartTLS: %v", i, err)
				}
				if w.ExtraInfo("sslcontext") == nil || w.CanWriteEOF() || !w.IsTLS() {
					t.Fatal("client does not look like TLS after StartTLS")
				}
				if low, high := w.WriteBufferLimits(); high != DefaultTLSWriteHigh || low != DefaultTLSWriteHigh/4 {
					t.Fatalf("water marks after StartTLS (%d, %d)", low, high)
				}
				echo(t, r, w, "hello world 2!")
				got, err := r.Read(testCtx(t), -1)
				wantBytes(t, "after the server closed", got, err, "")
				w.Close()
				if err := w.WaitClosed(testCtx(t)); err != nil {
					t.Fatalf("WaitClosed: %v", err)
				}
			}
		})
	}
}

// TestStartTLSKeepsBufferedPlaintext: bytes already buffered when StartTLS
// is called stay readable as plaintext.
func TestStartTLSKeepsBufferedPlaintext(t *testing.T) {
	p := getPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte("plain\n")); err != nil {
			done <- err
			return
		}
		// Wait for the client's ClientHello, then speak TLS.
		tc := tls.Server(c, p.serverConfig())
		_ = tc.SetDeadline(time.Now().Add(failAfter))
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte("secret\n"))
		done <- err
	}()
	r, w := dial(t, "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, nil)
	waitUntil(t, "plaintext buffered", func() bool { return r.Buffered() == 6 })
	ccfg := p.clientConfig()
	ccfg.ServerName = "localhost"
	if err := w.StartTLS(testCtx(t), ccfg, 0); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadLine(testCtx(t))
	wantBytes(t, "plaintext line", got, err, "plain\n")
	got, err = r.ReadLine(testCtx(t))
	wantBytes(t, "TLS line", got, err, "secret\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStartTLSHandshakeTimeoutSynctest runs the default 60 s handshake
// timeout in a synctest bubble over an in-memory connection whose peer never
// answers.
func TestStartTLSHandshakeTimeoutSynctest(t *testing.T) {
	p := getPKI(t)
	synctest.Test(t, func(t *testing.T) {
		a, b := newMemConnPair()
		defer b.Close()
		_, w, err := NewStream(a, nil)
		if err != nil {
			t.Fatal(err)
		}
		ccfg := p.clientConfig()
		ccfg.ServerName = "localhost"
		start := time.Now()
		err = w.StartTLS(context.Background(), ccfg, 0)
		he := asErr[*HandshakeTimeoutError](t, err)
		if he.After != DefaultHandshakeTimeout || time.Since(start) != DefaultHandshakeTimeout {
			t.Fatalf("timed out after %v (%v), want exactly %v", time.Since(start), he.After, DefaultHandshakeTimeout)
		}
		if err := w.WaitClosed(context.Background()); !errors.As(err, &he) {
			t.Fatalf("stream after a failed StartTLS: %v", err)
		}
		if err := w.StartTLS(context.Background(), ccfg, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("StartTLS on a lost stream: %v", err)
		}
		synctest.Wait()
	})
}

// TestStartTLSBufferedClientHello: the client may send its ClientHello as
// soon as it has the server's last plaintext reply, so it can already sit
// in the server's buffer when the server calls StartTLS. It must go to the
// handshake, not stay behind as plaintext.
func TestStartTLSBufferedClientHello(t *testing.T) {
	p := getPKI(t)
	s := startServer(t, func(r *Reader, w *Writer) {
		defer w.Close()
		ctx := context.Background()
		if _, err := r.ReadLine(ctx); err != nil {
			return
		}
		_ = w.Write([]byte("go ahead\n"))
		// Let the ClientHello arrive and be buffered first.
		waitUntil(t, "the ClientHello is buffered", func() bool { return r.Buffered() > 0 })
		if err := w.StartTLS(ctx, p.serverConfig(), 0); err != nil {
			t.Errorf("server StartTLS: %v", err)
			return
		}
		if line, err := r.ReadLine(ctx); err == nil {
			_ = w.Write(line)
		}
	}, "127.0.0.1", nil)
	r, w := dial(t, "127.0.0.1", tcpPort(t, s.Sockets()[0]), nil)
	echoAs(t, r, w, "STARTTLS", "go ahead")
	ccfg := p.clientConfig()
	ccfg.ServerName = "localhost"
	if err := w.StartTLS(testCtx(t), ccfg, 0); err != nil {
		t.Fatal(err)
	}
	echo(t, r, w, "secret")
}

// echoAs sends msg+"\n" and expects want+"\n" back.
func echoAs(t testing.TB, r *Reader, w *Writer, msg, want string) {
	t.Helper()
	if err := w.Write([]byte(msg + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadLine(testCtx(t))
	wantBytes(t, "reply", got, err, want+"\n")
}
