package streamcore

import (
	"net"

	"golang.org/x/sys/unix"
)

// soReusePort is SO_REUSEPORT on Linux (the syscall package lacks it).
const soReusePort = 0xf

// tcpClosed is TCP_CLOSE, the state of a TCP socket its peer reset.
const tcpClosed = 7

// socketReset reports whether conn is a TCP socket in the CLOSE state: its
// peer reset it (or it was shut down), so the error a relay met on it was
// its own.
func socketReset(conn net.Conn) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err == nil && info.State == tcpClosed
	})
	return closed
}
