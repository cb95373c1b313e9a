package manager

import (
	"strconv"
	"strings"
)

// Request bounds: what one request may ask of the daemon. Each is far above
// what an asyncio program passes, and keeps what a hostile request costs
// small and linear.
const (
	// MaxSeparators is the most separators one ReadUntil may give.
	MaxSeparators = 64
	// MaxSeparatorBytes is the most bytes ReadUntil's separators may hold
	// together.
	MaxSeparatorBytes = 4096
	// MaxLines is the most lines one WriteLines may carry.
	MaxLines = 65536
	// MaxIDLength is the longest stream or server id accepted (handles are
	// 18 characters).
	MaxIDLength = 128
	// MaxHostLength is the longest host name (DNS allows 253 characters).
	MaxHostLength = 253
	// MaxUnixPath is the longest Unix socket path: sun_path holds 108 bytes
	// with the terminating NUL.
	MaxUnixPath = 107
)

// checkID bounds a handle given by a client.
func checkID(field, id string) error {
	if len(id) > MaxIDLength {
		return invalid(field, "longer than "+strconv.Itoa(MaxIDLength)+" bytes: no such handle")
	}
	return nil
}

// checkHost bounds a host name or address.
func checkHost(field, host string) error {
	switch {
	case len(host) > MaxHostLength:
		return invalid(field, "host is longer than "+strconv.Itoa(MaxHostLength)+" bytes")
	case strings.IndexByte(host, 0) >= 0:
		return invalid(field, "host contains a NUL byte")
	}
	return nil
}

// checkUnixPath refuses a Unix socket path the kernel would truncate or
// refuse: a NUL byte, or more than MaxUnixPath bytes.
func checkUnixPath(field, path string) error {
	switch {
	case path == "":
		return invalid(field, "path is required")
	case strings.IndexByte(path, 0) >= 0:
		return invalid(field, "path contains a NUL byte")
	case len(path) > MaxUnixPath:
		return invalid(field, "path is "+strconv.Itoa(len(path))+" bytes, longer than a Unix socket path can be ("+strconv.Itoa(MaxUnixPath)+")")
	}
	return nil
}

// policyError refuses what the daemon's flags do not allow.
type policyError struct{ field, desc string }

func (e *policyError) Error() string { return e.field + ": " + e.desc }

// checkAbstract refuses an abstract socket name unless allowed.
func checkAbstract(field, path string, allowed bool) error {
	if strings.HasPrefix(path, "@") && !allowed {
		return &policyError{field: field, desc: "abstract socket names (@name) have no file permissions: the daemon refuses them without --allow-abstract"}
	}
	return nil
}

// checkSeparators bounds ReadUntil's separators.
func checkSeparators(seps [][]byte) error {
	if len(seps) > MaxSeparators {
		return invalid("separators", strconv.Itoa(len(seps))+" separators, more than "+strconv.Itoa(MaxSeparators))
	}
	total := 0
	for i, sep := range seps {
		if len(sep) == 0 {
			return invalid("separators["+strconv.Itoa(i)+"]", "Separator should be at least one-byte string")
		}
		total += len(sep)
	}
	if total > MaxSeparatorBytes {
		return invalid("separators", "separators of "+strconv.Itoa(total)+" bytes in all, more than "+strconv.Itoa(MaxSeparatorBytes))
	}
	return nil
}
