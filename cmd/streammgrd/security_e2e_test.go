package main_test

// End-to-end tests of caller identity, handle ownership, policy and
// quotas: real identities (other uids through setpriv, client certificates
// and bearer tokens over mTLS), a real daemon, grpcurl and a Go client.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
	"github.com/streammgr/streammgr/streamcore/streamtest"
)

var (
	othersGrpcurlOnce sync.Once
	othersGrpcurl     string
	othersGrpcurlErr  error
)

// grpcurlForOthers is a copy of grpcurl that any user may run (the one
// installed may sit in root's home).
func grpcurlForOthers(t testing.TB) string {
	t.Helper()
	src := grpcurlPath(t)
	othersGrpcurlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "smbin")
		if err != nil {
			othersGrpcurlErr = err
			return
		}
		data, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "grpcurl"), data, 0o755)
		}
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		othersGrpcurl, othersGrpcurlErr = filepath.Join(dir, "grpcurl"), err
	})
	if othersGrpcurlErr != nil {
		t.Fatal(othersGrpcurlErr)
	}
	return othersGrpcurl
}

// needOtherUsers skips unless the tests run as root with setpriv, which
// they do in CI (the container runs as root; .ci/run installs util-linux).
func needOtherUsers(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other uids")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv not found (util-linux): the identity tests run clients as other uids with it")
	}
}

// asUID is the daemon's Unix socket as seen by a grpcurl running as uid.
func (d *daemon) asUID(t testing.TB, uid int) target {
	tg := d.unix()
	tg.name = "uid:" + strconv.Itoa(uid)
	tg.runAs = []string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), "--clear-groups"}
	tg.bin = grpcurlForOthers(t)
	return tg
}

