// Package server is `edgefleet server`: it brings up (or connects to) the
// Kubernetes API, installs the CRDs, runs the controllers and serves the HTTPS
// endpoint. It owns start-up order and shutdown; each piece it starts lives in
// its own package.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/controller/agentupgrade"
	"github.com/edgefleet/edgefleet/internal/controlplane"
	"github.com/edgefleet/edgefleet/internal/crds"
	"github.com/edgefleet/edgefleet/internal/datadir"
	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/metrics"
	"github.com/edgefleet/edgefleet/internal/netguard"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/provisioning/releases"
	"github.com/edgefleet/edgefleet/internal/seedimage"
	"github.com/edgefleet/edgefleet/internal/webui"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// LeaderElectionID names the Lease replicas compete for.
const LeaderElectionID = "edgefleet-manager"

// Options are the flags of `edgefleet server`.
type Options struct {
	DataDir string
	// Kubeconfig selects an existing cluster; empty means in-cluster config
	// when running in a Pod, and the embedded control plane otherwise.
	Kubeconfig string
	Listen     string
	// ExternalURL is how agents and users reach the endpoint; defaults to https://<listen>.
	ExternalURL   string
	KubeBinDir    string
	APIServerPort int
	// LeaderElection applies to external clusters; the embedded control plane
	// is single-instance by its data-dir lock.
	LeaderElection bool
	UnsafeNoFsync  bool
	// DataDirMinFree is the free space (bytes) below which the embedded
	// etcd refuses writes; 0 turns the guard off.
	DataDirMinFree int64
	// OfflineThreshold: a cluster unheard-of this long is Offline
	// (default clusterproxy.DefaultOfflineThreshold).
	OfflineThreshold time.Duration
	// TunnelProbeInterval is how often each agent tunnel is probed.
	TunnelProbeInterval time.Duration
	// BMCPollInterval and BMCWorkers tune the BMC controller (0 = default).
	BMCPollInterval time.Duration
	BMCWorkers      int
	// AdvertiseAddress is where other replicas reach this one (host:port);
	// see advertiseAddress for the default.
	AdvertiseAddress string
	// KubeAPIQPS and KubeAPIBurst limit the manager's requests to the
	// Kubernetes API (defaults DefaultKubeAPIQPS, DefaultKubeAPIBurst).
	KubeAPIQPS   float32
	KubeAPIBurst int
	// SeedSources limits where SeedImage base images come from
	// (--seed-base-image-dir, --seed-allow-insecure-base-urls,
	// --seed-allowed-base-networks).
	SeedSources seedimage.Sources
	// ClientCAFile (PEM) adds CAs whose client certificates the endpoint
	// accepts as users; see userClientCAs.
	ClientCAFile string
	// PprofAddress serves Go profiles (debugging and benchmarks); empty is off.
	PprofAddress string
	// AllowLocalGitRepos lets GitRepos use local paths and file:// URLs
	// (tests, demos): any tenant could then read any repository on the host.
	AllowLocalGitRepos bool
	// FetchAllowedNetworks are otherwise refused networks (loopback,
	// link-local) tenants' git, Helm and channel fetches may reach
	// (--fetch-allowed-networks); see netguard.
	FetchAllowedNetworks []netip.Prefix
	Log                  logr.Logger
	// Out receives the start-up banner.
	Out io.Writer

	// EndpointLimits bound connections and requests on the endpoint.
	EndpointLimits endpoint.Limits
	// CredentialMaxLifetime bounds cluster credential renewals since
	// registration (0 = registration's default, negative = unbounded).
	CredentialMaxLifetime time.Duration
	// JoinRate and JoinBurst limit /v1/register and /v1/import per source
	// IP (0 = registration's defaults, negative rate = off).
	JoinRate  float64
	JoinBurst int
	// KubernetesReleases are the versions cluster formation may install
	// (nil: any version the API server accepts).
	KubernetesReleases *releases.Catalog
	// AgentImage is the cluster agent image the import manifest runs
	// (default clusterregistration.DefaultAgentImage).
	AgentImage string
	// AgentUpgrades turns on agent bundles and tunes their waves; its Image
	// is AgentImage.
	AgentUpgrades agentupgrade.Settings
}

