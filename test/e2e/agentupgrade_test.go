package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/agentupgrade"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// Agent upgrades in waves (issue #20 scenario 5): the manager's agent image
// changes (a manager upgrade), its agent bundles move one cluster at a time
// to the new image, each new agent takes over the old one's stored
// credential and checks in; then a broken image halts at the first wave and
// is rolled back while the old agent keeps working.
//
// Dev clusters have no kubelet that could run an agent image, so the test
// plays kubelet (simulatedKubelet, a fake named as such): it watches the
// agent Deployment the agent bundle writes downstream and runs the agent
// binary that image stands for, replacing the old process only once the new
// one's /readyz answers (the Deployment's maxUnavailable 0 and readiness
// probe); an image whose agent cannot start leaves the old one running.
func TestAgentUpgradeWaves(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	const (
		img8      = "registry.local/edgefleet/edgefleet-agent:v0.8.0"
		img9      = "registry.local/edgefleet/edgefleet-agent:v0.9.0"
		imgBroken = "registry.local/edgefleet/edgefleet-agent:v0.9.1-broken"
		timeout   = "20s"
	)
	mgrBin := harness.BuildWithVersion(t, "edgefleet", "v0.9.0")
	images := map[string]string{ // image → the binary a kubelet would run from it
		img8: harness.BuildWithVersion(t, "edgefleet-agent", "v0.8.0"),
		img9: harness.BuildWithVersion(t, "edgefleet-agent", "v0.9.0"),
	}
	dataDir := filepath.Join(t.TempDir(), "manager")
	// Agents keep the manager's URL across its upgrades: same port.
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start := func(image string) *harness.Manager {
		return harness.StartManager(t, harness.ManagerOptions{Binary: mgrBin, DataDir: dataDir, Args: []string{"--listen", listen,
			"--manage-agents", "--agent-image", image, "--agent-upgrade-wave-size", "1", "--agent-upgrade-timeout", timeout}})
	}
	ctx := context.Background()
	m := start(img8)
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	clusters := harness.StartClusters(t, 3, harness.ClusterOptions{})
	_, token, _ := createToken(t, m, "1h")
	kubelets := make([]*simulatedKubelet, len(clusters))
	for i, cl := range clusters {
		kubelets[i] = startSimulatedKubelet(t, cl, images, fmt.Sprintf("upgrade-%d", i),
			[]string{"--server", m.URL, "--ca-checksum", m.CAChecksum}, token, img8)
	}
	c := m.Client
	// Each cluster's agent bundle is created at the image its agent runs.
	waitFor(t, 90*time.Second, "three clusters with agents on "+img8+" and agent bundles", func() bool {
		return countUpgradedClusters(ctx, c, func(cl *fleetv1.Cluster) bool {
			var b fleetv1.Bundle
			return cl.Status.Agent.Image == img8 &&
				c.Get(ctx, client.ObjectKey{Namespace: cl.Namespace, Name: agentupgrade.BundleName(cl.Name)}, &b) == nil &&
				b.Annotations[agentupgrade.ImageAnnotation] == img8
		}) == 3 && upgradeState(ctx, c)["state"] == agentupgrade.StateUpToDate
	})
	for _, cl := range clusters {
		var d appsv1.Deployment
		waitFor(t, 30*time.Second, "the agent bundle's Deployment downstream", func() bool {
			return cl.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.AgentDeployment}, &d) == nil
		})
	}

	t.Run("manager upgrade moves agents in waves of one", func(t *testing.T) {
		m.Stop()
		m = start(img9)
		c = m.Client
		began := time.Now()
		maxInFlight := 0
		waitFor(t, 3*time.Minute, "every agent on "+img9, func() bool {
			// One List: a consistent snapshot of every agent bundle.
			var bl fleetv1.BundleList
			inFlight := 0
			if c.List(ctx, &bl, client.InNamespace(fleetNS), client.HasLabels{agentupgrade.AgentBundleLabel}) == nil {
				for _, b := range bl.Items {
					if b.Annotations[agentupgrade.ImageAnnotation] == img9 && b.Annotations[agentupgrade.CheckedInAnnotation] != img9 {
						inFlight++
					}
				}
			}
			maxInFlight = max(maxInFlight, inFlight)
			return countUpgradedClusters(ctx, c, func(cl *fleetv1.Cluster) bool {
				ok := meta.FindStatusCondition(cl.Status.Conditions, fleetv1.AgentSupportedCondition)
				return cl.Status.Agent.Image == img9 && cl.Status.Agent.Version == "v0.9.0" && ok != nil && ok.Reason == fleetv1.AgentCurrentReason
			}) == 3 && upgradeState(ctx, c)["state"] == agentupgrade.StateUpToDate
		})
		t.Logf("3 clusters upgraded in waves of 1 in %s; at most %d cluster(s) waiting for their new agent at once", time.Since(began).Round(time.Second), maxInFlight)
		if maxInFlight > 1 {
			t.Errorf("%d clusters were upgrading at once, wave size is 1", maxInFlight)
		}
		var l fleetv1.ClusterList
		if err := c.List(ctx, &l, client.InNamespace(fleetNS)); err != nil || len(l.Items) != 3 {
			t.Fatalf("clusters after the upgrade: %d %v (a new agent must reuse the stored credential, not register anew)", len(l.Items), err)
		}
		for i, k := range kubelets {
			if got := k.runningImage(); got != img9 {
				t.Errorf("cluster %d: the kubelet runs %s, want %s", i, got, img9)
			}
		}
	})

	t.Run("a broken image halts at the first wave and rolls back", func(t *testing.T) {
		m.Stop()
		m = start(imgBroken)
		c = m.Client
		began := time.Now()
		var st map[string]string
		waitFor(t, 2*time.Minute, "the upgrade to "+imgBroken+" rolled back", func() bool {
			st = upgradeState(ctx, c)
			return st["state"] == agentupgrade.StateRolledBack && st["failedImage"] == imgBroken &&
				countUpgradedClusters(ctx, c, func(cl *fleetv1.Cluster) bool {
					var b fleetv1.Bundle
					return c.Get(ctx, client.ObjectKey{Namespace: cl.Namespace, Name: agentupgrade.BundleName(cl.Name)}, &b) == nil &&
						b.Annotations[agentupgrade.ImageAnnotation] == img9
				}) == 3
		})
		t.Logf("rolled back %s after it began: %s", time.Since(began).Round(time.Second), st["message"])
		// The downstream Deployment is back on the old image and the old
		// agents never stopped checking in.
		for i, cl := range clusters {
			var d appsv1.Deployment
			waitFor(t, 30*time.Second, "the Deployment back on "+img9, func() bool {
				return cl.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.AgentDeployment}, &d) == nil &&
					d.Spec.Template.Spec.Containers[0].Image == img9
			})
			if got := kubelets[i].runningImage(); got != img9 {
				t.Errorf("cluster %d: the kubelet runs %s, want %s", i, got, img9)
			}
		}
		// (Their tunnels may still be reconnecting after the manager's
		// restart: heartbeats are what counts.)
		waitFor(t, 30*time.Second, "three agents on "+img9+" checking in", func() bool {
			return countUpgradedClusters(ctx, c, func(cl *fleetv1.Cluster) bool {
				cond := meta.FindStatusCondition(cl.Status.Conditions, fleetv1.ConnectedCondition)
				return cl.Status.Agent.Image == img9 && cond != nil && (cond.Status == metav1.ConditionTrue || cond.Reason == fleetv1.TunnelDisconnectedReason)
			}) == 3
		})
		tried := 0
		for _, k := range kubelets {
			if k.started(imgBroken) {
				tried++
			}
		}
		if tried != 1 {
			t.Errorf("%d clusters tried %s, want 1 (the first wave)", tried, imgBroken)
		}
	})
}

