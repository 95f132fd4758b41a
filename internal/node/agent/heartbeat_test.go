package agent

import (
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/node/planner"
)

// An idle agent sends its last report again every heartbeat (so the
// manager's lastSeen stays fresh), always whole (server-side apply would
// drop the plan fields a lastSeen-only apply left out), and nothing before
// its first report.
func TestIdleAgentHeartbeats(t *testing.T) {
	var mu sync.Mutex
	var applies []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/machineinventories/m1/status") {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			applies = append(applies, string(b))
			mu.Unlock()
			_, _ = io.WriteString(w, `{}`)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["m"] = &clientcmdapi.Cluster{Server: srv.URL + "/k8s/manager", CertificateAuthorityData: ca}
	cfg.AuthInfos["m"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["m"] = &clientcmdapi.Context{Cluster: "m", AuthInfo: "m", Namespace: "ns"}
	cfg.CurrentContext = "m"
	raw, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := nodekube.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	count := func() (int, []string) {
		mu.Lock()
		defer mu.Unlock()
		return len(applies), append([]string(nil), applies...)
	}

	a := &agent{o: Options{Heartbeat: 200 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}, reports: make(chan planner.Report, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.report(ctx, &identity{namespace: "ns", inventory: "m1", kube: kube}, make(chan *identity))
	}()
	defer func() { cancel(); <-done }()

	time.Sleep(700 * time.Millisecond)
	if n, got := count(); n != 0 {
		t.Fatalf("%d applies before the first report: %q", n, got)
	}
	a.publish(planner.Report{Checksum: "abc", AppliedChecksum: "abc", State: planner.StateApplied})
	time.Sleep(1100 * time.Millisecond)
	n, got := count()
	// One report, then a heartbeat every 160–240ms (±20%) for 1.1s.
	if n < 4 || n > 8 {
		t.Fatalf("%d applies in 1.1s with a 200ms heartbeat, want the report and 3–7 heartbeats: %q", n, got)
	}
	for _, body := range got {
		if !strings.Contains(body, `"appliedChecksum":"abc"`) || !strings.Contains(body, `"lastSeen":`) {
			t.Fatalf("apply %s: want the whole report with lastSeen", body)
		}
	}
}
