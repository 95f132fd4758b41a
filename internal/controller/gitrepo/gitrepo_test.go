package gitrepo

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"

func TestReadPaths(t *testing.T) {
	root := t.TempDir()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadChart := "http://" + closed.Addr().String() + "/app-1.0.0.tgz"
	closed.Close()
	writeFiles(t, root, map[string]string{
		"remote/fleet.yaml":   "defaultNamespace: x\nhelm:\n  chart: " + deadChart + "\n",
		"apps/web/cm.yaml":    cm,
		"apps/db/cm.yaml":     cm,
		"apps/db/fleet.yaml":  "defaultNamespace: db\n",
		"infra/cm.yaml":       cm,
		"broken/fleet.yaml":   "defaultNamespace: x\nhelm:\n  releaseName: [a]\n",
		"README.md":           "not yaml\n",
		"apps/web/extra.json": "{}",
		"fleety/fleet.yaml":   "defaultNamespace: x\nimageScans: []\n",
		"fleety/cm.yaml":      cm,
	})
	commit := strings.Repeat("a", 40)
	for _, tc := range []struct {
		name    string
		paths   []string
		strict  bool
		warning string
		bundles []string
		reason  string
		msg     string
		network bool
	}{
		{name: "unknown fleet.yaml key is a warning", paths: []string{"fleety"}, bundles: []string{"r-fleety"}, warning: `fleety/fleet.yaml:2: unknown field "imageScans": image scanning is not supported by edgefleet; ignored`},
		{name: "strict annotation: unknown key fails the path", paths: []string{"fleety", "infra"}, strict: true, bundles: []string{"r-infra"}, reason: fleetv1.RenderErrorReason, msg: `fleety/fleet.yaml:2: unknown field "imageScans"`},
		{name: "glob and plain path", paths: []string{"apps/*", "infra"}, bundles: []string{"r-apps-db", "r-apps-web", "r-infra"}},
		{name: "overlapping paths make each bundle once", paths: []string{"apps", "apps/db"}, bundles: []string{"r-apps", "r-apps-db"}},
		{name: "missing path", paths: []string{"infra", "nope"}, bundles: []string{"r-infra"}, reason: fleetv1.PathNotFoundReason, msg: `path "nope" matches no directory at commit aaaaaaaaaaaa`},
		{name: "path outside the repository", paths: []string{"../etc"}, reason: fleetv1.PathNotFoundReason, msg: "outside the repository"},
		{name: "render error names file and line, other paths still read", paths: []string{"broken", "infra"}, bundles: []string{"r-infra"}, reason: fleetv1.RenderErrorReason, msg: "broken/fleet.yaml:3"},
		{name: "a chart download failing on the network is retried", paths: []string{"remote", "infra"}, bundles: []string{"r-infra"}, reason: fleetv1.RenderErrorReason, msg: "remote/fleet.yaml", network: true},
		{name: "a broken file beside a network failure is not", paths: []string{"remote", "broken"}, reason: fleetv1.RenderErrorReason, msg: "broken/fleet.yaml:3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gr := &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r"}, Spec: fleetv1.GitRepoSpec{Paths: tc.paths, KeepResources: true, ForceSyncGeneration: 3}}
			if tc.strict {
				gr.Annotations = map[string]string{fleetv1.StrictFleetYAMLAnnotation: "true"}
			}
			st := &syncState{}
			bundles, f := (&Reconciler{}).readPaths(context.Background(), gr, st, root, commit, nil)
			var warnings []string
			for _, w := range st.warnings {
				warnings = append(warnings, w.String())
			}
			if got := strings.Join(warnings, "\n"); got != tc.warning {
				t.Errorf("warnings %q, want %q", got, tc.warning)
			}
			if tc.warning != "" {
				var s fleetv1.GitRepoStatus
				setWarningsCondition(&s, 1, st.warnings)
				c := meta.FindStatusCondition(s.Conditions, fleetv1.FleetYAMLWarningsCondition)
				if c == nil || c.Status != metav1.ConditionTrue || c.Reason != fleetv1.IgnoredKeysReason || !strings.Contains(c.Message, tc.warning) {
					t.Errorf("FleetYAMLWarnings condition %+v, want True/IgnoredKeys naming %q", c, tc.warning)
				}
				if bundles[0].Bundle.Annotations[fleetv1.FleetYAMLWarningsAnnotation] != tc.warning {
					t.Errorf("bundle %s annotation %s = %q, want %q (relative to the repository)", bundles[0].Bundle.Name, fleetv1.FleetYAMLWarningsAnnotation, bundles[0].Bundle.Annotations[fleetv1.FleetYAMLWarningsAnnotation], tc.warning)
				}
				setWarningsCondition(&s, 1, nil)
				if len(s.Conditions) != 0 {
					t.Errorf("no warnings left, conditions %+v", s.Conditions)
				}
			}
			var names []string
			for _, b := range bundles {
				names = append(names, b.Bundle.Name)
				if b.Bundle.Labels[fleetv1.RepoNameLabel] != "r" || b.Bundle.Labels[fleetv1.CommitLabel] != commit || b.Bundle.Labels[fleetv1.BundleSetLabel] != "r" {
					t.Errorf("bundle %s labels %v", b.Bundle.Name, b.Bundle.Labels)
				}
				if !b.Bundle.Spec.KeepResources || b.Bundle.Spec.ForceSyncGeneration != 3 {
					t.Errorf("bundle %s: GitRepo options not applied: %+v", b.Bundle.Name, b.Bundle.Spec.BundleDeploymentOptions)
				}
				// No GitRepo targets: Fleet's default target.
				if last := b.Bundle.Spec.Targets[len(b.Bundle.Spec.Targets)-1]; last.ClusterGroup != "default" {
					t.Errorf("bundle %s targets %+v, want the default ClusterGroup", b.Bundle.Name, b.Bundle.Spec.Targets)
				}
			}
			if strings.Join(names, ",") != strings.Join(tc.bundles, ",") {
				t.Errorf("bundles %v, want %v", names, tc.bundles)
			}
			switch {
			case tc.reason == "" && f != nil:
				t.Errorf("unexpected failure %s: %s", f.reason, f.message)
			case tc.reason != "" && (f == nil || f.reason != tc.reason || !strings.Contains(f.message, tc.msg)):
				t.Errorf("failure %+v, want %s containing %q", f, tc.reason, tc.msg)
			case f != nil && strings.Contains(f.message, root):
				t.Errorf("message shows the checkout directory: %s", f.message)
			case f != nil && f.network != tc.network:
				t.Errorf("failure %q counted as a network failure: %v, want %v", f.message, f.network, tc.network)
			}
		})
	}
}

