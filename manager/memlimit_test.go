package manager

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  int64
		ok    bool
	}{
		{"v2 namespaced", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "268435456\n",
		}, 256 << 20, true},
		{"v2 path", map[string]string{
			"proc/self/cgroup":                          "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": "536870912\n",
		}, 512 << 20, true},
		{"v2 unlimited", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		}, 0, false},
		{"v1", map[string]string{
			"proc/self/cgroup": "5:devices:/\n4:memory:/docker/abc\n3:cpu,cpuacct:/\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824\n",
		}, 1 << 30, true},
		{"v1 unlimited", map[string]string{
			"proc/self/cgroup":                           "4:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, false},
		{"no cgroup file", map[string]string{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, body := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := cgroupMemoryLimit(root)
			if got != tc.want && tc.ok || ok != tc.ok {
				t.Fatalf("got %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestDefaultBudgetFollowsCgroup(t *testing.T) {
	if got := defaultBudget(256<<20, true); got != 64<<20 {
		t.Fatalf("256 MiB limit: budget %d, want the 64 MiB floor", got)
	}
	if got := defaultBudget(100<<20, true); got != 50<<20 {
		t.Fatalf("100 MiB limit: budget %d, want half the limit", got)
	}
	if got := defaultBudget(2<<30, true); got != 256<<20 {
		t.Fatalf("2 GiB limit: budget %d, want an eighth", got)
	}
	if defaultBudget(0, false) != defaultBudget(1<<62, true) {
		t.Fatal("a limit above the machine's memory changed the budget")
	}
}
