package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"helm.sh/helm/v4/pkg/action"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/agent"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

const clusterNS = "cluster-fleet-default-c1"

// env is a manager API (CRDs, BundleDeployments written by the test as the
// manager would) and a downstream cluster with a fake node, with an agent
// running in-process between them.
type env struct {
	t          *testing.T
	ctx        context.Context
	manager    client.Client
	downstream client.Client
	kubeconfig string
}

func start(t *testing.T) *env {
	if testing.Short() {
		t.Skip("needs kube-apiservers")
	}
	ctrl.SetLogger(testr.NewWithOptions(t, testr.Options{Verbosity: 0}))
	mgrCluster := harness.StartClusters(t, 1, harness.ClusterOptions{CRDs: true})[0]
	down := harness.StartClusters(t, 1, harness.ClusterOptions{Nodes: 1})[0]
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, ctx: ctx, manager: mgrCluster.Client, downstream: down.Client, kubeconfig: down.KubeconfigPath()}
	for _, ns := range []string{clusterNS, "fleet-default"} {
		if err := e.manager.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.manager.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-default", Name: "c1"}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Options{
			ManagerConfig:     mgrCluster.RESTConfig(),
			Namespace:         clusterNS,
			ClusterName:       "c1",
			ClusterNamespace:  "fleet-default",
			DownstreamConfig:  down.RESTConfig(),
			MonitorInterval:   2 * time.Second,
			HeartbeatInterval: time.Second,
			Log:               testr.New(t),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
	})
	return e
}

