package apply

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Inventory records, on the downstream cluster, what a BundleDeployment
// deployed there, so that objects dropped from the bundle are pruned and
// deleting the BundleDeployment removes everything even after the agent
// restarted. It is a ConfigMap in clusterjoin.SystemNamespace.
type Inventory struct {
	// Kind is how the bundle was deployed (render.Kind as a string).
	Kind string `json:"kind"`
	// Namespace is the bundle's default namespace on this cluster.
	Namespace string `json:"namespace,omitempty"`
	// ReleaseName is the Helm release (Helm bundles only), in Namespace.
	ReleaseName  string `json:"releaseName,omitempty"`
	DeploymentID string `json:"deploymentID,omitempty"`
	// Objects are the objects applied (raw YAML and Kustomize bundles).
	Objects []Ref `json:"objects,omitempty"`
}

const inventoryKey = "inventory.json"

// InventoryName is the name of the inventory ConfigMap of BundleDeployment
// namespace/name.
func InventoryName(namespace, name string) string {
	return "bd." + LabelValue(namespace, name)
}

// ReadInventory returns the inventory of t's BundleDeployment, or nil if
// there is none.
func ReadInventory(ctx context.Context, c client.Client, namespace, name string) (*Inventory, error) {
	cm := &corev1.ConfigMap{}
	err := c.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: InventoryName(namespace, name)}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading inventory %s/%s: %w", clusterjoin.SystemNamespace, InventoryName(namespace, name), err)
	}
	inv := &Inventory{}
	if err := json.Unmarshal([]byte(cm.Data[inventoryKey]), inv); err != nil {
		return nil, fmt.Errorf("inventory ConfigMap %s/%s is corrupt (delete it and the agent re-applies the bundle): %w", clusterjoin.SystemNamespace, cm.Name, err)
	}
	return inv, nil
}

// WriteInventory stores inv for BundleDeployment namespace/name.
func WriteInventory(ctx context.Context, c client.Client, namespace, name string, inv *Inventory) error {
	if err := ensureSystemNamespace(ctx, c); err != nil {
		return err
	}
	data, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("encoding inventory: %w", err)
	}
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: clusterjoin.SystemNamespace,
			Name:      InventoryName(namespace, name),
			Labels:    map[string]string{fleetv1.BundleDeploymentLabel: LabelValue(namespace, name)},
			Annotations: map[string]string{
				"fleet.edgefleet.io/bundledeployment-namespace": namespace,
				"fleet.edgefleet.io/bundledeployment-name":      name,
			},
		},
		Data: map[string]string{inventoryKey: string(data)},
	}
	obj, err := toUnstructured(cm)
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing inventory %s/%s: %w", clusterjoin.SystemNamespace, cm.Name, err)
	}
	return nil
}

// DeleteInventory removes the inventory of BundleDeployment namespace/name.
func DeleteInventory(ctx context.Context, c client.Client, namespace, name string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: InventoryName(namespace, name)}}
	if err := c.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting inventory %s/%s: %w", clusterjoin.SystemNamespace, cm.Name, err)
	}
	return nil
}

func ensureSystemNamespace(ctx context.Context, c client.Client) error {
	ns := &corev1.Namespace{}
	err := c.Get(ctx, client.ObjectKey{Name: clusterjoin.SystemNamespace}, ns)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading namespace %s: %w", clusterjoin.SystemNamespace, err)
	}
	ns.Name = clusterjoin.SystemNamespace
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", clusterjoin.SystemNamespace, err)
	}
	return nil
}
