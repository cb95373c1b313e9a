package manager

import (
	"crypto/tls"
	"crypto/x509"
	"time"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// clientTLS builds a client *tls.Config from request options; field
// prefixes name the request field in errors.
func clientTLS(o *smv1.TlsOptions, field string) (*tls.Config, time.Duration, error) {
	cfg := &tls.Config{
		ServerName:         o.GetServerHostname(),
		NextProtos:         o.GetAlpnProtocols(),
		InsecureSkipVerify: o.GetInsecureSkipVerify(),
		MinVersion:         tls.VersionTLS12,
	}
	if o.GetCaPem() != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(o.GetCaPem())) {
			return nil, 0, invalid(field+".ca_pem", "no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	if o.GetCertPem() != "" || o.GetKeyPem() != "" {
		cert, err := tls.X509KeyPair([]byte(o.GetCertPem()), []byte(o.GetKeyPem()))
		if err != nil {
			return nil, 0, invalid(field+".cert_pem", "certificate and key: "+err.Error())
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, handshakeTimeout(o), checkTimeout(o, field)
}

// serverTLS builds a server *tls.Config: cert_pem and key_pem required,
// client_ca_pem makes client certificates required.
func serverTLS(o *smv1.TlsOptions, field string) (*tls.Config, time.Duration, error) {
	if o.GetCertPem() == "" || o.GetKeyPem() == "" {
		return nil, 0, invalid(field+".cert_pem", "a TLS server needs cert_pem and key_pem")
	}
	cert, err := tls.X509KeyPair([]byte(o.GetCertPem()), []byte(o.GetKeyPem()))
	if err != nil {
		return nil, 0, invalid(field+".cert_pem", "certificate and key: "+err.Error())
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: o.GetAlpnProtocols(), MinVersion: tls.VersionTLS12}
	if o.GetClientCaPem() != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(o.GetClientCaPem())) {
			return nil, 0, invalid(field+".client_ca_pem", "no PEM certificate found")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, handshakeTimeout(o), checkTimeout(o, field)
}

func handshakeTimeout(o *smv1.TlsOptions) time.Duration {
	if o.GetHandshakeTimeout() == nil {
		return 0
	}
	return o.GetHandshakeTimeout().AsDuration()
}

func checkTimeout(o *smv1.TlsOptions, field string) error {
	if d := o.GetHandshakeTimeout(); d != nil && (d.CheckValid() != nil || d.AsDuration() <= 0) {
		return invalid(field+".handshake_timeout", "must be a positive duration")
	}
	return nil
}
