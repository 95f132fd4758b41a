package webhook

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// countingServer serves h over real HTTP on loopback and counts the body
// bytes h consumed.
func countingServer(t *testing.T, h *Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var read atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = countingBody{r.Body, &read}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &read
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func pushRequest(t *testing.T, url string, body io.Reader, size int64, signed bool) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("X-GitHub-Event", "push")
	if signed {
		req.Header.Set("X-Hub-Signature-256", "sha256=00")
	}
	return req
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

// TestOversizedPayloadRejectedWithoutBuffering: a 20 MiB body with a bad
// signature is answered 413 after reading at most MaxPayload bytes (none
// when Content-Length announces it), and an unsigned one is refused before
// its body is read at all.
func TestOversizedPayloadRejectedWithoutBuffering(t *testing.T) {
	h := &Handler{Log: logr.Discard()}
	srv, read := countingServer(t, h)
	big := bytes.Repeat([]byte("x"), 20<<20)

	for _, tc := range []struct {
		name   string
		size   int64 // -1: chunked, no Content-Length
		signed bool
		code   int
		max    int64
	}{
		{"announced", int64(len(big)), true, http.StatusRequestEntityTooLarge, 0},
		{"chunked", -1, true, http.StatusRequestEntityTooLarge, DefaultMaxPayload + 64<<10},
		{"unsigned", -1, false, http.StatusUnauthorized, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read.Store(0)
			code, msg := do(t, pushRequest(t, srv.URL, bytes.NewReader(big), tc.size, tc.signed))
			if code != tc.code {
				t.Fatalf("HTTP %d %s, want %d", code, msg, tc.code)
			}
			if n := read.Load(); n > tc.max {
				t.Fatalf("the handler read %d bytes of a 20 MiB payload, want at most %d", n, tc.max)
			}
		})
	}
}

// TestConcurrencyCapAndReadTimeout: payloads trickling in hold at most
// MaxInFlight slots; the next delivery gets 503 with Retry-After at once,
// and a payload that does not arrive within ReadTimeout is dropped.
func TestConcurrencyCapAndReadTimeout(t *testing.T) {
	h := &Handler{Log: logr.Discard(), MaxInFlight: 2, ReadTimeout: 2 * time.Second}
	srv, _ := countingServer(t, h)

	type result struct {
		code int
		took time.Duration
	}
	slow := make(chan result, 2)
	var writers []*io.PipeWriter
	for range 2 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		go func() {
			start := time.Now()
			resp, err := http.DefaultClient.Do(pushRequest(t, srv.URL, pr, -1, true))
			if err != nil {
				slow <- result{code: -1, took: time.Since(start)}
				return
			}
			resp.Body.Close()
			slow <- result{code: resp.StatusCode, took: time.Since(start)}
		}()
		if _, err := pw.Write([]byte(`{"ref":`)); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	// Both slow deliveries are inside the handler once their first bytes
	// were read.
	deadline := time.Now().Add(5 * time.Second)
	for len(h.inFlight) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	req := pushRequest(t, srv.URL, strings.NewReader(`{}`), 2, true)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || time.Since(start) > time.Second {
		t.Fatalf("third delivery: HTTP %d Retry-After %q after %s, want 503 with Retry-After at once", resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start))
	}
	for range 2 {
		r := <-slow
		if r.code != http.StatusRequestTimeout || r.took > 5*time.Second {
			t.Fatalf("trickling delivery: HTTP %d after %s, want 408 after the 2s read timeout", r.code, r.took)
		}
	}
	// Slots are released: a delivery is read again (and fails on its JSON).
	if code, msg := do(t, pushRequest(t, srv.URL, strings.NewReader(`nope`), 4, true)); code != http.StatusBadRequest {
		t.Fatalf("after the slow deliveries: HTTP %d %s, want 400", code, msg)
	}
}
