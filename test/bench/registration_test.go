package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/go-logr/logr"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	nodereg "github.com/edgefleet/edgefleet/internal/node/register"
	"github.com/edgefleet/edgefleet/internal/node/swtpmtest"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

const (
	stormEmulated = 1000
	stormSwtpm    = 3
	stormNS       = "machines"
	// stormAttempts is how often one node tries: `edgefleet-node register`
	// exits on an error and its systemd unit starts it again after a pause
	// that doubles, so a node retries, but a handful of times, not forever.
	stormAttempts = 5
)

// stormNode is one machine of the storm and what happened to it.
type stormNode struct {
	cfg     *machinereg.NodeConfig
	data    map[string]string
	swtpm   bool
	latency time.Duration // first attempt → success (or the last failure)
	retries int
	errs    []error
	name    string
}

// TestRegistrationStorm: 1,000 machines with emulated TPMs and 3 with real
// TPMs (swtpm) register with one MachineRegistration at the same moment.
func TestRegistrationStorm(t *testing.T) {
	requireBench(t)
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tpms := make([]*swtpmtest.TPM, stormSwtpm)
	var wg sync.WaitGroup
	for i := range tpms {
		wg.Go(func() { tpms[i] = swtpmtest.Start(t, swtpmtest.Options{EKCert: true}) })
	}
	m := startQuietManager(t)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: stormNS}}); err != nil {
		t.Fatal(err)
	}
	// tpm (the default) for the real TPMs; emulate-tpm also lets the
	// emulated ones in, each with its own random seed.
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "storm", Namespace: stormNS}, Spec: machinesv1.MachineRegistrationSpec{
		MachineName:            "node-${System Information/Serial Number}",
		MachineInventoryLabels: map[string]string{"cores": "${CPU/TotalCores}", "site": "${System Information/Product Name}"},
		Config:                 machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
		// swtpm's EKs are made up: trusted on first use, explicitly.
		TPM:         machinesv1.TPMTrustPolicy{TrustOnFirstUse: true},
		MaxMachines: stormEmulated + stormSwtpm,
	}}
	if err := m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	regURL := ""
	waitFor(t, 60*time.Second, "the registration URL to be served", func() bool {
		if m.Client.Get(ctx, client.ObjectKeyFromObject(mr), mr) != nil {
			return false
		}
		if regURL, _ = machineregistration.RegistrationURLFromSecret(ctx, m.Client, mr); regURL == "" {
			return false
		}
		resp, err := m.HTTP.Get(regURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusUnauthorized
	})
	ca := string(managerCA(t, m))

	nodes := make([]*stormNode, 0, stormEmulated+stormSwtpm)
	stateRoot := t.TempDir()
	for i := range stormEmulated + stormSwtpm {
		reg := machinereg.NodeRegistration{URL: regURL, CACert: ca, EmulateTPM: true, EmulatedTPMSeed: -1}
		if i >= stormEmulated {
			reg = machinereg.NodeRegistration{URL: regURL, CACert: ca, Auth: "tpm", TPMSocket: tpms[i-stormEmulated].Socket}
		}
		nodes = append(nodes, &stormNode{
			cfg:   &machinereg.NodeConfig{Registration: reg, StateDir: filepath.Join(stateRoot, fmt.Sprintf("node-%04d", i))},
			swtpm: i >= stormEmulated,
			data: map[string]string{
				"System Information/Serial Number": fmt.Sprintf("SN%06d", i),
				"System Information/UUID":          fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
				"System Information/Manufacturer":  "Acme",
				"System Information/Product Name":  fmt.Sprintf("site-%d", i%20),
				"CPU/TotalCores":                   "4",
				"Runtime/Arch":                     "amd64",
			},
		})
	}

	// The observer sees the inventories appear through a watch, so the clock
	// stops when the 1,003rd exists without polling lists.
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	observer, err := cache.New(cfg, cache.Options{Scheme: server.Scheme(), DefaultNamespaces: map[string]cache.Config{stormNS: {}}})
	if err != nil {
		t.Fatal(err)
	}
	var invCount atomic.Int64
	allExist := make(chan time.Time, 1)
	inf, err := observer.GetInformer(ctx, &machinesv1.MachineInventory{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inf.AddEventHandler(countHandler{n: &invCount, want: int64(len(nodes)), done: allExist}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = observer.Start(ctx) }()
	if !observer.WaitForCacheSync(ctx) {
		t.Fatal("observer cache did not sync")
	}

	procs0 := sampleProcs(m.DataDir)
	start := make(chan struct{})
	var done sync.WaitGroup
	for _, n := range nodes {
		done.Go(func() {
			<-start
			t0 := time.Now()
			backoff := time.Second
			for attempt := 1; ; attempt++ {
				res, err := nodereg.Register(ctx, n.cfg, nodereg.Options{Data: n.data})
				n.latency = time.Since(t0)
				if err == nil {
					n.name = res.InventoryName
					return
				}
				n.errs = append(n.errs, fmt.Errorf("attempt %d after %s: %w", attempt, n.latency.Round(time.Millisecond), err))
				if attempt == stormAttempts || errors.Is(err, nodereg.ErrReprovisioningNeeded) {
					return
				}
				n.retries++
				time.Sleep(backoff)
				backoff *= 2
			}
		})
	}
	t0 := time.Now()
	close(start)
	done.Wait()
	registered := time.Since(t0)
	var tAll time.Duration
	select {
	case at := <-allExist:
		tAll = at.Sub(t0)
	case <-time.After(30 * time.Second):
		t.Errorf("the observer saw %d of %d MachineInventories", invCount.Load(), len(nodes))
	}
	procs1 := sampleProcs(m.DataDir)

	var lat, swLat []time.Duration
	var failed, retries, retried int
	var problems []string
	names := map[string]bool{}
	for i, n := range nodes {
		retries += n.retries
		if n.retries > 0 {
			retried++
		}
		for _, e := range n.errs {
			problems = append(problems, fmt.Sprintf("node %d: %v", i, e))
		}
		if n.name == "" {
			failed++
			continue
		}
		names[n.name] = true
		if n.swtpm {
			swLat = append(swLat, n.latency)
		} else {
			lat = append(lat, n.latency)
		}
	}
	all := append(append([]time.Duration(nil), lat...), swLat...)
	managerCPU := procs1["edgefleet"].cpuSec - procs0["edgefleet"].cpuSec
	apiCPU := procs1["kube-apiserver"].cpuSec - procs0["kube-apiserver"].cpuSec
	t.Logf("%d+%d registrations: all inventories after %s (last node answered after %s); latency p50 %s p99 %s max %s; swtpm %v; %d failed, %d retries on %d nodes; manager CPU %.1f s peak RSS %s; kube-apiserver CPU %.1f s peak RSS %s",
		stormEmulated, stormSwtpm, secs(tAll), secs(registered), ms(quantile(all, .5)), ms(quantile(all, .99)), ms(quantile(all, 1)),
		swLat, failed, retries, retried, managerCPU, mib(procs1["edgefleet"].hwmKiB), apiCPU, mib(procs1["kube-apiserver"].hwmKiB))
	if len(problems) > 0 {
		shown := problems[:min(len(problems), 50)]
		t.Logf("%d failed attempts (first %d):\n%s", len(problems), len(shown), strings.Join(shown, "\n"))
	}
	if failed > 0 {
		t.Fatalf("%d of %d machines did not register", failed, len(nodes))
	}
	if len(names) != len(nodes) {
		t.Fatalf("%d machines got %d distinct inventories", len(nodes), len(names))
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Machine registration storm (%d emulated TPMs + %d swtpm)\n\n", stormEmulated, stormSwtpm)
	w("A real manager (`edgefleet server`, embedded control plane, `--unsafe-no-fsync`) and one MachineRegistration ")
	w("(`tpm` policy with `emulate-tpm: true`, a label template and a machine-name template). %d machines with emulated TPMs ", stormEmulated)
	w("(each its own random seed and state directory) and %d with real TPM 2.0 simulators (swtpm, EK certificate, ", stormSwtpm)
	w("credential activation) start `register` at the same instant. They run the node's own registration library ")
	w("(`internal/node/register`, as `edgefleet-node register` does: own TLS connection and websocket each, hardware data given) ")
	w("in the benchmark process, which shares the 2 cores with the manager and its kube-apiserver. ")
	w("Each registration creates a MachineInventory, its plan Secret, ServiceAccount, Role, RoleBinding, a bound token and a status update. ")
	w("A node that fails retries after 1 s, 2 s, 4 s, 8 s (as a restarted systemd unit would); retries are counted, and an error that survives them fails the benchmark. ")
	w("The manager lets 16 registrations write at once; the others wait their turn, and one that waited 20 s is told the manager is busy before anything is written ")
	w("(docs/machines.md): those are the retries. Without that limit every registration wrote at once, the kube-apiserver timed most of them out, ")
	w("machines gave up after their 30 s deadline while the manager kept writing for them, and 822 of 1,003 machines had not registered after 4 minutes.\n\n")
	w("- **All inventories exist**: start → the 1,003rd MachineInventory seen by a watch on the manager's API.\n")
	w("- **Latency**: per machine, its first attempt → its config received (retries included).\n")
	w("- CPU: user+system seconds during the storm; peak RSS: VmHWM over the process lifetime.\n\n")
	w("| machines | all inventories exist | p50 | p99 | max | swtpm machines | errors | retries | manager CPU | manager peak RSS | kube-apiserver CPU | kube-apiserver peak RSS | target |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	sw := make([]string, len(swLat))
	for i, d := range swLat {
		sw[i] = ms(d)
	}
	w("| %d | %s | %s | %s | %s | %s | %d | %d (on %d machines) | %.1f s | %s | %.1f s | %s | 1,000 in ≤ 60 s, 0 errors |\n",
		len(nodes), secs(tAll), ms(quantile(all, .5)), ms(quantile(all, .99)), ms(quantile(all, 1)), strings.Join(sw, ", "),
		failed, retries, retried, managerCPU, mib(procs1["edgefleet"].hwmKiB), apiCPU, mib(procs1["kube-apiserver"].hwmKiB))
	addSection(orderRegistration, b.String())
}

// countHandler counts MachineInventory adds and reports when want exist.
type countHandler struct {
	n    *atomic.Int64
	want int64
	done chan time.Time
}

func (h countHandler) OnAdd(any, bool) {
	if h.n.Add(1) == h.want {
		h.done <- time.Now()
	}
}
func (countHandler) OnUpdate(any, any) {}
func (countHandler) OnDelete(any)      {}
