// Package helmdeploy installs, upgrades, rolls back and uninstalls the Helm
// releases of Helm bundles on a downstream cluster with the Helm v4 SDK, so
// `helm list` there shows every Helm bundle as a normal release.
package helmdeploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/render"
)

// DefaultMaxHistory is how many revisions a release keeps when the bundle
// does not say.
const DefaultMaxHistory = 2

// DefaultTimeout bounds an install, upgrade or rollback, as Helm's CLI does.
const DefaultTimeout = 5 * time.Minute

// Deployer manages Helm releases on one downstream cluster. Release records
// are Secrets in the release namespace (Helm's default driver).
//
// A Helm action configuration (kubectl factory, a client for every API
// group, discovery) is built per operation and dropped afterwards, so an
// idle agent holds none of it; reading a release (every monitoring pass)
// needs only a Secrets client, kept for the Deployer's life.
type Deployer struct {
	Config *rest.Config
	// agent is the agent's own configuration when Config impersonates a
	// bundle's serviceAccount (see As); nil means Config.
	agent *rest.Config

	once    sync.Once
	core    corev1client.CoreV1Interface
	coreErr error
}

// Release is the state of a Helm release.
type Release struct {
	Name      string
	Namespace string
	Revision  int
	Status    string
	Manifest  string
}

// String is "<namespace>/<name>:<revision>", the BundleDeployment's
// status.release.
func (r *Release) String() string {
	return fmt.Sprintf("%s/%s:%d", r.Namespace, r.Name, r.Revision)
}

// Objects parses the release manifest (hooks are not part of it).
func (r *Release) Objects() ([]*unstructured.Unstructured, error) {
	return ParseManifest(r.Manifest)
}

// ParseManifest splits a multi-document YAML manifest into objects, skipping
// empty documents.
func ParseManifest(manifest string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parsing release manifest: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

func (d *Deployer) configuration(ctx context.Context, namespace string) (*action.Configuration, error) {
	getter, err := newRESTGetter(d.Config, namespace)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client for Helm: %w", err)
	}
	log := ctrl.LoggerFrom(ctx).WithName("helm").V(4)
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(logr.ToSlogHandler(log)))
	if err := cfg.Init(getter, namespace, "secret"); err != nil {
		return nil, fmt.Errorf("initialising Helm: %w", err)
	}
	return cfg, nil
}

// Get returns the newest revision of release namespace/name, or nil if there
// is none.
func (d *Deployer) Get(ctx context.Context, namespace, name string) (*Release, error) {
	d.once.Do(func() { d.core, d.coreErr = corev1client.NewForConfig(d.Config) })
	if d.coreErr != nil {
		return nil, fmt.Errorf("creating Kubernetes client for Helm release records: %w", d.coreErr)
	}
	secrets := driver.NewSecrets(d.core.Secrets(namespace))
	secrets.SetLogger(logr.ToSlogHandler(ctrl.LoggerFrom(ctx).WithName("helm").V(4)))
	return lastIn(storage.Init(secrets), namespace, name)
}

func last(cfg *action.Configuration, namespace, name string) (*Release, error) {
	return lastIn(cfg.Releases, namespace, name)
}

func lastIn(releases *storage.Storage, namespace, name string) (*Release, error) {
	r, err := releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) || errors.Is(err, driver.ErrNoDeployedReleases) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Helm release %s/%s: %w", namespace, name, err)
	}
	return toRelease(r)
}

func toRelease(r any) (*Release, error) {
	rel, ok := r.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("unsupported Helm release type %T", r)
	}
	out := &Release{Name: rel.Name, Namespace: rel.Namespace, Revision: rel.Version, Manifest: rel.Manifest}
	if rel.Info != nil {
		out.Status = string(rel.Info.Status)
	}
	return out, nil
}

