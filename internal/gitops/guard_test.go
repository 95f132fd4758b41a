package gitops

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/edgefleet/edgefleet/internal/netguard"
	"github.com/edgefleet/edgefleet/test/gitserver"
)

// newLoopbackFetcher is a Fetcher whose policy allows loopback, where the
// tests' git servers listen.
func newLoopbackFetcher(dir string, n int) (*Fetcher, error) {
	f, err := NewFetcher(dir, n)
	if err != nil {
		return nil, err
	}
	f.Guard.Allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	return f, nil
}

// The default policy refuses a repository on loopback over https and over
// ssh before anything is sent, with the message naming the flag; the
// same fetcher allowed loopback reaches it. A git:// URL is refused (go-git
// dials it without a hook).
func TestFetchRefusesTheManagersOwnNetworks(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "r.git")
	repo.Commit(t, "main", "one", gitserver.Files(map[string]string{"f": "1"}))
	srv := gitserver.ServeHTTP(t, root, "", "")
	// A listener that counts connections stands for any service on
	// loopback: a refusal must not connect at all.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	f, err := NewFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sshAuth := Auth{SSHPrivateKey: testKey(t), KnownHosts: []byte("localhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")}
	for _, u := range []string{
		"https://127.0.0.1:" + port + "/r.git",
		"http://localhost:" + port + "/r.git",
		"ssh://git@127.0.0.1:" + port + "/r.git",
		"ssh://git@localhost:" + port + "/r.git",
		"git@localhost:r.git",
		"https://169.254.169.254/latest/meta-data/",
	} {
		_, err := f.Resolve(ctx, u, Ref{Branch: "main"}, sshAuth)
		if err == nil || !strings.Contains(err.Error(), netguard.RefusedMessage) || !strings.Contains(err.Error(), "--fetch-allowed-networks") {
			t.Errorf("%s: %v, want a refusal naming --fetch-allowed-networks", u, err)
		}
	}
	if _, err := f.Resolve(ctx, "git://127.0.0.1/r.git", Ref{}, Auth{}); err == nil || !strings.Contains(err.Error(), "git:// protocol") {
		t.Errorf("git://: %v, want it refused", err)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the refused listener was connected to %d times", n)
	}
	allowed, err := newLoopbackFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := allowed.Resolve(ctx, srv.URL+"/r.git", Ref{Branch: "main"}, Auth{}); err != nil {
		t.Errorf("allowed loopback: %v", err)
	}
	// Allowed, ssh goes through the guard's dialer and connects.
	if _, err := allowed.Resolve(ctx, "ssh://git@127.0.0.1:"+port+"/r.git", Ref{Branch: "main"}, sshAuth); err == nil || netguard.IsRefused(err) || conns.Load() == 0 {
		t.Errorf("allowed ssh: %v after %d connections, want a connection (and a failed handshake)", err, conns.Load())
	}
	allowed.Guard.Own = []netip.AddrPort{netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))}
	if _, err := allowed.Resolve(ctx, srv.URL+"/r.git", Ref{Branch: "main"}, Auth{}); err == nil || !strings.Contains(err.Error(), "manager's own") {
		t.Errorf("the manager's own address: %v, want a refusal", err)
	}
}

func testKey(t *testing.T) []byte {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}
