package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
	"github.com/edgefleet/edgefleet/test/harness"
)

// The Create cluster part of TestWebUI: machines for the page's selector
// builder, the manager's release list, and what the browser must have made.

// uiReleasesFile is the --kubernetes-releases list the UI test's manager
// runs with: k3s versions are offered, rke2 and edgefleet are not listed.
func uiReleasesFile(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "releases.yaml")
	if err := os.WriteFile(f, []byte("k3s: [v1.33.5+k3s1, v1.34.1+k3s1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// uiShopMachines registers the machines the browser builds a cluster
// from, in fleetNS: shop-1 (server) and shop-2, shop-3 (workers) Ready;
// shop-4 a worker not Ready (never registered); shop-5 a worker held by
// another cluster, "warehouse", which adopts it (and waits for a control
// plane no machine matches). Their node agents are simulated (no
// edgefleet-node runs): each new plan is reported applied with a healthy
// kubelet probe.
func uiShopMachines(ctx context.Context, t *testing.T, c client.Client) {
	type machine struct {
		name, role string
		registered bool
		heldBy     string
	}
	machines := []machine{{"shop-1", "server", true, ""}, {"shop-2", "worker", true, ""}, {"shop-3", "worker", true, ""}, {"shop-4", "worker", false, ""}, {"shop-5", "worker", true, "warehouse"}}
	for i, m := range machines {
		l := map[string]string{"role": m.role, "site": "shop", "machines.edgefleet.io/manufacturer": "ACME", "machines.edgefleet.io/product-name": "Edge-1000", "machines.edgefleet.io/arch": "x86_64"}
		if m.heldBy != "" {
			l["held-by"] = m.heldBy
		}
		inv := &machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: m.name, Labels: l}}
		createAll(ctx, t, c, inv)
		if !m.registered {
			continue
		}
		s := machineregistration.PlanSecret(inv)
		if err := machineregistration.OwnFor(inv, s, c.Scheme()); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("192.0.2.%d", 21+i)
		waitFor(t, 10*time.Second, "machine "+m.name+" registered", func() bool {
			if c.Get(ctx, client.ObjectKeyFromObject(inv), inv) != nil {
				return false
			}
			inv.Status.Network = machinesv1.NetworkStatus{PrimaryAddress: addr, Addresses: []string{addr}}
			meta.SetStatusCondition(&inv.Status.Conditions, metav1.Condition{Type: machinesv1.RegisteredCondition, Status: metav1.ConditionTrue, Reason: "Registered", Message: "simulated"})
			return c.Status().Update(ctx, inv) == nil
		})
	}
	simCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); simulatePlansOf(simCtx, c, fleetNS, "shop-") }()
	t.Cleanup(func() { stop(); <-done })
	// A claim only holds while its cluster exists (formation releases the
	// claims of clusters that do not), so "warehouse" is a real one.
	warehouse := &provisioningv1.ProvisionedCluster{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: "warehouse"}, Spec: provisioningv1.ProvisionedClusterSpec{
		Distro: provisioningv1.DistroK3s, Version: "v1.34.1+k3s1",
		ControlPlane: provisioningv1.MachinePool{Replicas: 1, MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"site": "warehouse"}}},
		Workers: []provisioningv1.WorkerPool{{Name: "default", MachinePool: provisioningv1.MachinePool{Replicas: 1,
			MachineSelector: metav1.LabelSelector{MatchLabels: map[string]string{"held-by": "warehouse"}}}}},
	}}
	createAll(ctx, t, c, warehouse)
	waitFor(t, 60*time.Second, "shop-5 held by warehouse/default", func() bool {
		var inv machinesv1.MachineInventory
		return c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "shop-5"}, &inv) == nil &&
			inv.Labels[provisioningv1.ClusterLabel] == "warehouse" && inv.Labels[provisioningv1.PoolLabel] == "default"
	})
	waitFor(t, 60*time.Second, "shop-1..3 Ready", func() bool {
		for _, name := range []string{"shop-1", "shop-2", "shop-3"} {
			var inv machinesv1.MachineInventory
			if c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &inv) != nil || !meta.IsStatusConditionTrue(inv.Status.Conditions, machinesv1.ReadyCondition) {
				return false
			}
		}
		return true
	})
}

