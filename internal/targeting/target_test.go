package targeting

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func values(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }

func helmValues(opts fleetv1.BundleDeploymentOptions) string {
	if opts.Helm == nil || opts.Helm.Values == nil {
		return ""
	}
	return string(opts.Helm.Values.Raw)
}

func TestTarget(t *testing.T) {
	dev := cluster("c-dev", map[string]string{"env": "dev"})
	prod := cluster("c-prod", map[string]string{"env": "prod"})
	edge := cluster("c-edge", map[string]string{"env": "edge"})
	base := fleetv1.BundleDeploymentOptions{DefaultNamespace: "app", Helm: &fleetv1.HelmOptions{Values: values(`{"replicas":1,"image":{"tag":"v1"}}`)}}
	all := fleetv1.BundleTarget{Name: "all", ClusterSelector: &metav1.LabelSelector{}}

	tests := []struct {
		name        string
		spec        fleetv1.BundleSpec
		cluster     *fleetv1.Cluster
		wantMatched bool
		wantTarget  string
		wantValues  string
		wantNS      string
	}{
		{
			name:    "no targets: nothing",
			spec:    fleetv1.BundleSpec{BundleDeploymentOptions: base},
			cluster: dev,
		},
		{
			name:        "first matching target wins and its options merge over the bundle's",
			spec:        fleetv1.BundleSpec{BundleDeploymentOptions: base, Targets: []fleetv1.BundleTarget{{Name: "dev", ClusterSelector: sel("env", "dev"), BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(`{"replicas":2}`)}}}, all}},
			cluster:     dev,
			wantMatched: true, wantTarget: "dev", wantValues: `{"image":{"tag":"v1"},"replicas":2}`, wantNS: "app",
		},
		{
			name:        "later target when the first does not match",
			spec:        fleetv1.BundleSpec{BundleDeploymentOptions: base, Targets: []fleetv1.BundleTarget{{Name: "dev", ClusterSelector: sel("env", "dev")}, all}},
			cluster:     prod,
			wantMatched: true, wantTarget: "all", wantValues: `{"replicas":1,"image":{"tag":"v1"}}`, wantNS: "app",
		},
		{
			name:    "doNotDeploy on the first matching target excludes even if a later one matches",
			spec:    fleetv1.BundleSpec{Targets: []fleetv1.BundleTarget{{ClusterSelector: sel("env", "prod"), DoNotDeploy: true}, all}},
			cluster: prod,
		},
		{
			name:        "unnamed targets are named target000...",
			spec:        fleetv1.BundleSpec{Targets: []fleetv1.BundleTarget{{ClusterName: "nope"}, {ClusterSelector: &metav1.LabelSelector{}}}},
			cluster:     dev,
			wantMatched: true, wantTarget: "target001",
		},
		{
			name: "customizations come first; restrictions are the allow-list",
			spec: fleetv1.BundleSpec{
				BundleDeploymentOptions: base,
				Targets: []fleetv1.BundleTarget{
					{Name: "prod-custom", ClusterSelector: sel("env", "prod"), BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Namespace: "prod-ns", Helm: &fleetv1.HelmOptions{Values: values(`{"replicas":5}`)}}},
					{Name: "dev-custom", ClusterSelector: sel("env", "dev"), BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(`{"replicas":2}`)}}},
					{Name: "gitrepo", ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"dev", "prod"}}}}},
				},
				TargetRestrictions: []fleetv1.BundleTargetRestriction{{Name: "gitrepo", ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"dev", "prod"}}}}}},
			},
			cluster:     prod,
			wantMatched: true, wantTarget: "gitrepo", wantValues: `{"image":{"tag":"v1"},"replicas":5}`, wantNS: "app",
		},
		{
			name: "a customization alone does not deploy",
			spec: fleetv1.BundleSpec{
				Targets: []fleetv1.BundleTarget{
					{Name: "edge-custom", ClusterSelector: sel("env", "edge")},
					{Name: "gitrepo", ClusterSelector: sel("env", "dev")},
				},
				TargetRestrictions: []fleetv1.BundleTargetRestriction{{Name: "gitrepo", ClusterSelector: sel("env", "dev")}},
			},
			cluster: edge,
		},
		{
			name: "restriction must also match the target",
			spec: fleetv1.BundleSpec{
				Targets:            []fleetv1.BundleTarget{all},
				TargetRestrictions: []fleetv1.BundleTargetRestriction{{Name: "devonly", ClusterSelector: sel("env", "dev")}},
			},
			cluster: prod,
		},
		{
			name: "customization doNotDeploy skips the cluster",
			spec: fleetv1.BundleSpec{
				Targets:            []fleetv1.BundleTarget{{ClusterSelector: sel("env", "prod"), DoNotDeploy: true}, all},
				TargetRestrictions: []fleetv1.BundleTargetRestriction{{ClusterSelector: &metav1.LabelSelector{}}},
			},
			cluster: prod,
		},
		{
			name: "customization replaces the target's own options",
			spec: fleetv1.BundleSpec{
				Targets: []fleetv1.BundleTarget{
					{ClusterSelector: sel("env", "dev"), BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Namespace: "-"}},
					{Name: "all", ClusterSelector: &metav1.LabelSelector{}, BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Namespace: "from-target"}},
				},
				TargetRestrictions:      []fleetv1.BundleTargetRestriction{{ClusterSelector: &metav1.LabelSelector{}}},
				BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Namespace: "bundle-ns"},
			},
			cluster:     dev,
			wantMatched: true, wantTarget: "all", wantNS: "",
		},
		{
			name:    "invalid selector matches nothing",
			spec:    fleetv1.BundleSpec{Targets: []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Nope"}}}}}},
			cluster: dev,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "b"}, Spec: tt.spec}
			opts, name, matched := Target(b, tt.cluster, nil)
			if matched != tt.wantMatched || name != tt.wantTarget {
				t.Fatalf("Target = (%q, %v), want (%q, %v)", name, matched, tt.wantTarget, tt.wantMatched)
			}
			if !matched {
				return
			}
			if got := helmValues(opts); tt.wantValues != "" && got != tt.wantValues {
				t.Errorf("values = %s, want %s", got, tt.wantValues)
			}
			if opts.Namespace != tt.wantNS && tt.wantNS != "app" {
				t.Errorf("namespace = %q, want %q", opts.Namespace, tt.wantNS)
			}
			if tt.wantNS == "app" && opts.DefaultNamespace != "app" {
				t.Errorf("defaultNamespace = %q, want app", opts.DefaultNamespace)
			}
		})
	}
}