// Client-side rate limits of the manager's Kubernetes client.
const (
	DefaultKubeAPIQPS   = 1000
	DefaultKubeAPIBurst = 2000
)

// Scheme has every type the manager reads or writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, fleetv1.AddToScheme, machinesv1.AddToScheme, provisioningv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // static registration of generated types; cannot fail at run time
		}
	}
	return s
}

// Run starts the manager and blocks until ctx ends or a component fails.
// Everything it started is stopped before it returns.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	log := o.Log
	started := time.Now()
	// Bind first: a port in use fails before anything is started or touched.
	listener, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %v (stop what uses it or pass another --listen)", o.Listen, err)
	}
	defer listener.Close()
	// With port 0 the kernel picked one; advertise what was really bound.
	o.Listen = listener.Addr().String()
	externalURL, err := endpointURL(o)
	if err != nil {
		return err
	}
	advertise, err := advertiseAddress(o.AdvertiseAddress, o.Listen)
	if err != nil {
		return err
	}
	extraUserCAs, err := readClientCAFile(o.ClientCAFile)
	if err != nil {
		return err
	}

	cluster, err := connect(ctx, o)
	if err != nil {
		return err
	}
	defer cluster.close()

	c, err := client.New(cluster.restConfig, client.Options{Scheme: Scheme()})
	if err != nil {
		return err
	}
	log.Info("Installing CRDs")
	if err := crds.Install(ctx, c, log); err != nil {
		return fmt.Errorf("installing CRDs: %w", err)
	}

	ca := cluster.ca
	if ca == nil {
		if ca, err = loadOrCreateCASecret(ctx, c); err != nil {
			return err
		}
	}
	serving, err := servingCert(ca, externalURL.Hostname(), o.Listen, advertise)
	if err != nil {
		return err
	}

	// The client-side rate limit is a ceiling on rollout speed (one write
	// per BundleDeployment); the apiserver's priority and fairness is the
	// real protection, so the default is generous.
	cluster.restConfig = rest.CopyConfig(cluster.restConfig)
	cluster.restConfig.QPS, cluster.restConfig.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	if cluster.restConfig.QPS <= 0 {
		cluster.restConfig.QPS, cluster.restConfig.Burst = DefaultKubeAPIQPS, DefaultKubeAPIBurst
	}
	mgr, err := ctrl.NewManager(cluster.restConfig, ctrl.Options{
		Scheme:                 Scheme(),
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"}, // served by the endpoint
		HealthProbeBindAddress: "0",
		// managedFields are a large share of small objects and nothing here
		// reads them: at thousands of clusters this is most of the cache.
		Cache:                         cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		PprofBindAddress:              o.PprofAddress,
		LeaderElection:                cluster.external && o.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       clusterjoin.SystemNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr(15 * time.Second),
	})
	if err != nil {
		return fmt.Errorf("creating controller manager: %w", err)
	}
	own := ownAddresses(o.Listen, cluster.restConfig.Host)
	o.SeedSources.Own = own
	fetchPolicy := netguard.Default()
	fetchPolicy.Allowed, fetchPolicy.Own = o.FetchAllowedNetworks, own
	deps := controllerDeps{fetchPolicy: fetchPolicy, dataDir: o.DataDir, allowLocalGitRepos: o.AllowLocalGitRepos, externalURL: externalURL, caCertPEM: ca.CertPEM,
		seedSources: o.SeedSources, offlineThreshold: o.OfflineThreshold, probeInterval: o.TunnelProbeInterval, log: log.WithName("registration")}
	deps.bmcPollInterval, deps.bmcWorkers = o.BMCPollInterval, o.BMCWorkers
	deps.agentImage, deps.kubernetesReleases = o.AgentImage, o.KubernetesReleases
	deps.agentUpgrades = o.AgentUpgrades
	deps.agentUpgrades.Image = cmp.Or(o.AgentImage, clusterregistration.DefaultAgentImage)
	deps.selfURL = selfURL(o.Listen)
	if err := setupControllers(mgr, deps); err != nil {
		return err
	}
	if err := setupRunnables(mgr, deps); err != nil {
		return err
	}

	var cacheSynced atomic.Bool
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		if mgr.GetCache().WaitForCacheSync(ctx) {
			cacheSynced.Store(true)
		}
		return nil
	})); err != nil {
		return err
	}
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		select {
		case <-mgr.Elected():
			log.Info("Became the leader", "leaderElection", cluster.external && o.LeaderElection)
		case <-ctx.Done():
		}
		return nil
	})); err != nil {
		return err
	}
	host, _ := os.Hostname()
	identity := clusterproxy.ReplicaIdentity(host, advertise)
	peers, err := startPeers(ctx, mgr, c, identity, log.WithName("peers"))
	if err != nil {
		return err
	}
	userCAs, err := userClientCAs(cluster, extraUserCAs)
	if err != nil {
		return err
	}
	mauth, err := metricsAuth(cluster.restConfig)
	if err != nil {
		return err
	}
	ep := endpoint.New(endpoint.Options{
		CACertPEM: ca.CertPEM,
		ClientCAs: func(ctx context.Context) *x509.CertPool { return peers.ClientCAs(ctx, userCAs) },
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hello.ServerName == clusterproxy.PeerServerName {
				return peers.Certificate(), nil
			}
			return serving, nil
		},
		Gatherer: metrics.Registry,
		Ready: func(r *http.Request) error {
			if !cacheSynced.Load() {
				return errors.New("caches not synced")
			}
			return nil
		},
		Log: log,

		MetricsAuth:       mauth,
		Limits:            o.EndpointLimits,
		StreamingPrefixes: streamingPrefixes,
	})

	if err := registerRoutes(ep, routeDeps{mgr: mgr, ca: ca, externalURL: externalURL, log: log,
		identity: identity, peers: peers, offlineThreshold: o.OfflineThreshold, probeInterval: o.TunnelProbeInterval, dataDir: o.DataDir, seedSources: o.SeedSources,
		credentialMaxLifetime: o.CredentialMaxLifetime, joinRate: o.JoinRate, joinBurst: o.JoinBurst, agentImage: o.AgentImage,
		kubernetesVersions: uiVersions(o.KubernetesReleases)}); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return mgr.Start(gctx) })
	g.Go(func() error { return ep.Serve(gctx, listener) })
	g.Go(func() error {
		select {
		case err := <-cluster.failed:
			return fmt.Errorf("control plane failed: %w", err)
		case <-gctx.Done():
			return nil
		}
	})

	fmt.Fprintf(o.Out, "edgefleet manager is running\n  URL:        %s\n  kubeconfig: %s\n  CA sha256:  %s\n", externalURL, cluster.kubeconfigPath, pki.Checksum(ca.CertPEM))
	fmt.Fprintf(o.Out, "  web UI:     %s%s (sign in with a bearer token or a client certificate)\n", strings.TrimSuffix(externalURL.String(), "/"), webui.Path)
	log.Info("Manager started", "url", externalURL.String(), "startup", time.Since(started).Round(time.Millisecond).String(), "embedded", !cluster.external)

	err = g.Wait()
	log.Info("Manager stopping")
	return err
}

