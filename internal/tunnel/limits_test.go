package tunnel

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// TestAgentOpeningAStreamLosesItsSession: only the manager opens streams;
// an agent that opens one (each could pin a receive window in the manager)
// loses its session.
func TestAgentOpeningAStreamLosesItsSession(t *testing.T) {
	got := make(chan *Session, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, err := Accept(w, r); err == nil {
			got <- s
		}
	}))
	defer srv.Close()
	tlsCfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	ws, _, err := (&websocket.Dialer{TLSClientConfig: tlsCfg}).Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	agent, err := yamux.Server(newConn(ws), Config())
	if err != nil {
		t.Fatal(err)
	}
	mgr := <-got
	st, err := agent.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(make([]byte, 1<<20))
	select {
	case <-mgr.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the manager kept a session whose agent opened a stream")
	}
}

// TestStreamsPerSessionAreCapped: however many requests the manager sends
// at once, at most MaxStreams are open on one session; the rest wait.
func TestStreamsPerSessionAreCapped(t *testing.T) {
	got := make(chan *Session, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s, err := Accept(w, r); err == nil {
			got <- s
		}
	}))
	defer srv.Close()
	tlsCfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Client{URL: "wss" + strings.TrimPrefix(srv.URL, "https"), TLS: tlsCfg, Log: logr.Discard(), Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		inFlight.Add(-1)
	})}
	go func() { _ = c.Run(ctx) }()
	sess := <-got
	hc := &http.Client{Transport: sess.Transport(), Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for range MaxStreams + 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := hc.Get("http://kube-apiserver/version"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for inFlight.Load() < MaxStreams && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if p := peak.Load(); p != MaxStreams {
		t.Fatalf("peak concurrent streams %d, want exactly %d", p, MaxStreams)
	}
	close(release)
	wg.Wait()
}
