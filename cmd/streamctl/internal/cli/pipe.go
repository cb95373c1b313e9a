package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

func (a *app) connectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "connect HOST:PORT | connect unix:PATH",
		Short: "Connect through the daemon and pipe stdin and stdout, like nc",
		Long: `connect opens a connection through the daemon, copies stdin to it and what it
receives to stdout, like nc. At the end of stdin it half-closes the
connection (the peer reads EOF) and goes on reading; it exits once the peer's
side has ended (EOF), or when the connection fails.`,
		Args: exactArgs("ADDRESS"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			network, addr, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return a.withClient(ctx, func(c *streammgr.Client) error {
				conn, err := c.Open(ctx, network, addr)
				if err != nil {
					return err
				}
				return pipe(ctx, conn, a.stdin, a.stdout)
			})
		}),
	}
}

// pipe copies in to conn (then half-closes it) and conn to out until the
// peer's EOF, then closes conn. A failure of either copy is the result.
func pipe(ctx context.Context, conn *streammgr.Conn, in io.Reader, out io.Writer) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, in)
		if err == nil {
			err = conn.CloseWrite()
		}
		sent <- err
	}()
	_, rerr := io.Copy(out, conn)
	var serr error
	select {
	case serr = <-sent:
	default: // stdin is not done: the peer's end ends the command.
	}
	cerr := conn.Close()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case rerr != nil:
		return fmt.Errorf("receive: %w", rerr)
	case serr != nil:
		return fmt.Errorf("send: %w", serr)
	case cerr != nil && !errors.Is(cerr, net.ErrClosed):
		return cerr
	}
	return nil
}

func (a *app) listenCmd() *cobra.Command {
	var (
		command string
		once    bool
	)
	cmd := &cobra.Command{
		Use:   "listen [HOST:]PORT | listen unix:PATH",
		Short: "Listen through the daemon and print what connections send, or run a command per connection",
		Long: `listen starts a server in the daemon (without HOST: on 127.0.0.1; port 0 picks
a free one) and prints "listening on ADDRESS (SERVER-ID)" to stderr. It
accepts connections and prints what each sends to stdout, one connection
after the other; with --exec it runs CMD (with /bin/sh -c) for each
connection at once, with the connection as the command's stdin and stdout,
like nc -e. It runs until interrupted (SIGINT, SIGTERM), or with --once until
its first connection is done.`,
		Args: exactArgs("ADDRESS"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			network, addr, err := parseListen(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return a.withClient(ctx, func(c *streammgr.Client) error {
				l, err := c.Listen(ctx, network, addr)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "listening on %s (%s)\n", l.Addr(), l.ID())
				return a.serve(ctx, l, command, once)
			})
		}),
	}
	cmd.Flags().StringVarP(&command, "exec", "e", "", "run `CMD` for each connection, with the connection as its stdin and stdout")
	cmd.Flags().BoolVar(&once, "once", false, "exit after the first connection")
	return cmd
}

// serve accepts l's connections until ctx ends (or, with once, the first
// one is done).
func (a *app) serve(ctx context.Context, l *streammgr.Listener, command string, once bool) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.AcceptConn()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fmt.Fprintf(a.stderr, "connection from %s (%s)\n", conn.RemoteAddr(), conn.ID())
		handle := func() error { return a.printConn(ctx, conn) }
		if command != "" {
			handle = func() error { return a.execConn(ctx, conn, command) }
		}
		if once {
			if err := handle(); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		}
		report := func() {
			if err := handle(); err != nil && ctx.Err() == nil {
				fmt.Fprintf(a.stderr, "streamctl: %s: %v\n", conn.ID(), err)
			}
		}
		if command == "" {
			report() // one connection at a time: their bytes do not mix
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			report()
		}()
	}
}

// printConn copies what conn sends to stdout until its EOF.
func (a *app) printConn(ctx context.Context, conn *streammgr.Conn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, err := io.Copy(a.stdout, conn)
	if cerr := conn.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

// execConn runs command with conn as its stdin and stdout: conn's EOF
// closes the command's stdin, the end of its stdout half-closes conn.
func (a *app) execConn(ctx context.Context, conn *streammgr.Conn, command string) error {
	defer conn.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stderr = a.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", command, err)
	}
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		_, _ = io.Copy(stdin, conn)
		stdin.Close()
	}()
	_, cerr := io.Copy(conn, stdout)
	if cerr == nil {
		cerr = conn.CloseWrite()
	}
	werr := cmd.Wait()
	// The command is done: so is the connection (what the peer still sends
	// is discarded), and so the copy to the command's stdin.
	conn.Close()
	<-fed
	switch {
	case ctx.Err() != nil:
		return nil
	case werr != nil:
		return fmt.Errorf("%s: %w", strings.TrimSpace(command), werr)
	case cerr != nil:
		return cerr
	}
	return nil
}

func (a *app) relayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "relay A B",
		Short: "Relay two streams to each other inside the daemon",
		Long: `relay joins two streams inside the daemon, both ways, until both directions
reached EOF or one failed, then prints the bytes moved. A and B are stream
ids (s-...), or addresses (HOST:PORT, unix:PATH) to open first; streams it
opened are closed at the end.`,
		Args: exactArgs("A", "B"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			type target struct{ id, network, addr string }
			targets := make([]target, 2)
			for i, s := range args {
				if strings.HasPrefix(s, "s-") {
					targets[i].id = s
					continue
				}
				network, addr, err := parseTarget(s)
				if err != nil {
					return usagef("%s: want a stream id (s-...) or an address: %v", s, err)
				}
				targets[i].network, targets[i].addr = network, addr
			}
			ctx := cmd.Context()
			return a.withClient(ctx, func(c *streammgr.Client) error {
				var opened []string
				defer func() {
					for _, id := range opened {
						cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
						if ctx.Err() != nil {
							_ = c.AbortStream(cctx, id)
						} else {
							_ = c.CloseStream(cctx, id)
						}
						cancel()
					}
				}()
				for i := range targets {
					if targets[i].id != "" {
						continue
					}
					id, err := c.OpenStream(ctx, targets[i].network, targets[i].addr)
					if err != nil {
						return err
					}
					opened = append(opened, id)
					targets[i].id = id
				}
				r, err := c.Relay(ctx, targets[0].id, targets[1].id)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s -> %s: %d bytes\n%s -> %s: %d bytes\n",
					targets[0].id, targets[1].id, r.AToB, targets[1].id, targets[0].id, r.BToA)
				return nil
			})
		}),
	}
}
