// Package manager owns the streams and servers of streammgrd: a registry of
// handles with their lifecycle (idle timeout, release after close) and
// limits, and the gRPC StreamService that drives them.
package manager

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streammgr/streammgr/manager/identity"
	"github.com/streammgr/streammgr/manager/policy"
	"github.com/streammgr/streammgr/streamcore"
)

// Manager is the registry of streams and servers.
type Manager struct {
	cfg    Config
	budget *streamcore.Budget
	fds    *fdTally
	policy *policy.Policy
	audit  *slog.Logger

	mu      sync.Mutex
	streams map[string]*Stream
	order   *list.List // every stream, oldest first
	lost    *list.List // streams whose connection is gone, in the order lost
	servers map[string]*Server
	owners  map[string]*owner  // identities holding handles
	opened  map[string]*Stream // by identity and Open request_id

	releasedIn, releasedOut atomic.Int64 // bytes of released streams, for metrics
	closed                  bool

	stop     chan struct{}
	reaperWG sync.WaitGroup
}

// Stream is one managed connection.
type Stream struct {
	ID       string
	kind     string // tcp, unix, pair
	ServerID string
	R        *streamcore.Reader
	W        *streamcore.Writer
	Created  time.Time

	lastUsed atomic.Int64 // unix nanoseconds
	active   atomic.Int32 // RPCs in progress
	srv      *Server
	queued   atomic.Bool                // accepted by srv and not yet claimed
	attached atomic.Pointer[attachment] // the live Attach call, if any
	relay    atomic.Pointer[relayRun]   // the running Relay, if any
	claimed  atomic.Bool                // a call has used the handle since it was answered
	openKey  string                     // its key in Manager.opened (guarded by Manager.mu)
	orphaned atomic.Int64               // unix nanoseconds its Open's caller left at, 0 if it did not
	claimMu  sync.Mutex                 // orders Attach and Relay claims

	// guarded by Manager.mu
	acl      acl
	elem     *list.Element // in Manager.order
	lostElem *list.Element // in Manager.lost, once the connection is gone
	stopLost func() bool   // unregisters the loss callback
}

// Server is one managed listening server.
type Server struct {
	ID      string
	Created time.Time
	srv     *streamcore.Server
	queue   *acceptQueue
	m       *Manager

	// guarded by Manager.mu
	acl     acl
	streams map[*Stream]struct{} // streams it accepted that are registered

	// bytes of released streams, so totals survive their release
	releasedIn, releasedOut atomic.Int64
	rejected                atomic.Int64
	serveCalls              atomic.Int64
	lastUsed                atomic.Int64 // unix nanoseconds of its last RPC
	claimed                 atomic.Bool  // a call has used the handle since it was answered
	active                  atomic.Int32 // Accept calls in progress
	closeOnce               sync.Once
}

// New returns a Manager with cfg's limits (zero values take defaults) and
// starts its idle reaper. Close releases everything.
func New(cfg Config) *Manager {
	cfg = cfg.withDefaults()
	m := &Manager{cfg: cfg, budget: streamcore.NewBudget(cfg.MaxBufferedBytes), fds: newFDCount(cfg), policy: cfg.Policy, audit: cfg.Audit,
		streams: map[string]*Stream{}, order: list.New(), lost: list.New(), servers: map[string]*Server{}, owners: map[string]*owner{}, opened: map[string]*Stream{}, stop: make(chan struct{})}
	if m.policy == nil {
		m.policy = policy.Default()
	}
	if m.audit == nil {
		m.audit = slog.New(slog.DiscardHandler)
	}
	if m.cfg.IdlePoller {
		// The poller's goroutine and descriptor belong to the daemon's
		// baseline, not to its first stream.
		streamcore.SetIdlePoller(true)
	}
	m.reaperWG.Add(1)
	go m.reap()
	return m
}

// Config returns the effective configuration.
func (m *Manager) Config() Config { return m.cfg }

// Budget returns the memory budget every stream shares.
func (m *Manager) Budget() *streamcore.Budget { return m.budget }