func TestTargetRestrictionAndTargetThroughSameGroup(t *testing.T) {
	c := cluster("c1", map[string]string{"a": "1", "b": "1"})
	ga := group("ga", map[string]string{"kind": "a"}, sel("a", "1"))
	gb := group("gb", map[string]string{"kind": "b"}, sel("b", "1"))
	b := &fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "b"}, Spec: fleetv1.BundleSpec{
		Targets:            []fleetv1.BundleTarget{{ClusterGroup: "ga"}},
		TargetRestrictions: []fleetv1.BundleTargetRestriction{{ClusterGroup: "gb"}},
	}}
	if _, _, ok := Target(b, c, []*fleetv1.ClusterGroup{ga, gb}); ok {
		t.Error("restriction on group gb allowed a target matched through group ga; Fleet evaluates both per group")
	}
	b.Spec.TargetRestrictions[0].ClusterGroup = "ga"
	if _, _, ok := Target(b, c, []*fleetv1.ClusterGroup{ga, gb}); !ok {
		t.Error("target and restriction on the same group did not match")
	}
}

func TestNewBundleMatcherNamesInvalidEntry(t *testing.T) {
	b := &fleetv1.Bundle{Spec: fleetv1.BundleSpec{Targets: []fleetv1.BundleTarget{
		{Name: "ok", ClusterSelector: &metav1.LabelSelector{}},
		{Name: "broken", ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}},
	}}}
	_, err := NewBundleMatcher(b)
	if err == nil || !strings.Contains(err.Error(), `spec.targets[1] ("broken")`) {
		t.Fatalf("error = %v, want it to name spec.targets[1] (\"broken\")", err)
	}
}

