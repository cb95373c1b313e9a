package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/streammgr/streammgr/manager/policy"
)

// manifest is kubernetes.yaml, each document decoded strictly (an unknown
// or misspelt field fails) into the Kubernetes API's own types.
type manifest struct {
	deployment *appsv1.Deployment
	configMaps map[string]*corev1.ConfigMap
}

func loadManifest(t *testing.T) manifest {
	t.Helper()
	data, err := os.ReadFile("kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := manifest{configMaps: map[string]*corev1.ConfigMap{}}
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		switch head.APIVersion + " " + head.Kind {
		case "v1 ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict(doc, &cm); err != nil {
				t.Fatalf("document %d (ConfigMap): %v", i, err)
			}
			m.configMaps[cm.Name] = &cm
		case "apps/v1 Deployment":
			if m.deployment != nil {
				t.Fatalf("document %d: a second Deployment", i)
			}
			m.deployment = &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict(doc, m.deployment); err != nil {
				t.Fatalf("document %d (Deployment): %v", i, err)
			}
		default:
			t.Fatalf("document %d: unexpected %q %q", i, head.APIVersion, head.Kind)
		}
	}
	if m.deployment == nil {
		t.Fatal("no Deployment")
	}
	return m
}

// sidecar is what the test learns of the daemon's container.
type sidecar struct {
	c      *corev1.Container
	flags  map[string]string // --name=value arguments
	socket string            // --listen's path
}

// findSidecar returns the container that runs streammgrd (a native
// sidecar: an init container with restartPolicy Always) and the app's.
func findSidecar(t *testing.T, spec *corev1.PodSpec) (sidecar, *corev1.Container) {
	t.Helper()
	var sc sidecar
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if c.Name == "streammgrd" {
			sc.c = c
		}
	}
	if sc.c == nil {
		t.Fatal("no init container streammgrd")
	}
	if sc.c.RestartPolicy == nil || *sc.c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("streammgrd: restartPolicy %v, want Always (a native sidecar, started before the app)", sc.c.RestartPolicy)
	}
	sc.flags = map[string]string{}
	for _, a := range sc.c.Args {
		k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("streammgrd arg %q: want --flag=value", a)
		}
		if _, dup := sc.flags[k]; dup {
			t.Fatalf("streammgrd: --%s given twice", k)
		}
		sc.flags[k] = v
	}
	path, ok := strings.CutPrefix(sc.flags["listen"], "unix:")
	if !ok || !filepath.IsAbs(path) {
		t.Fatalf("streammgrd --listen=%q: want unix:/absolute/path", sc.flags["listen"])
	}
	sc.socket = path
	if len(spec.Containers) != 1 {
		t.Fatalf("%d app containers, want 1", len(spec.Containers))
	}
	return sc, &spec.Containers[0]
}

// mountOf returns the volume mount of c that holds path, and path's place
// inside the volume.
func mountOf(c *corev1.Container, path string) (corev1.VolumeMount, string, bool) {
	for _, m := range c.VolumeMounts {
		if rel, err := filepath.Rel(m.MountPath, path); err == nil && !strings.HasPrefix(rel, "..") {
			return m, filepath.Join(m.SubPath, rel), true
		}
	}
	return corev1.VolumeMount{}, "", false
}

