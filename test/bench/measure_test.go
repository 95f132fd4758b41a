package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/test/harness"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is one process's cumulative CPU and peak RSS.
type procSample struct {
	comm   string
	cpuSec float64
	hwmKiB int64
	rssKiB int64 // VmRSS now
}

// sampleProcs reads /proc for every live process whose command line
// mentions dataDir (the manager and the control plane it started), keyed by
// executable name.
func sampleProcs(dataDir string) map[string]procSample {
	out := map[string]procSample{}
	for _, pid := range harness.ProcessesMentioning(dataDir) {
		s, err := readProc(pid)
		if err != nil {
			continue
		}
		prev := out[s.comm]
		prev.comm = s.comm
		prev.cpuSec += s.cpuSec
		prev.hwmKiB = max(prev.hwmKiB, s.hwmKiB)
		prev.rssKiB += s.rssKiB
		out[s.comm] = prev
	}
	return out
}

func readProc(pid int) (procSample, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procSample{}, err
	}
	// comm is in parentheses and may contain spaces; the fields after it are fixed.
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procSample{}, fmt.Errorf("parsing %s/stat", dir)
	}
	fields := strings.Fields(s[end+1:])
	// fields[0] is state (field 3); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return procSample{}, fmt.Errorf("parsing %s/stat: %d fields", dir, len(fields))
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	sample := procSample{comm: s[open+1 : end], cpuSec: (utime + stime) / clockTicks}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return procSample{}, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				sample.hwmKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				sample.rssKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return sample, nil
}

// promSum sums the samples of metric in Prometheus text exposition whose
// label set contains every one of labels (`key="value"` substrings),
// grouped by the value of groupBy when it is set.
func promSum(text, metric string, groupBy string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		var lbls string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			lbls, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer metric name with the same prefix
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(lbls, l) {
				match = false
			}
		}
		f := strings.Fields(rest)
		if !match || len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		var parts []string
		for _, name := range strings.Split(groupBy, ",") {
			if name != "" {
				parts = append(parts, labelValue(lbls, name))
			}
		}
		key := strings.Join(parts, " ")
		out[key] += v
	}
	return out
}

func labelValue(lbls, name string) string {
	i := strings.Index(lbls, name+`="`)
	if i < 0 {
		return ""
	}
	v := lbls[i+len(name)+2:]
	if j := strings.IndexByte(v, '"'); j >= 0 {
		return v[:j]
	}
	return v
}

func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// apiCounters are cumulative kube-apiserver figures.
type apiCounters struct {
	requests   float64            // apiserver_request_total, every verb
	etcdWrites float64            // etcd_requests_total for create, update and delete
	dbBytes    float64            // apiserver_storage_size_bytes (etcd database size)
	byRequest  map[string]float64 // "<verb> <resource> <subresource>" → requests
	// Seconds spent, by the same key, in the apiserver and in etcd calls.
	requestSeconds map[string]float64
	etcdSeconds    map[string]float64 // "<operation> <type>"
	etcdCalls      map[string]float64
}

// latencies reports mean apiserver and etcd latencies of the busiest
// requests between two scrapes.
func latencies(before, after apiCounters) string {
	var parts []string
	for _, k := range []string{"POST bundledeployments ", "PATCH bundledeployments status", "PATCH bundledeployments "} {
		n := after.byRequest[k] - before.byRequest[k]
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %.1f ms", strings.TrimSpace(k), 1000*(after.requestSeconds[k]-before.requestSeconds[k])/n))
		}
	}
	for _, k := range []string{"create bundledeployments.fleet.edgefleet.io", "update bundledeployments.fleet.edgefleet.io", "get bundledeployments.fleet.edgefleet.io"} {
		n := after.etcdCalls[k] - before.etcdCalls[k]
		if n > 0 {
			parts = append(parts, fmt.Sprintf("etcd %s: %.1f ms ×%.0f", k, 1000*(after.etcdSeconds[k]-before.etcdSeconds[k])/n, n))
		}
	}
	return strings.Join(parts, ", ")
}

// topRequests lists the most frequent requests between two scrapes.
func topRequests(before, after apiCounters, n int) string {
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for k, v := range after.byRequest {
		if d := v - before.byRequest[k]; d > 0 {
			all = append(all, kv{strings.TrimSpace(k), d})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i := 0; i < len(all) && i < n; i++ {
		parts = append(parts, fmt.Sprintf("%s=%.0f", all[i].k, all[i].v))
	}
	return strings.Join(parts, ", ")
}

func scrapeAPIServer(ctx context.Context, cfg *rest.Config) (apiCounters, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return apiCounters{}, err
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return apiCounters{}, fmt.Errorf("reading kube-apiserver /metrics: %w", err)
	}
	text := string(raw)
	ops := promSum(text, "etcd_requests_total", "operation")
	return apiCounters{
		requests:       total(promSum(text, "apiserver_request_total", "")),
		etcdWrites:     ops["create"] + ops["update"] + ops["delete"],
		dbBytes:        total(promSum(text, "apiserver_storage_size_bytes", "")),
		byRequest:      promSum(text, "apiserver_request_total", "verb,resource,subresource"),
		requestSeconds: promSum(text, "apiserver_request_duration_seconds_sum", "verb,resource,subresource"),
		etcdSeconds:    promSum(text, "etcd_request_duration_seconds_sum", "operation,type"),
		etcdCalls:      promSum(text, "etcd_request_duration_seconds_count", "operation,type"),
	}, nil
}

func scrapeManager(m *harness.Manager) (map[string]float64, error) {
	resp, err := m.AdminHTTP.Get(m.URL + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("reading manager /metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return promSum(string(body), "edgefleet_bundledeployment_writes_total", "op"), nil
}
