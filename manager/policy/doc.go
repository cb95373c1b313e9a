// Package policy reads the operator's policy file (streammgrd --config FILE)
// and answers the daemon's questions about it: who is an admin, where a
// caller identity may connect (Open) and bind (StartServer), and how much it
// may use (Quota).
//
// # Identities
//
// An identity is a string: "uid:1000" for a local caller on a Unix socket
// (from the kernel's peer credentials), or a name taken from a client
// certificate or bearer token, such as "alice". TCP callers of a daemon run
// with --insecure-tcp are "anonymous". Identities are compared exactly (case
// matters). A name beginning with "uid:" must continue with a decimal user id.
//
// # File format
//
// The file is TOML. Every key is optional; an empty file is the built-in
// defaults with no admins. A complete example:
//
//	# identities that see and may close every handle
//	admins = ["uid:0", "ops"]
//
//	# applies to every identity (after the identity's own section)
//	[everyone]
//	max_streams = 1000             # live streams owned at once (0 or absent: no cap)
//	max_servers = 16               # listening servers owned at once
//	max_buffered_bytes = "64MiB"   # integer bytes or a string with unit B, KiB, MiB, GiB, KB, MB, GB
//	bytes_per_second_in = "10MB"   # socket bytes read per second, all the identity's streams together
//	bytes_per_second_out = 0       # socket bytes written per second; 0/absent = unlimited
//
//	[[everyone.connect]]           # destinations for Open, first matching rule wins
//	name = "no-internal"           # optional; default "everyone.connect[0]" (section, list, index)
//	action = "deny"                # "allow" or "deny" (required)
//	cidrs = ["10.0.0.0/8", "fd00::/8"]        # match the resolved address being connected
//	ports = ["1-1023", "8080"]                # single ports or ranges
//	hosts = ["*.internal", "db.example.com"]  # match the host name the caller asked for
//	unix = ["/run/app/", "@abstract-prefix"]  # Unix socket path prefixes, per path component
//
//	[[everyone.bind]]              # addresses for StartServer, same fields
//	action = "allow"
//	cidrs = ["127.0.0.0/8", "::1/128"]
//	ports = ["0", "1024-65535"]    # 0 = an ephemeral port chosen by the kernel
//
//	[identity."uid:1000"]          # the same keys as [everyone], for one identity
//	max_streams = 100
//	[[identity."uid:1000".connect]]
//	action = "allow"
//	hosts = ["api.example.com"]
//
//	[identity.ops]
//	max_streams = 0                # explicitly unlimited, overriding [everyone]
//	[[identity.ops.bind]]
//	name = "ops-any-interface"
//	action = "allow"
//	cidrs = ["0.0.0.0/32", "::/128"]   # the unspecified addresses: all interfaces
//	ports = ["8000-8999"]
//
// # Rules
//
// A section's connect list is checked by Open, its bind list by StartServer.
// For one check the rules are tried in this order, and the first rule that
// matches decides: the identity's own rules, then everyone's, then the
// built-in defaults.
//
// A rule matches when every criterion it sets matches (AND across criteria,
// OR within one list):
//
//   - cidrs: the resolved IP address, as prefixes ("10.0.0.0/8") or single
//     addresses ("10.0.0.5", "::1"). IPv4 and IPv6 are separate families:
//     "::/0" does not match IPv4 addresses. IPv4-mapped IPv6 addresses
//     (::ffff:10.0.0.5) are unmapped before matching, both in the checked
//     address and in a prefix written that way, and zones (%eth0) are ignored.
//     The unspecified addresses 0.0.0.0 and :: (bind to all interfaces) are
//     matched as ordinary addresses: "0.0.0.0/32" matches only them, and
//     "0.0.0.0/0" matches every IPv4 address including 0.0.0.0.
//   - ports: "80" or "1024-65535" (inclusive; 0-65535, low <= high); TOML
//     integers (80) are accepted too. Port 0 is a bind to an ephemeral port.
//   - hosts: the host name the caller asked for, which may be an IP literal.
//     Case-insensitive, and a trailing dot is ignored. "*.x" matches every
//     subdomain of x at any depth (but not x itself), "*" matches anything;
//     no other use of "*" is allowed.
//   - unix: Unix socket path prefixes, absolute ("/run/app") or abstract
//     ("@name"). Prefixes are matched per path component: "/run/app" matches
//     "/run/app" and "/run/app/s" but not "/run/apple"; "/" matches every
//     path and "@" every abstract name. Non-abstract prefixes are cleaned
//     (filepath.Clean), so "/run/app/" and "/run/app" are the same.
//
// A TCP target (Open to, or StartServer on, an address) is matched against
// the rule's TCP criteria, cidrs, ports and hosts; a Unix path against its
// unix list. So a rule that sets only TCP criteria never matches a Unix path,
// a rule with only unix never matches a TCP address, a rule that sets both
// kinds matches a TCP target by its TCP criteria and a path by its unix list
// (as "no-internal" above does), and a rule with no criteria matches
// everything. An empty list is an error (omit the key instead).
//
// A rule's name, used in denials and logs, is its name key, or else its place
// in the file: "everyone.connect[0]", `identity."uid:1000".bind[2]`,
// "identity.alice.connect[1]" (indexes count from 0 within the list).
//
// # Built-in defaults
//
// Connect (Open), in order:
//
//	default.connect.link-local  deny  169.254.0.0/16, fe80::/10
//	default.connect.metadata    deny  169.254.169.254, fd00:ec2::254, 100.100.100.200,
//	                                  hosts metadata.google.internal, metadata, instance-data
//	default.connect.allow       allow everything else (TCP and Unix)
//
// Bind (StartServer), in order:
//
//	default.bind.loopback  allow 127.0.0.0/8 and ::1 on ports 0 and 1024-65535
//	default.bind.unix      allow every Unix path and abstract name
//	default.bind.deny      deny everything else: all interfaces (0.0.0.0, ::),
//	                       other addresses, privileged ports
//
// # Unix paths
//
// A checked path is made absolute against the daemon's working directory and
// cleaned; a path beginning with "@" is an abstract name and is used as is.
// To defeat symlink tricks, CheckConnectUnix also resolves the path with
// filepath.EvalSymlinks when it exists, and CheckBindUnix resolves its parent
// directory; both the given and the resolved path must be allowed, so write
// unix prefixes as real paths ("/run/app", not "/var/run/app" where /var/run
// is a symlink to /run). When the path (or the directory) does not exist yet,
// its nearest existing ancestor is resolved instead. A path that cannot be
// resolved for another reason (a dangling symlink, a loop, a permission
// error) is denied by the pseudo-rule "unresolvable-path", an empty path by
// "invalid-path", and an invalid netip.AddrPort by "invalid-address".
//
// # Quotas
//
// Each quota is the identity's value if its section sets the key (0 included,
// which makes that identity unlimited), else everyone's, else 0, which means
// unlimited. Sizes are non-negative integers of bytes or strings such as
// "64MiB", "10 MB" or "512" (units B, KiB, MiB, GiB, KB, MB, GB; integers
// only).
//
// # Errors
//
// Parse is strict: unknown keys (compared with case), bad CIDRs, bad ports or
// ranges, bad actions, bad sizes, negative counts, relative Unix prefixes,
// malformed host patterns, empty identity names and malformed "uid:" names
// are errors that name the key, with the line where the TOML decoder knows
// it. Load's errors begin with the file's path.
package policy
