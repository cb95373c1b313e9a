package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/manager/identity"
)

// Daemon is streammgrd: the gRPC server, its listeners, the Manager and
// the optional debug listener.
type Daemon struct {
	cfg       Config
	log       *slog.Logger
	m         *Manager
	srv       *grpc.Server
	health    *health.Server
	listeners []net.Listener
	unixPaths []string
	tls       *tls.Config // TCP listeners' TLS, nil without --tls-cert
	auth      *identity.Authenticator
	auditFile *os.File     // --audit-log
	debug     *debugServer // nil without Config.DebugListen
	metrics   *debugServer // nil without Config.MetricsListen
}

// NewDaemon binds every listen address (and the debug listener, when
// configured) and builds the gRPC server. Nothing is served until Serve.
func NewDaemon(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := &Daemon{cfg: cfg, log: log}
	if err := d.loadSecurity(); err != nil {
		return nil, err
	}
	cfg = d.cfg
	activated, err := activationListeners()
	if err != nil {
		d.closeAudit()
		return nil, err
	}
	for _, ln := range activated {
		if err := d.adopt(ln); err != nil {
			for _, l := range activated {
				l.Close()
			}
			d.closeListeners()
			d.closeAudit()
			return nil, err
		}
	}
	if len(activated) > 0 && !d.cfg.listenSet {
		cfg.Listen = nil // socket activation replaces the default socket
	}
	for _, addr := range cfg.Listen {
		if ln := inheritedFor(activated, addr); ln != nil {
			// The same unit file can serve both ways (socket-activated or
			// not): a --listen address systemd already passed is that
			// listener, not a second one (binding it would find the
			// inherited socket alive and refuse).
			d.log.Info("socket activation: --listen address served by the inherited listener", "addr", addr)
			continue
		}
		if addr == "unix:"+filepath.Join(privateSocketDir(), "streammgrd.sock") {
			if err := ensurePrivateDir(privateSocketDir()); err != nil {
				return nil, fmt.Errorf("listen %s: %w", addr, err)
			}
		}
		if err := d.listen(addr); err != nil {
			d.closeListeners()
			d.closeAudit()
			return nil, err
		}
	}
	if cfg.DebugListen != "" {
		dbg, err := listenDebug(cfg.DebugListen, log)
		if err != nil {
			d.closeListeners()
			return nil, err
		}
		d.debug = dbg
	}
	d.m = New(cfg)
	d.health = health.NewServer()
	opts := serverOptions(cfg, log)
	var mx *metrics
	if cfg.MetricsListen != "" {
		mx = newMetrics(d.m)
		// First, so that every call is counted, refused ones too.
		opts = append(mx.serverOptions(), opts...)
		ms, err := listenHTTP("metrics", cfg.MetricsListen, mx.handler(), log, cfg.AllowRemote)
		if err != nil {
			d.m.Close()
			d.closeListeners()
			d.closeAudit()
			return nil, err
		}
		d.metrics = ms
	}
	d.srv = grpc.NewServer(append(opts, d.securityOptions()...)...)
	svc := NewService(d.m)
	svc.log = log
	smv1.RegisterStreamServiceServer(d.srv, svc)
	healthpb.RegisterHealthServer(d.srv, d.health)
	if err := registerReflection(d.srv); err != nil {
		d.closeListeners()
		return nil, err
	}
	if mx != nil {
		mx.grpc.InitializeMetrics(d.srv)
	}
	return d, nil
}

// minSendLimit is the least gRPC send limit, whatever MaxMessageSize says.
const minSendLimit = 1 << 20

// serverOptions are the gRPC server's limits and interceptors: a call log
// (not for health checks and reflection), and recovery that turns a panic
// into a bare INTERNAL.
func serverOptions(cfg Config, log *slog.Logger) []grpc.ServerOption {
	recovered := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p))
		return status.Error(codes.Internal, "internal error")
	})
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize),
		// Responses built from stream data keep within MaxMessageSize on
		// their own; the floor is for reflection, whose descriptors are
		// larger than the smallest limits a user may set.
		grpc.MaxSendMsgSize(max(cfg.MaxMessageSize, minSendLimit)),
		grpc.MaxConcurrentStreams(uint32(cfg.MaxConcurrentStreams)),
		grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderListSize)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.ConnectionTimeout(cfg.FirstRequestTimeout),
		grpc.StatsHandler(firstRequestHandler{}),
		// Calls run on reused goroutines whose stacks have grown already,
		// instead of a new goroutine per call.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		experimental.BufferPool(&dirtyPool{}),
		grpc.InTapHandle((&callLimiter{max: int64(cfg.MaxCalls), firstRequest: cfg.FirstRequestTimeout}).tap),
		grpc.ChainUnaryInterceptor(
			selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(slogAdapter(log), logOpts...), callLogged(log)),
			recovery.UnaryServerInterceptor(recovered),
		),
		grpc.ChainStreamInterceptor(
			selector.StreamServerInterceptor(logging.StreamServerInterceptor(slogAdapter(log), logOpts...), callLogged(log)),
			recovery.StreamServerInterceptor(recovered),
		),
	}
}

