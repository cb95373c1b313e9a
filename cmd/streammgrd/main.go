// Command streammgrd is the streammgr daemon: it owns sockets on behalf of
// remote clients and serves the streammgr.v1.StreamService gRPC API.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/streammgr/streammgr/manager"
)

func main() {
	var cfg manager.Config
	cfg.BindFlags(flag.CommandLine)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := manager.NewDaemon(cfg, log)
	if err == nil {
		err = d.Serve(ctx)
	}
	if err != nil {
		log.Error("streammgrd", "err", err)
		os.Exit(1)
	}
}
