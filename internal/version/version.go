// Package version reports the build's version, set at link time.
package version

import (
	"fmt"
	"runtime"
)

// Set with -ldflags "-X github.com/edgefleet/edgefleet/internal/version.Version=..."
var (
	Version = "v0.1.0-dev"
	Commit  = "unknown"
)

// String is the one-line version shown by every binary.
func String(binary string) string {
	return fmt.Sprintf("%s %s (commit %s, %s, %s/%s)", binary, Version, Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
