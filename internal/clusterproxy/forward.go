package clusterproxy

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httputil"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/clusterns"
)

// caller authenticates the request's caller. A peer replica's request
// carries the caller it forwarded (forwardedBy names that replica); anyone
// else is authenticated by token or client certificate, and any
// X-Edgefleet-* headers they sent are dropped.
func (s *Server) caller(r *http.Request) (u *authn.User, forwardedBy string, err error) {
	u, forwardedBy, peer, err := peerIdentity(r, func(c *x509.Certificate) bool {
		return s.opts.Peers != nil && s.opts.Peers.trusts(r.Context(), c)
	})
	if peer {
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", authn.ErrUnauthenticated, err)
		}
		return u, forwardedBy, nil
	}
	u, err = s.auth.Authenticate(r.Context(), r)
	return u, "", err
}

// notConnected is the answer when no replica holds a live tunnel.
func notConnected(key types.NamespacedName) string {
	return fmt.Sprintf("cluster %s is not connected to any manager replica: its agent has no tunnel (check the Cluster's Connected condition and the agent's logs)", key)
}

// forward sends a request for a cluster whose tunnel this replica does not
// hold to the replica that does, as named by the cluster's tunnel Lease.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, key types.NamespacedName, user *authn.User, forwardedBy string) {
	if forwardedBy != "" {
		// One hop only: the Lease moved, or the tunnel closed meanwhile.
		writeStatus(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster %s: replica %s forwarded this request to %s, which holds no tunnel for it any more (the agent reconnected elsewhere or went away); retry", key, forwardedBy, s.opts.Identity))
		return
	}
	holder, err := s.tunnelHolder(r.Context(), key)
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster %s: finding the replica holding its tunnel: %v", key, err))
		return
	}
	if holder == "" || holder == s.opts.Identity || s.peers == nil {
		writeStatus(w, http.StatusServiceUnavailable, notConnected(key))
		return
	}
	addr, ok := HolderAddress(holder)
	if !ok {
		writeStatus(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster %s: its tunnel is held by replica %q, whose identity has no address to forward to (run every replica of this version, with --advertise-address if needed)", key, holder))
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Path, RawPath and query stay as the caller sent them.
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = addr
			pr.Out.Host = addr
			setForwardedIdentity(pr.Out.Header, user, s.opts.Identity)
		},
		Transport:     s.peers,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, http.StatusBadGateway, fmt.Sprintf("cluster %s: its tunnel is held by manager replica %s, which this replica (%s) cannot reach: %v (replicas must reach each other at their --advertise-address)", key, holder, s.opts.Identity, err))
		},
	}
	rp.ServeHTTP(w, r)
}

// tunnelHolder returns the holderIdentity of the cluster's tunnel Lease when
// it was renewed recently enough to count as up, else "".
func (s *Server) tunnelHolder(ctx context.Context, key types.NamespacedName) (string, error) {
	// Derived, never read from status: see clusterns.Of.
	ns := clusterns.Name(key.Namespace, key.Name)
	var lease coordinationv1.Lease
	err := s.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: clusterns.TunnelLease}, &lease)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading Lease %s/%s: %w", ns, clusterns.TunnelLease, err)
	}
	if lease.Spec.HolderIdentity == nil || lease.Spec.RenewTime == nil || time.Since(lease.Spec.RenewTime.Time) > s.opts.tunnelStale() {
		return "", nil
	}
	return *lease.Spec.HolderIdentity, nil
}
