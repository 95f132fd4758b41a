package agent

import (
	"cmp"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// TokenEnv holds the registration token when --token is not given: the
// import manifest sets it from the bootstrap Secret, whose token key the
// agent deletes after registering.
const TokenEnv = "EDGEFLEET_TOKEN"

// Flags are the command-line flags of `edgefleet-agent run` and
// `edgefleet agent`.
type Flags struct {
	ManagerKubeconfig string
	Kubeconfig        string
	Join              join.Options
	Labels            []string
	MemoryLimit       string
	Options           Options
	memoryLimitSet    func() bool
	UpgradePlans      bool
}

// AddFlags registers the flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Join.Server, "server", "", "URL of the manager's endpoint to join, e.g. https://fleet.example.com:8443 (with --token and --ca-checksum)")
	fs.StringVar(&f.Join.Token, "token", "", "registration token (edgefleet token create); default $"+TokenEnv+". Not needed once the agent has stored its credential")
	fs.StringVar(&f.Join.CAChecksum, "ca-checksum", "", "sha256 of the manager's CA; the agent trusts only that CA")
	fs.StringArrayVar(&f.Labels, "label", nil, "label k=v proposed for this cluster's Cluster object (repeatable; *edgefleet.io keys are dropped by the manager)")
	fs.StringVar(&f.Join.ClientID, "client-id", "", "stable identity of this cluster (default: the UID of its kube-system namespace)")
	fs.StringVar(&f.ManagerKubeconfig, "manager-kubeconfig", "", "kubeconfig for the manager's Kubernetes API (instead of --server)")
	fs.StringVar(&f.Options.Namespace, "cluster-namespace", "", "manager namespace holding this cluster's BundleDeployments: the Cluster's status.namespace (required)")
	fs.StringVar(&f.Options.ClusterName, "cluster-name", "", "name of this cluster's Cluster object on the manager (its labels and annotations feed templating)")
	fs.StringVar(&f.Options.ClusterNamespace, "cluster-object-namespace", "", "namespace of the Cluster object on the manager (with --cluster-name)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig for the downstream cluster (default: in-cluster config)")
	fs.DurationVar(&f.Options.HeartbeatInterval, "heartbeat-interval", DefaultHeartbeatInterval, "how often the heartbeat Lease edgefleet-agent in --cluster-namespace is renewed (the manager derives the Cluster's status.agent from it)")
	fs.IntVar(&f.Options.Workers, "workers", DefaultWorkers, "BundleDeployments reconciled in parallel")
	fs.DurationVar(&f.Options.MonitorInterval, "monitor-interval", DefaultMonitorInterval, "how often deployed resources are checked for readiness and drift")
	fs.StringVar(&f.Options.MetricsAddr, "metrics-bind-address", "0", "address for Prometheus metrics, e.g. :8080 (0 turns them off)")
	fs.StringVar(&f.Options.HealthProbeAddr, "health-probe-address", cmp.Or(os.Getenv(clusterjoin.EnvHealthProbeAddress), "0"), "address serving /healthz and /readyz, e.g. :8081 (ready once a heartbeat reached the manager within three intervals; 0 turns them off); default $"+clusterjoin.EnvHealthProbeAddress)
	fs.StringVar(&f.Options.Image, "image", "", "the image this agent runs as, reported to the manager for agent upgrades (default $"+clusterjoin.EnvAgentImage+", which the agent's Deployment sets)")
	fs.StringVar(&f.Options.PprofAddr, "pprof-address", "", "loopback address serving Go profiles (/debug/pprof/), e.g. 127.0.0.1:6060; off by default")
	fs.StringVar(&f.MemoryLimit, "memory-limit", DefaultMemoryLimit, "soft memory limit of the Go runtime, e.g. 40Mi (0: none); GC runs more often near it. GOMEMLIMIT wins unless this flag is given")
	fs.BoolVar(&f.UpgradePlans, "upgrade-plans", true, "run cluster upgrade Plans (upgrade.edgefleet.io) on this cluster: installs the Plan CRD and upgrades nodes with Jobs")
	f.memoryLimitSet = func() bool { return fs.Changed("memory-limit") }
}

// Complete loads the kubeconfigs and returns the agent's options.
func (f *Flags) Complete() (Options, error) {
	o := f.Options
	o.DisableUpgradePlans = !f.UpgradePlans
	o.PodName, o.PodNamespace = os.Getenv(clusterjoin.EnvPodName), os.Getenv(clusterjoin.EnvPodNamespace)
	limit, err := parseMemoryLimit(f.MemoryLimit)
	if err != nil {
		return o, err
	}
	o.MemoryLimit = limit
	o.MemoryLimitExplicit = f.memoryLimitSet != nil && f.memoryLimitSet()
	var cfg *rest.Config
	switch {
	case f.Join.Server != "" && f.ManagerKubeconfig != "":
		return o, fmt.Errorf("--server and --manager-kubeconfig exclude each other: join with --server, --token and --ca-checksum, or pass a manager kubeconfig")
	case f.Join.Server != "":
		j := f.Join
		if j.Token == "" {
			j.Token = os.Getenv(TokenEnv)
		}
		j.Labels = map[string]string{}
		for _, kv := range f.Labels {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return o, fmt.Errorf("--label %q is not k=v", kv)
			}
			j.Labels[k] = v
		}
		o.Join = &j
	case f.ManagerKubeconfig == "":
		return o, fmt.Errorf("--server (with --token and --ca-checksum) or --manager-kubeconfig is required")
	default:
		cfg, err = clientcmd.BuildConfigFromFlags("", f.ManagerKubeconfig)
		if err != nil {
			return o, fmt.Errorf("reading --manager-kubeconfig %s: %w", f.ManagerKubeconfig, err)
		}
		o.ManagerConfig = cfg
	}
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
