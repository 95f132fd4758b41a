package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// profiler captures CPU profiles of the manager and kube-apiserver during a
// scenario's phases when EDGEFLEET_BENCH_PPROF names a directory
// (EDGEFLEET_BENCH_PPROF_SECONDS, default 20, is each profile's length).
// Inspect them with `go tool pprof -top <file>`.
type profiler struct {
	dir         string
	seconds     int
	managerAddr string // 127.0.0.1:port passed as --pprof-address
	wg          sync.WaitGroup
}

func newProfiler(t *testing.T) *profiler {
	dir := os.Getenv("EDGEFLEET_BENCH_PPROF")
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seconds := 20
	if s, err := strconv.Atoi(os.Getenv("EDGEFLEET_BENCH_PPROF_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return &profiler{dir: dir, seconds: seconds, managerAddr: addr}
}

// managerArgs are the extra manager flags.
func (p *profiler) managerArgs() []string {
	if p == nil {
		return nil
	}
	return []string{"--pprof-address", p.managerAddr}
}

// capture starts CPU profiles of both processes, named <name>-<process>.pprof.
func (p *profiler) capture(ctx context.Context, t *testing.T, cfg *rest.Config, name string) {
	if p == nil {
		return
	}
	p.wg.Add(3)
	go func() {
		// Where the manager's goroutines wait, a few seconds into the phase.
		defer p.wg.Done()
		time.Sleep(5 * time.Second)
		var self bytes.Buffer
		if prof := pprof.Lookup("goroutine"); prof != nil && prof.WriteTo(&self, 1) == nil {
			p.write(t, name+"-bench-goroutines.txt", self.Bytes(), nil)
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/goroutine?debug=1", p.managerAddr))
		if err != nil {
			p.write(t, name+"-manager-goroutines.txt", nil, err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		p.write(t, name+"-manager-goroutines.txt", data, err)
	}()
	go func() {
		defer p.wg.Done()
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Logf("pprof: %v", err)
			return
		}
		data, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", strconv.Itoa(p.seconds)).Timeout(time.Duration(p.seconds+30) * time.Second).DoRaw(ctx)
		p.write(t, name+"-kube-apiserver.pprof", data, err)
	}()
	go func() {
		defer p.wg.Done()
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.managerAddr, p.seconds))
		if err != nil {
			p.write(t, name+"-manager.pprof", nil, err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		p.write(t, name+"-manager.pprof", data, err)
	}()
}

func (p *profiler) write(t *testing.T, file string, data []byte, err error) {
	if err != nil {
		t.Logf("pprof %s: %v", file, err)
		return
	}
	path := filepath.Join(p.dir, file)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Logf("pprof: %v", err)
		return
	}
	t.Logf("pprof: wrote %s", path)
}

// wait lets running profiles finish before the processes stop.
func (p *profiler) wait() {
	if p != nil {
		p.wg.Wait()
	}
}
