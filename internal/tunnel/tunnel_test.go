package tunnel

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
)

// TestGarbageClosesOnlyThatSession: a peer that sends something other than
// yamux frames loses its session; another agent's session keeps working.
func TestGarbageClosesOnlyThatSession(t *testing.T) {
	var mu sync.Mutex
	var sessions []*Session
	got := make(chan *Session, 4)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r)
		if err != nil {
			return
		}
		mu.Lock()
		sessions = append(sessions, s)
		mu.Unlock()
		got <- s
	}))
	defer srv.Close()
	wsURL := "wss" + strings.TrimPrefix(srv.URL, "https")
	tlsCfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	good := &Client{URL: wsURL, TLS: tlsCfg, Log: logr.Discard(), Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = good.Run(ctx) }()
	goodSess := <-got

	for _, garbage := range []struct {
		typ  int
		data []byte
	}{{websocket.BinaryMessage, []byte("\xff\xff not yamux at all, 12+ bytes")}, {websocket.TextMessage, []byte("hello")}} {
		ws, _, err := (&websocket.Dialer{TLSClientConfig: tlsCfg}).Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		bad := <-got
		_ = ws.WriteMessage(garbage.typ, garbage.data)
		select {
		case <-bad.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("session that sent garbage (%q) still open", garbage.data)
		}
		ws.Close()
	}

	resp, err := (&http.Client{Transport: goodSess.Transport(), Timeout: 5 * time.Second}).Get("http://kube-apiserver/version")
	if err != nil {
		t.Fatalf("the well-behaved session broke: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("well-behaved session answered %q", body)
	}
}
