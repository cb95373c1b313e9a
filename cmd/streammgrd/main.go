// Command streammgrd is the streammgr daemon: it owns sockets on behalf of
// remote clients and serves the streammgr.v1.StreamService gRPC API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/streammgr/streammgr/manager"
)

const about = `streammgrd owns TCP, Unix and TLS sockets on behalf of its clients and lets
them drive those sockets over gRPC (streammgr.v1.StreamService) with the
semantics of Python's asyncio Streams: open_connection, start_server,
StreamReader and StreamWriter. It listens on a Unix socket only its user can
reach unless told otherwise; callers are identified (peer credentials, client
certificates, bearer tokens) and held to the policy of --config.

Usage: streammgrd [flags]
`

func main() {
	var cfg manager.Config
	fs := flag.CommandLine
	cfg.BindFlags(fs)
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), about+"\nFlags:\n")
		fs.PrintDefaults()
	}
	flag.Parse()
	if *version {
		fmt.Println("streammgrd", manager.Version())
		return
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "streammgrd: unexpected argument %q (streammgrd takes flags only; see --help)\n", fs.Arg(0))
		os.Exit(2)
	}
	log, err := cfg.Logger(os.Stderr)
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var d *manager.Daemon
		if d, err = manager.NewDaemon(cfg, log); err == nil {
			err = d.Serve(ctx)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "streammgrd:", err)
		os.Exit(1)
	}
}
