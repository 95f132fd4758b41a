package join

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/tunnel"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Options are the agent's join settings.
type Options struct {
	// Server is the manager's endpoint URL, e.g. https://fleet.example.com:8443.
	Server string
	// Token is a ClusterRegistrationToken's value.
	Token string
	// CAChecksum is the sha256 of the manager's CA.
	CAChecksum string
	// Labels are proposed for the Cluster.
	Labels map[string]string
	// ClientID defaults to the UID of the downstream kube-system namespace.
	ClientID string
	// NoTunnel skips the reverse tunnel (tests of the pull path only).
	NoTunnel bool
	Log      logr.Logger
}

// ErrIdentityChanged ends the agent when re-registration maps it to another
// Cluster (the old one was deleted): it must restart with the new one.
var ErrIdentityChanged = errors.New("the manager registered this agent as a different cluster; restarting")

// Joined is a registered agent.
type Joined struct {
	// ManagerConfig reaches the manager's API through its endpoint with the
	// cluster credential.
	ManagerConfig *rest.Config
	// Namespace holds the cluster's BundleDeployments.
	Namespace string
	// ClusterName and ClusterNamespace name the Cluster.
	ClusterName, ClusterNamespace string

	o          Options
	tls        *tls.Config
	caPEM      []byte
	cred       *credential
	store      *store
	downstream *rest.Config
	clientID   string
}

// Join pins the CA and registers, retrying with jittered backoff until it
// succeeds or ctx ends. A stored credential for the same manager is reused.
func Join(ctx context.Context, o Options, downstream *rest.Config, scheme *runtime.Scheme) (*Joined, error) {
	o.Server = strings.TrimRight(o.Server, "/")
	if u, err := url.Parse(o.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not valid: give the manager's https URL, e.g. https://fleet.example.com:8443", o.Server)
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	dc, err := client.New(downstream, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the downstream cluster: %w", err)
	}
	j := &Joined{o: o, downstream: downstream, store: &store{client: dc, server: o.Server, caChecksum: strings.ToLower(o.CAChecksum)}}
	if o.Token == "" {
		// The bootstrap token is deleted once the agent has its own
		// credential; without either, only a new token helps.
		if resp, err := j.store.load(ctx); err != nil || resp == nil {
			return nil, fmt.Errorf("--token is required with --server: this cluster has no valid stored credential (%v); create a token with `edgefleet token create` and apply the printed import manifest again", err)
		}
	}
	err = retry(ctx, o.Log, "Joining the fleet", func() error {
		if j.tls == nil {
			caPEM, cfg, err := Pin(ctx, o.Server, o.CAChecksum)
			if err != nil {
				return err
			}
			j.tls, j.caPEM = cfg, caPEM
		}
		if j.clientID == "" {
			j.clientID = o.ClientID
			if j.clientID == "" {
				var ns corev1.Namespace
				if err := dc.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ns); err != nil {
					return fmt.Errorf("reading the downstream kube-system namespace (its UID identifies the cluster): %w", err)
				}
				j.clientID = string(ns.UID)
			}
		}
		resp, err := j.store.load(ctx)
		if err != nil {
			return err
		}
		if resp == nil {
			if resp, err = j.register(ctx); err != nil {
				return err
			}
		} else {
			o.Log.Info("Reusing stored cluster credential", "Cluster", klog.KRef(resp.ClusterNamespace, resp.ClusterName))
		}
		j.cred = newCredential(*resp)
		return nil
	})
	if err != nil {
		return nil, err
	}
	j.dropBootstrapToken(ctx, dc)
	r := j.cred.get()
	j.Namespace, j.ClusterName, j.ClusterNamespace = r.Namespace, r.ClusterName, r.ClusterNamespace
	j.ManagerConfig = &rest.Config{
		Host:            o.Server + r.ManagerAPIPath,
		TLSClientConfig: rest.TLSClientConfig{CAData: j.caPEM},
		QPS:             50, Burst: 100,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return &credentialTransport{cred: j.cred, next: rt}
		},
	}
	return j, nil
}

func (j *Joined) register(ctx context.Context) (*clusterjoin.RegisterResponse, error) {
	j.o.Log.Info("Registering with the manager", "server", j.o.Server, "clientID", j.clientID)
	// The current credential, if any, proves to the manager that this is
	// the cluster that registered with this clientID before: without it
	// (or an admin's approval) the manager refuses to hand the Cluster to a
	// token holder.
	var proof, renewalKey string
	if j.cred != nil {
		proof, renewalKey = j.cred.get().Token, j.cred.get().RenewalKey
	}
	resp, err := post(ctx, j.tls, j.o.Server+clusterjoin.RegisterPath, proof, clusterjoin.RegisterRequest{Token: j.o.Token, ClientID: j.clientID, Labels: j.o.Labels, RenewalKey: renewalKey})
	if err != nil {
		if errors.Is(err, errRejected) {
			return nil, fmt.Errorf("%w (the registration token is wrong or expired: create a new one with `edgefleet token create`)", err)
		}
		return nil, err
	}
	if err := j.store.save(ctx, resp); err != nil {
		return nil, err
	}
	j.o.Log.Info("Registered", "Cluster", klog.KRef(resp.ClusterNamespace, resp.ClusterName), "Namespace", klog.KRef("", resp.Namespace))
	return resp, nil
}

