package clusterproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/tunnel"
)

// countingTransport counts the probes in flight through a tunnel.
type countingTransport struct {
	next                http.RoundTripper
	inFlight, most, all *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	c.all.Add(1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	return c.next.RoundTrip(r)
}

// TestProbesAreBounded: real tunnels whose agents never answer GET /version
// are probed every few milliseconds for many ticks; the probes in flight
// never exceed ProbeWorkers and the replica's goroutines stay flat, where a
// goroutine per session per tick would grow by sessions × ticks.
func TestProbesAreBounded(t *testing.T) {
	const sessions, workers = 12, 3
	agentCtx, stopAgents := context.WithCancel(context.Background())
	defer stopAgents()
	// The agents' API servers hang until the agent stops: a dead tunnel.
	silent := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-agentCtx.Done():
		}
	})

	var clusters []client.Object
	for i := range sessions {
		clusters = append(clusters, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: fmt.Sprintf("c%d", i)}})
	}
	scheme := runtime.NewScheme()
	if err := fleetv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// A fake API (controller-runtime's): what is tested is the prober's
	// concurrency, and a probe that never answers never writes a Lease.
	api := fake.NewClientBuilder().WithScheme(scheme).WithObjects(clusters...).Build()
	s := &Server{
		opts:     Options{Log: logr.Discard(), ProbeInterval: 5 * time.Millisecond, OfflineThreshold: time.Hour, ProbeWorkers: workers},
		client:   api,
		cache:    api,
		sessions: map[types.NamespacedName]*entry{},
	}
	var inFlight, most, all atomic.Int64
	added := make(chan bool, sessions)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := tunnel.Accept(w, r)
		if err != nil {
			return
		}
		e := &entry{sess: sess, transport: countingTransport{next: sess.Transport(), inFlight: &inFlight, most: &most, all: &all}}
		key := types.NamespacedName{Namespace: "fleet", Name: r.URL.Query().Get("cluster")}
		added <- s.add(key, s.session(key), e)
	}))
	defer srv.Close()
	wsURL := "wss" + strings.TrimPrefix(srv.URL, "https")
	tlsCfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	for i := range sessions {
		c := &tunnel.Client{URL: fmt.Sprintf("%s?cluster=c%d", wsURL, i), TLS: tlsCfg, Log: logr.Discard(), Handler: silent}
		go func() { _ = c.Run(agentCtx) }()
		select {
		case ok := <-added:
			if !ok {
				t.Fatal("tunnel refused")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("tunnel not accepted")
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.probeLoop(ctx) }()
	// Probes time out after 5 s; within a second every worker holds a
	// silent tunnel and 200 ticks have passed.
	time.Sleep(200 * time.Millisecond)
	early := goruntime.NumGoroutine()
	time.Sleep(800 * time.Millisecond)
	late := goruntime.NumGoroutine()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m != workers {
		t.Errorf("at most %d probes in flight, want exactly ProbeWorkers=%d (all busy with silent tunnels)", m, workers)
	}
	if n := all.Load(); n != workers {
		t.Errorf("%d probes started over 160 ticks, want %d: a tick must skip sessions whose probe has not finished", n, workers)
	}
	// Goroutines are flat while ticks go by (a goroutine per session per
	// tick would add ~sessions × 160 here); the slack covers the runtime's
	// own.
	if late > early+5 {
		t.Errorf("goroutines grew from %d to %d while every probe hung", early, late)
	}
	t.Logf("probes in flight at most %d of %d sessions; goroutines %d → %d", most.Load(), sessions, early, late)
}