func env(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// ids is who a container runs as: the pod's security context overridden by
// the container's.
type ids struct {
	uid, gid int64
	groups   []int64 // supplementary: fsGroup and supplementalGroups
}

func idsOf(t *testing.T, pod *corev1.PodSecurityContext, c *corev1.Container) ids {
	t.Helper()
	var id ids
	uid, gid := pod.RunAsUser, pod.RunAsGroup
	if s := c.SecurityContext; s != nil {
		if s.RunAsUser != nil {
			uid = s.RunAsUser
		}
		if s.RunAsGroup != nil {
			gid = s.RunAsGroup
		}
	}
	if uid == nil || gid == nil {
		t.Fatalf("%s: runAsUser and runAsGroup must be set (the socket mode depends on them)", c.Name)
	}
	id.uid, id.gid = *uid, *gid
	if pod.FSGroup != nil {
		id.groups = append(id.groups, *pod.FSGroup)
	}
	id.groups = append(id.groups, pod.SupplementalGroups...)
	return id
}

// TestKubernetesManifest checks the manifest's meaning: the sidecar and the
// app share the socket's emptyDir, the app's STREAMMGR_ADDR names it, its
// mode lets the app's uid in and nobody else's, the probes run a tool that
// is in the image against that socket, the policy parses, and both
// containers are locked down with resource limits.
func TestKubernetesManifest(t *testing.T) {
	m := loadManifest(t)
	spec := &m.deployment.Spec.Template.Spec
	sc, app := findSidecar(t, spec)
	pod := spec.SecurityContext
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot {
		t.Fatal("pod securityContext: want runAsNonRoot: true")
	}

	// One emptyDir holds the socket, for both containers.
	dm, rel, ok := mountOf(sc.c, sc.socket)
	if !ok {
		t.Fatalf("streammgrd mounts nothing at its socket %s", sc.socket)
	}
	vi := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == dm.Name })
	if vi < 0 || spec.Volumes[vi].EmptyDir == nil {
		t.Fatalf("the socket's volume %q is not an emptyDir", dm.Name)
	}
	if dm.ReadOnly {
		t.Errorf("streammgrd mounts %s read-only: it creates the socket there", dm.Name)
	}
	addr, ok := strings.CutPrefix(env(app, "STREAMMGR_ADDR"), "unix:")
	if !ok {
		t.Fatalf("app STREAMMGR_ADDR=%q: want unix:/path", env(app, "STREAMMGR_ADDR"))
	}
	am, arel, ok := mountOf(app, addr)
	if !ok || am.Name != dm.Name || arel != rel {
		t.Fatalf("app STREAMMGR_ADDR %s is %s in volume %q; the daemon listens on %s in volume %q", addr, arel, am.Name, rel, dm.Name)
	}

	// The socket's mode lets the app in: the daemon creates it with its
	// own uid and primary group (the emptyDir's fsGroup, where one is set,
	// which kubelet makes setgid); the app needs the permission bits that
	// apply to it.
	mode, err := strconv.ParseUint(sc.flags["socket-mode"], 8, 32)
	if err != nil {
		t.Fatalf("--socket-mode=%q: %v", sc.flags["socket-mode"], err)
	}
	d, a := idsOf(t, pod, sc.c), idsOf(t, pod, app)
	sockGID := d.gid
	if pod.FSGroup != nil {
		sockGID = *pod.FSGroup
	}
	if d.uid == a.uid {
		t.Errorf("the app runs as the daemon's uid %d: the daemon could not tell it from itself", a.uid)
	}
	if !canConnect(uint32(mode), d.uid, sockGID, a) {
		t.Errorf("socket mode %#o owned %d:%d: the app (uid %d, gid %d, groups %v) cannot connect", mode, d.uid, sockGID, a.uid, a.gid, a.groups)
	}
	if mode&0o007 != 0 {
		t.Errorf("socket mode %#o: other users need no access", mode)
	}

	// The policy: a ConfigMap mounted where --config points, which the
	// daemon's own parser accepts, with a section for the app's uid.
	cfgPath := sc.flags["config"]
	pm, prel, ok := mountOf(sc.c, cfgPath)
	if !ok {
		t.Fatalf("--config=%s is in no volume", cfgPath)
	}
	pv := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == pm.Name })
	if pv < 0 || spec.Volumes[pv].ConfigMap == nil {
		t.Fatalf("--config=%s: volume %q is not a ConfigMap", cfgPath, pm.Name)
	}
	cm := m.configMaps[spec.Volumes[pv].ConfigMap.Name]
	if cm == nil {
		t.Fatalf("ConfigMap %q is not in the manifest", spec.Volumes[pv].ConfigMap.Name)
	}
	toml, ok := cm.Data[prel]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q for --config=%s", cm.Name, prel, cfgPath)
	}
	if _, err := policy.Parse([]byte(toml)); err != nil {
		t.Errorf("ConfigMap %s %s: %v", cm.Name, prel, err)
	}
	if want := fmt.Sprintf(`[identity."uid:%d"]`, a.uid); !strings.Contains(toml, want) {
		t.Errorf("policy has no %s section for the app", want)
	}

	// Probes: streamctl health over the same socket.
	if got := env(sc.c, "STREAMMGR_ADDR"); got != sc.flags["listen"] {
		t.Errorf("streammgrd STREAMMGR_ADDR=%q (for its probes), want --listen's %q", got, sc.flags["listen"])
	}
	for name, pr := range map[string]*corev1.Probe{"startup": sc.c.StartupProbe, "readiness": sc.c.ReadinessProbe, "liveness": sc.c.LivenessProbe} {
		if pr == nil || pr.Exec == nil {
			t.Errorf("streammgrd %sProbe: want an exec probe", name)
			continue
		}
		want := []string{"/usr/local/bin/streamctl", "health"}
		if name == "liveness" {
			// Not the memory budget: a full one is no reason to restart.
			want = append(want, "--service", "daemon")
		}
		if got := pr.Exec.Command; !slices.Equal(got, want) {
			t.Errorf("streammgrd %sProbe runs %q, want %q", name, got, want)
		}
		if pr.TimeoutSeconds < 2 {
			t.Errorf("streammgrd %sProbe timeoutSeconds %d: too short for a loaded node", name, pr.TimeoutSeconds)
		}
	}

	// Locked down, with limits; the daemon's memory budget below its limit.
	for _, c := range []*corev1.Container{sc.c, app} {
		s := c.SecurityContext
		switch {
		case s == nil:
			t.Errorf("%s: no securityContext", c.Name)
			continue
		case s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem:
			t.Errorf("%s: want readOnlyRootFilesystem: true", c.Name)
		case s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation:
			t.Errorf("%s: want allowPrivilegeEscalation: false", c.Name)
		case s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(s.Capabilities.Add) > 0:
			t.Errorf("%s: want capabilities drop [ALL], add none", c.Name)
		case s.Privileged != nil && *s.Privileged:
			t.Errorf("%s: privileged", c.Name)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Limits[r]; !ok {
				t.Errorf("%s: no %s limit", c.Name, r)
			}
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("%s: no %s request", c.Name, r)
			}
		}
	}
	budget, err := strconv.ParseInt(sc.flags["max-buffered-bytes"], 10, 64)
	if err != nil {
		t.Fatalf("streammgrd --max-buffered-bytes=%q: %v (the default follows the node's memory, not the limit)", sc.flags["max-buffered-bytes"], err)
	}
	limit := sc.c.Resources.Limits[corev1.ResourceMemory]
	if budget > limit.Value()*3/4 {
		t.Errorf("--max-buffered-bytes=%d: above three quarters of the memory limit %s", budget, limit.String())
	}
}

