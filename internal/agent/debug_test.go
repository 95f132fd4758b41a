package agent

import (
	"context"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
)

func TestPprofAddressMustBeLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060"} {
		if err := checkLoopback(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, addr := range []string{":6060", "0.0.0.0:6060", "10.0.0.1:6060", "example.com:6060", "6060"} {
		err := checkLoopback(addr)
		if err == nil {
			t.Errorf("%s was accepted: profiles would be reachable off the host", addr)
			continue
		}
		if !strings.Contains(err.Error(), "--pprof-address") {
			t.Errorf("%s: error does not name the flag: %v", addr, err)
		}
	}
}

func TestPprofServesProfilesUntilStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := servePprof(ctx, "127.0.0.1:0", logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "HeapInuse") {
		t.Fatalf("heap profile: %d %.200s", resp.StatusCode, body)
	}
	cancel()
	if _, err := servePprof(context.Background(), "0.0.0.0:0", logr.Discard()); err == nil {
		t.Fatal("a non-loopback pprof address was served")
	}
}

func TestMemoryLimitFlag(t *testing.T) {
	parse := func(args ...string) (Options, error) {
		f := &Flags{}
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		f.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		// Complete then fails for want of a manager; the limit is parsed
		// before that and is all this test looks at.
		return f.Complete()
	}
	if o, _ := parse(); o.MemoryLimit != 40<<20 || o.MemoryLimitExplicit {
		t.Errorf("default limit = %d explicit=%v, want 40Mi from the default", o.MemoryLimit, o.MemoryLimitExplicit)
	}
	if o, _ := parse("--memory-limit=64Mi"); o.MemoryLimit != 64<<20 || !o.MemoryLimitExplicit {
		t.Errorf("--memory-limit=64Mi gave %d explicit=%v", o.MemoryLimit, o.MemoryLimitExplicit)
	}
	if o, _ := parse("--memory-limit=0"); o.MemoryLimit != 0 {
		t.Errorf("--memory-limit=0 gave %d, want none", o.MemoryLimit)
	}
	if _, err := parse("--memory-limit=lots"); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
		t.Errorf("an invalid limit was not refused with the flag's name: %v", err)
	}
}

func TestMemoryLimitRespectsGOMEMLIMIT(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("GOMEMLIMIT", "100MiB")
	applyMemoryLimit(40<<20, false, logr.Discard())
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Errorf("the flag default overrode GOMEMLIMIT: limit %d", got)
	}
	applyMemoryLimit(40<<20, true, logr.Discard())
	if got := debug.SetMemoryLimit(-1); got != 40<<20 {
		t.Errorf("an explicit --memory-limit was not applied: limit %d", got)
	}
}
