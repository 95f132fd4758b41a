package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// TestReadmeWalkthrough follows README's "Join a cluster and deploy to it"
// as a new user would: create the namespace, `edgefleet token create`, run
// every join command it prints as printed (the curl | kubectl form; the
// agent command with its placeholders filled in; `kubectl apply -f URL` on a
// machine that trusts the manager's CA), then `edgefleet apply myapp DIR`
// with a directory that has no fleet.yaml: the app must end up running on
// the joined cluster, through the token's default ClusterGroup.
func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	ctx := context.Background()
	m := harness.StartManager(t, harness.ManagerOptions{})
	edge := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	bin := harness.EdgefleetBinary(t)
	_, kubectlErr := os.Stat(kubectlBin)
	haveKubectl := kubectlErr == nil
	managerEnv := append(os.Environ(), "KUBECONFIG="+m.Kubeconfig)

	// kubectl create namespace fleet-local
	if haveKubectl {
		kubectl(t, m.Kubeconfig, nil, "create", "namespace", "fleet-local")
	} else if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet-local"}}); err != nil {
		t.Fatal(err)
	}

	// bin/edgefleet token create -n fleet-local
	cmd := exec.Command(bin, "token", "create", "-n", "fleet-local")
	cmd.Env = managerEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("edgefleet token create: %v\n%s", err, out)
	}
	printed := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for _, prefix := range []string{"curl ", "edgefleet agent ", "kubectl apply -f https://"} {
			if strings.HasPrefix(line, prefix) {
				printed[prefix] = line
			}
		}
	}
	if len(printed) != 3 || !strings.Contains(string(out), "ClusterGroup fleet-local/default") {
		t.Fatalf("token create does not print the three join commands and the group:\n%s", out)
	}
	if idx := strings.Index(string(out), "curl "); idx > strings.Index(string(out), "kubectl apply -f https://") {
		t.Fatalf("the first join command printed must be the one that works without trusting the CA first:\n%s", out)
	}

	// 1. The curl | kubectl form, in bash, exactly as printed, against the
	// edge cluster. Without a kubectl binary, the curl half runs as printed
	// and its manifest is applied server-side, as kubectl apply would.
	curlLine := printed["curl "]
	curlHalf, _, ok := strings.Cut(curlLine, " | kubectl apply -f -")
	if !ok {
		t.Fatalf("curl command does not pipe into kubectl apply: %s", curlLine)
	}
	if haveKubectl {
		c := exec.Command("bash", "-c", curlLine)
		c.Env = append(os.Environ(), "KUBECONFIG="+edge.KubeconfigPath(), "PATH="+filepath.Dir(kubectlBin)+":"+os.Getenv("PATH"))
		if o, err := c.CombinedOutput(); err != nil {
			t.Fatalf("printed curl command: %v\n%s", err, o)
		}
	} else {
		manifest, err := exec.Command("bash", "-c", curlHalf).Output()
		if err != nil {
			t.Fatalf("printed curl command: %v", err)
		}
		applyManifest(t, edge.Client, manifest)
	}
	var boot corev1.Secret
	if err := edge.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.BootstrapSecret}, &boot); err != nil {
		t.Fatalf("the import manifest applied by the printed command left no bootstrap Secret: %v", err)
	}
	// The same command with a CA other than the manager's fails: it really
	// verifies.
	if o, err := exec.Command("bash", "-c", strings.Replace(curlHalf, "-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----' 'MIIB", 1)).CombinedOutput(); err == nil {
		t.Fatalf("curl with a broken CA succeeded: %s", o)
	}

	// 2. `kubectl apply -f URL`, printed for machines that trust the CA:
	// works once the CA is trusted (SSL_CERT_FILE), fails before.
	if haveKubectl {
		ca := filepath.Join(t.TempDir(), "ca.pem")
		var cm corev1.ConfigMap
		if err := m.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.EndpointConfigMap}, &cm); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ca, []byte(cm.Data["ca.crt"]), 0o600); err != nil {
			t.Fatal(err)
		}
		args := strings.Fields(printed["kubectl apply -f https://"])[1:]
		c := exec.Command(kubectlBin, append([]string{"--kubeconfig", edge.KubeconfigPath()}, args...)...)
		if o, err := c.CombinedOutput(); err == nil {
			t.Errorf("kubectl apply -f URL succeeded without trusting the manager's CA: %s", o)
		}
		c = exec.Command(kubectlBin, append([]string{"--kubeconfig", edge.KubeconfigPath()}, args...)...)
		c.Env = append(os.Environ(), "SSL_CERT_FILE="+ca)
		if o, err := c.CombinedOutput(); err != nil {
			t.Errorf("kubectl apply -f URL with the manager's CA trusted: %v\n%s", err, o)
		}
	}

	// 3. The agent command, placeholders filled in (no pod runs in this
	// API-only cluster, so the agent runs here, as README's next line does).
	agentLine := strings.Replace(printed["edgefleet agent "], "<downstream kubeconfig>", edge.KubeconfigPath(), 1)
	agentLine = strings.Replace(agentLine, " [--label env=prod]", " --label env=dev", 1)
	if strings.ContainsAny(agentLine, "<>[]") {
		t.Fatalf("agent command has placeholders left: %s", agentLine)
	}
	agentArgs := strings.Fields(agentLine)[1:]
	agent := exec.Command(bin, agentArgs...)
	var agentOut bytes.Buffer
	agent.Stdout, agent.Stderr = &agentOut, &agentOut
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("edgefleet agent output:\n%s", agentOut.String())
		}
	})

	// bin/edgefleet apply myapp ./path/to/fleet-repo — no fleet.yaml, no
	// targets: Fleet's default target, the "default" ClusterGroup.
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: myapp\ndata:\n  hello: edge\n"})
	apply := exec.Command(bin, "apply", "myapp", repo)
	apply.Env = managerEnv
	if o, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("edgefleet apply: %v\n%s", err, o)
	}
	waitFor(t, 90*time.Second, "myapp's ConfigMap on the joined cluster", func() bool {
		var cm corev1.ConfigMap
		return edge.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "myapp"}, &cm) == nil && cm.Data["hello"] == "edge"
	})
	var clusters fleetv1.ClusterList
	if err := m.Client.List(ctx, &clusters, client.InNamespace("fleet-local")); err != nil || len(clusters.Items) != 1 {
		t.Fatalf("clusters in fleet-local: %d (%v)", len(clusters.Items), err)
	}
	if c := clusters.Items[0]; c.Labels[fleetv1.GroupLabelPrefix+fleetv1.DefaultClusterGroup] != "true" || c.Labels["env"] != "dev" {
		t.Errorf("joined cluster labels %v: want the default group's label and env=dev", c.Labels)
	}
	var g fleetv1.ClusterGroup
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: "fleet-local", Name: fleetv1.DefaultClusterGroup}, &g); err != nil {
		t.Errorf("ClusterGroup fleet-local/default: %v", err)
	}
}

// applyManifest applies a multi-document manifest server-side, as kubectl
// apply --server-side would, for machines without kubectl.
func applyManifest(t *testing.T, c client.Client, manifest []byte) {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if err == io.EOF {
				return
			}
			t.Fatalf("decoding the import manifest: %v", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Patch(context.Background(), &u, client.Apply, client.FieldOwner("kubectl"), client.ForceOwnership); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), fmt.Sprint(err))
		}
	}
}
