package streammgr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// Environment variables Dial reads.
const (
	// EnvAddr is the daemon's address when Dial is given none.
	EnvAddr = "STREAMMGR_ADDR"
	// EnvToken is the bearer token when no WithToken option is given.
	EnvToken = "STREAMMGR_TOKEN"
)

// Client is a connection to one streammgrd. Its methods may be called
// concurrently. Close it when done, after the Conns and Listeners made with
// it.
type Client struct {
	addr   string
	cc     *grpc.ClientConn
	api    smv1.StreamServiceClient
	health healthpb.HealthClient
	cfg    config
}

// config is what the options set.
type config struct {
	caFile, certFile, keyFile string
	tlsConfig                 *tls.Config
	token                     string
	tokenSet                  bool
	insecure                  bool
	window                    int
	linger                    time.Duration
}

// Option configures Dial.
type Option func(*config)

// WithTLSFiles makes the connection TLS with roots from the PEM file caFile
// ("": the system roots) and, when certFile and keyFile are set, that client
// certificate (mTLS). TCP addresses use TLS by default; with this option a
// Unix socket address does too.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(c *config) { c.caFile, c.certFile, c.keyFile = caFile, certFile, keyFile }
}

// WithTLSConfig makes the connection TLS with cfg (used as it is, instead of
// WithTLSFiles).
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) { c.tlsConfig = cfg }
}

// WithToken sends token as the bearer token of every call (the daemon's
// --token-file names the caller by it). Without this option Dial uses
// $STREAMMGR_TOKEN, if set; WithToken("") sends none.
func WithToken(token string) Option {
	return func(c *config) { c.token, c.tokenSet = token, true }
}

// WithInsecure makes a TCP connection plain text, without TLS, for a daemon
// listener started with --insecure-tcp. Unix sockets are always plain text
// unless a TLS option is given.
func WithInsecure() Option {
	return func(c *config) { c.insecure = true }
}

// WithWindow sets how many inbound bytes a Conn lets the daemon send ahead
// of what its reader consumed (1 MiB to 64 MiB; default 4 MiB). Half of it
// bounds the outbound bytes a Conn has sent that the daemon has not taken
// yet.
func WithWindow(n int) Option {
	return func(c *config) { c.window = n }
}

// WithLinger sets how long Conn.Close waits for the daemon to take the bytes
// already written before it closes the stream (default 10 s). Bytes it did
// not take by then are discarded.
func WithLinger(d time.Duration) Option {
	return func(c *config) { c.linger = d }
}

const (
	defaultWindow = 4 << 20
	minWindow     = 1 << 20
	maxWindow     = 64 << 20
	defaultLinger = 10 * time.Second
	// cleanupTimeout bounds the calls that release a handle.
	cleanupTimeout = 10 * time.Second
)

// DefaultAddr is the address Dial uses when given none: $STREAMMGR_ADDR, or
// else the daemon's default socket, unix:$XDG_RUNTIME_DIR/streammgrd.sock,
// or without XDG_RUNTIME_DIR unix:$TMPDIR/streammgrd-UID/streammgrd.sock
// (/tmp without TMPDIR).
func DefaultAddr() string {
	if a := os.Getenv(EnvAddr); a != "" {
		return a
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		return "unix:" + filepath.Join(dir, "streammgrd.sock")
	}
	return "unix:" + filepath.Join(os.TempDir(), fmt.Sprintf("streammgrd-%d", os.Getuid()), "streammgrd.sock")
}

// Dial connects to the daemon at addr, "unix:/path" or "host:port" (""
// means DefaultAddr()), and checks that it answers. An error matching
// ErrDaemonUnreachable means nothing answered at addr.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	cfg := config{window: defaultWindow, linger: defaultLinger}
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.tokenSet {
		cfg.token = os.Getenv(EnvToken)
	}
	cfg.window = min(max(cfg.window, minWindow), maxWindow)
	if addr == "" {
		addr = DefaultAddr()
	}
	target, isUnix, err := grpcTarget(addr)
	if err != nil {
		return nil, err
	}
	creds, err := transportCreds(&cfg, isUnix)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// The daemon takes messages of up to its --max-message-size (4 MiB
		// by default); Conns send and receive at most 256 KiB at a time.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	if cfg.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{token: cfg.token}))
	}
	cc, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Client{addr: addr, cc: cc, api: smv1.NewStreamServiceClient(cc), health: healthpb.NewHealthClient(cc), cfg: cfg}
	// One health check: the daemon answers it without an identity, so it
	// tells an unreachable daemon from a refused caller.
	if _, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		err = fromStatus(err)
		var e *Error
		if !errors.As(err, &e) || e.Code == codes.Unavailable || e.Code == codes.DeadlineExceeded || e.Code == codes.Canceled {
			cc.Close()
			if errors.Is(err, ErrDaemonUnreachable) {
				return nil, &unreachableError{addr: addr, err: e}
			}
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
	}
	return c, nil
}

