package policy

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Policy is a parsed policy file. It is immutable after Load, Parse or
// Default and safe for concurrent use. A nil *Policy behaves as Default().
type Policy struct {
	admins     map[string]bool
	everyone   section
	identities map[string]*section
}

// section is [everyone] or one [identity."..."].
type section struct {
	quota   partialQuota
	connect []*rule
	bind    []*rule
}

// partialQuota holds the quota keys one section sets; nil means unset.
type partialQuota struct {
	maxStreams, maxServers                                *int
	maxBufferedBytes, bytesPerSecondIn, bytesPerSecondOut *int64
}

// Quota is an identity's resolved limits; 0 means unlimited.
type Quota struct {
	// MaxStreams caps the live streams the identity owns at once.
	MaxStreams int
	// MaxServers caps the listening servers the identity owns at once.
	MaxServers int
	// MaxBufferedBytes caps the bytes buffered for the identity's streams.
	MaxBufferedBytes int64
	// BytesPerSecondIn caps the socket bytes read per second, all the
	// identity's streams together.
	BytesPerSecondIn int64
	// BytesPerSecondOut caps the socket bytes written per second, all the
	// identity's streams together.
	BytesPerSecondOut int64
}

// Denied says which rule refused a connect or bind. Rule is the rule's name;
// Target is what was checked, such as "10.0.0.5:22 (db.internal)" or
// "/run/x.sock". Bind is true for CheckBind and CheckBindUnix.
//
// The Check methods return a *Denied, nil when allowed: test it against nil
// before storing it in an error variable.
type Denied struct {
	Rule, Target string
	Bind         bool
}

// Error describes the denial, e.g.
// `connection to 10.0.0.5:22 (db.internal) denied by rule "no-internal"`.
func (d *Denied) Error() string {
	if d.Bind {
		return "bind to " + d.Target + " denied by rule " + quote(d.Rule)
	}
	return "connection to " + d.Target + " denied by rule " + quote(d.Rule)
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// Pseudo-rule names for targets that cannot be checked.
const (
	ruleInvalidAddress = "invalid-address"
	ruleInvalidPath    = "invalid-path"
	ruleUnresolvable   = "unresolvable-path"
)

// rule is one connect or bind rule.
type rule struct {
	name  string
	deny  bool
	cidrs []netip.Prefix
	ports []portRange
	hosts []string // lower case, no trailing dot; "*" or "*.suffix" or exact
	unix  []string // cleaned absolute prefixes or abstract ("@...") prefixes
}

type portRange struct{ lo, hi uint16 }

func (r *rule) hasTCP() bool  { return len(r.cidrs) > 0 || len(r.ports) > 0 || len(r.hosts) > 0 }
func (r *rule) hasUnix() bool { return len(r.unix) > 0 }

// matchTCP reports whether r matches a TCP target: every TCP criterion it
// sets matches, and it is not a Unix-only rule. addr must already be
// unmapped and without zone; host normalized.
func (r *rule) matchTCP(host string, addr netip.AddrPort) bool {
	if r.hasUnix() && !r.hasTCP() {
		return false
	}
	if len(r.cidrs) > 0 && !slices.ContainsFunc(r.cidrs, func(p netip.Prefix) bool { return p.Contains(addr.Addr()) }) {
		return false
	}
	if len(r.ports) > 0 {
		port := addr.Port()
		if !slices.ContainsFunc(r.ports, func(pr portRange) bool { return pr.lo <= port && port <= pr.hi }) {
			return false
		}
	}
	if len(r.hosts) > 0 && !slices.ContainsFunc(r.hosts, func(pat string) bool { return matchHost(pat, host) }) {
		return false
	}
	return true
}

// matchUnix reports whether r matches a cleaned absolute or abstract path:
// its unix list matches, or it sets no criteria at all.
func (r *rule) matchUnix(path string) bool {
	if r.hasTCP() && !r.hasUnix() {
		return false
	}
	if len(r.unix) == 0 {
		return true
	}
	return slices.ContainsFunc(r.unix, func(prefix string) bool { return matchUnixPrefix(prefix, path) })
}

// matchHost matches a normalized host pattern against a normalized host.
func matchHost(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:] // ".example.com"
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	default:
		return pattern == host
	}
}

// matchUnixPrefix matches per path component: "/run/app" matches "/run/app"
// and "/run/app/s" but not "/run/apple". "/" matches every absolute path
// and "@" every abstract name.
func matchUnixPrefix(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	if len(path) == len(prefix) || prefix == "/" || prefix == "@" || strings.HasSuffix(prefix, "/") {
		return true
	}
	return path[len(prefix)] == '/'
}

