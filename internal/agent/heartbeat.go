package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/version"
)

// heartbeat keeps the Cluster's status.agent fresh so the manager sees the
// agent is connected.
type heartbeat struct {
	client      client.Client
	kubeVersion string
	opts        Options
}

func (h *heartbeat) run(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithValues("cluster", h.opts.ClusterNamespace+"/"+h.opts.ClusterName)
	t := time.NewTicker(h.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := h.beat(ctx); err != nil {
			log.Error(err, "Heartbeat failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *heartbeat) beat(ctx context.Context) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"agent": fleetv1.AgentStatus{
		LastSeen:          metav1.Now(),
		Version:           version.Version,
		KubernetesVersion: h.kubeVersion,
	}}})
	if err != nil {
		return err
	}
	c := &fleetv1.Cluster{}
	c.Namespace, c.Name = h.opts.ClusterNamespace, h.opts.ClusterName
	if err := h.client.Status().Patch(ctx, c, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("patching Cluster %s/%s status: %w", c.Namespace, c.Name, err)
	}
	return nil
}
