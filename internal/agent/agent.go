// Package agent is the cluster agent: it watches the BundleDeployments of its
// cluster on the manager's Kubernetes API, deploys them to the downstream
// cluster (Helm releases, or server-side applied objects for raw YAML and
// Kustomize bundles), and reports readiness and drift back to the manager.
// Both `edgefleet-agent run` and `edgefleet agent` call Run.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/apply"
	"github.com/edgefleet/edgefleet/internal/agent/helmdeploy"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/agent/upgradeplan"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Defaults of Options.
const (
	DefaultWorkers           = 20
	DefaultMonitorInterval   = 30 * time.Second
	DefaultHeartbeatInterval = 30 * time.Second
)

// Options configure an agent.
type Options struct {
	// ManagerConfig reaches the manager's Kubernetes API.
	ManagerConfig *rest.Config
	// Namespace is the manager-side namespace holding this cluster's
	// BundleDeployments (the Cluster's status.namespace).
	Namespace string
	// ClusterName and ClusterNamespace name the Cluster object (its labels
	// and annotations feed templating).
	ClusterName      string
	ClusterNamespace string
	// DownstreamConfig reaches the cluster the agent deploys to.
	DownstreamConfig *rest.Config
	// Workers is how many BundleDeployments are reconciled in parallel.
	Workers int
	// MonitorInterval is how often deployed resources are checked for
	// readiness and drift.
	MonitorInterval time.Duration
	// HeartbeatInterval is how often the heartbeat Lease (Lease
	// edgefleet-agent in Namespace) is renewed; the manager derives the
	// Cluster's status.agent from it.
	HeartbeatInterval time.Duration
	// MetricsAddr serves Prometheus metrics; empty or "0" turns them off.
	MetricsAddr string
	// HealthProbeAddr serves /healthz and /readyz (ready once a heartbeat
	// reached the manager recently); empty or "0" turns them off.
	HealthProbeAddr string
	// Image is the image the agent runs as, reported in the heartbeat
	// (clusterjoin.AnnotationAgentImage); $EDGEFLEET_AGENT_IMAGE when empty.
	Image string
	// PprofAddr serves net/http/pprof on a loopback address; empty turns
	// it off.
	PprofAddr string
	// MemoryLimit is the Go runtime's soft memory limit in bytes; 0 leaves
	// the runtime's (GOMEMLIMIT) alone. MemoryLimitExplicit makes it win
	// over GOMEMLIMIT.
	MemoryLimit         int64
	MemoryLimitExplicit bool
	// Join, when set, registers with the manager's endpoint (token + CA
	// checksum) instead of using ManagerConfig, and keeps the reverse
	// tunnel up; ManagerConfig, Namespace and the Cluster's name come from
	// the registration.
	Join *join.Options
	// PodName and PodNamespace name the agent's own Pod downstream (from
	// $EDGEFLEET_POD_NAME and $EDGEFLEET_POD_NAMESPACE); with them the
	// agent moves itself to a control-plane node when it was scheduled
	// elsewhere (see placement).
	PodName, PodNamespace string
	// DisableUpgradePlans turns off the cluster upgrade Plan controller
	// (and the installation of its CRD downstream).
	DisableUpgradePlans bool
	// Log is the agent's logger.
	Log logr.Logger
}