// grpcTarget turns a daemon address into a gRPC target.
func grpcTarget(addr string) (target string, isUnix bool, err error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return "", false, fmt.Errorf("dial %s: empty socket path", addr)
		}
		return "unix://" + strings.TrimPrefix(path, "//"), true, nil // also unix:///abs/path
	}
	if strings.HasPrefix(addr, "/") {
		return "unix://" + addr, true, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", false, fmt.Errorf("dial %s: want unix:/path or host:port: %w", addr, err)
	}
	return "dns:///" + addr, false, nil
}

// transportCreds picks TLS or plain text.
func transportCreds(cfg *config, isUnix bool) (credentials.TransportCredentials, error) {
	wantTLS := cfg.tlsConfig != nil || cfg.caFile != "" || cfg.certFile != "" || cfg.keyFile != ""
	if !wantTLS && (isUnix || cfg.insecure) {
		return insecure.NewCredentials(), nil
	}
	if cfg.tlsConfig != nil {
		return credentials.NewTLS(cfg.tlsConfig), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.caFile != "" {
		pem, err := os.ReadFile(cfg.caFile)
		if err != nil {
			return nil, fmt.Errorf("TLS roots: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS roots: no certificate in %s", cfg.caFile)
		}
		tc.RootCAs = pool
	}
	if (cfg.certFile == "") != (cfg.keyFile == "") {
		return nil, errors.New("TLS client certificate: give both the certificate and the key")
	}
	if cfg.certFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.certFile, cfg.keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}

// bearer sends the token as "authorization: Bearer TOKEN".
type bearer struct{ token string }

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// token goes in plain text only over a Unix socket or a connection the
// caller declared insecure.
func (b bearer) RequireTransportSecurity() bool { return false }

// Addr is the daemon's address the client was dialed with.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection to the daemon. Handles in the daemon outlive
// it; Conns and Listeners made with the client stop working.
func (c *Client) Close() error { return c.cc.Close() }

// Health is the daemon's health.
type Health struct {
	// Status is the daemon's grpc.health.v1 status: "SERVING",
	// "NOT_SERVING" (shutting down), ...
	Status string
	// Budget is the status of the memory budget (the health service
	// "streammgr.budget"): "NOT_SERVING" while more than 7/8 of it is used;
	// "" when the daemon does not report it.
	Budget string
}

// Serving reports whether the daemon serves and its memory budget is not
// (nearly) used up.
func (h Health) Serving() bool {
	return h.Status == "SERVING" && (h.Budget == "" || h.Budget == "SERVING")
}

// budgetService is the health service name of the daemon's memory budget.
const budgetService = "streammgr.budget"

// Health asks the daemon's grpc.health.v1 service how it is.
func (c *Client) Health(ctx context.Context) (Health, error) {
	r, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return Health{}, fmt.Errorf("health: %w", fromStatus(err))
	}
	h := Health{Status: r.GetStatus().String()}
	b, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{Service: budgetService})
	switch {
	case err == nil:
		h.Budget = b.GetStatus().String()
	case status.Code(err) != codes.NotFound:
		return Health{}, fmt.Errorf("health of %s: %w", budgetService, fromStatus(err))
	}
	return h, nil
}

// unreachableError is a Dial that found no daemon at its address.
type unreachableError struct {
	addr string
	err  *Error
}

// Error says where the daemon was looked for and why it did not answer
// (the dial error, without gRPC's wrapping).
func (e *unreachableError) Error() string {
	msg := e.err.Message
	if _, after, ok := strings.Cut(msg, "Error while dialing: "); ok {
		msg = strings.TrimSuffix(after, `"`)
	}
	return "cannot reach the daemon at " + e.addr + ": " + msg
}

// Unwrap returns the call's *Error, which matches ErrDaemonUnreachable.
func (e *unreachableError) Unwrap() error { return e.err }
