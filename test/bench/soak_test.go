package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/test/harness"
)

// Issue #20 scenario 7: the soak. `make soak` runs it; `make bench` skips it.

const (
	orderSoak   = orderFaults + 5
	soakNS      = "fleet-soak"
	soakBundles = 2
)

// soakConfig is the soak's shape, from the environment `make soak` sets.
type soakConfig struct {
	clusters    int           // EDGEFLEET_SOAK_CLUSTERS, 500
	duration    time.Duration // EDGEFLEET_SOAK_DURATION, 1h
	changeEvery time.Duration // EDGEFLEET_SOAK_CHANGE_EVERY, 1m
	sampleEvery time.Duration // EDGEFLEET_SOAK_SAMPLE_EVERY, 10s
	svg         string        // EDGEFLEET_SOAK_SVG: where the plot goes
}

func soakSettings(t *testing.T) soakConfig {
	t.Helper()
	dur := func(name string, def time.Duration) time.Duration {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q is not a positive duration such as 5m or 1h", name, v)
		}
		return d
	}
	c := soakConfig{
		clusters:    500,
		duration:    dur("EDGEFLEET_SOAK_DURATION", time.Hour),
		changeEvery: dur("EDGEFLEET_SOAK_CHANGE_EVERY", time.Minute),
		sampleEvery: dur("EDGEFLEET_SOAK_SAMPLE_EVERY", 10*time.Second),
		svg:         os.Getenv("EDGEFLEET_SOAK_SVG"),
	}
	if v := os.Getenv("EDGEFLEET_SOAK_CLUSTERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EDGEFLEET_SOAK_CLUSTERS=%q is not a positive number", v)
		}
		c.clusters = n
	}
	return c
}

// soakSample is one reading of the manager and its control plane.
type soakSample struct {
	at            time.Duration // since the soak began
	managerRSS    int64         // KiB
	goroutines    float64       // the manager's go_goroutines
	apiRequests   float64       // cumulative apiserver_request_total
	apiserverRSS  int64         // KiB
	etcdDBBytes   float64
	benchRoutines int // this process: the simulated agents
}

// soakChange is one change of a Bundle's content and how long the fleet
// took to run it everywhere.
type soakChange struct {
	at        time.Duration
	bundle    string
	converged time.Duration // 0: did not converge
}

