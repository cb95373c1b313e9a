package identity

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// MinTokenLength is the shortest bearer token a token file may hold.
const MinTokenLength = 16

// Tokens maps bearer tokens to identity names. Only the tokens' SHA-256
// digests are kept.
type Tokens struct {
	names map[[sha256.Size]byte]string
}

// LoadTokens reads a token file: one "TOKEN,NAME" per line; blank lines
// and lines starting with # are ignored. The file must not be readable by
// group or others, tokens must be at least MinTokenLength characters and
// unique, and names may not be "anonymous" or start with "uid:".
func LoadTokens(path string) (*Tokens, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token file %s has mode %v: it holds secrets, make it readable by the daemon's user only (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	t, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens parses the contents of a token file (see LoadTokens).
func ParseTokens(data []byte) (*Tokens, error) {
	t := &Tokens{names: map[[sha256.Size]byte]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tok, name, ok := strings.Cut(line, ",")
		tok, name = strings.TrimSpace(tok), strings.TrimSpace(name)
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("line %d: want TOKEN,NAME", n)
		case len(tok) < MinTokenLength:
			return nil, fmt.Errorf("line %d: the token is shorter than %d characters", n, MinTokenLength)
		case strings.ContainsAny(tok, " \t"):
			return nil, fmt.Errorf("line %d: the token contains white space", n)
		case reservedName(name):
			return nil, fmt.Errorf("line %d: name %q is reserved (uid:N names Unix-socket callers, anonymous the callers of an insecure listener)", n, name)
		}
		h := sha256.Sum256([]byte(tok))
		if _, dup := t.names[h]; dup {
			return nil, fmt.Errorf("line %d: the same token appears twice", n)
		}
		t.names[h] = name
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.names)
}

func (t *Tokens) lookup(tok string) (string, bool) {
	if t == nil {
		return "", false
	}
	name, ok := t.names[sha256.Sum256([]byte(tok))]
	return name, ok
}

// Authenticator establishes the identity of each call.
type Authenticator struct {
	// Tokens are the accepted bearer tokens (nil: none).
	Tokens *Tokens
	// IsAdmin reports the identities with admin rights (nil: none).
	IsAdmin func(name string) bool
}

// Identify returns who the call of ctx is, from the connection's
// credentials (peer.FromContext) and its "authorization: Bearer TOKEN"
// metadata:
//   - a bearer token names the caller on any connection, and an unknown
//     token is refused;
//   - otherwise a Unix-socket caller is uid:N, a TLS caller the subject of
//     its verified client certificate (its common name, or its first DNS
//     name), and a caller of an insecure listener Anonymous;
//   - a TLS caller with neither certificate nor token has no identity.
//
// A refusal is an *Error.
func (a *Authenticator) Identify(ctx context.Context) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, &Error{Msg: "no connection information"}
	}
	id := Identity{PID: -1, UID: -1, GID: -1}
	if pc, ok := p.AuthInfo.(PeerCred); ok {
		id.PID, id.UID, id.GID = pc.PID, pc.UID, pc.GID
	}
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		scheme, tok, found := strings.Cut(vals[0], " ")
		if !found || !strings.EqualFold(scheme, "bearer") {
			return Identity{}, &Error{Msg: `authorization metadata: want "Bearer TOKEN"`}
		}
		name, ok := a.Tokens.lookup(strings.TrimSpace(tok))
		if !ok {
			return Identity{}, &Error{Msg: "unknown bearer token"}
		}
		id.Name, id.Via = name, "token"
		return a.finish(id), nil
	}
	switch info := p.AuthInfo.(type) {
	case PeerCred:
		id.Name, id.Via = UIDName(info.UID), "unix"
	case credentials.TLSInfo:
		if len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
			return Identity{}, &Error{Msg: "no client certificate and no bearer token: TCP callers need one of them"}
		}
		name := certName(info.State.PeerCertificates[0])
		if name == "" {
			return Identity{}, &Error{Msg: "the client certificate names nobody: it has no subject common name and no DNS name"}
		}
		if reservedName(name) {
			return Identity{}, &Error{Msg: fmt.Sprintf("the client certificate's name %q is reserved", name)}
		}
		id.Name, id.Via = name, "cert"
	case Plaintext:
		id.Name, id.Via = Anonymous, "insecure"
	default:
		return Identity{}, &Error{Msg: "the connection carries no credentials"}
	}
	return a.finish(id), nil
}

func (a *Authenticator) finish(id Identity) Identity {
	if a.IsAdmin != nil {
		id.Admin = a.IsAdmin(id.Name)
	}
	return id
}

// certName is the identity a client certificate names.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}
