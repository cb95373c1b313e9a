// Package streamtest provides fixtures for testing code built on streamcore.
package streamtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"time"
)

// PKIOptions adjusts the certificates made by NewPKI. The zero value gives
// a server certificate named "localhost" and a client certificate named
// "client".
type PKIOptions struct {
	// ServerCommonName is the subject common name of the server
	// certificate; empty means "localhost".
	ServerCommonName string
	// ClientCommonName is the subject common name of the client
	// certificate; empty means "client".
	ClientCommonName string
	// ExtraDNSNames are DNS names the server certificate holds in
	// addition to localhost, 127.0.0.1 and ::1.
	ExtraDNSNames []string
}

// PKI is a throwaway certificate authority with a server and a client
// certificate signed by it, all ECDSA P-256 and valid from an hour ago for
// a day. Its fields are not to be modified.
type PKI struct {
	// CA is the certificate authority's certificate and CAPEM the same in
	// PEM form.
	CA    *x509.Certificate
	CAPEM string
	// CertPool holds only CA, for use as RootCAs or ClientCAs.
	CertPool *x509.CertPool

	// Server is the server certificate for localhost, 127.0.0.1 and ::1
	// (and PKIOptions.ExtraDNSNames), usable for server authentication.
	// It holds the leaf alone, without the CA.
	Server tls.Certificate
	// ServerCertPEM and ServerKeyPEM are Server's certificate and its
	// PKCS #8 private key in PEM form.
	ServerCertPEM, ServerKeyPEM string

	// Client is the client certificate, usable for client authentication.
	Client tls.Certificate
	// ClientCertPEM and ClientKeyPEM are Client's certificate and its
	// PKCS #8 private key in PEM form.
	ClientCertPEM, ClientKeyPEM string

	issue func(*x509.Certificate) (tls.Certificate, string, string, error)
}

// IssueClient signs one more client certificate, with subject common name
// cn, and returns it and its key in PEM form.
func (p *PKI) IssueClient(cn string) (certPEM, keyPEM string, err error) {
	_, certPEM, keyPEM, err = p.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return certPEM, keyPEM, err
}

// NewPKI makes a new CA and a server and a client certificate signed by it.
// opts may be nil.
func NewPKI(opts *PKIOptions) (*PKI, error) {
	var o PKIOptions
	if opts != nil {
		o = *opts
	}
	if o.ServerCommonName == "" {
		o.ServerCommonName = "localhost"
	}
	if o.ClientCommonName == "" {
		o.ClientCommonName = "client"
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "streamtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if caTmpl.SerialNumber, err = serial(); err != nil {
		return nil, err
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p := &PKI{
		CA:       ca,
		CAPEM:    string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		CertPool: x509.NewCertPool(),
	}
	p.CertPool.AddCert(ca)

	leaf := func(tmpl *x509.Certificate) (tls.Certificate, string, string, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, "", "", err
		}
		if tmpl.SerialNumber, err = serial(); err != nil {
			return tls.Certificate{}, "", "", err
		}
		tmpl.NotBefore, tmpl.NotAfter = caTmpl.NotBefore, caTmpl.NotAfter
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return tls.Certificate{}, "", "", err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return tls.Certificate{}, "", "", err
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		return pair, string(certPEM), string(keyPEM), err
	}
	p.issue = leaf
	if p.Server, p.ServerCertPEM, p.ServerKeyPEM, err = leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: o.ServerCommonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    append([]string{"localhost"}, o.ExtraDNSNames...),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}); err != nil {
		return nil, err
	}
	if p.Client, p.ClientCertPEM, p.ClientKeyPEM, err = leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: o.ClientCommonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// ServerConfig returns a new TLS server configuration presenting Server.
// It does not ask for client certificates; set ClientAuth and ClientCAs
// (to CertPool) for mutual TLS.
func (p *PKI) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Server}, MinVersion: tls.VersionTLS12}
}

// ClientConfig returns a new TLS client configuration that trusts only the
// CA. It presents no certificate and leaves ServerName empty; set
// Certificates to Client for mutual TLS.
func (p *PKI) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.CertPool, MinVersion: tls.VersionTLS12}
}

// serial returns a random positive certificate serial number.
func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}
