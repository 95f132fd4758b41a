package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// applyDir writes files into a fresh directory and runs `edgefleet apply
// NAME DIR`; it returns the Bundle's name (a directory with a fleet.yaml at
// its root is one bundle).
func (e *fleetEnv) applyDir(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	writeTree(t, dir, files)
	if out, err := e.apply(t, name, dir); err != nil {
		t.Fatalf("edgefleet apply %s: %v\n%s", name, err, out)
	}
	var list fleetv1.BundleList
	if err := e.m.Client.List(context.Background(), &list, client.InNamespace(fleetNS), client.MatchingLabels{fleetv1.BundleSetLabel: name}); err != nil || len(list.Items) != 1 {
		t.Fatalf("bundles of set %s: %d (%v), want 1", name, len(list.Items), err)
	}
	return list.Items[0].Name
}

// deployments returns the bundle's BundleDeployments by cluster name.
func (e *fleetEnv) deployments(t *testing.T, bundle string) map[string]fleetv1.BundleDeployment {
	t.Helper()
	var list fleetv1.BundleDeploymentList
	if err := e.m.Client.List(context.Background(), &list, client.MatchingLabels{fleetv1.BundleNameLabel: bundle}); err != nil {
		t.Fatal(err)
	}
	out := map[string]fleetv1.BundleDeployment{}
	for _, bd := range list.Items {
		out[bd.Labels[fleetv1.ClusterNameLabel]] = bd
	}
	return out
}

func deployedMessage(bd fleetv1.BundleDeployment) string {
	c := meta.FindStatusCondition(bd.Status.Conditions, fleetv1.DeployedCondition)
	if c == nil || c.Status != metav1.ConditionFalse {
		return ""
	}
	return c.Message
}

// deleteBundle deletes a Bundle and waits until its deployments are gone
// (the agents cleaned up).
func (e *fleetEnv) deleteBundle(t *testing.T, name string) {
	t.Helper()
	b := &fleetv1.Bundle{ObjectMeta: metav1.ObjectMeta{Namespace: fleetNS, Name: name}}
	if err := e.m.Client.Delete(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "deployments of "+name+" removed", func() bool { return len(e.deployments(t, name)) == 0 })
}

func ensure(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func exists(c client.Client, apiVersion, kind, namespace, name string) (bool, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	err := c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, u)
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return false, nil
	}
	return err == nil, err
}