// cluster is the Kubernetes API the manager runs on.
type cluster struct {
	restConfig     *rest.Config
	kubeconfigPath string
	external       bool
	ca             *pki.CA // the embedded control plane's endpoint CA; nil when external
	// clientCAs (PEM) are the CAs the embedded kube-apiserver trusts for
	// client certificates; nil when external.
	clientCAs []byte
	failed    <-chan error
	close     func()
}

func connect(ctx context.Context, o Options) (*cluster, error) {
	if o.Kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return connectExternal(ctx, o)
	}
	return startEmbedded(ctx, o)
}

func connectExternal(ctx context.Context, o Options) (*cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	where := o.Kubeconfig
	if o.Kubeconfig == "" {
		where = "in-cluster config"
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %v (pass a readable kubeconfig with --kubeconfig)", where, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	if err := reachable(ctx, cfg); err != nil {
		return nil, fmt.Errorf("cannot reach the cluster of %s at %s: %v (check that it is up and that the kubeconfig is right, or omit --kubeconfig to run an embedded control plane)", where, cfg.Host, err)
	}
	return &cluster{restConfig: cfg, kubeconfigPath: o.Kubeconfig, external: true, failed: make(chan error), close: func() {}}, nil
}

func startEmbedded(ctx context.Context, o Options) (*cluster, error) {
	dir, err := datadir.Open(o.DataDir)
	if err != nil {
		return nil, err
	}
	binDir, err := controlplane.FindBinDir(o.KubeBinDir)
	if err != nil {
		dir.Close()
		return nil, err
	}
	cp, err := controlplane.New(controlplane.Config{
		DataDir:       dir.Join("controlplane"),
		BinDir:        binDir,
		APIServerPort: o.APIServerPort,
		// kube-controller-manager finishes namespace deletion and garbage
		// collection; without it a deleted cluster's namespace stays Terminating.
		Components:    controlplane.Components{ControllerManager: true},
		UnsafeNoFsync: o.UnsafeNoFsync,
		MinFreeBytes:  o.DataDirMinFree,
		// Profiling the manager without its apiserver tells half the story.
		Profiling: o.PprofAddress != "",
		Log:       o.Log.WithName("controlplane"),
	})
	if err != nil {
		dir.Close()
		return nil, err
	}
	o.Log.Info("Starting embedded control plane", "dataDir", dir.Path)
	if err := cp.Start(ctx); err != nil {
		dir.Close()
		return nil, fmt.Errorf("starting embedded control plane: %w", err)
	}
	// The admin kubeconfig lives at the top of the data dir, where users look.
	kubeconfig := dir.Join("kubeconfig")
	if err := copyFile(cp.KubeconfigPath(), kubeconfig); err != nil {
		cp.Stop()
		dir.Close()
		return nil, err
	}
	return &cluster{
		restConfig:     cp.RESTConfig(),
		kubeconfigPath: kubeconfig,
		ca:             cp.CA(),
		clientCAs:      cp.ClientCAs(),
		failed:         cp.Failed(),
		close: func() {
			cp.Stop()
			dir.Close()
		},
	}, nil
}

