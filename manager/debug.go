package manager

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"
)

// debugServer serves Go's net/http/pprof handlers (/debug/pprof/) on the
// daemon's debug listener (Config.DebugListen). Its methods do nothing on a
// nil *debugServer, the daemon's value when the listener is off.
type debugServer struct {
	ln     net.Listener
	path   string // the Unix socket file to remove, "" for TCP
	srv    *http.Server
	log    *slog.Logger
	kind   string        // "debug" or "metrics"
	served chan struct{} // closed when srv.Serve has returned; nil before serve
	once   sync.Once
}

// listenDebug binds the debug listener: "unix:/path" (mode 0600, a stale
// socket file replaced) or a loopback "host:port". A non-loopback address
// is refused whatever AllowRemote says: profiles and the command line are
// for the local user only.
func listenDebug(addr string, log *slog.Logger) (*debugServer, error) {
	return listenHTTP("debug", addr, debugHandler(), log, false)
}

// listenHTTP binds an HTTP listener of the daemon (kind "debug" or
// "metrics"): "unix:/path" (mode 0600) or a loopback "host:port"; any
// "host:port" with remote.
func listenHTTP(kind, addr string, h http.Handler, log *slog.Logger, remote bool) (*debugServer, error) {
	d := &debugServer{log: log, kind: kind}
	if rest, ok := strings.CutPrefix(addr, "unix:"); ok {
		ln, path, err := listenUnix(addr, rest, 0)
		if err != nil {
			return nil, fmt.Errorf("%s listen %w", kind, err)
		}
		d.ln, d.path = ln, path
	} else {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s listen %q: want unix:/path or a loopback host:port: %w", kind, addr, err)
		}
		if !ta.IP.IsLoopback() && !remote { // an empty host (every interface) is not loopback
			if kind == "debug" {
				return nil, fmt.Errorf("debug listen %s: not a loopback address; the debug listener takes only unix:/path or a loopback host:port (it has no authentication)", addr)
			}
			return nil, fmt.Errorf("%s listen %s: not a loopback address; pass --allow-remote to serve it (it has no authentication)", kind, addr)
		}
		ln, err := net.ListenTCP("tcp", ta)
		if err != nil {
			return nil, fmt.Errorf("%s listen %s: %w", kind, addr, err)
		}
		d.ln = ln
	}
	d.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return d, nil
}

// debugHandler routes /debug/pprof/ to net/http/pprof, on a mux of its own
// (not http.DefaultServeMux).
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// addr is the listener's address as accepted by --debug-listen.
func (d *debugServer) addr() string {
	if d == nil {
		return ""
	}
	if d.path != "" {
		return "unix:" + d.path
	}
	return d.ln.Addr().String()
}

// serve starts answering requests in the background.
func (d *debugServer) serve() {
	if d == nil {
		return
	}
	d.log.Info(d.kind+" listening", "addr", d.addr())
	d.served = make(chan struct{})
	go func() {
		defer close(d.served)
		if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
			d.log.Warn(d.kind+" listener stopped", "err", err)
		}
	}()
}

// close stops the listener and its connections (an unfinished profile is
// cut short), waits for serve's goroutine and removes the socket file.
func (d *debugServer) close() {
	if d == nil {
		return
	}
	d.once.Do(func() {
		_ = d.srv.Close()
		_ = d.ln.Close() // not yet served: srv.Close does not know it
		if d.served != nil {
			<-d.served
		}
		if d.path != "" {
			_ = os.Remove(d.path)
		}
	})
}

// DebugAddr returns the debug listener's address as accepted by
// --debug-listen (a TCP port 0 resolved), or "" when it is off.
func (d *Daemon) DebugAddr() string { return d.debug.addr() }
