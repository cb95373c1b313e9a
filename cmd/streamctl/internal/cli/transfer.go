package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

// peerConn connects to address, or with listen accepts one connection on
// it (printing where it listens to stderr).
func (a *app) peerConn(ctx context.Context, c *streammgr.Client, address string, listen bool) (*streammgr.Conn, error) {
	if !listen {
		network, addr, err := parseTarget(address)
		if err != nil {
			return nil, err
		}
		return c.Open(ctx, network, addr)
	}
	network, addr, err := parseListen(address)
	if err != nil {
		return nil, err
	}
	l, err := c.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	fmt.Fprintf(a.stderr, "listening on %s (%s)\n", l.Addr(), l.ID())
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	conn, err := l.AcceptConn()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return conn, nil
}

// progress is a progress bar on stderr when stderr is a terminal (size -1:
// unknown), else nil.
func (a *app) progress(size int64, desc string) *progressbar.ProgressBar {
	if !isTerminal(a.stderr) {
		return nil
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }),
	)
}

// counted adds a progress bar to w, if there is one.
func counted(w io.Writer, bar *progressbar.ProgressBar) io.Writer {
	if bar == nil {
		return w
	}
	return io.MultiWriter(w, bar)
}

func (a *app) sendCmd() *cobra.Command {
	var listen bool
	cmd := &cobra.Command{
		Use:   "send FILE HOST:PORT | send FILE unix:PATH | send [--listen] FILE [HOST:]PORT",
		Short: "Send a file through the daemon",
		Long: `send connects through the daemon to HOST:PORT, or listens when given only a
port (PORT or :PORT, on 127.0.0.1) or --listen and waits for one connection,
and sends FILE ("-": stdin), then half-closes the connection and waits for
the peer to close its side, so that the peer has read every byte. On a
terminal, stderr shows a progress bar (bytes, rate, time left).`,
		Args: exactArgs("FILE", "ADDRESS"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			listen, _, err := parseAddress(args[1], listen)
			if err != nil {
				return err
			}
			in, size, err := a.openInput(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			ctx := cmd.Context()
			return a.withClient(ctx, func(c *streammgr.Client) error {
				conn, err := a.peerConn(ctx, c, args[1], listen)
				if err != nil {
					return err
				}
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				defer stop()
				defer conn.Close()
				bar := a.progress(size, "send")
				n, err := io.Copy(counted(conn, bar), in)
				if err != nil {
					return fmt.Errorf("send %s: %w", args[0], ctxErr(ctx, err))
				}
				if err := conn.CloseWrite(); err != nil {
					return err
				}
				if _, err := io.Copy(io.Discard, conn); err != nil {
					return fmt.Errorf("send %s: waiting for the peer to close: %w", args[0], ctxErr(ctx, err))
				}
				if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
					return err
				}
				if bar != nil {
					_ = bar.Finish()
					fmt.Fprintf(a.stderr, "sent %d bytes to %s\n", n, conn.RemoteAddr())
				}
				return nil
			})
		}),
	}
	cmd.Flags().BoolVarP(&listen, "listen", "l", false, "listen on the address and send to the first connection")
	return cmd
}

func (a *app) recvCmd() *cobra.Command {
	var listen bool
	cmd := &cobra.Command{
		Use:   "recv HOST:PORT FILE | recv unix:PATH FILE | recv [--listen] [HOST:]PORT FILE",
		Short: "Receive a file through the daemon",
		Long: `recv connects through the daemon to HOST:PORT, or listens when given only a
port (PORT or :PORT, on 127.0.0.1) or --listen, and writes what the
connection sends to FILE ("-": stdout) until its EOF. On a terminal, stderr
shows the bytes received and the rate.`,
		Args: exactArgs("ADDRESS", "FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			listen, addr, err := parseAddress(args[0], listen)
			if err != nil {
				return err
			}
			out, err := a.openOutput(args[1])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			err = a.withClient(ctx, func(c *streammgr.Client) error {
				conn, err := a.peerConn(ctx, c, addr, listen)
				if err != nil {
					return err
				}
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				defer stop()
				defer conn.Close()
				bar := a.progress(-1, "recv")
				n, err := io.Copy(counted(out, bar), conn)
				if err != nil {
					return fmt.Errorf("recv %s: %w", args[1], ctxErr(ctx, err))
				}
				if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
					return err
				}
				if bar != nil {
					_ = bar.Finish()
					fmt.Fprintf(a.stderr, "received %d bytes from %s\n", n, conn.RemoteAddr())
				}
				return nil
			})
			if cerr := out.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("recv %s: %w", args[1], cerr)
			}
			return err
		}),
	}
	cmd.Flags().BoolVarP(&listen, "listen", "l", false, "listen on the address and receive from the first connection")
	return cmd
}

// parseAddress checks a send or recv address and says whether to listen:
// with --listen, or (recv) when the address has no host.
func parseAddress(s string, listen bool) (bool, string, error) {
	if !listen && !strings.HasPrefix(s, "unix:") && (isPort(s, true) || strings.HasPrefix(s, ":")) {
		listen = true
	}
	var err error
	if listen {
		_, _, err = parseListen(s)
	} else {
		_, _, err = parseTarget(s)
	}
	return listen, s, err
}

// openInput opens the file to send ("-": stdin) and tells its size (-1:
// unknown).
func (a *app) openInput(name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(a.stdin), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return f, size, nil
}

// nopWriteCloser is stdout as the file recv writes.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// openOutput creates the file to receive into ("-": stdout).
func (a *app) openOutput(name string) (io.WriteCloser, error) {
	if name == "-" {
		return nopWriteCloser{a.stdout}, nil
	}
	return os.Create(name)
}

// ctxErr prefers the context's error (an interrupt) to the one it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
