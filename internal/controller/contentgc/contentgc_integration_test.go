package contentgc_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/controller/contentgc"
	"github.com/edgefleet/edgefleet/test/harness"
)

func manifest(name, data string) *content.Manifest {
	return &content.Manifest{Resources: []fleetv1.BundleResource{{Name: name, Content: data}}}
}

func TestCollect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver; skipped with -short")
	}
	c := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0].Client
	ctx := context.Background()
	store := func(m *content.Manifest) string {
		id, err := content.Store(ctx, c, m)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	random := make([]byte, 1200<<10) // incompressible: stored in chunks
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	byBundle := store(manifest("a.yaml", "a"))
	byDeployment := store(manifest("b.yaml", "b"))
	inline := manifest("c.yaml", "c")
	inlineID := store(inline)
	orphan := store(manifest("big.bin", base64.StdEncoding.EncodeToString(random)))
	orphanNames, err := content.Names(ctx, c, orphan)
	if err != nil || len(orphanNames) < 2 {
		t.Fatalf("orphan content is not chunked: %v %v", orphanNames, err)
	}
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	bigLive := manifest("live.bin", base64.StdEncoding.EncodeToString(random))
	bigLiveID := store(bigLive)
	bigLiveNames, err := content.Names(ctx, c, bigLiveID)
	if err != nil || len(bigLiveNames) < 2 {
		t.Fatalf("live content is not chunked: %v %v", bigLiveNames, err)
	}
	// What a Store that failed before writing its manifest leaves behind.
	strayData := []byte("a chunk whose manifest was never written")
	straySum := sha256.Sum256(strayData)
	stray := &fleetv1.Content{ObjectMeta: metav1.ObjectMeta{Name: "c-" + hex.EncodeToString(straySum[:])}, Data: strayData, SHA256Sum: hex.EncodeToString(straySum[:])}
	if err := c.Create(ctx, stray); err != nil {
		t.Fatal(err)
	}

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*fleetv1.Bundle{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "by-id"}, Spec: fleetv1.BundleSpec{ContentsID: byBundle}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "inline"}, Spec: fleetv1.BundleSpec{Resources: inline.Resources}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "big"}, Spec: fleetv1.BundleSpec{ContentsID: bigLiveID}},
	} {
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "gone-bundle"},
		Spec: fleetv1.BundleDeploymentSpec{DeploymentID: byDeployment + ":abc"}}); err != nil {
		t.Fatal(err)
	}

	gc := &contentgc.Reconciler{Client: c, APIReader: c}
	if n, err := gc.Collect(ctx); err != nil || n != 0 {
		t.Fatalf("young contents: deleted %d (%v), want none", n, err)
	}
	gc.Now = func() time.Time { return time.Now().Add(contentgc.DefaultMinAge + time.Minute) }
	n, err := gc.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(orphanNames)+1 {
		t.Errorf("deleted %d contents, want %d (the orphan, its chunks and the stray chunk)", n, len(orphanNames)+1)
	}
	exists := func(name string) bool {
		err := c.Get(ctx, types.NamespacedName{Name: name}, &fleetv1.Content{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, name := range append(orphanNames, stray.Name) {
		if exists(name) {
			t.Errorf("unreferenced %s survived", name)
		}
	}
	for _, id := range []string{byBundle, byDeployment, inlineID, bigLiveID} {
		if !exists(id) {
			t.Errorf("referenced content %s was deleted", id)
		}
		if _, err := content.Load(ctx, c, id); err != nil {
			t.Errorf("referenced content %s no longer loads: %v", id, err)
		}
	}
}
