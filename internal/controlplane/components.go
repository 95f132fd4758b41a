package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/edgefleet/edgefleet/internal/pki"
)

// serviceCIDR is only an allocation range for Service IPs; nothing routes it.
const serviceCIDR = "10.96.0.0/16"

// certs is the control plane's key material. Each trust relationship has its
// own CA, so a key that can mint one kind of certificate is trusted for
// nothing else:
//
//   - ca (pki/ca.*): the manager endpoint's CA, which agents pin by checksum.
//     It signs no control-plane certificate; it keeps its file name so
//     existing installations keep their checksum.
//   - etcd-ca: etcd's serving certificate and kube-apiserver's etcd client
//     certificate. etcd trusts nothing else, so no Kubernetes user (nor a
//     CSR approved in Kubernetes) can read etcd directly.
//   - kube-ca: kube-apiserver's serving certificate and the component and
//     admin client certificates.
//   - csr-signer-ca: kube-controller-manager's --cluster-signing-* key, for
//     CertificateSigningRequests approved in Kubernetes. kube-apiserver (and
//     the manager endpoint, for users) trusts it for client certificates,
//     but nothing trusts it as a server, as etcd, or as a manager replica.
type certs struct {
	store             pki.Store
	endpointCA        *pki.CA
	etcdCA            *pki.CA
	kubeCA            *pki.CA
	csrSignerCA       *pki.CA
	etcdServer        pki.KeyPair
	apiserverEtcd     pki.KeyPair
	apiserver         pki.KeyPair
	admin             pki.KeyPair
	controllerManager pki.KeyPair
	scheduler         pki.KeyPair
	serviceAccountKey string
	serviceAccountPub string
	// clientCAFile is kube-apiserver's --client-ca-file: kube-ca and csr-signer-ca.
	clientCAFile string
}

// CA file names in the pki directory.
const (
	endpointCAName  = "ca"
	etcdCAName      = "etcd-ca"
	kubeCAName      = "kube-ca"
	csrSignerCAName = "csr-signer-ca"
	clientCABundle  = "apiserver-client-ca.crt"
)

func (p *Processes) ensureCAs(store pki.Store) (*certs, error) {
	c := &certs{store: store}
	for _, ca := range []struct {
		name, cn string
		into     **pki.CA
	}{
		{endpointCAName, "edgefleet-ca", &c.endpointCA},
		{etcdCAName, "edgefleet-etcd-ca", &c.etcdCA},
		{kubeCAName, "edgefleet-kube-ca", &c.kubeCA},
		{csrSignerCAName, "edgefleet-csr-signer-ca", &c.csrSignerCA},
	} {
		loaded, err := store.LoadOrCreateCA(ca.name, ca.cn)
		if err != nil {
			return nil, fmt.Errorf("certificate authority %s: %w", ca.name, err)
		}
		*ca.into = loaded
	}
	bundle := append(append([]byte{}, c.kubeCA.CertPEM...), c.csrSignerCA.CertPEM...)
	if err := store.WriteFile(clientCABundle, bundle); err != nil {
		return nil, fmt.Errorf("writing %s: %w", clientCABundle, err)
	}
	c.clientCAFile = store.Path(clientCABundle)
	p.ca = c.endpointCA
	p.clientCAs = bundle
	return c, nil
}

