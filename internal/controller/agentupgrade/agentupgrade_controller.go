// Package agentupgrade upgrades cluster agents Fleet-style: the manager
// owns one agent bundle per cluster (Bundle edgefleet-agent-<cluster> in
// the cluster's namespace) deploying the agent's Deployment with the
// manager's agent image, and moves clusters to a new image in waves, rolling
// a wave back when its new agents do not check in (docs/operations.md,
// "Upgrading the manager and agents").
package agentupgrade

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Labels and annotations of agent bundles.
const (
	// AgentBundleLabel marks a Bundle as a cluster's agent bundle; its value
	// is the cluster's name.
	AgentBundleLabel = "fleet.edgefleet.io/agent-bundle"
	// ImageAnnotation is the agent image the bundle deploys.
	ImageAnnotation = "fleet.edgefleet.io/agent-image"
	// PreviousImageAnnotation is the image before the wave that moved the
	// bundle to ImageAnnotation: what a rollback restores.
	PreviousImageAnnotation = "fleet.edgefleet.io/agent-previous-image"
	// StartedAnnotation is when that wave moved the bundle (RFC 3339).
	StartedAnnotation = "fleet.edgefleet.io/agent-upgrade-started"
	// CheckedInAnnotation is the image whose agent checked in after that
	// wave: the cluster's part of the wave is done.
	CheckedInAnnotation = "fleet.edgefleet.io/agent-checked-in"
)

// StateConfigMap in clusterjoin.SystemNamespace reports the upgrade (keys
// state, message, image, failedImage) and takes the operator's pause
// (key paused: "true").
const StateConfigMap = "edgefleet-agent-upgrade"

// Defaults of Settings.
const (
	DefaultWaveSize = 10
	DefaultTimeout  = 10 * time.Minute
)

// Settings are the manager's agent upgrade flags.
type Settings struct {
	// Enabled turns agent bundles on (--manage-agents).
	Enabled bool
	// Image is the manager's agent image (--agent-image).
	Image string
	// WaveSize is how many clusters are upgraded at once.
	WaveSize int
	// Timeout is how long a wave's new agents have to check in.
	Timeout time.Duration
	// Paused stops new waves (the state ConfigMap can pause too).
	Paused bool
}

// Reconciler runs the agent upgrade as one singleton reconcile over all
// clusters: waves are a fleet-wide decision.
type Reconciler struct {
	Client client.Client
	// Reader reads the state ConfigMap uncached (no informer on every
	// ConfigMap for one object); mgr.GetAPIReader() when nil.
	Reader   client.Reader
	Settings Settings
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

var singleton = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: clusterjoin.SystemNamespace, Name: StateConfigMap}}

// SetupWithManager registers the controller when agent bundles are on.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if !r.Settings.Enabled {
		return nil
	}
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Settings.WaveSize <= 0 {
		r.Settings.WaveSize = DefaultWaveSize
	}
	if r.Settings.Timeout <= 0 {
		r.Settings.Timeout = DefaultTimeout
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{singleton} })
	err := ctrl.NewControllerManagedBy(mgr).
		Named("agentupgrade").
		Watches(&fleetv1.Cluster{}, all).
		Watches(&fleetv1.Bundle{}, all, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetLabels()[AgentBundleLabel] != ""
		}))).
		Complete(r)
	if err != nil {
		return fmt.Errorf("creating agent upgrade controller: %w", err)
	}
	return nil
}

// Reconcile plans the next step over every cluster and carries it out.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var state corev1.ConfigMap
	if err := r.Reader.Get(ctx, singleton.NamespacedName, &state); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	var clusters fleetv1.ClusterList
	if err := r.Client.List(ctx, &clusters); err != nil {
		return ctrl.Result{}, err
	}
	var bundles fleetv1.BundleList
	if err := r.Client.List(ctx, &bundles, client.HasLabels{AgentBundleLabel}); err != nil {
		return ctrl.Result{}, err
	}
	byCluster := map[types.NamespacedName]*fleetv1.Bundle{}
	for i := range bundles.Items {
		b := &bundles.Items[i]
		byCluster[types.NamespacedName{Namespace: b.Namespace, Name: b.Labels[AgentBundleLabel]}] = b
	}
	members := make([]member, 0, len(clusters.Items))
	for i := range clusters.Items {
		c := &clusters.Items[i]
		if !c.DeletionTimestamp.IsZero() || c.Status.Namespace == "" {
			continue
		}
		key := client.ObjectKeyFromObject(c)
		m := member{Cluster: key, AgentImage: c.Status.Agent.Image, Connected: heartbeating(c)}
		if b := byCluster[key]; b != nil {
			m.HasBundle = true
			m.BundleImage, m.PreviousImage = b.Annotations[ImageAnnotation], b.Annotations[PreviousImageAnnotation]
			m.Started, _ = time.Parse(time.RFC3339, b.Annotations[StartedAnnotation])
			m.CheckedIn = b.Annotations[CheckedInAnnotation]
		}
		members = append(members, m)
	}
	p := planWaves(members, settings{
		Desired: r.Settings.Image, Failed: state.Data["failedImage"], WaveSize: r.Settings.WaveSize, Timeout: r.Settings.Timeout,
		Paused: r.Settings.Paused || state.Data["paused"] == "true", Now: r.Now(),
	})
	observe(members, r.Settings.Image)
	newRollback := p.Failed != "" && state.Data["failedImage"] != p.Failed
	for _, w := range p.Writes {
		if err := r.writeBundle(ctx, w, byCluster[w.Cluster]); err != nil {
			return ctrl.Result{}, err
		}
		switch {
		case w.Rollback:
			log.Info("Rolling the agent back", "Cluster", klog.KRef(w.Cluster.Namespace, w.Cluster.Name), "image", w.Image)
		case w.Mark:
			log.Info("Upgraded agent checked in", "Cluster", klog.KRef(w.Cluster.Namespace, w.Cluster.Name), "image", w.Image)
		case w.Wave:
			log.Info("Upgrading the agent", "Cluster", klog.KRef(w.Cluster.Namespace, w.Cluster.Name), "image", w.Image, "previous", w.PreviousImage)
		}
	}
	if err := r.writeState(ctx, &state, p); err != nil {
		return ctrl.Result{}, err
	}
	if newRollback {
		rollbacks.Inc()
	}
	// The operator's pause and retry in the ConfigMap are not watched:
	// they are read again at the latest after idleRecheck.
	return ctrl.Result{RequeueAfter: cmp.Or(p.Requeue, idleRecheck)}, nil
}

