package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   32 << 10,
	WriteBufferSize:  32 << 10,
	// Agents are not browsers and authenticate with a bearer token, so the
	// Origin check (a CSRF defence for cookies) does not apply.
	CheckOrigin: func(*http.Request) bool { return true },
}

// Accept upgrades an authenticated request to a tunnel session. The caller
// must have authenticated r; on error the response has been written.
func Accept(w http.ResponseWriter, r *http.Request) (*Session, error) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, fmt.Errorf("upgrading tunnel request from %s: %w", r.RemoteAddr, err)
	}
	s, err := newSession(ws, true)
	if err != nil {
		return nil, err
	}
	return &Session{mux: s, Connected: time.Now()}, nil
}

// Session is the manager's end of one agent's tunnel.
type Session struct {
	mux       *yamux.Session
	Connected time.Time
}

// Dial opens a stream to the agent; ctx bounds only the open.
func (s *Session) Dial(ctx context.Context) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := s.mux.OpenStream()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("opening tunnel stream: %w", r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				_ = r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Done is closed when the session ends (peer gone, keepalive timeout,
// protocol error or Close).
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Close ends the session and every stream on it.
func (s *Session) Close() error { return s.mux.Close() }

// Ping measures a round trip through the multiplexer.
func (s *Session) Ping() (time.Duration, error) { return s.mux.Ping() }

// Transport sends HTTP requests through the session. Streams carry plain
// HTTP/1.1 (the websocket is already TLS) and are kept alive for reuse.
func (s *Session) Transport() *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return s.Dial(ctx)
		},
		MaxIdleConnsPerHost: 32,
		MaxConnsPerHost:     MaxStreams,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}
