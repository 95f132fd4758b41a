package bundle

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// DeploymentName is the name of the BundleDeployment of bundle
// bundleNamespace/bundleName in a cluster of clusterNamespace. Bundles only
// target clusters of their own namespace, so this is the bundle's name; a
// bundle reaching another namespace's clusters (a future namespace mapping)
// gets "<bundle-ns>-<bundle-name>", hash-truncated to a valid name, so two
// bundles of the same name never share one BundleDeployment.
func DeploymentName(bundleNamespace, bundleName, clusterNamespace string) string {
	if bundleNamespace == clusterNamespace {
		return bundleName
	}
	return truncateHash(bundleNamespace+"-"+bundleName, validation.DNS1123SubdomainMaxLength)
}

// LabelValue returns s when it is a valid label value, otherwise a valid
// value derived from s (truncated, with a hash of s appended).
func LabelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	return truncateHash(s, validation.LabelValueMaxLength)
}

func truncateHash(s string, maxLen int) string {
	if len(s) <= maxLen && len(validation.IsDNS1123Subdomain(s)) == 0 {
		return s
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return '-'
	}, s)
	// Trimmed at the start after shortening: a name of only "-" and "."
	// is the suffix alone.
	return strings.TrimLeft(kubenames.Shorten(clean, maxLen, kubenames.HashHex(s, 8), "-."), "-.")
}