func crdYAML(plural, kind string) string {
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[1]s.safety.example.com
spec:
  group: safety.example.com
  names: {kind: %[2]s, plural: %[1]s, singular: %[3]s, listKind: %[2]sList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`, plural, kind, strings.ToLower(kind))
}

func chartFiles(templates map[string]string) map[string]string {
	files := map[string]string{"chart/Chart.yaml": "apiVersion: v2\nname: safety\nversion: 0.1.0\n"}
	for name, data := range templates {
		files["chart/templates/"+name] = data
	}
	return files
}

// TestFleetSafety covers issue #18 items 1-4 on real downstream clusters
// (one manager, three clusters, shared by the subtests): the bundle's
// serviceAccount is what deploys, CRDs outlive their bundle unless
// deleteCRDResources, Cluster.spec.templateValues reach the clusters, and a
// cluster's label change redeploys that cluster only.
func TestFleetSafety(t *testing.T) {
	ctx := context.Background()
	env := startFleet(t)

	t.Run("a bundle deploys as its serviceAccount, never with the agent's rights", func(t *testing.T) {
		c := env.clusters[0].Client
		const sa = "deployer"
		user := "system:serviceaccount:" + agent.ServiceAccountNamespace + ":" + sa
		subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: agent.ServiceAccountNamespace, Name: sa}}
		ensure(t, c,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterjoin.SystemNamespace}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sa-app"}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: agent.ServiceAccountNamespace, Name: sa}},
			// The account may manage namespaces, and ConfigMaps and Secrets
			// (Helm's release records) in sa-app: not ClusterRoles.
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "sa-namespaces"}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch", "create", "patch", "update"}}}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sa-namespaces"}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "sa-namespaces"}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "sa-app", Name: "writer"}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"}, Verbs: []string{"*"}}}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "sa-app", Name: "writer"}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "writer"}},
		)
		clusterRole := func(name string) string {
			return "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: " + name + "\nrules: []\n"
		}
		fleetYAML := func(account string, helm bool) string {
			y := "defaultNamespace: sa-app\nserviceAccount: " + account + "\ntargets:\n- clusterName: edge-0\n"
			if helm {
				y += "helm:\n  chart: ./chart\n  releaseName: sa-helm\n"
			}
			return y
		}
		raw := env.applyDir(t, "sa-raw", map[string]string{
			"fleet.yaml": fleetYAML(sa, false),
			"cm.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sa-raw\ndata: {made: by-raw}\n",
			"role.yaml":  clusterRole("sa-raw-role"),
		})
		helmFiles := chartFiles(map[string]string{
			"cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sa-helm\ndata: {made: by-helm}\n",
			"role.yaml": clusterRole("sa-helm-role"),
		})
		helmFiles["fleet.yaml"] = fleetYAML(sa, true)
		helm := env.applyDir(t, "sa-helm", helmFiles)
		ghost := env.applyDir(t, "sa-ghost", map[string]string{
			"fleet.yaml": fleetYAML("ghost", false),
			"cm.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sa-ghost\ndata: {made: by-ghost}\n",
		})

		for _, b := range []struct{ bundle, role string }{{raw, "sa-raw-role"}, {helm, "sa-helm-role"}} {
			var msg string
			waitFor(t, 2*time.Minute, b.bundle+" refused a ClusterRole as "+user, func() bool {
				msg = deployedMessage(env.deployments(t, b.bundle)["edge-0"])
				return strings.Contains(msg, user) && strings.Contains(msg, "clusterroles")
			})
			t.Logf("%s: %s", b.bundle, msg)
			if ok, err := exists(c, "rbac.authorization.k8s.io/v1", "ClusterRole", "", b.role); ok || err != nil {
				t.Fatalf("ClusterRole %s exists (%v): the agent's own identity created it", b.role, err)
			}
		}
		var msg string
		waitFor(t, time.Minute, "a missing serviceAccount named in the deployment's status", func() bool {
			msg = deployedMessage(env.deployments(t, ghost)["edge-0"])
			return strings.Contains(msg, `serviceAccount "ghost" does not exist in namespace edgefleet-system`) && strings.Contains(msg, "Create it there")
		})
		if ok, _ := exists(c, "v1", "ConfigMap", "sa-app", "sa-ghost"); ok {
			t.Fatal("a bundle whose serviceAccount does not exist was deployed anyway")
		}

		// Allowed ClusterRoles, the same bundles deploy.
		ensure(t, c,
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "sa-clusterroles"}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"}, Verbs: []string{"get", "list", "watch", "create", "patch", "update", "delete"}}}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sa-clusterroles"}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "sa-clusterroles"}},
		)
		waitFor(t, 3*time.Minute, "both bundles ready once the account may create ClusterRoles", func() bool {
			return bundleReady(ctx, env.m.Client, raw, 1) && bundleReady(ctx, env.m.Client, helm, 1)
		})
		for _, o := range []struct{ apiVersion, kind, ns, name string }{
			{"rbac.authorization.k8s.io/v1", "ClusterRole", "", "sa-raw-role"},
			{"rbac.authorization.k8s.io/v1", "ClusterRole", "", "sa-helm-role"},
			{"v1", "ConfigMap", "sa-app", "sa-raw"},
			{"v1", "ConfigMap", "sa-app", "sa-helm"},
		} {
			if ok, err := exists(c, o.apiVersion, o.kind, o.ns, o.name); !ok {
				t.Fatalf("%s %s/%s not deployed: %v", o.kind, o.ns, o.name, err)
			}
		}
		// Removal runs as the account too, and a never-deployed bundle
		// whose account is missing can still be removed.
		env.deleteBundle(t, raw)
		env.deleteBundle(t, helm)
		env.deleteBundle(t, ghost)
		for _, name := range []string{"sa-raw-role", "sa-helm-role"} {
			if ok, _ := exists(c, "rbac.authorization.k8s.io/v1", "ClusterRole", "", name); ok {
				t.Fatalf("ClusterRole %s left behind after the bundle was removed", name)
			}
		}
	})

	t.Run("removing a bundle keeps its CRDs unless deleteCRDResources", func(t *testing.T) {
		c := env.clusters[1].Client
		cr := func(kind, name string) *unstructured.Unstructured {
			return obj(t, "apiVersion: safety.example.com/v1\nkind: "+kind+"\nmetadata:\n  name: "+name+"\n  namespace: crd-app\nspec: {size: 1}\n")
		}
		bundleCR := func(kind, name string) string {
			return "apiVersion: safety.example.com/v1\nkind: " + kind + "\nmetadata:\n  name: " + name + "\nspec: {size: 1}\n"
		}
		target := "defaultNamespace: crd-app\ntargets:\n- clusterName: edge-1\n"

		keep := env.applyDir(t, "crd-keep", map[string]string{
			"fleet.yaml": target,
			"crd.yaml":   crdYAML("widgets", "Widget"),
			"cr.yaml":    bundleCR("Widget", "from-bundle"),
		})
		helmFiles := chartFiles(map[string]string{
			"crd.yaml": crdYAML("gizmos", "Gizmo"),
			"cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gizmo-settings\ndata: {a: b}\n",
		})
		helmFiles["fleet.yaml"] = target + "helm:\n  chart: ./chart\n  releaseName: gizmos\n"
		helmKeep := env.applyDir(t, "crd-helm-keep", helmFiles)
		del := env.applyDir(t, "crd-delete", map[string]string{
			"fleet.yaml": target + "deleteCRDResources: true\n",
			"crd.yaml":   crdYAML("gadgets", "Gadget"),
			"cr.yaml":    bundleCR("Gadget", "from-bundle"),
		})
		waitFor(t, 3*time.Minute, "CRD bundles ready on edge-1", func() bool {
			return bundleReady(ctx, env.m.Client, keep, 1) && bundleReady(ctx, env.m.Client, helmKeep, 1) && bundleReady(ctx, env.m.Client, del, 1)
		})
		// Users' own custom resources of the bundles' kinds.
		ensure(t, c, cr("Widget", "users-own"), cr("Gizmo", "users-own"), cr("Gadget", "users-own"))

		// A chart revision that drops its templated CRD keeps it too.
		delete(helmFiles, "chart/templates/crd.yaml")
		helmFiles["chart/templates/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gizmo-settings\ndata: {a: c}\n"
		env.applyDir(t, "crd-helm-keep", helmFiles)
		waitFor(t, 2*time.Minute, "the chart's next revision deployed", func() bool {
			cm, err := configMap(ctx, c, "crd-app", "gizmo-settings")
			return err == nil && cm.Data["a"] == "c"
		})
		gizmos := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}}
		if err := c.Get(ctx, client.ObjectKey{Name: "gizmos.safety.example.com"}, gizmos); err != nil || gizmos.GetDeletionTimestamp() != nil {
			t.Fatalf("the Helm upgrade that dropped the CRD deleted it (err %v, deletionTimestamp %v)", err, gizmos.GetDeletionTimestamp())
		}

		env.deleteBundle(t, keep)
		env.deleteBundle(t, helmKeep)
		for _, tt := range []struct {
			apiVersion, kind, ns, name string
			want                       bool
		}{
			{"apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.safety.example.com", true},
			{"safety.example.com/v1", "Widget", "crd-app", "users-own", true},
			// The bundle's own custom resource was the bundle's: it goes.
			{"safety.example.com/v1", "Widget", "crd-app", "from-bundle", false},
			{"apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "gizmos.safety.example.com", true},
			{"safety.example.com/v1", "Gizmo", "crd-app", "users-own", true},
			{"v1", "ConfigMap", "crd-app", "gizmo-settings", false},
		} {
			ok, err := exists(c, tt.apiVersion, tt.kind, tt.ns, tt.name)
			if err != nil || ok != tt.want {
				t.Errorf("after removing the bundle: %s %s/%s exists=%v (err %v), want %v", tt.kind, tt.ns, tt.name, ok, err, tt.want)
			}
		}

		env.deleteBundle(t, del)
		waitFor(t, time.Minute, "deleteCRDResources removed the CRD and every Gadget", func() bool {
			crd, _ := exists(c, "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "gadgets.safety.example.com")
			own, _ := exists(c, "safety.example.com/v1", "Gadget", "crd-app", "users-own")
			return !crd && !own
		})
	})

	// Every cluster gets templateValues; edge-i: size, and a nested value.
	sizes := []string{"small", "medium", "large"}
	setValues := func(t *testing.T, name, size string) {
		t.Helper()
		var fc fleetv1.Cluster
		if err := env.m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: name}, &fc); err != nil {
			t.Fatal(err)
		}
		fc.Spec.TemplateValues = &runtime.RawExtension{Raw: []byte(`{"size":"` + size + `","limits":{"cpu":"2"}}`)}
		if err := env.m.Client.Update(ctx, &fc); err != nil {
			t.Fatal(err)
		}
	}
	tvFiles := chartFiles(map[string]string{"cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: tv-info
data:
  size: {{ .Values.size | quote }}
  cpu: {{ .Values.cpu | quote }}
  region: {{ .Values.region | quote }}
  cluster: {{ .Values.cluster | quote }}
  env: {{ .Values.env | quote }}
  injected: {{ .Values.global.fleet.clusterLabels.region | quote }}
`})
	tvFiles["fleet.yaml"] = `defaultNamespace: tv
helm:
  chart: ./chart
  releaseName: tv
  values:
    size: ${ .ClusterValues.size }
    cpu: ${ .ClusterValues.limits.cpu }
    region: ${ .ClusterLabels.region }
    cluster: ${ .ClusterName }
    env: global.fleet.clusterLabels.env
targets:
- clusterSelector: {}
`
	var tv string
	tvData := func(i int) map[string]string {
		cm, err := configMap(ctx, env.clusters[i].Client, "tv", "tv-info")
		if err != nil {
			return nil
		}
		return cm.Data
	}

	t.Run("Cluster templateValues reach real clusters as edgefleet test renders them", func(t *testing.T) {
		for i, name := range env.names {
			setValues(t, name, sizes[i])
		}
		tv = env.applyDir(t, "tv", tvFiles)
		waitFor(t, 3*time.Minute, "templated bundle ready on 3 clusters", func() bool { return bundleReady(ctx, env.m.Client, tv, 3) })
		regions := []string{"eu", "eu", "us"}
		envs := []string{"dev", "prod", "prod"}
		for i, name := range env.names {
			want := map[string]string{"size": sizes[i], "cpu": "2", "region": regions[i], "cluster": name, "env": envs[i], "injected": regions[i]}
			if got := tvData(i); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: tv-info %v, want %v", name, got, want)
			}
		}

		// `edgefleet test` with edge-2's name, labels and values prints the
		// same ConfigMap the agent deployed.
		dir := t.TempDir()
		writeTree(t, dir, tvFiles)
		valuesFile := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(valuesFile, []byte("size: large\nlimits: {cpu: \"2\"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(harness.EdgefleetBinary(t), "test", "-n", fleetNS, "--name", "tv", "--cluster-name", "edge-2",
			"-l", "env=prod", "-l", "region=us", "--cluster-values", valuesFile, dir).Output()
		if err != nil {
			t.Fatalf("edgefleet test: %v\n%s", err, out)
		}
		var printed map[string]string
		for _, doc := range strings.Split(string(out), "\n---\n") {
			var cm corev1.ConfigMap
			if yaml.Unmarshal([]byte(doc), &cm) == nil && cm.Kind == "ConfigMap" && cm.Name == "tv-info" {
				printed = cm.Data
			}
		}
		if got := tvData(2); printed == nil || fmt.Sprint(got) != fmt.Sprint(printed) {
			t.Fatalf("edge-2 received %v, edgefleet test printed %v\n%s", got, printed, out)
		}

		// A value no cluster has is reported on the Bundle, naming it.
		bad := env.applyDir(t, "tv-missing", map[string]string{
			"fleet.yaml":       "defaultNamespace: tv-missing\nhelm:\n  chart: ./chart\n  values:\n    size: ${ .ClusterValues.nope }\ntargets:\n- clusterName: edge-0\n",
			"chart/Chart.yaml": "apiVersion: v2\nname: missing\nversion: 0.1.0\n",
		})
		waitFor(t, time.Minute, "bundle Ready=False naming the cluster and the value", func() bool {
			var b fleetv1.Bundle
			if env.m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: bad}, &b) != nil {
				return false
			}
			c := meta.FindStatusCondition(b.Status.Conditions, fleetv1.ReadyCondition)
			return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "fleet-default/edge-0") && strings.Contains(c.Message, "helm.values.size")
		})
		if n := len(env.deployments(t, bad)); n != 0 {
			t.Fatalf("%d deployments for a bundle whose values cannot be resolved", n)
		}
	})

	t.Run("a cluster's label or templateValues change redeploys that cluster only", func(t *testing.T) {
		if tv == "" {
			t.Skip("needs the templateValues subtest")
		}
		ids := func() map[string]string {
			out := map[string]string{}
			for name, bd := range env.deployments(t, tv) {
				out[name] = bd.Spec.DeploymentID
			}
			return out
		}
		before := ids()
		var fc fleetv1.Cluster
		if err := env.m.Client.Get(ctx, client.ObjectKey{Namespace: fleetNS, Name: "edge-2"}, &fc); err != nil {
			t.Fatal(err)
		}
		fc.Labels["region"] = "ap"
		if err := env.m.Client.Update(ctx, &fc); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Minute, "edge-2 redeployed with region ap", func() bool {
			d := tvData(2)
			return d["region"] == "ap" && d["injected"] == "ap"
		})
		after := ids()
		if after["edge-2"] == before["edge-2"] {
			t.Fatal("edge-2's deployment ID did not change with its label")
		}
		for _, name := range []string{"edge-0", "edge-1"} {
			if after[name] != before[name] {
				t.Fatalf("%s's deployment ID changed with edge-2's label: %s -> %s", name, before[name], after[name])
			}
		}

		before = after
		setValues(t, "edge-1", "huge")
		waitFor(t, 2*time.Minute, "edge-1 redeployed with size huge", func() bool { return tvData(1)["size"] == "huge" })
		after = ids()
		if after["edge-0"] != before["edge-0"] || after["edge-2"] != before["edge-2"] || after["edge-1"] == before["edge-1"] {
			t.Fatalf("deployment IDs %v -> %v: want only edge-1's changed", before, after)
		}
		if d := tvData(0); d["size"] != "small" || d["region"] != "eu" {
			t.Fatalf("edge-0 changed: %v", d)
		}
	})
}