// logOpts log each call once, when it finishes, at debug: the call log is
// for debugging; failures a user must see are in the responses.
var logOpts = []logging.Option{
	logging.WithLogOnEvents(logging.FinishCall),
	logging.WithLevels(func(codes.Code) logging.Level { return logging.LevelDebug }),
}

// callLogged selects the calls to log: none unless debug is on (so that
// the call log costs nothing otherwise), and never health checks or
// reflection.
func callLogged(log *slog.Logger) selector.Matcher {
	return selector.MatchFunc(func(ctx context.Context, c interceptors.CallMeta) bool {
		return log.Enabled(ctx, slog.LevelDebug) && notInfra(ctx, c)
	})
}

// notInfra excludes health checks and reflection from the call log.
func notInfra(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service != healthpb.Health_ServiceDesc.ServiceName && !strings.HasPrefix(c.Service, "grpc.reflection.")
}

func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// listen binds one address: "unix:/path" (mode 0600, a stale socket file
// replaced) or "host:port" (loopback unless AllowRemote).
func (d *Daemon) listen(addr string) error {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		ln, path, err := listenUnix(addr, path, d.cfg.SocketMode)
		if err != nil {
			return fmt.Errorf("listen %w", err)
		}
		d.listeners = append(d.listeners, ln)
		d.unixPaths = append(d.unixPaths, path)
		return nil
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %q: want unix:/path or host:port: %w", addr, err)
	}
	remote := !ta.IP.IsLoopback() // an empty host (every interface) is remote too
	if remote && !d.cfg.AllowRemote {
		return fmt.Errorf("listen %s: not a loopback address; pass --allow-remote to listen on it", addr)
	}
	if d.tls == nil && !d.cfg.InsecureTCP {
		return fmt.Errorf("listen %s: a TCP listener needs TLS (--tls-cert and --tls-key, with --tls-client-ca or --token-file to name callers), or --insecure-tcp to run it in plain text", addr)
	}
	ln, err := net.ListenTCP("tcp", ta)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if d.tls == nil {
		d.log.Warn("TCP listener without TLS (--insecure-tcp): callers without a token are \"anonymous\", tokens travel in plain text, and anyone who can reach it can open sockets as this daemon's user", "addr", ln.Addr().String(), "remote", remote)
	}
	d.listeners = append(d.listeners, ln)
	return nil
}

// inheritedFor returns the inherited listener bound to addr (a --listen
// address), or nil.
func inheritedFor(inherited []net.Listener, addr string) net.Listener {
	path, isUnix := strings.CutPrefix(addr, "unix:")
	var ta *net.TCPAddr
	if !isUnix {
		ta, _ = net.ResolveTCPAddr("tcp", addr)
	}
	for _, ln := range inherited {
		switch a := ln.Addr().(type) {
		case *net.UnixAddr:
			if isUnix && sameFile(filepath.Clean(a.Name), filepath.Clean(path)) {
				return ln
			}
		case *net.TCPAddr:
			if ta != nil && ta.Port == a.Port && (ta.IP.Equal(a.IP) || (ta.IP == nil && a.IP.IsUnspecified())) {
				return ln
			}
		}
	}
	return nil
}

// sameFile reports whether two paths name one file: equal, or the same
// inode (a path through a symlinked directory).
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// adopt serves a listener systemd passed: a TCP one is held to the same
// rules as --listen (TLS or --insecure-tcp; loopback unless
// --allow-remote).
func (d *Daemon) adopt(ln net.Listener) error {
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		if !ta.IP.IsLoopback() && !d.cfg.AllowRemote {
			return fmt.Errorf("socket activation: %s is not a loopback address; pass --allow-remote to serve it", ta)
		}
		if d.tls == nil && !d.cfg.InsecureTCP {
			return fmt.Errorf("socket activation: the TCP listener %s needs TLS (--tls-cert, --tls-key) or --insecure-tcp", ta)
		}
	}
	d.log.Info("socket activation: serving an inherited listener", "addr", ln.Addr().Network()+":"+ln.Addr().String())
	d.listeners = append(d.listeners, ln)
	return nil
}

