package clusterns_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/test/harness"
)

func TestName(t *testing.T) {
	tests := []struct {
		ns, name, wantPrefix string
	}{
		{"fleet-default", "local", "cluster-fleet-default-local-"},
		{"fleet", "My.Cluster", "cluster-fleet-my-cluster-"},
		{"fleet", strings.Repeat("x", 200), "cluster-fleet-xxxx"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := clusterns.Name(tt.ns, tt.name)
		if !strings.HasPrefix(got, tt.wantPrefix) {
			t.Errorf("clusterns.Name(%q, %q) = %q, want prefix %q", tt.ns, tt.name, got, tt.wantPrefix)
		}
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("clusterns.Name(%q, %q) = %q is not a valid namespace name: %v", tt.ns, tt.name, got, errs)
		}
		if got != clusterns.Name(tt.ns, tt.name) {
			t.Error("NamespaceName is not deterministic")
		}
		seen[got] = true
	}
	// Names that read the same after cleaning still differ by hash.
	if clusterns.Name("a-b", "c") == clusterns.Name("a", "b-c") {
		t.Error("a-b/c and a/b-c share a namespace")
	}
}

func TestEnsure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver; skipped with -short")
	}
	c := harness.StartClusters(t, 1, harness.ClusterOptions{})[0].Client
	ctx := context.Background()
	cluster := func(name string) *fleetv1.Cluster {
		return &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: name}}
	}
	labelled := func(cl *fleetv1.Cluster, ownerName string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterns.Name(cl.Namespace, cl.Name), Labels: map[string]string{
			fleetv1.ClusterNameLabel: ownerName, fleetv1.ClusterNamespaceLabel: cl.Namespace,
		}}}
	}
	tests := []struct {
		name    string
		cluster *fleetv1.Cluster
		// setup prepares what exists before Ensure.
		setup   func(*fleetv1.Cluster)
		wantErr error
	}{
		{name: "absent namespace is created", cluster: cluster("new")},
		{name: "the cluster's namespace is reused", cluster: cluster("again"), setup: func(cl *fleetv1.Cluster) {
			if _, err := clusterns.Ensure(ctx, c, cl); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a foreign namespace of that name is refused", cluster: cluster("squatted"), setup: func(cl *fleetv1.Cluster) {
			if err := c.Create(ctx, labelled(cl, "someone-else")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: clusterns.ErrNotOwned},
		{name: "a terminating namespace is waited for", cluster: cluster("recreated"), setup: func(cl *fleetv1.Cluster) {
			// No namespace controller runs: the namespace stays terminating.
			ns := labelled(cl, cl.Name)
			if err := c.Create(ctx, ns); err != nil {
				t.Fatal(err)
			}
			if err := c.Delete(ctx, ns); err != nil {
				t.Fatal(err)
			}
		}, wantErr: clusterns.ErrTerminating},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(tt.cluster)
			}
			ns, err := clusterns.Ensure(ctx, c, tt.cluster)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Ensure = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := clusterns.Of(tt.cluster); ns.Name != want || !clusterns.Owns(ns, tt.cluster) || ns.Labels[fleetv1.ManagedLabel] != "true" {
				t.Fatalf("Ensure returned %s with labels %v, want %s labelled for the cluster", ns.Name, ns.Labels, want)
			}
		})
	}
}
