package clusterregistration

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
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

// The agent bundle's Deployment is the import manifest's, so taking a
// cluster over changes nothing; it tells the agent its own image, and
// replaces an agent only by one that is Ready (checked in).
func TestAgentDeploymentMatchesTheImportManifest(t *testing.T) {
	img := "registry.local/edgefleet-agent:v2"
	dep, err := AgentDeployment(img)
	if err != nil {
		t.Fatal(err)
	}
	full, err := Manifest("https://fleet.example.com:8443", "tok", []byte("ca"), img)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(full), string(dep)) {
		t.Fatalf("the import manifest does not contain the agent bundle's Deployment verbatim:\n%s", dep)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(dep, &d); err != nil {
		t.Fatalf("Deployment does not parse strictly: %v\n%s", err, dep)
	}
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	ru := d.Spec.Strategy.RollingUpdate
	switch {
	case c.Image != img || env[clusterjoin.EnvAgentImage] != img:
		t.Errorf("image %q, $%s %q, want both %q", c.Image, clusterjoin.EnvAgentImage, env[clusterjoin.EnvAgentImage], img)
	case ru == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.IntValue() != 1:
		t.Errorf("strategy %+v: a new agent must start beside the old one (maxUnavailable 0)", d.Spec.Strategy)
	case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		env[clusterjoin.EnvHealthProbeAddress] != ":"+c.ReadinessProbe.HTTPGet.Port.String():
		t.Errorf("readiness probe %+v with $%s %q, want /readyz (checked in) on that port", c.ReadinessProbe, clusterjoin.EnvHealthProbeAddress, env[clusterjoin.EnvHealthProbeAddress])
	case strings.Contains(strings.Join(c.Args, " "), "health-probe"):
		t.Errorf("args %v: a flag older agents do not know would stop them from starting after a rollback", c.Args)
	case d.Name != clusterjoin.AgentDeployment || d.Namespace != clusterjoin.SystemNamespace:
		t.Errorf("Deployment %s/%s", d.Namespace, d.Name)
	}
}

// The agent prefers control-plane nodes (a site whose workers go dark
// still reports through it) and tolerates their NoSchedule taint, but
// does not require them: imported clusters without such labels run it
// anywhere.
func TestAgentPrefersControlPlaneNodes(t *testing.T) {
	spec := agentPodSpec(t)
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil {
		t.Fatalf("no node affinity: %+v", spec.Affinity)
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		t.Errorf("required node affinity %+v: clusters without control-plane labels could not run the agent", na.RequiredDuringSchedulingIgnoredDuringExecution)
	}
	prefers := false
	for _, p := range na.PreferredDuringSchedulingIgnoredDuringExecution {
		for _, e := range p.Preference.MatchExpressions {
			if e.Key == "node-role.kubernetes.io/control-plane" && e.Operator == corev1.NodeSelectorOpExists && p.Weight > 0 {
				prefers = true
			}
		}
	}
	if !prefers {
		t.Errorf("preferred affinity %+v: want node-role.kubernetes.io/control-plane Exists", na.PreferredDuringSchedulingIgnoredDuringExecution)
	}
	taint := corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}
	tolerated := false
	for _, tol := range spec.Tolerations {
		if tol.ToleratesTaint(klog.Background(), &taint, false) {
			tolerated = true
		}
	}
	if !tolerated {
		t.Errorf("tolerations %+v do not tolerate %v", spec.Tolerations, taint)
	}
}

// The agent leaves a dead node after 30 s, not Kubernetes' default 5
// minutes: while its node is unreachable the manager cannot see the
// cluster at all.
func TestAgentLeavesADeadNodeQuickly(t *testing.T) {
	spec := agentPodSpec(t)
	for _, key := range []string{corev1.TaintNodeUnreachable, corev1.TaintNodeNotReady} {
		taint := corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute}
		var seconds *int64
		for _, tol := range spec.Tolerations {
			if tol.ToleratesTaint(klog.Background(), &taint, false) {
				seconds = tol.TolerationSeconds
			}
		}
		if seconds == nil || *seconds != 30 {
			t.Errorf("toleration of %s: %v seconds, want 30 (without one Kubernetes adds 300)", key, seconds)
		}
	}
}

// agentPodSpec is the Pod template of the agent's Deployment, parsed
// strictly.
func agentPodSpec(t *testing.T) corev1.PodSpec {
	t.Helper()
	dep, err := AgentDeployment("registry.local/edgefleet-agent:v2")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(dep, &d); err != nil {
		t.Fatalf("Deployment does not parse strictly: %v\n%s", err, dep)
	}
	return d.Spec.Template.Spec
}
