package content_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/test/harness"
)

func randomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n*3/4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestStoreLoadDedupAndChunking(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	ctx := context.Background()
	c := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0].Client

	small := &content.Manifest{Resources: []fleetv1.BundleResource{
		{Name: "b.yaml", Content: "kind: ConfigMap\n"},
		{Name: "a.yaml", Content: "kind: Secret\n"},
	}}
	// Incompressible data: 20 MiB of manifests, far beyond one object.
	var big content.Manifest
	for i := range 20 {
		big.Resources = append(big.Resources, fleetv1.BundleResource{Name: fmt.Sprintf("cm-%02d.yaml", i), Content: randomText(t, 1<<20)})
	}

	tests := []struct {
		name       string
		manifest   *content.Manifest
		wantChunks bool
	}{
		{name: "small manifest is one object", manifest: small},
		{name: "20 MiB manifest is chunked below the etcd limit", manifest: &big, wantChunks: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := content.Store(ctx, c, tt.manifest)
			if err != nil {
				t.Fatal(err)
			}
			again, err := content.Store(ctx, c, tt.manifest)
			if err != nil || again != id {
				t.Fatalf("second store: id %s, %v; want the same id %s", again, err, id)
			}
			var top fleetv1.Content
			if err := c.Get(ctx, client.ObjectKey{Name: id}, &top); err != nil {
				t.Fatal(err)
			}
			if got := len(top.Chunks) > 0; got != tt.wantChunks {
				t.Fatalf("chunked = %v, want %v", got, tt.wantChunks)
			}
			got, err := content.Load(ctx, c, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Resources) != len(tt.manifest.Resources) {
				t.Fatalf("loaded %d resources, want %d", len(got.Resources), len(tt.manifest.Resources))
			}
			want := map[string]string{}
			for _, r := range tt.manifest.Resources {
				want[r.Name] = r.Content
			}
			for _, r := range got.Resources {
				if want[r.Name] != r.Content {
					t.Fatalf("resource %s changed in storage", r.Name)
				}
			}
		})
	}

	// Order of resources does not change the ID: the same files are the same content.
	reordered := &content.Manifest{Resources: []fleetv1.BundleResource{small.Resources[1], small.Resources[0]}}
	id1, _ := content.Store(ctx, c, small)
	id2, _ := content.Store(ctx, c, reordered)
	if id1 != id2 {
		t.Fatalf("same files in another order gave another ID: %s vs %s", id1, id2)
	}

	// A tampered chunk is detected, not deployed.
	bigID, _ := content.Store(ctx, c, &big)
	var top fleetv1.Content
	if err := c.Get(ctx, client.ObjectKey{Name: bigID}, &top); err != nil {
		t.Fatal(err)
	}
	var chunk fleetv1.Content
	if err := c.Get(ctx, client.ObjectKey{Name: top.Chunks[0]}, &chunk); err != nil {
		t.Fatal(err)
	}
	chunk.Data[10] ^= 0xff
	if err := c.Update(ctx, &chunk); err != nil {
		t.Fatal(err)
	}
	if _, err := content.Load(ctx, c, bigID); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("tampered chunk: got %v, want a corruption error", err)
	}
}
