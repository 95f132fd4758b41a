package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/test/harness"
)

const orderUI = orderProfile + 5

// TestWebUIWatchers measures what browsers watching the Clusters page cost
// the manager: each "browser" is an HTTP/2 connection making the UI's
// requests (list, then watch, of Clusters through /ui/api/k8s as a
// ServiceAccount), while Clusters change at a steady rate. It reports the
// manager's and kube-apiserver's CPU with 0 and with K watchers, and the
// initial list's time. EDGEFLEET_BENCH_UI_CLUSTERS sets the number of
// Clusters (default 300).
func TestWebUIWatchers(t *testing.T) {
	requireBench(t)
	ctx := context.Background()
	clusters := 300
	if v := os.Getenv("EDGEFLEET_BENCH_UI_CLUSTERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EDGEFLEET_BENCH_UI_CLUSTERS=%q", v)
		}
		clusters = n
	}
	const changesPerSec = 10
	window := 20 * time.Second

	m := harness.StartManager(t, harness.ManagerOptions{Args: []string{"--log-level", "info"}})
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}); err != nil {
		t.Fatal(err)
	}
	parallel(t, clusters, func(i int) error {
		return c.Create(ctx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ui-%05d", i), Namespace: benchNS, Labels: map[string]string{"env": "bench"}}})
	})
	waitFor(t, 10*time.Minute, "every Cluster has its namespace", func() bool {
		var list fleetv1.ClusterList
		if err := c.List(ctx, &list, client.InNamespace(benchNS)); err != nil {
			return false
		}
		for i := range list.Items {
			if list.Items[i].Status.Namespace == "" {
				return false
			}
		}
		return len(list.Items) == clusters
	})
	token := benchViewer(ctx, t, cs)

	// Steady churn: each change is one watch event for every watcher.
	churnCtx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	go func() {
		tick := time.NewTicker(time.Second / changesPerSec)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-churnCtx.Done():
				return
			case <-tick.C:
			}
			patch := fmt.Sprintf(`{"metadata":{"labels":{"tick":"%d"}}}`, n)
			_ = c.Patch(churnCtx, &fleetv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: fmt.Sprintf("ui-%05d", n%clusters)}},
				client.RawPatch(types.MergePatchType, []byte(patch)))
		}
	}()

	type row struct {
		watchers            int
		managerCPU, apiCPU  float64 // cores
		eventsPerWatcherSec float64
		listMs              float64
	}
	var rows []row
	for _, k := range []int{0, 10, 50} {
		wctx, stop := context.WithCancel(ctx)
		var events atomic.Int64
		var listDur time.Duration
		var listMu sync.Mutex
		var wg sync.WaitGroup
		for range k {
			wg.Go(func() {
				d, err := uiWatch(wctx, m, token, &events)
				if err != nil && wctx.Err() == nil {
					t.Errorf("watcher: %v", err)
				}
				listMu.Lock()
				listDur += d
				listMu.Unlock()
			})
		}
		time.Sleep(3 * time.Second) // lists done, watches open
		before := sampleProcs(m.DataDir)
		e0 := events.Load()
		time.Sleep(window)
		after := sampleProcs(m.DataDir)
		e1 := events.Load()
		stop()
		wg.Wait()
		r := row{watchers: k,
			managerCPU: (after["edgefleet"].cpuSec - before["edgefleet"].cpuSec) / window.Seconds(),
			apiCPU:     (after["kube-apiserver"].cpuSec - before["kube-apiserver"].cpuSec) / window.Seconds()}
		if k > 0 {
			r.eventsPerWatcherSec = float64(e1-e0) / float64(k) / window.Seconds()
			r.listMs = float64(listDur.Milliseconds()) / float64(k)
		}
		t.Logf("%d watchers: manager %.3f cores, kube-apiserver %.3f cores, %.1f events/s per watcher, list %.0f ms", k, r.managerCPU, r.apiCPU, r.eventsPerWatcherSec, r.listMs)
		rows = append(rows, r)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Web UI: browsers watching the Clusters page\n\n")
	fmt.Fprintf(&b, "%d Clusters, %d changes/s; each watcher is one HTTP/2 connection making the UI's requests (list, then watch, through `/ui/api/k8s` as a ServiceAccount). CPU over %s (cores).\n\n", clusters, changesPerSec, window)
	fmt.Fprintf(&b, "| watchers | manager CPU | kube-apiserver CPU | events/s per watcher | initial list (ms, mean) |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %.3f | %.3f | %.1f | %.0f |\n", r.watchers, r.managerCPU, r.apiCPU, r.eventsPerWatcherSec, r.listMs)
	}
	if last := rows[len(rows)-1]; last.watchers > 0 {
		fmt.Fprintf(&b, "\nExtra manager CPU per watching browser: %.2f millicores (kube-apiserver: %.2f).\n",
			1000*(last.managerCPU-rows[0].managerCPU)/float64(last.watchers), 1000*(last.apiCPU-rows[0].apiCPU)/float64(last.watchers))
	}
	t.Log("\n" + b.String())
	addSection(orderUI, b.String())
}

// benchViewer makes a ServiceAccount that may read Clusters and returns a token.
func benchViewer(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	if _, err := cs.CoreV1().ServiceAccounts(benchNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ui-viewer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "bench-ui-viewer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{fleetv1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bench-ui-viewer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "bench-ui-viewer"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "ui-viewer", Namespace: benchNS}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(benchNS).CreateToken(ctx, "ui-viewer", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// uiWatch lists and then watches Clusters as the UI does, on its own
// HTTP/2 connection, counting events until ctx ends; it returns the list's
// duration.
func uiWatch(ctx context.Context, m *harness.Manager, token string, events *atomic.Int64) (time.Duration, error) {
	base := m.HTTP.Transport.(*http.Transport)
	tr := &http.Transport{TLSClientConfig: base.TLSClientConfig.Clone(), ForceAttemptHTTP2: true}
	tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	get := func(query string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", m.URL+"/ui/api/k8s/apis/fleet.edgefleet.io/v1alpha1/clusters?"+query, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Edgefleet-UI", "1")
		res, err := hc.Do(req)
		if err == nil && res.StatusCode != 200 {
			res.Body.Close()
			return nil, fmt.Errorf("%s: %s", query, res.Status)
		}
		return res, err
	}
	start := time.Now()
	var rv, cont string
	for {
		q := "limit=500"
		if cont != "" {
			q += "&continue=" + cont
		}
		res, err := get(q)
		if err != nil {
			return 0, err
		}
		var list struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
				Continue        string `json:"continue"`
			} `json:"metadata"`
		}
		err = json.NewDecoder(res.Body).Decode(&list)
		res.Body.Close()
		if err != nil {
			return 0, err
		}
		rv, cont = list.Metadata.ResourceVersion, list.Metadata.Continue
		if cont == "" {
			break
		}
	}
	listDur := time.Since(start)
	res, err := get("watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=" + rv)
	if err != nil {
		return listDur, err
	}
	defer res.Body.Close()
	if !res.ProtoAtLeast(2, 0) {
		return listDur, fmt.Errorf("watch over %s, want HTTP/2", res.Proto)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		events.Add(1)
	}
	return listDur, nil
}
