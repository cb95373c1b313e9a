package manager

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
)

// revision is the VCS revision when the build info lacks it (set with
// -ldflags "-X github.com/streammgr/streammgr/manager.revision=...").
var revision string

// Version is the daemon's module version and VCS revision, from the build
// info: "v1.2.3 (rev abc123, 2026-12-02T08:00:00Z)", "(devel) (rev
// abc123+dirty)".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	rev, when, dirty := revision, "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v + " (no VCS revision in the build: build from a git checkout with -buildvcs=true)"
	}
	if dirty {
		rev += "+dirty"
	}
	if when != "" {
		return fmt.Sprintf("%s (rev %s, %s, %s)", v, rev, when, bi.GoVersion)
	}
	return fmt.Sprintf("%s (rev %s, %s)", v, rev, bi.GoVersion)
}

// Logger is the daemon's logger for cfg's LogLevel and LogFormat.
func (c Config) Logger(w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	switch c.LogFormat {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
}
