package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/controller/agentupgrade"
	bmcctrl "github.com/edgefleet/edgefleet/internal/controller/bmc"
	"github.com/edgefleet/edgefleet/internal/controlplane"
	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/netguard"
	"github.com/edgefleet/edgefleet/internal/provisioning/releases"
	"github.com/edgefleet/edgefleet/internal/seedimage"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

func newServerCommand(g *globals) *cobra.Command {
	o := server.Options{}
	var seedNetworks, fetchNetworks []string
	var kubeReleases string
	minFree := resource.NewQuantity(controlplane.DefaultMinFreeBytes, resource.BinarySI).String()
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
			fetch, err := netguard.ParseNetworks(netguard.FetchAllowedNetworksFlag, fetchNetworks)
			if err != nil {
				return err
			}
			o.FetchAllowedNetworks = fetch
			if err := seedSources(&o.SeedSources, seedNetworks); err != nil {
				return err
			}
			q, err := resource.ParseQuantity(minFree)
			if err != nil || q.Sign() < 0 {
				return fmt.Errorf("--data-dir-min-free %q: want a size such as 128Mi or 1Gi (0 turns the guard off)", minFree)
			}
			o.DataDirMinFree = q.Value()
			if err := clusterregistration.ValidateAgentImage(o.AgentImage); err != nil {
				return fmt.Errorf("--agent-image: %w", err)
			}
			if kubeReleases != "" {
				cat, err := releases.Load(kubeReleases)
				if err != nil {
					return fmt.Errorf("--kubernetes-releases: %w", err)
				}
				o.KubernetesReleases = cat
			}
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
	f.StringVar(&o.ClientCAFile, "client-ca-file", "", "PEM file of CAs whose client certificates the endpoint accepts as users of the kube-api proxy (name and groups passed downstream); the embedded control plane's client CAs are always accepted, on an external cluster only these (default: none, bearer tokens only)")
	f.StringVar(&o.ExternalURL, "external-url", "", "URL agents and users reach the endpoint at (default https://<listen>)")
	f.StringVar(&o.KubeBinDir, "kube-bin-dir", "", "folder with kube-apiserver and etcd (default $EDGEFLEET_KUBE_BIN_DIR, then beside this binary, then PATH)")
	f.IntVar(&o.APIServerPort, "apiserver-port", 0, "port of the embedded kube-apiserver on 127.0.0.1 (default: the previous one, or a free one)")
	f.BoolVar(&o.LeaderElection, "leader-elect", true, "with --kubeconfig, elect one active replica through a Lease in "+clusterjoin.SystemNamespace)
	f.BoolVar(&o.UnsafeNoFsync, "unsafe-no-fsync", false, "run etcd without fsync (tests and benchmarks only: a power loss can lose data)")
	_ = f.MarkHidden("unsafe-no-fsync")
	f.StringVar(&minFree, "data-dir-min-free", minFree, "embedded control plane: below this much free space on the data dir's file system the API refuses writes (etcd's NOSPACE alarm) until space returns, instead of etcd stopping on a full disk; 0 turns the guard off")
	f.DurationVar(&o.OfflineThreshold, "cluster-offline-threshold", clusterproxy.DefaultOfflineThreshold, "a cluster with neither a heartbeat nor a tunnel probe for this long is Offline")
	f.Float32Var(&o.KubeAPIQPS, "kube-api-qps", server.DefaultKubeAPIQPS, "requests per second the manager may send to the Kubernetes API (client-side limit)")
	f.IntVar(&o.KubeAPIBurst, "kube-api-burst", server.DefaultKubeAPIBurst, "burst above --kube-api-qps")
	f.StringVar(&o.PprofAddress, "pprof-address", "", "serve Go pprof profiles on this address, e.g. 127.0.0.1:6060 (off by default; never expose it)")
	f.BoolVar(&o.AllowLocalGitRepos, "allow-local-git-repos", false, "let GitRepos use local paths and file:// URLs (tests and demos only: every tenant could read any git repository on this host)")
	f.DurationVar(&o.TunnelProbeInterval, "tunnel-probe-interval", clusterproxy.DefaultProbeInterval, "how often each agent's tunnel is probed end to end (GET /version through it)")
	f.DurationVar(&o.BMCPollInterval, "bmc-poll-interval", bmcctrl.DefaultPollInterval, "how often each answering BMC is read over Redfish (BMCs that do not answer back off from 10s to 10m)")
	f.IntVar(&o.BMCWorkers, "bmc-workers", bmcctrl.DefaultWorkers, "how many BMCs are polled at once")
	f.StringSliceVar(&fetchNetworks, "fetch-allowed-networks", nil, "CIDRs tenants' fetches (GitRepo repositories over https and ssh, Helm chart repositories and OCI charts of GitRepos and HelmOps) may reach although refused by default, e.g. 127.0.0.0/8 for tests (SeedImage base images and ManagedOSVersionChannel URLs have their own, stricter --seed-allowed-base-networks); git and Helm refuse loopback, link-local (cloud metadata), unspecified and multicast addresses by default and allow private networks; the manager's own endpoint and API addresses are always refused")
	f.StringVar(&o.SeedSources.LocalDir, "seed-base-image-dir", "", "directory SeedImages may take local base images from (spec.baseImage: a file name in it); without it local paths are refused")
	f.BoolVar(&o.SeedSources.AllowInsecure, "seed-allow-insecure-base-urls", false, "let SeedImage base image URLs and OCI registries use plain HTTP and reach any address, loopback, link-local and private included (tests and labs only)")
	f.StringSliceVar(&seedNetworks, "seed-allowed-base-networks", nil, "CIDRs SeedImage base image URLs and OCI registries may reach besides public addresses, e.g. a mirror at 10.20.0.0/16 (loopback, link-local and private addresses are refused otherwise)")
	f.DurationVar(&o.CredentialMaxLifetime, "cluster-credential-max-lifetime", clusterregistration.DefaultCredentialMaxLifetime, "a cluster's credential is renewed for at most this long after it registered; then the agent must register again with a registration token (negative: no bound)")
	f.Float64Var(&o.JoinRate, "join-rate-limit", clusterregistration.DefaultJoinRate, "requests per second each source IP may send to /v1/register and /v1/import (negative: no limit)")
	f.StringVar(&o.AgentImage, "agent-image", clusterregistration.AgentImageFromEnv(), "image of edgefleet-agent in import manifests, e.g. registry.example.com/edgefleet/edgefleet-agent@sha256:… for air-gapped sites (default $"+clusterregistration.EnvAgentImage+", which edgefleet's manager image sets to the agent image built with it, pinned by digest)")
	f.StringVar(&kubeReleases, "kubernetes-releases", "", "YAML file of the Kubernetes versions cluster formation may install, per distro, and where the edgefleet distro's binaries of each come from (docs/provisioning.md); a ProvisionedCluster asking for another version is Stalled with the list (default: any version)")
	f.BoolVar(&o.AgentUpgrades.Enabled, "manage-agents", false, "own one agent bundle per cluster that deploys the agent's Deployment with --agent-image, and upgrade agents in waves when it changes (docs/operations.md, \"Upgrading the manager and agents\")")
	f.IntVar(&o.AgentUpgrades.WaveSize, "agent-upgrade-wave-size", agentupgrade.DefaultWaveSize, "with --manage-agents: clusters whose agents are upgraded at once; the next wave starts when all of them checked in with the new image")
	f.DurationVar(&o.AgentUpgrades.Timeout, "agent-upgrade-timeout", agentupgrade.DefaultTimeout, "with --manage-agents: a wave whose new agents have not all checked in after this long halts the upgrade and rolls every upgraded cluster back to its previous agent image")
	f.BoolVar(&o.AgentUpgrades.Paused, "agent-upgrades-paused", false, "with --manage-agents: start no new wave (also: data paused: \"true\" in ConfigMap "+clusterjoin.SystemNamespace+"/"+agentupgrade.StateConfigMap+")")
	f.IntVar(&o.JoinBurst, "join-rate-burst", clusterregistration.DefaultJoinBurst, "burst above --join-rate-limit per source IP")
	f.IntVar(&o.EndpointLimits.MaxConnections, "max-connections", endpoint.DefaultMaxConnections, "concurrent connections the endpoint accepts; more wait in the kernel's accept queue")
	f.DurationVar(&o.EndpointLimits.ReadHeaderTimeout, "read-header-timeout", endpoint.DefaultReadHeaderTimeout, "the endpoint closes a connection whose TLS handshake and request header take longer")
	f.DurationVar(&o.EndpointLimits.IdleTimeout, "idle-timeout", endpoint.DefaultIdleTimeout, "the endpoint closes a keep-alive connection idle this long")
	f.DurationVar(&o.EndpointLimits.ReadTimeout, "read-timeout", endpoint.DefaultReadTimeout, "the endpoint closes an ordinary (not streaming) request whose body is not read in this time")
	f.DurationVar(&o.EndpointLimits.WriteTimeout, "write-timeout", endpoint.DefaultWriteTimeout, "the endpoint gives up on an ordinary (not streaming) response not written in this time")
	return cmd
}

// seedSources completes the SeedImage base image policy from the flags:
// the directory must exist (a typo would otherwise refuse every build) and
// is made absolute.
func seedSources(s *seedimage.Sources, networks []string) error {
	nets, err := seedimage.ParseNetworks(networks)
	if err != nil {
		return err
	}
	s.AllowedNetworks = nets
	if s.LocalDir == "" {
		return nil
	}
	dir, err := filepath.Abs(s.LocalDir)
	if err != nil {
		return fmt.Errorf("--seed-base-image-dir: %w", err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--seed-base-image-dir %s is not a directory: create it or fix the flag", dir)
	}
	s.LocalDir = dir
	return nil
}
