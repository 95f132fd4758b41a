package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// errRejected is a 401 from the manager.
var errRejected = errors.New("rejected by the manager (401)")

// credential is the current cluster credential; the manager clients read it
// on every request, so renewing it needs no restart.
type credential struct {
	mu      sync.Mutex
	resp    clusterjoin.RegisterResponse
	issued  time.Time
	invalid chan struct{}
}

func newCredential(r clusterjoin.RegisterResponse) *credential {
	return &credential{resp: r, issued: time.Now(), invalid: make(chan struct{}, 1)}
}

func (c *credential) get() clusterjoin.RegisterResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resp
}

func (c *credential) set(r clusterjoin.RegisterResponse) {
	c.mu.Lock()
	c.resp, c.issued = r, time.Now()
	c.mu.Unlock()
}

// renewAt is half-way through the credential's life.
func (c *credential) renewAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	life := c.resp.Expires.Sub(c.issued)
	return c.issued.Add(life / 2)
}

func (c *credential) rejected() {
	select {
	case c.invalid <- struct{}{}:
	default:
	}
}

// RoundTrip adds the credential and notices rejections.
type credentialTransport struct {
	cred *credential
	next http.RoundTripper
}

func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+t.cred.get().Token)
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		t.cred.rejected()
	}
	return resp, err
}

// post calls a join route; token, if set, is sent as the bearer.
func post(ctx context.Context, tlsCfg *tls.Config, url, bearer string, body any) (*clusterjoin.RegisterResponse, error) {
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &buf)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg.Clone()}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e clusterjoin.Error
		_ = json.Unmarshal(data, &e)
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("POST %s: %w: %s", url, errRejected, e.Message)
		}
		return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, e.Message)
	}
	var out clusterjoin.RegisterResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("POST %s: reading answer: %w", url, err)
	}
	if out.Token == "" || out.Namespace == "" || out.ClusterName == "" {
		return nil, fmt.Errorf("POST %s: answer lacks a credential", url)
	}
	return &out, nil
}

// Keys of the credential Secret.
const (
	keyCredential = "credential"
)

// store keeps the credential in edgefleet-system/edgefleet-agent on the
// downstream cluster, with the server and CA checksum it belongs to.
type store struct {
	client             client.Client
	server, caChecksum string
}

type stored struct {
	Server     string                       `json:"server"`
	CAChecksum string                       `json:"caChecksum"`
	Response   clusterjoin.RegisterResponse `json:"response"`
}

func (s *store) load(ctx context.Context) (*clusterjoin.RegisterResponse, error) {
	var sec corev1.Secret
	err := s.client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.CredentialSecret}, &sec)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading credential secret %s/%s: %w", clusterjoin.SystemNamespace, clusterjoin.CredentialSecret, err)
	}
	var st stored
	if json.Unmarshal(sec.Data[keyCredential], &st) != nil || !s.usable(st, time.Now()) {
		return nil, nil // register again
	}
	return &st.Response, nil
}

// usable: a stored credential for this manager that is valid, or expired
// with a renewal key (renewed with that key before anything else uses it:
// its renewAt is past). One for another manager, or expired with nothing
// to renew it, is not.
func (s *store) usable(st stored, now time.Time) bool {
	if st.Server != s.server || st.CAChecksum != s.caChecksum {
		return false
	}
	return now.Before(st.Response.Expires) || st.Response.RenewalKey != ""
}

func (s *store) save(ctx context.Context, r *clusterjoin.RegisterResponse) error {
	data, err := json.Marshal(stored{Server: s.server, CAChecksum: s.caChecksum, Response: *r})
	if err != nil {
		return err
	}
	if err := ensureNamespace(ctx, s.client); err != nil {
		return err
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: clusterjoin.SystemNamespace, Name: clusterjoin.CredentialSecret}}
	err = s.client.Get(ctx, client.ObjectKeyFromObject(sec), sec)
	sec.Data = map[string][]byte{keyCredential: data}
	switch {
	case apierrors.IsNotFound(err):
		err = s.client.Create(ctx, sec)
	case err == nil:
		err = s.client.Update(ctx, sec)
	}
	if err != nil {
		return fmt.Errorf("storing credential in secret %s/%s: %w", clusterjoin.SystemNamespace, clusterjoin.CredentialSecret, err)
	}
	return nil
}

func ensureNamespace(ctx context.Context, c client.Client) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterjoin.SystemNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", clusterjoin.SystemNamespace, err)
	}
	return nil
}
