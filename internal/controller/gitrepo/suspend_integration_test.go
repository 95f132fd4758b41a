package gitrepo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/gitrepo"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/test/gitserver"
)

// TestSuspendStopsSyncing: a suspended GitRepo is neither fetched nor
// written; resuming syncs the current commit at once.
func TestSuspendStopsSyncing(t *testing.T) {
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&gitrepo.Reconciler{WorkDir: t.TempDir(), AllowLocalRepos: true, StatusBatch: 100 * time.Millisecond}).SetupWithManager(m)
	})
	ctx := context.Background()
	repo := gitserver.NewRepo(t, t.TempDir(), "fleet.git")
	cm := func(v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  v: \"" + v + "\"\n"
	}
	first := repo.Commit(t, "main", "first", gitserver.Files(map[string]string{"app/cm.yaml": cm("1")}))

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}}); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "fleet", Name: "apps"}
	gr := &fleetv1.GitRepo{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec: fleetv1.GitRepoSpec{
			Repo: repo.FileURL(), Branch: "main", Paths: []string{"app"},
			PollingInterval: &metav1.Duration{Duration: time.Second}, Suspend: true,
		},
	}
	if err := c.Create(ctx, gr); err != nil {
		t.Fatal(err)
	}
	bundles := func() int {
		var l fleetv1.BundleList
		if err := c.List(ctx, &l, client.InNamespace("fleet"), client.MatchingLabels{fleetv1.RepoNameLabel: "apps"}); err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	commitIs := func(want string) func() error {
		return func() error {
			var g fleetv1.GitRepo
			if err := c.Get(ctx, key, &g); err != nil {
				return err
			}
			if g.Status.Commit != want {
				return fmt.Errorf("status.commit %q, want %q", g.Status.Commit, want)
			}
			return nil
		}
	}
	setSuspend := func(v bool) {
		t.Helper()
		var g fleetv1.GitRepo
		if err := c.Get(ctx, key, &g); err != nil {
			t.Fatal(err)
		}
		orig := g.DeepCopy()
		g.Spec.Suspend = v
		if err := c.Patch(ctx, &g, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
	}

	// Suspended from the start: three polling intervals pass with nothing
	// fetched or written (the finalizer is still added, so deletion works).
	ctrltest.Eventually(t, 20*time.Second, func() error {
		var g fleetv1.GitRepo
		if err := c.Get(ctx, key, &g); err != nil {
			return err
		}
		if len(g.Finalizers) == 0 {
			return fmt.Errorf("no finalizer yet")
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	if err := commitIs("")(); err != nil || bundles() != 0 {
		t.Fatalf("suspended GitRepo synced: %v, %d bundles", err, bundles())
	}

	setSuspend(false)
	ctrltest.Eventually(t, 20*time.Second, commitIs(first))
	if n := bundles(); n != 1 {
		t.Fatalf("%d bundles after resuming, want 1", n)
	}

	// Suspended again: a new commit is not picked up until resumed.
	setSuspend(true)
	time.Sleep(500 * time.Millisecond) // let the suspended spec reach the controller's cache
	second := repo.Commit(t, "main", "second", gitserver.Files(map[string]string{"app/cm.yaml": cm("2")}))
	time.Sleep(3 * time.Second)
	if err := commitIs(first)(); err != nil {
		t.Fatalf("suspended GitRepo picked up a new commit: %v", err)
	}
	setSuspend(false)
	ctrltest.Eventually(t, 20*time.Second, commitIs(second))
}