// canConnect reports whether a process with ids id may connect to a socket
// file of mode mode owned by uid:gid (connect needs write permission).
func canConnect(mode uint32, uid, gid int64, id ids) bool {
	switch {
	case id.uid == 0:
		return true
	case id.uid == uid:
		return mode&0o200 != 0
	case id.gid == gid || slices.Contains(id.groups, gid):
		return mode&0o020 != 0
	default:
		return mode&0o002 != 0
	}
}

// TestKubernetesPodRuns runs the sidecar's args with the real daemon as the
// manifest's uid and groups, in a directory laid out as kubelet lays out
// the emptyDir (group fsGroup, setgid, mode 0777) and the ConfigMap, then
// runs the probe command as the sidecar and the app's client as the app's
// uid: both must see SERVING, and a uid outside the pod's group must be
// refused by the socket's mode. Needs root, to take those uids.
func TestKubernetesPodRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the containers' uids")
	}
	m := loadManifest(t)
	spec := &m.deployment.Spec.Template.Spec
	sc, app := findSidecar(t, spec)
	d, a := idsOf(t, spec.SecurityContext, sc.c), idsOf(t, spec.SecurityContext, app)
	fsGroup := *spec.SecurityContext.FSGroup

	root, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each mount's path is replaced by a directory under root.
	mounts := map[string]string{}
	for i, vm := range sc.c.VolumeMounts {
		dir := filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		vi := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		switch v := spec.Volumes[vi]; {
		case v.EmptyDir != nil:
			if err := os.Chown(dir, 0, int(fsGroup)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o777|os.ModeSetgid); err != nil {
				t.Fatal(err)
			}
		case v.ConfigMap != nil:
			for k, val := range m.configMaps[v.ConfigMap.Name].Data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(val), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		mounts[vm.MountPath] = dir
	}
	local := func(s string) string {
		for mp, dir := range mounts {
			s = strings.ReplaceAll(s, mp+"/", dir+"/")
		}
		return s
	}
	if len(local(sc.socket)) > 107 {
		t.Fatalf("socket path %s too long", local(sc.socket))
	}
	as := func(cmd *exec.Cmd, id ids) *exec.Cmd {
		g := make([]uint32, len(id.groups))
		for i, x := range id.groups {
			g[i] = uint32(x)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(id.uid), Gid: uint32(id.gid), Groups: g}}
		return cmd
	}

	args := make([]string, len(sc.c.Args))
	for i, a := range sc.c.Args {
		args[i] = local(a)
	}
	cmd := as(exec.Command(filepath.Join(binDir, "streammgrd"), args...), d)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	p := start(t, cmd)
	sock := local(sc.socket)
	waitServing(t, sock, p)

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int64(st.Uid) != d.uid || int64(st.Gid) != fsGroup {
		t.Errorf("socket owned %d:%d, want the daemon's uid and the fsGroup %d:%d", st.Uid, st.Gid, d.uid, fsGroup)
	}

	streamctl := func(c *corev1.Container, argv []string, id ids) (string, int) {
		cmd := as(exec.Command(filepath.Join(binDir, "streamctl"), argv...), id)
		cmd.Env = []string{"STREAMMGR_ADDR=" + local(env(c, "STREAMMGR_ADDR"))}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	// The probes, exactly as the kubelet runs them, as the sidecar.
	for _, pr := range []*corev1.Probe{sc.c.StartupProbe, sc.c.ReadinessProbe, sc.c.LivenessProbe} {
		if filepath.Base(pr.Exec.Command[0]) != "streamctl" {
			t.Fatalf("probe runs %q", pr.Exec.Command)
		}
		if out, code := streamctl(sc.c, pr.Exec.Command[1:], d); code != 0 {
			t.Errorf("probe %q as uid %d: exit %d\n%s", pr.Exec.Command, d.uid, code, out)
		}
	}
	// The app, with its own STREAMMGR_ADDR and uid.
	if out, code := streamctl(app, []string{"health"}, a); code != 0 || !strings.Contains(out, "daemon:         SERVING") {
		t.Errorf("streamctl health as the app (uid %d groups %v): exit %d\n%s", a.uid, a.groups, code, out)
	}
	// A user outside the pod's group: the socket's mode keeps it out
	// (exit 3: cannot reach the daemon).
	stranger := ids{uid: 4242, gid: 4242}
	if out, code := streamctl(app, []string{"health"}, stranger); code != 3 || !strings.Contains(out, "permission denied") {
		t.Errorf("streamctl health as uid 4242: exit %d, want 3 (permission denied)\n%s", code, out)
	}
	if err := p.stop(t, stopTimeout); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	checkJSONLog(t, p.out.String())
}
