package policy

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return p
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// ruleOf returns "" for allowed, else the denying rule's name.
func ruleOf(d *Denied) string {
	if d == nil {
		return ""
	}
	return d.Rule
}

// The example from the package documentation (the spec's, verbatim, plus
// an [identity.ops] section) must parse and mean what it says.
const docExample = `
# identities that see and may close every handle
admins = ["uid:0", "ops"]

# applies to every identity (after the identity's own section)
[everyone]
max_streams = 1000          # live streams owned at once (0 or absent: no per-identity cap)
max_servers = 16
max_buffered_bytes = "64MiB"   # integer bytes or a string with unit B, KiB, MiB, GiB, KB, MB, GB
bytes_per_second_in = "10MB"   # socket bytes read per second, all the identity's streams together
bytes_per_second_out = 0       # 0/absent = unlimited

[[everyone.connect]]        # destinations for Open, first matching rule wins
name = "no-internal"        # optional; default "everyone.connect[0]" (section, list, index)
action = "deny"             # "allow" or "deny" (required)
cidrs = ["10.0.0.0/8", "fd00::/8"]   # match the resolved address being connected
ports = ["1-1023", "8080"]           # single ports or ranges
hosts = ["*.internal", "db.example.com"]  # match the host name the caller asked for (case-insensitive; "*.x" matches any subdomain of x, "*" anything)
unix = ["/run/app/", "@abstract-prefix"] # Unix socket path prefixes, matched per path component ("/run/app" matches "/run/app" and "/run/app/s" but not "/run/apple")

[[everyone.bind]]           # addresses for StartServer, same fields
action = "allow"
cidrs = ["127.0.0.0/8", "::1/128"]
ports = ["0", "1024-65535"]  # 0 = an ephemeral port chosen by the kernel

[identity."uid:1000"]       # the same keys as [everyone], for one identity
max_streams = 100
[[identity."uid:1000".connect]]
action = "allow"
hosts = ["api.example.com"]

[identity.ops]
max_streams = 0                # explicitly unlimited, overriding [everyone]
[[identity.ops.bind]]
name = "ops-any-interface"
action = "allow"
cidrs = ["0.0.0.0/32", "::/128"]   # the unspecified addresses: all interfaces
ports = ["8000-8999"]
`

