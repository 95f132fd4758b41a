package kubenames

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// HashHex is the first n hex digits of sha256(s): the suffix that keeps
// names distinct after shortening.
func HashHex(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// Shorten is name + "-" + suffix, name cut so the whole is at most max
// bytes and cutset trimmed from its end. Every derived name (cluster
// namespaces, bundle and release names, BundleDeployment names and labels,
// machine inventory names) is shortened here; each keeps its own character
// rules and suffix, as its names are stored in existing objects.
func Shorten(name string, max int, suffix, cutset string) string {
	if keep := max - len(suffix) - 1; len(name) > keep {
		name = name[:keep]
	}
	return strings.TrimRight(name, cutset) + "-" + suffix
}
