package manager

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/streammgr/streammgr/manager/policy"
)

// Config holds the daemon's settings. The zero value of each limit means its
// documented default (see Defaults).
type Config struct {
	// Listen lists the gRPC addresses: "unix:/path" or "host:port". With
	// systemd socket activation (LISTEN_FDS) the inherited sockets are
	// served too, and the default address is not.
	Listen []string
	// AllowRemote permits listening on non-loopback TCP addresses.
	AllowRemote bool
	// MaxStreams caps the streams the daemon owns at once.
	MaxStreams int
	// MaxServers caps the listening servers.
	MaxServers int
	// MaxAcceptQueue caps the accepted connections waiting to be claimed,
	// per server; further connections are closed at once.
	MaxAcceptQueue int
	// MaxMessageSize caps a gRPC message in either direction; reads never
	// return more than fits.
	MaxMessageSize int
	// MaxWriteBuffer caps a stream's unsent bytes.
	MaxWriteBuffer int
	// IdleTimeout releases a stream (aborting it if open) after this long
	// with no RPC on it. 0 disables.
	IdleTimeout time.Duration
	// ClosedLinger releases a stream whose connection is gone after this
	// long with no RPC on it, so its buffered bytes can still be read and
	// WaitClosed called.
	ClosedLinger time.Duration
	// ShutdownTimeout bounds how long shutdown waits for in-flight calls.
	ShutdownTimeout time.Duration
	// MaxConnections caps the gRPC connections to the daemon at once; more
	// are closed as they arrive.
	MaxConnections int
	// MaxConcurrentStreams caps the calls in progress on one gRPC
	// connection (HTTP/2 MAX_CONCURRENT_STREAMS).
	MaxConcurrentStreams int
	// MaxCalls caps the calls in progress on all connections together.
	MaxCalls int
	// MaxHeaderListSize caps the decoded size of a call's headers.
	MaxHeaderListSize int
	// FirstRequestTimeout closes a connection that has not sent a request
	// message this long after it was accepted, and cancels a call whose
	// request message has not come this long after its headers.
	FirstRequestTimeout time.Duration
	// KeepaliveTime is how long a connection may be silent before the
	// daemon pings it; KeepaliveTimeout closes it when the ping is not
	// answered in time. Clients may ping at most every 5 s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// AllowAbstract permits Open and StartServer on Linux abstract Unix
	// socket names ("@name"), which have no file permissions: any local
	// user can reach them.
	AllowAbstract bool
	// KeepIdleServers keeps a server that has had no RPC and no attached
	// Serve call for IdleTimeout; by default it is closed then (its queued
	// connections with it), as streams are.
	KeepIdleServers bool
	// IdlePoller hands idle plain sockets to one shared epoll poller
	// instead of a parked read goroutine each (streamcore.SetIdlePoller):
	// half the memory per idle connection. Off by default until a hang
	// seen once under load (a read that never saw bytes that had
	// arrived) is understood.
	IdlePoller bool
	// MaxBufferedBytes is the daemon-wide memory budget for stream data:
	// read buffers, bytes kept for replay, unsent writes, and the
	// connections queued on servers (streamcore.Budget). 0 means
	// DefaultMaxBufferedBytes().
	MaxBufferedBytes int64
	// DebugListen, when set, is where Go's net/http/pprof handlers are
	// served (/debug/pprof/): "unix:/path" (mode 0600) or a loopback
	// "host:port", never a non-loopback address (AllowRemote does not
	// apply). Empty: no debug listener.
	DebugListen string
	// MetricsListen, when set, is where Prometheus metrics are served
	// (/metrics): "unix:/path" (mode 0600), a loopback "host:port", or any
	// "host:port" with AllowRemote. Empty: no metrics listener.
	MetricsListen string
	// LogLevel is the least severe level logged. Every call is logged at
	// debug (and costs nothing above it); errors and the daemon's
	// lifecycle are logged at info and above. The zero value is info.
	LogLevel slog.Level
	// LogFormat is "text" (the default) or "json": one JSON object per
	// line.
	LogFormat string

	// ConfigFile is the policy file (TOML, see package policy): admins,
	// connect and bind rules, quotas per identity. Empty: the built-in
	// policy (no admins; connect anywhere but link-local and cloud metadata
	// addresses; bind loopback on unprivileged ports and Unix paths; no
	// quotas below the daemon's limits). Read by NewDaemon.
	ConfigFile string
	// Policy is the parsed policy (nil: ConfigFile's, or the built-in one).
	Policy *policy.Policy
	// TokenFile maps bearer tokens to identity names ("TOKEN,NAME" lines;
	// mode 0600). Empty: no tokens.
	TokenFile string
	// TLSCert and TLSKey are the PEM files of the certificate TCP listeners
	// present; TLSClientCA the PEM roots that verify client certificates
	// (mTLS). Without a token file a client certificate is required.
	TLSCert, TLSKey, TLSClientCA string
	// InsecureTCP lets TCP listeners run without TLS: callers are then
	// Anonymous unless they send a token, in plain text.
	InsecureTCP bool
	// SocketMode is the permission of the Unix control sockets (0: 0600,
	// the daemon's user only). Other users that can reach the socket are
	// told apart by their uid.
	SocketMode os.FileMode
	// AuditLog is a file the audit log is appended to as JSON lines
	// (empty: the daemon's log). Audit is the logger itself (nil:
	// AuditLog's, or the daemon's log).
	AuditLog string
	Audit    *slog.Logger
	// OrphanGrace is how long a stream whose Open (with a request_id) lost
	// its caller before the answer waits for a retry of that Open, or any
	// call, before it is released. 0 means DefaultOrphanGrace.
	OrphanGrace time.Duration

	listenSet bool // Listen was given, not defaulted
}

