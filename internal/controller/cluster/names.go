package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// NamespaceName is the namespace on the manager that holds the
// BundleDeployments of Cluster namespace/name:
// "cluster-<namespace>-<name>-<first 8 hex of sha256(namespace/name)>",
// lower-cased, with characters other than [a-z0-9-] replaced by "-" and the
// readable part shortened so the whole is a valid namespace name (at most
// 63 characters). The hash keeps names distinct after shortening.
func NamespaceName(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	suffix := hex.EncodeToString(sum[:])[:8]
	readable := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, "cluster-"+namespace+"-"+name)
	if keep := 63 - len(suffix) - 1; len(readable) > keep {
		readable = readable[:keep]
	}
	return strings.TrimRight(readable, "-") + "-" + suffix
}

// Namespace returns the cluster's namespace on the manager and whether the
// cluster controller has created it. The name is always derived from the
// Cluster's own namespace and name, never read from status: status was
// once writable by the cluster's agent, and a namespace taken from it let
// one agent steer the manager's writes and deletes into any namespace.
// status.namespace only signals readiness, and only when it equals the
// derived name.
func Namespace(c *fleetv1.Cluster) (name string, ready bool) {
	name = NamespaceName(c.Namespace, c.Name)
	return name, c.Status.Namespace == name
}
