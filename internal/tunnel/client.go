package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"golang.org/x/net/netutil"
)

// Backoff bounds of the agent's reconnect loop: the wait doubles from
// MinBackoff up to MaxBackoff, each wait drawn uniformly from [d/2, d] so a
// restarted manager is not hit by every agent at once.
const (
	MinBackoff = 500 * time.Millisecond
	MaxBackoff = 30 * time.Second
)

// ErrUnauthorized is returned by a dial the manager answered 401: the
// credential must be renewed before reconnecting.
var ErrUnauthorized = errors.New("tunnel: manager rejected the credential (401)")

// Client is the agent's end: it keeps one websocket to the manager and
// serves Handler on every stream the manager opens.
type Client struct {
	// URL is wss://<endpoint>/v1/tunnel.
	URL string
	// TLS trusts only the pinned CA.
	TLS *tls.Config
	// Header returns the request headers (the current credential) for each
	// dial.
	Header func() http.Header
	// Handler answers the manager's requests.
	Handler http.Handler
	// OnUnauthorized is called when the manager rejects the credential.
	OnUnauthorized func(context.Context)
	// OnConnect is called when a session is up (tests, metrics).
	OnConnect func()
	Log       logr.Logger
}

// Run keeps the tunnel up until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	backoff := MinBackoff
	for {
		started := time.Now()
		err := c.once(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrUnauthorized) && c.OnUnauthorized != nil {
			c.OnUnauthorized(ctx)
		}
		if time.Since(started) > MaxBackoff {
			backoff = MinBackoff // the session was healthy for a while
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.Log.Info("Tunnel down, reconnecting", "error", err.Error(), "in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, MaxBackoff)
	}
}

func (c *Client) once(ctx context.Context) error {
	d := websocket.Dialer{
		TLSClientConfig:  c.TLS,
		HandshakeTimeout: 10 * time.Second,
		Proxy:            http.ProxyFromEnvironment,
		ReadBufferSize:   32 << 10,
		WriteBufferSize:  32 << 10,
	}
	var h http.Header
	if c.Header != nil {
		h = c.Header()
	}
	ws, resp, err := d.DialContext(ctx, c.URL, h)
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return ErrUnauthorized
		}
		if resp != nil {
			// The manager says why (e.g. 409: the cluster's tunnel is
			// alive elsewhere); the agent's log shows it.
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			return fmt.Errorf("dialing %s: %s: %s", c.URL, resp.Status, strings.TrimSpace(string(msg)))
		}
		return fmt.Errorf("dialing %s: %w", c.URL, err)
	}
	s, err := newSession(ws, false)
	if err != nil {
		return err
	}
	c.Log.Info("Tunnel connected", "url", c.URL)
	if c.OnConnect != nil {
		c.OnConnect()
	}
	srv := &http.Server{Handler: c.Handler, ReadHeaderTimeout: 30 * time.Second, ErrorLog: nil}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.CloseChan():
		}
		_ = srv.Close()
		_ = s.Close()
	}()
	err = srv.Serve(netutil.LimitListener(s, MaxStreams))
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return errors.New("session closed")
	}
	return fmt.Errorf("tunnel session ended: %w", err)
}
