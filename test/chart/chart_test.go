// Package chart_test checks the Helm chart charts/edgefleet: helm lint through
// the Helm SDK, values.schema.json refusing bad values, and every rendered
// object accepted by a real kube-apiserver (server-side dry-run create after
// the chart's CRDs are installed for real), which validates them against
// the apiserver's own schemas without downloading any.
package chart_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/edgefleet/edgefleet/test/harness"
)

const chartDir = "../../charts/edgefleet"

const namespace = "edgefleet-system"

func baseValues() map[string]any {
	return map[string]any{"externalURL": "https://fleet.example.com:8443"}
}

// allOn turns on every optional part of the chart.
func allOn() map[string]any {
	v := baseValues()
	v["agentImage"] = "registry.local:5000/edgefleet/edgefleet-agent@sha256:" + strings.Repeat("ab", 32)
	v["image"] = map[string]any{"repository": "registry.local:5000/edgefleet/edgefleet", "digest": "sha256:" + strings.Repeat("cd", 32)}
	v["metrics"] = map[string]any{"serviceMonitor": map[string]any{"enabled": true, "scraperServiceAccount": "monitoring/prometheus"}}
	v["networkPolicy"] = map[string]any{"enabled": true, "ingressFrom": []any{map[string]any{"namespaceSelector": map[string]any{}}}}
	v["service"] = map[string]any{"type": "NodePort", "port": 8443, "nodePort": 30443}
	v["extraArgs"] = []any{"--join-rate-limit=5"}
	v["tls"] = map[string]any{"caCert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "caKey": "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
		"userClientCA": userClientCA}
	return v
}

// userClientCA stands for a cluster's client CA (tls.userClientCA).
const userClientCA = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"

