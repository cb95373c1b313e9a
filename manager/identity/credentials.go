package identity

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// PeerCred is the AuthInfo of a Unix-socket connection: the credentials
// the kernel recorded for the peer when it connected (SO_PEERCRED).
type PeerCred struct {
	credentials.CommonAuthInfo
	PID, UID, GID int
}

// AuthType implements credentials.AuthInfo.
func (PeerCred) AuthType() string { return "peercred" }

// Plaintext is the AuthInfo of a TCP connection without TLS (an insecure
// listener).
type Plaintext struct{ credentials.CommonAuthInfo }

// AuthType implements credentials.AuthInfo.
func (Plaintext) AuthType() string { return "insecure" }

// ServerCredentials returns the daemon's transport credentials: Unix
// connections are plaintext and carry the peer's credentials; TCP
// connections run the TLS handshake of tlsCfg, or stay plaintext when
// tlsCfg is nil (an insecure listener).
func ServerCredentials(tlsCfg *tls.Config) credentials.TransportCredentials {
	c := &serverCreds{}
	if tlsCfg != nil {
		c.tls = credentials.NewTLS(tlsCfg)
	}
	return c
}

type serverCreds struct {
	tls credentials.TransportCredentials
}

// netConner is a connection wrapping another (the daemon's connection
// limiter, tls.Conn).
type netConner interface{ NetConn() net.Conn }

// unixConn finds the Unix socket under a wrapped connection.
func unixConn(c net.Conn) (*net.UnixConn, bool) {
	for {
		if u, ok := c.(*net.UnixConn); ok {
			return u, true
		}
		w, ok := c.(netConner)
		if !ok {
			return nil, false
		}
		c = w.NetConn()
	}
}

func (c *serverCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if u, ok := unixConn(conn); ok {
		cred, err := peerCred(u)
		if err != nil {
			return nil, nil, err
		}
		return conn, cred, nil
	}
	if c.tls != nil {
		return c.tls.ServerHandshake(conn)
	}
	return conn, Plaintext{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

// peerCred reads SO_PEERCRED of a Unix socket.
func peerCred(u *net.UnixConn) (PeerCred, error) {
	rc, err := u.SyscallConn()
	if err != nil {
		return PeerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		uc   *unix.Ucred
		uerr error
	)
	if err := rc.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if uerr != nil {
		return PeerCred{}, fmt.Errorf("peer credentials: %w", uerr)
	}
	return PeerCred{
		// A local socket: nobody between the peer and the daemon.
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		PID:            int(uc.Pid), UID: int(uc.Uid), GID: int(uc.Gid),
	}, nil
}

func (c *serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, fmt.Errorf("identity: server credentials used by a client")
}

func (c *serverCreds) Info() credentials.ProtocolInfo {
	if c.tls != nil {
		return c.tls.Info()
	}
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	n := &serverCreds{}
	if c.tls != nil {
		n.tls = c.tls.Clone()
	}
	return n
}

func (c *serverCreds) OverrideServerName(string) error { return nil }
