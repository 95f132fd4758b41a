package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/resource"
)

// DefaultMemoryLimit is the agent's soft memory limit (runtime/debug
// SetMemoryLimit). Agents run on small devices: near the limit the Go
// garbage collector runs more often instead of letting the heap grow to
// twice its live size (GOGC=100). It is a target, not a cap: live memory
// above it is kept, at the cost of more GC CPU (the runtime spends at most
// about half of the CPU on GC before it gives up on the limit).
const DefaultMemoryLimit = "40Mi"

// parseMemoryLimit turns a --memory-limit quantity ("40Mi", "64M", "0")
// into bytes; 0 leaves the Go runtime's limit (GOMEMLIMIT) alone.
func parseMemoryLimit(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q is not a quantity: give bytes with a suffix, e.g. 40Mi, or 0 for no limit", s)
	}
	v := q.Value()
	if v < 0 {
		return 0, fmt.Errorf("--memory-limit %q is negative: give bytes with a suffix, e.g. 40Mi, or 0 for no limit", s)
	}
	return v, nil
}

// applyMemoryLimit sets the soft memory limit unless the environment set
// GOMEMLIMIT (an operator's explicit setting wins over the flag default).
func applyMemoryLimit(limit int64, explicit bool, log logr.Logger) {
	if limit <= 0 {
		return
	}
	if env := os.Getenv("GOMEMLIMIT"); env != "" && !explicit {
		log.V(1).Info("GOMEMLIMIT is set; not applying the --memory-limit default", "GOMEMLIMIT", env)
		return
	}
	debug.SetMemoryLimit(limit)
}

// checkLoopback refuses pprof addresses other than loopback ones: profiles
// expose memory contents (tokens, credentials) to whoever can connect.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof-address %q is not host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--pprof-address %q is not a loopback address: profiles expose the agent's memory, so only 127.0.0.1:<port>, [::1]:<port> or localhost:<port> are allowed", addr)
}

// servePprof serves net/http/pprof on addr (loopback only) until ctx ends
// and returns the address it listens on. The listener is opened before
// returning, so a busy port is an error of Run, not a log line.
func servePprof(ctx context.Context, addr string, log logr.Logger) (net.Addr, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for --pprof-address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "pprof server stopped")
		}
	}()
	log.Info("Serving pprof", "address", ln.Addr().String())
	return ln.Addr(), nil
}
