// Package join is the agent's side of joining the fleet: it pins the
// manager's CA by checksum, registers with a registration token, keeps the
// per-cluster credential (stored in a downstream Secret, renewed before it
// expires, re-registered when rejected), and holds the reverse tunnel that
// lets the manager reach this cluster's Kubernetes API. See
// docs/registration.md and docs/tunnel.md.
package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/edgefleet/edgefleet/internal/pki"
)

// ErrChecksumMismatch means the manager served a CA other than the one the
// agent was told to trust.
var ErrChecksumMismatch = errors.New("CA checksum mismatch")

// Pin fetches the manager's CA without trusting it, checks its sha256
// against checksum and returns a TLS config that trusts only that CA. A
// wrong checksum is an error, never ignored.
func Pin(ctx context.Context, server, checksum string) (caPEM []byte, cfg *tls.Config, err error) {
	if checksum == "" {
		return nil, nil, errors.New("--ca-checksum is required: the sha256 of the manager's CA, printed by `edgefleet server` and `edgefleet token create`")
	}
	// Only /ping and /cacerts are read without verification, and nothing
	// read is trusted until it matches the checksum.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // trust on first use, checked by checksum below
	}}
	if _, err := get(ctx, insecure, server+"/ping"); err != nil {
		return nil, nil, fmt.Errorf("manager %s is not reachable: %w (check --server and that outbound HTTPS to it is allowed)", server, err)
	}
	caPEM, err = get(ctx, insecure, server+"/cacerts")
	if err != nil {
		return nil, nil, fmt.Errorf("fetching the manager's CA: %w", err)
	}
	if got := pki.Checksum(caPEM); !strings.EqualFold(got, strings.TrimSpace(checksum)) {
		return nil, nil, fmt.Errorf("%w: %s/cacerts has sha256 %s but --ca-checksum is %s; the address may not be your manager, or the checksum is from another manager (compare with `edgefleet server`'s banner)", ErrChecksumMismatch, server, got, checksum)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("%s/cacerts is not a PEM certificate", server)
	}
	cfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	strict := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: cfg.Clone()}}
	if _, err := get(ctx, strict, server+"/ping"); err != nil {
		return nil, nil, fmt.Errorf("the manager's certificate is not signed by its own CA or does not name %s: %w (set the manager's --external-url to the address agents use)", server, err)
	}
	return caPEM, cfg, nil
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}
