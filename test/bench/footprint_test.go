package bench

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
	"github.com/edgefleet/edgefleet/test/harness"
)

// footprintIdle is how long the agent sits idle before its RSS is read.
const footprintIdle = 60 * time.Second

// footprintBundles: raw manifests, a Deployment kwok makes ready, and a
// local Helm chart (the agent's Helm path).
var footprintBundles = map[string]map[string]string{
	"settings": {
		"fleet.yaml":  "defaultNamespace: fp-settings\ntargets:\n- clusterSelector: {}\n",
		"cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: edge\n",
		"secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  token: not-a-secret\n",
		"sa.yaml":     "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n",
	},
	"web": {
		"fleet.yaml": "defaultNamespace: fp-web\ntargets:\n- clusterSelector: {}\n",
		"deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
`,
		"svc.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n",
	},
	"chart": {
		"fleet.yaml":              "defaultNamespace: fp-chart\ntargets:\n- clusterSelector: {}\nhelm:\n  chart: ./chart\n  values:\n    greeting: hello\n",
		"chart/Chart.yaml":        "apiVersion: v2\nname: hello\nversion: 0.1.0\n",
		"chart/values.yaml":       "greeting: hi\n",
		"chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
	},
}

// TestFootprint reports the binaries' sizes, an idle real agent's memory
// and the node agent's peak memory while it registers.
func TestFootprint(t *testing.T) {
	requireBench(t)
	ctx := context.Background()
	type size struct {
		name     string
		bytes    int64
		stripped bool
	}
	var sizes []size
	for _, name := range []string{"edgefleet", "edgefleet-agent", "edgefleet-node"} {
		p := benchBinary(t, name)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, size{name, st.Size(), isStripped(t, p)})
		t.Logf("%s: %.1f MiB (%s, stripped %v)", name, float64(st.Size())/(1<<20), p, isStripped(t, p))
	}

	m := startQuietManager(t)
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{Nodes: 1})[0]
	a := joinAgent(t, m, cl)
	repo := t.TempDir()
	for bundle, files := range footprintBundles {
		for name, data := range files {
			p := filepath.Join(repo, bundle, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := exec.Command(harness.EdgefleetBinary(t), "apply", "-n", agentNS, "--kubeconfig", m.Kubeconfig, "fp", repo).CombinedOutput(); err != nil {
		t.Fatalf("edgefleet apply: %v\n%s", err, out)
	}
	var notReady []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var l fleetv1.BundleDeploymentList
		if err := m.Client.List(ctx, &l, client.InNamespace(a.Namespace)); err != nil {
			t.Fatal(err)
		}
		notReady = notReady[:0]
		for _, bd := range l.Items {
			if !bd.Status.Ready || bd.Status.AppliedDeploymentID != bd.Spec.DeploymentID {
				notReady = append(notReady, fmt.Sprintf("%s: %+v", bd.Name, bd.Status.Conditions))
			}
		}
		if len(l.Items) == len(footprintBundles) && len(notReady) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d BundleDeployments after 3 minutes, not ready: %v", len(l.Items), notReady)
		}
		time.Sleep(time.Second)
	}
	readyAt := time.Now()
	time.Sleep(footprintIdle)
	rss, hwm := vmKiB(t, a.Pid(), "VmRSS"), vmKiB(t, a.Pid(), "VmHWM")
	t.Logf("edgefleet-agent after %s idle with %d bundles ready: VmRSS %d KiB, VmHWM %d KiB", time.Since(readyAt).Round(time.Second), len(footprintBundles), rss, hwm)

	nodeRSS, nodeRuns := nodeRegisterPeak(t, m)

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Footprint\n\n")
	w("Binary sizes are the files `make build` writes (`-trimpath -ldflags \"-s -w ...\"`, so stripped; the Stripped column reads the ELF symbol table to check). ")
	w("The agent is the `edgefleet-agent run` binary joined (token, CA checksum) to a real downstream cluster (etcd, kube-apiserver, controller-manager, ")
	w("scheduler, one kwok node) with %d bundles applied by `edgefleet apply` and ready: ConfigMap + Secret + ServiceAccount, ", len(footprintBundles))
	w("a 2-replica Deployment + Service (made ready by kwok), and a local Helm chart; default flags (heartbeat, drift monitor, tunnel up). ")
	w("Its memory is read from /proc after %.0f s idle: VmRSS (resident now) and VmHWM (peak since start, which includes the join and the first deploys). ", footprintIdle.Seconds())
	w("The node agent is `edgefleet-node register` (emulated TPM, its own hardware collection) against a real manager; its peak RSS is GNU time's maximum resident set, ")
	w("the largest of %d runs (a first registration and re-registrations).\n\n", nodeRuns)
	w("| binary | size | stripped |\n|---|---|---|\n")
	for _, s := range sizes {
		w("| `%s` | %.1f MiB | %v |\n", s.name, float64(s.bytes)/(1<<20), yesNo(s.stripped))
	}
	w("\n| process | measure | value | target |\n|---|---|---|---|\n")
	w("| edgefleet-agent, %.0f s idle, %d bundles | VmRSS | %.1f MiB | ≤ 40 MiB |\n", footprintIdle.Seconds(), len(footprintBundles), float64(rss)/1024)
	w("| edgefleet-agent | VmHWM (peak since start) | %.1f MiB | — |\n", float64(hwm)/1024)
	w("| edgefleet-node register | peak RSS | %.1f MiB | ≤ 20 MiB |\n", float64(nodeRSS)/1024)
	addSection(orderFootprint, b.String())
}

