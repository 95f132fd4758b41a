package e2e

import (
	"context"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/config/crd"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestManagerUpgradesOutdatedCRDs installs an older shape of the Bundle CRD
// (no printer columns, a field missing from the schema) created by another
// field manager, then starts the manager on that cluster and checks the CRD
// now matches the embedded one.
func TestManagerUpgradesOutdatedCRDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]

	all, err := crd.CustomResourceDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	var want *apiextensionsv1.CustomResourceDefinition
	for _, c := range all {
		if c.Name == "bundles.fleet.edgefleet.io" {
			want = c
		}
	}
	if want == nil {
		t.Fatal("bundles CRD not embedded")
	}
	old := want.DeepCopy()
	old.Spec.Versions[0].AdditionalPrinterColumns = nil
	spec := old.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	delete(spec.Properties, "rolloutStrategy")
	old.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
	if err := cl.Client.Create(ctx, old); err != nil {
		t.Fatal(err)
	}

	harness.StartManager(t, harness.ManagerOptions{Kubeconfig: cl.KubeconfigPath()})

	var got apiextensionsv1.CustomResourceDefinition
	if err := cl.Client.Get(ctx, client.ObjectKey{Name: want.Name}, &got); err != nil {
		t.Fatal(err)
	}
	if n := len(got.Spec.Versions[0].AdditionalPrinterColumns); n != len(want.Spec.Versions[0].AdditionalPrinterColumns) || n == 0 {
		t.Fatalf("printer columns not upgraded: %d, want %d", n, len(want.Spec.Versions[0].AdditionalPrinterColumns))
	}
	if _, ok := got.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["rolloutStrategy"]; !ok {
		t.Fatal("schema not upgraded: spec.rolloutStrategy still missing")
	}
}