func reachable(ctx context.Context, cfg *rest.Config) error {
	c := rest.CopyConfig(cfg)
	c.Timeout = 10 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return err
	}
	_, err = dc.ServerVersion()
	return err
}

func endpointURL(o Options) (*url.URL, error) {
	raw := o.ExternalURL
	if raw == "" {
		raw = "https://" + o.Listen
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--external-url %q is not valid: give an https URL such as https://manager.example.com:8443", raw)
	}
	return u, nil
}

// selfURL is where the manager calls its own endpoint (formation's
// requests through the kube-api proxy): the address it listens on, never
// the external URL, which is often a load balancer or a NAT that does not
// hairpin, or an address only the machines' network reaches. An
// unspecified listen address is reached on loopback; the serving
// certificate covers both.
func selfURL(listen string) *url.URL {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return &url.URL{Scheme: "https", Host: listen}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, to)
}

func ptr[T any](v T) *T { return &v }

// everyReplica is a runnable that runs on standby replicas too, not only on the leader.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// ownAddresses are the manager's endpoint and Kubernetes API addresses,
// which tenants' fetches never reach (netguard.Policy.Own), whatever
// networks are allowed.
func ownAddresses(listen, apiserverURL string) []netip.AddrPort {
	var out []netip.AddrPort
	if ap, err := netip.ParseAddrPort(listen); err == nil {
		out = append(out, ap)
	}
	if u, err := url.Parse(apiserverURL); err == nil {
		port := u.Port()
		if port == "" {
			port = "443"
		}
		ips := []netip.Addr{}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
			ips = append(ips, ip)
		} else if u.Hostname() != "" {
			// A name (kubernetes.default.svc): its addresses now. A later
			// change of them is not followed.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resolved, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
			cancel()
			ips = append(ips, resolved...)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err == nil {
			for _, ip := range ips {
				out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
			}
		}
	}
	return out
}