// nodeRegisterPeak runs `edgefleet-node register` three times (new machine,
// then re-registrations) under GNU time and returns the largest peak RSS
// in KiB.
func nodeRegisterPeak(t *testing.T, m *harness.Manager) (int64, int) {
	t.Helper()
	gnuTime, err := exec.LookPath("time")
	if err != nil || !fileExists(gnuTime) {
		t.Skip("GNU time (Debian package time) measures the node agent's peak RSS")
	}
	ctx := context.Background()
	ns := "fp-machines"
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mr := &machinesv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "fp", Namespace: ns}, Spec: machinesv1.MachineRegistrationSpec{
		MachineInventoryLabels: map[string]string{"cores": "${CPU/TotalCores}"},
		Config:                 machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true, EmulatedTPMSeed: -1}},
	}}
	if err := m.Client.Create(ctx, mr); err != nil {
		t.Fatal(err)
	}
	regURL := ""
	waitFor(t, 60*time.Second, "the registration URL", func() bool {
		if m.Client.Get(ctx, client.ObjectKeyFromObject(mr), mr) != nil {
			return false
		}
		regURL, _ = machineregistration.RegistrationURLFromSecret(ctx, m.Client, mr)
		return regURL != ""
	})
	cfg := machinereg.NodeConfig{
		Registration: machinereg.NodeRegistration{URL: regURL, CACert: string(managerCA(t, m)), EmulateTPM: true, EmulatedTPMSeed: -1},
		StateDir:     filepath.Join(t.TempDir(), "state"),
	}
	data, err := yaml.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	node := benchBinary(t, "edgefleet-node")
	const runs = 3
	var peak int64
	for i := range runs {
		out := filepath.Join(t.TempDir(), "rss")
		// The node registers without retries here: a failure is a failure.
		b, err := exec.Command(gnuTime, "-f", "%M", "-o", out, node, "register", "--config", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("edgefleet-node register: %v\n%s", err, b)
		}
		v, _ := os.ReadFile(out)
		kib, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err != nil {
			t.Fatalf("GNU time output %q: %v", v, err)
		}
		t.Logf("edgefleet-node register run %d: peak RSS %d KiB: %s", i+1, kib, strings.TrimSpace(string(b)))
		peak = max(peak, kib)
	}
	return peak, runs
}

// vmKiB reads a Vm* line of /proc/<pid>/status.
func vmKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the agent's memory: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func isStripped(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	defer f.Close()
	return f.Section(".symtab") == nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