// Defaults.
const (
	DefaultMaxStreams      = 10000
	DefaultMaxServers      = 256
	DefaultMaxAcceptQueue  = 128
	DefaultMaxMessageSize  = 4 << 20
	DefaultMaxWriteBuffer  = 1 << 20
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultClosedLinger    = time.Minute
	DefaultShutdownTimeout = 5 * time.Second
	DefaultOrphanGrace     = 30 * time.Second

	DefaultMaxConnections       = 1024
	DefaultMaxConcurrentStreams = 256
	DefaultMaxHeaderListSize    = 16 << 10
	DefaultMaxCalls             = 8192
	DefaultFirstRequestTimeout  = 10 * time.Second
	DefaultKeepaliveTime        = 30 * time.Second
	DefaultKeepaliveTimeout     = 10 * time.Second
	// KeepaliveMinTime is the most often a client may ping.
	KeepaliveMinTime = 5 * time.Second
)

// DefaultMaxBufferedBytes is the default memory budget: an eighth of the
// memory the daemon may use (the machine's, or its cgroup's limit when that
// is lower, as in a container), at least 64 MiB but never more than half
// a cgroup limit.
func DefaultMaxBufferedBytes() int64 {
	return defaultBudget(cgroupMemoryLimit("/"))
}

func defaultBudget(cgLimit int64, limited bool) int64 {
	const floor = 64 << 20
	mem := int64(8 << 30)
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err == nil {
		mem = int64(si.Totalram) * int64(si.Unit)
	}
	if limited && cgLimit < mem {
		return min(max(cgLimit/8, floor), cgLimit/2)
	}
	return max(mem/8, floor)
}

// DefaultListen is the daemon's default address: a Unix socket (mode 0600)
// in $XDG_RUNTIME_DIR, or without it in privateSocketDir(), a directory
// only this user can enter, which the daemon creates and checks.
func DefaultListen() string {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		return "unix:" + filepath.Join(dir, "streammgrd.sock")
	}
	return "unix:" + filepath.Join(privateSocketDir(), "streammgrd.sock")
}

// privateSocketDir is $TMPDIR/streammgrd-UID (/tmp without TMPDIR).
func privateSocketDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("streammgrd-%d", os.Getuid()))
}

// ensurePrivateDir creates dir with mode 0700, or checks that the one there
// is a real directory (not a link) of this user that nobody else can enter:
// a directory someone else prepared could hand them this user's socket.
func ensurePrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("socket directory %s is not a directory (a link?): refusing to use it", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("socket directory %s belongs to another user: refusing to use it", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("socket directory %s has mode %v, want 0700 (only this user): refusing to use it", dir, fi.Mode().Perm())
	}
	return nil
}

// MinMessageSize is the smallest MaxMessageSize: room for a useful read
// and for the response's other fields.
const MinMessageSize = 16 << 10

// validate reports settings that cannot work.
func (c Config) validate() error {
	if c.MaxMessageSize != 0 && c.MaxMessageSize < MinMessageSize {
		return fmt.Errorf("max message size %d is below the minimum of %d bytes", c.MaxMessageSize, MinMessageSize)
	}
	return nil
}

