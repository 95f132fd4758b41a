package kubedistro

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// etcdInitialCluster is where a joining server keeps the member list it
// joined with (etcd's --initial-cluster).
func (p Paths) etcdInitialCluster() string { return p.dir("run", "etcd-initial-cluster") }

type etcdMember struct {
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
}

// joinEtcd adds this server to the cluster's etcd (etcd's JSON gateway,
// /v3/cluster/member/add, with a client certificate from the etcd CA)
// unless it is a member already, and records the --initial-cluster its
// etcd starts with. A server that has etcd data is a member: nothing to do.
func joinEtcd(ctx context.Context, p Paths, c *kubedistro.NodeConfig, nodeIP string) error {
	if _, err := os.Stat(filepath.Join(p.Etcd(), "member")); err == nil {
		return nil
	}
	// etcd refuses a member add while the cluster is settling ("unhealthy
	// cluster", HTTP 503: a member that just joined has not caught up, or a
	// leader election runs), so transient failures are retried. A member
	// added by an attempt whose answer was lost is found by the next list.
	return retrySettling(ctx, func() error { return tryJoinEtcd(ctx, p, c, nodeIP) })
}

// retrySettling retries call while etcd answers like a cluster that is
// settling (anything but a 4xx refusal or a permanent error), for up to
// etcdJoinTimeout.
func retrySettling(ctx context.Context, call func() error) error {
	deadline := time.Now().Add(etcdJoinTimeout)
	wait := time.Second
	for {
		err := call()
		var final permanent
		if err == nil || strings.Contains(err.Error(), "HTTP 4") || errors.As(err, &final) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// etcdJoinTimeout bounds how long a joining server waits for the existing
// members to accept it.
const etcdJoinTimeout = 2 * time.Minute

func tryJoinEtcd(ctx context.Context, p Paths, c *kubedistro.NodeConfig, nodeIP string) error {
	peer := "https://" + net.JoinHostPort(nodeIP, strconv.Itoa(etcdPeerPort))
	client, err := etcdClient(p)
	if err != nil {
		return err
	}
	if err := removeStaleMembers(ctx, client, c.Etcd.Endpoints, c.Etcd.RemoveMembers, peer); err != nil {
		return err
	}
	var errs []error
	for _, ep := range c.Etcd.Endpoints {
		var list struct {
			Members []etcdMember `json:"members"`
		}
		if err := etcdCall(ctx, client, ep, "/v3/cluster/member/list", map[string]any{}, &list); err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.ContainsFunc(list.Members, func(m etcdMember) bool { return slices.Contains(m.PeerURLs, peer) }) {
			var added struct {
				Members []etcdMember `json:"members"`
			}
			if err := etcdCall(ctx, client, ep, "/v3/cluster/member/add", map[string]any{"peerURLs": []string{peer}}, &added); err != nil {
				errs = append(errs, err)
				continue
			}
			list.Members = added.Members
		}
		var parts []string
		for _, m := range list.Members {
			name := m.Name
			if slices.Contains(m.PeerURLs, peer) {
				name = c.NodeName
			}
			for _, u := range m.PeerURLs {
				if name != "" {
					parts = append(parts, name+"="+u)
				}
			}
		}
		sort.Strings(parts)
		return writeFile(p.etcdInitialCluster(), []byte(strings.Join(parts, ",")), 0o644)
	}
	return fmt.Errorf("joining etcd through %s: %w", strings.Join(c.Etcd.Endpoints, ", "), errors.Join(errs...))
}

// etcdClient trusts the etcd CA and presents the API server's etcd client
// certificate (this server issued it from the etcd CA).
func etcdClient(p Paths) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(p.PKI(), "apiserver-etcd-client.crt"), filepath.Join(p.PKI(), "apiserver-etcd-client.key"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(p.PKI(), etcdCACert))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, DisableKeepAlives: true}}, nil
}

func etcdCall(ctx context.Context, client *http.Client, endpoint, path string, body, into any) error {
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(endpoint, "/")+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: HTTP %d: %s", endpoint, path, resp.StatusCode, out)
	}
	return json.Unmarshal(out, into)
}

// etcdMembers lists the members through this server's own etcd.
func etcdMembers(ctx context.Context, p Paths) ([]etcdMemberID, error) {
	client, err := etcdClient(p)
	if err != nil {
		return nil, err
	}
	var list struct {
		Members []etcdMemberID `json:"members"`
	}
	err = etcdCall(ctx, client, "https://127.0.0.1:2379", "/v3/cluster/member/list", map[string]any{}, &list)
	return list.Members, err
}

type etcdMemberID struct {
	ID         string   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

// leaveEtcd removes this server (by its peer URL) from the cluster's etcd
// and deletes its etcd data, so the cluster's quorum no longer counts it
// and a later `up` joins afresh. Used by `down --leave-etcd` (scale-down).
// The removal goes through another member: this server's own etcd stops
// as soon as it is removed, so a retry (etcd answers 503 while a member
// that joined or restarted moments ago catches up, or a timeout whose
// removal went through anyway) must ask a member that stays, and finds
// the removal done when the peer URL is no longer listed.
func leaveEtcd(ctx context.Context, p Paths, nodeIP string) error {
	peer := "https://" + net.JoinHostPort(nodeIP, strconv.Itoa(etcdPeerPort))
	members, err := etcdMembers(ctx, p)
	if err != nil {
		return fmt.Errorf("listing etcd members: %w", err)
	}
	var others []string
	found := false
	for _, m := range members {
		if slices.Contains(m.PeerURLs, peer) {
			found = true
			continue
		}
		others = append(others, m.ClientURLs...)
	}
	if !found {
		return nil
	}
	if len(members) == 1 {
		return errors.New("this server is etcd's only member: removing it would delete the cluster")
	}
	client, err := etcdClient(p)
	if err != nil {
		return err
	}
	if err := leaveKeepsQuorum(ctx, client, members, peer); err != nil {
		return err
	}
	if err := retrySettling(ctx, func() error {
		return removeStaleMembers(ctx, client, others, []string{peer}, "")
	}); err != nil {
		return fmt.Errorf("removing the etcd member: %w", err)
	}
	return nil
}