// deploy stores files as bundle content and creates or updates
// BundleDeployment name for bundle name, as the manager would.
func (e *env) deploy(name string, files map[string]string, mutate func(*fleetv1.BundleDeployment)) *fleetv1.BundleDeployment {
	e.t.Helper()
	m := &content.Manifest{}
	for path, data := range files {
		m.Resources = append(m.Resources, fleetv1.BundleResource{Name: path, Content: data})
	}
	id, err := content.Store(e.ctx, e.manager, m)
	if err != nil {
		e.t.Fatal(err)
	}
	bd := &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: clusterNS, Name: name}}
	_, err = ctrl.CreateOrUpdate(e.ctx, e.manager, bd, func() error {
		bd.Labels = map[string]string{fleetv1.BundleNameLabel: name}
		bd.Spec.BundleName = name
		bd.Spec.DeploymentID = id + ":opts"
		bd.Spec.Options = fleetv1.BundleDeploymentOptions{DefaultNamespace: name}
		if mutate != nil {
			mutate(bd)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return bd
}

// eventually polls cond for up to a minute; cond returns "" when satisfied,
// else what it is still waiting for.
func (e *env) eventually(what string, cond func() string) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	e.t.Fatalf("%s: still %s after a minute", what, last)
}

func (e *env) bd(name string) *fleetv1.BundleDeployment {
	bd := &fleetv1.BundleDeployment{}
	if err := e.manager.Get(e.ctx, client.ObjectKey{Namespace: clusterNS, Name: name}, bd); err != nil {
		e.t.Fatal(err)
	}
	return bd
}

// waitState waits until BundleDeployment name applied its current
// deploymentID and shows state.
func (e *env) waitState(name string, state fleetv1.BundleState) *fleetv1.BundleDeployment {
	e.t.Helper()
	var bd *fleetv1.BundleDeployment
	e.eventually("BundleDeployment "+name+" "+string(state), func() string {
		bd = e.bd(name)
		if bd.Status.AppliedDeploymentID != bd.Spec.DeploymentID || bd.Status.Display.State != string(state) {
			return fmt.Sprintf("applied=%q state=%q conditions=%v", bd.Status.AppliedDeploymentID, bd.Status.Display.State, bd.Status.Conditions)
		}
		return ""
	})
	return bd
}

func (e *env) exists(obj client.Object, ns, name string) bool {
	e.t.Helper()
	err := e.downstream.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	return err == nil
}

const (
	settingsYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
`
	webYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
`
)

func TestAgent(t *testing.T) {
	e := start(t)

	t.Run("raw YAML is applied labelled and reported ready, not modified", func(t *testing.T) {
		e.t = t
		e.deploy("app", map[string]string{"settings.yaml": settingsYAML, "web.yaml": webYAML}, nil)
		bd := e.waitState("app", fleetv1.Ready)
		cm := &corev1.ConfigMap{}
		if !e.exists(cm, "app", "settings") {
			t.Fatal("ConfigMap app/settings not applied")
		}
		if cm.Labels[fleetv1.BundleDeploymentLabel] != clusterNS+".app" {
			t.Errorf("labels = %v", cm.Labels)
		}
		if !bd.Status.Ready || !bd.Status.NonModified || len(bd.Status.ModifiedStatus) != 0 {
			t.Errorf("status = ready %v nonModified %v modified %+v", bd.Status.Ready, bd.Status.NonModified, bd.Status.ModifiedStatus)
		}
		if !meta.IsStatusConditionTrue(bd.Status.Conditions, fleetv1.DeployedCondition) || !meta.IsStatusConditionTrue(bd.Status.Conditions, fleetv1.MonitoredCondition) {
			t.Errorf("conditions = %+v", bd.Status.Conditions)
		}
		if len(bd.Status.Resources) != 2 || bd.Finalizers[0] != agent.Finalizer {
			t.Errorf("resources = %+v, finalizers %v", bd.Status.Resources, bd.Finalizers)
		}
	})

	t.Run("a downstream edit shows as modified and correctDrift reverts it", func(t *testing.T) {
		e.t = t
		cm := &corev1.ConfigMap{}
		e.exists(cm, "app", "settings")
		cm.Data["color"] = "red"
		if err := e.downstream.Update(e.ctx, cm); err != nil {
			t.Fatal(err)
		}
		bd := e.waitState("app", fleetv1.Modified)
		if len(bd.Status.ModifiedStatus) != 1 || bd.Status.ModifiedStatus[0].Name != "settings" || !strings.Contains(bd.Status.ModifiedStatus[0].Patch, "blue") {
			t.Fatalf("modifiedStatus = %+v, want ConfigMap settings patched back to blue", bd.Status.ModifiedStatus)
		}
		e.deploy("app", map[string]string{"settings.yaml": settingsYAML, "web.yaml": webYAML}, func(bd *fleetv1.BundleDeployment) {
			bd.Spec.CorrectDrift = &fleetv1.CorrectDrift{Enabled: true}
		})
		e.waitState("app", fleetv1.Ready)
		e.exists(cm, "app", "settings")
		if cm.Data["color"] != "blue" {
			t.Errorf("color = %q after drift correction, want blue", cm.Data["color"])
		}
	})

	t.Run("a new deploymentID without an object prunes it", func(t *testing.T) {
		e.t = t
		e.deploy("app", map[string]string{"web.yaml": webYAML}, nil)
		e.waitState("app", fleetv1.Ready)
		if e.exists(&corev1.ConfigMap{}, "app", "settings") {
			t.Error("ConfigMap settings still there after it left the bundle")
		}
	})

	t.Run("a rejected object fails its deployment only", func(t *testing.T) {
		e.t = t
		e.deploy("broken", map[string]string{"cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: Not_Valid
`}, nil)
		var bd *fleetv1.BundleDeployment
		e.eventually("broken deployment reported", func() string {
			bd = e.bd("broken")
			if bd.Status.Display.State != string(fleetv1.ErrApplied) {
				return "state " + bd.Status.Display.State
			}
			return ""
		})
		c := meta.FindStatusCondition(bd.Status.Conditions, fleetv1.DeployedCondition)
		if c == nil || !strings.Contains(c.Message, "ConfigMap broken/Not_Valid") || !strings.Contains(c.Message, "Invalid value") {
			t.Errorf("Deployed condition = %+v, want the rejected ConfigMap and why", c)
		}
		if got := e.bd("app").Status.Display.State; got != string(fleetv1.Ready) {
			t.Errorf("unrelated deployment app is %s", got)
		}
	})

	t.Run("dependsOn holds a deployment until the dependency is Ready", func(t *testing.T) {
		e.t = t
		e.deploy("frontend", map[string]string{"cm.yaml": strings.Replace(settingsYAML, "settings", "frontend", 1)}, func(bd *fleetv1.BundleDeployment) {
			bd.Spec.DependsOn = []fleetv1.BundleRef{{Name: "backend"}}
		})
		e.eventually("frontend waiting", func() string {
			c := meta.FindStatusCondition(e.bd("frontend").Status.Conditions, fleetv1.DeployedCondition)
			if c == nil || c.Reason != fleetv1.DependencyNotReadyReason || !strings.Contains(c.Message, "backend") {
				return fmt.Sprintf("condition %+v", c)
			}
			return ""
		})
		if e.exists(&corev1.ConfigMap{}, "frontend", "frontend") {
			t.Fatal("frontend deployed before its dependency exists")
		}
		e.deploy("backend", map[string]string{"web.yaml": webYAML}, nil)
		e.waitState("backend", fleetv1.Ready)
		e.waitState("frontend", fleetv1.Ready)
	})

	t.Run("a Helm chart becomes a release, hooks run", func(t *testing.T) {
		e.t = t
		e.deploy("chart", map[string]string{
			"Chart.yaml":  "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
			"values.yaml": "greeting: hello\n",
			"templates/cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
`,
			"templates/hook.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-post-install
  annotations:
    "helm.sh/hook": post-install
data:
  ran: "true"
`,
		}, nil)
		bd := e.waitState("chart", fleetv1.Ready)
		if bd.Status.Release != "chart/chart:1" {
			t.Errorf("status.release = %q, want chart/chart:1", bd.Status.Release)
		}
		cm := &corev1.ConfigMap{}
		if !e.exists(cm, "chart", "chart-config") || cm.Data["greeting"] != "hello" {
			t.Fatalf("chart ConfigMap = %+v", cm.Data)
		}
		if !e.exists(&corev1.ConfigMap{}, "chart", "chart-post-install") {
			t.Error("post-install hook did not run")
		}
		rels := e.helmList("chart")
		if len(rels) != 1 || rels[0].Name != "chart" || rels[0].Info.Status != "deployed" {
			t.Fatalf("helm list = %v", rels)
		}
	})

	t.Run("deleting a deployment removes its resources; keepResources keeps them", func(t *testing.T) {
		e.t = t
		e.deploy("kept", map[string]string{"cm.yaml": strings.Replace(settingsYAML, "settings", "kept", 1)}, func(bd *fleetv1.BundleDeployment) {
			bd.Spec.Options.KeepResources = true
		})
		e.waitState("kept", fleetv1.Ready)
		for _, name := range []string{"app", "chart", "kept"} {
			if err := e.manager.Delete(e.ctx, &fleetv1.BundleDeployment{ObjectMeta: metav1.ObjectMeta{Namespace: clusterNS, Name: name}}); err != nil {
				t.Fatal(err)
			}
		}
		e.eventually("deployments gone", func() string {
			list := &fleetv1.BundleDeploymentList{}
			if err := e.manager.List(e.ctx, list, client.InNamespace(clusterNS)); err != nil {
				return err.Error()
			}
			for _, bd := range list.Items {
				if bd.Name == "app" || bd.Name == "chart" || bd.Name == "kept" {
					return "BundleDeployment " + bd.Name + " still there"
				}
			}
			return ""
		})
		if e.exists(&appsv1.Deployment{}, "app", "web") {
			t.Error("Deployment app/web still there after its BundleDeployment was deleted")
		}
		if rels := e.helmList("chart"); len(rels) != 0 {
			t.Errorf("helm release still listed: %v", rels)
		}
		if e.exists(&corev1.ConfigMap{}, "chart", "chart-config") {
			t.Error("chart ConfigMap still there after uninstall")
		}
		if !e.exists(&corev1.ConfigMap{}, "kept", "kept") {
			t.Error("keepResources: ConfigMap kept/kept was deleted")
		}
	})

	t.Run("heartbeat", func(t *testing.T) {
		e.t = t
		// The agent reports through its heartbeat Lease only; the manager
		// (not running here) derives the Cluster's status.agent from it.
		e.eventually("heartbeat Lease", func() string {
			l := &coordinationv1.Lease{}
			if err := e.manager.Get(e.ctx, client.ObjectKey{Namespace: clusterNS, Name: clusterjoin.HeartbeatLease}, l); err != nil {
				return err.Error()
			}
			if l.Spec.RenewTime == nil || l.Annotations[clusterjoin.AnnotationKubernetesVersion] == "" {
				return fmt.Sprintf("lease %+v %v", l.Spec, l.Annotations)
			}
			return ""
		})
	})
}

// helmList lists releases in namespace with the Helm SDK, as `helm list`
// against the downstream kubeconfig does.
func (e *env) helmList(namespace string) []*releasev1.Release {
	e.t.Helper()
	cfg := action.NewConfiguration()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &e.kubeconfig
	flags.Namespace = &namespace
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		e.t.Fatal(err)
	}
	rels, err := action.NewList(cfg).Run()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*releasev1.Release
	for _, r := range rels {
		out = append(out, r.(*releasev1.Release))
	}
	return out
}
