package cli

import (
	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/server"
)

func newServerCommand(g *globals) *cobra.Command {
	o := server.Options{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the edgefleet manager",
		Long: `Run the edgefleet manager: CRDs, controllers and one HTTPS endpoint
(/ping, /healthz, /readyz, /metrics, /cacerts, and the agents' routes).

With no --kubeconfig (and outside a Pod) it starts its own real control plane
(etcd + kube-apiserver) with all state in --data-dir and writes an admin
kubeconfig to <data-dir>/kubeconfig. With --kubeconfig it runs on that cluster,
with leader election so several replicas can run.`,
		Example: `  edgefleet server --data-dir ./edgefleet-data
  kubectl --kubeconfig ./edgefleet-data/kubeconfig get crds

  edgefleet server --kubeconfig ~/.kube/config --listen 0.0.0.0:8443 --external-url https://fleet.example.com:8443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = g.log
			o.Out = cmd.OutOrStdout()
			return ignoreCanceled(server.Run(cmd.Context(), o))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", "edgefleet-data", "directory for all state of the embedded control plane (etcd, PKI, kubeconfig)")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "run on the cluster of this kubeconfig instead of an embedded control plane")
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8443", "host:port of the HTTPS endpoint")
	f.StringVar(&o.AdvertiseAddress, "advertise-address", "", "host:port where the other replicas reach this one, to forward kube-api proxy requests to the replica holding a cluster's tunnel (default $POD_IP:<listen port>, else --listen unless it is 0.0.0.0, else <hostname>:<listen port>)")
	f.StringVar(&o.ExternalURL, "external-url", "", "URL agents and users reach the endpoint at (default https://<listen>)")
	f.StringVar(&o.KubeBinDir, "kube-bin-dir", "", "folder with kube-apiserver and etcd (default $EDGEFLEET_KUBE_BIN_DIR, then beside this binary, then PATH)")
	f.IntVar(&o.APIServerPort, "apiserver-port", 0, "port of the embedded kube-apiserver on 127.0.0.1 (default: the previous one, or a free one)")
	f.BoolVar(&o.LeaderElection, "leader-elect", true, "with --kubeconfig, elect one active replica through a Lease in "+server.SystemNamespace)
	f.BoolVar(&o.UnsafeNoFsync, "unsafe-no-fsync", false, "run etcd without fsync (tests and benchmarks only: a power loss can lose data)")
	_ = f.MarkHidden("unsafe-no-fsync")
	f.DurationVar(&o.OfflineThreshold, "cluster-offline-threshold", clusterproxy.DefaultOfflineThreshold, "a cluster with neither a heartbeat nor a tunnel probe for this long is Offline")
	f.Float32Var(&o.KubeAPIQPS, "kube-api-qps", server.DefaultKubeAPIQPS, "requests per second the manager may send to the Kubernetes API (client-side limit)")
	f.IntVar(&o.KubeAPIBurst, "kube-api-burst", server.DefaultKubeAPIBurst, "burst above --kube-api-qps")
	f.StringVar(&o.PprofAddress, "pprof-address", "", "serve Go pprof profiles on this address, e.g. 127.0.0.1:6060 (off by default; never expose it)")
	f.BoolVar(&o.AllowLocalGitRepos, "allow-local-git-repos", false, "let GitRepos use local paths and file:// URLs (tests and demos only: every tenant could read any git repository on this host)")
	f.DurationVar(&o.TunnelProbeInterval, "tunnel-probe-interval", clusterproxy.DefaultProbeInterval, "how often each agent's tunnel is probed end to end (GET /version through it)")
	return cmd
}