// TestSoak (issue #20 scenario 7): N simulated clusters (default 500: the
// real join, credential and tunnel client code of simFleet, as in
// TestManagerRestartWithConnectedAgents) while a Bundle's content changes
// every minute for the duration (default 1 h). Every change must reach
// every cluster; the manager's RSS and goroutines, the kube-apiserver's
// request rate and the etcd database size are sampled throughout, plotted
// into an SVG and judged flat or not by their slope per hour.
func TestSoak(t *testing.T) {
	if os.Getenv("EDGEFLEET_SOAK") != "1" {
		t.Skip("soak; run with make soak (EDGEFLEET_SOAK=1)")
	}
	cfg := soakSettings(t)
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := cfg.clusters

	// Phase 1: a manager, one real downstream cluster the agents share,
	// the Bundles and N joined agents.
	downstream := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	m := startQuietManager(t, "--join-rate-limit", "-1")
	restCfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: soakNS}}); err != nil {
		t.Fatal(err)
	}
	token := createSimToken(t, m, soakNS, cfg.duration+time.Hour, n)
	// Each Bundle flips between two contents: a change is a new
	// deploymentID on every cluster, as after a git push, without the
	// benchmark itself piling up Content objects.
	contents := make([][2]string, soakBundles)
	for b := range soakBundles {
		for v := range 2 {
			if contents[b][v], err = content.Store(ctx, m.Client, benchManifest(10*b+v)); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Client.Create(ctx, &fleetv1.Bundle{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", b), Namespace: soakNS},
			Spec: fleetv1.BundleSpec{
				BundleDeploymentOptions: fleetv1.BundleDeploymentOptions{DefaultNamespace: fmt.Sprintf("app-%d", b)},
				ContentsID:              contents[b][0],
				Targets:                 []fleetv1.BundleTarget{{ClusterSelector: &metav1.LabelSelector{}}},
			},
		}); err != nil {
			t.Fatal(err)
		}
	}
	tJoin := time.Now()
	f := joinSimFleet(ctx, t, m, token, downstream.RESTConfig(), n)
	waitProgress(t, 20*time.Minute, "every tunnel and every deployment", func() (bool, string) {
		sessions, _, _, err := managerSample(m)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for b := range soakBundles {
			if bundleConverged(ctx, m.Client, fmt.Sprintf("app-%d", b), n) {
				ready++
			}
		}
		return int(sessions) == n && ready == soakBundles, fmt.Sprintf("%.0f/%d tunnels, %d/%d bundles ready on all clusters", sessions, n, ready, soakBundles)
	})
	setup := time.Since(tJoin)
	t.Logf("%d agents joined and deployed in %s; soaking for %s with a change every %s", n, secs(setup), cfg.duration, cfg.changeEvery)

	// Phase 2: sample while changing.
	t0 := time.Now()
	stopSampling := sampleEvery(ctx, cfg.sampleEvery, func(ctx context.Context) (soakSample, bool) {
		s, err := takeSoakSample(ctx, m, restCfg, t0)
		if err != nil && ctx.Err() == nil {
			t.Logf("sample at %s: %v", secs(time.Since(t0)), err)
		}
		return s, err == nil
	})

	var changes []soakChange
	version := make([]int, soakBundles)
	for k := 0; ; k++ {
		due := t0.Add(time.Duration(k) * cfg.changeEvery)
		if due.Sub(t0) >= cfg.duration {
			break
		}
		time.Sleep(time.Until(due))
		b := k % soakBundles
		version[b] = 1 - version[b]
		ch := soakChange{at: time.Since(t0), bundle: fmt.Sprintf("app-%d", b)}
		applies0 := f.appliesSoFar()
		start := time.Now()
		if err := changeBundle(ctx, m.Client, ch.bundle, contents[b][version[b]]); err != nil {
			t.Errorf("change %d: %v", k, err)
			changes = append(changes, ch)
			continue
		}
		// A change that has not converged when the next is due is late;
		// give it up to five intervals before calling it lost.
		deadline := start.Add(5 * cfg.changeEvery)
		for time.Now().Before(deadline) {
			if f.appliesSoFar()-applies0 >= n && bundleConverged(ctx, m.Client, ch.bundle, n) {
				ch.converged = time.Since(start)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if ch.converged == 0 {
			t.Errorf("change %d (%s at %s) did not reach all %d clusters within %s (%d applies)", k, ch.bundle, secs(ch.at), n, 5*cfg.changeEvery, f.appliesSoFar()-applies0)
		} else if k%10 == 0 {
			t.Logf("change %d at %s: converged in %s", k, secs(ch.at), secs(ch.converged))
		}
		changes = append(changes, ch)
	}
	// One last sample after the last interval.
	time.Sleep(time.Until(t0.Add(cfg.duration)))
	samples := stopSampling()
	if s, err := takeSoakSample(ctx, m, restCfg, t0); err == nil {
		samples = append(samples, s)
	}
	if len(samples) < 4 {
		t.Fatalf("only %d samples in %s", len(samples), cfg.duration)
	}

	// Phase 3: judge and report.
	rep := judgeSoak(samples, changes, cfg)
	if cfg.svg != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.svg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.svg, []byte(soakSVG(samples, changes, cfg)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(strings.TrimSuffix(cfg.svg, ".svg")+".csv", []byte(soakCSV(samples)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	md := soakMarkdown(rep, cfg, n, setup)
	t.Log("\n" + md)
	addSection(orderSoak, md)
	if rep.goroutines.leaks() {
		t.Errorf("manager goroutines grow %+.0f per hour (%.0f → %.0f): a leak", rep.goroutines.slopePerHour, rep.goroutines.first, rep.goroutines.last)
	}
}

func changeBundle(ctx context.Context, c client.Client, name, contentsID string) error {
	var b fleetv1.Bundle
	if err := c.Get(ctx, client.ObjectKey{Namespace: soakNS, Name: name}, &b); err != nil {
		return err
	}
	b.Spec.ContentsID = contentsID
	return c.Update(ctx, &b)
}

// bundleConverged: the manager saw the Bundle's current spec and every
// cluster reports it ready.
func bundleConverged(ctx context.Context, c client.Client, name string, n int) bool {
	var b fleetv1.Bundle
	if err := c.Get(ctx, client.ObjectKey{Namespace: soakNS, Name: name}, &b); err != nil {
		return false
	}
	return b.Status.ObservedGeneration == b.Generation && b.Status.ReadyClusters == int32(n)
}

func takeSoakSample(ctx context.Context, m *harness.Manager, cfg *rest.Config, t0 time.Time) (soakSample, error) {
	s := soakSample{at: time.Since(t0), benchRoutines: runtime.NumGoroutine()}
	_, gor, _, err := managerSample(m)
	if err != nil {
		return s, err
	}
	s.goroutines = gor
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	api, err := scrapeAPIServer(c, cfg)
	if err != nil {
		return s, err
	}
	s.apiRequests, s.etcdDBBytes = api.requests, api.dbBytes
	procs := sampleProcs(m.DataDir)
	s.managerRSS, s.apiserverRSS = procs["edgefleet"].rssKiB, procs["kube-apiserver"].rssKiB
	return s, nil
}

// trend is a series' least-squares line after the warm-up.
type trend struct {
	first, last, mean, min, max float64
	slopePerHour                float64
	flat                        bool
	fitted                      bool // false: too few readings for a line
}

// flatTolerance: a series is flat when its line moves less than 5 % of its
// mean per hour, or less than the absolute noise floor.
const flatTolerance = 0.05

func fitTrend(at []time.Duration, v []float64, noise float64) trend {
	tr := trend{first: v[0], last: v[len(v)-1], min: math.Inf(1), max: math.Inf(-1), fitted: true}
	var sx, sy float64
	for i := range v {
		sx += at[i].Hours()
		sy += v[i]
		tr.min, tr.max = math.Min(tr.min, v[i]), math.Max(tr.max, v[i])
	}
	nf := float64(len(v))
	mx, my := sx/nf, sy/nf
	var sxy, sxx float64
	for i := range v {
		dx := at[i].Hours() - mx
		sxy += dx * (v[i] - my)
		sxx += dx * dx
	}
	tr.mean = my
	if sxx > 0 {
		tr.slopePerHour = sxy / sxx
	}
	tr.flat = math.Abs(tr.slopePerHour) <= math.Max(flatTolerance*math.Abs(my), noise)
	return tr
}

// leaks: goroutines that grow by more than the tolerance per hour.
func (t trend) leaks() bool { return !t.flat && t.slopePerHour > 0 }

type soakReport struct {
	samples                       int
	warmup                        time.Duration
	rss, goroutines, rate, db     trend
	apiRSS                        trend
	benchFirst, benchLast         int
	changes, converged            int
	p50, p95, worst               time.Duration
	totalRequests, elapsedSeconds float64
}

// judgeSoak fits each series after a warm-up (the first tenth of the run,
// at most 10 minutes: caches fill, the Go heap finds its size).
func judgeSoak(samples []soakSample, changes []soakChange, cfg soakConfig) soakReport {
	r := soakReport{samples: len(samples), warmup: min(cfg.duration/10, 10*time.Minute)}
	if samples[len(samples)-2].at < r.warmup { // too short to leave a warm-up out
		r.warmup = 0
	}
	var at, dbAt, rateAt []time.Duration
	var rss, gor, db, apiRSS, rate []float64
	last := -1 // the sample the current rate window starts at
	for i, s := range samples {
		if s.at < r.warmup {
			continue
		}
		at = append(at, s.at)
		rss = append(rss, float64(s.managerRSS)/1024)
		gor = append(gor, s.goroutines)
		apiRSS = append(apiRSS, float64(s.apiserverRSS)/1024)
		// A scrape without the storage size metric (the apiserver
		// sometimes omits it) is no reading, not an empty database.
		if s.etcdDBBytes > 0 {
			dbAt = append(dbAt, s.at)
			db = append(db, s.etcdDBBytes/(1<<20))
		}
		// The rate over whole change intervals: each holds one change's
		// burst, so the windows compare like with like.
		if last < 0 {
			last = i
		} else if s.at-samples[last].at >= cfg.changeEvery {
			rateAt = append(rateAt, s.at)
			rate = append(rate, (s.apiRequests-samples[last].apiRequests)/(s.at-samples[last].at).Seconds())
			last = i
		}
	}
	r.rss, r.goroutines, r.apiRSS = fitTrend(at, rss, 10), fitTrend(at, gor, 50), fitTrend(at, apiRSS, 20)
	if len(db) >= 2 {
		r.db = fitTrend(dbAt, db, 5)
	}
	if len(rate) >= 2 {
		r.rate = fitTrend(rateAt, rate, 2)
	}
	return finishSoakReport(r, samples, changes)
}

func finishSoakReport(r soakReport, samples []soakSample, changes []soakChange) soakReport {
	first, last := samples[0], samples[len(samples)-1]
	r.benchFirst, r.benchLast = first.benchRoutines, last.benchRoutines
	r.totalRequests, r.elapsedSeconds = last.apiRequests-first.apiRequests, (last.at - first.at).Seconds()
	var times []time.Duration
	for _, c := range changes {
		r.changes++
		if c.converged > 0 {
			r.converged++
			times = append(times, c.converged)
		}
	}
	r.p50, r.p95, r.worst = quantile(times, 0.5), quantile(times, 0.95), quantile(times, 1)
	return r
}

func flatWord(t trend, unit string) string {
	if !t.fitted {
		return "not judged (too few readings)"
	}
	if t.flat {
		return fmt.Sprintf("flat (%+.1f %s/h)", t.slopePerHour, unit)
	}
	return fmt.Sprintf("**slope %+.1f %s/h**", t.slopePerHour, unit)
}

func soakMarkdown(r soakReport, cfg soakConfig, n int, setup time.Duration) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Soak\n\n")
	w("Issue #20 scenario 7. A real manager (`edgefleet server`, embedded control plane, `--unsafe-no-fsync`) and %d simulated agents in the benchmark process, ", n)
	w("the same as in the restart benchmark under Faults: the real join code, credential renewal and tunnel client, and a BundleDeployment watch through the manager's endpoint with each cluster's own credential ")
	w("(deploys are counted by the agent's rule and the status a real agent writes is written; nothing is applied downstream). ")
	w("%d Bundles target every cluster; every %s one of them flips to its other content (a new deploymentID on every cluster, as after a git push), ", soakBundles, cfg.changeEvery)
	w("alternating, for %s. Every %s the manager's RSS and `go_goroutines`, the kube-apiserver's `apiserver_request_total` and RSS and the etcd database size (`apiserver_storage_size_bytes`) are sampled. ", cfg.duration, cfg.sampleEvery)
	w("A series is judged by its least-squares slope after a %s warm-up: flat when the line moves less than %.0f%% of its mean per hour (or less than its noise floor: 10 MiB RSS, 50 goroutines, 2 req/s, 5 MiB of etcd). ", r.warmup, 100*flatTolerance)
	w("Setup (joining %d agents and deploying both Bundles everywhere) took %s.\n\n", n, secs(setup))
	if cfg.svg != "" {
		w("![Soak: manager RSS, goroutines, kube-apiserver request rate and etcd DB size over time](docs/bench/%s)\n\n", filepath.Base(cfg.svg))
	}
	w("| figure | after warm-up: first → last (min–max) | slope per hour | verdict |\n|---|---|---|---|\n")
	row := func(name string, t trend, unit, format string) {
		if !t.fitted {
			w("| %s | too few readings | — | — |\n", name)
			return
		}
		w("| %s | "+format+" → "+format+" ("+format+"–"+format+") %s | %+.1f %s | %s |\n", name, t.first, t.last, t.min, t.max, unit, t.slopePerHour, unit, flatWord(t, unit))
	}
	row("manager RSS", r.rss, "MiB", "%.0f")
	row("manager goroutines", r.goroutines, "goroutines", "%.0f")
	row("kube-apiserver request rate (per change interval)", r.rate, "req/s", "%.1f")
	row("kube-apiserver RSS", r.apiRSS, "MiB", "%.0f")
	row("etcd database size", r.db, "MiB", "%.1f")
	w("\n| changes | converged on all %d clusters | time to converge p50 / p95 / worst | mean kube-apiserver rate over the run | agents' (bench process) goroutines first / last | samples |\n|---|---|---|---|---|---|\n", n)
	w("| %d | %d | %s / %s / %s | %.1f req/s | %d / %d | %d |\n\n", r.changes, r.converged, secs(r.p50), secs(r.p95), secs(r.worst),
		r.totalRequests/math.Max(r.elapsedSeconds, 1), r.benchFirst, r.benchLast, r.samples)
	verdict := "flat"
	if !r.rss.flat || !r.goroutines.flat {
		verdict = "not flat (see the slopes above)"
	}
	if cfg.duration < 15*time.Minute {
		verdict += " (a run under 15 minutes is a check of the machinery: slopes per hour from it mean little)"
	}
	w("Verdict: manager memory and goroutines %s; request rate %s; %d of %d changes converged.\n\n", verdict, flatWord(r.rate, "req/s"), r.converged, r.changes)
	w("Run with `make soak` (1 h, 500 clusters); `make soak SOAK_DURATION=5m` for a short check; `SOAK_CLUSTERS=` for another fleet size. Not part of `make bench` or CI.\n")
	return b.String()
}

// soakCSV is the raw samples, for a look beyond the plot.
func soakCSV(samples []soakSample) string {
	var b strings.Builder
	b.WriteString("seconds,manager_rss_kib,manager_goroutines,apiserver_requests_total,apiserver_rss_kib,etcd_db_bytes,bench_goroutines\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.1f,%d,%.0f,%.0f,%d,%.0f,%d\n", s.at.Seconds(), s.managerRSS, s.goroutines, s.apiRequests, s.apiserverRSS, s.etcdDBBytes, s.benchRoutines)
	}
	return b.String()
}
