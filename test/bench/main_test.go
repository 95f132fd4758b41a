package bench

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/test/tmpguard"
)

// Each benchmark adds its Markdown section to the report; TestMain merges
// them, in a fixed order, into EDGEFLEET_BENCH_OUT after every test ran:
// the sections measured by this run replace their earlier versions and the
// others are kept, so one `make bench` produces the whole of BENCHMARKS.md
// and a single benchmark (or `make soak`) updates only its own section.
var (
	reportMu sync.Mutex
	sections = map[int]string{}
)

// Section orders in BENCHMARKS.md.
const (
	orderFleet = iota * 10
	orderIdle
	orderRegistration
	orderTunnel
	orderSeedImage
	orderFootprint
	orderProfile
	orderFaults
)

// addSection records a section; a later call with the same order replaces it.
func addSection(order int, markdown string) {
	reportMu.Lock()
	defer reportMu.Unlock()
	sections[order] = markdown
}

func TestMain(m *testing.M) {
	// tmpguard: a benchmark that leaves temporary files behind fails.
	code := tmpguard.Main(m)
	out := os.Getenv("EDGEFLEET_BENCH_OUT")
	if out == "" || len(sections) == 0 {
		os.Exit(code)
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "bench: a benchmark failed; %s left unchanged\n", out)
		os.Exit(code)
	}
	cmd := os.Getenv("EDGEFLEET_BENCH_CMD")
	if cmd == "" {
		cmd = "EDGEFLEET_BENCH=1 go test -v ./test/bench/"
	}
	old, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		fmt.Fprintf(os.Stderr, "bench: reading %s: %v\n", out, err)
		os.Exit(1)
	}
	stamp := fmt.Sprintf("_Measured %s with `%s` on %s%s._", time.Now().UTC().Format("2006-01-02 15:04 MST"), cmd, machine(), loadAverage())
	if err := os.WriteFile(out, []byte(mergeReport(string(old), sections, stamp)), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", out, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", out)
	os.Exit(code)
}

// requireBench skips unless EDGEFLEET_BENCH=1, so `go test ./...` stays fast.
func requireBench(t *testing.T) {
	t.Helper()
	if os.Getenv("EDGEFLEET_BENCH") != "1" {
		t.Skip("benchmark; run with EDGEFLEET_BENCH=1 (make bench)")
	}
}

// loadAverage says how busy the machine was (other jobs share it): the
// 15-minute load average when the report is written.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return ", load average " + f[2] + " (15 min) when written"
	}
	return ""
}
