package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/kubedistro"
	"github.com/edgefleet/edgefleet/internal/pki"
	wire "github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/test/harness"
	"github.com/edgefleet/edgefleet/test/kubeimages"
	"github.com/edgefleet/edgefleet/test/netlab"
)

// distroNode is one machine of a test cluster of the edgefleet
// distribution: its network namespace and its root folder.
type distroNode struct {
	*netlab.Node
	root string
	cfg  wire.NodeConfig
}

// The built-in edgefleet distribution for real: one server and one agent,
// each `edgefleet-node kubernetes up` in its own network namespace with
// real etcd, control plane, containerd, runc, CNI and kubelets; images
// come from a loopback registry as a mirror of registry.k8s.io (air-gap).
// Both Nodes become Ready, a Deployment of a locally built image runs on
// the agent and answers over the pod network from the server's namespace.
func TestKubeDistro(t *testing.T) {
	bins := requireRealKubelets(t, "containerd", "runc", "nsenter", "curl")
	node := nodeBinary(t)
	reg := startNodeImageRegistry(t)

	lab := netlab.New(t, "10.97.0")
	server := &distroNode{Node: lab.AddNode("server")}
	agent := &distroNode{Node: lab.AddNode("agent")}

	s := newDistroSecrets(t)
	version := kubeletVersion(t, bins)
	common := wire.NodeConfig{
		Version: version, Server: "https://" + server.IP + ":6443", Token: s.token,
		Binaries: wire.Binaries{Dir: "/opt/kubernetes/bin"}, Registries: registryMirrors(reg.Host),
	}
	server.cfg = common
	server.cfg.Role, server.cfg.Init, server.cfg.NodeName, server.cfg.NodeIP = wire.RoleServer, true, "server", server.IP
	server.cfg.ClusterCA, server.cfg.EtcdCA, server.cfg.FrontProxyCA, server.cfg.ServiceAccountKey = *s.cluster, s.etcd, s.frontProxy, s.serviceAccounts.Key
	agent.cfg = common
	agent.cfg.Role, agent.cfg.NodeName, agent.cfg.NodeIP = wire.RoleAgent, "agent", agent.IP
	agent.cfg.ClusterCA = wire.KeyPair{Cert: s.cluster.Cert}
	agent.cfg.NodeLabels = map[string]string{"edgefleet.io/pool": "workers"}

	setup := func(n *distroNode) {
		n.root = shortTempDir(t) // the kubelet's sockets below it: at most 107 bytes
		n.prepareRoot(t, bins, reg.Port)
		t.Cleanup(func() {
			if t.Failed() {
				for _, c := range []string{"supervisor", "etcd", "kube-apiserver", "kube-controller-manager", "containerd", "kubelet", "kube-proxy"} {
					if b, err := os.ReadFile(filepath.Join(kubedistro.NewPaths(n.root).Logs(), c+".log")); err == nil {
						t.Logf("%s %s log (tail):\n%s", n.Name, c, tailString(string(b), 3000))
					}
				}
			}
			if out, err := n.Command(node, "kubernetes", "down", "--root", n.root).CombinedOutput(); err != nil {
				t.Errorf("%s: kubernetes down: %v: %s", n.Name, err, out)
			}
		})
	}
	for _, n := range []*distroNode{server, agent} {
		setup(n)
	}
	// The instruction exactly as formation renders it: the config path on
	// the machine, the root from the planner's environment.
	up := func(t *testing.T, n *distroNode) time.Duration {
		t.Helper()
		start := time.Now()
		cmd := n.Command(node, "kubernetes", "up", "--config", wire.ConfigPath, "--wait", "3m")
		cmd.Env = append(os.Environ(), kubedistro.RootEnv+"="+n.root)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: kubernetes up: %v\n%s", n.Name, err, out)
		}
		return time.Since(start)
	}
	kubectl := func(args ...string) (string, error) {
		full := append([]string{"--kubeconfig", kubedistro.NewPaths(server.root).AdminKubeconfig()}, args...)
		out, err := server.Command(filepath.Join(bins, "kubectl"), full...).CombinedOutput()
		return string(out), err
	}
	nodeReady := func(name string) error {
		out, err := kubectl("get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || strings.TrimSpace(out) != "True" {
			return fmt.Errorf("node %s not Ready: %v %s", name, err, out)
		}
		return nil
	}

	start := time.Now()
	upServer := up(t, server)
	eventually(t, 3*time.Minute, func() error { return nodeReady("server") })
	serverReady := time.Since(start)
	startAgent := time.Now()
	upAgent := up(t, agent)
	eventually(t, 3*time.Minute, func() error { return nodeReady("agent") })
	agentReady := time.Since(startAgent)
	t.Logf("server: up %s, Node Ready after %s; agent: up %s, Node Ready after %s", upServer.Round(time.Millisecond), serverReady.Round(time.Millisecond), upAgent.Round(time.Millisecond), agentReady.Round(time.Millisecond))

	t.Run("up again is a no-op and status tells what runs", func(t *testing.T) {
		pid := supervisorPID(t, agent.root)
		up(t, agent)
		if again := supervisorPID(t, agent.root); again != pid {
			t.Errorf("up with an unchanged config restarted the supervisor (%d → %d)", pid, again)
		}
		out, err := agent.Command(node, "kubernetes", "status", "--root", agent.root).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "kubelet") || !strings.Contains(string(out), "containerd") || strings.Contains(string(out), "false") {
			t.Errorf("status: %v\n%s", err, out)
		}
	})

	t.Run("the agent node has its labels and a pod CIDR", func(t *testing.T) {
		out, err := kubectl("get", "node", "agent", "-o", `jsonpath={.metadata.labels.edgefleet\.io/pool} {.spec.podCIDR}`)
		if err != nil || !strings.HasPrefix(out, "workers 10.42.") {
			t.Errorf("agent node: %v %q", err, out)
		}
	})

	var pods []podInfo
	answers := func(t *testing.T, p podInfo) {
		t.Helper()
		// From the server's namespace: across the lab bridge, by the
		// server's route to the agent's pod CIDR.
		var out []byte
		eventually(t, 30*time.Second, func() error {
			var err error
			out, err = server.Command("curl", "-sS", "-m", "2", "http://"+p.ip+":8080/").CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		if got := strings.TrimSpace(string(out)); got != "hello from "+p.name {
			t.Errorf("pod %s answered %q", p.name, got)
		}
	}
	t.Run("a workload from the local registry runs on the agent and answers over the pod network", func(t *testing.T) {
		manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      nodeSelector: {kubernetes.io/hostname: agent}
      automountServiceAccountToken: false
      containers:
      - name: hello
        image: edgefleet.test/hello:v1
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`
		f := filepath.Join(t.TempDir(), "hello.yaml")
		if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		applied := time.Now()
		if out, err := kubectl("apply", "-f", f); err != nil {
			t.Fatalf("apply: %v %s", err, out)
		}
		eventually(t, 3*time.Minute, func() error {
			out, err := kubectl("get", "pods", "-l", "app=hello", "-o", "json")
			if err != nil {
				return fmt.Errorf("%v %s", err, out)
			}
			pods = readyPods(out)
			if len(pods) != 2 {
				return fmt.Errorf("%d of 2 pods ready", len(pods))
			}
			return nil
		})
		t.Logf("2 pods Ready %s after the apply", time.Since(applied).Round(time.Millisecond))
		for _, p := range pods {
			if p.node != "agent" {
				t.Errorf("pod %s on %s", p.name, p.node)
			}
			answers(t, p)
		}
	})

	t.Run("kube-proxy: a Service's cluster IP reaches the pods", func(t *testing.T) {
		svc := `apiVersion: v1
kind: Service
metadata: {name: hello, namespace: default}
spec:
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
`
		f := filepath.Join(t.TempDir(), "svc.yaml")
		if err := os.WriteFile(f, []byte(svc), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := kubectl("apply", "-f", f); err != nil {
			t.Fatalf("apply: %v %s", err, out)
		}
		ip, err := kubectl("get", "service", "hello", "-o", "jsonpath={.spec.clusterIP}")
		if err != nil || !strings.HasPrefix(ip, "10.43.") {
			t.Fatalf("cluster IP %q %v", ip, err)
		}
		seen := map[string]bool{}
		eventually(t, time.Minute, func() error {
			out, err := server.Command("curl", "-sS", "-m", "2", "http://"+ip+"/").CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v %s", err, out)
			}
			seen[strings.TrimSpace(string(out))] = true
			if len(seen) < 2 {
				return fmt.Errorf("answers so far: %v", seen)
			}
			return nil
		})
		for a := range seen {
			if !strings.HasPrefix(a, "hello from hello-") {
				t.Errorf("the Service answered %q", a)
			}
		}
	})

	t.Run("cluster DNS: pods resolve Services and headless Services by name", func(t *testing.T) {
		if len(pods) == 0 {
			t.Skip("no workload")
		}
		// The init server deployed CoreDNS (upstream's image name, pulled
		// through the registry.k8s.io mirror) next to the bootstrap RBAC.
		eventually(t, 2*time.Minute, func() error {
			out, err := kubectl("-n", "kube-system", "get", "deployment", "coredns", "-o", "jsonpath={.status.readyReplicas}")
			if err != nil || out != "1" {
				return fmt.Errorf("coredns ready replicas %q: %v", out, err)
			}
			return nil
		})
		t.Logf("CoreDNS Ready %s after the server's up began", time.Since(start).Round(time.Millisecond))
		headless := `apiVersion: v1
kind: Service
metadata: {name: hello-pods, namespace: default}
spec:
  clusterIP: None
  selector: {app: hello}
  ports: [{port: 8080}]
`
		f := filepath.Join(t.TempDir(), "headless.yaml")
		if err := os.WriteFile(f, []byte(headless), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := kubectl("apply", "-f", f); err != nil {
			t.Fatalf("apply: %v %s", err, out)
		}
		svcIP, err := kubectl("get", "service", "hello", "-o", "jsonpath={.spec.clusterIP}")
		if err != nil {
			t.Fatal(err, svcIP)
		}
		podIPs := []string{pods[0].ip, pods[1].ip}
		sort.Strings(podIPs)
		// What a pod's own resolver (its resolv.conf from the kubelet:
		// nameserver 10.43.0.10, the cluster search domains) answers.
		resolve := func(name string) (string, error) {
			out, err := server.Command("curl", "-sS", "-m", "5", "-f", "http://"+pods[0].ip+":8080/resolve?name="+name).CombinedOutput()
			return strings.TrimSpace(string(out)), err
		}
		for name, want := range map[string]string{
			"hello.default.svc.cluster.local":      svcIP,
			"hello":                                svcIP, // the pod's namespace from its search path
			"kubernetes.default":                   "10.43.0.1",
			"hello-pods.default.svc.cluster.local": strings.Join(podIPs, " "), // headless: the pods' own addresses
			strings.ReplaceAll(pods[1].ip, ".", "-") + ".default.pod.cluster.local": pods[1].ip,
		} {
			eventually(t, time.Minute, func() error {
				got, err := resolve(name)
				if err != nil || got != want {
					return fmt.Errorf("a pod resolved %s to %q (%v), want %q", name, got, err, want)
				}
				return nil
			})
		}
		if got, err := resolve("no-such-service.default.svc.cluster.local"); err == nil {
			t.Errorf("a missing Service resolved to %q", got)
		}
	})

	t.Run("a crashed supervisor: up brings the node back, the pods run on untouched", func(t *testing.T) {
		if len(pods) == 0 {
			t.Skip("no workload")
		}
		pid := supervisorPID(t, agent.root)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// The components die with it (parent-death signal).
		eventually(t, 30*time.Second, func() error {
			if out, err := agent.Command("curl", "-sS", "-m", "1", "http://127.0.0.1:10248/healthz").CombinedOutput(); err == nil {
				return fmt.Errorf("the kubelet still answers: %s", out)
			}
			return nil
		})
		for _, p := range pods {
			answers(t, p) // the containers live on without their kubelet
		}
		up(t, agent)
		if supervisorPID(t, agent.root) == pid {
			t.Fatal("no new supervisor")
		}
		eventually(t, time.Minute, func() error { return nodeReady("agent") })
		out, err := kubectl("get", "pods", "-l", "app=hello", "-o", "json")
		if err != nil {
			t.Fatal(err, out)
		}
		after := readyPods(out)
		if len(after) != len(pods) {
			t.Fatalf("%d pods ready after the restart, %d before", len(after), len(pods))
		}
		for i := range after {
			if after[i] != pods[i] {
				t.Errorf("pod changed across the restart: %+v → %+v", pods[i], after[i])
			}
		}
		if strings.Contains(out, `"restartCount": 1`) {
			t.Errorf("a container restarted:\n%s", out)
		}
	})

	t.Run("a version change is an in-place upgrade of the node", func(t *testing.T) {
		newBins := kubeNodeBinDir(t, upgradeVersion)
		if err := os.Symlink(newBins, filepath.Join(agent.root, "opt/kubernetes-"+upgradeVersion)); err != nil {
			t.Fatal(err)
		}
		agent.cfg.Version, agent.cfg.Binaries.Dir = upgradeVersion, "/opt/kubernetes-"+upgradeVersion
		data, err := agent.cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(agent.root, wire.ConfigPath), data, 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		up(t, agent)
		eventually(t, 2*time.Minute, func() error {
			out, err := kubectl("get", "node", "agent", "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")
			if err != nil || out != upgradeVersion {
				return fmt.Errorf("kubelet version %q %v", out, err)
			}
			return nodeReady("agent")
		})
		t.Logf("agent upgraded to %s and Ready in %s", upgradeVersion, time.Since(start).Round(time.Millisecond))
		for _, p := range pods {
			answers(t, p)
		}
	})

	t.Run("memory per component", func(t *testing.T) {
		for _, n := range []*distroNode{server, agent} {
			var st kubedistro.State
			data, err := os.ReadFile(kubedistro.NewPaths(n.root).State())
			if err != nil || json.Unmarshal(data, &st) != nil {
				t.Fatalf("state: %v", err)
			}
			var parts []string
			for _, c := range st.Components {
				parts = append(parts, fmt.Sprintf("%s %d MiB", c.Name, rssMiB(c.PID)))
			}
			t.Logf("RSS on %s: %s", n.Name, strings.Join(parts, ", "))
		}
	})
	t.Run("three servers: two more join etcd, the API survives losing the first", func(t *testing.T) {
		var joined []*distroNode
		for i := 2; i <= 3; i++ {
			n := &distroNode{Node: lab.AddNode(fmt.Sprintf("server-%d", i))}
			n.cfg = server.cfg
			n.cfg.Init, n.cfg.NodeName, n.cfg.NodeIP = false, n.Name, n.IP
			n.cfg.Etcd = &wire.EtcdJoin{Endpoints: []string{"https://" + server.IP + ":2379"}}
			setup(n)
			d := up(t, n)
			t.Logf("%s joined: up %s", n.Name, d.Round(time.Millisecond))
			joined = append(joined, n)
		}
		members, err := os.ReadFile(filepath.Join(kubedistro.NewPaths(joined[1].root).Data, "run", "etcd-initial-cluster"))
		if err != nil || strings.Count(string(members), "=") != 3 {
			t.Fatalf("the third server joined etcd with %q (%v), want 3 members", members, err)
		}
		eventually(t, 2*time.Minute, func() error {
			for _, name := range []string{"server-2", "server-3"} {
				if err := nodeReady(name); err != nil {
					return err
				}
			}
			return nil
		})
		status := func(n *distroNode) string {
			out, _ := n.Command(node, "kubernetes", "status", "--root", n.root).CombinedOutput()
			return string(out)
		}
		if st := status(joined[0]); !strings.Contains(st, "etcd members: 3 (") {
			t.Errorf("status of %s:\n%s", joined[0].Name, st)
		}
		// One server upgraded in place while the others serve: its whole
		// control plane restarts on the new binaries, its etcd member (same
		// binary, same data) comes back; the cluster keeps 3 members.
		up2 := joined[0]
		newBins := upgradeBinDir(t, bins, kubeNodeBinDir(t, upgradeVersion))
		if err := os.Symlink(newBins, filepath.Join(up2.root, "opt/kubernetes-"+upgradeVersion)); err != nil {
			t.Fatal(err)
		}
		up2.cfg.Version, up2.cfg.Binaries.Dir = upgradeVersion, "/opt/kubernetes-"+upgradeVersion
		data, err := up2.cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(up2.root, wire.ConfigPath), data, 0o600); err != nil {
			t.Fatal(err)
		}
		d := up(t, up2)
		out, err := up2.Command(filepath.Join(bins, "kubectl"), "--kubeconfig", kubedistro.NewPaths(up2.root).AdminKubeconfig(), "get", "--raw", "/version").CombinedOutput()
		if err != nil || !strings.Contains(strings.ReplaceAll(string(out), " ", ""), `"gitVersion":"`+upgradeVersion+`"`) {
			t.Fatalf("%s's API after the upgrade: %v %s", up2.Name, err, out)
		}
		if st := status(joined[1]); !strings.Contains(st, "etcd members: 3 (") {
			t.Errorf("after %s's upgrade, status of %s:\n%s", up2.Name, joined[1].Name, st)
		}
		t.Logf("%s upgraded in place to %s (API, controllers, kubelet): up %s", up2.Name, upgradeVersion, d.Round(time.Millisecond))
		// The first server leaves (scale-down): it removes itself from etcd,
		// and the other servers' APIs go on serving, from the same data.
		if out, err := server.Command(node, "kubernetes", "down", "--leave-etcd", "--root", server.root).CombinedOutput(); err != nil {
			t.Fatalf("down --leave-etcd: %v %s", err, out)
		}
		if _, err := os.Stat(kubedistro.NewPaths(server.root).Etcd()); err == nil {
			t.Error("the server that left still has its etcd data")
		}
		for _, n := range joined {
			eventually(t, time.Minute, func() error {
				out, err := n.Command(filepath.Join(bins, "kubectl"), "--kubeconfig", kubedistro.NewPaths(n.root).AdminKubeconfig(),
					"get", "deployment", "hello", "-o", "jsonpath={.metadata.name}").CombinedOutput()
				if err != nil || string(out) != "hello" {
					return fmt.Errorf("%s's API: %v %s", n.Name, err, out)
				}
				return nil
			})
		}
		if st := status(joined[1]); !strings.Contains(st, "etcd members: 2 (") || strings.Contains(st, "(server,") {
			t.Errorf("after the first server left, status of %s:\n%s", joined[1].Name, st)
		}

		// A server dies (stopped without leaving: a powered-off machine's
		// member stays) and its replacement removes the dead member before
		// it joins (etcd.removeMembers, as formation renders it for a spare
		// replacing a remediated server): etcd refuses a new member while
		// one is unreachable.
		joinWith := func(name string, etcd wire.EtcdJoin) *distroNode {
			n := &distroNode{Node: lab.AddNode(name)}
			n.cfg = server.cfg
			n.cfg.Init, n.cfg.NodeName, n.cfg.NodeIP = false, n.Name, n.IP
			n.cfg.Etcd = &etcd
			setup(n)
			d := up(t, n)
			t.Logf("%s joined: up %s", n.Name, d.Round(time.Millisecond))
			return n
		}
		fourth := joinWith("server-4", wire.EtcdJoin{Endpoints: []string{"https://" + joined[0].IP + ":2379"}})
		if st := status(joined[0]); !strings.Contains(st, "etcd members: 3 (") {
			t.Fatalf("after server-4 joined, status of %s:\n%s", joined[0].Name, st)
		}
		dead := joined[1]
		if out, err := dead.Command(node, "kubernetes", "down", "--root", dead.root).CombinedOutput(); err != nil {
			t.Fatalf("stopping %s: %v %s", dead.Name, err, out)
		}
		replaced := time.Now()
		fifth := joinWith("server-5", wire.EtcdJoin{
			Endpoints:     []string{"https://" + joined[0].IP + ":2379", "https://" + fourth.IP + ":2379"},
			RemoveMembers: []string{"https://" + dead.IP + ":2380"},
		})
		t.Logf("dead %s's member removed and server-5 joined in %s", dead.Name, time.Since(replaced).Round(time.Millisecond))
		for _, n := range []*distroNode{joined[0], fourth, fifth} {
			if st := status(n); !strings.Contains(st, "etcd members: 3 (") || strings.Contains(st, dead.Name) {
				t.Errorf("after %s replaced the dead %s, status of %s:\n%s", fifth.Name, dead.Name, n.Name, st)
			}
		}
		eventually(t, time.Minute, func() error {
			out, err := fifth.Command(filepath.Join(bins, "kubectl"), "--kubeconfig", kubedistro.NewPaths(fifth.root).AdminKubeconfig(),
				"get", "deployment", "hello", "-o", "jsonpath={.metadata.name}").CombinedOutput()
			if err != nil || string(out) != "hello" {
				return fmt.Errorf("%s's API: %v %s", fifth.Name, err, out)
			}
			return nil
		})

		// Another server dies and nobody joins (a dead server scaled
		// down): a running server removes its member, restarting nothing
		// (the command formation appends to a survivor's plan).
		if out, err := fourth.Command(node, "kubernetes", "down", "--root", fourth.root).CombinedOutput(); err != nil {
			t.Fatalf("stopping %s: %v %s", fourth.Name, err, out)
		}
		before := status(joined[0])
		if out, err := joined[0].Command(node, "kubernetes", "remove-etcd-members", "--root", joined[0].root, "https://"+joined[0].IP+":2380").CombinedOutput(); err == nil || !strings.Contains(string(out), "own etcd member") {
			t.Fatalf("a server removing its own member: %v %s", err, out)
		}
		out, err = joined[0].Command(node, "kubernetes", "remove-etcd-members", "--root", joined[0].root, "https://"+fourth.IP+":2380").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "removed etcd members "+fourth.Name) {
			t.Fatalf("remove-etcd-members of the dead %s: %v %s", fourth.Name, err, out)
		}
		t.Logf("%s", strings.TrimSpace(string(out)))
		for _, n := range []*distroNode{joined[0], fifth} {
			if st := status(n); !strings.Contains(st, "etcd members: 2 (") || strings.Contains(st, fourth.Name) {
				t.Errorf("after the dead %s's member was removed, status of %s:\n%s", fourth.Name, n.Name, st)
			}
		}
		// The first line names the supervisor's pid and start time.
		firstLine := func(st string) string { line, _, _ := strings.Cut(st, "\n"); return line }
		if after := status(joined[0]); firstLine(after) != firstLine(before) {
			t.Errorf("%s's supervisor changed while removing a member (it must restart nothing): %q → %q", joined[0].Name, firstLine(before), firstLine(after))
		}
	})

	t.Run("down stops the components and the pods", func(t *testing.T) {
		if out, err := agent.Command(node, "kubernetes", "down", "--root", agent.root).CombinedOutput(); err != nil {
			t.Fatalf("down: %v %s", err, out)
		}
		if out, err := agent.Command("curl", "-sS", "-m", "2", "http://127.0.0.1:10248/healthz").CombinedOutput(); err == nil {
			t.Errorf("the kubelet still answers after down: %s", out)
		}
		cg := filepath.Join("/sys/fs/cgroup/pids", kubedistro.CgroupRoot(kubedistro.NewPaths(agent.root), "agent"))
		if procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs")); len(procs) > 0 {
			t.Errorf("processes left in the agent's cgroup: %s", procs)
		}
		if _, err := os.Stat(cg); err == nil {
			t.Error("the agent's cgroup is still there")
		}
		if out, err := agent.Command(node, "kubernetes", "status", "--root", agent.root).CombinedOutput(); !strings.Contains(string(out), "not running") {
			t.Errorf("status after down: %v %s", err, out)
		}
	})
}

// upgradeVersion is the second Kubernetes patch version the upgrade test
// moves a node to (kubelet and kubectl built by hack/build-kube-node.sh).
const upgradeVersion = "v1.37.2"

// kubeNodeBinDir builds (once, cached) kubelet and kubectl at version.
func kubeNodeBinDir(t *testing.T, version string) string {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(repo, "hack", "build-kube-node.sh"), version)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("building the %s node binaries: %v", version, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

type podInfo struct{ name, node, ip string }

// readyPods are the Ready pods, not terminating, of a `kubectl get pods -o
// json` list.
func readyPods(listJSON string) []podInfo {
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string
				DeletionTimestamp *string
			}
			Spec   struct{ NodeName string }
			Status struct {
				PodIP      string
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if json.Unmarshal([]byte(listJSON), &list) != nil {
		return nil
	}
	var out []podInfo
	for _, it := range list.Items {
		if it.Metadata.DeletionTimestamp != nil {
			continue // terminating: Ready until its containers stop
		}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				out = append(out, podInfo{it.Metadata.Name, it.Spec.NodeName, it.Status.PodIP})
			}
		}
	}
	return out
}

// prepareRoot makes the node's root folder what `edgefleet-node kubernetes
// up` expects: the Kubernetes binaries (bins) at /opt/kubernetes/bin and
// n.cfg at wire.ConfigPath; the registry's port is forwarded into the
// node's namespace.
func (n *distroNode) prepareRoot(t *testing.T, bins string, registryPort int) {
	t.Helper()
	if err := n.Forward(registryPort); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(n.root, "opt/kubernetes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bins, filepath.Join(n.root, "opt/kubernetes/bin")); err != nil {
		t.Fatal(err)
	}
	data, err := n.cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(n.root, wire.ConfigPath)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.root, wire.ConfigPath), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// distroSecrets are a new test cluster's CAs and bootstrap token.
type distroSecrets struct {
	cluster, etcd, frontProxy, serviceAccounts *wire.KeyPair
	token                                      string
}

func newDistroSecrets(t *testing.T) distroSecrets {
	t.Helper()
	ca := func(cn string) *wire.KeyPair {
		_, kp, err := pki.NewCA(cn)
		if err != nil {
			t.Fatal(err)
		}
		return &wire.KeyPair{Cert: string(kp.CertPEM), Key: string(kp.KeyPEM)}
	}
	tok := make([]byte, 11)
	_, _ = rand.Read(tok)
	h := hex.EncodeToString(tok)
	return distroSecrets{cluster: ca("cluster-ca"), etcd: ca("etcd-ca"), frontProxy: ca("front-proxy-ca"), serviceAccounts: ca("service-accounts"),
		token: h[:6] + "." + h[6:22]}
}

// registryMirrors pull registry.k8s.io and edgefleet.test through the
// loopback registry at host (air-gapped).
func registryMirrors(host string) *wire.Registries {
	return &wire.Registries{Mirrors: map[string][]string{
		"registry.k8s.io": {"http://" + host}, "edgefleet.test": {"http://" + host},
	}}
}

// requireRealKubelets skips where network namespaces are not available
// (netlab) and fails where a command the nodes need or the kubelet is
// missing; it returns the folder of the Kubernetes binaries.
func requireRealKubelets(t *testing.T, commands ...string) (bins string) {
	t.Helper()
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	for _, cmd := range commands {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s is missing: run hack/install-deps.sh", cmd)
		}
	}
	bins = harness.KubeBinDir(t)
	if _, err := os.Stat(filepath.Join(bins, "kubelet")); err != nil {
		t.Fatalf("no kubelet in %s: run hack/build-kube.sh", bins)
	}
	return bins
}

// startNodeImageRegistry is a loopback registry with the images the test
// nodes pull, built from test/kubeimages: pause:3.10 (the sandbox image)
// hello:v1 and CoreDNS (the cluster DNS every init server deploys).
func startNodeImageRegistry(t *testing.T) *kubeimages.Registry {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	reg := kubeimages.StartRegistry(t)
	reg.Push(t, "pause", "3.10", kubeimages.GoImage(t, filepath.Join(repo, "test/kubeimages/pause"), "pause"))
	reg.Push(t, "hello", "v1", kubeimages.GoImage(t, filepath.Join(repo, "test/kubeimages/hello"), "hello"))
	reg.Push(t, "coredns/coredns", kubedistro.CoreDNSVersion, kubeimages.CoreDNSImage(t, repo))
	return reg
}

func kubeletVersion(t *testing.T, bins string) string {
	out, err := exec.Command(filepath.Join(bins, "kubelet"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "Kubernetes"))
}

func supervisorPID(t *testing.T, root string) int {
	data, err := os.ReadFile(kubedistro.NewPaths(root).SupervisorPID())
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func rssMiB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	return 0
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
		time.Sleep(500 * time.Millisecond)
	}
}
