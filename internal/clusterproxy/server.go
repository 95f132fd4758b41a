// Package clusterproxy is the manager's end of the agents' tunnels: it
// accepts each agent's websocket (/v1/tunnel), proxies
// /k8s/clusters/<namespace>.<name>/... through it to that cluster's
// Kubernetes API with the caller's identity passed by impersonation (or
// forwards the request to the replica holding that cluster's tunnel), and
// probes every tunnel end to end to keep the Cluster's Connected condition.
// See docs/tunnel.md.
package clusterproxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/tunnel"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Defaults of Options.
const (
	DefaultProbeInterval    = clusterns.DefaultProbeInterval
	DefaultOfflineThreshold = clusterns.DefaultOfflineThreshold
)

// Options configure the tunnel server.
type Options struct {
	// ProbeInterval is how often each tunnel is probed with GET /version.
	ProbeInterval time.Duration
	// OfflineThreshold: a cluster with neither a heartbeat nor a successful
	// probe for this long is Connected=False/AgentOffline.
	OfflineThreshold time.Duration
	// Identity names this replica in the tunnel Lease (holderIdentity); see
	// ReplicaIdentity. Other replicas forward requests to its address.
	Identity string
	// Peers is this replica's peer identity and the other replicas'
	// published certificates (peers.go), the only trust used between
	// replicas; nil disables forwarding.
	Peers *Peers
	// ProbeWorkers is how many tunnels are probed at once
	// (DefaultProbeWorkers when 0): a tunnel that does not answer holds one
	// worker until its probe times out, never more goroutines.
	ProbeWorkers int
	Log          logr.Logger
}

func (o *Options) defaults() {
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.OfflineThreshold <= 0 {
		o.OfflineThreshold = DefaultOfflineThreshold
	}
	if o.ProbeWorkers <= 0 {
		o.ProbeWorkers = DefaultProbeWorkers
	}
}

// tunnelStale is how old a probe may be for the tunnel to count as up.
func (o *Options) tunnelStale() time.Duration {
	return clusterns.TunnelStale(o.ProbeInterval, o.OfflineThreshold)
}

// Server holds this replica's agent sessions.
type Server struct {
	opts   Options
	client client.Client // direct
	cache  client.Reader
	auth   *authn.Authenticator
	authz  *authn.Authorizer
	events events.EventRecorder
	// peers reaches other replicas (forward.go); nil without Options.Peers.
	peers http.RoundTripper

	mu       sync.Mutex
	sessions map[types.NamespacedName]*entry
	// closed: the replica is shutting down and takes no new session.
	closed bool
}

type entry struct {
	sess      *tunnel.Session
	transport http.RoundTripper
	renewed   time.Time // last Lease renewal by this replica
	// generation is the cluster's credential generation the session was
	// opened under; a revocation bumps it and the next probe closes the
	// session.
	generation string
	remote     string
	// probing: a probe of this session is queued or running; the next
	// tick skips it rather than stacking a second one behind a slow tunnel.
	probing bool
}

// Setup adds the tunnel and proxy routes and the probe loop.
func Setup(mgr ctrl.Manager, r endpoint.Router, o Options) (*Server, error) {
	o.defaults()
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return nil, fmt.Errorf("creating tunnel client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("creating tunnel clientset: %w", err)
	}
	s := &Server{opts: o, client: direct, cache: mgr.GetClient(), auth: &authn.Authenticator{Client: cs}, authz: &authn.Authorizer{Client: cs}, events: mgr.GetEventRecorder("edgefleet-tunnel"), sessions: map[types.NamespacedName]*entry{}}
	if o.Peers != nil {
		s.peers = o.Peers.transport()
	}
	r.Handle("GET "+clusterjoin.TunnelPath, http.HandlerFunc(s.serveTunnel))
	r.Handle(clusterjoin.ClusterProxyPrefix, http.HandlerFunc(s.serveProxy))
	if err := mgr.Add(everyReplica(s.probeLoop)); err != nil {
		return nil, err
	}
	if err := mgr.Add(everyReplica(s.closeOnShutdown)); err != nil {
		return nil, err
	}
	return s, nil
}

