package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// The file's shape as decoded by toml. Values that the decoder can place
// (outside arrays of tables) have their own types so that their errors carry
// the decoder's line number; rule fields are checked after decoding.
type fileDoc struct {
	Admins   []adminName            `toml:"admins"`
	Everyone sectionDoc             `toml:"everyone"`
	Identity map[string]*sectionDoc `toml:"identity"`
}

type sectionDoc struct {
	MaxStreams        *count    `toml:"max_streams"`
	MaxServers        *count    `toml:"max_servers"`
	MaxBufferedBytes  *byteSize `toml:"max_buffered_bytes"`
	BytesPerSecondIn  *byteSize `toml:"bytes_per_second_in"`
	BytesPerSecondOut *byteSize `toml:"bytes_per_second_out"`
	Connect           []ruleDoc `toml:"connect"`
	Bind              []ruleDoc `toml:"bind"`
}

type ruleDoc struct {
	Name   *string  `toml:"name"`
	Action *string  `toml:"action"`
	CIDRs  []string `toml:"cidrs"`
	Ports  []any    `toml:"ports"` // "80", "1-1023" or 80
	Hosts  []string `toml:"hosts"`
	Unix   []string `toml:"unix"`
}

// The keys each table may hold, for the exact-case check (the decoder itself
// matches field names case-insensitively).
var (
	topKeys     = set("admins", "everyone", "identity")
	sectionKeys = set("max_streams", "max_servers", "max_buffered_bytes", "bytes_per_second_in", "bytes_per_second_out", "connect", "bind")
	ruleKeys    = set("name", "action", "cidrs", "ports", "hosts", "unix")
)

func set(ks ...string) map[string]bool {
	m := make(map[string]bool, len(ks))
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// count is a non-negative integer quota.
type count int

func (c *count) UnmarshalTOML(v any) error {
	n, ok := v.(int64)
	if !ok {
		return fmt.Errorf("want a non-negative integer, not %s", tomlType(v))
	}
	if n < 0 {
		return fmt.Errorf("want a non-negative integer, not %d", n)
	}
	if n > math.MaxInt32 {
		return fmt.Errorf("%d is too large", n)
	}
	*c = count(n)
	return nil
}

// byteSize is a non-negative byte count: an integer or a string with a unit.
type byteSize int64

func (b *byteSize) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: negative", v)
		}
		*b = byteSize(v)
		return nil
	case string:
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		*b = byteSize(n)
		return nil
	}
	return fmt.Errorf("invalid size: want an integer or a string such as \"64MiB\", not %s", tomlType(v))
}

// parseSize parses a byte size as the policy file writes it: an integer
// optionally followed by a unit B, KiB, MiB, GiB (powers of 1024) or KB, MB,
// GB (powers of 1000), with optional space between, e.g. "64MiB", "10 MB".
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: want an integer and a unit B, KiB, MiB, GiB, KB, MB or GB", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	unit := strings.TrimSpace(t[i:])
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want B, KiB, MiB, GiB, KB, MB or GB)", s, unit)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * mult, nil
}

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
	"KB": 1e3, "MB": 1e6, "GB": 1e9,
}

// adminName is one entry of admins.
type adminName string

func (a *adminName) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("want an identity string, not %s", tomlType(v))
	}
	if err := checkIdentity(s); err != nil {
		return err
	}
	*a = adminName(s)
	return nil
}

// checkIdentity rejects names that can never match a caller.
func checkIdentity(s string) error {
	if s == "" {
		return errors.New("identity names must be non-empty")
	}
	if uid, ok := strings.CutPrefix(s, "uid:"); ok {
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != uid { // no sign, no leading zeros
			return fmt.Errorf("identity %q: want uid:N with N a decimal user id", s)
		}
	}
	return nil
}

func tomlType(v any) string {
	switch v.(type) {
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any, []map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// Load reads and parses the policy file at path. Its errors begin with path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %s: %w", path, pe.Op, pe.Err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Parse parses a policy file's contents. See the package documentation for
// the format.
func Parse(data []byte) (*Policy, error) {
	var doc fileDoc
	// The decoder's errors (toml.ParseError) name the line and the last key:
	// toml: line 3 (last key "everyone.max_streams"): ...
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return nil, err
	}
	if err := checkKeys(data, md); err != nil {
		return nil, err
	}

	p := &Policy{admins: make(map[string]bool), identities: make(map[string]*section)}
	for _, a := range doc.Admins {
		p.admins[string(a)] = true
	}
	if err := buildSection(&p.everyone, &doc.Everyone, toml.Key{"everyone"}); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(doc.Identity))
	for id := range doc.Identity {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		key := toml.Key{"identity", id}
		if err := checkIdentity(id); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		s := &section{}
		sd := doc.Identity[id]
		if sd == nil {
			sd = &sectionDoc{}
		}
		if err := buildSection(s, sd, key); err != nil {
			return nil, err
		}
		p.identities[id] = s
	}
	return p, nil
}