// normalizeHost lower-cases a host name and drops IPv6 brackets and one
// trailing dot, so that "DB.Example.com." matches "db.example.com".
func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(h, ".")
}

// Default returns a policy with only the built-in defaults and no admins.
func Default() *Policy { return defaultPolicy }

var defaultPolicy = &Policy{}

var (
	defaultConnect = []*rule{
		{name: "default.connect.link-local", deny: true, cidrs: prefixes("169.254.0.0/16", "fe80::/10")},
		{name: "default.connect.metadata", deny: true, cidrs: prefixes("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")},
		{name: "default.connect.metadata", deny: true, hosts: []string{"metadata.google.internal", "metadata", "instance-data"}},
		{name: "default.connect.allow"},
	}
	defaultBind = []*rule{
		{name: "default.bind.loopback", cidrs: prefixes("127.0.0.0/8", "::1/128"), ports: []portRange{{0, 0}, {1024, 65535}}},
		{name: "default.bind.unix", unix: []string{"/", "@"}},
		{name: "default.bind.deny", deny: true},
	}
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// IsAdmin reports whether identity is listed in admins.
func (p *Policy) IsAdmin(identity string) bool {
	if p == nil {
		return false
	}
	return p.admins[identity]
}

// Identities returns the identities that have their own section, sorted.
func (p *Policy) Identities() []string {
	if p == nil {
		return nil
	}
	out := make([]string, 0, len(p.identities))
	for id := range p.identities {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Quota returns identity's limits: for each key the identity's value if its
// section sets it, else everyone's, else 0 (unlimited).
func (p *Policy) Quota(identity string) Quota {
	if p == nil {
		return Quota{}
	}
	var own partialQuota
	if s := p.identities[identity]; s != nil {
		own = s.quota
	}
	ev := p.everyone.quota
	return Quota{
		MaxStreams:        pick(own.maxStreams, ev.maxStreams),
		MaxServers:        pick(own.maxServers, ev.maxServers),
		MaxBufferedBytes:  pick(own.maxBufferedBytes, ev.maxBufferedBytes),
		BytesPerSecondIn:  pick(own.bytesPerSecondIn, ev.bytesPerSecondIn),
		BytesPerSecondOut: pick(own.bytesPerSecondOut, ev.bytesPerSecondOut),
	}
}

func pick[T int | int64](own, everyone *T) T {
	if own != nil {
		return *own
	}
	if everyone != nil {
		return *everyone
	}
	return 0
}

// rules returns the rule lists to try, in order, for identity.
func (p *Policy) rules(identity string, bind bool) [][]*rule {
	def := defaultConnect
	if bind {
		def = defaultBind
	}
	if p == nil {
		return [][]*rule{def}
	}
	lists := make([][]*rule, 0, 3)
	pick := func(s *section) []*rule {
		if bind {
			return s.bind
		}
		return s.connect
	}
	if s := p.identities[identity]; s != nil {
		lists = append(lists, pick(s))
	}
	return append(lists, pick(&p.everyone), def)
}

// first returns the first rule matching, or nil if none (which cannot happen
// with the built-in defaults, whose last rule matches everything).
func (p *Policy) first(identity string, bind bool, match func(*rule) bool) *rule {
	for _, list := range p.rules(identity, bind) {
		for _, r := range list {
			if match(r) {
				return r
			}
		}
	}
	return nil
}

// CheckConnect checks an Open to addr, the resolved address of host, the
// name the caller asked for (which may be an IP literal). It returns nil
// when allowed.
func (p *Policy) CheckConnect(identity, host string, addr netip.AddrPort) *Denied {
	return p.checkTCP(identity, host, addr, false)
}

// CheckBind checks a StartServer on addr, the resolved address of host, the
// name the caller asked for (which may be an IP literal or empty). It
// returns nil when allowed.
func (p *Policy) CheckBind(identity, host string, addr netip.AddrPort) *Denied {
	return p.checkTCP(identity, host, addr, true)
}

func (p *Policy) checkTCP(identity, host string, addr netip.AddrPort, bind bool) *Denied {
	ip := addr.Addr().Unmap()
	shown := netip.AddrPortFrom(ip, addr.Port())
	target := shown.String()
	if host != "" {
		if h, err := netip.ParseAddr(normalizeHost(host)); err != nil || h.Unmap() != ip {
			target += " (" + host + ")"
		}
	}
	if !addr.IsValid() {
		return &Denied{Rule: ruleInvalidAddress, Target: target, Bind: bind}
	}
	checked := netip.AddrPortFrom(ip.WithZone(""), addr.Port())
	h := normalizeHost(host)
	r := p.first(identity, bind, func(r *rule) bool { return r.matchTCP(h, checked) })
	if r == nil || r.deny {
		return denied(r, target, bind)
	}
	return nil
}

// CheckConnectName checks the name an Open asked for before it is
// resolved: a deny rule that decides by host name and port alone (no
// cidrs), with no allow rule by address before it, refuses the name
// without a DNS lookup, so denied names are never resolved, and names that
// do not resolve are still denied. It returns nil when the rules depend on
// the address (CheckConnect decides then, per address) or allow the name.
// An IP literal is left to CheckConnect.
func (p *Policy) CheckConnectName(identity, host string, port int) *Denied {
	h := normalizeHost(host)
	if _, err := netip.ParseAddr(h); err == nil || h == "" || port < 0 || port > 65535 {
		return nil
	}
	for _, list := range p.rules(identity, false) {
		for _, r := range list {
			switch {
			case r.hasUnix() && !r.hasTCP():
				continue // never matches TCP
			case len(r.cidrs) > 0 && r.deny:
				continue // denies some addresses: the rest go on to the next rules
			case len(r.cidrs) > 0:
				return nil // allows some addresses: CheckConnect decides
			}
			if len(r.ports) > 0 && !slices.ContainsFunc(r.ports, func(pr portRange) bool { return int(pr.lo) <= port && port <= int(pr.hi) }) {
				continue
			}
			if len(r.hosts) > 0 && !slices.ContainsFunc(r.hosts, func(pat string) bool { return matchHost(pat, h) }) {
				continue
			}
			if r.deny {
				return denied(r, net.JoinHostPort(host, strconv.Itoa(port)), false)
			}
			return nil
		}
	}
	return nil
}

func denied(r *rule, target string, bind bool) *Denied {
	name := "default.deny"
	if r != nil {
		name = r.name
	}
	return &Denied{Rule: name, Target: target, Bind: bind}
}

// CheckConnectUnix checks an Open of the Unix socket at path. Relative paths
// are taken against the daemon's working directory; "@name" is abstract.
// When the path exists it is also resolved through symlinks, and both the
// given and the resolved path must be allowed. It returns nil when allowed.
func (p *Policy) CheckConnectUnix(identity, path string) *Denied {
	return p.checkUnix(identity, path, false)
}

// CheckBindUnix checks a StartServer on the Unix socket path. Relative paths
// are taken against the daemon's working directory; "@name" is abstract.
// The parent directory is resolved through symlinks, and both the given and
// the resolved path must be allowed. It returns nil when allowed.
func (p *Policy) CheckBindUnix(identity, path string) *Denied {
	return p.checkUnix(identity, path, true)
}

func (p *Policy) checkUnix(identity, path string, bind bool) *Denied {
	if path == "" {
		return &Denied{Rule: ruleInvalidPath, Target: path, Bind: bind}
	}
	if strings.HasPrefix(path, "@") {
		return p.checkPath(identity, path, path, bind)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return &Denied{Rule: ruleInvalidPath, Target: path, Bind: bind}
	}
	if d := p.checkPath(identity, abs, abs, bind); d != nil {
		return d
	}
	resolved, err := resolve(abs, !bind)
	if err != nil {
		return &Denied{Rule: ruleUnresolvable, Target: abs, Bind: bind}
	}
	if resolved == abs {
		return nil
	}
	return p.checkPath(identity, resolved, abs+" (resolves to "+resolved+")", bind)
}

func (p *Policy) checkPath(identity, path, target string, bind bool) *Denied {
	r := p.first(identity, bind, func(r *rule) bool { return r.matchUnix(path) })
	if r == nil || r.deny {
		return denied(r, target, bind)
	}
	return nil
}

// resolve returns the real path of the cleaned absolute path abs. With
// followLast, the last component is resolved too (connect follows a symlink
// there); without it only the parent directory is (bind creates the last
// component, or fails if it exists). Components that do not exist yet are
// kept as they are after the nearest existing ancestor is resolved.
func resolve(abs string, followLast bool) (string, error) {
	if followLast {
		if _, err := os.Lstat(abs); err == nil {
			// It exists: a failure here is a dangling symlink, a loop or a
			// permission problem, none of which we can vouch for.
			return filepath.EvalSymlinks(abs)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	dir, base := filepath.Split(abs)
	dir = filepath.Clean(dir)
	if dir == abs { // the root
		return abs, nil
	}
	rdir, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if _, lerr := os.Lstat(dir); lerr == nil {
			return "", err // dir is a dangling symlink
		}
		rdir, err = resolve(dir, true)
	}
	if err != nil {
		return "", err
	}
	return filepath.Join(rdir, base), nil
}