// Deploy installs res as release res.ReleaseName in res.Namespace, or
// upgrades it. A release left pending by an interrupted operation is an
// error: uninstalling it would delete the workload (Fleet #4572), so a human
// decides (`helm rollback`, or delete the pending revision's Secret).
func (d *Deployer) Deploy(ctx context.Context, res *render.Result, opts fleetv1.BundleDeploymentOptions, labels map[string]string) (*Release, error) {
	if res.ReleaseName == "" || res.Namespace == "" || res.Chart == nil {
		return nil, fmt.Errorf("rendered Helm bundle has no chart, release name or namespace")
	}
	cfg, err := d.configuration(ctx, res.Namespace)
	if err != nil {
		return nil, err
	}
	h := opts.Helm
	if h == nil {
		h = &fleetv1.HelmOptions{}
	}
	timeout := DefaultTimeout
	if h.TimeoutSeconds > 0 {
		timeout = time.Duration(h.TimeoutSeconds) * time.Second
	}
	wait := kube.HookOnlyStrategy
	if h.WaitForJobs || h.Atomic {
		wait = kube.StatusWatcherStrategy
	}
	current, err := last(cfg, res.Namespace, res.ReleaseName)
	if err != nil {
		return nil, err
	}
	id := res.Namespace + "/" + res.ReleaseName
	var out any
	switch {
	case current == nil:
		ctrl.LoggerFrom(ctx).Info("Installing Helm release", "release", id)
		in := action.NewInstall(cfg)
		in.ReleaseName = res.ReleaseName
		in.Namespace = res.Namespace
		in.CreateNamespace = true
		in.Timeout = timeout
		in.WaitStrategy = wait
		in.WaitForJobs = h.WaitForJobs
		in.RollbackOnFailure = h.Atomic
		in.ForceReplace = h.Force
		in.ForceConflicts = true
		in.TakeOwnership = h.TakeOwnership
		in.SkipSchemaValidation = h.SkipSchemaValidation
		in.EnableDNS = !h.DisableDNS // Fleet's default: DNS on
		in.Labels = labels
		if res.PostRenderer != nil {
			in.PostRenderer = res.PostRenderer
		}
		out, err = in.RunWithContext(ctx, res.Chart, res.Values)
		if err != nil {
			return nil, fmt.Errorf("helm install of release %s: %w", id, err)
		}
	case rcommon.Status(current.Status).IsPending():
		return nil, fmt.Errorf("helm release %s revision %d is %s: an earlier operation was interrupted; the agent does not uninstall it (that would delete its workload). Run `helm rollback %s -n %s` or `helm history` to resolve it", id, current.Revision, current.Status, res.ReleaseName, res.Namespace)
	default:
		if !opts.DeleteCRDResources {
			// CRDs the new revision drops stay, as on removal.
			if err := d.releaseCRDs(ctx, cfg, res.Namespace, res.ReleaseName, res.Objects); err != nil {
				return nil, err
			}
		}
		ctrl.LoggerFrom(ctx).Info("Upgrading Helm release", "release", id, "fromRevision", current.Revision)
		up := action.NewUpgrade(cfg)
		up.Namespace = res.Namespace
		up.Timeout = timeout
		up.WaitStrategy = wait
		up.WaitForJobs = h.WaitForJobs
		up.RollbackOnFailure = h.Atomic
		up.CleanupOnFail = h.Atomic
		up.ForceReplace = h.Force
		up.ForceConflicts = true
		up.TakeOwnership = h.TakeOwnership
		up.SkipSchemaValidation = h.SkipSchemaValidation
		up.EnableDNS = !h.DisableDNS
		up.MaxHistory = maxHistory(h)
		up.Labels = labels
		if res.PostRenderer != nil {
			up.PostRenderer = res.PostRenderer
		}
		out, err = up.RunWithContext(ctx, res.ReleaseName, res.Chart, res.Values)
		if err != nil {
			return nil, fmt.Errorf("helm upgrade of release %s: %w", id, err)
		}
	}
	return toRelease(out)
}

// Rollback re-applies the current revision of release namespace/name, which
// reverts drift (Fleet's correctDrift).
func (d *Deployer) Rollback(ctx context.Context, namespace, name string, opts fleetv1.BundleDeploymentOptions, force bool) error {
	cfg, err := d.configuration(ctx, namespace)
	if err != nil {
		return err
	}
	current, err := last(cfg, namespace, name)
	if err != nil {
		return err
	}
	if current == nil {
		return fmt.Errorf("helm release %s/%s does not exist", namespace, name)
	}
	rb := action.NewRollback(cfg)
	rb.Version = current.Revision
	rb.WaitStrategy = kube.HookOnlyStrategy
	rb.Timeout = DefaultTimeout
	rb.ForceConflicts = true
	rb.ForceReplace = force
	rb.MaxHistory = maxHistory(opts.Helm)
	ctrl.LoggerFrom(ctx).Info("Rolling back Helm release to correct drift", "release", namespace+"/"+name, "revision", current.Revision)
	if err := rb.Run(name); err != nil {
		return fmt.Errorf("helm rollback of release %s/%s to revision %d: %w", namespace, name, current.Revision, err)
	}
	return nil
}

// Uninstall removes release namespace/name. With keepResources only the
// release records go and the workload stays. CustomResourceDefinitions the
// chart templated stay unless deleteCRDs (the bundle's deleteCRDResources):
// they are released from the release first, so Helm skips them as not its
// own. CRDs from a chart's crds/ directory are never deleted (Helm's rule).
func (d *Deployer) Uninstall(ctx context.Context, namespace, name string, keepResources, deleteCRDs bool) error {
	cfg, err := d.configuration(ctx, namespace)
	if err != nil {
		return err
	}
	if !keepResources && !deleteCRDs {
		if err := d.releaseCRDs(ctx, cfg, namespace, name, nil); err != nil {
			return err
		}
	}
	if keepResources {
		history, err := cfg.Releases.History(name)
		if errors.Is(err, driver.ErrReleaseNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading history of Helm release %s/%s: %w", namespace, name, err)
		}
		for _, r := range history {
			rel, err := toRelease(r)
			if err != nil {
				return err
			}
			if _, err := cfg.Releases.Delete(name, rel.Revision); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
				return fmt.Errorf("deleting record of Helm release %s/%s revision %d: %w", namespace, name, rel.Revision, err)
			}
		}
		return nil
	}
	un := action.NewUninstall(cfg)
	un.WaitStrategy = kube.HookOnlyStrategy
	un.Timeout = DefaultTimeout
	un.IgnoreNotFound = true
	ctrl.LoggerFrom(ctx).Info("Uninstalling Helm release", "release", namespace+"/"+name)
	if _, err := un.Run(name); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("helm uninstall of release %s/%s: %w", namespace, name, err)
	}
	return nil
}

func maxHistory(h *fleetv1.HelmOptions) int {
	if h == nil || h.MaxHistory <= 0 {
		return DefaultMaxHistory
	}
	return int(h.MaxHistory)
}
