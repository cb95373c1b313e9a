package streamcore

import (
	"context"
	"net"
	"os"
	"syscall"
	"testing"
)

// FromFile adopts a connected socket given as a file (asyncio's sock=); the
// caller's file stays its own.
func TestFromFileAdoptsSocket(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine := os.NewFile(uintptr(fds[0]), "mine")
	peerFile := os.NewFile(uintptr(fds[1]), "peer")
	peer, err := net.FileConn(peerFile)
	peerFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	r, w, err := FromFile(mine, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := mine.Close(); err != nil { // the stream holds its own duplicate
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	if _, err := peer.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadExactly(ctx, 3); err != nil || string(got) != "abc" {
		t.Fatalf("ReadExactly = %q, %v", got, err)
	}
	if !w.CanWriteEOF() {
		t.Fatal("an adopted Unix socket cannot write EOF")
	}
	if err := w.Write([]byte("xyz")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := w.WaitClosed(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	n, _ := peer.Read(buf)
	if string(buf[:n]) != "xyz" {
		t.Fatalf("peer read %q, want xyz", buf[:n])
	}
}
