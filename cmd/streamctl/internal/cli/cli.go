// Package cli is streamctl, the command line of streammgrd for people: every
// command, its flags and its exit codes. Main runs one command line with
// the given standard streams, so the commands run the same in tests as in
// the binary.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	streammgr "github.com/streammgr/streammgr/clients/go"
)

// cleanupTimeout bounds the calls that release what a command opened.
const cleanupTimeout = 10 * time.Second

// Exit codes of streamctl.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = 0
	// ExitError: the daemon answered an error (or a connection through it
	// failed, or a local file could not be used).
	ExitError = 1
	// ExitUsage: the command line is wrong.
	ExitUsage = 2
	// ExitUnreachable: nothing answered at the daemon's address.
	ExitUnreachable = 3
)

const exitCodesHelp = `Exit codes:
  0  success
  1  an error from the daemon, or from a connection through it, or a local file
  2  usage: an unknown command or flag, missing or malformed arguments
  3  the daemon cannot be reached at its address`

// Main runs streamctl with args (without the program name) and returns its
// exit code; errors are printed once, to stderr.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = runError{errors.New("interrupted")}
	}
	fmt.Fprintf(stderr, "streamctl: %v\n", err)
	var re runError
	if !errors.As(err, &re) {
		fmt.Fprintln(stderr, "Run 'streamctl --help' for usage.")
		return ExitUsage
	}
	if errors.Is(err, streammgr.ErrDaemonUnreachable) {
		return ExitUnreachable
	}
	return ExitError
}

// runError is an error of a command that ran (not a usage error).
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// usageError is a command line a command found wrong.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// app holds the global flags and the standard streams.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	addr, token            string
	tlsCA, tlsCert, tlsKey string
	insecure               bool
	tokenChanged           bool
}

// run adapts a command's function to cobra, marking its errors as run
// errors unless they are usage errors.
func run(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd, args)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return runError{err}
	}
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "streamctl",
		Short: "streamctl drives streammgrd, the daemon that owns sockets for its clients",
		Long: `streamctl drives streammgrd, the daemon that owns sockets for its clients:
it lists, inspects and closes the streams and servers you own there, and
connects, listens, relays and copies files through it, like nc.

The daemon's address is --addr, else $STREAMMGR_ADDR, else its default socket
($XDG_RUNTIME_DIR/streammgrd.sock, or $TMPDIR/streammgrd-$UID/streammgrd.sock).
A TCP address uses TLS (--tls-ca, --tls-cert, --tls-key) unless --insecure.

` + exitCodesHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVar(&a.addr, "addr", "", "the daemon's address, unix:/path or host:port (default $STREAMMGR_ADDR or the daemon's default socket)")
	f.StringVar(&a.token, "token", "", "bearer token naming the caller (default $STREAMMGR_TOKEN)")
	f.StringVar(&a.tlsCA, "tls-ca", "", "PEM file of the roots that verify the daemon's certificate (default: the system roots)")
	f.StringVar(&a.tlsCert, "tls-cert", "", "PEM file of the client certificate (mTLS)")
	f.StringVar(&a.tlsKey, "tls-key", "", "PEM file of the client certificate's key")
	f.BoolVar(&a.insecure, "insecure", false, "plain text on TCP, for a daemon started with --insecure-tcp")
	root.AddCommand(a.lsCmd(), a.inspectCmd(), a.closeCmd(), a.abortCmd(), a.connectCmd(),
		a.listenCmd(), a.relayCmd(), a.sendCmd(), a.recvCmd(), a.healthCmd())
	for _, c := range root.Commands() {
		c.Long = strings.TrimSpace(c.Long+"\n\n"+exitCodesHelp) + "\n"
	}
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		a.tokenChanged = cmd.Flags().Changed("token")
	}
	return root
}

// client dials the daemon with the global flags.
func (a *app) client(ctx context.Context) (*streammgr.Client, error) {
	var opts []streammgr.Option
	if a.tokenChanged {
		opts = append(opts, streammgr.WithToken(a.token))
	}
	if a.tlsCA != "" || a.tlsCert != "" || a.tlsKey != "" {
		opts = append(opts, streammgr.WithTLSFiles(a.tlsCA, a.tlsCert, a.tlsKey))
	}
	if a.insecure {
		opts = append(opts, streammgr.WithInsecure())
	}
	return streammgr.Dial(ctx, a.addr, opts...)
}

// withClient runs f with a client, closing it after.
func (a *app) withClient(ctx context.Context, f func(*streammgr.Client) error) error {
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

// exactArgs is cobra.ExactArgs naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("want %d argument(s), %s; got %d", len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// parseTarget parses an address to connect to: unix:PATH or HOST:PORT.
func parseTarget(s string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if p == "" {
			return "", "", usagef("%q: empty socket path", s)
		}
		return "unix", p, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || !isPort(port, false) {
		return "", "", usagef("%q: want HOST:PORT or unix:PATH", s)
	}
	return "tcp", s, nil
}

// parseListen parses an address to listen on: unix:PATH, [HOST:]PORT or
// HOST:PORT. Without a host it is the loopback address 127.0.0.1.
func parseListen(s string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if p == "" {
			return "", "", usagef("%q: empty socket path", s)
		}
		return "unix", p, nil
	}
	if isPort(s, true) {
		return "tcp", net.JoinHostPort("127.0.0.1", s), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || !isPort(port, true) {
		return "", "", usagef("%q: want [HOST:]PORT or unix:PATH", s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

func isPort(s string, zeroOK bool) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && (zeroOK || n > 0)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
