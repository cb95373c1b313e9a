// Command streamctl is the command line of streammgrd for people: it lists,
// inspects and closes streams and servers, and connects, listens, relays
// and copies files through the daemon. The commands are in package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/streammgr/streammgr/cmd/streamctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
