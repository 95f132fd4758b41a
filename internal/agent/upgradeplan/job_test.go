package upgradeplan

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
)

func TestImage(t *testing.T) {
	for _, tc := range []struct{ image, version, want string }{
		{"rancher/k3s-upgrade", "v1.30.2+k3s1", "rancher/k3s-upgrade:v1.30.2-k3s1"},
		{"rancher/k3s-upgrade:v1.29.0-k3s1", "v1.30.2+k3s1", "rancher/k3s-upgrade:v1.29.0-k3s1"},
		{"registry:5000/k3s-upgrade", "v1", "registry:5000/k3s-upgrade:v1"},
		{"registry:5000/k3s-upgrade@sha256:abc", "v1", "registry:5000/k3s-upgrade@sha256:abc"},
		{"busybox", "", "busybox"},
	} {
		if got := Image(tc.image, tc.version); got != tc.want {
			t.Errorf("Image(%q, %q) = %q, want %q", tc.image, tc.version, got, tc.want)
		}
	}
}

func TestJobNameIsAValidNameAndUnique(t *testing.T) {
	hash := strings.Repeat("a", 56)
	a := JobName("k3s-agent", "node-with-a-rather-long-name-0001", hash)
	b := JobName("k3s-agent", "node-with-a-rather-long-name-0002", hash)
	for _, n := range []string{a, b} {
		if len(n) > 63 || strings.HasSuffix(n, "-") {
			t.Errorf("job name %q is not a valid name", n)
		}
	}
	if a == b {
		t.Errorf("two nodes got the same job name %q", a)
	}
	if got := JobName("p", "n", "h"); got != "apply-p-on-n-with-h" {
		t.Errorf("short name = %q, want SUC's apply-p-on-n-with-h", got)
	}
}

func TestHashChangesWithVersionServiceAccountAndSecrets(t *testing.T) {
	p := &upgradev1.Plan{Spec: upgradev1.PlanSpec{ServiceAccountName: "sa"}}
	base := Hash(p, "v1", nil)
	if Hash(p, "v1", nil) != base {
		t.Fatal("hash is not stable")
	}
	if Hash(p, "v2", nil) == base {
		t.Error("a new version keeps the hash: nodes would not be upgraded")
	}
	if Hash(p, "v1", []string{"s"}) == base {
		t.Error("a secret's content does not feed the hash")
	}
	q := p.DeepCopy()
	q.Spec.ServiceAccountName = "other"
	if Hash(q, "v1", nil) == base {
		t.Error("the service account does not feed the hash")
	}
	q = p.DeepCopy()
	q.Spec.Upgrade = &upgradev1.ContainerSpec{Image: "x", Args: []string{"changed"}}
	if Hash(q, "v1", nil) != base {
		t.Error("changing upgrade.args changed the hash; SUC does not re-run for that")
	}
}

func TestNewJob(t *testing.T) {
	p := &upgradev1.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: "k3s-agent", Namespace: "system-upgrade", UID: "u"},
		Spec: upgradev1.PlanSpec{
			ServiceAccountName: "system-upgrade",
			Prepare:            &upgradev1.ContainerSpec{Image: "rancher/k3s-upgrade", Args: []string{"prepare", "k3s-server"}},
			Upgrade:            &upgradev1.ContainerSpec{Image: "rancher/k3s-upgrade", Envs: []upgradev1.EnvVar{{Name: "A", Value: "b"}}},
			Secrets:            []upgradev1.SecretSpec{{Name: "creds", Path: "registry"}},
			Tolerations:        []upgradev1.Toleration{{Key: "CriticalAddonsOnly", Operator: "Exists"}},
		},
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "host-1"}}}
	j := NewJob(p, node, "v1.30.2+k3s1", "h", JobSettingsFromEnv(func(k string) string {
		return map[string]string{"SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT": "0", "SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS": "bad"}[k]
	}))
	if *j.Spec.BackoffLimit != 0 || *j.Spec.ActiveDeadlineSeconds != 600 {
		t.Errorf("backoffLimit %d, activeDeadlineSeconds %d; want the env's 0 and the default 600 for a malformed value", *j.Spec.BackoffLimit, *j.Spec.ActiveDeadlineSeconds)
	}
	if j.Labels[NodeLabel("k3s-agent")] != "h" || j.Labels[LabelController] != ControllerName || j.Labels[LabelVersion] != "v1.30.2-k3s1" {
		t.Errorf("labels %v", j.Labels)
	}
	ps := j.Spec.Template.Spec
	if ps.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != "host-1" {
		t.Error("the pod is not bound to the node's hostname")
	}
	if len(ps.InitContainers) != 1 || ps.InitContainers[0].Image != "rancher/k3s-upgrade:v1.30.2-k3s1" || ps.InitContainers[0].Args[0] != "prepare" {
		t.Errorf("prepare init container: %+v", ps.InitContainers)
	}
	up := ps.Containers[0]
	env := map[string]string{}
	for _, e := range up.Env {
		env[e.Name] = e.Value
	}
	if env["SYSTEM_UPGRADE_PLAN_LATEST_VERSION"] != "v1.30.2+k3s1" || env["SYSTEM_UPGRADE_PLAN_NAME"] != "k3s-agent" || env["A"] != "b" {
		t.Errorf("env %v", env)
	}
	if _, ok := env["SYSTEM_UPGRADE_NODE_NAME"]; !ok {
		t.Error("no SYSTEM_UPGRADE_NODE_NAME")
	}
	mounts := map[string]bool{}
	for _, m := range up.VolumeMounts {
		mounts[m.MountPath] = true
	}
	for _, m := range []string{"/host", "/run/system-upgrade/pod", "/run/system-upgrade/secrets/registry"} {
		if !mounts[m] {
			t.Errorf("no mount at %s: %v", m, mounts)
		}
	}
	if !ps.HostPID || !ps.HostNetwork || ps.ServiceAccountName != "system-upgrade" || ps.RestartPolicy != corev1.RestartPolicyNever {
		t.Error("pod is not host-level with the plan's service account")
	}
	if len(ps.Tolerations) != 2 || ps.Tolerations[0].Key != corev1.TaintNodeUnschedulable {
		t.Errorf("tolerations %v: want unschedulable first, then the plan's", ps.Tolerations)
	}
}

