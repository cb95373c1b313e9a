// Package streammgr is the Go client of streammgrd, the daemon that owns
// sockets on behalf of its clients (streammgr.v1.StreamService).
//
// Dial connects to a daemon. Open connects through it and returns a *Conn,
// a net.Conn carried by the daemon's Attach call; Listen starts a server in
// the daemon and returns a net.Listener whose connections are *Conns too.
// Streams, Servers, Stream and Server list and inspect the caller's
// handles; CloseStream, AbortStream, CloseServer and Relay act on them by
// id.
//
// Errors from the daemon are *Error values. Each carries the daemon's
// reason, and errors.Is matches it against the sentinel of that reason
// (ErrConnectionRefused, ErrStreamNotFound, ...) and, when the daemon
// reports an errno, against that syscall.Errno (syscall.ECONNREFUSED, ...):
//
//	c, err := cl.Open(ctx, "tcp", "127.0.0.1:9")
//	if errors.Is(err, streammgr.ErrConnectionRefused) { ... }
//
// No generated protobuf type appears in this package's API.
package streammgr
