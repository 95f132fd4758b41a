package clusterregistration

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// TestManagerAPIProxyBuffersBodies: the kube-apiserver receives a complete
// body (never one still streaming from the agent's connection), and a body
// over the limit never reaches it.
func TestManagerAPIProxyBuffersBodies(t *testing.T) {
	var calls atomic.Int32
	var got atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		got.Store(r.ContentLength)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer upstream.Close()
	proxy, err := ManagerAPIProxy(&rest.Config{Host: upstream.URL})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(proxy)
	defer front.Close()

	tests := []struct {
		name       string
		body       io.Reader
		wantStatus int
		wantCalls  int32
	}{
		{"small patch, streamed without a length", io.MultiReader(strings.NewReader(`{"status":`), strings.NewReader(`{}}`)), http.StatusForbidden, 1},
		{"over the limit", bytes.NewReader(make([]byte, maxAgentRequestBody+1)), http.StatusRequestEntityTooLarge, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			req, _ := http.NewRequest(http.MethodPatch, front.URL+clusterjoin.ManagerAPIPrefix+"/apis/x", tc.body)
			req.Header.Set("Authorization", "Bearer t")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || calls.Load() != tc.wantCalls {
				t.Fatalf("status %d, upstream calls %d; want %d, %d", resp.StatusCode, calls.Load(), tc.wantStatus, tc.wantCalls)
			}
			if tc.wantCalls > 0 && got.Load() != int64(len(`{"status":{}}`)) {
				t.Fatalf("upstream saw Content-Length %d, want the whole buffered body", got.Load())
			}
		})
	}
}