// dropBootstrapToken erases the registration token from the bootstrap
// Secret of the import manifest once the agent has its own credential: the
// token registers any cluster, so it must not stay readable on this one.
// The agent keeps it in memory only, to register again if its credential
// is rejected.
func (j *Joined) dropBootstrapToken(ctx context.Context, dc client.Client) {
	var sec corev1.Secret
	err := dc.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.BootstrapSecret}, &sec)
	if err != nil || !hasToken(&sec) {
		if client.IgnoreNotFound(err) != nil {
			j.o.Log.Error(err, "Reading the bootstrap Secret to delete the registration token failed")
		}
		return
	}
	// Emptied rather than removed: Deployments from older import manifests
	// reference the key without `optional`, and a Pod whose Secret key is
	// missing never starts.
	sec.Data[clusterjoin.KeyToken] = []byte{}
	if err := dc.Update(ctx, &sec); err != nil {
		j.o.Log.Error(err, "Deleting the registration token from the bootstrap Secret failed", "Secret", klog.KRef(clusterjoin.SystemNamespace, clusterjoin.BootstrapSecret))
		return
	}
	j.o.Log.Info("Deleted the registration token from the bootstrap Secret", "Secret", klog.KRef(clusterjoin.SystemNamespace, clusterjoin.BootstrapSecret))
}

func hasToken(s *corev1.Secret) bool { return len(s.Data[clusterjoin.KeyToken]) > 0 }

// Run renews the credential and keeps the tunnel up until ctx ends. It
// returns ErrIdentityChanged if the agent must restart.
func (j *Joined) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- j.renewLoop(ctx) }()
	if !j.o.NoTunnel {
		go func() { errc <- j.runTunnel(ctx) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

func (j *Joined) runTunnel(ctx context.Context) error {
	h, err := APIServerHandler(j.downstream)
	if err != nil {
		return err
	}
	dc, err := client.New(j.downstream, client.Options{})
	if err != nil {
		return err
	}
	if err := retry(ctx, j.o.Log, "Creating the impersonator account", func() error { return ensureImpersonator(ctx, dc) }); err != nil {
		return nil
	}
	u, _ := url.Parse(j.o.Server + clusterjoin.TunnelPath)
	u.Scheme = "wss"
	c := &tunnel.Client{
		URL: u.String(), TLS: j.tls, Handler: h, Log: j.o.Log.WithName("tunnel"),
		Header: func() http.Header {
			return http.Header{"Authorization": []string{"Bearer " + j.cred.get().Token}}
		},
		OnUnauthorized: func(context.Context) { j.cred.rejected() },
	}
	return c.Run(ctx)
}

// renewLoop renews at half-life or when the manager rejected the
// credential; a rejected renewal falls back to registering with the token.
func (j *Joined) renewLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(j.cred.renewAt())):
		case <-j.cred.invalid:
			j.o.Log.Info("The manager rejected the cluster credential; renewing")
		}
		var resp *clusterjoin.RegisterResponse
		err := retry(ctx, j.o.Log, "Renewing the cluster credential", func() error {
			var err error
			cur := j.cred.get()
			// The renewal key counts only if the credential expired (a
			// site dark for longer than its life).
			resp, err = post(ctx, j.tls, j.o.Server+clusterjoin.RenewPath, cur.Token,
				clusterjoin.RenewRequest{ClusterNamespace: cur.ClusterNamespace, ClusterName: cur.ClusterName, RenewalKey: cur.RenewalKey})
			if err == nil && resp.RenewalKey == "" {
				resp.RenewalKey = cur.RenewalKey // renewals keep the registration's key
			}
			if errors.Is(err, errRejected) {
				renewErr := err
				if resp, err = j.register(ctx); err != nil {
					err = fmt.Errorf("the credential cannot be renewed (%v) and registering again failed: %w", renewErr, err)
				}
			}
			return err
		})
		if err != nil || resp == nil {
			return nil // ctx ended
		}
		if resp.ClusterName != j.ClusterName || resp.ClusterNamespace != j.ClusterNamespace || resp.Namespace != j.Namespace {
			return ErrIdentityChanged
		}
		if err := j.store.save(ctx, resp); err != nil {
			j.o.Log.Error(err, "Storing renewed credential failed")
		}
		j.cred.set(*resp)
		// Drain a rejection seen with the old credential.
		select {
		case <-j.cred.invalid:
		default:
		}
	}
}

// retry calls f until it succeeds or ctx ends, waiting a jittered,
// doubling backoff (1 s to 2 min) between attempts.
func retry(ctx context.Context, log logr.Logger, what string, f func() error) error {
	backoff := time.Second
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Error(err, what+" failed; retrying", "in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 2*time.Minute)
	}
}
