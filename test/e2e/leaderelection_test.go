package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

func leaseHolder(ctx context.Context, c client.Client) string {
	var lease coordinationv1.Lease
	if err := c.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: server.LeaderElectionID}, &lease); err != nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// TestTwoReplicasOnExternalClusterElectOneLeader runs two managers with
// --kubeconfig against one dev cluster: both serve, they share one CA, one
// holds the lease, and when it stops the other takes over.
func TestTwoReplicasOnExternalClusterElectOneLeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	kubeconfig := cl.KubeconfigPath()

	a := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: kubeconfig})
	b := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: kubeconfig})
	if a.CAChecksum != b.CAChecksum {
		t.Fatalf("replicas serve different CAs (%s, %s): agents could not pin one", a.CAChecksum, b.CAChecksum)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := cl.Client.Get(ctx, client.ObjectKey{Name: "bundles.fleet.edgefleet.io"}, &crd); err != nil {
		t.Fatalf("CRDs not installed on the external cluster: %v", err)
	}

	var holder string
	waitFor(t, 60*time.Second, "a leader", func() bool {
		holder = leaseHolder(ctx, cl.Client)
		return holder != ""
	})
	leader, follower := a, b
	if !strings.Contains(b.Output(), "Became the leader") {
		if !strings.Contains(a.Output(), "Became the leader") {
			t.Fatalf("lease held by %q but neither manager logged acquiring it", holder)
		}
	} else {
		leader, follower = b, a
	}
	if strings.Contains(follower.Output(), "Became the leader") {
		t.Fatal("both replicas acquired the lease")
	}

	leader.Signal(syscall.SIGTERM)
	if code, err := leader.Wait(45 * time.Second); err != nil || code != 0 {
		t.Fatalf("leader stop: exit %d, %v", code, err)
	}
	waitFor(t, 60*time.Second, "the follower to take over", func() bool {
		return strings.Contains(follower.Output(), "Became the leader") && leaseHolder(ctx, cl.Client) != holder
	})
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
