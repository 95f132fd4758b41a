package agent

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Flags are the command-line flags of `edgefleet-agent run` and
// `edgefleet agent`.
type Flags struct {
	ManagerKubeconfig string
	Kubeconfig        string
	Options           Options
}

// AddFlags registers the flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.ManagerKubeconfig, "manager-kubeconfig", "", "kubeconfig for the manager's Kubernetes API (required)")
	fs.StringVar(&f.Options.Namespace, "cluster-namespace", "", "manager namespace holding this cluster's BundleDeployments: the Cluster's status.namespace (required)")
	fs.StringVar(&f.Options.ClusterName, "cluster-name", "", "name of this cluster's Cluster object on the manager; enables the heartbeat (status.agent.lastSeen)")
	fs.StringVar(&f.Options.ClusterNamespace, "cluster-object-namespace", "", "namespace of the Cluster object on the manager (with --cluster-name)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig for the downstream cluster (default: in-cluster config)")
	fs.IntVar(&f.Options.Workers, "workers", DefaultWorkers, "BundleDeployments reconciled in parallel")
	fs.DurationVar(&f.Options.MonitorInterval, "monitor-interval", DefaultMonitorInterval, "how often deployed resources are checked for readiness and drift")
	fs.StringVar(&f.Options.MetricsAddr, "metrics-bind-address", "0", "address for Prometheus metrics, e.g. :8080 (0 turns them off)")
}

// Complete loads the kubeconfigs and returns the agent's options.
func (f *Flags) Complete() (Options, error) {
	o := f.Options
	if f.ManagerKubeconfig == "" {
		return o, fmt.Errorf("--manager-kubeconfig is required: a kubeconfig for the manager's Kubernetes API")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", f.ManagerKubeconfig)
	if err != nil {
		return o, fmt.Errorf("reading --manager-kubeconfig %s: %w", f.ManagerKubeconfig, err)
	}
	o.ManagerConfig = cfg
	if f.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
		if err != nil {
			return o, fmt.Errorf("reading --kubeconfig %s: %w", f.Kubeconfig, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return o, fmt.Errorf("no --kubeconfig given and not running in a Pod (%w): pass --kubeconfig for the downstream cluster", err)
		}
	}
	o.DownstreamConfig = cfg
	return o, nil
}
