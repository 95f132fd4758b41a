package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	certv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/internal/agent/join"
	"github.com/edgefleet/edgefleet/internal/clusterproxy"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// forgedPeerHeaders claim that a manager replica forwarded a request of
// fleet-admin (system:masters). Only a real replica may send them.
func forgedPeerHeaders() http.Header {
	return http.Header{
		clusterproxy.HeaderForwardedBy: {"evil/10.0.0.1:8443"},
		clusterproxy.HeaderRemoteUser:  {"fleet-admin"},
		clusterproxy.HeaderRemoteGroup: {"system:masters"},
	}
}

// certClient presents a client certificate and trusts caPEM for the server.
func certClient(caPEM []byte, cert tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
}

// downstreamWhoami asks the downstream cluster, through the manager's
// kube-api proxy, who it sees, with the forged forwarding headers. A
// refused TLS handshake or request is returned as an error.
func downstreamWhoami(m *harness.Manager, hc *http.Client, ns, name string) (authnv1.UserInfo, error) {
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	req, _ := http.NewRequest(http.MethodPost, m.URL+clusterproxy.ClusterPath(ns, name)+"/apis/authentication.k8s.io/v1/selfsubjectreviews", bytes.NewReader(body))
	for k, vs := range forgedPeerHeaders() {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return authnv1.UserInfo{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return authnv1.UserInfo{}, fmt.Errorf("%s: %s", resp.Status, data)
	}
	var r authnv1.SelfSubjectReview
	if err := json.Unmarshal(data, &r); err != nil {
		return authnv1.UserInfo{}, fmt.Errorf("%s: %w", data, err)
	}
	return r.Status.UserInfo, nil
}

// csrCertificate has kube-controller-manager sign a CSR that an admin
// approved, and returns the certificate with its key.
func csrCertificate(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, signer string, subject pkix.Name, ips []net.IP, usages []certv1.KeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer,
			Usages:     usages,
		},
	}
	if csr, err = cs.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "AdminApproved", Message: "approved by the test admin"})
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var certPEM []byte
	waitFor(t, 60*time.Second, "kube-controller-manager signing CSR "+name, func() bool {
		got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		certPEM = got.Status.Certificate
		return len(certPEM) > 0
	})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func keyPairCert(t *testing.T, kp pki.KeyPair) tls.Certificate {
	t.Helper()
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// etcdReads reports whether etcd serves a key range to a client presenting
// cert. etcd's own serving certificate is not what is tested here, so it is
// not verified.
func etcdReads(t *testing.T, port int, cert tls.Certificate) error {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the client side is under test
		Certificates:       []tls.Certificate{cert},
	}}}
	body := fmt.Sprintf(`{"key":%q}`, base64.StdEncoding.EncodeToString([]byte("/registry/namespaces/default")))
	resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d/v3/kv/range", port), "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, data)
	}
	return nil
}

