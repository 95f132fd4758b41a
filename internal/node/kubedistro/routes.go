package kubedistro

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// routesEvery is how often a node reads the Node list for pod routes.
const routesEvery = 5 * time.Second

// routes keeps one host route per other node: its pod CIDR via its
// InternalIP (flannel's host-gw: the nodes share a layer-2 network, pods
// talk to pods on other nodes without an overlay). It reads the Nodes with
// the kubelet's own client certificate once the kubelet has one.
func (s *supervisor) routes(ctx context.Context) {
	have := map[string]string{}
	lastErr := ""
	for {
		nodes, err := s.listNodes(ctx)
		if err != nil && err.Error() != lastErr && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("Reading the Nodes for pod routes failed; retrying", "err", err)
		}
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = ""
			for _, n := range nodes {
				if n.name == s.c.NodeName || n.ip == "" {
					continue
				}
				for _, cidr := range n.podCIDRs {
					if _, ipn, err := net.ParseCIDR(cidr); err != nil || ipn.IP.To4() == nil || ipn.String() != cidr || have[cidr] == n.ip {
						continue
					}
					out, err := exec.CommandContext(ctx, "ip", "route", "replace", cidr, "via", n.ip).CombinedOutput()
					if err != nil {
						s.log.Warn("Adding a pod route failed", "cidr", cidr, "via", n.ip, "err", err, "output", string(out))
						continue
					}
					have[cidr] = n.ip
					s.log.Info("Pod route added", "node", n.name, "cidr", cidr, "via", n.ip)
				}
			}
		}
		if !sleepCtx(ctx, routesEvery) {
			return
		}
	}
}

type nodeRoute struct {
	name     string
	ip       string
	podCIDRs []string
}

// listNodes GETs /api/v1/nodes as this node (the Node authorizer lets a
// node read Nodes).
func (s *supervisor) listNodes(ctx context.Context) ([]nodeRoute, error) {
	certFile := filepath.Join(s.p.Kubelet(), "pki", "kubelet-client-current.pem")
	cert, err := tls.LoadX509KeyPair(certFile, certFile)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(s.p.PKI(), caCert))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.c.Server+"/api/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("listing nodes: HTTP %d: %s", resp.StatusCode, msg)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				PodCIDR  string   `json:"podCIDR"`
				PodCIDRs []string `json:"podCIDRs"`
			} `json:"spec"`
			Status struct {
				Addresses []struct {
					Type    string `json:"type"`
					Address string `json:"address"`
				} `json:"addresses"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list); err != nil {
		return nil, err
	}
	var out []nodeRoute
	for _, it := range list.Items {
		n := nodeRoute{name: it.Metadata.Name, podCIDRs: it.Spec.PodCIDRs}
		if len(n.podCIDRs) == 0 && it.Spec.PodCIDR != "" {
			n.podCIDRs = []string{it.Spec.PodCIDR}
		}
		for _, a := range it.Status.Addresses {
			if a.Type == "InternalIP" && net.ParseIP(a.Address).To4() != nil && n.ip == "" {
				n.ip = a.Address
			}
		}
		out = append(out, n)
	}
	return out, nil
}
