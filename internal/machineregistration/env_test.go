package machineregistration_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	machineregctrl "github.com/edgefleet/edgefleet/internal/controller/machineregistration"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/test/harness"
)

// env is a real kube-apiserver with the CRDs, a controller-runtime manager
// running the registration controller, and the registration route served
// over HTTPS on loopback.
type env struct {
	c     client.Client
	url   *url.URL
	caPEM string
	ns    string
	// apiServer is the kube-apiserver's own address, which machines must
	// not be given.
	apiServer string
}

func startEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	cfg := cl.RESTConfig()
	cfg.QPS, cfg.Burst = 500, 1000
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 server.Scheme(),
		Logger:                 testr.NewWithOptions(t, testr.Options{Verbosity: 0}),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)}, // one manager per test in this process
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	if err := machineregistration.Setup(context.Background(), mgr, mux, machineregistration.Options{ExternalURL: u, CACertPEM: []byte(ca)}); err != nil {
		t.Fatal(err)
	}
	if err := (&machineregctrl.Reconciler{ExternalURL: u}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	// The endpoint's manager API proxy, as the manager serves it: machines'
	// kubeconfigs point here, not at the kube-apiserver.
	proxy, err := clusterregistration.ManagerAPIProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(clusterjoin.ManagerAPIPrefix+"/", proxy)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	ns := "machines"
	if err := cl.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return &env{c: cl.Client, url: u, caPEM: ca, ns: ns, apiServer: cfg.Host}
}

// registration creates a MachineRegistration and waits until its URL is
// served (a plain GET is no longer 401).
func (e *env) registration(t *testing.T, name string, spec machinesv1.MachineRegistrationSpec) string {
	t.Helper()
	ctx := context.Background()
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Spec: spec}
	if err := e.c.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	var regURL string
	eventually(t, 30*time.Second, func() error {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(mr), mr); err != nil {
			return err
		}
		u, err := machineregistration.RegistrationURLFromSecret(ctx, e.c, mr)
		if err != nil {
			return err
		}
		regURL = u
		resp, err := insecureGet(regURL)
		if err != nil {
			return err
		}
		if resp == http.StatusUnauthorized {
			return fmt.Errorf("token not served yet")
		}
		return nil
	})
	if !strings.HasPrefix(regURL, e.url.String()+"/v1/machines/register/") {
		t.Fatalf("registrationURL %q is not under %s/v1/machines/register/", regURL, e.url)
	}
	return regURL
}

func insecureGet(u string) (int, error) {
	srvClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	resp, err := srvClient.Get(u)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// nodeConfig is an edgefleet-node config for one machine with its own state
// directory and SMBIOS data.
func (e *env) nodeConfig(t *testing.T, regURL string, reg machinereg.NodeRegistration) *machinereg.NodeConfig {
	t.Helper()
	reg.URL = regURL
	reg.CACert = e.caPEM
	return &machinereg.NodeConfig{Registration: reg, StateDir: filepath.Join(t.TempDir(), "state")}
}

// fakeDMI writes SMBIOS files as /sys/class/dmi/id has them.
func fakeDMI(t *testing.T, fields map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range fields {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) inventories(t *testing.T) []machinesv1.MachineInventory {
	t.Helper()
	list := &machinesv1.MachineInventoryList{}
	if err := e.c.List(context.Background(), list, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}