func TestCustomizationCount(t *testing.T) {
	tests := []struct{ targets, restrictions, want int }{{3, 0, 0}, {3, 1, 2}, {2, 2, 0}, {1, 3, 0}}
	for _, tt := range tests {
		b := &fleetv1.Bundle{Spec: fleetv1.BundleSpec{Targets: make([]fleetv1.BundleTarget, tt.targets), TargetRestrictions: make([]fleetv1.BundleTargetRestriction, tt.restrictions)}}
		if got := CustomizationCount(b); got != tt.want {
			t.Errorf("CustomizationCount(%d targets, %d restrictions) = %d, want %d", tt.targets, tt.restrictions, got, tt.want)
		}
	}
}

// TestTargetCustomizationModeAllMatches: with AllMatches every matching
// customization is merged in order and any doNotDeploy wins; FirstMatch
// (the default) stops at the first.
func TestTargetCustomizationModeAllMatches(t *testing.T) {
	eu := cluster("c-eu", map[string]string{"env": "prod", "region": "eu"})
	us := cluster("c-us", map[string]string{"env": "prod", "region": "us"})
	lab := cluster("c-lab", map[string]string{"env": "lab", "region": "eu"})
	custom := []fleetv1.BundleTarget{
		{Name: "prod", ClusterSelector: sel("env", "prod"), BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(`{"replicas":3}`)}}},
		{Name: "eu", ClusterSelector: sel("region", "eu"), BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Namespace: "eu", Helm: &fleetv1.HelmOptions{Values: values(`{"zone":"eu"}`)}}},
		{Name: "lab", ClusterSelector: sel("env", "lab"), DoNotDeploy: true},
	}
	spec := fleetv1.BundleSpec{
		BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{Helm: &fleetv1.HelmOptions{Values: values(`{"replicas":1}`)}},
		Targets:                 append(append([]fleetv1.BundleTarget(nil), custom...), fleetv1.BundleTarget{Name: "all", ClusterSelector: &metav1.LabelSelector{}}),
		TargetRestrictions:      []fleetv1.BundleTargetRestriction{{Name: "all", ClusterSelector: &metav1.LabelSelector{}}},
	}
	for _, tc := range []struct {
		mode    fleetv1.TargetCustomizationMode
		cluster *fleetv1.Cluster
		matched bool
		values  string
		ns      string
	}{
		{"", eu, true, `{"replicas":3}`, ""},
		{fleetv1.FirstMatch, eu, true, `{"replicas":3}`, ""},
		{fleetv1.AllMatches, eu, true, `{"replicas":3,"zone":"eu"}`, "eu"},
		{fleetv1.AllMatches, us, true, `{"replicas":3}`, ""},
		{"", lab, true, `{"replicas":1,"zone":"eu"}`, "eu"},
		{fleetv1.AllMatches, lab, false, "", ""},
	} {
		s := spec
		s.TargetCustomizationMode = tc.mode
		opts, _, ok := Target(&fleetv1.Bundle{Spec: s}, tc.cluster, nil)
		if ok != tc.matched || (ok && (helmValues(opts) != tc.values || opts.Namespace != tc.ns)) {
			t.Errorf("mode %q cluster %s: matched %v values %s namespace %q, want %v %s %q", tc.mode, tc.cluster.Name, ok, helmValues(opts), opts.Namespace, tc.matched, tc.values, tc.ns)
		}
	}
}
