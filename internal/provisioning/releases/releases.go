// Package releases is the manager's list of Kubernetes versions cluster
// formation may install (`edgefleet server --kubernetes-releases FILE`):
// per distro the versions offered, and for the built-in edgefleet distro
// where each version's binaries come from. A ProvisionedCluster asking for
// another version is Stalled with the list; without a file any version the
// API server's check accepts goes.
package releases

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// Catalog is the file's content:
//
//	edgefleet:
//	  v1.37.1: {image: registry.example.com/edgefleet/kubernetes@sha256:…}
//	  v1.37.2: {dir: /usr/lib/edgefleet/kubernetes/v1.37.2}
//	k3s: [v1.33.5+k3s1]
//	rke2: [v1.33.5+rke2r1]
type Catalog struct {
	Edgefleet map[string]kubedistro.Binaries `json:"edgefleet,omitempty"`
	K3s       []string                       `json:"k3s,omitempty"`
	RKE2      []string                       `json:"rke2,omitempty"`
}

var versionRE = map[provisioningv1.Distro]*regexp.Regexp{
	provisioningv1.DistroEdgefleet: regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+$`),
	provisioningv1.DistroK3s:       regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+\+k3s[0-9]+$`),
	provisioningv1.DistroRKE2:      regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+\+rke2r[0-9]+$`),
}

// Load reads and checks a catalog file.
func Load(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &Catalog{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate reports every bad version or binaries entry.
func (c *Catalog) Validate() error {
	var bad []string
	for v, b := range c.Edgefleet {
		if !versionRE[provisioningv1.DistroEdgefleet].MatchString(v) {
			bad = append(bad, fmt.Sprintf("edgefleet version %q is not like v1.37.1", v))
		}
		if (b.Image == "") == (b.Dir == "") || (b.Dir != "" && !strings.HasPrefix(b.Dir, "/")) {
			bad = append(bad, fmt.Sprintf("edgefleet %s: set exactly one of image or dir (absolute)", v))
		}
	}
	for d, list := range map[provisioningv1.Distro][]string{provisioningv1.DistroK3s: c.K3s, provisioningv1.DistroRKE2: c.RKE2} {
		for _, v := range list {
			if !versionRE[d].MatchString(v) {
				bad = append(bad, fmt.Sprintf("%s version %q is not in %s's spelling", d, v, d))
			}
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// Versions are the versions offered per distro, sorted; nil for a nil
// catalog (any version goes).
func (c *Catalog) Versions() map[provisioningv1.Distro][]string {
	if c == nil {
		return nil
	}
	out := map[provisioningv1.Distro][]string{}
	if len(c.Edgefleet) > 0 {
		var vs []string
		for v := range c.Edgefleet {
			vs = append(vs, v)
		}
		slices.Sort(vs)
		out[provisioningv1.DistroEdgefleet] = vs
	}
	if len(c.K3s) > 0 {
		out[provisioningv1.DistroK3s] = slices.Sorted(slices.Values(c.K3s))
	}
	if len(c.RKE2) > 0 {
		out[provisioningv1.DistroRKE2] = slices.Sorted(slices.Values(c.RKE2))
	}
	return out
}

// Binaries are the edgefleet distro's binaries per version.
func (c *Catalog) Binaries() map[string]kubedistro.Binaries {
	if c == nil {
		return nil
	}
	return c.Edgefleet
}