// withDefaults returns c with zero values replaced by defaults (and a
// message size below MinMessageSize raised to it).
func (c Config) withDefaults() Config {
	if len(c.Listen) == 0 {
		c.Listen = []string{DefaultListen()}
	} else {
		c.listenSet = true
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxStreams, DefaultMaxStreams)
	def(&c.MaxServers, DefaultMaxServers)
	def(&c.MaxAcceptQueue, DefaultMaxAcceptQueue)
	def(&c.MaxMessageSize, DefaultMaxMessageSize)
	c.MaxMessageSize = max(c.MaxMessageSize, MinMessageSize)
	def(&c.MaxWriteBuffer, DefaultMaxWriteBuffer)
	if c.IdleTimeout < 0 {
		c.IdleTimeout = 0
	}
	if c.ClosedLinger <= 0 {
		c.ClosedLinger = DefaultClosedLinger
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.OrphanGrace <= 0 {
		c.OrphanGrace = DefaultOrphanGrace
	}
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	def(&c.MaxHeaderListSize, DefaultMaxHeaderListSize)
	def(&c.MaxCalls, DefaultMaxCalls)
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{{&c.FirstRequestTimeout, DefaultFirstRequestTimeout}, {&c.KeepaliveTime, DefaultKeepaliveTime}, {&c.KeepaliveTimeout, DefaultKeepaliveTimeout}} {
		if *d.v <= 0 {
			*d.v = d.d
		}
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes()
	}
	return c
}

// listFlag is a repeatable string flag.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error { *l.v = append(*l.v, s); return nil }

// BindFlags registers the daemon's flags on fs, with defaults filled in.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.Var(listFlag{&c.Listen}, "listen", "gRPC address, unix:/path or host:port; repeatable (default "+DefaultListen()+")")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow listening on non-loopback TCP addresses (they need TLS, or --insecure-tcp)")
	fs.IntVar(&c.MaxStreams, "max-streams", DefaultMaxStreams, "maximum streams owned at once")
	fs.IntVar(&c.MaxServers, "max-servers", DefaultMaxServers, "maximum listening servers")
	fs.IntVar(&c.MaxAcceptQueue, "max-accept-queue", DefaultMaxAcceptQueue, "accepted connections waiting to be claimed, per server")
	fs.IntVar(&c.MaxMessageSize, "max-message-size", DefaultMaxMessageSize, "largest gRPC message in bytes, either direction")
	fs.IntVar(&c.MaxWriteBuffer, "max-write-buffer", DefaultMaxWriteBuffer, "largest unsent byte count per stream (a write into an empty buffer may be larger)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "release a stream after this long without an RPC on it (0 disables)")
	fs.DurationVar(&c.ClosedLinger, "closed-linger", DefaultClosedLinger, "keep a closed stream's handle this long after its last RPC")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "how long shutdown waits for in-flight calls")
	fs.IntVar(&c.MaxConnections, "max-connections", DefaultMaxConnections, "gRPC connections to the daemon at once")
	fs.IntVar(&c.MaxConcurrentStreams, "max-concurrent-streams", DefaultMaxConcurrentStreams, "calls in progress on one gRPC connection")
	fs.IntVar(&c.MaxCalls, "max-calls", DefaultMaxCalls, "calls in progress on all connections together")
	fs.IntVar(&c.MaxHeaderListSize, "max-header-list-size", DefaultMaxHeaderListSize, "largest decoded size of a call's headers, in bytes")
	fs.DurationVar(&c.FirstRequestTimeout, "first-request-timeout", DefaultFirstRequestTimeout, "close a connection that sends no request this long after connecting")
	fs.DurationVar(&c.KeepaliveTime, "keepalive-time", DefaultKeepaliveTime, "ping a connection silent for this long")
	fs.DurationVar(&c.KeepaliveTimeout, "keepalive-timeout", DefaultKeepaliveTimeout, "close a connection whose ping is not answered in this long")
	fs.BoolVar(&c.AllowAbstract, "allow-abstract", false, "allow abstract Unix socket names (@name) in Open and StartServer: they have no file permissions")
	fs.BoolVar(&c.IdlePoller, "idle-poller", false, "experimental: idle TCP and Unix streams wait in one shared epoll poller instead of a goroutine each (half the memory per idle connection)")
	fs.BoolVar(&c.KeepIdleServers, "keep-idle-servers", false, "keep servers with no RPC and no Serve call for the idle timeout (default: close them)")
	fs.Int64Var(&c.MaxBufferedBytes, "max-buffered-bytes", DefaultMaxBufferedBytes(), "memory budget for all streams' buffered bytes (read, replay, unsent, queued connections)")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "least severe level logged: debug (one line per call), info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json (one object per line)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve Prometheus metrics (/metrics) on unix:/path or a loopback host:port (any with --allow-remote; default off)")
	fs.StringVar(&c.DebugListen, "debug-listen", "", "serve Go's pprof handlers (/debug/pprof/) on unix:/path or a loopback host:port (default off)")
	fs.StringVar(&c.ConfigFile, "config", "", "policy file (TOML): admins, connect and bind rules, quotas per identity (default: the built-in policy)")
	fs.StringVar(&c.TokenFile, "token-file", "", "bearer tokens, one TOKEN,NAME per line (mode 0600)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate chain of TCP listeners (required for TCP unless --insecure-tcp)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM roots that verify client certificates (mTLS); the certificate's subject names the caller")
	fs.BoolVar(&c.InsecureTCP, "insecure-tcp", false, "allow TCP listeners without TLS: callers are \"anonymous\" unless they send a token, in plain text")
	fs.Var(modeFlag{&c.SocketMode}, "socket-mode", "permission of Unix control sockets, octal (default 0600: the daemon's user only)")
	fs.StringVar(&c.AuditLog, "audit-log", "", "append the audit log (who opened or bound what) to this file as JSON lines (default: the daemon's log)")
}

// modeFlag is an octal file mode flag.
type modeFlag struct{ v *os.FileMode }

func (f modeFlag) String() string {
	if f.v == nil || *f.v == 0 {
		return "0600"
	}
	return fmt.Sprintf("%#o", uint32(*f.v))
}

func (f modeFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 || n == 0 {
		return fmt.Errorf("want an octal permission such as 0660")
	}
	*f.v = os.FileMode(n)
	return nil
}
