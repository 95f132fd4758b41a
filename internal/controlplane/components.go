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

type certs struct {
	store             pki.Store
	ca                *pki.CA
	etcdServer        pki.KeyPair
	apiserverEtcd     pki.KeyPair
	apiserver         pki.KeyPair
	admin             pki.KeyPair
	controllerManager pki.KeyPair
	scheduler         pki.KeyPair
	serviceAccountKey string
	serviceAccountPub string
	caFile, caKeyFile string
}

func (p *Processes) ensurePKI() (*certs, error) {
	store := pki.Store{Dir: filepath.Join(p.cfg.DataDir, "pki")}
	ca, err := store.LoadOrCreateCA("ca", "edgefleet-ca")
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	p.ca = ca
	c := &certs{store: store, ca: ca, caFile: store.Path("ca.crt"), caKeyFile: store.Path("ca.key")}
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
	issue := []struct {
		name string
		into *pki.KeyPair
		spec pki.CertSpec
	}{
		{"etcd-server", &c.etcdServer, pki.CertSpec{CommonName: "etcd", DNSNames: []string{"localhost"}, IPs: loopback, Usage: pki.ServerAuth | pki.ClientAuth}},
		{"apiserver-etcd-client", &c.apiserverEtcd, pki.CertSpec{CommonName: "kube-apiserver-etcd-client", Usage: pki.ClientAuth}},
		{"apiserver", &c.apiserver, pki.CertSpec{CommonName: "kube-apiserver", DNSNames: apiNames, IPs: apiIPs, Usage: pki.ServerAuth}},
		{"admin", &c.admin, pki.CertSpec{CommonName: "edgefleet-admin", Organization: []string{"system:masters"}, Usage: pki.ClientAuth}},
		{"controller-manager", &c.controllerManager, pki.CertSpec{CommonName: "system:kube-controller-manager", Usage: pki.ClientAuth}},
		{"scheduler", &c.scheduler, pki.CertSpec{CommonName: "system:kube-scheduler", Usage: pki.ClientAuth}},
	}
	for _, i := range issue {
		kp, err := store.LoadOrIssue(ca, i.name, i.spec)
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
		"--trusted-ca-file=" + c.caFile,
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
	httpClient, err := tlsClient(c.ca, c.apiserverEtcd)
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
		"--etcd-cafile=" + c.caFile,
		"--etcd-certfile=" + c.store.Path("apiserver-etcd-client.crt"),
		"--etcd-keyfile=" + c.store.Path("apiserver-etcd-client.key"),
		"--bind-address=" + p.cfg.Host,
		"--advertise-address=" + advertise,
		"--secure-port=" + strconv.Itoa(pt.APIServer),
		"--tls-cert-file=" + c.store.Path("apiserver.crt"),
		"--tls-private-key-file=" + c.store.Path("apiserver.key"),
		"--client-ca-file=" + c.caFile,
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
	httpClient, err := tlsClient(c.ca, c.admin)
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
			CAData:   c.ca.CertPEM,
			CertData: c.admin.CertPEM,
			KeyData:  c.admin.KeyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	p.kubeconfig = filepath.Join(p.cfg.DataDir, "kubeconfig")
	return writeKubeconfig(p.kubeconfig, "edgefleet", url, c.ca.CertPEM, c.admin)
}

func (p *Processes) startExtras(ctx context.Context, c *certs) error {
	url := p.restConfig.Host
	kcDir := filepath.Join(p.cfg.DataDir, "kubeconfigs")
	if p.cfg.Components.ControllerManager {
		kc := filepath.Join(kcDir, "controller-manager.kubeconfig")
		if err := writeKubeconfig(kc, "edgefleet", url, c.ca.CertPEM, c.controllerManager); err != nil {
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
			"--root-ca-file=" + c.caFile,
			"--cluster-signing-cert-file=" + c.caFile,
			"--cluster-signing-key-file=" + c.caKeyFile,
			"--service-cluster-ip-range=" + serviceCIDR,
			"--controllers=*,bootstrapsigner,tokencleaner",
		}); err != nil {
			return err
		}
	}
	if p.cfg.Components.Scheduler {
		kc := filepath.Join(kcDir, "scheduler.kubeconfig")
		if err := writeKubeconfig(kc, "edgefleet", url, c.ca.CertPEM, c.scheduler); err != nil {
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