// startSharedDaemon starts a daemon whose socket other users can reach,
// with a policy file.
func startSharedDaemon(t testing.TB, config string, extra ...string) *daemon {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, false, append([]string{"--socket-mode", "0666", "--config", cfg}, extra...)...)
	if err := os.Chmod(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func listedStreams(t testing.TB, tg target) map[string]bool {
	t.Helper()
	r := tg.exec(context.Background(), "ListStreams", m{})
	if r.code != 0 {
		t.Fatalf("%s ListStreams: %s", tg.name, r)
	}
	var resp struct {
		Streams []map[string]any `json:"streams"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("ListStreams: %v\n%s", err, r.stdout)
	}
	out := map[string]bool{}
	for _, s := range resp.Streams {
		out[s["streamId"].(string)] = true
	}
	return out
}

func listedServers(t testing.TB, tg target) map[string]bool {
	t.Helper()
	r := tg.exec(context.Background(), "ListServers", m{})
	if r.code != 0 {
		t.Fatalf("%s ListServers: %s", tg.name, r)
	}
	var resp struct {
		Servers []map[string]any `json:"servers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("ListServers: %v\n%s", err, r.stdout)
	}
	out := map[string]bool{}
	for _, s := range resp.Servers {
		out[s["serverId"].(string)] = true
	}
	return out
}

// loose runs a call that must succeed, ignoring the response's shape.
func loose(t testing.TB, tg target, method string, req any) map[string]any {
	t.Helper()
	r := tg.exec(context.Background(), method, req)
	if r.code != 0 {
		t.Fatalf("%s %s: want success, got:\n%s", tg.name, method, r)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%s %s: %v\n%s", tg.name, method, err, r.stdout)
	}
	return v
}

// denyAllOf checks that tg can neither see nor touch stream sid and
// server srv: every call answers NOT_FOUND as for an unknown id.
func denyAllOf(t *testing.T, tg target, sid, srv string) {
	t.Helper()
	for _, c := range []struct {
		method string
		req    m
	}{
		{"Read", m{"streamId": sid, "n": 10}},
		{"Write", m{"streamId": sid, "data": []byte("x")}},
		{"Close", m{"streamId": sid}},
		{"Abort", m{"streamId": sid}},
		{"AtEof", m{"streamId": sid}},
		{"GetExtraInfo", m{"streamId": sid, "name": "peername"}},
		{"Share", m{"streamId": sid, "add": []string{tg.name}}},
		{"Relay", m{"firstStreamId": sid, "secondStreamId": sid + "x"}},
	} {
		fail(t, tg, c.method, c.req, codes.NotFound, "STREAM_NOT_FOUND")
	}
	if srv != "" {
		for _, c := range []struct {
			method string
			req    m
		}{
			{"Accept", m{"serverId": srv, "timeout": "0s"}},
			{"CloseServer", m{"serverId": srv}},
			{"StartServing", m{"serverId": srv}},
			{"Share", m{"serverId": srv, "add": []string{tg.name}}},
		} {
			fail(t, tg, c.method, c.req, codes.NotFound, "SERVER_NOT_FOUND")
		}
	}
	if got := listedStreams(t, tg); got[sid] {
		t.Errorf("%s lists %s", tg.name, sid)
	}
	if srv != "" {
		if got := listedServers(t, tg); got[srv] {
			t.Errorf("%s lists %s", tg.name, srv)
		}
	}
}

// TestIdentityUnixUIDs: two local users (nobody and daemon, uid 65534 and
// 1) drive one daemon through its Unix socket. Neither sees or touches the
// other's streams, servers or accepted connections; root, the configured
// admin, sees and closes everything; a pair shared with one uid works for
// both parties and nobody else.
func TestIdentityUnixUIDs(t *testing.T) {
	needOtherUsers(t)
	t.Parallel()
	d := startSharedDaemon(t, "admins = [\"uid:0\"]\n")
	a, b, third, admin := d.asUID(t, 65534), d.asUID(t, 1), d.asUID(t, 2), d.unix()
	p := newPeer(t)

	// A's stream and server, and a connection A's server accepted.
	sa := loose(t, a, "Open", m{"tcp": m{"host": "127.0.0.1", "port": p.port()}})["streamId"].(string)
	pc := p.accept(t)
	srv := call[startServerResp](t, a, "StartServer", m{"tcp": m{"host": "127.0.0.1"}})
	conn, err := net.Dial("tcp", srv.Sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	accepted := call[acceptResp](t, a, "Accept", m{"serverId": srv.ServerID, "timeout": "10s"}).StreamID

	t.Run("other uid", func(t *testing.T) {
		denyAllOf(t, b, sa, srv.ServerID)
		denyAllOf(t, b, accepted, "")
	})
	t.Run("owner", func(t *testing.T) {
		got := listedStreams(t, a)
		if !got[sa] || !got[accepted] {
			t.Fatalf("A lists %v, want %s and %s", sortedKeys(got), sa, accepted)
		}
		if !listedServers(t, a)[srv.ServerID] {
			t.Fatalf("A does not list its server")
		}
		write(t, a, sa, []byte("from A"))
		readPeer(t, pc, "from A")
		info := loose(t, a, "ListStreams", m{})
		for _, s := range info["streams"].([]any) {
			if s := s.(map[string]any); s["streamId"] == sa && s["owner"] != "uid:65534" {
				t.Fatalf("stream owner = %v, want uid:65534", s["owner"])
			}
		}
	})
	t.Run("admin", func(t *testing.T) {
		got := listedStreams(t, admin)
		if !got[sa] || !got[accepted] {
			t.Fatalf("admin lists %v, want A's streams too", sortedKeys(got))
		}
		if !listedServers(t, admin)[srv.ServerID] {
			t.Fatal("admin does not list A's server")
		}
		call[empty](t, admin, "Close", m{"streamId": accepted})
		call[empty](t, admin, "CloseServer", m{"serverId": srv.ServerID})
		fail(t, a, "Accept", m{"serverId": srv.ServerID, "timeout": "0s"}, codes.NotFound, "SERVER_NOT_FOUND")
	})
	t.Run("shared pair", func(t *testing.T) {
		pair := call[pairResp](t, a, "OpenPair", m{"shareWith": []string{"uid:1"}})
		write(t, a, pair.First, []byte("a->b "))
		readFull(t, b, pair.Second, []byte("a->b "))
		write(t, b, pair.Second, []byte("b->a "))
		readFull(t, a, pair.First, []byte("b->a "))
		if got := listedStreams(t, b); !got[pair.First] || !got[pair.Second] {
			t.Fatalf("B lists %v, want both ends of the shared pair", sortedKeys(got))
		}
		denyAllOf(t, third, pair.First, "")
		// B may use the pair but not hand it on.
		fail(t, b, "Share", m{"streamId": pair.First, "add": []string{"uid:2"}}, codes.PermissionDenied, "NOT_OWNER")
		// A takes it back.
		loose(t, a, "Share", m{"streamId": pair.Second, "remove": []string{"uid:1"}})
		fail(t, b, "Read", m{"streamId": pair.Second, "n": 1}, codes.NotFound, "STREAM_NOT_FOUND")
		write(t, b, pair.First, []byte("still mine"))
	})
	t.Run("shared server", func(t *testing.T) {
		srv := call[startServerResp](t, a, "StartServer", m{"tcp": m{"host": "127.0.0.1"}, "shareWith": []string{"uid:1"}})
		c, err := net.Dial("tcp", srv.Sockets[0])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// B accepts from A's shared server and may use the connection.
		st := call[acceptResp](t, b, "Accept", m{"serverId": srv.ServerID, "timeout": "10s"}).StreamID
		write(t, b, st, []byte("hello"))
		readPeer(t, c, "hello")
		denyAllOf(t, third, st, srv.ServerID)
	})
}

// tlsDaemon is a daemon on TCP with mTLS and tokens, and the files its
// clients need.
type tlsDaemon struct {
	*daemon
	pki     *streamtest.PKI
	dir     string
	caFile  string
	tokens  map[string]string // name -> token
	auditFn string
}

func startTLSDaemon(t testing.TB, config string) *tlsDaemon {
	t.Helper()
	pki, err := streamtest.NewPKI(&streamtest.PKIOptions{ClientCommonName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	put := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	td := &tlsDaemon{pki: pki, dir: dir, tokens: map[string]string{"bob": "bob-token-0123456789", "ops": "ops-token-0123456789"}}
	td.caFile = put("ca.pem", pki.CAPEM, 0o644)
	put("alice.pem", pki.ClientCertPEM, 0o644)
	put("alice.key", pki.ClientKeyPEM, 0o600)
	carol, carolKey, err := pki.IssueClient("carol")
	if err != nil {
		t.Fatal(err)
	}
	put("carol.pem", carol, 0o644)
	put("carol.key", carolKey, 0o600)
	var toks strings.Builder
	for name, tok := range td.tokens {
		fmt.Fprintf(&toks, "%s,%s\n", tok, name)
	}
	td.auditFn = filepath.Join(dir, "audit.log")
	td.daemon = startDaemon(t, false,
		"--listen", "127.0.0.1:"+strconv.Itoa(freePort(t)),
		"--tls-cert", put("server.pem", pki.ServerCertPEM, 0o644),
		"--tls-key", put("server.key", pki.ServerKeyPEM, 0o600),
		"--tls-client-ca", td.caFile,
		"--token-file", put("tokens", toks.String(), 0o600),
		"--config", put("policy.toml", config, 0o644),
		"--audit-log", td.auditFn)
	return td
}

// tcpAddr is the daemon's TCP address, from its "listening" log line.
func (td *tlsDaemon) tcpAddr(t testing.TB) string {
	t.Helper()
	for _, line := range strings.Split(td.stderr.String(), "\n") {
		if i := strings.Index(line, "addr=127.0.0.1:"); i >= 0 && strings.Contains(line, "listening") {
			return strings.Fields(line[i+len("addr="):])[0]
		}
		if i := strings.Index(line, "addr=tcp:127.0.0.1:"); i >= 0 {
			return strings.Fields(line[i+len("addr=tcp:"):])[0]
		}
	}
	t.Fatalf("no TCP listening line in the daemon log:\n%s", td.stderr.String())
	return ""
}

// cert is the target of a client presenting certificate name (alice,
// carol) over TLS.
func (td *tlsDaemon) cert(t testing.TB, name string) target {
	return target{name: name, addr: []string{td.tcpAddr(t)}, creds: []string{"-cacert", td.caFile,
		"-cert", filepath.Join(td.dir, name+".pem"), "-key", filepath.Join(td.dir, name+".key")}}
}

// token is the target of a client with a bearer token over TLS.
func (td *tlsDaemon) token(t testing.TB, name string) target {
	return target{name: name, addr: []string{td.tcpAddr(t)}, creds: []string{"-cacert", td.caFile,
		"-H", "authorization: Bearer " + td.tokens[name]}}
}

// TestIdentityMTLSAndTokens: over mTLS TCP, a certificate identity (alice)
// and a token identity (bob) are isolated from each other, the admin token
// (ops) sees everything, callers without credentials or with a wrong token
// are UNAUTHENTICATED, and health and reflection stay open.
func TestIdentityMTLSAndTokens(t *testing.T) {
	t.Parallel()
	td := startTLSDaemon(t, "admins = [\"ops\"]\n")
	alice, bob, carol, ops := td.cert(t, "alice"), td.token(t, "bob"), td.cert(t, "carol"), td.token(t, "ops")
	p := newPeer(t)

	sa := call[openResp](t, alice, "Open", m{"tcp": m{"host": "127.0.0.1", "port": p.port()}}).StreamID
	pc := p.accept(t)
	srv := call[startServerResp](t, alice, "StartServer", m{"tcp": m{"host": "127.0.0.1"}}).ServerID
	sb := call[openResp](t, bob, "Open", m{"tcp": m{"host": "127.0.0.1", "port": p.port()}}).StreamID
	p.accept(t).Close()

	denyAllOf(t, bob, sa, srv)
	denyAllOf(t, carol, sa, srv)
	denyAllOf(t, alice, sb, "")
	if got := listedStreams(t, ops); !got[sa] || !got[sb] {
		t.Fatalf("admin lists %v, want both", sortedKeys(got))
	}
	write(t, alice, sa, []byte("mine"))
	readPeer(t, pc, "mine")
	call[empty](t, ops, "Abort", m{"streamId": sa})
	call[empty](t, ops, "CloseServer", m{"serverId": srv})

	// A pair alice shares with bob works for both of them only.
	pair := call[pairResp](t, alice, "OpenPair", m{"shareWith": []string{"bob"}})
	write(t, alice, pair.First, []byte("to bob"))
	readFull(t, bob, pair.Second, []byte("to bob"))
	denyAllOf(t, carol, pair.Second, "")

	tcp := td.tcpAddr(t)
	noCreds := target{name: "no creds", addr: []string{tcp}, creds: []string{"-cacert", td.caFile}}
	fail(t, noCreds, "ListStreams", m{}, codes.Unauthenticated, "UNAUTHENTICATED")
	wrong := target{name: "wrong token", addr: []string{tcp}, creds: []string{"-cacert", td.caFile, "-H", "authorization: Bearer not-a-token-at-all-0000"}}
	fail(t, wrong, "Open", m{"tcp": m{"host": "127.0.0.1", "port": p.port()}}, codes.Unauthenticated, "UNAUTHENTICATED")
	// Health and reflection need no identity.
	if out := noCreds.exec(context.Background(), "grpc.health.v1.Health/Check", m{}); out.code != 0 || !strings.Contains(out.stdout, "SERVING") {
		t.Fatalf("health without credentials: %s", out)
	}
	lctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	list := noCreds.command(lctx, "", nil)
	list.Args = append(list.Args, "list")
	if out, err := list.CombinedOutput(); err != nil || !strings.Contains(string(out), "streammgr.v1.StreamService") {
		t.Fatalf("reflection without credentials: %v\n%s", err, out)
	}
	// A plaintext client does not get through the TLS listener at all.
	plain := target{name: "plaintext", addr: []string{tcp}}
	if r := plain.exec(context.Background(), "ListStreams", m{}); r.code == 0 {
		t.Fatalf("a plaintext call on the TLS listener succeeded: %s", r)
	}
}

// TestTCPListenerNeedsTLS: a TCP listener without TLS refuses to start
// unless --insecure-tcp is given, which warns; TLS without a way to name
// callers refuses too.
func TestTCPListenerNeedsTLS(t *testing.T) {
	t.Parallel()
	bin := daemonBinary(t)
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return string(out), err
	}
	out, err := run("--listen", "127.0.0.1:0")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(out, "needs TLS") || !strings.Contains(out, "--insecure-tcp") {
		t.Fatalf("plain TCP listener: want a refusal naming TLS and --insecure-tcp, got %v:\n%s", err, out)
	}
	pki, err := streamtest.NewPKI(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(cert, []byte(pki.ServerCertPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(pki.ServerKeyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run("--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	if !errors.As(err, &ee) || !strings.Contains(out, "--tls-client-ca") {
		t.Fatalf("TLS naming nobody: want a refusal, got %v:\n%s", err, out)
	}
	// With --insecure-tcp it starts, warns, and its callers are anonymous.
	d := startDaemon(t, true)
	if !strings.Contains(d.stderr.String(), "without TLS") {
		t.Fatalf("no warning about the insecure listener:\n%s", d.stderr.String())
	}
	pr := call[pairResp](t, d.tcpTarget(), "OpenPair", m{})
	info := loose(t, d.tcpTarget(), "ListStreams", m{})
	for _, s := range info["streams"].([]any) {
		if s := s.(map[string]any); s["streamId"] == pr.First && s["owner"] != "anonymous" {
			t.Fatalf("owner = %v, want anonymous", s["owner"])
		}
	}
	// Unix callers stay apart from anonymous TCP callers.
	fail(t, d.unix(), "Read", m{"streamId": pr.First, "n": 1}, codes.NotFound, "STREAM_NOT_FOUND")
}

// auditLines reads the JSON lines of an audit log.
func auditLines(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, v)
	}
	return out
}

// TestPolicyEndToEnd: the policy file's connect and bind rules and the
// built-in defaults refuse with PERMISSION_DENIED and the rule's name, a
// host name that resolves to a denied address is denied, and the audit log
// records who was allowed or denied what.
func TestPolicyEndToEnd(t *testing.T) {
	t.Parallel()
	p := newPeer(t)
	dir, err := os.MkdirTemp("", "smpol")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	secret := filepath.Join(dir, "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	up := newUnixPeer(t, filepath.Join(secret, "s.sock"))
	_ = up
	config := fmt.Sprintf(`
[[everyone.connect]]
name = "no-peer-port"
action = "deny"
cidrs = ["127.0.0.0/8", "::1/128"]
ports = ["%d"]

[[everyone.connect]]
name = "no-secret"
action = "deny"
unix = [%q]

[[everyone.bind]]
name = "no-secret-bind"
action = "deny"
unix = [%q]
`, p.port(), secret, secret)
	cfg := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.log")
	d := startDaemon(t, false, "--config", cfg, "--audit-log", audit)
	tg := d.unix()

	for _, tc := range []struct {
		name, method, reason, rule string
		req                        m
	}{
		{"cidr and port", "Open", "DESTINATION_DENIED", "no-peer-port", m{"tcp": m{"host": "127.0.0.1", "port": p.port()}}},
		{"host name resolving to a denied address", "Open", "DESTINATION_DENIED", "no-peer-port", m{"tcp": m{"host": "localhost", "port": p.port()}}},
		{"link-local default", "Open", "DESTINATION_DENIED", "default.connect.link-local", m{"tcp": m{"host": "169.254.169.254", "port": 80}}},
		{"metadata host name default", "Open", "DESTINATION_DENIED", "default.connect.metadata", m{"tcp": m{"host": "metadata.google.internal", "port": 80}}},
		{"unix prefix", "Open", "DESTINATION_DENIED", "no-secret", m{"unix": m{"path": filepath.Join(secret, "s.sock")}}},
		{"all interfaces", "StartServer", "BIND_DENIED", "default.bind.deny", m{"tcp": m{"host": "", "port": 0}}},
		{"privileged port", "StartServer", "BIND_DENIED", "default.bind.deny", m{"tcp": m{"host": "127.0.0.1", "port": 81}}},
		{"unix bind prefix", "StartServer", "BIND_DENIED", "no-secret-bind", m{"unix": m{"path": filepath.Join(secret, "planted.sock")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := fail(t, tg, tc.method, tc.req, codes.PermissionDenied, tc.reason)
			info := e.detail("google.rpc.ErrorInfo")
			md, _ := info["metadata"].(map[string]any)
			if md["rule"] != tc.rule {
				t.Fatalf("rule = %v, want %q (error %+v)", md["rule"], tc.rule, e)
			}
			if !strings.Contains(e.Message, tc.rule) {
				t.Fatalf("message %q does not name the rule %q", e.Message, tc.rule)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(secret, "planted.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a denied bind left a socket file: %v", err)
	}
	// Allowed: another port on loopback, and loopback binds.
	other := newPeer(t)
	st := call[openResp](t, tg, "Open", m{"tcp": m{"host": "127.0.0.1", "port": other.port()}})
	other.accept(t).Close()
	srv := call[startServerResp](t, tg, "StartServer", m{"tcp": m{"host": "127.0.0.1", "port": 0}})

	lines := auditLines(t, audit)
	find := func(action, decision, rule string) bool {
		for _, l := range lines {
			if l["msg"] == "audit" && l["action"] == action && l["decision"] == decision && (rule == "" || l["rule"] == rule) && l["identity"] == "uid:0" {
				return true
			}
		}
		return false
	}
	for _, w := range []struct{ action, decision, rule string }{
		{"open", "deny", "no-peer-port"},
		{"open", "deny", "no-secret"},
		{"start_server", "deny", "default.bind.deny"},
		{"open", "allow", ""},
		{"start_server", "allow", ""},
	} {
		if !find(w.action, w.decision, w.rule) {
			t.Errorf("no audit line for %+v in:\n%v", w, lines)
		}
	}
	var sawIDs bool
	for _, l := range lines {
		if l["stream_id"] == st.StreamID || l["server_id"] == srv.ServerID {
			sawIDs = true
		}
	}
	if !sawIDs {
		t.Errorf("the audit log does not name the handles it allowed:\n%v", lines)
	}
}

// tokenConn dials the daemon's Unix socket as the identity of a bearer
// token (or as this process's uid with token "").
func tokenConn(t testing.TB, sock, token string) smv1.StreamServiceClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), method, req, reply, cc, opts...)
		}))
	}
	cc, err := grpc.NewClient("unix://"+sock, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return smv1.NewStreamServiceClient(cc)
}

func reasonOf(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

// TestQuotas: count quotas refuse with QUOTA_EXCEEDED per identity, and a
// bandwidth quota holds one identity's stream to its rate within 10% while
// another identity's stream runs at full speed.
func TestQuotas(t *testing.T) {
	t.Parallel()
	const rate = 1 << 20
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("slow-token-0123456789,slow\ncapped-token-0123456789,capped\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[identity.capped]
max_streams = 2
max_servers = 1

[identity.slow]
bytes_per_second_in = %d
`, rate)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, false, "--config", cfg, "--token-file", tokens)
	ctx := context.Background()

	t.Run("counts", func(t *testing.T) {
		capped, free := tokenConn(t, d.sock, "capped-token-0123456789"), tokenConn(t, d.sock, "")
		var ids []string
		for range 2 {
			r, err := capped.OpenPair(ctx, &smv1.OpenPairRequest{})
			if err == nil {
				ids = append(ids, r.FirstStreamId, r.SecondStreamId)
			}
			if len(ids) == 0 && err != nil {
				t.Fatalf("first OpenPair: %v", err)
			}
			if len(ids) == 2 {
				_, err = capped.OpenPair(ctx, &smv1.OpenPairRequest{})
				if c, r := reasonOf(err); c != codes.ResourceExhausted || r != "QUOTA_EXCEEDED" {
					t.Fatalf("OpenPair past the quota: got %v, want RESOURCE_EXHAUSTED QUOTA_EXCEEDED", err)
				}
				break
			}
		}
		if _, err := capped.StartServer(ctx, &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}}); err != nil {
			t.Fatal(err)
		}
		_, err := capped.StartServer(ctx, &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1"}}})
		if c, r := reasonOf(err); c != codes.ResourceExhausted || r != "QUOTA_EXCEEDED" {
			t.Fatalf("StartServer past the quota: got %v", err)
		}
		// Another identity is not held back by capped's quota.
		for range 3 {
			if _, err := free.OpenPair(ctx, &smv1.OpenPairRequest{}); err != nil {
				t.Fatalf("another identity's OpenPair: %v", err)
			}
		}
		// Releasing a stream makes room again.
		if _, err := capped.Abort(ctx, &smv1.AbortRequest{StreamId: ids[0]}); err != nil {
			t.Fatal(err)
		}
		if _, err := capped.Abort(ctx, &smv1.AbortRequest{StreamId: ids[1]}); err != nil {
			t.Fatal(err)
		}
		if _, err := capped.OpenPair(ctx, &smv1.OpenPairRequest{}); err != nil {
			t.Fatalf("OpenPair after aborting the pair: %v", err)
		}
	})

	t.Run("bandwidth", func(t *testing.T) {
		slow, fast := tokenConn(t, d.sock, "slow-token-0123456789"), tokenConn(t, d.sock, "")
		// A peer that sends as fast as the daemon reads, to each stream.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 256<<10)
					for {
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
				}()
			}
		}()
		port := uint32(ln.Addr().(*net.TCPAddr).Port)
		open := func(c smv1.StreamServiceClient, limit *int64) string {
			r, err := c.Open(ctx, &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1", Port: port}}, Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			return r.StreamId
		}
		// The other identity reads with a 1 MiB limit, so that each Read
		// can return up to 1 MiB: on a loaded machine the round trips, not
		// the bytes, bound what a default-limit reader gets.
		ss, fs := open(slow, nil), open(fast, ptr(int64(1<<20)))
		// Read both for the same few seconds.
		const span = 3 * time.Second
		count := func(c smv1.StreamServiceClient, id string, out *int64, wg *sync.WaitGroup) {
			defer wg.Done()
			end := time.Now().Add(span)
			for time.Now().Before(end) {
				cctx, cancel := context.WithDeadline(ctx, end)
				r, err := c.Read(cctx, &smv1.ReadRequest{StreamId: id, N: ptr(int64(1 << 20))})
				cancel()
				if err != nil {
					if status.Code(err) == codes.DeadlineExceeded {
						return
					}
					t.Errorf("read: %v", err)
					return
				}
				*out += int64(len(r.Data))
			}
		}
		// Let the slow stream's burst pass before measuring.
		if _, err := slow.Read(ctx, &smv1.ReadRequest{StreamId: ss, N: ptr(int64(1 << 20))}); err != nil {
			t.Fatal(err)
		}
		var slowN, fastN int64
		var wg sync.WaitGroup
		wg.Add(2)
		start := time.Now()
		go count(slow, ss, &slowN, &wg)
		go count(fast, fs, &fastN, &wg)
		wg.Wait()
		el := time.Since(start).Seconds()
		got := float64(slowN) / el
		t.Logf("slow identity: %.2f MB/s (quota %.2f MB/s); other identity: %.1f MB/s", got/1e6, float64(rate)/1e6, float64(fastN)/el/1e6)
		// The bytes buffered before the measurement (up to 2 x limit plus
		// one socket read) may come on top.
		extra := float64(2*64<<10+256<<10) / el
		// At most 10% above the quota; the floor only catches a limiter
		// that holds back far too much (under a full make test with CPU
		// hogs the Read round trips alone held it to 84%).
		if got > float64(rate)*1.1+extra || got < float64(rate)*0.7 {
			t.Errorf("slow identity read %.0f B/s, want %d B/s (at most 10%% above, at least 70%%)", got, rate)
		}
		// Above what the slow identity got, also on a loaded machine
		// (unloaded it is a hundred times; under a full make test with a
		// CPU hog and a second make test, 1.48x). Sharing slow's limiter
		// would give it half the quota, a limiter of its own at the same
		// rate about 1x.
		if fast := float64(fastN) / el; fast < 1.25*got {
			t.Errorf("the other identity read only %.0f B/s, the slow one %.0f B/s: held back by slow's quota?", fast, got)
		}
	})
}
