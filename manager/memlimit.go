package manager

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupMemoryLimit returns the memory limit of the cgroup this process
// runs in (cgroup v2 memory.max, or v1 memory.limit_in_bytes), read under
// root ("/" outside tests); ok is false when there is none. In a container
// the limit, not the host's memory, is what the kernel holds the daemon
// to: a budget sized from the host's RAM would let the OOM killer act
// before the budget does.
func cgroupMemoryLimit(root string) (limit int64, ok bool) {
	data, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, false
	}
	best := int64(-1)
	consider := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return
		}
		v, err := strconv.ParseInt(s, 10, 64)
		// v1 reports "no limit" as a huge page-rounded number.
		if err != nil || v <= 0 || v >= 1<<62 {
			return
		}
		if best < 0 || v < best {
			best = v
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			// v2. Inside a cgroup namespace the path is "/" and the
			// container's own limit sits at the mount's top.
			consider(filepath.Join(root, "sys/fs/cgroup", parts[2], "memory.max"))
			consider(filepath.Join(root, "sys/fs/cgroup/memory.max"))
		case hasController(parts[1], "memory"):
			consider(filepath.Join(root, "sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
			consider(filepath.Join(root, "sys/fs/cgroup/memory/memory.limit_in_bytes"))
		}
	}
	return best, best > 0
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}
