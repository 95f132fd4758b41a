package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/version"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// heartbeat renews the agent's heartbeat Lease in its namespace on the
// manager, which turns it into the Cluster's status.agent and Connected
// condition. The agent has no right on the Cluster's status: its Lease is
// the one object it reports liveness through.
type heartbeat struct {
	client      client.Client
	kubeVersion string
	image       string
	opts        Options
	// lastOK is the Unix nanoseconds of the last successful beat.
	lastOK atomic.Int64
}

// ready answers the readiness probe: the manager accepted a heartbeat
// within three intervals.
func (h *heartbeat) ready(*http.Request) error {
	last := h.lastOK.Load()
	if last == 0 {
		return errors.New("no heartbeat has reached the manager yet")
	}
	if age := time.Since(time.Unix(0, last)); age > 3*h.opts.HeartbeatInterval {
		return fmt.Errorf("the last heartbeat reached the manager %s ago", age.Round(time.Second))
	}
	return nil
}

func (h *heartbeat) run(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithValues("Lease", klog.KRef(h.opts.Namespace, clusterjoin.HeartbeatLease))
	t := time.NewTicker(h.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := h.beat(ctx); err != nil {
			log.Error(err, "Heartbeat failed")
		} else {
			h.lastOK.Store(time.Now().UnixNano())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// beat patches the Lease (no read first: the agent's credential may get and
// update this one Lease, not list or watch Leases). A Lease that does not
// exist yet is created, which works only with a manager kubeconfig that may
// create Leases; the manager creates it for registered agents.
func (h *heartbeat) beat(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	holder := clusterjoin.HeartbeatLease
	if h.opts.ClusterName != "" {
		holder = h.opts.ClusterNamespace + "/" + h.opts.ClusterName
	}
	secs := int32(max(3*h.opts.HeartbeatInterval/time.Second, 1))
	annotations := map[string]string{
		clusterjoin.AnnotationAgentVersion:      version.Version,
		clusterjoin.AnnotationKubernetesVersion: h.kubeVersion,
	}
	if h.image != "" {
		annotations[clusterjoin.AnnotationAgentImage] = h.image
	}
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.opts.Namespace, Name: clusterjoin.HeartbeatLease, Annotations: annotations},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &now, LeaseDurationSeconds: &secs},
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": lease.Annotations}, "spec": lease.Spec})
	if err != nil {
		return err
	}
	err = h.client.Patch(ctx, lease.DeepCopy(), client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) {
		err = h.client.Create(ctx, lease)
	}
	if err != nil {
		return fmt.Errorf("renewing heartbeat Lease %s/%s: %w", h.opts.Namespace, clusterjoin.HeartbeatLease, err)
	}
	return nil
}