func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (s *Stream) touch() { s.lastUsed.Store(time.Now().UnixNano()) }

// use marks an RPC in progress on s; the returned func ends it.
func (s *Stream) use() func() {
	s.active.Add(1)
	s.touch()
	return func() { s.touch(); s.active.Add(-1) }
}

// Kind is "tcp", "unix", "tls" or "pair".
func (s *Stream) Kind() string {
	if s.W.IsTLS() {
		return "tls"
	}
	return s.kind
}

// lost reports whether the stream's connection is gone.
func (s *Stream) lost() bool {
	select {
	case <-s.W.Done():
		return true
	default:
		return false
	}
}

// State is "queued" (accepted by a server, not yet claimed), "open", "eof"
// (peer EOF received and buffer drained), "closing" or "closed".
func (s *Stream) State() string {
	switch {
	case s.queued.Load():
		return "queued"
	case s.lost():
		return "closed"
	case s.W.IsClosing():
		return "closing"
	case s.R.AtEOF():
		return "eof"
	}
	return "open"
}

// addStream registers a stream, evicting a released-worthy closed stream if
// the registry is full.
func (m *Manager) addStream(kind string, r *streamcore.Reader, w *streamcore.Writer, a acl) (*Stream, error) {
	s, err := m.register(kind, r, w, nil, a, false)
	if err != nil {
		drop(r, w)
	}
	return s, err
}

// register adds a stream to the registry, or fails leaving it untouched.
func (m *Manager) register(kind string, r *streamcore.Reader, w *streamcore.Writer, srv *Server, a acl, queued bool) (*Stream, error) {
	s := &Stream{ID: newID("s-"), kind: kind, R: r, W: w, Created: time.Now(), srv: srv, acl: a}
	s.queued.Store(queued)
	if srv != nil {
		s.ServerID = srv.ID
	}
	s.touch()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errShuttingDown
	}
	if err := m.roomForLocked(a.owner, false); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	if len(m.streams) >= m.cfg.MaxStreams && !m.evictClosedLocked() {
		m.mu.Unlock()
		return nil, &limitError{what: "streams", limit: m.cfg.MaxStreams}
	}
	a.owner.streams++
	m.streams[s.ID] = s
	s.elem = m.order.PushBack(s)
	if srv != nil {
		srv.streams[s] = struct{}{}
	}
	s.stopLost = w.AfterLost(func() { m.markLost(s) })
	m.mu.Unlock()
	return s, nil
}

// markLost records that s's connection is gone, making it a candidate for
// eviction when the registry is full.
func (m *Manager) markLost(s *Stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.elem != nil && s.lostElem == nil {
		s.lostElem = m.lost.PushBack(s)
	}
}

// evictClosedLocked releases the stream lost the longest ago that has no
// RPC in progress.
func (m *Manager) evictClosedLocked() bool {
	if s := m.evictableLocked(); s != nil {
		m.releaseLocked(s)
		return true
	}
	return false
}

// evictableLocked is the stream lost the longest ago with no RPC in
// progress, or nil. Streams with RPCs in progress are few, so this is
// O(1) in practice.
func (m *Manager) evictableLocked() *Stream {
	for e := m.lost.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*Stream); s.active.Load() == 0 {
			return s
		}
	}
	return nil
}

// forgetLocked removes s from the registry, leaving its connection alone;
// its server keeps its byte counts.
func (m *Manager) forgetLocked(s *Stream) {
	if s.elem == nil {
		return
	}
	delete(m.streams, s.ID)
	m.order.Remove(s.elem)
	s.elem = nil
	if s.lostElem != nil {
		m.lost.Remove(s.lostElem)
		s.lostElem = nil
	}
	s.stopLost()
	if s.openKey != "" {
		delete(m.opened, s.openKey)
	}
	m.releasedIn.Add(s.R.Consumed())
	m.releasedOut.Add(s.W.Written())
	s.acl.owner.streams--
	m.dropOwnerLocked(s.acl.owner)
	if s.srv != nil {
		delete(s.srv.streams, s)
		s.srv.releasedIn.Add(s.R.Consumed())
		s.srv.releasedOut.Add(s.W.Written())
		if s.queued.Load() {
			s.srv.queue.remove(s)
		}
	}
}