func TestChartLints(t *testing.T) {
	for name, vals := range map[string]map[string]any{"defaults": baseValues(), "all on": allOn()} {
		t.Run(name, func(t *testing.T) {
			res := lint.RunAll(chartDir, vals, namespace)
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

// Bad values are refused with a message naming the problem, before
// anything reaches a cluster.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"no external URL", func(v map[string]any) { delete(v, "externalURL") }, "externalURL is required"},
		{"http external URL", func(v map[string]any) { v["externalURL"] = "http://fleet.example.com" }, "externalURL"},
		{"negative replicas", func(v map[string]any) { v["replicas"] = -1 }, "replicas"},
		{"unknown value", func(v map[string]any) { v["replica"] = 3 }, "replica"},
		{"CA without key", func(v map[string]any) { v["tls"] = map[string]any{"caCert": "-----BEGIN CERTIFICATE-----\n"} }, "go together"},
		{"CA not PEM", func(v map[string]any) { v["tls"] = map[string]any{"caCert": "MIIB", "caKey": "x"} }, "caCert"},
		{"user client CA not PEM", func(v map[string]any) { v["tls"] = map[string]any{"userClientCA": "MIIB"} }, "userClientCA"},
		{"bad digest", func(v map[string]any) { v["image"] = map[string]any{"repository": "r", "digest": "latest"} }, "digest"},
		{"scraper without namespace", func(v map[string]any) {
			v["metrics"] = map[string]any{"serviceMonitor": map[string]any{"scraperServiceAccount": "prometheus"}}
		}, "scraperServiceAccount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := baseValues()
			tc.edit(v)
			_, err := render(t, v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// The chart's crds/ are the generated CRDs (make generate copies them).
func TestChartCRDsAreCurrent(t *testing.T) {
	gen, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(gen) == 0 {
		t.Fatalf("no generated CRDs: %v", err)
	}
	shipped, _ := filepath.Glob(chartDir + "/crds/*.yaml")
	if len(shipped) != len(gen) {
		t.Fatalf("chart ships %d CRDs, config/crd/bases has %d: run make generate", len(shipped), len(gen))
	}
	for _, g := range gen {
		a, _ := os.ReadFile(g)
		b, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(g)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from the chart's copy (%v): run make generate", filepath.Base(g), err)
		}
	}
}

func TestChartDeploymentRunsInClusterWithLeaderElection(t *testing.T) {
	objs := mustRender(t, allOn())
	dep := find(t, objs, "Deployment")
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	var args []string
	for _, a := range c["args"].([]any) {
		args = append(args, a.(string))
	}
	for _, want := range []string{"server", "--leader-elect=true", "--external-url=https://fleet.example.com:8443",
		"--agent-image=registry.local:5000/edgefleet/edgefleet-agent@sha256:" + strings.Repeat("ab", 32), "--join-rate-limit=5",
		"--client-ca-file=/etc/edgefleet/user-client-ca/ca.crt"} {
		if !slices.Contains(args, want) {
			t.Errorf("manager args %v lack %q", args, want)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--kubeconfig") {
			t.Errorf("manager gets %s: in a Pod it must use the in-cluster config", a)
		}
	}
	if img := c["image"]; img != "registry.local:5000/edgefleet/edgefleet@sha256:"+strings.Repeat("cd", 32) {
		t.Errorf("image %v: a digest must pin the manager image", img)
	}
	env, _ := yaml.Marshal(c["env"])
	if !strings.Contains(string(env), "name: POD_IP") || !strings.Contains(string(env), "fieldPath: status.podIP") {
		t.Errorf("POD_IP is not from the downward API:\n%s", env)
	}
	// tls.userClientCA reaches --client-ca-file through a ConfigMap, and a
	// new one rolls the Pods.
	cm := find(t, objs, "ConfigMap")
	if got, _, _ := unstructured.NestedString(cm.Object, "data", "ca.crt"); got != userClientCA {
		t.Errorf("user client CA ConfigMap holds %q", got)
	}
	mounts, _ := yaml.Marshal(c["volumeMounts"])
	volumes, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
	vols, _ := yaml.Marshal(volumes)
	if !strings.Contains(string(mounts), "mountPath: /etc/edgefleet/user-client-ca") || !strings.Contains(string(vols), "name: "+cm.GetName()) {
		t.Errorf("the user client CA is not mounted from ConfigMap %s:\n%s\n%s", cm.GetName(), mounts, vols)
	}
	if ann, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "metadata", "annotations", "checksum/user-client-ca"); ann == "" {
		t.Error("no checksum/user-client-ca annotation: a changed CA would not roll the Pods")
	}
	if replicas, _, _ := unstructured.NestedFieldNoCopy(dep.Object, "spec", "replicas"); fmt.Sprint(replicas) != "2" {
		t.Errorf("replicas %v, want the default 2", replicas)
	}
}

// Every rendered object (CRDs first, for real) is accepted by a real
// kube-apiserver in a server-side dry run, which runs its full validation.
func TestChartObjectsValidateOnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	c := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	ctx := context.Background()
	installCRDs(ctx, t, c.Client)
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	for name, vals := range map[string]map[string]any{"defaults": baseValues(), "all on": allOn()} {
		t.Run(name, func(t *testing.T) {
			var kinds []string
			for _, o := range mustRender(t, vals) {
				err := c.Client.Create(ctx, o, client.DryRunAll, strict)
				if meta.IsNoMatchError(err) && o.GetKind() == "ServiceMonitor" {
					// The Prometheus Operator's CRD is not ours to ship.
					t.Logf("ServiceMonitor rendered; not validated (no monitoring.coreos.com CRD on the test apiserver)")
					continue
				}
				if err != nil {
					t.Errorf("%s %s: the apiserver refuses it: %v", o.GetKind(), o.GetName(), err)
				}
				kinds = append(kinds, o.GetKind())
			}
			t.Logf("validated %v", kinds)
			// The check can fail: a misspelt field is refused.
			bad := find(t, mustRender(t, vals), "Deployment")
			bad.Object["spec"].(map[string]any)["replicass"] = 2
			if err := c.Client.Create(ctx, bad, client.DryRunAll, strict); err == nil || !strings.Contains(err.Error(), "replicass") {
				t.Errorf("a Deployment with an unknown field passed validation: %v", err)
			}
			want := []string{"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
			if name == "all on" {
				want = append(want, "NetworkPolicy", "Secret", "ConfigMap")
			}
			for _, want := range want {
				if !slices.Contains(kinds, want) {
					t.Errorf("no %s rendered", want)
				}
			}
		})
	}
}

// strict makes the apiserver refuse unknown and duplicate fields instead of
// dropping them with a warning.
var strict = client.FieldValidation(metav1.FieldValidationStrict)

func installCRDs(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	files, _ := filepath.Glob(chartDir + "/crds/*.yaml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(b, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := c.Create(ctx, crd); err != nil {
			t.Fatalf("installing %s: %v", f, err)
		}
	}
}

func render(t *testing.T, vals map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	return renderChart(ch, vals)
}

func renderChart(ch *chart.Chart, vals map[string]any) ([]*unstructured.Unstructured, error) {
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = "edgefleet"
	inst.Namespace = namespace
	inst.Replace = true
	// The client-only default (v1.20) is older than the chart's kubeVersion.
	kv, err := common.ParseKubeVersion("v1.33.0")
	if err != nil {
		return nil, err
	}
	inst.KubeVersion = kv
	rel, err := inst.RunWithContext(context.Background(), ch, vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, errors.New("unexpected release type")
	}
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(r.Manifest), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		if len(o.Object) > 0 {
			out = append(out, o)
		}
	}
	return out, nil
}

func mustRender(t *testing.T, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := render(t, vals)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	t.Fatalf("no %s rendered", kind)
	return nil
}
