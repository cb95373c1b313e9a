package manager

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/streammgr/streammgr/manager/identity"
	"github.com/streammgr/streammgr/manager/policy"
	"github.com/streammgr/streammgr/streamcore"
)

// MaxShared is the most identities a handle may be shared with.
const MaxShared = 16

// maxIdentityName bounds an identity name in Share and share_with.
const maxIdentityName = 256

// owner is one identity's part of the daemon: how many handles it holds
// against its quota, and the memory budget and bandwidth limits its
// streams share. It exists while the identity holds handles.
type owner struct {
	name  string
	quota policy.Quota

	// guarded by Manager.mu
	streams, servers int
	pending          int // calls creating a handle for it right now

	budget  *streamcore.Budget // the daemon's, or a child of it for the quota
	in, out *rate.Limiter      // nil: unlimited
}

// acl says who may use a handle: its owner, the identities it is shared
// with, and admins. Guarded by Manager.mu.
type acl struct {
	owner  *owner
	shared []string // copy-on-write: readers may keep the slice
}

func (a *acl) allows(c identity.Identity) bool {
	return c.Admin || a.owner.name == c.Name || slices.Contains(a.shared, c.Name)
}

// callerOf is the identity a call runs as. A call without one (the
// Manager used in-process, with no authentication in front) is the
// identity named "".
func callerOf(ctx context.Context) identity.Identity {
	if id, ok := identity.FromContext(ctx); ok {
		return id
	}
	return identity.Identity{PID: -1, UID: -1, GID: -1}
}

// ownerLocked returns the owner record of name, creating it (with its
// quota's budget and limiters) when the identity holds nothing yet.
func (m *Manager) ownerLocked(name string) *owner {
	if o, ok := m.owners[name]; ok {
		return o
	}
	q := m.policy.Quota(name)
	o := &owner{name: name, quota: q, budget: m.budget}
	if q.MaxBufferedBytes > 0 {
		o.budget = m.budget.Child(q.MaxBufferedBytes)
	}
	o.in, o.out = limiter(q.BytesPerSecondIn), limiter(q.BytesPerSecondOut)
	m.owners[name] = o
	return o
}

// dropOwnerLocked forgets an owner that holds nothing any more.
func (m *Manager) dropOwnerLocked(o *owner) {
	if o.streams == 0 && o.servers == 0 && o.pending == 0 && m.owners[o.name] == o {
		delete(m.owners, o.name)
	}
}

// rateBurst is the burst of a bandwidth limit: a tenth of a second's worth,
// at least one socket read.
const rateBurst = 256 << 10

// limiter is a token bucket of bps bytes per second (nil for 0: no limit).
func limiter(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bps), int(max(bps/10, rateBurst)))
}

// streamOptions applies an owner's budget and bandwidth limits.
func (o *owner) streamOptions(opts *streamcore.Options) {
	opts.Budget, opts.InRate, opts.OutRate = o.budget, o.in, o.out
}

// quotaError refuses a handle beyond an identity's count quota.
type quotaError struct {
	identity, what string
	limit          int
}

func (e *quotaError) Error() string {
	return "quota exceeded: " + strconv.Quote(e.identity) + " may hold at most " + strconv.Itoa(e.limit) + " " + e.what
}

// notOwnerError refuses Share to an identity that may use the handle but
// does not own it.
type notOwnerError struct{ kind, id string }

func (e *notOwnerError) Error() string {
	return "only the owner of " + e.kind + " " + strconv.Quote(e.id) + " or an admin may share it"
}

// roomForLocked checks an owner's count quota for one more stream (or
// server), releasing the owner's longest-lost stream when that makes room.
func (m *Manager) roomForLocked(o *owner, server bool) error {
	if server {
		if o.quota.MaxServers > 0 && o.servers >= o.quota.MaxServers {
			return &quotaError{identity: o.name, what: "servers", limit: o.quota.MaxServers}
		}
		return nil
	}
	if o.quota.MaxStreams <= 0 || o.streams < o.quota.MaxStreams {
		return nil
	}
	for e := m.lost.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*Stream); s.acl.owner == o && s.active.Load() == 0 {
			m.releaseLocked(s)
			return nil
		}
	}
	return &quotaError{identity: o.name, what: "streams", limit: o.quota.MaxStreams}
}

// checkShare validates identity names for share_with and Share.
func checkShare(field string, names []string) error {
	for i, n := range names {
		switch {
		case n == "":
			return invalid(field+"["+strconv.Itoa(i)+"]", "empty identity name")
		case len(n) > maxIdentityName:
			return invalid(field+"["+strconv.Itoa(i)+"]", "identity name longer than "+strconv.Itoa(maxIdentityName)+" bytes")
		}
	}
	if len(names) > MaxShared {
		return invalid(field, "at most "+strconv.Itoa(MaxShared)+" identities")
	}
	return nil
}

// withShared returns shared with add added and remove removed, sorted and
// without duplicates or the owner.
func withShared(shared, add, remove []string, ownerName string) []string {
	out := slices.Clone(shared)
	out = append(out, add...)
	out = slices.DeleteFunc(out, func(n string) bool { return n == ownerName || slices.Contains(remove, n) })
	slices.Sort(out)
	return slices.Compact(out)
}

// Share changes who may use a stream (kind "stream") or server ("server")
// besides its owner, and returns the owner and the new list.
func (m *Manager) Share(ctx context.Context, kind, id string, add, remove []string) (string, []string, error) {
	if err := checkID(kind+"_id", id); err != nil {
		return "", nil, err
	}
	if err := checkShare("add", add); err != nil {
		return "", nil, err
	}
	if err := checkShare("remove", remove); err != nil {
		return "", nil, err
	}
	c := callerOf(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	var (
		a       *acl
		claimed *atomic.Bool
	)
	if kind == "server" {
		if s, ok := m.servers[id]; ok {
			a, claimed = &s.acl, &s.claimed
		}
	} else if s, ok := m.streams[id]; ok {
		a, claimed = &s.acl, &s.claimed
	}
	if a == nil || !a.allows(c) {
		return "", nil, &notFoundError{kind: kind, id: id}
	}
	claimed.Store(true)
	if !c.Admin && a.owner.name != c.Name {
		return "", nil, &notOwnerError{kind: kind, id: id}
	}
	shared := withShared(a.shared, add, remove, a.owner.name)
	if len(shared) > MaxShared {
		return "", nil, invalid("add", "a handle may be shared with at most "+strconv.Itoa(MaxShared)+" identities")
	}
	a.shared = shared
	return a.owner.name, shared, nil
}
