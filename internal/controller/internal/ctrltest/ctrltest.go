// Package ctrltest runs controllers against a real kube-apiserver for the
// controller packages' integration tests.
package ctrltest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/edgefleet/edgefleet/internal/logging"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/test/harness"
)

// Setup registers a controller with a manager.
type Setup func(ctrl.Manager) error

// Start starts a kube-apiserver with edgefleet's CRDs and a manager running
// the given controllers, both stopped when the test ends, and returns an
// uncached client. Set EDGEFLEET_TEST_LOG=1 to see the controllers' logs.
func Start(t *testing.T, setups ...Setup) client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a kube-apiserver; skipped with -short")
	}
	c := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	log := logr.Discard()
	if os.Getenv("EDGEFLEET_TEST_LOG") != "" {
		l, err := logging.New(logging.Options{Level: "debug"}, os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		log = l
	}
	ctrl.SetLogger(log)
	skip := true
	mgr, err := ctrl.NewManager(c.RESTConfig(), ctrl.Options{
		Scheme:                 server.Scheme(),
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range setups {
		if err := s(mgr); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	})
	return c.Client
}

// Eventually retries check until it returns nil or timeout passes, then
// fails the test with the last error.
func Eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
