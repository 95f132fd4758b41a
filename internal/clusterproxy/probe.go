package clusterproxy

import (
	"context"
	"fmt"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"io"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// leaseRenewEvery limits tunnel Lease writes (clusterns.TunnelLeaseRenewEvery).
func (o *Options) leaseRenewEvery() time.Duration {
	return clusterns.TunnelLeaseRenewEvery(o.ProbeInterval, o.OfflineThreshold)
}

// probeLoop probes every session on this replica each ProbeInterval.
func (s *Server) probeLoop(ctx context.Context) error {
	t := time.NewTicker(s.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.mu.Lock()
		batch := make(map[types.NamespacedName]*entry, len(s.sessions))
		for k, e := range s.sessions {
			batch[k] = e
		}
		s.mu.Unlock()
		for k, e := range batch {
			go s.probe(ctx, k, e)
		}
	}
}

// probe sends GET /version through the tunnel to the downstream API server
// and, on success, renews the cluster's tunnel Lease.
func (s *Server) probe(ctx context.Context, key types.NamespacedName, e *entry) {
	log := s.opts.Log.WithValues("Cluster", key.String())
	if why := s.revoked(ctx, key, e); why != "" {
		log.Info("Closing the tunnel of a revoked credential", "reason", why)
		_ = e.sess.Close()
		return
	}
	if err := s.probeOnce(ctx, e, max(s.opts.ProbeInterval, 5*time.Second)); err != nil {
		log.V(1).Info("Tunnel probe failed", "error", err.Error())
		return
	}
	now := time.Now()
	s.mu.Lock()
	due := now.Sub(e.renewed) >= s.opts.leaseRenewEvery()
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.renewLease(ctx, key, now); err != nil {
		log.Error(err, "Renewing tunnel lease failed")
		return
	}
	s.mu.Lock()
	e.renewed = now
	s.mu.Unlock()
}

// probeOnce sends GET /version through the session.
func (s *Server) probeOnce(ctx context.Context, e *entry, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+clusterjoin.TunnelAPIServerHost+"/version", nil)
	resp, err := e.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /version: %s", resp.Status)
	}
	return nil
}

// revoked says why a session must close ("" if not): its Cluster is gone,
// or its credential generation was revoked since it connected.
func (s *Server) revoked(ctx context.Context, key types.NamespacedName, e *entry) string {
	var cluster fleetv1.Cluster
	err := s.cache.Get(ctx, key, &cluster)
	switch {
	case apierrors.IsNotFound(err):
		return "the Cluster was deleted"
	case err != nil:
		return ""
	case !cluster.DeletionTimestamp.IsZero():
		return "the Cluster is being deleted"
	case clusterregistration.CredentialGeneration(&cluster) != e.generation:
		return "the cluster's credentials were revoked"
	}
	return ""
}

func (s *Server) renewLease(ctx context.Context, key types.NamespacedName, now time.Time) error {
	// Derived, never read from status: see clusterns.Of.
	ns := clusterns.Name(key.Namespace, key.Name)
	t := metav1.NewMicroTime(now)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: clusterns.TunnelLease}}
	err := s.client.Get(ctx, client.ObjectKeyFromObject(lease), lease)
	if apierrors.IsNotFound(err) {
		lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &s.opts.Identity, RenewTime: &t, AcquireTime: &t}
		return s.client.Create(ctx, lease)
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = &s.opts.Identity
	lease.Spec.RenewTime = &t
	return s.client.Update(ctx, lease)
}