func countUpgradedClusters(ctx context.Context, c client.Client, ok func(*fleetv1.Cluster) bool) int {
	var l fleetv1.ClusterList
	if c.List(ctx, &l, client.InNamespace(fleetNS)) != nil {
		return 0
	}
	n := 0
	for i := range l.Items {
		if ok(&l.Items[i]) {
			n++
		}
	}
	return n
}

func upgradeState(ctx context.Context, c client.Client) map[string]string {
	var cm corev1.ConfigMap
	if c.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: agentupgrade.StateConfigMap}, &cm) != nil {
		return nil
	}
	return cm.Data
}

// simulatedKubelet is a fake of the downstream kubelet and Deployment
// controller for the agent's Deployment only: dev clusters' kwok nodes run
// no containers. It runs the binary an image stands for as the agent,
// with the Deployment's $EDGEFLEET_AGENT_IMAGE, and follows the
// Deployment's rolling update: a new agent replaces the old one when its
// /readyz answers; an image with no binary is an agent that cannot start.
type simulatedKubelet struct {
	t        *testing.T
	cl       *harness.Cluster
	images   map[string]string
	clientID string
	args     []string
	dir      string

	mu      sync.Mutex
	current *agentProc
	tried   map[string]bool
}

type agentProc struct {
	image string
	cmd   *exec.Cmd
	ready string // /readyz URL
	done  chan struct{}
}

