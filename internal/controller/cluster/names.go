package cluster

import (
	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
)

// NamespaceName is clusterns.Name, for the code of this package.
func NamespaceName(namespace, name string) string { return clusterns.Name(namespace, name) }

// Namespace is clusterns.Of, for the code of this package.
func Namespace(c *fleetv1.Cluster) (name string, ready bool) { return clusterns.Of(c) }
