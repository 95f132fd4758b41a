package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// CASecretName holds the manager CA on an external cluster, so every replica
// serves certificates from one CA and agents pin one checksum.
const CASecretName = "edgefleet-ca"

// loadOrCreateCASecret returns the CA in the system namespace, creating it on
// first start. Concurrent first starts are safe: the loser of the create reads
// the winner's CA.
func loadOrCreateCASecret(ctx context.Context, c client.Client) (*pki.CA, error) {
	if err := ensureSystemNamespace(ctx, c); err != nil {
		return nil, err
	}
	key := client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: CASecretName}
	var secret corev1.Secret
	err := c.Get(ctx, key, &secret)
	if apierrors.IsNotFound(err) {
		_, kp, genErr := pki.NewCA("edgefleet-ca")
		if genErr != nil {
			return nil, genErr
		}
		secret = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: kp.CertPEM, corev1.TLSPrivateKeyKey: kp.KeyPEM},
		}
		err = c.Create(ctx, &secret)
		if apierrors.IsAlreadyExists(err) {
			err = c.Get(ctx, key, &secret)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading CA secret %s: %w", key, err)
	}
	ca, err := pki.ParseCA(pki.KeyPair{CertPEM: secret.Data[corev1.TLSCertKey], KeyPEM: secret.Data[corev1.TLSPrivateKeyKey]})
	if err != nil {
		return nil, fmt.Errorf("CA secret %s is invalid: %w (delete it to generate a new CA; joined agents must then be given the new checksum)", key, err)
	}
	return ca, nil
}

// servingCert issues the endpoint's certificate for the external host name,
// the listen and advertise addresses (other replicas dial the latter) and
// the usual local names.
func servingCert(ca *pki.CA, externalHost, listen, advertise string) (*tls.Certificate, error) {
	spec := pki.CertSpec{CommonName: "edgefleet-manager", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, Usage: pki.ServerAuth}
	if h, err := os.Hostname(); err == nil && h != "localhost" {
		spec.DNSNames = append(spec.DNSNames, h)
	}
	hosts := []string{externalHost}
	for _, addr := range []string{listen, advertise} {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			hosts = append(hosts, h)
		}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !ip.IsLoopback() {
				spec.IPs = append(spec.IPs, ip)
			}
		} else if h != "" && h != "localhost" {
			spec.DNSNames = append(spec.DNSNames, h)
		}
	}
	kp, err := ca.Issue(spec)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	return &cert, err
}

// userClientCAs are the CAs whose client certificates the endpoint accepts
// as users (the kube-api proxy passes their name and groups on): with the
// embedded control plane, exactly what its kube-apiserver trusts (its admin
// and component CA, and the CSR signer); on an external cluster none, since
// its users' certificates come from a CA the manager does not know. The
// endpoint CA is never one: on an external cluster its key is in a Secret,
// and whoever reads it must not become any user on every downstream
// cluster. --client-ca-file adds CAs explicitly. None of them makes a
// manager replica: see clusterproxy.Peers.
func userClientCAs(c *cluster, extra []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !c.external && !pool.AppendCertsFromPEM(c.clientCAs) {
		return nil, errors.New("the embedded control plane reported no client CA")
	}
	pool.AppendCertsFromPEM(extra)
	return pool, nil
}

// readClientCAFile reads --client-ca-file before anything starts, so a bad
// file fails at once.
func readClientCAFile(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %v (give a readable PEM file of CA certificates, or omit the flag)", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--client-ca-file %s holds no PEM certificate (give a PEM file of CA certificates, or omit the flag)", file)
	}
	return data, nil
}

// startPeers makes this replica's peer identity and publishes it before the
// endpoint serves, so the other replicas trust it from its first request.
func startPeers(ctx context.Context, mgr ctrl.Manager, c client.Client, identity string, log logr.Logger) (*clusterproxy.Peers, error) {
	peers, err := clusterproxy.NewPeers(identity)
	if err != nil {
		return nil, err
	}
	peers.UseLeases(clusterjoin.SystemNamespace, mgr.GetClient(), c, log)
	if err := ensureSystemNamespace(ctx, c); err != nil {
		return nil, err
	}
	if err := peers.Publish(ctx); err != nil {
		return nil, err
	}
	return peers, mgr.Add(peers)
}

func ensureSystemNamespace(ctx context.Context, c client.Client) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterjoin.SystemNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", clusterjoin.SystemNamespace, err)
	}
	return nil
}
