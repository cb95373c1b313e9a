package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

func TestParseTokens(t *testing.T) {
	good := "# comment\n\n  0123456789abcdef0123 , alice\nfedcba9876543210fedc,bob\n"
	tok, err := ParseTokens([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Len() != 2 {
		t.Fatalf("got %d tokens, want 2", tok.Len())
	}
	if n, ok := tok.lookup("0123456789abcdef0123"); !ok || n != "alice" {
		t.Fatalf("lookup: got %q %v, want alice", n, ok)
	}
	for _, tc := range []struct{ in, want string }{
		{"justatokenwithoutname0", "want TOKEN,NAME"},
		{"short,alice", "shorter than 16"},
		{"0123456789abcdef0123,uid:0", "reserved"},
		{"0123456789abcdef0123,anonymous", "reserved"},
		{"0123456789abcdef0123,a\n0123456789abcdef0123,b", "line 2: the same token appears twice"},
		{"0123456789 abcdef0123,a", "white space"},
		{"0123456789abcdef0123,", "want TOKEN,NAME"},
	} {
		if _, err := ParseTokens([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTokens(%q): got %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestLoadTokensRefusesReadableFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte("0123456789abcdef0123,alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("got %v, want a refusal naming chmod 600", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := LoadTokens(p); err != nil || tok.Len() != 1 {
		t.Fatalf("got %v, %v; want one token", tok, err)
	}
}

func callCtx(info credentials.AuthInfo, md ...string) context.Context {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.UnixAddr{Name: "@", Net: "unix"}, AuthInfo: info})
	if len(md) > 0 {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(md...))
	}
	return ctx
}

func verifiedTLS(cn string, dns ...string) credentials.TLSInfo {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	return credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}}
}

func TestIdentify(t *testing.T) {
	tok, err := ParseTokens([]byte("0123456789abcdef0123,alice\nfedcba9876543210fedc,ops\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Tokens: tok, IsAdmin: func(n string) bool { return n == "ops" || n == "uid:0" }}
	unixPeer := PeerCred{PID: 42, UID: 1000, GID: 1000}
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		want, via string
		admin     bool
		err       string
	}{
		{"unix uid", callCtx(unixPeer), "uid:1000", "unix", false, ""},
		{"unix root is admin", callCtx(PeerCred{PID: 1, UID: 0, GID: 0}), "uid:0", "unix", true, ""},
		{"unix with token", callCtx(unixPeer, "authorization", "Bearer 0123456789abcdef0123"), "alice", "token", false, ""},
		{"tls cert", callCtx(verifiedTLS("bob")), "bob", "cert", false, ""},
		{"tls cert dns name", callCtx(verifiedTLS("", "svc.example")), "svc.example", "cert", false, ""},
		{"tls admin token", callCtx(credentials.TLSInfo{}, "authorization", "bearer fedcba9876543210fedc"), "ops", "token", true, ""},
		{"tls nothing", callCtx(credentials.TLSInfo{}), "", "", false, "no client certificate and no bearer token"},
		{"tls unverified cert", callCtx(credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}}), "", "", false, "no client certificate"},
		{"tls reserved cert name", callCtx(verifiedTLS("uid:0")), "", "", false, "reserved"},
		{"tls nameless cert", callCtx(verifiedTLS("")), "", "", false, "names nobody"},
		{"unknown token", callCtx(unixPeer, "authorization", "Bearer nope-nope-nope-nope"), "", "", false, "unknown bearer token"},
		{"bad scheme", callCtx(unixPeer, "authorization", "Basic abc"), "", "", false, "Bearer TOKEN"},
		{"insecure", callCtx(Plaintext{}), Anonymous, "insecure", false, ""},
		{"insecure token", callCtx(Plaintext{}, "authorization", "Bearer 0123456789abcdef0123"), "alice", "token", false, ""},
		{"no peer", context.Background(), "", "", false, "no connection information"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Identify(tc.ctx)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !IsError(err) {
					t.Fatalf("got %+v, %v; want an *Error containing %q", id, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Name != tc.want || id.Via != tc.via || id.Admin != tc.admin {
				t.Fatalf("got %+v, want name %q via %q admin %v", id, tc.want, tc.via, tc.admin)
			}
		})
	}
}

// TestPeerCredentials checks ServerHandshake against a real Unix socket:
// the credentials are this process's.
func TestPeerCredentials(t *testing.T) {
	dir, err := os.MkdirTemp("", "smid")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", ln.Addr().String())
		if err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, info, err := ServerCredentials(nil).ServerHandshake(wrapped{c})
	if err != nil {
		t.Fatal(err)
	}
	pc, ok := info.(PeerCred)
	if !ok || pc.UID != os.Geteuid() || pc.PID != os.Getpid() || pc.GID != os.Getegid() {
		t.Fatalf("got %#v, want uid %d pid %d", info, os.Geteuid(), os.Getpid())
	}
}

// wrapped is a connection wrapper with NetConn, as the daemon's limiter.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }
