// Package contentgc deletes Contents no Bundle or BundleDeployment refers
// to any more, and chunks no manifest lists.
package contentgc

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
)

// Defaults.
const (
	// DefaultMinAge protects Contents just written by `edgefleet apply` or a
	// GitRepo sync before the Bundle that refers to them exists.
	DefaultMinAge   = 10 * time.Minute
	DefaultInterval = 5 * time.Minute
)

// Reconciler periodically deletes unreferenced Contents (and their chunks)
// older than MinAge. A Content is referenced by a Bundle's spec.contentsID,
// by the ID of a Bundle's inline resources, or by the contents part of a
// BundleDeployment's deploymentID or stagedDeploymentID.
type Reconciler struct {
	// Client lists Bundles and BundleDeployments (the manager's cache).
	Client client.Client
	// APIReader reads Contents directly, so they are never cached.
	APIReader client.Reader
	MinAge    time.Duration
	Interval  time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// SetupWithManager runs the collector on the leader every Interval.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		interval := r.Interval
		if interval <= 0 {
			interval = DefaultInterval
		}
		log := logf.FromContext(ctx).WithName("contentgc")
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if n, err := r.Collect(ctrl.LoggerInto(ctx, log)); err != nil {
					log.Error(err, "Collecting unreferenced contents")
				} else if n > 0 {
					log.Info("Deleted unreferenced contents", "count", n)
				}
			}
		}
	}))
}

// Collect runs one collection and returns how many Contents it deleted.
func (r *Reconciler) Collect(ctx context.Context) (int, error) {
	now, minAge := time.Now, r.MinAge
	if r.Now != nil {
		now = r.Now
	}
	if minAge <= 0 {
		minAge = DefaultMinAge
	}
	referenced, err := r.referenced(ctx)
	if err != nil {
		return 0, err
	}
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(fleetv1.GroupVersion.WithKind("ContentList"))
	if err := r.APIReader.List(ctx, &list); err != nil {
		return 0, fmt.Errorf("listing contents: %w", err)
	}
	var doomed, oldChunks []string
	for _, c := range list.Items {
		if referenced[c.Name] || now().Sub(c.CreationTimestamp.Time) < minAge {
			continue
		}
		switch {
		case strings.HasPrefix(c.Name, "s-"):
			doomed = append(doomed, c.Name)
		case strings.HasPrefix(c.Name, "c-"):
			oldChunks = append(oldChunks, c.Name)
		}
	}
	if len(doomed) == 0 && len(oldChunks) == 0 {
		return 0, nil
	}
	// Chunks are content-addressed too and may be shared by two manifests
	// (same compressed prefix): keep those any surviving manifest lists.
	keepChunks, err := r.chunksOfSurvivors(ctx, list.Items, doomed)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, id := range doomed {
		names, err := content.Names(ctx, r.APIReader, id)
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return deleted, fmt.Errorf("reading content %s: %w", id, err)
		}
		// The manifest first: a reader that finds it finds its chunks.
		for _, name := range names {
			if name != id && keepChunks[name] {
				continue
			}
			obj := &fleetv1.Content{ObjectMeta: metav1.ObjectMeta{Name: name}}
			if err := r.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				return deleted, fmt.Errorf("deleting content %s: %w", name, err)
			}
			deleted++
		}
	}
	// A chunk no manifest lists is left by a Store that failed before it
	// wrote the manifest (chunks go first); nothing will ever read it.
	orphans, err := r.deleteOrphanChunks(ctx, oldChunks, keepChunks)
	return deleted + orphans, err
}

// deleteOrphanChunks deletes the chunks of old that keep does not list.
// Those of manifests deleted just before are gone already.
func (r *Reconciler) deleteOrphanChunks(ctx context.Context, old []string, keep map[string]bool) (int, error) {
	deleted := 0
	for _, name := range old {
		if keep[name] {
			continue
		}
		err := r.Client.Delete(ctx, &fleetv1.Content{ObjectMeta: metav1.ObjectMeta{Name: name}})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return deleted, fmt.Errorf("deleting orphan chunk %s: %w", name, err)
		default:
			logf.FromContext(ctx).V(1).Info("Deleted orphan content chunk", "Content", klog.KRef("", name))
			deleted++
		}
	}
	return deleted, nil
}

func (r *Reconciler) referenced(ctx context.Context) (map[string]bool, error) {
	refs := map[string]bool{}
	var bundles fleetv1.BundleList
	if err := r.Client.List(ctx, &bundles); err != nil {
		return nil, fmt.Errorf("listing bundles: %w", err)
	}
	for i := range bundles.Items {
		b := &bundles.Items[i]
		if b.Spec.ContentsID != "" {
			refs[b.Spec.ContentsID] = true
			continue
		}
		_, id, err := content.Encode(&content.Manifest{Resources: b.Spec.Resources})
		if err != nil {
			return nil, fmt.Errorf("encoding resources of bundle %s/%s: %w", b.Namespace, b.Name, err)
		}
		refs[id] = true
	}
	var bds fleetv1.BundleDeploymentList
	if err := r.Client.List(ctx, &bds); err != nil {
		return nil, fmt.Errorf("listing bundle deployments: %w", err)
	}
	for _, bd := range bds.Items {
		for _, id := range []string{bd.Spec.DeploymentID, bd.Spec.StagedDeploymentID} {
			if id != "" {
				refs[content.DeploymentID(id).ContentsID()] = true
			}
		}
	}
	return refs, nil
}

func (r *Reconciler) chunksOfSurvivors(ctx context.Context, all []metav1.PartialObjectMetadata, doomed []string) (map[string]bool, error) {
	gone := map[string]bool{}
	for _, id := range doomed {
		gone[id] = true
	}
	keep := map[string]bool{}
	for _, c := range all {
		if !strings.HasPrefix(c.Name, "s-") || gone[c.Name] {
			continue
		}
		names, err := content.Names(ctx, r.APIReader, c.Name)
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("reading content %s: %w", c.Name, err)
		}
		for _, n := range names[1:] {
			keep[n] = true
		}
	}
	return keep, nil
}
