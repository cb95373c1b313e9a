package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The paths the units name, which the tests point at a built daemon, the
// policy beside this file and a temporary directory.
const (
	unitBinary = "/usr/local/bin/streammgrd"
	unitPolicy = "/etc/streammgr/policy.toml"
	unitRunDir = "/run/streammgr"
)

// stopTimeout is how long the daemon may take after SIGTERM: the unit's
// TimeoutStopSec.
const stopTimeout = 20 * time.Second

// execArgs returns the service's ExecStart split into words, with the
// installed paths replaced by the built daemon and the policy beside this
// file. The line must be plain words: no quoting, no $ or % expansion, no
// prefix, so that splitting on spaces is what systemd does too.
func execArgs(t *testing.T, svc unit) []string {
	t.Helper()
	line := svc.one(t, "Service", "ExecStart")
	if strings.ContainsAny(line, `"'$%\;`) || strings.ContainsAny(line[:1], "-@:+!|") {
		t.Fatalf("ExecStart=%s: want plain words (no quotes, specifiers, variables or prefixes)", line)
	}
	args := strings.Fields(line)
	if args[0] != unitBinary {
		t.Fatalf("ExecStart runs %s, want %s", args[0], unitBinary)
	}
	policy, err := filepath.Abs("policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	args[0] = filepath.Join(binDir, "streammgrd")
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, unitPolicy, policy)
	}
	return args
}

// environment returns the service's Environment= assignments.
func environment(t *testing.T, svc unit) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, line := range svc["Service"]["Environment"] {
		for _, kv := range strings.Fields(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("Environment=%s: %q is not VAR=VALUE", line, kv)
			}
			env[k] = v
		}
	}
	return env
}

// TestUnitsAgree checks what makes the pair work together: the daemon run
// on its own listens where the socket unit does, in the runtime directory
// the service owns, and the flags it is given exist and are used as meant.
func TestUnitsAgree(t *testing.T) {
	sock, svc := parseUnit(t, "streammgrd.socket"), parseUnit(t, "streammgrd.service")
	listen := sock.one(t, "Socket", "ListenStream")
	if got, want := filepath.Dir(listen), unitRunDir; got != want {
		t.Errorf("ListenStream=%s: directory %s, want %s", listen, got, want)
	}
	if got := sock.one(t, "Socket", "Accept"); got != "no" {
		t.Errorf("Accept=%s, want no: the daemon serves the listening socket itself", got)
	}
	if got := sock.one(t, "Socket", "SocketMode"); got != "0660" {
		t.Errorf("SocketMode=%s, want 0660", got)
	}
	if got := sock.one(t, "Socket", "SocketGroup"); got != svc.one(t, "Service", "Group") {
		t.Errorf("SocketGroup=%s, want the service's Group=%s", got, svc.one(t, "Service", "Group"))
	}
	if got := svc.one(t, "Service", "RuntimeDirectory"); "/run/"+got != unitRunDir {
		t.Errorf("RuntimeDirectory=%s, want %s", got, filepath.Base(unitRunDir))
	}
	// Clients enter the directory before the service ever ran (systemd
	// made it, owned by root, for the socket) and after (the service's).
	for _, m := range []string{sock.one(t, "Socket", "DirectoryMode"), svc.one(t, "Service", "RuntimeDirectoryMode")} {
		if n, err := strconv.ParseUint(m, 8, 32); err != nil || n&0o001 == 0 {
			t.Errorf("directory mode %s: clients outside its group could not reach the socket (%v)", m, err)
		}
	}
	if got := svc.one(t, "Service", "RuntimeDirectoryPreserve"); got != "yes" {
		t.Errorf("RuntimeDirectoryPreserve=%s, want yes: stopping the service must not delete the socket unit's file", got)
	}
	// Run on its own, the daemon listens on $XDG_RUNTIME_DIR/streammgrd.sock.
	if got, want := environment(t, svc)["XDG_RUNTIME_DIR"]+"/streammgrd.sock", listen; got != want {
		t.Errorf("the service's default socket is %s, want the socket unit's %s", got, want)
	}
	// The sysusers.d file creates the user and group the units name.
	sysusers, err := os.ReadFile("streammgr.sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{svc.one(t, "Service", "User"), svc.one(t, "Service", "Group"), sock.one(t, "Socket", "SocketUser"), sock.one(t, "Socket", "SocketGroup")} {
		if !strings.Contains("\n"+string(sysusers), "\nu "+name+" ") {
			t.Errorf("streammgr.sysusers.conf does not create %q", name)
		}
	}
	args := execArgs(t, svc)
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "--listen") {
			t.Errorf("ExecStart has %s: under socket activation it would be bound besides the inherited socket", a)
		}
	}
	if _, ok := svc["Service"]["ExecReload"]; ok {
		t.Errorf("ExecReload= is set, but streammgrd does not reload")
	}
	// Every flag exists: an unknown one would be refused with exit 2.
	cmd := exec.Command(args[0], append(args[1:], "--version")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	if got := svc.one(t, "Service", "LimitNOFILE"); got == "" {
		t.Errorf("no LimitNOFILE")
	}
	for _, want := range []string{"ProtectSystem=strict", "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet="} {
		k, v, _ := strings.Cut(want, "=")
		got, ok := svc["Service"][k]
		if !ok || strings.Join(got, " ") != v {
			t.Errorf("[Service] %s=%q, want %q", k, strings.Join(got, " "), v)
		}
	}
	if _, ok := svc["Service"]["PrivateUsers"]; ok {
		t.Errorf("PrivateUsers= is set: in a user namespace every caller's uid would read as nobody")
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the units, with
// ExecStart pointed at a built daemon (verify checks that it exists), and
// systemd-analyze security on the service. Any warning fails it.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	dir := t.TempDir()
	policy, err := filepath.Abs("policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"streammgrd.socket", "streammgrd.service"} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(data), unitBinary, filepath.Join(binDir, "streammgrd"))
		s = strings.ReplaceAll(s, unitPolicy, policy)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sa, "verify", "--man=no", "./streammgrd.socket", "./streammgrd.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The exposure score runs from 0 (locked down) to 10; 2.0 is "OK".
	cmd = exec.Command(sa, "security", "--offline=yes", "--threshold=20", "--no-pager", "./streammgrd.service")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	}
}

// TestSocketActivation starts the daemon as the socket unit would, under
// systemd-socket-activate with the unit's ListenStream (moved into a
// temporary directory) and ExecStart, and asks it for its health over that
// socket. User=, RuntimeDirectory= and the sandboxing cannot be emulated
// here; the descriptor passing (LISTEN_FDS, LISTEN_PID) and the flags can.
func TestSocketActivation(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate not installed (Debian package systemd)")
	}
	sock, svc := parseUnit(t, "streammgrd.socket"), parseUnit(t, "streammgrd.service")
	mode, err := strconv.ParseUint(sock.one(t, "Socket", "SocketMode"), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := strings.Replace(sock.one(t, "Socket", "ListenStream"), unitRunDir, dir, 1)

	args := []string{"-l", path}
	for k, v := range environment(t, svc) {
		args = append(args, "-E", k+"="+strings.ReplaceAll(v, unitRunDir, dir))
	}
	args = append(append(args, "--"), execArgs(t, svc)...)
	p := start(t, exec.Command(activate, args...))
	// systemd-socket-activate binds the socket and runs the daemon at the
	// first connection. systemd would give the file SocketMode= (and its
	// owner and group) before listening; so does this test.
	waitFor(t, 30*time.Second, "socket "+path, p, func() error { _, err := os.Stat(path); return err })
	if err := os.Chmod(path, os.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
	dirMode, err := strconv.ParseUint(sock.one(t, "Socket", "DirectoryMode"), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, os.FileMode(dirMode)); err != nil {
		t.Fatal(err)
	}
	// SocketGroup=streammgr, which does not exist here: any unused gid
	// stands for it.
	const group = 4243
	root := os.Geteuid() == 0
	if root {
		if err := os.Chown(path, 0, group); err != nil {
			t.Fatal(err)
		}
	}
	waitServing(t, path, p)
	if root {
		// A member of the group may connect, anyone else is kept out by
		// the socket's mode (streamctl exits 3: cannot reach the daemon).
		for _, c := range []struct {
			groups []uint32
			want   int
		}{{[]uint32{group}, 0}, {nil, 3}} {
			cmd := exec.Command(filepath.Join(binDir, "streamctl"), "--addr", "unix:"+path, "health")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: c.groups}}
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.want {
				t.Errorf("streamctl health as uid 4242, groups %v: exit %d, want %d\n%s", c.groups, code, c.want, out)
			}
		}
	}

	logs := p.out.String()
	if !strings.Contains(logs, `"msg":"socket activation: serving an inherited listener","addr":"unix:`+path+`"`) {
		t.Errorf("the daemon did not log serving the inherited socket:\n%s", logs)
	}
	if err := p.stop(t, stopTimeout); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	checkJSONLog(t, p.out.String())
	// The socket file is systemd's: the daemon leaves it.
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the daemon removed the socket file systemd owns: %v", err)
	}
}