const idleRecheck = 15 * time.Second

// heartbeating: the agent checks in, with or without its tunnel (a tunnel
// reconnecting after a manager restart does not stop an upgrade).
func heartbeating(c *fleetv1.Cluster) bool {
	cond := meta.FindStatusCondition(c.Status.Conditions, fleetv1.ConnectedCondition)
	return cond != nil && (cond.Status == metav1.ConditionTrue || cond.Reason == fleetv1.TunnelDisconnectedReason)
}

// BundleName is the agent bundle of a cluster: edgefleet-agent-<cluster>,
// or a hash of the name when that would be too long for a name.
func BundleName(cluster string) string {
	n := "edgefleet-agent-" + cluster
	if len(n) <= 63 {
		return n
	}
	sum := sha256.Sum256([]byte(cluster))
	return "edgefleet-agent-" + hex.EncodeToString(sum[:])[:20]
}

// writeBundle stores the Deployment for w.Image and creates or updates the
// cluster's agent bundle. keepResources: deleting the bundle (or the
// feature) never deletes a running agent.
func (r *Reconciler) writeBundle(ctx context.Context, w write, cur *fleetv1.Bundle) error {
	dep, err := clusterregistration.AgentDeployment(w.Image)
	if err != nil {
		return err
	}
	id, err := content.Store(ctx, r.Client, &content.Manifest{Resources: []fleetv1.BundleResource{{Name: "agent.yaml", Content: string(dep)}}})
	if err != nil {
		return fmt.Errorf("storing the agent bundle's content: %w", err)
	}
	ann := map[string]string{ImageAnnotation: w.Image}
	if w.PreviousImage != "" {
		ann[PreviousImageAnnotation] = w.PreviousImage
	}
	if !w.Started.IsZero() {
		ann[StartedAnnotation] = w.Started.UTC().Format(time.RFC3339)
	}
	if w.CheckedIn != "" {
		ann[CheckedInAnnotation] = w.CheckedIn
	}
	b := &fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Namespace: w.Cluster.Namespace, Name: BundleName(w.Cluster.Name)}}
	if cur != nil {
		b = cur.DeepCopy()
	}
	b.Labels = map[string]string{AgentBundleLabel: w.Cluster.Name}
	b.Annotations = ann
	b.Spec.ContentsID = id
	b.Spec.Resources = nil
	b.Spec.KeepResources = true
	b.Spec.Targets = []fleetv1.BundleTarget{{Name: "cluster", ClusterName: w.Cluster.Name}}
	if cur == nil {
		if err := r.Client.Create(ctx, b); err != nil {
			return fmt.Errorf("creating agent bundle %s/%s: %w", b.Namespace, b.Name, err)
		}
		return nil
	}
	if err := r.Client.Update(ctx, b); err != nil {
		return fmt.Errorf("updating agent bundle %s/%s: %w", b.Namespace, b.Name, err)
	}
	return nil
}

// writeState reports the plan in the state ConfigMap, keeping the
// operator's keys.
func (r *Reconciler) writeState(ctx context.Context, cm *corev1.ConfigMap, p plan) error {
	want := map[string]string{"state": p.State, "message": p.Message, "image": r.Settings.Image}
	if p.Failed != "" {
		want["failedImage"] = p.Failed
	}
	if p.State == StateRolledBack && p.Failed == "" && cm.Data["state"] == StateRolledBack {
		// Keep the message that says which agents did not check in.
		delete(want, "message")
	}
	if cm.ResourceVersion == "" {
		cm.Namespace, cm.Name, cm.Data = singleton.Namespace, singleton.Name, want
		return client.IgnoreAlreadyExists(r.Client.Create(ctx, cm))
	}
	changed := false
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	for k, v := range want {
		if cm.Data[k] != v {
			cm.Data[k], changed = v, true
		}
	}
	if !changed {
		return nil
	}
	return r.Client.Update(ctx, cm)
}
