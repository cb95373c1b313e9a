package streamcore

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A stale socket file is removed before binding only when it belongs to
// the server's user; another user's is left alone and the bind fails.
func TestStaleSocketOfAnotherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a socket file to another user")
	}
	path := filepath.Join(shortTempDir(t), "s")
	makeStaleSocket(t, path)
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := StartUnixServer(testCtx(t), func(*Reader, *Writer) {}, path, nil)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("StartUnixServer over another user's stale socket = %v, want EADDRINUSE", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("another user's socket file was removed: %v", err)
	}
	// Our own stale socket is replaced.
	if err := os.Lchown(path, os.Geteuid(), os.Getegid()); err != nil {
		t.Fatal(err)
	}
	s, err := StartUnixServer(testCtx(t), func(*Reader, *Writer) {}, path, nil)
	if err != nil {
		t.Fatalf("StartUnixServer over our own stale socket: %v", err)
	}
	shutdown(t, s)
}
