package planner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// prober runs the plan's HTTP probes with Kubernetes' threshold semantics:
// a probe turns healthy after successThreshold successes in a row and
// unhealthy after failureThreshold failures in a row; in between it keeps
// its state. Probe state is not persisted: after a restart every probe
// starts unhealthy and proves itself again.
type prober struct {
	now    func() time.Time
	probes map[string]*probeState
}

type probeState struct {
	spec    nodeplan.Probe
	started time.Time
	lastRun time.Time
	res     ProbeResult
}

func newProber(now func() time.Time) *prober {
	return &prober{now: now, probes: map[string]*probeState{}}
}

// set replaces the probes; a probe whose spec did not change keeps its
// state.
func (p *prober) set(probes map[string]nodeplan.Probe) {
	next := map[string]*probeState{}
	for name, spec := range probes {
		if old, ok := p.probes[name]; ok && old.spec == spec {
			next[name] = old
			continue
		}
		next[name] = &probeState{spec: spec, started: p.now(), res: ProbeResult{Name: name}}
	}
	p.probes = next
}

// run probes what is due and returns when the next probe is due and
// whether any state changed.
func (p *prober) run(ctx context.Context) (time.Time, bool) {
	now := p.now()
	next := now.Add(time.Hour)
	changed := false
	for _, name := range slices.Sorted(maps.Keys(p.probes)) {
		s := p.probes[name]
		period, timeout, success, failure := s.spec.Thresholds()
		due := s.started.Add(time.Duration(s.spec.InitialDelaySeconds) * time.Second)
		if !s.lastRun.IsZero() {
			due = s.lastRun.Add(period)
		}
		if now.Before(due) {
			next = earliest(next, due)
			continue
		}
		before := s.res
		err := httpProbe(ctx, s.spec.HTTPGet, timeout)
		s.lastRun = p.now()
		if err == nil {
			s.res.SuccessCount, s.res.FailureCount, s.res.LastError = min(s.res.SuccessCount+1, success), 0, ""
			if s.res.SuccessCount >= success {
				s.res.Healthy = true
			}
		} else {
			s.res.SuccessCount, s.res.FailureCount, s.res.LastError = 0, min(s.res.FailureCount+1, failure), lastBytes(err.Error(), 512)
			if s.res.FailureCount >= failure {
				s.res.Healthy = false
			}
		}
		changed = changed || s.res != before
		next = earliest(next, s.lastRun.Add(period))
	}
	return next, changed
}

func (p *prober) results() []ProbeResult {
	var out []ProbeResult
	for _, name := range slices.Sorted(maps.Keys(p.probes)) {
		out = append(out, p.probes[name].res)
	}
	return out
}

// httpProbe GETs the URL: 2xx and 3xx (not followed) are success.
func httpProbe(ctx context.Context, g nodeplan.HTTPGetAction, timeout time.Duration) error {
	tlsConfig := &tls.Config{InsecureSkipVerify: g.Insecure, MinVersion: tls.VersionTLS12} //nolint:gosec // the plan asks for it
	if g.CACert != "" {
		pem, err := os.ReadFile(g.CACert)
		if err != nil {
			return fmt.Errorf("reading caCert: %w", err)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("caCert %s holds no PEM certificate", g.CACert)
		}
	}
	if g.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(g.ClientCert, g.ClientKey)
		if err != nil {
			return fmt.Errorf("loading clientCert/clientKey: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	c := &http.Client{
		Timeout:       timeout,
		Transport:     &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return errors.New("answered " + resp.Status)
	}
	return nil
}