func (m *Manager) releaseLocked(s *Stream) {
	m.forgetLocked(s)
	release(s)
}

// release closes a stream the registry forgot and drops its bytes.
func release(s *Stream) { drop(s.R, s.W) }

// drop aborts a connection nobody will use and gives its bytes back to the
// memory budget.
func drop(r *streamcore.Reader, w *streamcore.Writer) {
	w.Abort()
	r.Discard()
}

// stream looks up a stream handle the caller of ctx may use.
func (m *Manager) stream(ctx context.Context, id string) (*Stream, error) {
	if err := checkID("stream_id", id); err != nil {
		return nil, err
	}
	c := callerOf(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.streams[id]
	if !ok || !s.acl.allows(c) {
		return nil, &notFoundError{kind: "stream", id: id}
	}
	if s.queued.Load() {
		return nil, queuedError{id: id}
	}
	s.claimed.Store(true)
	return s, nil
}

// acquire looks up a stream the caller of ctx may use and marks an RPC in
// progress on it, atomically with respect to the reaper; the returned func
// ends the RPC.
func (m *Manager) acquire(ctx context.Context, id string) (*Stream, func(), error) {
	if err := checkID("stream_id", id); err != nil {
		return nil, nil, err
	}
	c := callerOf(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.streams[id]
	if !ok || !s.acl.allows(c) {
		return nil, nil, &notFoundError{kind: "stream", id: id}
	}
	if s.queued.Load() {
		return nil, nil, queuedError{id: id}
	}
	s.claimed.Store(true)
	return s, s.use(), nil
}

// server looks up a server handle the caller of ctx may use.
func (m *Manager) server(ctx context.Context, id string) (*Server, error) {
	if err := checkID("server_id", id); err != nil {
		return nil, err
	}
	c := callerOf(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.servers[id]
	if !ok || !s.acl.allows(c) {
		return nil, &notFoundError{kind: "server", id: id}
	}
	s.lastUsed.Store(time.Now().UnixNano())
	s.claimed.Store(true)
	return s, nil
}

// StreamEntry is a stream as a List call shows it: the stream with who may
// use it.
type StreamEntry struct {
	*Stream
	Owner  string
	Shared []string
}

// Streams returns the streams the caller of ctx may use, oldest first.
func (m *Manager) Streams(ctx context.Context) []StreamEntry {
	c := callerOf(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StreamEntry
	for e := m.order.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*Stream); s.acl.allows(c) {
			out = append(out, StreamEntry{s, s.acl.owner.name, s.acl.shared})
		}
	}
	return out
}

// ServerEntry is a server as ListServers shows it.
type ServerEntry struct {
	*Server
	Owner  string
	Shared []string
}

// Servers returns the servers the caller of ctx may use, oldest first.
func (m *Manager) Servers(ctx context.Context) []ServerEntry {
	c := callerOf(ctx)
	m.mu.Lock()
	var out []ServerEntry
	for _, s := range m.servers {
		if s.acl.allows(c) {
			out = append(out, ServerEntry{s, s.acl.owner.name, s.acl.shared})
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// reap releases idle streams.
func (m *Manager) reap() {
	defer m.reaperWG.Done()
	period := min(time.Second, m.cfg.ClosedLinger/4, m.cfg.OrphanGrace/4)
	if m.cfg.IdleTimeout > 0 {
		period = min(period, m.cfg.IdleTimeout/4)
	}
	period = max(period, 10*time.Millisecond)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		var idle []*Stream
		m.mu.Lock()
		for e, next := m.order.Front(), (*list.Element)(nil); e != nil; e = next {
			next = e.Next() // forgetLocked takes e out of the list
			s := e.Value.(*Stream)
			if s.active.Load() > 0 {
				continue
			}
			d := time.Duration(now - s.lastUsed.Load())
			orphan := s.orphaned.Load()
			if (m.cfg.IdleTimeout > 0 && d >= m.cfg.IdleTimeout) ||
				(s.lostElem != nil && d >= m.cfg.ClosedLinger) ||
				(orphan != 0 && !s.claimed.Load() && time.Duration(now-orphan) >= m.cfg.OrphanGrace) {
				m.forgetLocked(s)
				idle = append(idle, s)
			}
		}
		var idleServers []*Server
		if m.cfg.IdleTimeout > 0 && !m.cfg.KeepIdleServers {
			for id, srv := range m.servers {
				if srv.active.Load() == 0 && srv.serveCalls.Load() == 0 &&
					time.Duration(now-srv.lastUsed.Load()) >= m.cfg.IdleTimeout {
					m.removeServerLocked(id, srv)
					idleServers = append(idleServers, srv)
				}
			}
		}
		m.mu.Unlock()
		for _, s := range idle {
			release(s)
		}
		for _, srv := range idleServers {
			srv.shutdown(false)
		}
	}
}

// Close aborts every stream and closes every server. The Manager refuses
// new work afterwards.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.stop)
	servers := make([]*Server, 0, len(m.servers))
	for id, s := range m.servers {
		servers = append(servers, s)
		m.removeServerLocked(id, s)
	}
	streams := make([]*Stream, 0, len(m.streams))
	for e := m.order.Front(); e != nil; e = e.Next() {
		streams = append(streams, e.Value.(*Stream))
	}
	for _, s := range streams {
		m.forgetLocked(s)
	}
	m.mu.Unlock()
	// Outside the registry's lock: closing a stream takes its own lock.
	for _, s := range streams {
		release(s)
	}
	for _, s := range servers {
		s.shutdown(true)
	}
	m.reaperWG.Wait()
}

// Open connects (asyncio's open_connection / open_unix_connection) as the
// caller of ctx: every address tried is checked against the caller's
// connect policy first, the stream counts toward the caller's quota, and it
// may be used by the caller, the identities of share and admins.
//
// With a requestID, an Open the same identity made with the same one whose
// stream is still registered answers that stream instead.
func (m *Manager) Open(ctx context.Context, network, addr string, port int, opts *streamcore.DialOptions, share []string, requestID string) (*Stream, error) {
	c := callerOf(ctx)
	key := ""
	if requestID != "" {
		key = c.Name + "\x00" + requestID
		m.mu.Lock()
		s := m.opened[key]
		m.mu.Unlock()
		if s != nil {
			s.orphaned.Store(0) // answered again
			return s, nil
		}
	}
	target := addr
	if network != "unix" {
		target = net.JoinHostPort(addr, strconv.Itoa(port))
	}
	if network != "unix" {
		// Names the policy refuses by name alone are not even resolved.
		if d := m.policy.CheckConnectName(c.Name, addr, port); d != nil {
			m.auditEvent(c, "open", target, d)
			return nil, d
		}
	}
	o, err := m.claimOwner(c, false)
	if err != nil {
		m.auditEvent(c, "open", target, err)
		return nil, err
	}
	defer m.unclaimOwner(o)
	opts.MaxWriteBuffer = m.cfg.MaxWriteBuffer
	o.streamOptions(&opts.Options)
	opts.Check = m.connectCheck(c, addr)
	if err := m.fds.take(1); err != nil {
		return nil, err
	}
	var (
		r *streamcore.Reader
		w *streamcore.Writer
	)
	kind := network
	if network == "unix" {
		r, w, err = streamcore.OpenUnixConnection(ctx, addr, opts)
	} else {
		r, w, err = streamcore.OpenConnection(ctx, addr, port, opts)
	}
	if err == nil {
		m.fds.hold(w)
	} else {
		m.fds.give(1)
	}
	if err != nil {
		var ht *streamcore.HandshakeTimeoutError
		if ctx.Err() == nil && isTimeout(err) && !errors.As(err, &ht) {
			// The connect's own timeout, not the call's deadline.
			err = &connectTimeoutError{err: err}
		}
		if d := deniedOf(err); d != nil {
			err = d
			m.auditEvent(c, "open", target, err)
		}
		return nil, err
	}
	s, err := m.addStream(kind, r, w, acl{owner: o, shared: withShared(nil, share, nil, o.name)})
	m.auditEvent(c, "open", target, err, "stream_id", idOf(s), "peer", addrString(asAddr(w.ExtraInfo("peername"))))
	if err != nil || key == "" {
		return s, err
	}
	m.mu.Lock()
	first, dup := m.opened[key]
	if !dup && s.elem != nil {
		m.opened[key], s.openKey = s, key
	}
	m.mu.Unlock()
	if dup {
		// A retry raced this call and won: one connection per request_id.
		m.Release(s.ID)
		return first, nil
	}
	return s, nil
}

func idOf(s *Stream) string {
	if s == nil {
		return ""
	}
	return s.ID
}

// connectCheck is Open's check of each address it tries: the caller's
// connect policy for host, resolved to that address.
func (m *Manager) connectCheck(c identity.Identity, host string) func(network, address string) error {
	return func(network, address string) error {
		var d *policy.Denied
		if network == "unix" {
			d = m.policy.CheckConnectUnix(c.Name, address)
		} else {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			d = m.policy.CheckConnect(c.Name, host, ap)
		}
		if d != nil {
			return d
		}
		return nil
	}
}

// bindCheck is StartServer's check of each address it binds.
func (m *Manager) bindCheck(c identity.Identity, host string) func(network, address string) error {
	return func(network, address string) error {
		var d *policy.Denied
		if network == "unix" {
			d = m.policy.CheckBindUnix(c.Name, address)
		} else {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			d = m.policy.CheckBind(c.Name, host, ap)
		}
		if d != nil {
			return d
		}
		return nil
	}
}

// deniedOf finds a policy denial inside a dial or bind error.
func deniedOf(err error) *policy.Denied {
	var d *policy.Denied
	if errors.As(err, &d) {
		return d
	}
	return nil
}

// auditEvent writes one line of the audit log: who did what to which
// target, and whether it was allowed (err nil) or refused.
func (m *Manager) auditEvent(c identity.Identity, action, target string, err error, attrs ...any) {
	args := []any{"identity", c.Name, "via", c.Via}
	if c.PID >= 0 {
		args = append(args, "pid", c.PID, "uid", c.UID)
	}
	args = append(args, "action", action, "target", target)
	var d *policy.Denied
	switch {
	case err == nil:
		args = append(args, "decision", "allow")
		for i := 0; i+1 < len(attrs); i += 2 {
			if v, ok := attrs[i+1].(string); !ok || v != "" {
				args = append(args, attrs[i], attrs[i+1])
			}
		}
	case errors.As(err, &d):
		args = append(args, "decision", "deny", "rule", d.Rule)
	default:
		args = append(args, "decision", "fail", "err", err.Error())
	}
	m.audit.Info("audit", args...)
}

// claimOwner returns the caller's owner record with room for one more
// stream (or server), kept alive until unclaimOwner.
func (m *Manager) claimOwner(c identity.Identity, server bool) (*owner, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errShuttingDown
	}
	o := m.ownerLocked(c.Name)
	o.pending++
	if !server && o.budget.Tight() {
		o.pending--
		m.dropOwnerLocked(o)
		return nil, budgetError{used: o.budget.Used(), max: o.budget.Max()}
	}
	if err := m.roomForLocked(o, server); err != nil {
		o.pending--
		m.dropOwnerLocked(o)
		return nil, err
	}
	if server {
		return o, nil
	}
	if len(m.streams) >= m.cfg.MaxStreams && m.evictableLocked() == nil {
		o.pending--
		m.dropOwnerLocked(o)
		return nil, &limitError{what: "streams", limit: m.cfg.MaxStreams}
	}
	return o, nil
}

func (m *Manager) unclaimOwner(o *owner) {
	m.mu.Lock()
	o.pending--
	m.dropOwnerLocked(o)
	m.mu.Unlock()
}

// OpenPair creates a connected pair of streams owned by the caller of ctx.
func (m *Manager) OpenPair(ctx context.Context, limit int, share []string) (*Stream, *Stream, error) {
	c := callerOf(ctx)
	o, err := m.claimOwner(c, false)
	if err != nil {
		return nil, nil, err
	}
	defer m.unclaimOwner(o)
	opts := &streamcore.Options{Limit: limit, MaxWriteBuffer: m.cfg.MaxWriteBuffer, Replay: true}
	o.streamOptions(opts)
	if err := m.fds.take(2); err != nil {
		return nil, nil, err
	}
	r1, w1, r2, w2, err := streamcore.SocketPair(opts)
	if err != nil {
		m.fds.give(2)
		return nil, nil, err
	}
	m.fds.hold(w1)
	m.fds.hold(w2)
	shared := withShared(nil, share, nil, o.name)
	a, err := m.addStream("pair", r1, w1, acl{owner: o, shared: shared})
	if err != nil {
		drop(r2, w2)
		return nil, nil, err
	}
	b, err := m.addStream("pair", r2, w2, acl{owner: o, shared: shared})
	if err != nil {
		m.Release(a.ID)
		return nil, nil, err
	}
	m.auditEvent(c, "open_pair", "", nil, "stream_id", a.ID+","+b.ID)
	return a, b, nil
}

// Orphaned records that the caller of the Open that made s left before its
// answer: unless a retry or another call claims it within
// Config.OrphanGrace, it is released.
func (m *Manager) Orphaned(s *Stream) { s.orphaned.Store(time.Now().UnixNano()) }

// ReleaseUnclaimed releases a stream the caller of ctx may use that no call
// has used since it was answered (the answer of a call its client
// cancelled), and reports whether it did.
func (m *Manager) ReleaseUnclaimed(ctx context.Context, id string) bool {
	c := callerOf(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.streams[id]
	if !ok || !s.acl.allows(c) || s.claimed.Load() || s.active.Load() > 0 {
		return false
	}
	m.releaseLocked(s)
	return true
}

// CloseUnclaimedServer closes a server no call has used since it was
// answered, and reports whether it did.
func (m *Manager) CloseUnclaimedServer(ctx context.Context, id string) bool {
	c := callerOf(ctx)
	m.mu.Lock()
	s, ok := m.servers[id]
	ok = ok && s.acl.allows(c) && !s.claimed.Load()
	if ok {
		m.removeServerLocked(id, s)
	}
	m.mu.Unlock()
	if ok {
		s.shutdown(true)
	}
	return ok
}

// UnacceptUnclaimed puts an accepted stream no call has used since it was
// answered back at the head of its server's queue, and reports whether it
// did.
func (m *Manager) UnacceptUnclaimed(ctx context.Context, id string) bool {
	c := callerOf(ctx)
	m.mu.Lock()
	s, ok := m.streams[id]
	ok = ok && s.acl.allows(c) && !s.claimed.Load() && s.active.Load() == 0 && s.srv != nil && !s.queued.Load()
	m.mu.Unlock()
	if ok {
		s.srv.Unaccept(s)
	}
	return ok
}

// Release forgets a stream handle, aborting the stream if it is still open.
func (m *Manager) Release(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.streams[id]; ok {
		m.releaseLocked(s)
	}
}

// removeServerLocked takes a server out of the registry.
func (m *Manager) removeServerLocked(id string, s *Server) {
	delete(m.servers, id)
	s.acl.owner.servers--
	m.dropOwnerLocked(s.acl.owner)
}

// StartServer starts a TCP ("tcp") or Unix ("unix") server whose accepted
// connections wait in a bounded queue until claimed. The caller of ctx
// owns it and the streams it accepts; every address is checked against the
// caller's bind policy before it is bound.
func (m *Manager) StartServer(ctx context.Context, network, host string, port int, opts *streamcore.ServerOptions, share []string) (*Server, error) {
	c := callerOf(ctx)
	target := host
	if network != "unix" {
		target = net.JoinHostPort(host, strconv.Itoa(port))
	}
	o, err := m.claimOwner(c, true)
	if err == nil {
		m.mu.Lock()
		if len(m.servers) >= m.cfg.MaxServers {
			err = &limitError{what: "servers", limit: m.cfg.MaxServers}
		}
		m.mu.Unlock()
		if err != nil {
			m.unclaimOwner(o)
		}
	}
	if err != nil {
		m.auditEvent(c, "start_server", target, err)
		return nil, err
	}
	defer m.unclaimOwner(o)
	// A server holds at most two listening sockets (one per address family).
	if err := m.fds.take(2); err != nil {
		return nil, err
	}
	opts.MaxWriteBuffer = m.cfg.MaxWriteBuffer
	o.streamOptions(&opts.Options)
	opts.Check = m.bindCheck(c, host)
	s := &Server{ID: newID("srv-"), Created: time.Now(), queue: newAcceptQueue(m.cfg.MaxAcceptQueue), m: m, streams: map[*Stream]struct{}{},
		acl: acl{owner: o, shared: withShared(nil, share, nil, o.name)}}
	s.lastUsed.Store(s.Created.UnixNano())
	handler := func(r *streamcore.Reader, w *streamcore.Writer) {
		// A queued connection is a stream like any other: it counts toward
		// --max-streams, its owner's quota and the memory budget, and is
		// reaped when idle.
		if o.budget.Tight() || m.fds.take(1) != nil {
			s.rejected.Add(1)
			drop(r, w)
			return
		}
		m.fds.hold(w)
		kind := "tcp"
		if _, ok := w.ExtraInfo("sockname").(*net.UnixAddr); ok {
			kind = "unix"
		}
		m.mu.Lock()
		a := s.acl // the server's, as it is shared now
		m.mu.Unlock()
		st, err := m.register(kind, r, w, s, a, true)
		if err != nil {
			s.rejected.Add(1)
			drop(r, w)
			return
		}
		if !s.queue.push(st) {
			s.rejected.Add(1)
			m.Release(st.ID)
		}
	}
	if network == "unix" {
		s.srv, err = streamcore.StartUnixServer(ctx, handler, host, opts)
	} else {
		s.srv, err = streamcore.StartServer(ctx, handler, host, port, opts)
	}
	if err != nil {
		m.fds.give(2)
		if d := deniedOf(err); d != nil {
			err = d
			m.auditEvent(c, "start_server", target, err)
		}
		return nil, err
	}
	m.mu.Lock()
	if err := m.roomForLocked(o, true); m.closed || len(m.servers) >= m.cfg.MaxServers || err != nil {
		closed := m.closed
		m.mu.Unlock()
		s.shutdown(true)
		switch {
		case closed:
			return nil, errShuttingDown
		case err != nil:
			return nil, err
		}
		return nil, &limitError{what: "servers", limit: m.cfg.MaxServers}
	}
	m.servers[s.ID] = s
	o.servers++
	m.mu.Unlock()
	m.auditEvent(c, "start_server", target, nil, "server_id", s.ID, "sockets", addrsJoined(s.Sockets()))
	return s, nil
}

func addrsJoined(addrs []net.Addr) string {
	return strings.Join(addrStrings(addrs), ",")
}

// Sockets returns the server's bound addresses.
func (s *Server) Sockets() []net.Addr { return s.srv.Sockets() }

// State is "serving", "bound" or "closed".
func (s *Server) State() string {
	switch {
	case s.srv.IsServing():
		return "serving"
	case len(s.srv.Sockets()) > 0:
		return "bound"
	}
	return "closed"
}

// StartServing starts listening.
func (s *Server) StartServing(ctx context.Context) error { return s.srv.StartServing(ctx) }

// Rejected returns the connections closed at once: the accept queue was
// full, or too many TLS handshakes were in progress.
func (s *Server) Rejected() int64 { return s.rejected.Load() + s.srv.Rejected() }

// ServeCalls returns the Serve calls attached right now.
func (s *Server) ServeCalls() int64 { return s.serveCalls.Load() }

// Queued returns the connections waiting to be claimed.
func (s *Server) Queued() int { return s.queue.len() }

// Accepted returns the connections accepted so far.
func (s *Server) Accepted() int64 { return s.srv.Accepted() }

// Bytes returns the bytes read from and written to its streams.
func (s *Server) Bytes() (in, out int64) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	in, out = s.releasedIn.Load(), s.releasedOut.Load()
	for st := range s.streams {
		in += st.R.Consumed()
		out += st.W.Written()
	}
	return in, out
}

// Accept claims the next queued connection, waiting until ctx ends.
func (s *Server) Accept(ctx context.Context) (*Stream, error) {
	s.active.Add(1)
	defer func() {
		s.lastUsed.Store(time.Now().UnixNano())
		s.active.Add(-1)
	}()
	for {
		st, err := s.queue.pop(ctx)
		if err != nil {
			return nil, err
		}
		s.m.mu.Lock()
		alive := st.elem != nil // not released while it waited
		if alive {
			st.queued.Store(false)
			st.touch()
		}
		s.m.mu.Unlock()
		if alive {
			return st, nil
		}
	}
}

// Unaccept puts a claimed stream back at the head of the queue, for a claim
// whose response could not be delivered.
func (s *Server) Unaccept(st *Stream) {
	st.queued.Store(true)
	if !s.queue.pushFront(st) {
		s.m.Release(st.ID)
	}
}

// Close closes the server and releases its handle. With clients "close" or
// "abort" the streams it accepted are closed or aborted too.
func (m *Manager) CloseServer(ctx context.Context, id string, closeClients, abortClients bool) error {
	if err := checkID("server_id", id); err != nil {
		return err
	}
	c := callerOf(ctx)
	m.mu.Lock()
	s, ok := m.servers[id]
	if ok && !s.acl.allows(c) {
		ok = false
	}
	if ok {
		m.removeServerLocked(id, s)
	}
	m.mu.Unlock()
	if !ok {
		return &notFoundError{kind: "server", id: id}
	}
	s.shutdown(false)
	switch {
	case abortClients:
		s.srv.AbortClients()
	case closeClients:
		s.srv.CloseClients()
	}
	return nil
}

// shutdown closes the listener and aborts connections nobody claimed.
func (s *Server) shutdown(abortClients bool) {
	s.closeOnce.Do(func() { s.m.fds.give(2) })
	s.srv.Close()
	s.queue.close()
	for _, st := range s.queue.drain() {
		s.m.Release(st.ID)
	}
	if abortClients {
		s.srv.AbortClients()
	}
}

var errShuttingDown = errors.New("the daemon is shutting down")

type notFoundError struct{ kind, id string }

func (e *notFoundError) Error() string { return "unknown " + e.kind + " id " + strconv.Quote(e.id) }

// queuedError refuses an RPC on a stream still waiting to be accepted.
type queuedError struct{ id string }

func (e queuedError) Error() string {
	return "stream " + strconv.Quote(e.id) + " is queued on its server: claim it with Accept or Serve first"
}

// budgetError refuses a new stream while the memory budget is tight.
type budgetError struct{ used, max int64 }

func (e budgetError) Error() string {
	return "the daemon's memory budget is nearly used up (" + strconv.FormatInt(e.used, 10) + " of " + strconv.FormatInt(e.max, 10) + " bytes): no new streams"
}

type limitError struct {
	what  string
	limit int
}

func (e *limitError) Error() string {
	return "too many " + e.what + " (limit " + strconv.Itoa(e.limit) + ")"
}
