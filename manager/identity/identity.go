// Package identity knows who is calling streammgrd: the kernel's peer
// credentials on a Unix control socket, the subject of a verified client
// certificate or a bearer token on TCP (always over TLS unless the operator
// passed --insecure-tcp). It provides the gRPC transport credentials that
// capture this at connection time and the check each call runs (the daemon
// plugs it into go-grpc-middleware's auth interceptor).
package identity

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// Identity is who a call runs as.
type Identity struct {
	// Name identifies the caller to ownership, policy and quotas:
	// "uid:1000" for a Unix-socket caller without a token, the subject of
	// its client certificate or the name its token maps to otherwise, or
	// Anonymous for a TCP caller of an insecure listener without a token.
	Name string
	// Via is how the name was established: "unix", "cert", "token" or
	// "insecure".
	Via string
	// PID, UID and GID are the kernel's credentials of a Unix-socket
	// caller (-1 for TCP callers).
	PID, UID, GID int
	// Admin identities see and may close every handle.
	Admin bool
}

// Anonymous is the identity of a TCP caller without credentials on a
// listener the operator declared insecure (--insecure-tcp).
const Anonymous = "anonymous"

// UIDName is the identity name of a Unix-socket caller with this uid.
func UIDName(uid int) string { return "uid:" + strconv.Itoa(uid) }

// reservedName reports names a certificate or token may not claim: those
// of uid identities and Anonymous.
func reservedName(name string) bool {
	return name == Anonymous || strings.HasPrefix(name, "uid:")
}

// String is the name, with the process for a Unix-socket caller.
func (id Identity) String() string {
	if id.PID >= 0 && id.Via == "unix" {
		return id.Name + " (pid " + strconv.Itoa(id.PID) + ")"
	}
	return id.Name
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity a call runs as, if it has one.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Error is a call refused for want of an identity (UNAUTHENTICATED).
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// IsError reports whether err is an *Error.
func IsError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
