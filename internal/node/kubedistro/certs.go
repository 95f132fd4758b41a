package kubedistro

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"

	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// Certificate files in Paths.PKI.
const (
	caCert           = "ca.crt"
	etcdCACert       = "etcd-ca.crt"
	frontProxyCACert = "front-proxy-ca.crt"
	saKey            = "sa.key"
	saPub            = "sa.pub"
)

// writeCerts writes the CA certificates every node trusts and, on a
// server, issues its leaf certificates from the CAs in the config (each
// server makes its own; a changed SAN list re-issues them).
func writeCerts(p Paths, c *kubedistro.NodeConfig, nodeIP string) error {
	store := pki.Store{Dir: p.PKI()}
	if err := os.MkdirAll(p.PKI(), 0o700); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(p.PKI(), caCert), []byte(c.ClusterCA.Cert), 0o644); err != nil {
		return err
	}
	if c.Role != kubedistro.RoleServer {
		return nil
	}
	cluster, err := pki.ParseCA(pki.KeyPair{CertPEM: []byte(c.ClusterCA.Cert), KeyPEM: []byte(c.ClusterCA.Key)})
	if err != nil {
		return fmt.Errorf("clusterCA: %w", err)
	}
	etcd, err := pki.ParseCA(pki.KeyPair{CertPEM: []byte(c.EtcdCA.Cert), KeyPEM: []byte(c.EtcdCA.Key)})
	if err != nil {
		return fmt.Errorf("etcdCA: %w", err)
	}
	front, err := pki.ParseCA(pki.KeyPair{CertPEM: []byte(c.FrontProxyCA.Cert), KeyPEM: []byte(c.FrontProxyCA.Key)})
	if err != nil {
		return fmt.Errorf("frontProxyCA: %w", err)
	}
	sa, err := pki.ParseKey([]byte(c.ServiceAccountKey))
	if err != nil {
		return fmt.Errorf("serviceAccountKey: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(sa.Public())
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"ca.key": []byte(c.ClusterCA.Key), etcdCACert: []byte(c.EtcdCA.Cert), frontProxyCACert: []byte(c.FrontProxyCA.Cert),
		saKey: []byte(c.ServiceAccountKey), saPub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	} {
		if err := writeFile(filepath.Join(p.PKI(), name), data, 0o600); err != nil {
			return err
		}
	}

	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(nodeIP), firstServiceIP(c)}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", c.NodeName}
	if u, err := url.Parse(c.Server); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			ips = append(ips, ip)
		} else if u.Hostname() != "" {
			dns = append(dns, u.Hostname())
		}
	}
	for _, s := range c.TLSSANs {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, s)
		}
	}
	etcdIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(nodeIP)}
	leaves := []struct {
		name string
		ca   *pki.CA
		spec pki.CertSpec
	}{
		{"apiserver", cluster, pki.CertSpec{CommonName: "kube-apiserver", DNSNames: dns, IPs: ips, Usage: pki.ServerAuth}},
		{"apiserver-kubelet-client", cluster, pki.CertSpec{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Usage: pki.ClientAuth}},
		{"admin", cluster, pki.CertSpec{CommonName: "edgefleet-admin", Organization: []string{"system:masters"}, Usage: pki.ClientAuth}},
		{"controller-manager", cluster, pki.CertSpec{CommonName: "system:kube-controller-manager", Usage: pki.ClientAuth}},
		{"scheduler", cluster, pki.CertSpec{CommonName: "system:kube-scheduler", Usage: pki.ClientAuth}},
		{"front-proxy-client", front, pki.CertSpec{CommonName: "front-proxy-client", Usage: pki.ClientAuth}},
		{"etcd-server", etcd, pki.CertSpec{CommonName: c.NodeName, DNSNames: []string{"localhost", c.NodeName}, IPs: etcdIPs, Usage: pki.ServerAuth | pki.ClientAuth}},
		{"etcd-peer", etcd, pki.CertSpec{CommonName: c.NodeName, DNSNames: []string{"localhost", c.NodeName}, IPs: etcdIPs, Usage: pki.ServerAuth | pki.ClientAuth}},
		{"apiserver-etcd-client", etcd, pki.CertSpec{CommonName: "kube-apiserver-etcd-client", Usage: pki.ClientAuth}},
	}
	for _, l := range leaves {
		l.spec.IPs = nonNil(l.spec.IPs)
		if _, err := store.LoadOrIssue(l.ca, l.name, l.spec); err != nil {
			return fmt.Errorf("certificate %s: %w", l.name, err)
		}
	}
	return nil
}

func nonNil(ips []net.IP) []net.IP {
	var out []net.IP
	seen := map[string]bool{}
	for _, ip := range ips {
		if ip != nil && !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	return out
}

// firstServiceIP is the kubernetes Service's address (the service CIDR's
// first host), which in-cluster clients dial.
func firstServiceIP(c *kubedistro.NodeConfig) net.IP {
	_, n, err := net.ParseCIDR(serviceCIDR(c))
	if err != nil {
		return nil
	}
	ip := n.IP.To16()
	out := make(net.IP, len(ip))
	copy(out, ip)
	out[len(out)-1]++
	return out
}

func serviceCIDR(c *kubedistro.NodeConfig) string {
	if c.ServiceCIDR != "" {
		return c.ServiceCIDR
	}
	return kubedistro.DefaultServiceCIDR
}

func clusterCIDR(c *kubedistro.NodeConfig) string {
	if c.ClusterCIDR != "" {
		return c.ClusterCIDR
	}
	return kubedistro.DefaultClusterCIDR
}

// writeFile replaces path atomically (a reader never sees half a file).
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