func (p *Processes) ensurePKI() (*certs, error) {
	store := pki.Store{Dir: filepath.Join(p.cfg.DataDir, "pki")}
	c, err := p.ensureCAs(store)
	if err != nil {
		return nil, err
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	apiIPs := append([]net.IP{}, loopback...)
	if ip := net.ParseIP(p.cfg.Host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		apiIPs = append(apiIPs, ip)
	}
	apiIPs = append(apiIPs, net.ParseIP("10.96.0.1"))
	hostname, _ := os.Hostname()
	apiNames := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if hostname != "" && hostname != "localhost" {
		apiNames = append(apiNames, hostname)
	}
	// A certificate issued by the single CA of older versions is re-issued
	// here by its new CA (LoadOrIssue checks the issuer).
	issue := []struct {
		ca   *pki.CA
		name string
		into *pki.KeyPair
		spec pki.CertSpec
	}{
		// etcd dials itself (its gRPC gateway) with its serving certificate, so it needs client auth too.
		{c.etcdCA, "etcd-server", &c.etcdServer, pki.CertSpec{CommonName: "etcd", DNSNames: []string{"localhost"}, IPs: loopback, Usage: pki.ServerAuth | pki.ClientAuth}},
		{c.etcdCA, "apiserver-etcd-client", &c.apiserverEtcd, pki.CertSpec{CommonName: "kube-apiserver-etcd-client", Usage: pki.ClientAuth}},
		{c.kubeCA, "apiserver", &c.apiserver, pki.CertSpec{CommonName: "kube-apiserver", DNSNames: apiNames, IPs: apiIPs, Usage: pki.ServerAuth}},
		{c.kubeCA, "admin", &c.admin, pki.CertSpec{CommonName: "edgefleet-admin", Organization: []string{"system:masters"}, Usage: pki.ClientAuth}},
		{c.kubeCA, "controller-manager", &c.controllerManager, pki.CertSpec{CommonName: "system:kube-controller-manager", Usage: pki.ClientAuth}},
		{c.kubeCA, "scheduler", &c.scheduler, pki.CertSpec{CommonName: "system:kube-scheduler", Usage: pki.ClientAuth}},
	}
	for _, i := range issue {
		kp, err := store.LoadOrIssue(i.ca, i.name, i.spec)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", i.name, err)
		}
		*i.into = kp
	}
	if _, err := store.LoadOrCreateKey("service-account"); err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	c.serviceAccountKey = store.Path("service-account.key")
	c.serviceAccountPub = store.Path("service-account.pub")
	return c, nil
}

