// Package tunnel is the reverse tunnel between an agent and the manager: one
// outbound websocket from the agent, multiplexed with hashicorp/yamux. The
// manager opens streams (it is the yamux client); the agent serves HTTP on
// them (it is the yamux server) and answers only for its own Kubernetes API.
// Keepalives detect a dead peer within KeepAliveInterval+KeepAliveTimeout.
package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// Keepalive timing: yamux pings every KeepAliveInterval and closes the
// session when a ping is unanswered for KeepAliveTimeout, so a dead peer is
// noticed within 20 s.
const (
	KeepAliveInterval = 10 * time.Second
	KeepAliveTimeout  = 10 * time.Second
)

// streamWindow is each stream's yamux receive window. yamux's default,
// 256 KiB, caps one stream at 256 KiB per round trip, which a busy host
// (scheduling delays of a few ms) turns into a throughput limit for large
// lists and logs.
const streamWindow = 4 << 20

// maxMessage bounds one websocket message; a yamux frame is at most the
// peer's window plus a 12-byte header, and a peer's window is at most ours.
const maxMessage = streamWindow + 64<<10

// Config is the yamux configuration both ends use.
func Config() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = true
	c.KeepAliveInterval = KeepAliveInterval
	c.ConnectionWriteTimeout = KeepAliveTimeout
	c.StreamOpenTimeout = 30 * time.Second
	c.MaxStreamWindowSize = streamWindow
	c.AcceptBacklog = AcceptBacklog
	c.LogOutput = io.Discard
	return c
}

// Stream limits. Only the manager opens streams, one per HTTP connection
// to the agent's API server; it opens at most MaxStreams per session at a
// time (more requests wait for one to finish), and the agent serves at most
// MaxStreams at a time with AcceptBacklog more queued (further ones are
// refused by yamux). A stream the agent opens towards the manager breaks
// the protocol and ends the session: nothing there would read it, and each
// could pin a 4 MiB receive window in the manager.
const (
	MaxStreams    = 256
	AcceptBacklog = 64
)

// wsConn is a websocket as a byte stream (binary messages only), which is
// what yamux needs.
type wsConn struct {
	ws  *websocket.Conn
	rmu sync.Mutex
	r   io.Reader
	wmu sync.Mutex
}

func newConn(ws *websocket.Conn) *wsConn {
	ws.SetReadLimit(maxMessage)
	return &wsConn{ws: ws}
}

// errTextMessage ends a session whose peer sends text: only yamux frames in
// binary messages are valid.
var errTextMessage = errors.New("tunnel: unexpected text message")

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextMessage
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	return c.ws.Close()
}

func (c *wsConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// newSession wraps ws in a yamux session; the manager is the client (it
// opens streams), the agent the server.
func newSession(ws *websocket.Conn, client bool) (*yamux.Session, error) {
	conn := newConn(ws)
	var s *yamux.Session
	var err error
	if client {
		s, err = yamux.Client(conn, Config())
		if err == nil {
			go refuseStreams(s)
		}
	} else {
		s, err = yamux.Server(conn, Config())
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("starting tunnel session: %w", err)
	}
	return s, nil
}

// refuseStreams ends the manager's session when the agent opens a stream.
func refuseStreams(s *yamux.Session) {
	st, err := s.AcceptStream()
	if err != nil {
		return // session closed
	}
	_ = st.Close()
	_ = s.Close()
}