// TestServiceWithoutSocket runs the service's ExecStart on its own, as
// systemctl start streammgrd.service without the socket unit would: the
// daemon creates the socket the socket unit names, with --socket-mode, and
// removes it on SIGTERM.
func TestServiceWithoutSocket(t *testing.T) {
	sock, svc := parseUnit(t, "streammgrd.socket"), parseUnit(t, "streammgrd.service")
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := strings.Replace(sock.one(t, "Socket", "ListenStream"), unitRunDir, dir, 1)
	args := execArgs(t, svc)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = os.Environ()
	for k, v := range environment(t, svc) {
		cmd.Env = append(cmd.Env, k+"="+strings.ReplaceAll(v, unitRunDir, dir))
	}
	// Not inherited from a test run under systemd itself.
	cmd.Env = append(cmd.Env, "LISTEN_FDS=", "LISTEN_PID=")
	p := start(t, cmd)
	waitServing(t, path, p)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := strconv.ParseUint(sock.one(t, "Socket", "SocketMode"), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != os.FileMode(want) {
		t.Errorf("socket mode %v, want %v (the socket unit's SocketMode)", got, os.FileMode(want))
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != os.Getegid() {
		t.Errorf("socket group %d, want the daemon's primary group %d", st.Gid, os.Getegid())
	}
	if err := p.stop(t, stopTimeout); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	checkJSONLog(t, p.out.String())
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after exit: %v", err)
	}
}

// checkJSONLog checks that every line the daemon wrote is a JSON object
// (--log-format json, as journald and log shippers want it).
func checkJSONLog(t *testing.T, out string) {
	t.Helper()
	n := 0
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // systemd-socket-activate's own lines
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("log line is not JSON: %q: %v", line, err)
		}
		n++
	}
	if n == 0 {
		t.Errorf("no JSON log lines in:\n%s", out)
	}
}
