package nodekube

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigFor writes a kubeconfig as the manager does (clientcmd) for
// server, trusting srv's certificate.
func kubeconfigFor(t *testing.T, srv *httptest.Server, token string) []byte {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["edgefleet"] = &clientcmdapi.Cluster{Server: srv.URL + "/k8s/manager", CertificateAuthorityData: ca}
	cfg.AuthInfos["edgefleet"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["edgefleet"] = &clientcmdapi.Context{Cluster: "edgefleet", AuthInfo: "edgefleet", Namespace: "ns"}
	cfg.CurrentContext = "edgefleet"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKubeClient(t *testing.T) {
	var gotApply string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"kind":"Status","code":401,"reason":"Unauthorized","message":"Unauthorized"}`)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/k8s/manager/api/v1/namespaces/ns/secrets/plan":
			fmt.Fprint(w, `{"metadata":{"resourceVersion":"7"},"data":{"plan":"e30="}}`)
		case r.Method == http.MethodGet && r.URL.Path == "/k8s/manager/api/v1/namespaces/ns/secrets" && r.URL.Query().Get("watch") == "1":
			if r.URL.Query().Get("fieldSelector") != "metadata.name=plan" || r.URL.Query().Get("resourceVersion") != "7" {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			fmt.Fprintln(w, `{"type":"MODIFIED","object":{"metadata":{"resourceVersion":"8"},"data":{"plan":"eyJhIjoxfQ=="}}}`)
			fmt.Fprintln(w, `{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}}`)
		case r.Method == http.MethodGet && r.URL.Path == "/k8s/manager/apis/machines.edgefleet.io/v1alpha1/namespaces/ns/machineinventories/m1":
			fmt.Fprint(w, `{"metadata":{"generation":3},"status":{"conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2026-12-06T10:00:00Z","reason":"R","message":""}]}}`)
		case r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/machineinventories/m1/status"):
			b, _ := io.ReadAll(r.Body)
			gotApply = r.Header.Get("Content-Type") + " " + r.URL.RawQuery + " " + string(b)
			fmt.Fprint(w, `{}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"kind":"Status","code":404,"reason":"NotFound","message":"not here"}`)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	c, err := New(kubeconfigFor(t, srv, "t0ken"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSecret(ctx, "ns", "plan")
	if err != nil || string(s.Data["plan"]) != "{}" || s.Metadata.ResourceVersion != "7" {
		t.Fatalf("getSecret: %+v %v", s, err)
	}
	var seen []string
	err = c.WatchSecret(ctx, "ns", "plan", "7", time.Minute, func(s *Secret) { seen = append(seen, string(s.Data["plan"])) })
	if !IsStatus(err, http.StatusGone) || len(seen) != 1 || seen[0] != `{"a":1}` {
		t.Fatalf("watch: %v %v", seen, err)
	}
	if _, err := c.GetSecret(ctx, "ns", "other"); !IsNotFound(err) || !strings.Contains(err.Error(), "not here") {
		t.Fatalf("missing Secret: %v", err)
	}
	inv, err := c.GetInventory(ctx, "ns", "m1")
	if err != nil || inv.Metadata.Generation != 3 || len(inv.Status.Conditions) != 1 || inv.Status.Conditions[0].LastTransitionTime.Hour() != 10 {
		t.Fatalf("GetInventory: %+v %v", inv, err)
	}
	if err := c.ApplyStatus(ctx, "ns", "m1", "edgefleet-node", map[string]any{"lastSeen": "x"}); err != nil {
		t.Fatal(err)
	}
	want := `application/apply-patch+yaml fieldManager=edgefleet-node&force=true {"apiVersion":"machines.edgefleet.io/v1alpha1","kind":"MachineInventory","metadata":{"name":"m1","namespace":"ns"},"status":{"lastSeen":"x"}}`
	if gotApply != want {
		t.Errorf("apply request %q", gotApply)
	}

	bad, err := New(kubeconfigFor(t, srv, "wrong"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.GetSecret(ctx, "ns", "plan"); !IsUnauthorized(err) {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := New([]byte("apiVersion: v1\nkind: Config\n")); err == nil {
		t.Fatal("empty kubeconfig accepted")
	}
}
