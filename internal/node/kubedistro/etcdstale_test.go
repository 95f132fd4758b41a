package kubedistro

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testClient bounds every etcd request (a request etcd never answers must
// fail, not hang the test).
var testClient = &http.Client{Timeout: 10 * time.Second}

// startEtcds runs a real etcd cluster of n members on loopback (plain
// HTTP: the TLS of the distribution is not what is tested here) and
// returns their client and peer URLs and processes.
func startEtcds(t *testing.T, n int) (clients, peers []string, procs []*exec.Cmd) {
	t.Helper()
	dir := os.Getenv("EDGEFLEET_KUBE_BIN_DIR")
	bin := filepath.Join(dir, "etcd")
	if _, err := os.Stat(bin); dir == "" || err != nil {
		t.Fatalf("needs the etcd binary: set EDGEFLEET_KUBE_BIN_DIR to the Kubernetes binaries (make kube-binaries; `cat .cache/kube-bin-dir`)")
	}
	// Every port stays bound until all are chosen, so no two are the same.
	var held []net.Listener
	port := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		return l.Addr().String()
	}
	var initial []string
	for i := range n {
		clients = append(clients, "http://"+port())
		peers = append(peers, "http://"+port())
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i]))
	}
	for _, l := range held {
		l.Close()
	}
	for i := range n {
		cmd := exec.Command(bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(t.TempDir(), "etcd"),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "t",
			"--log-level", "error")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		procs = append(procs, cmd)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for {
			resp, err := testClient.Get(c + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcd %s not healthy: %v", c, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return clients, peers, procs
}

func memberPeers(t *testing.T, endpoint string) []string {
	t.Helper()
	var list struct {
		Members []etcdMemberID `json:"members"`
	}
	if err := etcdCall(context.Background(), testClient, endpoint, "/v3/cluster/member/list", map[string]any{}, &list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range list.Members {
		out = append(out, m.PeerURLs...)
	}
	return out
}

func waitPeers(t *testing.T, endpoint string, ok func([]string) bool, want string) {
	t.Helper()
	var got []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if got = memberPeers(t, endpoint); ok(got) {
			return
		}
	}
	t.Fatalf("etcd members %v, want %s", got, want)
}

// threeEtcdsOneDead is a three-member etcd whose member m2's server died
// (powered off: it could not leave).
func threeEtcdsOneDead(t *testing.T) (clients, peers []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs three etcd processes")
	}
	clients, peers, procs := startEtcds(t, 3)
	_ = procs[2].Process.Kill()
	_ = procs[2].Wait()
	return clients, peers
}

// A dead server's member blocks a replacement's join (etcd refuses a new
// member while one is unreachable) until the replacement removes it
// through a survivor; the survivors keep their quorum throughout.
func TestRemoveStaleMembers(t *testing.T) {
	ctx := context.Background()
	clients, peers := threeEtcdsOneDead(t)
	survivors := clients[:2]
	replacement := "http://127.0.0.1:1" // never started: only its membership matters

	var added map[string]any
	err := etcdCall(ctx, testClient, survivors[0], "/v3/cluster/member/add", map[string]any{"peerURLs": []string{replacement}}, &added)
	if err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("adding a member while one is dead: %v, want etcd's 503 refusal (the reason the stale member goes first)", err)
	}

	// Its own peer URL is never removed, whatever the list says.
	if err := retrySettling(ctx, func() error {
		return removeStaleMembers(ctx, testClient, survivors, []string{peers[2], replacement}, replacement)
	}); err != nil {
		t.Fatal(err)
	}
	// A follower's member list may lag the removal for a moment.
	waitPeers(t, survivors[1], func(got []string) bool { return len(got) == 2 && !strings.Contains(strings.Join(got, " "), peers[2]) }, "the two survivors")
	// Idempotent: a retry after a lost answer finds nothing to remove.
	if err := removeStaleMembers(ctx, testClient, survivors, []string{peers[2]}, replacement); err != nil {
		t.Fatalf("removing again: %v", err)
	}
	// The replacement can join now.
	if err := retrySettling(ctx, func() error {
		return etcdCall(ctx, testClient, survivors[0], "/v3/cluster/member/add", map[string]any{"peerURLs": []string{replacement}}, &added)
	}); err != nil {
		t.Fatalf("adding the replacement after the removal: %v", err)
	}
	waitPeers(t, survivors[0], func(got []string) bool { return len(got) == 3 }, "the survivors and the replacement")
}

