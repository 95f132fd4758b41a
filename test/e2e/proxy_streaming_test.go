package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/devcluster"
	"github.com/edgefleet/edgefleet/test/harness"
)

// criLine is one line of a container log in the CRI format kwok reads.
func criLine(text string) string {
	return time.Now().UTC().Format(time.RFC3339Nano) + " stdout F " + text + "\n"
}

// TestKubectlStreamingThroughTheProxy runs kubectl logs, exec (output, exit
// status, stdin), attach and port-forward against a pod of a joined cluster
// through https://<manager>/k8s/clusters/<ns>.<name>/, with both of
// kubectl's upgrade protocols (websocket, then SPDY), and checks that exec
// is decided by downstream RBAC for the impersonated caller. kwok serves
// the kubelet API of the cluster's fake node: logs and attach read a file,
// exec runs on this host, port-forward reaches an HTTP server of this test.
func TestKubectlStreamingThroughTheProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	if _, err := os.Stat(kubectlBin); err != nil {
		t.Skip("needs " + kubectlBin)
	}
	t.Parallel()
	ctx := context.Background()

	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	webSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "served to %s %s", r.Method, r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = webSrv.Serve(web) }()
	t.Cleanup(func() { _ = webSrv.Close() })
	work := t.TempDir()
	logsFile := filepath.Join(work, "pod.log")
	if err := os.WriteFile(logsFile, []byte(criLine("first line")+criLine("second line")), 0o600); err != nil {
		t.Fatal(err)
	}
	execDir := filepath.Join(work, "exec")
	if err := os.Mkdir(execDir, 0o700); err != nil {
		t.Fatal(err)
	}

	m, err := harness.LaunchManager(t, harness.ManagerOptions{Args: []string{"--tunnel-probe-interval", "1s"}})
	if err != nil {
		t.Fatal(err)
	}
	cl := harness.StartClusters(t, 1, harness.ClusterOptions{Nodes: 1, KubeletAPI: &devcluster.KubeletAPI{
		LogsFile:     logsFile,
		ExecDir:      execDir,
		PortForwards: map[int32]string{8080: web.Addr().String()},
	}})[0]
	if err := m.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, token, _ := createToken(t, m, "1h")
	var ks corev1.Namespace
	if err := cl.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	startJoinAgent(t, cl, join.Options{Server: m.URL, Token: token, CAChecksum: m.CAChecksum})

	// The pod, created downstream directly: kwok marks it Running on its node.
	down := kubernetes.NewForConfigOrDie(cl.RESTConfig())
	waitFor(t, 30*time.Second, "the default ServiceAccount downstream", func() bool {
		_, err := down.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app"}, Spec: corev1.PodSpec{
		NodeName:   "kwok-node-0",
		Containers: []corev1.Container{{Name: "main", Image: "example.invalid/app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
	}}
	if _, err := down.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var name string
	waitFor(t, 60*time.Second, "the cluster Connected through its tunnel", func() bool {
		c := clusterByClientID(ctx, m.Client, string(ks.UID))
		if c == nil || connectedReason(c) != "True/"+fleetv1.AgentConnectedReason {
			return false
		}
		name = c.Name
		return true
	})
	waitFor(t, 30*time.Second, "the pod Running", func() bool {
		p, err := down.CoreV1().Pods("default").Get(ctx, "app", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
	out, err := exec.Command(harness.EdgefleetBinary(t), "kubeconfig", name, "-n", fleetNS, "--kubeconfig", m.Kubeconfig).Output()
	if err != nil {
		t.Fatalf("edgefleet kubeconfig: %v", err)
	}
	proxyKC := filepath.Join(work, "proxy.kubeconfig")
	if err := os.WriteFile(proxyKC, out, 0o600); err != nil {
		t.Fatal(err)
	}

	// logs: the file kwok maps, in full and with --tail.
	if got := kubectl(t, proxyKC, nil, "logs", "app"); got != "first line\nsecond line\n" {
		t.Fatalf("kubectl logs through the proxy = %q", got)
	}
	if got := kubectl(t, proxyKC, nil, "logs", "app", "--tail=1"); got != "second line\n" {
		t.Fatalf("kubectl logs --tail=1 through the proxy = %q", got)
	}

	for _, proto := range []struct {
		name, upgrade string
		env           []string
	}{
		{"websocket", "websocket", nil},
		{"spdy", "SPDY/3.1", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}},
	} {
		t.Run(proto.name, func(t *testing.T) {
			k := streamingKubectl{t: t, kubeconfig: proxyKC, env: proto.env, verbose: true}

			// exec: real output, the command's failure, its directory.
			stdout, stderr, err := k.run(nil, "exec", "app", "--", "sh", "-c", "echo hi; pwd; echo oops >&2; exit 3")
			if stdout != "hi\n"+execDir+"\n" || !strings.Contains(stderr, "oops") {
				t.Fatalf("exec: stdout %q stderr %q", stdout, stderr)
			}
			// kwok wraps the command's exit error, so kubelet's streaming
			// code reports it as an internal error naming the status
			// instead of kubectl exiting with 3.
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || !strings.Contains(stderr, "exit status 3") {
				t.Fatalf("exec of a failing command: err %v, stderr %q: want kubectl to fail and report exit status 3", err, stderr)
			}
			// exec -i: stdin reaches the command.
			if stdout, stderr, err := k.run([]byte("ping\n"), "exec", "-i", "app", "--", "sh", "-c", `read line; echo "got $line"`); err != nil || stdout != "got ping\n" {
				t.Fatalf("exec -i: %v, stdout %q, stderr %q", err, stdout, stderr)
			}

			// port-forward: a local port reaches the test's HTTP server.
			pf := k.start("port-forward", "pod/app", ":8080")
			port := pf.waitFor(regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`))
			resp, err := http.Get("http://127.0.0.1:" + port + "/through/" + proto.name)
			if err != nil {
				t.Fatalf("GET through port-forward: %v\nkubectl: %s", err, pf.out.String())
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "served to GET /through/"+proto.name {
				t.Fatalf("GET through port-forward: %d %q", resp.StatusCode, body)
			}
			pf.stop()

			// attach: lines appended to the file after attaching arrive.
			at := k.start("attach", "app", "-c", "main")
			line := "attached over " + proto.name
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(at.out.String(), line) {
				if time.Now().After(deadline) {
					t.Fatalf("attach did not stream %q; kubectl:\n%s", line, at.out.String())
				}
				f, err := os.OpenFile(logsFile, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = f.WriteString(criLine(line))
				_ = f.Close()
				time.Sleep(300 * time.Millisecond)
			}
			at.stop()
			k.assertUpgrades(proto.upgrade, 4)
		})
	}

	// Exec is decided by downstream RBAC for the impersonated caller.
	mcs := kubernetes.NewForConfigOrDie(restConfig(t, m.Kubeconfig))
	if _, err := mcs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "dev"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := mcs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "dev", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	devKC := tokenKubeconfig(t, proxyKC, tr.Status.Token)
	dev := streamingKubectl{t: t, kubeconfig: devKC}
	// The manager-side right to use this cluster's proxy first; downstream
	// RBAC then decides, for the mapped name edgefleet:sa:default:dev.
	grantProxy(ctx, t, m.Client, "default", "dev", fleetNS)
	if _, stderr, err := dev.run(nil, "exec", "app", "--", "echo", "hi"); err == nil || !strings.Contains(stderr, "forbidden") || !strings.Contains(stderr, "edgefleet:sa:default:dev") {
		t.Fatalf("exec by a manager user without downstream rights: err %v, stderr %q: want forbidden for edgefleet:sa:default:dev", err, stderr)
	}
	if _, err := down.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "exec"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := down.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "exec"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "exec"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "edgefleet:sa:default:dev"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "exec allowed after a downstream RoleBinding", func() bool {
		stdout, _, err := dev.run(nil, "exec", "app", "--", "echo", "allowed")
		return err == nil && stdout == "allowed\n"
	})
	if _, stderr, err := dev.run(nil, "logs", "app"); err == nil || !strings.Contains(stderr, "forbidden") {
		t.Fatalf("logs without pods/log rights: err %v, stderr %q: want forbidden", err, stderr)
	}
}

// streamingKubectl runs kubectl; verbose (-v=8) logs the response headers
// of each upgrade and a fallback from websockets to SPDY.
type streamingKubectl struct {
	t          *testing.T
	kubeconfig string
	env        []string
	verbose    bool
	stderrs    []*syncBuf
}

func (k *streamingKubectl) cmd(args ...string) *exec.Cmd {
	if k.verbose {
		args = append([]string{"-v=8"}, args...)
	}
	cmd := exec.Command(kubectlBin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), k.env...)
	return cmd
}

func (k *streamingKubectl) run(stdin []byte, args ...string) (stdout, stderr string, err error) {
	k.t.Helper()
	cmd := k.cmd(args...)
	var out bytes.Buffer
	errBuf := &syncBuf{}
	cmd.Stdout, cmd.Stderr = &out, errBuf
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	k.stderrs = append(k.stderrs, errBuf)
	err = cmd.Start()
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			k.t.Fatalf("kubectl %s hung; stdout %q stderr %q", strings.Join(args, " "), out.String(), errBuf.String())
		}
	}
	return out.String(), errBuf.String(), err
}

// background is a kubectl that runs until stopped (port-forward, attach).
type background struct {
	t   *testing.T
	cmd *exec.Cmd
	out *syncBuf
}

func (k *streamingKubectl) start(args ...string) *background {
	k.t.Helper()
	cmd := k.cmd(args...)
	b := &background{t: k.t, cmd: cmd, out: &syncBuf{}}
	cmd.Stdout, cmd.Stderr = b.out, b.out
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	k.stderrs = append(k.stderrs, b.out)
	k.t.Cleanup(b.stop)
	return b
}

func (b *background) waitFor(re *regexp.Regexp) string {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(b.out.String()))
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				return m[1]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("kubectl %v printed no %q:\n%s", b.cmd.Args, re, b.out.String())
	return ""
}

func (b *background) stop() {
	if b.cmd.ProcessState == nil {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
	}
}

// assertUpgrades checks that at least n commands upgraded their connection
// and that all of them used protocol: kubectl silently falls back from
// websockets to SPDY when the websocket upgrade fails.
func (k *streamingKubectl) assertUpgrades(protocol string, n int) {
	k.t.Helper()
	upgraded := 0
	for _, e := range k.stderrs {
		s := e.String()
		if strings.Contains(strings.ToLower(s), "fallback") {
			k.t.Fatalf("kubectl fell back to another protocol:\n%s", s)
		}
		if !strings.Contains(s, "101 Switching Protocols") {
			continue
		}
		upgraded++
		if !strings.Contains(s, "Upgrade: "+protocol+"\n") {
			k.t.Fatalf("kubectl upgraded without %q:\n%s", "Upgrade: "+protocol, s)
		}
	}
	if upgraded < n {
		k.t.Fatalf("%d kubectl commands upgraded their connection, want %d", upgraded, n)
	}
}

// tokenKubeconfig copies a kubeconfig with its user replaced by a bearer token.
func tokenKubeconfig(t *testing.T, from, token string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.ClientCertificate, ai.ClientKey, ai.ClientCertificateData, ai.ClientKeyData = "", "", nil, nil
		ai.Exec, ai.AuthProvider, ai.Username, ai.Password = nil, nil, "", ""
		ai.Token, ai.TokenFile = token, ""
	}
	path := filepath.Join(t.TempDir(), "token.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// grantProxy binds the manager's ServiceAccount saNS/saName to ClusterRole
// edgefleet-cluster-proxy in clusterNS, the manager-side right to use the
// kube-api proxy of that namespace's clusters.
func grantProxy(ctx context.Context, t *testing.T, c client.Client, saNS, saName, clusterNS string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: clusterNS, Name: "proxy-" + saNS + "-" + saName},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterproxy.ProxyClusterRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNS, Name: saName}}}
	if err := c.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
}