func (o *Options) defaults() error {
	if o.ManagerConfig == nil {
		return errors.New("no manager API configured: pass --manager-kubeconfig")
	}
	if o.DownstreamConfig == nil {
		return errors.New("no downstream cluster configured: pass --kubeconfig, or run the agent in a Pod")
	}
	if o.Namespace == "" {
		return errors.New("--cluster-namespace is required: the manager namespace holding this cluster's BundleDeployments (the Cluster's status.namespace)")
	}
	if o.ClusterName != "" && o.ClusterNamespace == "" {
		return errors.New("--cluster-name needs --cluster-object-namespace: the namespace of the Cluster object on the manager")
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.MonitorInterval <= 0 {
		o.MonitorInterval = DefaultMonitorInterval
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = "0"
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	return nil
}

// Scheme has the types the agent reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(fleetv1.AddToScheme(s))
	return s
}

// Run runs the agent until ctx is cancelled.
func Run(ctx context.Context, o Options) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	applyMemoryLimit(o.MemoryLimit, o.MemoryLimitExplicit, o.Log)
	if o.PprofAddr != "" {
		if _, err := servePprof(ctx, o.PprofAddr, o.Log.WithName("pprof")); err != nil {
			return err
		}
	}
	scheme := Scheme()
	if o.Join != nil {
		if o.DownstreamConfig == nil {
			return errors.New("no downstream cluster configured: pass --kubeconfig, or run the agent in a Pod")
		}
		jo := *o.Join
		jo.Log = o.Log.WithName("join")
		j, err := join.Join(ctx, jo, o.DownstreamConfig, scheme)
		if err != nil {
			return err
		}
		o.ManagerConfig, o.Namespace, o.ClusterName, o.ClusterNamespace = j.ManagerConfig, j.Namespace, j.ClusterName, j.ClusterNamespace
		go func() {
			if err := j.Run(ctx); err != nil {
				cancel(err)
			}
		}()
	}
	if err := o.defaults(); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(o.ManagerConfig, manager.Options{
		Scheme:                 scheme,
		Logger:                 o.Log,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress: cmp.Or(o.HealthProbeAddr, "0"),
		// Only this cluster's BundleDeployments, without managedFields
		// (the agent never reads them).
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
			DefaultTransform:  cache.TransformStripManagedFields(),
		},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("connecting to the manager API: %w", err)
	}
	downstream, err := client.New(o.DownstreamConfig, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connecting to the downstream cluster: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(o.DownstreamConfig)
	if err != nil {
		return fmt.Errorf("connecting to the downstream cluster: %w", err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return fmt.Errorf("reading the downstream cluster's version: %w", err)
	}
	r := &reconciler{
		kubeVersion: v.GitVersion,
		manager:     mgr.GetClient(),
		reader:      mgr.GetAPIReader(),
		downstream:  downstream,
		applier:     &apply.Applier{Client: downstream},
		helm:        &helmdeploy.Deployer{Config: o.DownstreamConfig},
		opts:        o,
		desired:     newDesiredCache(),
		memory:      &memoryReleaser{quiet: releaseQuiet},
	}
	r.as = &identities{config: o.DownstreamConfig, downstream: downstream, helm: r.helm}
	defer r.memory.stop()
	// Startup (registration, discovery, the first list) is a burst too.
	r.memory.touch()
	if err := r.setup(mgr, controller.Options{MaxConcurrentReconciles: o.Workers}); err != nil {
		return err
	}
	if !o.DisableUpgradePlans {
		// Before the first BundleDeployment applies, so bundles carrying
		// Plans find their CRD.
		// A cluster where the agent may not install CRDs still gets its
		// bundles: Plans are off there, and the log says why.
		plans, err := upgradeplan.NewManager(ctx, o.DownstreamConfig, o.Log.WithName("upgradeplan"))
		if err != nil {
			o.Log.Error(err, "Cluster upgrade Plans are off on this cluster; bundles carrying Plans will fail to apply")
		} else if err := mgr.Add(plans); err != nil {
			return fmt.Errorf("adding the Plan controller: %w", err)
		}
	}
	if o.PodName != "" && o.PodNamespace != "" {
		pl := &placement{client: downstream, namespace: o.PodNamespace, pod: o.PodName,
			every: placementEvery, settle: placementSettle, now: time.Now, log: o.Log.WithName("placement")}
		if err := mgr.Add(manager.RunnableFunc(pl.run)); err != nil {
			return fmt.Errorf("adding placement: %w", err)
		}
	}
	hb := &heartbeat{client: mgr.GetClient(), kubeVersion: v.GitVersion, opts: o, image: cmp.Or(o.Image, os.Getenv(clusterjoin.EnvAgentImage))}
	if err := mgr.Add(manager.RunnableFunc(hb.run)); err != nil {
		return fmt.Errorf("adding heartbeat: %w", err)
	}
	// Ready means checked in: a new agent that cannot reach the manager
	// never becomes Ready, so its Deployment keeps the old agent running
	// (maxUnavailable 0), and the old agent applies the rollback.
	if err := mgr.AddReadyzCheck("heartbeat", hb.ready); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	o.Log.Info("Starting agent", "Namespace", klog.KRef("", o.Namespace), "Cluster", klog.KRef(o.ClusterNamespace, o.ClusterName), "workers", o.Workers)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running agent: %w", err)
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