func TestGitTargetsBecomeBundleTargets(t *testing.T) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	got := gitTargets([]fleetv1.GitTarget{{Name: "prod", ClusterSelector: sel}, {ClusterGroup: "g"}})
	if len(got) != 2 || got[0].Name != "prod" || got[0].ClusterSelector != sel || got[1].ClusterGroup != "g" {
		t.Fatalf("targets %+v", got)
	}
	if d := gitTargets(nil); len(d) != 1 || d[0].ClusterGroup != "default" || d[0].Name != "default" {
		t.Fatalf("default targets %+v", d)
	}
}

func TestBackoffGrowsToMax(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := backoff(100); got != MaxBackoff {
		t.Errorf("backoff(100) = %s, want %s", got, MaxBackoff)
	}
}

func TestNextWake(t *testing.T) {
	now := time.Now()
	gr := func(disable bool) *fleetv1.GitRepo {
		return &fleetv1.GitRepo{Spec: fleetv1.GitRepoSpec{DisablePolling: disable, PollingInterval: &metav1.Duration{Duration: 10 * time.Second}}}
	}
	for _, tc := range []struct {
		name string
		gr   *fleetv1.GitRepo
		st   syncState
		want time.Duration
	}{
		{"next poll", gr(false), syncState{lastPoll: now.Add(-4 * time.Second)}, 6 * time.Second},
		{"polling disabled, healthy: wait for webhook", gr(true), syncState{lastPoll: now}, 0},
		{"polling disabled, failing: retry", gr(true), syncState{failures: 2, retryAt: now.Add(2 * time.Second)}, 2 * time.Second},
		{"content failure: poll still runs", gr(false), syncState{lastPoll: now, failures: 5, retryAt: now.Add(time.Minute)}, 10 * time.Second},
		{"unreachable: only the retry", gr(false), syncState{lastPoll: now, failures: 5, fetchFailed: true, retryAt: now.Add(time.Minute)}, time.Minute},
	} {
		if got := nextWake(tc.gr, &tc.st, now); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func bd(bundle, cluster string, ready bool) *fleetv1.BundleDeployment {
	d := &fleetv1.BundleDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "cluster-" + cluster, Name: bundle, Labels: map[string]string{
			fleetv1.ClusterNameLabel: cluster, fleetv1.ClusterNamespaceLabel: "fleet-default"}},
		Spec: fleetv1.BundleDeploymentSpec{BundleName: bundle, BundleNamespace: "fleet-default", DeploymentID: "s-1:x"},
	}
	if ready {
		d.Status.AppliedDeploymentID = "s-1:x"
		d.Status.Ready = true
		d.Status.NonModified = true
		d.Status.Conditions = []metav1.Condition{{Type: fleetv1.ReadyCondition, Status: metav1.ConditionTrue, Reason: "x"}, {Type: fleetv1.DeployedCondition, Status: metav1.ConditionTrue, Reason: "x"}, {Type: fleetv1.MonitoredCondition, Status: metav1.ConditionTrue, Reason: "x"}}
	}
	return d
}