func TestDocExample(t *testing.T) {
	p := mustParse(t, docExample)
	if !p.IsAdmin("uid:0") || !p.IsAdmin("ops") || p.IsAdmin("uid:1000") || p.IsAdmin("anonymous") {
		t.Errorf("admins wrong")
	}
	if got, want := p.Identities(), []string{"ops", "uid:1000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Identities = %v, want %v", got, want)
	}
	d := p.CheckConnect("alice", "db.internal", ap("10.0.0.5:22"))
	if d == nil || d.Rule != "no-internal" || d.Target != "10.0.0.5:22 (db.internal)" || d.Bind {
		t.Fatalf("CheckConnect = %+v", d)
	}
	if got, want := d.Error(), `connection to 10.0.0.5:22 (db.internal) denied by rule "no-internal"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// The mixed rule matches TCP by its TCP criteria (all of them) ...
	for _, c := range []struct{ host, addr, want string }{
		{"db.internal", "10.0.0.5:22", "no-internal"},
		{"db.internal", "10.0.0.5:2222", ""},
		{"db.example.com", "[fd00::5]:8080", "no-internal"},
		{"www.example.com", "10.0.0.5:22", ""},
		{"db.internal", "192.0.2.1:22", ""},
	} {
		if got := ruleOf(p.CheckConnect("bob", c.host, ap(c.addr))); got != c.want {
			t.Errorf("CheckConnect(%q, %s) = %q, want %q", c.host, c.addr, got, c.want)
		}
	}
	// ... and Unix paths by its unix list.
	for _, c := range []struct{ path, want string }{
		{"/run/app/x.sock", "no-internal"},
		{"/run/app", "no-internal"},
		{"/run/apple", ""},
		{"@abstract-prefix", "no-internal"},
		{"@abstract-prefix/x", "no-internal"},
		{"@abstract-prefixes", ""},
	} {
		if got := ruleOf(p.CheckConnectUnix("bob", c.path)); got != c.want {
			t.Errorf("CheckConnectUnix(%q) = %q, want %q", c.path, got, c.want)
		}
	}
	// uid:1000's own allow for api.example.com comes first; the rule it
	// does not match falls through to everyone's.
	if d := p.CheckConnect("uid:1000", "api.example.com", ap("10.0.0.7:443")); d != nil {
		t.Errorf("uid:1000 api: %v", d)
	}
	if got := ruleOf(p.CheckConnect("uid:1000", "db.internal", ap("10.0.0.7:443"))); got != "no-internal" {
		t.Errorf("uid:1000 db = %q", got)
	}
	if q := p.Quota("uid:1000"); q.MaxStreams != 100 || q.MaxBufferedBytes != 64<<20 || q.BytesPerSecondIn != 10_000_000 {
		t.Errorf("Quota(uid:1000) = %+v", q)
	}
	if d := p.CheckConnectUnix("alice", "/run/app/x.sock"); ruleOf(d) != "no-internal" {
		t.Errorf("unix: %+v", d)
	}
	if d := p.CheckBind("ops", "", ap("0.0.0.0:8080")); d != nil {
		t.Errorf("ops bind all interfaces: %v", d)
	}
	d = p.CheckBind("alice", "", ap("0.0.0.0:8080"))
	if ruleOf(d) != "default.bind.deny" || !d.Bind {
		t.Fatalf("alice bind all interfaces: %+v", d)
	}
	if got, want := d.Error(), `bind to 0.0.0.0:8080 denied by rule "default.bind.deny"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	rule := func(body string) string { return "[[everyone.connect]]\naction = \"deny\"\n" + body }
	tests := []struct {
		name, src string
		want      []string // substrings of the error
	}{
		{"syntax", "admins = [", []string{"line 1"}},
		{"unknown top key", "bogus = 1", []string{"unknown key bogus"}},
		{"unknown section key", "[everyone]\nmax_stream = 1", []string{"unknown key everyone.max_stream"}},
		{"unknown key wrong case", "[everyone]\nMax_Streams = 1", []string{"unknown key everyone.Max_Streams"}},
		{"unknown table", "[nobody]\nx = 1", []string{"unknown key nobody"}},
		{"unknown identity key", "[identity.alice]\nfoo = 1", []string{"unknown key identity.alice.foo"}},
		{"unknown rule key", "[[everyone.connect]]\naction = \"allow\"\n[[everyone.connect]]\naction = \"allow\"\ncidr = [\"10.0.0.0/8\"]",
			[]string{"unknown key everyone.connect[1].cidr"}},
		{"unknown rule key inline", "everyone = {bind = [{action = \"allow\", prots = [\"80\"]}]}",
			[]string{"unknown key everyone.bind[0].prots"}},
		{"unknown rule key quoted identity", "[[identity.\"uid:1000\".bind]]\naction = \"allow\"\nport = 1",
			[]string{`unknown key identity."uid:1000".bind[0].port`}},
		{"bad cidr", rule(`cidrs = ["10.0.0.0/33"]`), []string{"everyone.connect[0].cidrs[0]", "invalid CIDR", "10.0.0.0/33"}},
		{"bad cidr text", rule(`cidrs = ["10.0.0.0/8", "example.com"]`), []string{"everyone.connect[0].cidrs[1]", "invalid CIDR"}},
		{"bad cidr zone", rule(`cidrs = ["fe80::1%eth0"]`), []string{"cidrs[0]", "zones"}},
		{"cidr not a string", rule(`cidrs = [10]`), []string{"line 3", "everyone.connect.cidrs"}},
		{"port too big", rule(`ports = ["65536"]`), []string{"everyone.connect[0].ports[0]", "65536"}},
		{"port range reversed", rule(`ports = ["100-10"]`), []string{"everyone.connect[0].ports[0]", "low end above high end"}},
		{"port range open", rule(`ports = ["100-"]`), []string{"ports[0]", "invalid port range"}},
		{"port negative", rule(`ports = ["-1"]`), []string{"ports[0]", "invalid port range"}},
		{"port junk", rule(`ports = ["http"]`), []string{"ports[0]", "not a port number"}},
		{"port int too big", rule(`ports = [70000]`), []string{"ports[0]", "70000"}},
		{"port float", rule(`ports = [1.5]`), []string{"ports[0]", "a float"}},
		{"missing action", "[[everyone.bind]]\ncidrs = [\"127.0.0.1\"]", []string{"everyone.bind[0].action", "missing"}},
		{"bad action", "[[everyone.bind]]\naction = \"permit\"", []string{"everyone.bind[0].action", "permit"}},
		{"action wrong case", "[[everyone.bind]]\naction = \"Allow\"", []string{"everyone.bind[0].action"}},
		{"bad size unit", "[everyone]\nmax_buffered_bytes = \"64XB\"", []string{"line 2", "everyone.max_buffered_bytes", "unknown unit"}},
		{"bad size number", "[everyone]\nbytes_per_second_in = \"fast\"", []string{"line 2", "everyone.bytes_per_second_in", "invalid size"}},
		{"negative size", "[identity.alice]\nbytes_per_second_out = -5", []string{"line 2", "identity.alice.bytes_per_second_out", "negative"}},
		{"size overflow", "[everyone]\nmax_buffered_bytes = \"9999999999999GiB\"", []string{"everyone.max_buffered_bytes", "too large"}},
		{"size float", "[everyone]\nmax_buffered_bytes = 1.5", []string{"everyone.max_buffered_bytes", "a float"}},
		{"size fraction", "[everyone]\nmax_buffered_bytes = \"1.5GiB\"", []string{"everyone.max_buffered_bytes", "unknown unit"}},
		{"negative count", "[everyone]\nmax_streams = -1", []string{"line 2", "everyone.max_streams", "non-negative"}},
		{"count string", "[everyone]\nmax_servers = \"10\"", []string{"line 2", "everyone.max_servers"}},
		{"relative unix", rule(`unix = ["run/app"]`), []string{"everyone.connect[0].unix[0]", "relative Unix prefix"}},
		{"dot unix", rule(`unix = ["./app"]`), []string{"unix[0]", "relative"}},
		{"empty unix", rule(`unix = [""]`), []string{"unix[0]", "empty"}},
		{"empty identity", "[identity.\"\"]\nmax_streams = 1", []string{`identity.""`, "non-empty"}},
		{"bad uid identity", "[identity.\"uid:alice\"]", []string{`identity."uid:alice"`, "uid:N"}},
		{"uid leading zero", "[identity.\"uid:007\"]", []string{`identity."uid:007"`, "uid:N"}},
		{"uid too big", `admins = ["uid:4294967296"]`, []string{"admins", "uid:N"}},
		{"empty admin", `admins = ["ops", ""]`, []string{"line 1", "admins", "non-empty"}},
		{"bad uid admin", `admins = ["uid:-1"]`, []string{"admins", "uid:N"}},
		{"admins not a list", `admins = "ops"`, []string{"line 1", "admins"}},
		{"empty list", rule(`hosts = []`), []string{"everyone.connect[0].hosts", "empty list"}},
		{"bad host wildcard", rule(`hosts = ["db*.internal"]`), []string{"everyone.connect[0].hosts[0]", "invalid host pattern"}},
		{"bad host bare star dot", rule(`hosts = ["*."]`), []string{"hosts[0]", "invalid host pattern"}},
		{"bad host empty", rule(`hosts = [""]`), []string{"hosts[0]", "empty"}},
		{"bad host double star", rule(`hosts = ["*.*.x"]`), []string{"hosts[0]", "invalid host pattern"}},
		{"bad host empty label", rule(`hosts = ["a..b"]`), []string{"hosts[0]", "not a host name"}},
		{"bad host star dot only", rule(`hosts = ["*.."]`), []string{"hosts[0]", "invalid host pattern"}},
		{"empty name", rule(`name = ""`), []string{"everyone.connect[0].name", "empty"}},
		{"section not a table", "everyone = 3", []string{"line 1", "everyone"}},
		{"connect not a list", "[everyone.connect]\naction = \"allow\"", []string{"everyone.connect"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded (%v), want error containing %q", p, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, src := range []string{
		"",
		"# only a comment\n",
		"admins = []",
		"[everyone]",
		"[identity.alice]",
		"[identity.\"uid:0\"]\n[identity.\"uid:4294967295\"]",
		"[[everyone.connect]]\naction = \"allow\"",
		"[[everyone.bind]]\naction = \"allow\"\nports = [80, \"443\", \"0-0\", \"65535\"]\ncidrs = [\"::ffff:10.0.0.0/104\", \"192.168.1.1\", \"10.1.2.3/8\"]",
		"[[everyone.connect]]\naction = \"deny\"\nunix = [\"/\", \"@\", \"@x/\", \"/run//app/../app/\"]",
		"[[everyone.connect]]\naction = \"deny\"\nhosts = [\"*\", \"*.Example.COM.\", \"10.0.0.1\", \"[::1]\"]",
		"[everyone]\nmax_buffered_bytes = \"1 GiB\"\nbytes_per_second_in = \"512\"\nbytes_per_second_out = \"0B\"",
		"everyone = {max_streams = 3, connect = [{action = \"allow\"}]}",
	} {
		if _, err := Parse([]byte(src)); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte(docExample), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !p.IsAdmin("ops") {
		t.Errorf("Load lost admins")
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[everyone]\nmax_streams = -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": ") || !strings.Contains(err.Error(), "everyone.max_streams") {
		t.Errorf("Load(bad) = %v", err)
	}

	missing := filepath.Join(dir, "missing.toml")
	_, err = Load(missing)
	if err == nil || !strings.HasPrefix(err.Error(), missing+": ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestDefaults(t *testing.T) {
	empty := mustParse(t, "")
	for _, p := range []*Policy{Default(), empty, nil} {
		if p.IsAdmin("uid:0") || len(p.Identities()) != 0 || p.Quota("uid:0") != (Quota{}) {
			t.Errorf("%v: not empty", p)
		}
		connect := []struct {
			host, addr, want string
		}{
			{"", "169.254.1.1:80", "default.connect.link-local"},
			{"", "169.254.169.254:80", "default.connect.link-local"},
			{"", "[fe80::1]:80", "default.connect.link-local"},
			{"", "[fe80::1%eth0]:80", "default.connect.link-local"},
			{"", "[::ffff:169.254.1.1]:80", "default.connect.link-local"},
			{"", "[fd00:ec2::254]:80", "default.connect.metadata"},
			{"", "100.100.100.200:80", "default.connect.metadata"},
			{"metadata.google.internal", "203.0.113.7:80", "default.connect.metadata"},
			{"Metadata.Google.Internal.", "203.0.113.7:80", "default.connect.metadata"},
			{"metadata", "203.0.113.7:80", "default.connect.metadata"},
			{"instance-data", "203.0.113.7:80", "default.connect.metadata"},
			{"example.com", "93.184.216.34:443", ""},
			{"", "[2001:db8::1]:443", ""},
			{"", "10.0.0.5:22", ""},
			{"localhost", "127.0.0.1:8080", ""},
		}
		for _, c := range connect {
			if got := ruleOf(p.CheckConnect("alice", c.host, ap(c.addr))); got != c.want {
				t.Errorf("connect %s (%s) = %q, want %q", c.addr, c.host, got, c.want)
			}
		}
		bind := []struct{ addr, want string }{
			{"127.0.0.1:0", ""},
			{"127.0.0.1:8080", ""},
			{"127.1.2.3:65535", ""},
			{"[::1]:1024", ""},
			{"[::ffff:127.0.0.1]:1024", ""},
			{"127.0.0.1:80", "default.bind.deny"},
			{"127.0.0.1:1023", "default.bind.deny"},
			{"[::1]:22", "default.bind.deny"},
			{"0.0.0.0:8080", "default.bind.deny"},
			{"0.0.0.0:0", "default.bind.deny"},
			{"[::]:8080", "default.bind.deny"},
			{"192.0.2.1:8080", "default.bind.deny"},
		}
		for _, c := range bind {
			if got := ruleOf(p.CheckBind("alice", "", ap(c.addr))); got != c.want {
				t.Errorf("bind %s = %q, want %q", c.addr, got, c.want)
			}
		}
		if d := p.CheckConnectUnix("alice", "/run/some.sock"); d != nil {
			t.Errorf("connect unix: %v", d)
		}
		if d := p.CheckConnectUnix("alice", "@abstract"); d != nil {
			t.Errorf("connect abstract: %v", d)
		}
		if d := p.CheckBindUnix("alice", "/tmp/some.sock"); d != nil {
			t.Errorf("bind unix: %v", d)
		}
		if d := p.CheckBindUnix("alice", "@abstract"); d != nil {
			t.Errorf("bind abstract: %v", d)
		}
		if got := ruleOf(p.CheckConnect("alice", "", netip.AddrPort{})); got != ruleInvalidAddress {
			t.Errorf("zero addr = %q", got)
		}
		if got := ruleOf(p.CheckBindUnix("alice", "")); got != ruleInvalidPath {
			t.Errorf("empty path = %q", got)
		}
	}
}

func TestTCPMatching(t *testing.T) {
	p := mustParse(t, `
[[everyone.connect]]
name = "cidr4"
action = "deny"
cidrs = ["10.0.0.0/8"]

[[everyone.connect]]
name = "cidr6"
action = "deny"
cidrs = ["fd00::/8"]

[[everyone.connect]]
name = "mapped-prefix"
action = "deny"
cidrs = ["::ffff:192.0.2.0/120"]

[[everyone.connect]]
name = "single"
action = "deny"
cidrs = ["198.51.100.7"]

[[everyone.connect]]
name = "ports"
action = "deny"
ports = ["1-1023", "8080", 9000]

[[everyone.connect]]
name = "wild"
action = "deny"
hosts = ["*.Internal"]

[[everyone.connect]]
name = "exact"
action = "deny"
hosts = ["db.example.com."]

[[everyone.connect]]
name = "and"
action = "deny"
cidrs = ["203.0.113.0/24"]
ports = ["5432"]
hosts = ["pg.example.net"]

[[everyone.connect]]
name = "ip-host"
action = "deny"
hosts = ["[2001:db8::99]"]
`)
	tests := []struct {
		host, addr, want string
	}{
		{"", "10.1.2.3:2000", "cidr4"},
		{"", "[::ffff:10.1.2.3]:2000", "cidr4"}, // IPv4-mapped unmapped
		{"", "11.0.0.1:2000", ""},
		{"", "[fd12::1]:2000", "cidr6"},
		{"", "[fe00::1]:2000", ""}, // fe00::1 is outside fe80::/10
		{"", "192.0.2.9:2000", "mapped-prefix"},
		{"", "192.0.3.9:2000", ""},
		{"", "198.51.100.7:2000", "single"},
		{"", "198.51.100.8:2000", ""},
		{"", "1.1.1.1:22", "ports"},
		{"", "1.1.1.1:1023", "ports"},
		{"", "1.1.1.1:1024", ""},
		{"", "1.1.1.1:8080", "ports"},
		{"", "1.1.1.1:9000", "ports"},
		{"db.internal", "1.1.1.1:2000", "wild"},
		{"a.b.INTERNAL", "1.1.1.1:2000", "wild"},
		{"a.b.internal.", "1.1.1.1:2000", "wild"},
		{"internal", "1.1.1.1:2000", ""}, // "*.x" matches subdomains only
		{"xinternal", "1.1.1.1:2000", ""},
		{"DB.Example.Com", "1.1.1.1:2000", "exact"},
		{"db.example.com.", "1.1.1.1:2000", "exact"},
		{"x.db.example.com", "1.1.1.1:2000", ""},
		{"pg.example.net", "203.0.113.5:5432", "and"},
		{"pg.example.net", "203.0.113.5:5433", ""},
		{"other.example.net", "203.0.113.5:5432", ""},
		{"pg.example.net", "203.0.114.5:5432", ""},
		{"2001:db8::99", "[2001:db8::99]:2000", "ip-host"},
		{"[2001:DB8::99]", "[2001:db8::99]:2000", "ip-host"},
	}
	for _, tt := range tests {
		if got := ruleOf(p.CheckConnect("alice", tt.host, ap(tt.addr))); got != tt.want {
			t.Errorf("CheckConnect(%q, %s) = %q, want %q", tt.host, tt.addr, got, tt.want)
		}
	}
	// TCP-only rules never match Unix paths.
	if d := p.CheckConnectUnix("alice", "/run/x.sock"); d != nil {
		t.Errorf("TCP rule matched a Unix path: %v", d)
	}
}

func TestTarget(t *testing.T) {
	p := mustParse(t, "[[everyone.connect]]\naction = \"deny\"")
	tests := []struct{ host, addr, want string }{
		{"db.internal", "10.0.0.5:22", "10.0.0.5:22 (db.internal)"},
		{"", "10.0.0.5:22", "10.0.0.5:22"},
		{"10.0.0.5", "10.0.0.5:22", "10.0.0.5:22"},
		{"::1", "[::1]:22", "[::1]:22"},
		{"", "[::ffff:10.0.0.5]:22", "10.0.0.5:22"},
	}
	for _, tt := range tests {
		d := p.CheckConnect("alice", tt.host, ap(tt.addr))
		if d == nil || d.Target != tt.want {
			t.Errorf("CheckConnect(%q, %s) = %+v, want target %q", tt.host, tt.addr, d, tt.want)
		}
	}
}

func TestBindMatching(t *testing.T) {
	p := mustParse(t, `
[[everyone.bind]]
name = "all-interfaces"
action = "allow"
cidrs = ["0.0.0.0/32", "::/128"]
ports = ["8000-8999"]

[[everyone.bind]]
name = "lan"
action = "allow"
cidrs = ["192.168.0.0/16"]
`)
	tests := []struct{ addr, want string }{
		{"0.0.0.0:8080", ""},
		{"[::]:8080", ""},
		{"[::ffff:0.0.0.0]:8080", ""},
		{"0.0.0.0:9000", "default.bind.deny"},
		{"0.0.0.1:8080", "default.bind.deny"},
		{"192.168.1.1:80", ""},
		{"192.169.1.1:8080", "default.bind.deny"},
		{"127.0.0.1:0", ""},
		{"127.0.0.1:80", "default.bind.deny"},
	}
	for _, tt := range tests {
		if got := ruleOf(p.CheckBind("alice", "", ap(tt.addr))); got != tt.want {
			t.Errorf("CheckBind(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestUnixMatching(t *testing.T) {
	p := mustParse(t, `
[[everyone.connect]]
name = "app"
action = "deny"
unix = ["/run/app", "/srv/data/"]

[[everyone.connect]]
name = "abstract"
action = "deny"
unix = ["@secret"]

[[everyone.connect]]
name = "unclean"
action = "deny"
unix = ["/var//lib/../lib/db/"]

[[everyone.connect]]
name = "unix-only"
action = "deny"
unix = ["/"]
`)
	allowed := mustParse(t, `
[[everyone.connect]]
name = "only-run"
action = "allow"
unix = ["/run/ok"]
[[everyone.connect]]
name = "no-other-unix"
action = "deny"
unix = ["/", "@"]
`)
	tests := []struct {
		p          *Policy
		path, want string
	}{
		{p, "/run/app", "app"},
		{p, "/run/app/s.sock", "app"},
		{p, "/run/app/sub/s.sock", "app"},
		{p, "/run/apple", "unix-only"},
		{p, "/run/ap", "unix-only"},
		{p, "/run/x/../app/s", "app"},
		{p, "//run//app//s", "app"},
		{p, "/srv/data", "app"},
		{p, "/srv/data/x", "app"},
		{p, "/srv/database", "unix-only"},
		{p, "@secret", "abstract"},
		{p, "@secret/x", "abstract"},
		{p, "@secretive", ""},
		{p, "@other", ""},
		{p, "/var/lib/db/s", "unclean"},
		{allowed, "/run/ok/a.sock", ""},
		{allowed, "/run/ok", ""},
		{allowed, "/run/okay", "no-other-unix"},
		{allowed, "@x", "no-other-unix"},
		{allowed, "/run/ok/../../etc/x", "no-other-unix"},
	}
	for _, tt := range tests {
		if got := ruleOf(tt.p.CheckConnectUnix("alice", tt.path)); got != tt.want {
			t.Errorf("CheckConnectUnix(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	// Unix-only rules never match TCP.
	if d := p.CheckConnect("alice", "", ap("1.1.1.1:80")); d != nil {
		t.Errorf("Unix rule matched TCP: %v", d)
	}
	// Relative paths are taken against the working directory.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel := mustParse(t, "[[everyone.bind]]\nname = \"wd\"\naction = \"deny\"\nunix = ["+tomlString(wd)+"]")
	d := rel.CheckBindUnix("alice", "sub/x.sock")
	if ruleOf(d) != "wd" || d.Target != filepath.Join(wd, "sub/x.sock") || !d.Bind {
		t.Errorf("relative bind = %+v", d)
	}
}

func tomlString(s string) string { return `'` + s + `'` }

func TestOrderAndNames(t *testing.T) {
	p := mustParse(t, `
[[everyone.connect]]
action = "deny"
ports = ["22"]
[[everyone.connect]]
action = "allow"
cidrs = ["169.254.10.0/24"]
[[everyone.connect]]
name = "deny-all-10"
action = "deny"
cidrs = ["10.0.0.0/8"]

[[everyone.bind]]
action = "allow"
cidrs = ["127.0.0.1"]
ports = ["80"]

[identity."uid:1000"]
[[identity."uid:1000".connect]]
action = "deny"
cidrs = ["10.9.0.0/16"]
[[identity."uid:1000".connect]]
action = "allow"
cidrs = ["10.0.0.0/8"]
[[identity."uid:1000".bind]]
action = "deny"
ports = ["0"]

[identity.alice]
[[identity.alice.connect]]
action = "deny"
hosts = ["*"]
`)
	tests := []struct {
		bind           bool
		id, host, addr string
		want           string
	}{
		// everyone's rules, first match wins, default names by index
		{false, "bob", "", "10.0.0.1:22", "everyone.connect[0]"},
		{false, "bob", "", "10.0.0.1:23", "deny-all-10"},
		// everyone's allow comes before the built-in link-local deny
		{false, "bob", "", "169.254.10.1:80", ""},
		{false, "bob", "", "169.254.11.1:80", "default.connect.link-local"},
		// the identity's rules before everyone's
		{false, "uid:1000", "", "10.0.0.1:23", ""},
		{false, "uid:1000", "", "10.9.0.1:23", `identity."uid:1000".connect[0]`},
		{false, "uid:1000", "", "10.0.0.1:22", ""}, // its allow beats everyone's port-22 deny
		{false, "uid:1000", "", "11.0.0.1:22", "everyone.connect[0]"},
		{false, "alice", "x", "1.1.1.1:443", "identity.alice.connect[0]"},
		{false, "uid:1001", "", "10.9.0.1:23", "deny-all-10"},
		// bind
		{true, "bob", "", "127.0.0.1:80", ""},
		{true, "bob", "", "127.0.0.2:80", "default.bind.deny"},
		{true, "uid:1000", "", "127.0.0.1:0", `identity."uid:1000".bind[0]`},
		{true, "uid:1000", "", "127.0.0.1:80", ""},
		{true, "bob", "", "127.0.0.1:0", ""},
	}
	for _, tt := range tests {
		var d *Denied
		if tt.bind {
			d = p.CheckBind(tt.id, tt.host, ap(tt.addr))
		} else {
			d = p.CheckConnect(tt.id, tt.host, ap(tt.addr))
		}
		if got := ruleOf(d); got != tt.want {
			t.Errorf("bind=%v %s %s = %q, want %q", tt.bind, tt.id, tt.addr, got, tt.want)
		}
	}
	if got, want := p.Identities(), []string{"alice", "uid:1000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Identities = %v, want %v", got, want)
	}
}

func TestQuota(t *testing.T) {
	p := mustParse(t, `
[everyone]
max_streams = 1000
max_servers = 16
max_buffered_bytes = "64MiB"
bytes_per_second_in = "10MB"
bytes_per_second_out = 0

[identity."uid:1000"]
max_streams = 100
bytes_per_second_out = "1 KiB"

[identity.ops]
max_streams = 0
max_buffered_bytes = 4096

[identity.sizes]
max_buffered_bytes = "3GiB"
bytes_per_second_in = "2GB"
bytes_per_second_out = "7B"
`)
	everyone := Quota{MaxStreams: 1000, MaxServers: 16, MaxBufferedBytes: 64 << 20, BytesPerSecondIn: 10_000_000}
	tests := []struct {
		id   string
		want Quota
	}{
		{"anonymous", everyone},
		{"uid:1000", Quota{MaxStreams: 100, MaxServers: 16, MaxBufferedBytes: 64 << 20, BytesPerSecondIn: 10_000_000, BytesPerSecondOut: 1024}},
		{"ops", Quota{MaxStreams: 0, MaxServers: 16, MaxBufferedBytes: 4096, BytesPerSecondIn: 10_000_000}},
		{"sizes", Quota{MaxStreams: 1000, MaxServers: 16, MaxBufferedBytes: 3 << 30, BytesPerSecondIn: 2_000_000_000, BytesPerSecondOut: 7}},
	}
	for _, tt := range tests {
		if got := p.Quota(tt.id); got != tt.want {
			t.Errorf("Quota(%q) = %+v, want %+v", tt.id, got, tt.want)
		}
	}
	// Without [everyone], an identity's unset keys are unlimited.
	q := mustParse(t, "[identity.a]\nmax_servers = 2").Quota("a")
	if q != (Quota{MaxServers: 2}) {
		t.Errorf("Quota = %+v", q)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"512", 512, true},
		{"512B", 512, true},
		{"1KiB", 1024, true},
		{"1 KiB", 1024, true},
		{" 2MiB ", 2 << 20, true},
		{"1GiB", 1 << 30, true},
		{"1KB", 1000, true},
		{"10MB", 10_000_000, true},
		{"3GB", 3_000_000_000, true},
		{"8589934591GiB", 8589934591 << 30, true},
		{"8589934592GiB", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false},
		{"MiB", 0, false},
		{"1mib", 0, false},
		{"1TiB", 0, false},
		{"-1", 0, false},
		{"1.5MiB", 0, false},
		{"0x10", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// symlinkFixture makes allowed/ and denied/ under a temporary directory, a
// socket-like file in denied/, and symlinks from allowed/ into denied/.
func symlinkFixture(t *testing.T) (root string, p *Policy) {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"allowed", "denied"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "denied", "real.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"allowed/file-link.sock": filepath.Join(root, "denied", "real.sock"),
		"allowed/dir-link":       filepath.Join(root, "denied"),
		"allowed/rel-link.sock":  "../denied/real.sock",
		"allowed/dangling.sock":  filepath.Join(root, "denied", "nothing.sock"),
		"allowed/ok-link.sock":   filepath.Join(root, "allowed", "target.sock"),
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "allowed", "target.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	src := ""
	for _, list := range []string{"connect", "bind"} {
		src += "[[everyone." + list + "]]\nname = \"" + list + "-allowed\"\naction = \"allow\"\nunix = [" + tomlString(filepath.Join(root, "allowed")) + "]\n"
		src += "[[everyone." + list + "]]\nname = \"" + list + "-rest\"\naction = \"deny\"\nunix = [\"/\"]\n"
	}
	return root, mustParse(t, src)
}

func TestSymlinks(t *testing.T) {
	root, p := symlinkFixture(t)
	j := func(s string) string { return filepath.Join(root, s) }
	connect := []struct{ path, want string }{
		{j("allowed/target.sock"), ""},
		{j("allowed/ok-link.sock"), ""},
		{j("allowed/new.sock"), ""}, // does not exist: checked as given
		{j("allowed/file-link.sock"), "connect-rest"},
		{j("allowed/rel-link.sock"), "connect-rest"},
		{j("allowed/dir-link/real.sock"), "connect-rest"},
		{j("allowed/dir-link/new.sock"), "connect-rest"}, // nearest existing ancestor is resolved
		{j("allowed/dir-link/a/b/new.sock"), "connect-rest"},
		{j("allowed/dangling.sock"), ruleUnresolvable},
		{j("denied/real.sock"), "connect-rest"},
	}
	for _, tt := range connect {
		if got := ruleOf(p.CheckConnectUnix("alice", tt.path)); got != tt.want {
			t.Errorf("CheckConnectUnix(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
	bind := []struct{ path, want string }{
		{j("allowed/new.sock"), ""},
		{j("allowed/nodir/new.sock"), ""},
		{j("allowed/dir-link/new.sock"), "bind-rest"},
		{j("allowed/dir-link/sub/new.sock"), "bind-rest"},
		// bind does not follow a symlink in the last component (it fails
		// with "address in use"), so only the parent is resolved.
		{j("allowed/file-link.sock"), ""},
		{j("denied/new.sock"), "bind-rest"},
	}
	for _, tt := range bind {
		if got := ruleOf(p.CheckBindUnix("alice", tt.path)); got != tt.want {
			t.Errorf("CheckBindUnix(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
	d := p.CheckConnectUnix("alice", j("allowed/file-link.sock"))
	if d == nil || !strings.Contains(d.Target, j("allowed/file-link.sock")) || !strings.Contains(d.Target, j("denied/real.sock")) {
		t.Errorf("target should show the given and the resolved path: %+v", d)
	}
}

func TestConcurrent(t *testing.T) {
	p := mustParse(t, docExample)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				_ = p.CheckConnect("uid:1000", "db.internal", ap("10.0.0.5:22"))
				_ = p.CheckBind("ops", "", ap("0.0.0.0:8080"))
				_ = p.CheckConnectUnix("alice", "/run/app/x")
				_ = p.Quota("uid:1000")
				_ = p.IsAdmin("ops")
				_ = p.Identities()
			}
		}()
	}
	wg.Wait()
}

func TestCheckConnectName(t *testing.T) {
	p, err := Parse([]byte(`
[[everyone.connect]]
name = "allow-10"
action = "allow"
cidrs = ["10.0.0.0/8"]
[[everyone.connect]]
name = "no-internal"
action = "deny"
hosts = ["*.internal"]
[identity.alice]
[[identity.alice.connect]]
name = "no-db-port"
action = "deny"
hosts = ["db.example.com"]
ports = ["5432"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who, host string
		port      int
		rule      string
	}{
		// everyone's allow-10 depends on the address and comes first
		{"bob", "metadata.google.internal", 80, ""},
		{"bob", "example.com", 80, ""},
		{"bob", "169.254.169.254", 80, ""}, // literals: CheckConnect decides
		{"alice", "db.example.com", 5432, "no-db-port"},
		{"alice", "db.example.com", 5433, ""},
		// An allow rule by address comes first: it depends on the address.
		{"bob", "x.internal", 80, ""},
	} {
		d := p.CheckConnectName(tc.who, tc.host, tc.port)
		switch {
		case tc.rule == "" && d != nil:
			t.Errorf("%s %s:%d: got %v, want no decision", tc.who, tc.host, tc.port, d)
		case tc.rule != "" && (d == nil || d.Rule != tc.rule):
			t.Errorf("%s %s:%d: got %v, want rule %q", tc.who, tc.host, tc.port, d, tc.rule)
		}
	}
	for _, h := range []string{"metadata.google.internal", "METADATA.", "instance-data"} {
		if d := Default().CheckConnectName("x", h, 80); d == nil || d.Rule != "default.connect.metadata" {
			t.Errorf("default policy, %s: got %v", h, d)
		}
	}
	if d := Default().CheckConnectName("x", "example.com", 80); d != nil {
		t.Errorf("default policy, example.com: got %v", d)
	}
}

// TestREADMEExample: the policy file shown in the README parses.
func TestREADMEExample(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```toml\n")
	if !ok {
		t.Fatal("no toml block in README.md")
	}
	block, _, _ := strings.Cut(rest, "```")
	p, err := Parse([]byte(block))
	if err != nil {
		t.Fatalf("README's policy: %v", err)
	}
	if !p.IsAdmin("ops") || p.Quota("uid:1000").MaxStreams != 100 || p.Quota("uid:5").MaxStreams != 1000 {
		t.Fatalf("README's policy parsed to %+v", p)
	}
	if d := p.CheckConnect("uid:5", "10.1.2.3", netip.MustParseAddrPort("10.1.2.3:80")); d == nil || d.Rule != "no-internal" {
		t.Fatalf("10.1.2.3: got %v", d)
	}
}
