package manager

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// Abstract socket names have no file permissions: refused unless
// --allow-abstract.
func TestAbstractSocketsNeedTheFlag(t *testing.T) {
	t.Parallel()
	name := "@streammgr-test-" + newID("")
	for _, allow := range []bool{false, true} {
		e := newEnv(t, Config{AllowAbstract: allow})
		_, serr := e.c.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Unix{Unix: &smv1.UnixAddress{Path: name}}})
		_, oerr := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: name}}})
		if !allow {
			wantStatus(t, serr, codes.PermissionDenied, ReasonPermissionDenied)
			wantStatus(t, oerr, codes.PermissionDenied, ReasonPermissionDenied)
			continue
		}
		if serr != nil || oerr != nil {
			t.Fatalf("with --allow-abstract: StartServer %v, Open %v", serr, oerr)
		}
	}
}

// The default socket's directory is created private, and one that is not
// private (another user's, open to others, a link) is refused.
func TestEnsurePrivateDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	fresh := filepath.Join(base, "fresh")
	if err := ensurePrivateDir(fresh); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v, %v; want mode 0700", fi.Mode(), err)
	}
	if err := ensurePrivateDir(fresh); err != nil {
		t.Fatalf("our own private directory again: %v", err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{open: "mode", link: "not a directory"}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases[other] = "another user"
	}
	for dir, want := range cases {
		if err := ensurePrivateDir(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ensurePrivateDir(%s) = %v, want an error about %q", filepath.Base(dir), err, want)
		}
	}
}