func TestComputeStatus(t *testing.T) {
	gr := &fleetv1.GitRepo{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
	for _, tc := range []struct {
		name        string
		f           *failure
		fetchFailed bool
		bds         []*fleetv1.BundleDeployment
		bs          bundleStates
		ready       metav1.ConditionStatus
		reason      string
		state       string
		clusters    [2]int32
		display     string
		stalled     bool
		reconciling bool
	}{
		{name: "all ready", bds: []*fleetv1.BundleDeployment{bd("a", "c1", true), bd("b", "c1", true), bd("a", "c2", true)},
			ready: metav1.ConditionTrue, reason: fleetv1.SucceededReason, state: "Ready", clusters: [2]int32{2, 2}, display: "3/3"},
		{name: "a cluster is ready only when all its bundles are", bds: []*fleetv1.BundleDeployment{bd("a", "c1", true), bd("b", "c1", false), bd("a", "c2", true)},
			ready: metav1.ConditionFalse, reason: fleetv1.TargetsNotReadyReason, state: string(fleetv1.WaitApplied), clusters: [2]int32{1, 2}, display: "2/3"},
		{name: "no deployments", ready: metav1.ConditionTrue, reason: fleetv1.NoTargetsReason, state: fleetv1.NoTargetsReason, display: "0/0"},
		{name: "bundle not processed yet", bds: []*fleetv1.BundleDeployment{bd("a", "c1", true)}, bs: bundleStates{unprocessed: []string{"a"}},
			ready: metav1.ConditionFalse, reason: fleetv1.RolloutInProgressReason, state: fleetv1.GitRepoStateGitUpdating, clusters: [2]int32{1, 1}, display: "1/1"},
		{name: "sync failure wins, deployments still counted", f: &failure{reason: fleetv1.RenderErrorReason, message: "apps/fleet.yaml:3: bad"}, bds: []*fleetv1.BundleDeployment{bd("a", "c1", true)},
			ready: metav1.ConditionFalse, reason: fleetv1.RenderErrorReason, state: fleetv1.RenderErrorReason, clusters: [2]int32{1, 1}, display: "1/1", stalled: true},
		{name: "stalled bundle", bs: bundleStates{stalled: []string{"Bundle x: invalid targets"}},
			ready: metav1.ConditionFalse, reason: fleetv1.InvalidSpecReason, state: fleetv1.InvalidSpecReason, display: "0/0", stalled: true},
		{name: "fetch failure is retried: Reconciling, not Stalled", f: &failure{reason: "AuthenticationFailed", message: "denied"}, fetchFailed: true,
			ready: metav1.ConditionFalse, reason: "AuthenticationFailed", state: "AuthenticationFailed", display: "0/0", reconciling: true},
		{name: "unreachable repository is retried", f: &failure{reason: fleetv1.RepositoryUnreachableReason, message: "cannot reach"}, fetchFailed: true,
			ready: metav1.ConditionFalse, reason: fleetv1.RepositoryUnreachableReason, state: fleetv1.RepositoryUnreachableReason, display: "0/0", reconciling: true},
		{name: "a chart download failing on the network is retried", f: &failure{reason: fleetv1.RenderErrorReason, message: "remote/fleet.yaml:3: downloading …: connection refused", network: true},
			ready: metav1.ConditionFalse, reason: fleetv1.RenderErrorReason, state: fleetv1.RenderErrorReason, display: "0/0", reconciling: true},
		{name: "unsafe commit stalls", f: &failure{reason: fleetv1.UnsafeCommitReason, message: "forged tree"}, fetchFailed: true,
			ready: metav1.ConditionFalse, reason: fleetv1.UnsafeCommitReason, state: fleetv1.UnsafeCommitReason, display: "0/0", stalled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &fleetv1.GitRepoStatus{Commit: "0123456789abcdef"}
			computeStatus(s, gr, tc.f, tc.fetchFailed, tc.bds, tc.bs)
			c := meta.FindStatusCondition(s.Conditions, fleetv1.ReadyCondition)
			if c == nil || c.Status != tc.ready || c.Reason != tc.reason || c.ObservedGeneration != 2 {
				t.Fatalf("Ready condition %+v, want %s %s", c, tc.ready, tc.reason)
			}
			if s.Display.State != tc.state || s.Display.ReadyBundleDeployments != tc.display {
				t.Errorf("display %+v, want state %s, %s", s.Display, tc.state, tc.display)
			}
			if s.ReadyClusters != tc.clusters[0] || s.DesiredReadyClusters != tc.clusters[1] {
				t.Errorf("clusters %d/%d, want %d/%d", s.ReadyClusters, s.DesiredReadyClusters, tc.clusters[0], tc.clusters[1])
			}
			if got := meta.IsStatusConditionTrue(s.Conditions, fleetv1.StalledCondition); got != tc.stalled {
				t.Errorf("Stalled = %v, want %v", got, tc.stalled)
			}
			if tc.f != nil {
				rec := meta.FindStatusCondition(s.Conditions, fleetv1.ReconcilingCondition)
				if got := rec != nil && rec.Status == metav1.ConditionTrue && rec.Reason == tc.f.reason; got != tc.reconciling {
					t.Errorf("Reconciling %+v, want True with %s: %v", rec, tc.f.reason, tc.reconciling)
				}
			}
			fetched := meta.FindStatusCondition(s.Conditions, fleetv1.FetchedCondition)
			if fetched == nil || (fetched.Status == metav1.ConditionFalse) != tc.fetchFailed {
				t.Errorf("Fetched condition %+v with fetchFailed=%v", fetched, tc.fetchFailed)
			}
		})
	}
}

