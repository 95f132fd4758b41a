package clusterproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/pki"
)

// Manager-replica identity. No CA vouches for a replica: each replica makes
// a key and a self-signed certificate at start, keeps the key in memory
// only, and publishes the certificate (public) in a Lease of the system
// namespace, which it renews while it runs. A replica is trusted as a peer
// exactly while its certificate is published there and renewed, so a key
// that can mint certificates (the endpoint CA, kube-controller-manager's CSR
// signer, the control plane's CAs) cannot make one: a peer must present one
// of the published certificates themselves. The same certificate is the
// replica's server certificate when another replica dials it with server
// name PeerServerName, so the forwarding replica also checks that it
// reached the replica it meant, not whoever holds the endpoint CA's key.
const (
	// PeerLeaseLabel marks the Leases holding replicas' peer certificates.
	PeerLeaseLabel = "edgefleet.io/manager-peer"
	// PeerCertAnnotation holds a replica's PEM peer certificate on its Lease.
	PeerCertAnnotation = "edgefleet.io/peer-certificate"
	// PeerServerName is the TLS server name a replica dials another replica
	// with; the endpoint then serves its peer certificate.
	PeerServerName = "edgefleet-manager-peer.invalid"

	peerLeasePrefix = "edgefleet-peer-"
	// peerRenewEvery is how often a replica renews its peer Lease; a Lease
	// not renewed for peerStale is no longer trusted.
	peerRenewEvery = 20 * time.Second
	peerStale      = 3 * peerRenewEvery
	// peerCertValidity bounds a certificate whose replica never restarts;
	// it is replaced peerCertRenewBefore its end.
	peerCertValidity = 90 * 24 * time.Hour
)

// peerCertRenewBefore: the peer certificate is replaced this long before it
// expires, so a long-running replica keeps forwarding.
const peerCertRenewBefore = 30 * 24 * time.Hour

// PeerLeaseName is the name of the Lease publishing identity's certificate.
func PeerLeaseName(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return peerLeasePrefix + hex.EncodeToString(sum[:8])
}

// publishedPeer is a replica's certificate as other replicas see it.
type publishedPeer struct {
	identity string
	cert     *x509.Certificate
}

// Peers is this replica's peer identity and its view of the others'.
type Peers struct {
	identity string
	// list returns the currently trusted peers (fresh Leases).
	list func(context.Context) ([]publishedPeer, error)
	// Lease publication; nil writer = not published (unit tests).
	namespace string
	writer    client.Client
	log       logr.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	certPEM []byte
	parsed  map[string]parsedLease // Lease name → its certificate, by resourceVersion
}

type parsedLease struct {
	resourceVersion string
	cert            *x509.Certificate
}

// NewPeers makes this replica's peer key and certificate. Call UseLeases to
// publish it and to learn the other replicas'.
func NewPeers(identity string) (*Peers, error) {
	p := &Peers{identity: identity, parsed: map[string]parsedLease{}, log: logr.Discard()}
	p.list = func(context.Context) ([]publishedPeer, error) {
		return []publishedPeer{{identity: p.identity, cert: p.Certificate().Leaf}}, nil
	}
	if err := p.rotate(); err != nil {
		return nil, err
	}
	return p, nil
}

// UseLeases publishes this replica's certificate in a Lease of namespace
// (written with writer) and trusts the certificates of the fresh Leases
// there (read with reader, normally the manager's cache).
func (p *Peers) UseLeases(namespace string, reader client.Reader, writer client.Client, log logr.Logger) {
	p.namespace, p.writer, p.log = namespace, writer, log
	p.list = func(ctx context.Context) ([]publishedPeer, error) { return p.fromLeases(ctx, reader) }
}

func (p *Peers) rotate() error {
	kp, err := pki.SelfSigned(pki.CertSpec{CommonName: PeerCommonName, Organization: []string{PeerGroup}, DNSNames: []string{PeerServerName}, Usage: pki.ClientAuth | pki.ServerAuth}, peerCertValidity)
	if err != nil {
		return fmt.Errorf("creating the peer certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return fmt.Errorf("loading the peer certificate: %w", err)
	}
	p.mu.Lock()
	p.cert, p.certPEM = &cert, kp.CertPEM
	p.mu.Unlock()
	return nil
}

// Certificate is this replica's peer certificate with its key.
func (p *Peers) Certificate() *tls.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cert
}

func (p *Peers) certificatePEM() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.certPEM
}

// Publish creates or renews this replica's peer Lease.
func (p *Peers) Publish(ctx context.Context) error {
	if p.writer == nil {
		return nil
	}
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: PeerLeaseName(p.identity)}}
	err := p.writer.Get(ctx, client.ObjectKeyFromObject(lease), lease)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading peer Lease %s/%s: %w", lease.Namespace, lease.Name, err)
	}
	exists := err == nil
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	lease.Labels[PeerLeaseLabel] = "true"
	lease.Annotations[PeerCertAnnotation] = string(p.certificatePEM())
	lease.Spec.HolderIdentity = &p.identity
	lease.Spec.LeaseDurationSeconds = ptrTo(int32(peerStale / time.Second))
	lease.Spec.RenewTime = &now
	if exists {
		err = p.writer.Update(ctx, lease)
	} else {
		lease.Spec.AcquireTime = &now
		err = p.writer.Create(ctx, lease)
	}
	if err != nil {
		return fmt.Errorf("publishing peer Lease %s/%s: %w", lease.Namespace, lease.Name, err)
	}
	return nil
}