func (p *Processes) startEtcd(ctx context.Context, pt ports, c *certs) error {
	client := "https://" + hostPort("127.0.0.1", pt.EtcdClient)
	peer := "http://" + hostPort("127.0.0.1", pt.EtcdPeer)
	args := []string{
		"--name=edgefleet",
		"--data-dir=" + filepath.Join(p.cfg.DataDir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=edgefleet=" + peer,
		"--cert-file=" + c.store.Path("etcd-server.crt"),
		"--key-file=" + c.store.Path("etcd-server.key"),
		"--trusted-ca-file=" + c.store.Path(etcdCAName+".crt"),
		"--client-cert-auth=true",
		"--quota-backend-bytes=" + strconv.Itoa(8<<30),
		"--log-level=warn",
	}
	if p.cfg.UnsafeNoFsync {
		args = append(args, "--unsafe-no-fsync=true")
	}
	p.cfg.Log.V(1).Info("Starting etcd", "url", client)
	proc, err := p.launch(BinEtcd, args)
	if err != nil {
		return err
	}
	httpClient, err := tlsClient(c.etcdCA, c.apiserverEtcd)
	if err != nil {
		return err
	}
	return waitReady(ctx, proc, 60*time.Second, func(ctx context.Context) error {
		body, err := get(ctx, httpClient, client+"/health")
		if err != nil {
			return err
		}
		var h struct{ Health string }
		if json.Unmarshal(body, &h) != nil || h.Health != "true" {
			return fmt.Errorf("etcd health: %s", body)
		}
		return nil
	})
}

func (p *Processes) startAPIServer(ctx context.Context, pt ports, c *certs) error {
	url := "https://" + hostPort(p.cfg.Host, pt.APIServer)
	advertise := p.cfg.Host
	if ip := net.ParseIP(advertise); ip == nil || ip.IsUnspecified() {
		advertise = "127.0.0.1"
	}
	args := []string{
		"--etcd-servers=https://" + hostPort("127.0.0.1", pt.EtcdClient),
		"--etcd-cafile=" + c.store.Path(etcdCAName+".crt"),
		"--etcd-certfile=" + c.store.Path("apiserver-etcd-client.crt"),
		"--etcd-keyfile=" + c.store.Path("apiserver-etcd-client.key"),
		"--bind-address=" + p.cfg.Host,
		"--advertise-address=" + advertise,
		"--secure-port=" + strconv.Itoa(pt.APIServer),
		"--tls-cert-file=" + c.store.Path("apiserver.crt"),
		"--tls-private-key-file=" + c.store.Path("apiserver.key"),
		"--client-ca-file=" + c.clientCAFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.serviceAccountPub,
		"--service-account-signing-key-file=" + c.serviceAccountKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// A single apiserver on loopback has no endpoints to reconcile; the
		// default reconciler logs a warning every 10 s.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(p.cfg.DataDir, "pki", "apiserver-generated"),
		fmt.Sprintf("--profiling=%t", p.cfg.Profiling),
	}
	p.cfg.Log.V(1).Info("Starting kube-apiserver", "url", url)
	proc, err := p.launch(BinAPIServer, args)
	if err != nil {
		return err
	}
	httpClient, err := tlsClient(c.kubeCA, c.admin)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, proc, 90*time.Second, func(ctx context.Context) error {
		body, err := get(ctx, httpClient, url+"/readyz")
		if err != nil {
			return err
		}
		if string(body) != "ok" {
			return fmt.Errorf("readyz: %s", body)
		}
		return nil
	}); err != nil {
		return err
	}
	p.restConfig = &rest.Config{
		Host: url,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.kubeCA.CertPEM,
			CertData: c.admin.CertPEM,
			KeyData:  c.admin.KeyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	p.kubeconfig = filepath.Join(p.cfg.DataDir, "kubeconfig")
	return writeKubeconfig(p.kubeconfig, "edgefleet", url, c.kubeCA.CertPEM, c.admin)
}

func (p *Processes) startExtras(ctx context.Context, c *certs) error {
	url := p.restConfig.Host
	kcDir := filepath.Join(p.cfg.DataDir, "kubeconfigs")
	if p.cfg.Components.ControllerManager {
		kc := filepath.Join(kcDir, "controller-manager.kubeconfig")
		if err := writeKubeconfig(kc, "edgefleet", url, c.kubeCA.CertPEM, c.controllerManager); err != nil {
			return err
		}
		if _, err := p.launch(BinControllerManager, []string{
			"--kubeconfig=" + kc,
			"--authentication-kubeconfig=" + kc,
			"--authorization-kubeconfig=" + kc,
			"--secure-port=0",
			"--leader-elect=false",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + c.serviceAccountKey,
			"--root-ca-file=" + c.store.Path(kubeCAName+".crt"),
			// CSRs approved in Kubernetes are signed by their own CA: see certs.
			"--cluster-signing-cert-file=" + c.store.Path(csrSignerCAName+".crt"),
			"--cluster-signing-key-file=" + c.store.Path(csrSignerCAName+".key"),
			"--service-cluster-ip-range=" + serviceCIDR,
			"--controllers=*,bootstrapsigner,tokencleaner",
		}); err != nil {
			return err
		}
	}
	if p.cfg.Components.Scheduler {
		kc := filepath.Join(kcDir, "scheduler.kubeconfig")
		if err := writeKubeconfig(kc, "edgefleet", url, c.kubeCA.CertPEM, c.scheduler); err != nil {
			return err
		}
		if _, err := p.launch(BinScheduler, []string{
			"--kubeconfig=" + kc,
			"--authentication-kubeconfig=" + kc,
			"--authorization-kubeconfig=" + kc,
			"--secure-port=0",
			"--leader-elect=false",
		}); err != nil {
			return err
		}
	}
	if p.cfg.Components.KwokNodes > 0 {
		if err := p.startKwok(ctx); err != nil {
			return err
		}
	}
	return nil
}

func writeKubeconfig(path, name, server string, caPEM []byte, user pki.KeyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: user.CertPEM, ClientKeyData: user.KeyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func tlsClient(ca *pki.CA, client pki.KeyPair) (*http.Client, error) {
	cert, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}},
	}, nil
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return body, nil
}