// The last member is never removed.
func TestRemoveStaleMembersKeepsTheLast(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an etcd process")
	}
	clients, peers, _ := startEtcds(t, 1)
	err := removeStaleMembers(context.Background(), testClient, clients, peers, "https://10.0.0.9:2380")
	if err == nil || !strings.Contains(err.Error(), "only member") {
		t.Fatalf("removing the only member: %v", err)
	}
	if got := memberPeers(t, clients[0]); len(got) != 1 {
		t.Fatalf("members: %v", got)
	}
}

// A dead server scaled down while no server joins: a survivor removes its
// member through its own etcd, restarting nothing; a second run finds it
// gone; a server never removes itself.
func TestRemoveMembersThroughARunningServer(t *testing.T) {
	ctx := context.Background()
	clients, peers := threeEtcdsOneDead(t)

	var out strings.Builder
	if err := removeMembersThrough(ctx, testClient, clients[0], peers[0], []string{peers[2]}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "removed etcd members m2 (" + peers[2] + "); 2 remain"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	waitPeers(t, clients[1], func(got []string) bool { return len(got) == 2 && !strings.Contains(strings.Join(got, " "), peers[2]) }, "the two survivors")

	out.Reset()
	if err := removeMembersThrough(ctx, testClient, clients[1], peers[1], []string{peers[2]}, &out); err != nil {
		t.Fatalf("removing again: %v", err)
	}
	if !strings.Contains(out.String(), "nothing to remove") {
		t.Errorf("second removal said %q, want nothing to remove", out.String())
	}

	err := removeMembersThrough(ctx, testClient, clients[0], peers[0], []string{peers[0]}, &out)
	if err == nil || !strings.Contains(err.Error(), "own etcd member") {
		t.Fatalf("removing the server's own member: %v, want a refusal", err)
	}
	// A live member named as dead (its address reused) answers: refused.
	err = removeMembersThrough(ctx, testClient, clients[0], peers[0], []string{peers[1]}, &out)
	if err == nil || !strings.Contains(err.Error(), "it is alive, so it is not removed") {
		t.Fatalf("removing a live member: %v, want a refusal", err)
	}
	if got := memberPeers(t, clients[0]); len(got) != 2 {
		t.Fatalf("members after the refused removals: %v", got)
	}
}

// A server scaled down while another is dead (its member still listed,
// etcd still counting it as started for a while) must not leave: 1 of the
// 2 members that would remain answers, below their quorum, and the API
// would stop. With the dead member removed it may.
func TestLeaveKeepsQuorum(t *testing.T) {
	ctx := context.Background()
	clients, peers := threeEtcdsOneDead(t)
	list := func() []etcdMemberID {
		var l struct {
			Members []etcdMemberID `json:"members"`
		}
		if err := etcdCall(ctx, testClient, clients[0], "/v3/cluster/member/list", map[string]any{}, &l); err != nil {
			t.Fatal(err)
		}
		return l.Members
	}
	err := leaveKeepsQuorum(ctx, testClient, list(), peers[1])
	if err == nil || !strings.Contains(err.Error(), "need 2 reachable for a quorum, and only 1 answer (m2 does not)") {
		t.Fatalf("leaving with a dead member listed: %v, want a refusal naming m2", err)
	}
	if err := removeMembersThrough(ctx, testClient, clients[0], peers[0], []string{peers[2]}, io.Discard); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, clients[1], func(got []string) bool { return len(got) == 2 }, "the two live members")
	if err := leaveKeepsQuorum(ctx, testClient, list(), peers[1]); err != nil {
		t.Fatalf("leaving with the dead member removed: %v", err)
	}
}
