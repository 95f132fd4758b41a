package gitrepo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/gitrepo"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/test/gitserver"
)

// TestGitRepoRestrictions: a GitRepo that a GitRepoRestriction of its
// namespace does not allow is Stalled with Fleet's message and produces no
// Bundle; once the restriction allows it, it syncs with the restriction's
// defaults filled in, and a changed default re-renders its Bundles.
func TestGitRepoRestrictions(t *testing.T) {
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&gitrepo.Reconciler{WorkDir: t.TempDir(), AllowLocalRepos: true, StatusBatch: 100 * time.Millisecond}).SetupWithManager(m)
	})
	ctx := context.Background()
	repo := gitserver.NewRepo(t, t.TempDir(), "fleet.git")
	repo.Commit(t, "main", "first", gitserver.Files(map[string]string{
		"app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
	}))
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}); err != nil {
		t.Fatal(err)
	}
	grr := &fleetv1.GitRepoRestriction{
		ObjectMeta:             metav1.ObjectMeta{Namespace: "team-a", Name: "limits"},
		AllowedServiceAccounts: []string{"deployer"},
		DefaultServiceAccount:  "deployer",
	}
	if err := c.Create(ctx, grr); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "team-a", Name: "apps"}
	if err := c.Create(ctx, &fleetv1.GitRepo{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec:       fleetv1.GitRepoSpec{Repo: repo.FileURL(), Branch: "main", Paths: []string{"app"}, ServiceAccount: "cluster-admin"},
	}); err != nil {
		t.Fatal(err)
	}
	bundles := func() []fleetv1.Bundle {
		var l fleetv1.BundleList
		if err := c.List(ctx, &l, client.InNamespace("team-a"), client.MatchingLabels{fleetv1.RepoNameLabel: "apps"}); err != nil {
			t.Fatal(err)
		}
		return l.Items
	}

	t.Run("a disallowed serviceAccount is refused and nothing is written", func(t *testing.T) {
		ctrltest.Eventually(t, 20*time.Second, func() error {
			var g fleetv1.GitRepo
			if err := c.Get(ctx, key, &g); err != nil {
				return err
			}
			s := meta.FindStatusCondition(g.Status.Conditions, fleetv1.StalledCondition)
			if s == nil || s.Status != metav1.ConditionTrue || s.Reason != fleetv1.RestrictedReason {
				return fmt.Errorf("Stalled = %+v, want True/Restricted", s)
			}
			if want := "disallowed serviceAccount cluster-admin: cluster-admin not in allowed set [deployer]"; !strings.Contains(s.Message, want) {
				return fmt.Errorf("message %q, want %q", s.Message, want)
			}
			if r := meta.FindStatusCondition(g.Status.Conditions, fleetv1.ReadyCondition); r == nil || r.Status != metav1.ConditionFalse {
				return fmt.Errorf("Ready = %+v, want False", r)
			}
			return nil
		})
		time.Sleep(time.Second)
		if n := len(bundles()); n != 0 {
			t.Fatalf("%d bundles written for a refused GitRepo", n)
		}
	})

	t.Run("without serviceAccount the restriction's default applies", func(t *testing.T) {
		var g fleetv1.GitRepo
		if err := c.Get(ctx, key, &g); err != nil {
			t.Fatal(err)
		}
		orig := g.DeepCopy()
		g.Spec.ServiceAccount = ""
		if err := c.Patch(ctx, &g, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			bs := bundles()
			if len(bs) != 1 || bs[0].Spec.ServiceAccount != "deployer" {
				return fmt.Errorf("bundles %d, want one with serviceAccount deployer", len(bs))
			}
			var g fleetv1.GitRepo
			if err := c.Get(ctx, key, &g); err != nil {
				return err
			}
			if s := meta.FindStatusCondition(g.Status.Conditions, fleetv1.StalledCondition); s != nil {
				return fmt.Errorf("still Stalled: %s", s.Message)
			}
			return nil
		})
	})

	t.Run("a changed default re-renders", func(t *testing.T) {
		var r fleetv1.GitRepoRestriction
		if err := c.Get(ctx, client.ObjectKeyFromObject(grr), &r); err != nil {
			t.Fatal(err)
		}
		r.DefaultServiceAccount = "deployer-v2"
		if err := c.Update(ctx, &r); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			if bs := bundles(); len(bs) != 1 || bs[0].Spec.ServiceAccount != "deployer-v2" {
				return fmt.Errorf("bundle serviceAccount not updated yet")
			}
			return nil
		})
	})

	t.Run("a repo outside allowedRepoPatterns is refused when the restriction appears", func(t *testing.T) {
		if err := c.Create(ctx, &fleetv1.GitRepoRestriction{
			ObjectMeta:          metav1.ObjectMeta{Namespace: "team-a", Name: "repos"},
			AllowedRepoPatterns: []string{`^https://git\.example\.com/`},
		}); err != nil {
			t.Fatal(err)
		}
		ctrltest.Eventually(t, 20*time.Second, func() error {
			var g fleetv1.GitRepo
			if err := c.Get(ctx, key, &g); err != nil {
				return err
			}
			s := meta.FindStatusCondition(g.Status.Conditions, fleetv1.StalledCondition)
			if s == nil || s.Reason != fleetv1.RestrictedReason || !strings.Contains(s.Message, "disallowed repo "+repo.FileURL()) {
				return fmt.Errorf("Stalled = %+v, want Restricted naming the repo", s)
			}
			return nil
		})
	})
}
