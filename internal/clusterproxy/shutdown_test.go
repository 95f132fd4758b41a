package clusterproxy

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	"github.com/edgefleet/edgefleet/internal/tunnel"
)

// TestShutdownClosesTunnels: the endpoint's http.Server.Shutdown leaves
// hijacked websockets open; closeOnShutdown closes every session when the
// manager stops, and a tunnel arriving after that is refused.
func TestShutdownClosesTunnels(t *testing.T) {
	s := &Server{opts: Options{Log: logr.Discard()}, sessions: map[types.NamespacedName]*entry{}}
	added := make(chan *entry, 4)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := tunnel.Accept(w, r)
		if err != nil {
			return
		}
		e := &entry{sess: sess}
		key := types.NamespacedName{Namespace: "fleet", Name: r.URL.Query().Get("cluster")}
		if s.add(key, s.session(key), e) {
			added <- e
		} else {
			added <- nil
		}
	}))
	defer srv.Close()
	wsURL := "wss" + strings.TrimPrefix(srv.URL, "https")
	tlsCfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	agentCtx, stopAgents := context.WithCancel(context.Background())
	defer stopAgents()
	connect := func(cluster string) *entry {
		c := &tunnel.Client{URL: wsURL + "?cluster=" + cluster, TLS: tlsCfg, Log: logr.Discard(),
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
		go func() { _ = c.Run(agentCtx) }()
		select {
		case e := <-added:
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("tunnel of %s not accepted", cluster)
			return nil
		}
	}
	sessions := []*entry{connect("a"), connect("b")}
	for _, e := range sessions {
		if e == nil {
			t.Fatal("tunnel refused before shutdown")
		}
	}

	ctx, shutdown := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.closeOnShutdown(ctx) }()
	shutdown()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, e := range sessions {
		select {
		case <-e.sess.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("session %d still open after shutdown", i)
		}
	}
	// The agents reconnect; the replica shutting down turns them away.
	select {
	case e := <-added:
		if e != nil {
			t.Error("a tunnel was accepted after shutdown")
		}
	case <-time.After(10 * time.Second):
		t.Error("no agent reconnected")
	}
}
