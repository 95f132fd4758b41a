package clusterproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterns"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// leaseRenewEvery limits tunnel Lease writes (clusterns.TunnelLeaseRenewEvery).
func (o *Options) leaseRenewEvery() time.Duration {
	return clusterns.TunnelLeaseRenewEvery(o.ProbeInterval, o.OfflineThreshold)
}

// DefaultProbeWorkers bounds the probes in flight. A probe is a round trip
// through a tunnel and, every few probes, a Lease write: 64 at once probe
// thousands of healthy tunnels per interval while dead ones time out.
const DefaultProbeWorkers = 64

// probeJob is one session to probe.
type probeJob struct {
	key types.NamespacedName
	e   *entry
}

// probeLoop probes every session on this replica each ProbeInterval with a
// fixed pool of ProbeWorkers goroutines. A session whose last probe has not
// finished is skipped, and a tick that finds every worker busy waits (the
// ticker drops the ticks it misses), so slow or silent tunnels can neither
// pile up goroutines nor queue probes without bound.
func (s *Server) probeLoop(ctx context.Context) error {
	jobs := make(chan probeJob)
	var workers sync.WaitGroup
	for range s.opts.ProbeWorkers {
		workers.Go(func() {
			for j := range jobs {
				s.probe(ctx, j.key, j.e)
				s.mu.Lock()
				j.e.probing = false
				s.mu.Unlock()
			}
		})
	}
	defer workers.Wait()
	defer close(jobs)
	t := time.NewTicker(s.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, j := range s.dueProbes() {
			select {
			case jobs <- j:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// dueProbes marks and returns the sessions with no probe in flight.
func (s *Server) dueProbes() []probeJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	due := make([]probeJob, 0, len(s.sessions))
	for k, e := range s.sessions {
		if !e.probing {
			e.probing = true
			due = append(due, probeJob{key: k, e: e})
		}
	}
	return due
}

// probe sends GET /version through the tunnel to the downstream API server
// and, on success, renews the cluster's tunnel Lease.
func (s *Server) probe(ctx context.Context, key types.NamespacedName, e *entry) {
	log := s.opts.Log.WithValues("Cluster", klog.KRef(key.Namespace, key.Name))
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

// releaseLeases gives up this replica's hold on the tunnel Leases of keys
// when it stops. Without it, another replica refuses the reconnecting agents
// (409: the holder looks alive) until the Leases go stale, so every rolling
// upgrade of the manager cut the kube-api proxy for about a minute. Only the
// holder is cleared: renewTime stays, so Connected does not flap. Bounded: a
// shutdown must not wait on a slow apiserver; a Lease not released goes stale
// as before.
func (s *Server) releaseLeases(keys []types.NamespacedName) {
	if s.client == nil || len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	work := make(chan types.NamespacedName)
	var wg sync.WaitGroup
	var released atomic.Int64
	for range min(len(keys), releaseWorkers) {
		wg.Go(func() {
			for key := range work {
				if s.releaseLease(ctx, key) == nil {
					released.Add(1)
				}
			}
		})
	}
	for _, k := range keys {
		select {
		case work <- k:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	s.opts.Log.Info("Released tunnel Leases on shutdown", "released", released.Load(), "of", len(keys))
}

const (
	releaseTimeout = 5 * time.Second
	releaseWorkers = 16
)

func (s *Server) releaseLease(ctx context.Context, key types.NamespacedName) error {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: clusterns.Name(key.Namespace, key.Name), Name: clusterns.TunnelLease}}
	if err := s.client.Get(ctx, client.ObjectKeyFromObject(lease), lease); err != nil {
		return err
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != s.opts.Identity {
		return nil // another replica took it over meanwhile
	}
	lease.Spec.HolderIdentity = nil
	// Update, not patch: a conflict means someone renewed it since.
	return s.client.Update(ctx, lease)
}