// checkKeys rejects keys the decoder did not use, and keys it used only
// through its case-insensitive matching of field names.
func checkKeys(data []byte, md toml.MetaData) error {
	bad := md.Undecoded()
	for _, k := range md.Keys() {
		if !knownKey(k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	// Name the key with the index of the array element that holds it.
	var generic map[string]any
	if _, err := toml.Decode(string(data), &generic); err != nil {
		return fmt.Errorf("unknown key %s", bad[0])
	}
	return fmt.Errorf("unknown key %s", locate(generic, bad[0]))
}

func knownKey(k toml.Key) bool {
	switch {
	case len(k) == 0:
		return true
	case !topKeys[k[0]]:
		return false
	case k[0] == "admins":
		return len(k) == 1
	case k[0] == "everyone":
		return knownSectionKey(k[1:])
	default: // identity
		return len(k) <= 2 || knownSectionKey(k[2:])
	}
}

func knownSectionKey(k toml.Key) bool {
	switch {
	case len(k) == 0:
		return true
	case !sectionKeys[k[0]]:
		return false
	case k[0] == "connect" || k[0] == "bind":
		return len(k) == 1 || (len(k) == 2 && ruleKeys[k[1]])
	default:
		return len(k) == 1
	}
}

// locate renders k with the index of the first array element on its path
// that holds the rest of it: everyone.connect.bogus -> everyone.connect[1].bogus.
func locate(v any, k toml.Key) string {
	var b strings.Builder
	for i, part := range k {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(toml.Key{part}.String())
		m, _ := v.(map[string]any)
		v = m[part]
		if arr, ok := asTables(v); ok && i+1 < len(k) {
			for j, el := range arr {
				if _, ok := el[k[i+1]]; ok {
					fmt.Fprintf(&b, "[%d]", j)
					v = el
					break
				}
			}
		}
	}
	return b.String()
}

func asTables(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, 0, len(v))
		for _, el := range v {
			m, ok := el.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, m)
		}
		return out, true
	}
	return nil, false
}

func buildSection(s *section, sd *sectionDoc, key toml.Key) error {
	s.quota = partialQuota{
		maxStreams:        intPtr(sd.MaxStreams),
		maxServers:        intPtr(sd.MaxServers),
		maxBufferedBytes:  sizePtr(sd.MaxBufferedBytes),
		bytesPerSecondIn:  sizePtr(sd.BytesPerSecondIn),
		bytesPerSecondOut: sizePtr(sd.BytesPerSecondOut),
	}
	var err error
	if s.connect, err = buildRules(sd.Connect, key, "connect"); err != nil {
		return err
	}
	s.bind, err = buildRules(sd.Bind, key, "bind")
	return err
}

func intPtr(c *count) *int {
	if c == nil {
		return nil
	}
	n := int(*c)
	return &n
}

func sizePtr(b *byteSize) *int64 {
	if b == nil {
		return nil
	}
	n := int64(*b)
	return &n
}

