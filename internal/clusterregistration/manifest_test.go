package clusterregistration

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestValidateAgentImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		ref string
		ok  bool
	}{
		{"ghcr.io/edgefleet/edgefleet-agent:v1.2.3", true},
		{"registry.local:5000/edgefleet/edgefleet-agent@" + digest, true},
		{DefaultAgentImage, true},
		{"", false},
		{"Registry/UPPER:tag", false},
		{"repo@sha256:short", false},
		{"repo:tag with space", false},
	} {
		err := ValidateAgentImage(tc.ref)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateAgentImage(%q) = %v, want ok=%v", tc.ref, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "registry/repository") {
			t.Errorf("error for %q does not say how to fix it: %v", tc.ref, err)
		}
	}
}

func TestAgentImageFromEnv(t *testing.T) {
	t.Setenv(EnvAgentImage, "")
	if got := AgentImageFromEnv(); got != DefaultAgentImage {
		t.Fatalf("unset: %q, want the default %q", got, DefaultAgentImage)
	}
	pinned := "registry.local/edgefleet-agent@sha256:" + strings.Repeat("0", 64)
	t.Setenv(EnvAgentImage, pinned)
	if got := AgentImageFromEnv(); got != pinned {
		t.Fatalf("set: %q, want %q", got, pinned)
	}
}

// The image given to the manager is the one the import manifest's agent
// Deployment runs, verbatim (a digest stays a digest).
func TestManifestRunsTheConfiguredImage(t *testing.T) {
	pinned := "registry.local:5000/edgefleet/edgefleet-agent@sha256:" + strings.Repeat("cd", 32)
	out, err := Manifest("https://fleet.example.com:8443", "tok", []byte("ca"), pinned)
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var obj struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Image string }
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, doc)
		}
		if obj.Kind == "Deployment" {
			for _, c := range obj.Spec.Template.Spec.Containers {
				images = append(images, c.Image)
			}
		}
	}
	if len(images) != 1 || images[0] != pinned {
		t.Fatalf("agent Deployment runs %v, want [%s]", images, pinned)
	}
}