// TestCertificateAuthoritiesAreSeparatedByPurpose attacks the embedded
// manager's PKI with every certificate a user or a component of the control
// plane can get: a certificate from a CSR approved in Kubernetes, one from
// the endpoint CA's key, etcd's client certificate and the admin
// certificate. None makes its holder a manager replica (whose forwarded
// caller the proxy believes), none is trusted by agents as the endpoint,
// and only kube-apiserver's own client certificate reads etcd.
func TestCertificateAuthoritiesAreSeparatedByPurpose(t *testing.T) {
	if testing.Short() {
		t.Skip("needs control planes")
	}
	t.Parallel()
	ctx := context.Background()
	down := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	m := harness.StartManager(t, harness.ManagerOptions{})
	if err := m.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, token, _ := createToken(t, m, "1h")
	var ks corev1.Namespace
	if err := down.Client.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	startJoinAgent(t, down, join.Options{Server: m.URL, Token: token, CAChecksum: m.CAChecksum})
	var name string
	waitFor(t, 60*time.Second, "the downstream cluster connected", func() bool {
		c := clusterByClientID(ctx, m.Client, string(ks.UID))
		if c == nil || connectedReason(c) != "True/AgentConnected" {
			return false
		}
		name = c.Name
		return true
	})
	resp, err := m.HTTP.Get(m.URL + "/cacerts")
	if err != nil {
		t.Fatal(err)
	}
	endpointCAPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pinned := x509.NewCertPool()
	pinned.AppendCertsFromPEM(endpointCAPEM)

	admin := restConfig(t, m.Kubeconfig)
	cs := kubernetes.NewForConfigOrDie(admin)
	pkiDir := filepath.Join(m.DataDir, "controlplane", "pki")
	readKeyPair := func(name string) pki.KeyPair {
		t.Helper()
		crt, err1 := os.ReadFile(filepath.Join(pkiDir, name+".crt"))
		key, err2 := os.ReadFile(filepath.Join(pkiDir, name+".key"))
		if err1 != nil || err2 != nil {
			t.Fatalf("reading %s: %v %v", name, err1, err2)
		}
		return pki.KeyPair{CertPEM: crt, KeyPEM: key}
	}
	raw, err := os.ReadFile(filepath.Join(m.DataDir, "controlplane", "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ports struct {
		EtcdClient int `json:"etcdClient"`
	}
	if err := json.Unmarshal(raw, &ports); err != nil || ports.EtcdClient == 0 {
		t.Fatalf("ports.json %s: %v", raw, err)
	}

	// A peer-named client certificate from kube-controller-manager's
	// kube-apiserver-client signer, approved by an admin.
	csrPeer := csrCertificate(ctx, t, cs, "peer-by-csr", certv1.KubeAPIServerClientSignerName,
		pkix.Name{CommonName: clusterproxy.PeerCommonName, Organization: []string{clusterproxy.PeerGroup}}, nil,
		[]certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageClientAuth})

	// The caller the downstream cluster sees must never be the forged
	// fleet-admin: a refused certificate, or the certificate's own name.
	notForged := func(t *testing.T, who string, u authnv1.UserInfo, err error) {
		t.Helper()
		if err != nil {
			t.Logf("%s refused by the endpoint: %v", who, err)
			return
		}
		if u.Username == "fleet-admin" || slices.Contains(u.Groups, "system:masters") {
			t.Fatalf("%s was taken for a manager replica: the downstream cluster sees the forged caller %+v", who, u)
		}
		t.Logf("%s is itself downstream: %s %v", who, u.Username, u.Groups)
	}

	t.Run("a CSR approved in Kubernetes makes no manager replica", func(t *testing.T) {
		u, err := downstreamWhoami(m, certClient(endpointCAPEM, csrPeer), fleetNS, name)
		notForged(t, "the CSR-issued peer-named certificate", u, err)
	})

	t.Run("the endpoint CA's key makes no manager replica", func(t *testing.T) {
		ca, err := pki.ParseCA(readKeyPair("ca"))
		if err != nil {
			t.Fatal(err)
		}
		kp, err := ca.Issue(pki.CertSpec{CommonName: clusterproxy.PeerCommonName, Organization: []string{clusterproxy.PeerGroup}, Usage: pki.ClientAuth})
		if err != nil {
			t.Fatal(err)
		}
		u, err := downstreamWhoami(m, certClient(endpointCAPEM, keyPairCert(t, kp)), fleetNS, name)
		notForged(t, "a peer-named certificate of the endpoint CA", u, err)
	})

	t.Run("etcd's client certificate is no identity at the endpoint", func(t *testing.T) {
		etcdClient := keyPairCert(t, readKeyPair("apiserver-etcd-client"))
		u, err := downstreamWhoami(m, certClient(endpointCAPEM, etcdClient), fleetNS, name)
		notForged(t, "etcd's client certificate", u, err)
		if err == nil {
			t.Fatalf("the endpoint accepted etcd's client certificate as user %q", u.Username)
		}
	})

	t.Run("only kube-apiserver's etcd client certificate reads etcd", func(t *testing.T) {
		if err := etcdReads(t, ports.EtcdClient, keyPairCert(t, readKeyPair("apiserver-etcd-client"))); err != nil {
			t.Fatalf("kube-apiserver's own etcd client certificate: %v", err)
		}
		adminKC, err := clientcmd.LoadFromFile(m.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		ai := adminKC.AuthInfos[adminKC.Contexts[adminKC.CurrentContext].AuthInfo]
		adminCert, err := tls.X509KeyPair(ai.ClientCertificateData, ai.ClientKeyData)
		if err != nil {
			t.Fatal(err)
		}
		for who, cert := range map[string]tls.Certificate{"the admin kubeconfig's certificate": adminCert, "a CSR-issued certificate": csrPeer} {
			if err := etcdReads(t, ports.EtcdClient, cert); err == nil {
				t.Errorf("%s reads etcd directly", who)
			}
		}
	})

	t.Run("a kubelet-serving CSR is not trusted by agents as the endpoint", func(t *testing.T) {
		serving := csrCertificate(ctx, t, cs, "serving-by-csr", certv1.KubeletServingSignerName,
			pkix.Name{CommonName: "system:node:edge", Organization: []string{"system:nodes"}}, []net.IP{net.ParseIP("127.0.0.1")},
			[]certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageKeyEncipherment, certv1.UsageServerAuth})
		if _, err := serving.Leaf.Verify(x509.VerifyOptions{Roots: pinned, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Fatal("a serving certificate from an approved CSR verifies against the CA agents pin: it can impersonate the manager to every agent")
		}
	})

	// The admin kubeconfig still works at the proxy: the endpoint trusts the
	// client CAs of its kube-apiserver for users.
	t.Run("the admin certificate is still a user at the proxy", func(t *testing.T) {
		adminKC, err := clientcmd.LoadFromFile(m.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		ai := adminKC.AuthInfos[adminKC.Contexts[adminKC.CurrentContext].AuthInfo]
		adminCert, err := tls.X509KeyPair(ai.ClientCertificateData, ai.ClientKeyData)
		if err != nil {
			t.Fatal(err)
		}
		u, err := downstreamWhoami(m, certClient(endpointCAPEM, adminCert), fleetNS, name)
		if err != nil || u.Username != "edgefleet-admin" {
			t.Fatalf("admin through the proxy: %+v %v, want edgefleet-admin", u, err)
		}
	})
}

// TestEndpointCASecretMakesNoReplica: on an external cluster the endpoint
// CA's key is in Secret edgefleet-ca. A peer-named client certificate signed
// with it is not a manager replica: it is refused (401) instead of believed
// (b0b1989 answered that the forged replica had forwarded the request). A
// user certificate signed with it is no user either.
func TestEndpointCASecretMakesNoReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("needs control planes")
	}
	t.Parallel()
	ctx := context.Background()
	mgmt := harness.StartClusters(t, 1, harness.ClusterOptions{})[0]
	m := harness.StartManager(t, harness.ManagerOptions{Kubeconfig: mgmt.KubeconfigPath()})
	if err := mgmt.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		t.Fatal(err)
	}
	_, token, _ := createToken(t, m, "1h")
	_, idle := register(t, m, clusterjoin.RegisterRequest{Token: token, ClientID: "never-connects"})
	if idle == nil {
		t.Fatal("registering a cluster failed")
	}
	var secret corev1.Secret
	if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: clusterjoin.SystemNamespace, Name: server.CASecretName}, &secret); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(pki.KeyPair{CertPEM: secret.Data[corev1.TLSCertKey], KeyPEM: secret.Data[corev1.TLSPrivateKeyKey]})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.CertSpec{CommonName: clusterproxy.PeerCommonName, Organization: []string{clusterproxy.PeerGroup}, Usage: pki.ClientAuth})
	if err != nil {
		t.Fatal(err)
	}
	_, err = downstreamWhoami(m, certClient(ca.CertPEM, keyPairCert(t, kp)), idle.ClusterNamespace, idle.ClusterName)
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "evil/") {
		t.Fatalf("peer-named certificate of the endpoint CA with forged forwarding headers: %v, want 401 (not a replica, not a user)", err)
	}

	// Nor does the key mint users: on an external cluster the endpoint
	// trusts no CA for users unless --client-ca-file names one.
	userKP, err := ca.Issue(pki.CertSpec{CommonName: "fleet-admin", Organization: []string{"system:masters"}, Usage: pki.ClientAuth})
	if err != nil {
		t.Fatal(err)
	}
	_, err = downstreamWhoami(m, certClient(ca.CertPEM, keyPairCert(t, userKP)), idle.ClusterNamespace, idle.ClusterName)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("admin certificate minted with the endpoint CA's key: %v, want 401", err)
	}

	// The replica's own identity is published, as a certificate without a key.
	hostname, _ := os.Hostname()
	waitFor(t, 10*time.Second, "the replica's peer Lease", func() bool {
		var l coordinationv1.LeaseList
		if mgmt.Client.List(ctx, &l, client.InNamespace(clusterjoin.SystemNamespace), client.HasLabels{clusterproxy.PeerLeaseLabel}) != nil {
			return false
		}
		return len(l.Items) == 1 && strings.HasPrefix(*l.Items[0].Spec.HolderIdentity, hostname+"/") &&
			strings.Contains(l.Items[0].Annotations[clusterproxy.PeerCertAnnotation], "BEGIN CERTIFICATE") &&
			!strings.Contains(l.Items[0].Annotations[clusterproxy.PeerCertAnnotation], "PRIVATE KEY")
	})
}

