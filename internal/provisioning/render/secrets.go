package render

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// Keys of the cluster's PKI Secret.
const (
	KeyClusterCACert    = "cluster-ca.crt"
	KeyClusterCAKey     = "cluster-ca.key"
	KeyEtcdCACert       = "etcd-ca.crt"
	KeyEtcdCAKey        = "etcd-ca.key"
	KeyFrontProxyCACert = "front-proxy-ca.crt"
	KeyFrontProxyCAKey  = "front-proxy-ca.key"
	KeyServiceAccount   = "service-account.key"
	KeyToken            = "token"
)

// Secrets are a cluster's keys and join token, generated once per cluster
// and kept in a Secret: servers get all of them, agents only the cluster CA
// certificate and the token.
type Secrets struct {
	ClusterCA, EtcdCA, FrontProxyCA kubedistro.KeyPair
	ServiceAccountKey               string
	// Token is a Kubernetes bootstrap token (id.secret).
	Token string
}

// GenerateSecrets makes a cluster's CAs (ECDSA P-256), service-account key
// and bootstrap token.
func GenerateSecrets(cluster string) (*Secrets, error) {
	s := &Secrets{}
	for _, ca := range []struct {
		into *kubedistro.KeyPair
		cn   string
	}{{&s.ClusterCA, cluster + "-ca"}, {&s.EtcdCA, cluster + "-etcd-ca"}, {&s.FrontProxyCA, cluster + "-front-proxy-ca"}} {
		_, kp, err := pki.NewCA(ca.cn)
		if err != nil {
			return nil, err
		}
		*ca.into = kubedistro.KeyPair{Cert: string(kp.CertPEM), Key: string(kp.KeyPEM)}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	s.ServiceAccountKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	id, err := randomString(6)
	if err != nil {
		return nil, err
	}
	secret, err := randomString(16)
	if err != nil {
		return nil, err
	}
	s.Token = id + "." + secret
	return s, nil
}

// Data is s as a Secret's data.
func (s *Secrets) Data() map[string][]byte {
	return map[string][]byte{
		KeyClusterCACert: []byte(s.ClusterCA.Cert), KeyClusterCAKey: []byte(s.ClusterCA.Key),
		KeyEtcdCACert: []byte(s.EtcdCA.Cert), KeyEtcdCAKey: []byte(s.EtcdCA.Key),
		KeyFrontProxyCACert: []byte(s.FrontProxyCA.Cert), KeyFrontProxyCAKey: []byte(s.FrontProxyCA.Key),
		KeyServiceAccount: []byte(s.ServiceAccountKey), KeyToken: []byte(s.Token),
	}
}

// SecretsFrom reads a PKI Secret's data, refusing one with keys missing
// (someone edited it: formation never rewrites a cluster's keys).
func SecretsFrom(data map[string][]byte) (*Secrets, error) {
	var missing []string
	get := func(k string) string {
		if len(data[k]) == 0 {
			missing = append(missing, k)
		}
		return string(data[k])
	}
	s := &Secrets{
		ClusterCA:         kubedistro.KeyPair{Cert: get(KeyClusterCACert), Key: get(KeyClusterCAKey)},
		EtcdCA:            kubedistro.KeyPair{Cert: get(KeyEtcdCACert), Key: get(KeyEtcdCAKey)},
		FrontProxyCA:      kubedistro.KeyPair{Cert: get(KeyFrontProxyCACert), Key: get(KeyFrontProxyCAKey)},
		ServiceAccountKey: get(KeyServiceAccount),
		Token:             get(KeyToken),
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the cluster's PKI Secret lacks %s: restore it from a backup (formation never generates a running cluster's keys again)", strings.Join(missing, ", "))
	}
	return s, nil
}

const tokenAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// randomString draws n characters of tokenAlphabet uniformly (bytes at or
// above the largest multiple of the alphabet's size are drawn again).
func randomString(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	limit := 256 - 256%len(tokenAlphabet)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generating the bootstrap token: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return string(out), nil
}
