package manager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"

	"github.com/streammgr/streammgr/manager/identity"
	"github.com/streammgr/streammgr/manager/policy"
)

// loadSecurity reads what names callers and what they may do: the policy
// file, the token file, the TLS files of TCP listeners, and the audit log.
func (d *Daemon) loadSecurity() error {
	c := &d.cfg
	if c.Policy == nil {
		if c.ConfigFile != "" {
			p, err := policy.Load(c.ConfigFile)
			if err != nil {
				return err
			}
			c.Policy = p
		} else {
			c.Policy = policy.Default()
		}
	}
	var tokens *identity.Tokens
	if c.TokenFile != "" {
		t, err := identity.LoadTokens(c.TokenFile)
		if err != nil {
			return err
		}
		tokens = t
	}
	d.auth = &identity.Authenticator{Tokens: tokens, IsAdmin: c.Policy.IsAdmin}
	switch {
	case c.TLSCert != "" || c.TLSKey != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		d.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if c.TLSClientCA != "" {
			pem, err := os.ReadFile(c.TLSClientCA)
			if err != nil {
				return fmt.Errorf("--tls-client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--tls-client-ca %s: no PEM certificate found", c.TLSClientCA)
			}
			d.tls.ClientCAs = pool
			// Token callers need no certificate; without tokens everyone
			// needs one.
			d.tls.ClientAuth = tls.RequireAndVerifyClientCert
			if tokens.Len() > 0 {
				d.tls.ClientAuth = tls.VerifyClientCertIfGiven
			}
		} else if tokens.Len() == 0 {
			return fmt.Errorf("--tls-cert: TLS names no caller without --tls-client-ca (client certificates) or --token-file (bearer tokens)")
		}
	case c.TLSClientCA != "":
		return fmt.Errorf("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if c.Audit == nil && c.AuditLog != "" {
		f, err := os.OpenFile(c.AuditLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		d.auditFile = f
		c.Audit = slog.New(slog.NewJSONHandler(f, nil))
	}
	if c.Audit == nil {
		c.Audit = d.log
	}
	if ids := c.Policy.Identities(); len(ids) > 0 || c.ConfigFile != "" {
		d.log.Info("policy loaded", "file", c.ConfigFile, "identities", ids, "tokens", tokens.Len())
	}
	return nil
}

// securityOptions are the gRPC server's transport credentials (peer
// credentials on Unix sockets, TLS on TCP) and the interceptors that
// establish each call's identity (every service but health and
// reflection).
func (d *Daemon) securityOptions() []grpc.ServerOption {
	authn := func(ctx context.Context) (context.Context, error) {
		id, err := d.auth.Identify(ctx)
		if err != nil {
			return nil, toStatus(err)
		}
		return identity.NewContext(ctx, id), nil
	}
	authenticated := selector.MatchFunc(notInfra)
	return []grpc.ServerOption{
		grpc.Creds(identity.ServerCredentials(d.tls)),
		grpc.ChainUnaryInterceptor(selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(authn), authenticated)),
		grpc.ChainStreamInterceptor(selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(authn), authenticated)),
	}
}

func (d *Daemon) closeAudit() {
	if d.auditFile != nil {
		d.auditFile.Close()
	}
}