// listenUnix binds the Unix socket of addr ("unix:" + rest) with mode
// 0600, replacing a stale socket file. It returns the socket's path, which
// the caller removes when it is done (the listener does not unlink it).
// Errors start with addr.
func listenUnix(addr, rest string, mode os.FileMode) (net.Listener, string, error) {
	path := strings.TrimPrefix(rest, "//")
	if path == "" {
		return nil, "", fmt.Errorf("%q: empty socket path", addr)
	}
	if err := removeStale(path); err != nil {
		return nil, "", fmt.Errorf("%s: %w", addr, err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", addr, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if mode != 0 && mode != 0o600 {
		if err := os.Chmod(path, mode); err != nil {
			ln.Close()
			_ = os.Remove(path)
			return nil, "", fmt.Errorf("%s: %w", addr, err)
		}
	}
	return ln, path, nil
}

// removeStale deletes a socket file nobody listens on; anything else at
// path is an error.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another daemon is listening there", path)
	}
	return os.Remove(path)
}

// Addrs returns the listening addresses, as accepted by --listen.
func (d *Daemon) Addrs() []string {
	out := make([]string, len(d.listeners))
	for i, ln := range d.listeners {
		if ln.Addr().Network() == "unix" {
			out[i] = "unix:" + ln.Addr().String()
		} else {
			out[i] = ln.Addr().String()
		}
	}
	return out
}

// Manager returns the daemon's registry.
func (d *Daemon) Manager() *Manager { return d.m }

// Serve answers RPCs until ctx ends, then shuts down gracefully: health
// turns NOT_SERVING, no new calls are accepted, in-flight calls get
// ShutdownTimeout to finish, every stream and server is closed, the debug
// listener (Config.DebugListen) is closed and the socket files are removed.
func (d *Daemon) Serve(ctx context.Context) error {
	errc := make(chan error, len(d.listeners))
	conns := new(atomic.Int64)
	for _, ln := range d.listeners {
		d.log.Info("listening", "addr", ln.Addr().Network()+":"+ln.Addr().String())
		limited := &connLimiter{Listener: ln, max: int64(d.cfg.MaxConnections), firstRequest: d.cfg.FirstRequestTimeout, log: d.log, active: conns}
		go func() { errc <- d.srv.Serve(limited) }()
	}
	d.debug.serve()
	d.metrics.serve()
	d.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	d.health.SetServingStatus(smv1.StreamService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	watching := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() { defer close(watching); d.watchBudget(stopWatch) }()
	defer func() { close(stopWatch); <-watching }()
	var err error
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case err = <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			err = nil
		}
	}
	d.health.Shutdown()
	// However loaded the daemon is, Serve returns within ShutdownTimeout
	// plus a second: in-flight calls get the timeout, closing everything
	// gets the second.
	hard := time.After(d.cfg.ShutdownTimeout + time.Second)
	stopped := make(chan struct{})
	go func() { d.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(d.cfg.ShutdownTimeout):
		d.log.Warn("in-flight calls did not finish in time; closing them", "timeout", d.cfg.ShutdownTimeout)
		go d.srv.Stop()
	}
	closed := make(chan struct{})
	go func() {
		d.m.Close() // ends the calls still waiting on streams
		<-stopped
		close(closed)
	}()
	select {
	case <-closed:
	case <-hard:
		d.log.Error("shutdown did not finish in time; exiting with calls or streams still open", "timeout", d.cfg.ShutdownTimeout+time.Second)
	}
	d.closeListeners()
	d.closeAudit()
	return err
}

// BudgetHealthService is the health service name that reports the memory
// budget: NOT_SERVING while it is tight (new streams refused, sockets
// paused), SERVING otherwise.
const BudgetHealthService = "streammgr.budget"

// watchBudget keeps BudgetHealthService up to date and logs the budget's
// turns, until stop closes.
func (d *Daemon) watchBudget(stop <-chan struct{}) {
	b := d.m.Budget()
	tight := false
	d.health.SetServingStatus(BudgetHealthService, healthpb.HealthCheckResponse_SERVING)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if now := b.Tight(); now != tight {
			tight = now
			st := healthpb.HealthCheckResponse_SERVING
			if tight {
				st = healthpb.HealthCheckResponse_NOT_SERVING
				d.log.Warn("memory budget nearly used up: sockets paused, new streams refused", "used", b.Used(), "max", b.Max())
			} else {
				d.log.Info("memory budget has room again", "used", b.Used(), "max", b.Max())
			}
			d.health.SetServingStatus(BudgetHealthService, st)
		}
	}
}

// closeListeners closes every listener, the debug listener too, and
// removes the socket files.
func (d *Daemon) closeListeners() {
	for _, ln := range d.listeners {
		ln.Close()
	}
	for _, p := range d.unixPaths {
		_ = os.Remove(p)
	}
	d.debug.close()
	d.metrics.close()
}
