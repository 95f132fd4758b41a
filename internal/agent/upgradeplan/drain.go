package upgradeplan

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/kube/drain"
)

// drainResult is how far a drain got.
type drainResult struct {
	// done: no pod left to wait for.
	done bool
	// waiting names what is still there (an evicted pod terminating, or an
	// eviction refused by a PodDisruptionBudget) for the status.
	waiting string
}

// drainRefused is a drain that cannot succeed without a spec change (a pod
// kubectl drain would refuse too); the node fails.
type drainRefused struct{ msg string }

func (e *drainRefused) Error() string { return e.msg }

// drainNode evicts the node's pods as `kubectl drain` does with d's
// options (internal/kube/drain, shared with the manager's drains); this
// controller's own pods stay.
func drainNode(ctx context.Context, c client.Client, reader client.Reader, node string, d *upgradev1.DrainSpec, now time.Time) (drainResult, error) {
	o, err := drain.FromSpec(d)
	if err != nil {
		return drainResult{}, &drainRefused{err.Error()}
	}
	o.Skip = func(p *corev1.Pod) bool { return p.Labels[LabelController] != "" }
	res, err := drain.Step(ctx, drain.ControllerRuntime(c, reader), node, o, now)
	var refused *drain.RefusedError
	if errors.As(err, &refused) {
		return drainResult{}, &drainRefused{refused.Error()}
	}
	if err != nil {
		return drainResult{}, err
	}
	return drainResult{done: res.Done, waiting: res.String()}, nil
}
