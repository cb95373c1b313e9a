// Package testdaemon builds and runs a real streammgrd for streamctl's
// tests: on a short Unix socket path, with bearer tokens that give each
// test an identity of its own (so that it sees only its own handles).
package testdaemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

// Build builds the Go package pkg into dir/name and returns its path.
func Build(dir, pkg, name string) (string, error) {
	bin := filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// Daemon is a running streammgrd.
type Daemon struct {
	// Addr is its address, "unix:/...".
	Addr string
	// Tokens maps identity names to bearer tokens the daemon knows.
	Tokens map[string]string

	cmd    *exec.Cmd
	exited chan error
	log    *Buffer
}

// Start runs the streammgrd binary bin on a socket in dir, with a token for
// each of names, and waits until it answers.
func Start(bin, dir string, names ...string) (*Daemon, error) {
	d := &Daemon{Tokens: map[string]string{}, exited: make(chan error, 1), log: &Buffer{}}
	var toks strings.Builder
	for _, n := range names {
		tok := n + "-token-0123456789abcdef"
		d.Tokens[n] = tok
		fmt.Fprintf(&toks, "%s,%s\n", tok, n)
	}
	args := []string{"--listen", "unix:" + filepath.Join(dir, "d.sock")}
	if len(names) > 0 {
		tokens := filepath.Join(dir, "tokens")
		if err := os.WriteFile(tokens, []byte(toks.String()), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--token-file", tokens)
	}
	d.Addr = "unix:" + filepath.Join(dir, "d.sock")
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.exited <- d.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := streammgr.Dial(ctx, d.Addr)
		cancel()
		if err == nil {
			c.Close()
			return d, nil
		}
		select {
		case err := <-d.exited:
			return nil, fmt.Errorf("streammgrd exited: %v\n%s", err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			_ = d.cmd.Process.Kill()
			<-d.exited
			return nil, fmt.Errorf("streammgrd does not answer: %v\n%s", err, d.log)
		}
		time.Sleep(20 * time.Millisecond) // polling for the socket to appear
	}
}

// Stop stops the daemon with SIGTERM; it must exit 0.
func (d *Daemon) Stop() error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("streammgrd: %v\n%s", err, d.log)
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("streammgrd did not exit on SIGTERM\n%s", d.log)
	}
}

// Log is what the daemon logged so far.
func (d *Daemon) Log() string { return d.log.String() }

// Buffer is a bytes.Buffer safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bytes returns a copy of what was written.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}