// TestUpgradeFromOneCAKeepsThePinnedChecksum starts the manager on a data
// dir of the single-CA layout of earlier versions (one CA signing the
// endpoint, etcd, kube-apiserver and the admin): the endpoint CA, which
// agents pin, keeps its checksum, and every control-plane certificate is
// re-issued by its own CA.
func TestUpgradeFromOneCAKeepsThePinnedChecksum(t *testing.T) {
	if testing.Short() {
		t.Skip("needs control planes")
	}
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "manager")
	store := pki.Store{Dir: filepath.Join(dataDir, "controlplane", "pki")}
	old, err := store.LoadOrCreateCA("ca", "edgefleet-ca")
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]pki.CertSpec{
		"etcd-server":           {CommonName: "etcd", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, Usage: pki.ServerAuth | pki.ClientAuth},
		"apiserver-etcd-client": {CommonName: "kube-apiserver-etcd-client", Usage: pki.ClientAuth},
		"admin":                 {CommonName: "edgefleet-admin", Organization: []string{"system:masters"}, Usage: pki.ClientAuth},
	} {
		if _, err := store.LoadOrIssue(old, name, spec); err != nil {
			t.Fatal(err)
		}
	}
	m := harness.StartManager(t, harness.ManagerOptions{DataDir: dataDir})
	if m.CAChecksum != pki.Checksum(old.CertPEM) {
		t.Fatalf("after the upgrade agents must pin %s, the manager serves %s", pki.Checksum(old.CertPEM), m.CAChecksum)
	}
	var ns corev1.Namespace
	if err := m.Client.Get(context.Background(), client.ObjectKey{Name: "kube-system"}, &ns); err != nil {
		t.Fatalf("the rewritten admin kubeconfig: %v", err)
	}
	for _, name := range []string{"etcd-server", "apiserver-etcd-client", "admin", "apiserver"} {
		crt, err := os.ReadFile(store.Path(name + ".crt"))
		if err != nil {
			t.Fatal(err)
		}
		cert, err := pki.ParseCert(crt)
		if err != nil {
			t.Fatal(err)
		}
		if cert.CheckSignatureFrom(old.Cert) == nil {
			t.Errorf("%s is still signed by the endpoint CA", name)
		}
	}
}
