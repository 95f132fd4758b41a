package bmc

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/stmcginnis/gofish"
)

// Pool keeps one logged-in session per BMC (keyed by the caller's name
// for it), reused across polls: BMCs cap their sessions, so a session per
// poll would lock users out.
type Pool struct {
	mu    sync.Mutex
	conns map[string]*pooled
	// Timeout bounds each HTTP request (default 30 s).
	Timeout time.Duration
}

type pooled struct {
	key string
	api *gofish.APIClient
	tr  *transport
	sys string
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{conns: map[string]*pooled{}} }

// Conn is a session with one BMC, bound to a context.
type Conn struct {
	api    *gofish.APIClient
	tr     *transport
	system string
	// remember keeps a discovered system path for the session's next use.
	remember func(string)
	// Reused says the session came from the pool (a 401 then means it
	// expired, worth one new login).
	Reused bool
}

// Connect returns name's cached session when target is unchanged, or logs
// in anew (logging the old session out).
func (p *Pool) Connect(ctx context.Context, name string, target Target) (*Conn, error) {
	key := target.key()
	p.mu.Lock()
	old := p.conns[name]
	p.mu.Unlock()
	if old != nil && old.key == key {
		return &Conn{api: old.api.WithContext(ctx), tr: old.tr, system: old.sys, remember: p.rememberer(name, old), Reused: true}, nil
	}
	if old != nil {
		p.Drop(name)
	}
	endpoint, system, err := target.split()
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(target)
	if err != nil {
		return nil, err
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	cfg := gofish.ClientConfig{
		Endpoint: endpoint, Username: target.Username, Password: target.Password,
		HTTPClient: &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: refuseRedirects}, NoModifyTransport: true, ReuseConnections: true,
	}
	api, err := gofish.ConnectContext(ctx, cfg)
	if err != nil && KindOf(classify(err, tr, "")) == KindRefused {
		// No usable SessionService: HTTP Basic, which services must
		// accept (DSP0266 13.3).
		cfg.BasicAuth = true
		api, err = gofish.ConnectContext(ctx, cfg)
	}
	if err != nil {
		tr.base.CloseIdleConnections()
		return nil, classify(err, tr, "logging in to "+endpoint)
	}
	entry := &pooled{key: key, api: api, tr: tr, sys: system}
	p.mu.Lock()
	p.conns[name] = entry
	p.mu.Unlock()
	return &Conn{api: api.WithContext(ctx), tr: tr, system: system, remember: p.rememberer(name, entry)}, nil
}

// rememberer records the system path found by listing Systems, so later
// polls read the system with one request.
func (p *Pool) rememberer(name string, entry *pooled) func(string) {
	return func(path string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.conns[name] == entry {
			entry.sys = path
		}
	}
}

// Drop logs name's session out and forgets it (a changed spec, a deleted
// BMC, or a session the BMC no longer accepts).
func (p *Pool) Drop(name string) {
	p.mu.Lock()
	old := p.conns[name]
	delete(p.conns, name)
	p.mu.Unlock()
	if old != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		old.api.WithContext(ctx).Logout()
		old.tr.base.CloseIdleConnections()
	}
}

// Len is the number of cached sessions.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// refuseRedirects keeps requests (and their session token, which Go
// forwards to other hosts unlike Authorization) at the BMC's address:
// Redfish needs no redirects.
func refuseRedirects(*http.Request, []*http.Request) error {
	return errors.New("the BMC answered with a redirect; edgefleet does not follow redirects from BMCs: use the address it redirects to")
}