func buildRules(docs []ruleDoc, section toml.Key, list string) ([]*rule, error) {
	rules := make([]*rule, 0, len(docs))
	for i, rd := range docs {
		where := fmt.Sprintf("%s.%s[%d]", section, list, i)
		r, err := buildRule(rd, where)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func buildRule(rd ruleDoc, where string) (*rule, error) {
	r := &rule{name: where}
	if rd.Name != nil {
		if strings.TrimSpace(*rd.Name) == "" {
			return nil, fmt.Errorf("%s.name: must not be empty (omit it for the default %q)", where, where)
		}
		r.name = *rd.Name
	}
	switch {
	case rd.Action == nil:
		return nil, fmt.Errorf("%s.action: missing (want \"allow\" or \"deny\")", where)
	case *rd.Action == "deny":
		r.deny = true
	case *rd.Action == "allow":
	default:
		return nil, fmt.Errorf("%s.action: invalid action %q (want \"allow\" or \"deny\")", where, *rd.Action)
	}
	for _, l := range []struct {
		key   string
		isSet bool
		n     int
	}{{"cidrs", rd.CIDRs != nil, len(rd.CIDRs)}, {"ports", rd.Ports != nil, len(rd.Ports)}, {"hosts", rd.Hosts != nil, len(rd.Hosts)}, {"unix", rd.Unix != nil, len(rd.Unix)}} {
		if l.isSet && l.n == 0 {
			return nil, fmt.Errorf("%s.%s: empty list matches nothing (omit the key to match anything)", where, l.key)
		}
	}
	for j, s := range rd.CIDRs {
		p, err := parseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("%s.cidrs[%d]: %w", where, j, err)
		}
		r.cidrs = append(r.cidrs, p)
	}
	for j, v := range rd.Ports {
		pr, err := parsePorts(v)
		if err != nil {
			return nil, fmt.Errorf("%s.ports[%d]: %w", where, j, err)
		}
		r.ports = append(r.ports, pr)
	}
	for j, s := range rd.Hosts {
		h, err := parseHostPattern(s)
		if err != nil {
			return nil, fmt.Errorf("%s.hosts[%d]: %w", where, j, err)
		}
		r.hosts = append(r.hosts, h)
	}
	for j, s := range rd.Unix {
		u, err := parseUnixPrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s.unix[%d]: %w", where, j, err)
		}
		r.unix = append(r.unix, u)
	}
	return r, nil
}

// parseCIDR accepts a prefix or a single address. IPv4-mapped IPv6 prefixes
// become IPv4 prefixes, since checked addresses are unmapped.
func parseCIDR(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("invalid CIDR %q: %v", s, err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("invalid CIDR %q: want a prefix such as 10.0.0.0/8 or an address", s)
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("invalid CIDR %q: zones are not allowed", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// parsePorts accepts "80", "1024-65535" or the integer 80.
func parsePorts(v any) (portRange, error) {
	switch v := v.(type) {
	case int64:
		if v < 0 || v > 65535 {
			return portRange{}, fmt.Errorf("invalid port %d: want 0-65535", v)
		}
		return portRange{uint16(v), uint16(v)}, nil
	case string:
		lo, hi, isRange := strings.Cut(v, "-")
		l, err := parsePort(lo)
		if err != nil {
			return portRange{}, fmt.Errorf("invalid port range %q: %v", v, err)
		}
		if !isRange {
			return portRange{l, l}, nil
		}
		h, err := parsePort(hi)
		if err != nil {
			return portRange{}, fmt.Errorf("invalid port range %q: %v", v, err)
		}
		if l > h {
			return portRange{}, fmt.Errorf("invalid port range %q: low end above high end", v)
		}
		return portRange{l, h}, nil
	}
	return portRange{}, fmt.Errorf("invalid port: want a string such as \"80\" or \"1024-65535\", not %s", tomlType(v))
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%s is not in 0-65535", s)
	}
	return uint16(n), nil
}

// parseHostPattern accepts "*", "*.suffix" and exact names or IP literals,
// and returns them normalized (lower case, no brackets or trailing dot).
func parseHostPattern(s string) (string, error) {
	h := normalizeHost(s)
	if h == "*" && strings.TrimSpace(s) == "*" {
		return h, nil
	}
	if isIP(h) {
		return h, nil
	}
	name := strings.TrimPrefix(h, "*.")
	switch {
	case h == "":
		return "", fmt.Errorf("invalid host pattern %q: empty", s)
	case name == "" || name == "*" || strings.Contains(name, "*"):
		return "", fmt.Errorf("invalid host pattern %q: \"*\" is allowed only alone or as a leading \"*.\"", s)
	case strings.Contains(name, "..") || strings.HasPrefix(name, ".") || strings.ContainsAny(name, " \t/:@[]"):
		return "", fmt.Errorf("invalid host pattern %q: not a host name", s)
	}
	return h, nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// parseUnixPrefix accepts absolute paths (cleaned) and abstract "@" names.
func parseUnixPrefix(s string) (string, error) {
	switch {
	case strings.HasPrefix(s, "@"):
		return s, nil
	case filepath.IsAbs(s):
		return filepath.Clean(s), nil
	case s == "":
		return "", errors.New("empty Unix prefix")
	}
	return "", fmt.Errorf("relative Unix prefix %q: want an absolute path or an @abstract name", s)
}