// TestTerminalFailures: the GitRepo is Stalled only for failures that need
// a change to the spec or a new commit; what the controller retries and may
// clear by itself (network, server, a Secret fixed, a branch pushed, an API
// write) keeps it Reconciling.
func TestTerminalFailures(t *testing.T) {
	for _, tc := range []struct {
		reason   string
		terminal bool
	}{
		{fleetv1.RepositoryUnreachableReason, false}, // network, TLS, timeouts, git server down
		{fleetv1.AuthenticationFailedReason, false},  // fixed by a Secret change
		{fleetv1.SecretNotFoundReason, false},        // fixed by creating the Secret
		{fleetv1.BranchNotFoundReason, false},        // fixed by a push
		{fleetv1.RevisionNotFoundReason, false},      // fixed by a push
		{fleetv1.WriteFailedReason, false},           // the API server
		{fleetv1.LocalRepositoryNotAllowedReason, true},
		{fleetv1.UnsafeCommitReason, true},
		{fleetv1.CheckoutTooLargeReason, true},
		{fleetv1.PathNotFoundReason, true},
		{fleetv1.RenderErrorReason, true},
		{fleetv1.InvalidSpecReason, true},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			if got := terminal(tc.reason); got != tc.terminal {
				t.Fatalf("terminal(%s) = %v, want %v", tc.reason, got, tc.terminal)
			}
		})
	}
}