// simulatePlansOf plays the node agents of the machines of ns whose names
// start with prefix, as simulateFormationMachines does for a whole
// namespace (the UI test's other machines keep the plan state it gave them).
func simulatePlansOf(ctx context.Context, c client.Client, ns, prefix string) {
	applied := map[string]string{}
	for ctx.Err() == nil {
		var list corev1.SecretList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err == nil {
			for _, s := range list.Items {
				raw, ok := s.Data[nodeplan.SecretKey]
				if !ok || !strings.HasPrefix(s.Name, prefix) || s.Type != machineregistration.PlanSecretType {
					continue
				}
				sum := nodeplan.Checksum(raw)
				if applied[s.Name] == sum {
					continue
				}
				var inv machinesv1.MachineInventory
				if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: s.Name}, &inv) != nil {
					continue
				}
				inv.Status.Plan.AppliedChecksum = sum
				inv.Status.Plan.Probes = []machinesv1.PlanProbeStatus{{Name: render.ProbeKubelet, Healthy: true, SuccessCount: 1}}
				if c.Status().Update(ctx, &inv) == nil {
					applied[s.Name] = sum
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkUICreatedCluster checks what the Create cluster page made: the
// admin's ProvisionedCluster as the form described it, written by the UI,
// forming from the machines the preview named; nothing from the viewer.
func checkUICreatedCluster(ctx context.Context, t *testing.T, c client.Client) {
	var pc provisioningv1.ProvisionedCluster
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "shop"}, &pc); err != nil {
		t.Fatalf("the cluster created in the browser: %v", err)
	}
	s := pc.Spec
	if s.Distro != provisioningv1.DistroK3s || s.Version != "v1.33.5+k3s1" || s.ControlPlane.Replicas != 1 ||
		s.ControlPlane.MachineSelector.MatchLabels["role"] != "server" || s.ControlPlane.MachineSelector.MatchLabels["site"] != "shop" ||
		len(s.Workers) != 1 || s.Workers[0].Name != "default" || s.Workers[0].Replicas != 2 || s.Workers[0].NodeLabels["tier"] != "edge" ||
		len(s.Workers[0].NodeTaints) != 1 || s.Workers[0].NodeTaints[0].Key != "gpu" || string(s.Workers[0].NodeTaints[0].Effect) != "NoSchedule" ||
		len(s.Workers[0].MachineSelector.MatchExpressions) != 1 || s.Workers[0].MachineSelector.MatchExpressions[0].Operator != metav1.LabelSelectorOpIn {
		t.Errorf("the cluster's spec %+v is not what the form said", s)
	}
	if !slices.ContainsFunc(pc.ManagedFields, func(f metav1.ManagedFieldsEntry) bool { return f.Manager == "edgefleet-ui" }) {
		t.Errorf("ProvisionedCluster shop not written by the UI (field managers %v)", pc.ManagedFields)
	}
	var cms provisioningv1.ClusterMachineList
	if err := c.List(ctx, &cms, client.InNamespace(fleetNS), client.MatchingLabels{provisioningv1.ClusterLabel: "shop"}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range cms.Items {
		names = append(names, cm.Spec.InventoryName)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"shop-1", "shop-2", "shop-3"}) {
		t.Errorf("machines adopted %v, want shop-1..3 as the preview said", names)
	}
	var fleet fleetv1.ClusterList
	if err := c.List(ctx, &fleet, client.InNamespace(fleetNS), client.MatchingLabels{provisioningv1.ClusterLabel: "shop"}); err != nil || len(fleet.Items) != 1 ||
		pc.Status.FleetClusterRef == nil || pc.Status.FleetClusterRef.Name != fleet.Items[0].Name {
		t.Errorf("the fleet Cluster of shop: %v %d, status.fleetClusterRef %+v", err, len(fleet.Items), pc.Status.FleetClusterRef)
	}
	err := c.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "viewer-shop"}, &provisioningv1.ProvisionedCluster{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the viewer's cluster: %v, want none (the API refused it)", err)
	}
}

// registerUIShop registers the browser-made cluster "shop" with the
// manager as its fleet agent's first step would (POST /v1/register with
// the cluster's join token, from the import manifest; no agent runs after
// it, so the Cluster stays disconnected): the progress page then links to
// the fleet Cluster, and the Cluster to the progress. stop waits for it.
func registerUIShop(ctx context.Context, t *testing.T, m *harness.Manager) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			var tok corev1.Secret
			for m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: clusterregistration.TokenSecretName("shop-join")}, &tok) != nil {
				select {
				case <-ctx.Done():
					return nil // the browser never created shop: it fails by itself
				case <-time.After(200 * time.Millisecond):
				}
			}
			body, _ := json.Marshal(clusterjoin.RegisterRequest{Token: string(tok.Data[clusterjoin.KeyToken]), ClientID: "ui-shop"})
			res, err := m.HTTP.Post(m.URL+clusterjoin.RegisterPath, "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				msg, _ := io.ReadAll(res.Body)
				return fmt.Errorf("registering shop with its join token: %s %s", res.Status, msg)
			}
			return nil
		}()
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