func TestValidate(t *testing.T) {
	ok := upgradev1.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: &upgradev1.ContainerSpec{Image: "i"}}
	for _, tc := range []struct {
		name, plan, want string
		mut              func(*upgradev1.PlanSpec)
	}{
		{"valid", "p", "", func(*upgradev1.PlanSpec) {}},
		{"no image", "p", "spec.upgrade.image is required", func(s *upgradev1.PlanSpec) { s.Upgrade = nil }},
		{"no version", "p", "set spec.version or spec.channel", func(s *upgradev1.PlanSpec) { s.Version = "" }},
		{"long name", strings.Repeat("p", 64), "DNS label", func(*upgradev1.PlanSpec) {}},
		{"both emptydir names", "p", "not both", func(s *upgradev1.PlanSpec) {
			t := true
			s.Drain = &upgradev1.DrainSpec{DeleteLocalData: &t, DeleteEmptydirData: &t}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := *ok.DeepCopy()
			tc.mut(&s)
			err := Validate(&upgradev1.Plan{ObjectMeta: metav1.ObjectMeta{Name: tc.plan}, Spec: s})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid plan refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestResolveChannel(t *testing.T) {
	var gotID string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotID = r.Header.Get("X-SUC-Cluster-ID")
		switch r.URL.Path {
		case "/v1-release/channels/stable":
			http.Redirect(w, r, "https://github.com/k3s-io/k3s/releases/tag/v1.30.2+k3s1", http.StatusFound)
		case "/direct/v1.31.0":
			w.WriteHeader(http.StatusOK)
		default:
			http.Error(w, "garbage", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	ctx := t.Context()
	v, err := ResolveChannel(ctx, srv.Client(), srv.URL+"/v1-release/channels/stable", "cid", "")
	if err != nil || v != "v1.30.2-k3s1" {
		t.Errorf("redirect: %q, %v; want v1.30.2-k3s1", v, err)
	}
	if gotID != "cid" {
		t.Errorf("X-SUC-Cluster-ID %q", gotID)
	}
	if v, err := ResolveChannel(ctx, srv.Client(), srv.URL+"/direct/v1.31.0", "", ""); err != nil || v != "v1.31.0" {
		t.Errorf("2xx: %q, %v", v, err)
	}
	if _, err := ResolveChannel(ctx, srv.Client(), srv.URL+"/broken", "", ""); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("a 500 answer: %v, want an error naming the status", err)
	}
	if _, err := ResolveChannel(ctx, srv.Client(), "file:///etc/passwd", "", ""); err == nil {
		t.Error("a file URL was accepted")
	}
}

func TestNodesThePlanCordonedStartFirst(t *testing.T) {
	p := &upgradev1.Plan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "plan"}}
	var nodes []*nodeState
	for i := range 20 {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i), UID: types.UID(fmt.Sprintf("u%d", i))}}
		if i == 13 {
			n.Annotations = map[string]string{AnnotationCordonedBy: "ns/p"}
		}
		nodes = append(nodes, &nodeState{node: n})
	}
	sortCandidates(nodes, p, "h")
	if nodes[0].node.Name != "n13" {
		t.Errorf("first candidate %s, want n13 which the plan cordoned already", nodes[0].node.Name)
	}
	again := append([]*nodeState(nil), nodes...)
	sortCandidates(again, p, "h")
	for i := range nodes {
		if nodes[i] != again[i] {
			t.Fatal("the order is not stable across passes")
		}
	}
}