func startSimulatedKubelet(t *testing.T, cl *harness.Cluster, images map[string]string, clientID string, args []string, token, image string) *simulatedKubelet {
	k := &simulatedKubelet{t: t, cl: cl, images: images, clientID: clientID, args: args, dir: t.TempDir(), tried: map[string]bool{}}
	// The first agent is the import manifest's, with the registration token.
	p := k.run(image, token)
	if p == nil {
		t.Fatalf("no binary for %s", image)
	}
	k.current = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.loop(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		k.mu.Lock()
		defer k.mu.Unlock()
		k.current.stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(k.dir, "agents.log"))
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("agents of %s:\n%s", clientID, b)
		}
	})
	return k
}

func (k *simulatedKubelet) runningImage() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current.image
}

func (k *simulatedKubelet) started(image string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tried[image]
}

func (k *simulatedKubelet) run(image, token string) *agentProc {
	k.mu.Lock()
	k.tried[image] = true
	k.mu.Unlock()
	bin, ok := k.images[image]
	if !ok {
		return nil
	}
	port := freePort(k.t)
	args := append([]string{"run", "--kubeconfig", k.cl.KubeconfigPath(), "--client-id", k.clientID,
		"--heartbeat-interval", "1s", "--health-probe-address", fmt.Sprintf("127.0.0.1:%d", port)}, k.args...)
	if token != "" {
		args = append(args, "--token", token)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), clusterjoin.EnvAgentImage+"="+image)
	log, err := os.OpenFile(filepath.Join(k.dir, "agents.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		k.t.Error(err)
		return nil
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		k.t.Error(err)
		return nil
	}
	p := &agentProc{image: image, cmd: cmd, ready: fmt.Sprintf("http://127.0.0.1:%d/readyz", port), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

func (p *agentProc) stop() {
	if p == nil || p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *agentProc) isReady() bool {
	select {
	case <-p.done:
		return false
	default:
	}
	resp, err := http.Get(p.ready)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// loop follows the Deployment's pod template: a surge agent for a new
// image, swapped in once ready, dropped when the template goes back.
func (k *simulatedKubelet) loop(ctx context.Context) {
	var surge *agentProc
	defer func() { surge.stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		var d appsv1.Deployment
		if k.cl.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.AgentDeployment}, &d) != nil {
			continue
		}
		want := d.Spec.Template.Spec.Containers[0].Image
		k.mu.Lock()
		cur := k.current
		k.mu.Unlock()
		switch {
		case want == cur.image:
			// Rolled back (or never changed): the new ReplicaSet goes.
			surge.stop()
			surge = nil
		case surge == nil || surge.image != want:
			surge.stop()
			surge = k.run(want, "")
			if surge == nil {
				surge = &agentProc{image: want, done: closed()} // cannot start: never ready
			}
		case surge.isReady():
			k.mu.Lock()
			k.current = surge
			k.mu.Unlock()
			cur.stop()
			surge = nil
		}
	}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