// Start renews the peer Lease until ctx ends, then deletes it so the other
// replicas stop trusting this key at once.
func (p *Peers) Start(ctx context.Context) error {
	if p.writer == nil {
		return nil
	}
	t := time.NewTicker(peerRenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.unpublish()
			return nil
		case <-t.C:
		}
		if time.Until(p.Certificate().Leaf.NotAfter) < peerCertRenewBefore {
			if err := p.rotate(); err != nil {
				p.log.Error(err, "Replacing the peer certificate")
			}
		}
		if err := p.Publish(ctx); err != nil && ctx.Err() == nil {
			p.log.Error(err, "Renewing the peer Lease; other replicas stop forwarding to this one when it goes stale")
		}
	}
}

// NeedLeaderElection: every replica publishes its own identity.
func (p *Peers) NeedLeaderElection() bool { return false }

func (p *Peers) unpublish() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: PeerLeaseName(p.identity)}}
	if err := p.writer.Delete(ctx, lease); err != nil && !apierrors.IsNotFound(err) {
		p.log.Info("Could not delete the peer Lease; other replicas trust it until it goes stale", "error", err.Error())
	}
}

// fromLeases returns the certificates of the peer Leases renewed recently.
func (p *Peers) fromLeases(ctx context.Context, reader client.Reader) ([]publishedPeer, error) {
	var leases coordinationv1.LeaseList
	if err := reader.List(ctx, &leases, client.InNamespace(p.namespace), client.MatchingLabels{PeerLeaseLabel: "true"}); err != nil {
		return nil, fmt.Errorf("listing peer Leases in %s: %w", p.namespace, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]publishedPeer, 0, len(leases.Items))
	seen := make(map[string]bool, len(leases.Items))
	for i := range leases.Items {
		l := &leases.Items[i]
		seen[l.Name] = true
		if l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) > peerStale {
			continue
		}
		cached, ok := p.parsed[l.Name]
		if !ok || cached.resourceVersion != l.ResourceVersion {
			cached = parsedLease{resourceVersion: l.ResourceVersion}
			if c, err := pki.ParseCert([]byte(l.Annotations[PeerCertAnnotation])); err == nil && !c.IsCA {
				cached.cert = c
			}
			p.parsed[l.Name] = cached
		}
		if cached.cert != nil {
			out = append(out, publishedPeer{identity: *l.Spec.HolderIdentity, cert: cached.cert})
		}
	}
	for name := range p.parsed {
		if !seen[name] {
			delete(p.parsed, name)
		}
	}
	return out, nil
}

// trusts reports whether c is a published peer certificate.
func (p *Peers) trusts(ctx context.Context, c *x509.Certificate) bool {
	peers, err := p.list(ctx)
	if err != nil {
		p.log.V(1).Info("Cannot read the peer certificates; refusing peer requests", "error", err.Error())
		return false
	}
	for _, peer := range peers {
		if bytes.Equal(peer.cert.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// ClientCAs is base plus every published peer certificate, for the
// endpoint's TLS handshake: a peer certificate verifies as a chain of
// itself alone. Whether a verified certificate is a peer is decided again
// for each request (isPeer), so a Lease that goes stale stops a kept-alive
// connection too.
func (p *Peers) ClientCAs(ctx context.Context, base *x509.CertPool) *x509.CertPool {
	pool := x509.NewCertPool()
	if base != nil {
		pool = base.Clone()
	}
	peers, err := p.list(ctx)
	if err != nil {
		p.log.V(1).Info("Cannot read the peer certificates; refusing peer connections", "error", err.Error())
	}
	for _, peer := range peers {
		pool.AddCert(peer.cert)
	}
	return pool
}

// verifyHolder checks that the replica reached at addr presented the peer
// certificate a replica with that address published.
func (p *Peers) verifyHolder(ctx context.Context, addr string, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("the replica presented no certificate")
	}
	peers, err := p.list(ctx)
	if err != nil {
		return err
	}
	published := false
	for _, peer := range peers {
		if a, ok := HolderAddress(peer.identity); !ok || a != addr {
			continue
		}
		published = true
		if bytes.Equal(peer.cert.Raw, chain[0].Raw) {
			return nil
		}
	}
	if !published {
		return fmt.Errorf("no manager replica at %s has a fresh peer Lease in %s", addr, p.namespace)
	}
	return fmt.Errorf("the server at %s presented a certificate that is not the peer certificate its replica published", addr)
}

// transport dials other replicas over HTTPS, presenting this replica's
// peer certificate and accepting only the holder's published one. It
// speaks HTTP/1.1 so upgrades (exec, port-forward) pass through
// httputil.ReverseProxy.
func (p *Peers) transport() *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, &tls.Config{
				ServerName: PeerServerName,
				// No CA vouches for a replica: VerifyConnection compares
				// the certificate with the one published for addr.
				InsecureSkipVerify: true,
				VerifyConnection: func(cs tls.ConnectionState) error {
					return p.verifyHolder(ctx, addr, cs.PeerCertificates)
				},
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return p.Certificate(), nil },
				MinVersion:           tls.VersionTLS12,
				NextProtos:           []string{"http/1.1"},
			})
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := conn.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		},
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

func ptrTo[T any](v T) *T { return &v }