// serveTunnel accepts an agent's websocket, authenticated by its cluster
// credential. One session per cluster: while a cluster's session answers
// its liveness probe (here, or on the replica holding its tunnel Lease), a
// second one is refused with 409, so a stolen credential cannot silently
// take over a live cluster's tunnel; a dead session is replaced.
func (s *Server) serveTunnel(w http.ResponseWriter, r *http.Request) {
	cluster, err := clusterregistration.ClusterOf(r.Context(), s.auth, s.client, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	key := types.NamespacedName{Namespace: cluster.Namespace, Name: cluster.Name}
	log := s.opts.Log.WithValues("Cluster", klog.KRef(key.Namespace, key.Name))
	old := s.session(key)
	if reason := s.liveTunnel(r.Context(), key, old); reason != "" {
		log.Info("Refused a second tunnel for a cluster whose tunnel is alive", "remote", r.RemoteAddr, "live", reason)
		// An Event on the Cluster surfaces it to admins: the credential is
		// in two places.
		s.events.Eventf(cluster, nil, corev1.EventTypeWarning, "TunnelTakeoverRefused", "ConnectTunnel",
			"Refused a second tunnel from %s: the cluster's tunnel is alive (%s). If the refused one is the real agent, revoke the credential with `edgefleet cluster revoke`.", r.RemoteAddr, reason)
		http.Error(w, fmt.Sprintf("cluster %s already has a live tunnel (%s): a second one is refused while the first answers its probes; if this agent is the real one, the other holder has this cluster's credential: revoke it with `edgefleet cluster revoke`", key, reason), http.StatusConflict)
		return
	}
	sess, err := tunnel.Accept(w, r)
	if err != nil {
		log.Info("Tunnel upgrade failed", "error", err.Error())
		return
	}
	e := &entry{sess: sess, transport: sess.Transport(), generation: clusterregistration.CredentialGeneration(cluster), remote: r.RemoteAddr}
	if !s.add(key, old, e) {
		log.Info("Closed a concurrent second tunnel for a cluster, or one that arrived during shutdown", "remote", r.RemoteAddr)
		return
	}
	log.Info("Agent tunnel connected", "remote", r.RemoteAddr)
	go s.probe(context.WithoutCancel(r.Context()), key, e)
	go func() {
		<-sess.Done()
		s.mu.Lock()
		if s.sessions[key] == e {
			delete(s.sessions, key)
			tunnelSessions.Set(float64(len(s.sessions)))
		}
		s.mu.Unlock()
		log.Info("Agent tunnel disconnected")
	}()
}

// add makes e key's session in place of old and closes old. It refuses
// (closing e) when another session won the race since old was read, or the
// replica is shutting down.
func (s *Server) add(key types.NamespacedName, old, e *entry) bool {
	s.mu.Lock()
	if s.closed || s.sessions[key] != old {
		s.mu.Unlock()
		_ = e.sess.Close()
		return false
	}
	s.sessions[key] = e
	tunnelSessions.Set(float64(len(s.sessions)))
	s.mu.Unlock()
	if old != nil {
		_ = old.sess.Close()
	}
	return true
}

// closeOnShutdown closes every session of this replica when the manager
// stops. The endpoint's http.Server.Shutdown does not close hijacked
// connections: the tunnels (and their goroutines) would outlive the server,
// and their agents would not reconnect to a replica that is up.
func (s *Server) closeOnShutdown(ctx context.Context) error {
	<-ctx.Done()
	s.mu.Lock()
	s.closed = true
	open := make([]*entry, 0, len(s.sessions))
	keys := make([]types.NamespacedName, 0, len(s.sessions))
	for k, e := range s.sessions {
		open = append(open, e)
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, e := range open {
		_ = e.sess.Close()
	}
	if len(open) > 0 {
		s.opts.Log.Info("Closed agent tunnels on shutdown", "count", len(open))
	}
	s.releaseLeases(keys)
	return nil
}

// liveTunnel says why key's tunnel counts as alive ("" if it does not): this
// replica's session answers a probe now, or another replica renewed the
// tunnel Lease recently (its probes decide there).
func (s *Server) liveTunnel(ctx context.Context, key types.NamespacedName, local *entry) string {
	if local != nil {
		// Short: the new agent waits for this answer within its
		// websocket handshake timeout (10 s).
		if err := s.probeOnce(ctx, local, 3*time.Second); err == nil {
			return "session from " + local.remote + " on this replica answers"
		}
		return ""
	}
	holder, err := s.tunnelHolder(ctx, key)
	if err != nil || holder == "" || holder == s.opts.Identity {
		return ""
	}
	return "held by replica " + holder + ", which probed it within " + s.opts.tunnelStale().String()
}

func (s *Server) session(key types.NamespacedName) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[key]
}

// Connected lists the clusters with a session on this replica.
func (s *Server) Connected() []types.NamespacedName {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]types.NamespacedName, 0, len(s.sessions))
	for k := range s.sessions {
		out = append(out, k)
	}
	return out
}

// everyReplica runs on every replica, not only the leader: sessions land on
// whichever replica the agent reached.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }
