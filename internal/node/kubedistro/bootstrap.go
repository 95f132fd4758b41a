package kubedistro

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// manifestsEvery is how often the init server looks for new or changed
// files in ManifestsDir.
const manifestsEvery = 10 * time.Second

// bootstrap runs on the init server once its API is ready: it creates
// the bootstrap token and kubeadm's RBAC for TLS bootstrapping (retrying
// until it succeeds), then applies every *.yaml in ManifestsDir, again
// whenever a file's content changes.
func (s *supervisor) bootstrap(ctx context.Context) {
	file := filepath.Join(s.p.Server(), "bootstrap.json")
	if err := writeFile(file, bootstrapManifest(s.c.Token), 0o600); err != nil {
		s.log.Error("Writing the bootstrap manifest", "err", err)
		return
	}
	// The cluster DNS goes with it: kubelets point pods at ClusterDNSIP.
	files := []string{file}
	if ClusterDNSIP(s.c) != nil {
		dns := filepath.Join(s.p.Server(), "coredns.json")
		if err := writeFile(dns, coreDNSManifest(s.c), 0o600); err != nil {
			s.log.Error("Writing the CoreDNS manifest", "err", err)
			return
		}
		files = append(files, dns)
	} else {
		s.log.Warn("No cluster DNS: the service CIDR has no 10th address", "serviceCIDR", serviceCIDR(s.c))
	}
	for {
		var out string
		var err error
		for _, f := range files {
			if out, err = s.kubectlApply(ctx, f); err != nil {
				break
			}
		}
		if err == nil {
			s.log.Info("Bootstrap token, RBAC and cluster DNS applied")
			s.mu.Lock()
			s.state.Bootstrapped = true
			s.mu.Unlock()
			s.save()
			break
		}
		s.log.Warn("Applying the bootstrap token, RBAC or cluster DNS failed; retrying", "err", err, "output", out)
		if !sleepCtx(ctx, 2*time.Second) {
			return
		}
	}
	applied := map[string]string{}
	for {
		files, _ := filepath.Glob(filepath.Join(s.p.Manifests(), "*.yaml"))
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			sum := sha256.Sum256(data)
			h := hex.EncodeToString(sum[:])
			if applied[f] == h {
				continue
			}
			out, err := s.kubectlApply(ctx, f)
			if err != nil {
				s.log.Warn("Applying a manifest failed; retrying", "file", filepath.Base(f), "err", err, "output", out)
				continue
			}
			applied[f] = h
			s.log.Info("Manifest applied", "file", filepath.Base(f))
			s.mu.Lock()
			if s.state.Manifests == nil {
				s.state.Manifests = map[string]string{}
			}
			s.state.Manifests[filepath.Base(f)] = h
			s.mu.Unlock()
			s.save()
		}
		if !sleepCtx(ctx, manifestsEvery) {
			return
		}
	}
}

// kubectlApply server-side-applies a file with the admin credential.
func (s *supervisor) kubectlApply(ctx context.Context, file string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.p.Bin(s.c.Version), "kubectl"), "--kubeconfig", s.p.AdminKubeconfig(),
		"apply", "--server-side", "--force-conflicts", "--field-manager=edgefleet-kubedistro", "-f", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ControlPlaneLabel marks servers' Nodes, as kubeadm and k3s do: the fleet
// agent prefers them (a site whose workers go dark still reports).
// The same as clusterjoin.ControlPlaneNodeLabel, which the node binary does
// not link (it pulls Kubernetes API machinery).
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// labelControlPlane gives this server's Node ControlPlaneLabel. The
// kubelet cannot: it refuses node-role.kubernetes.io/ labels in
// --node-labels and NodeRestriction forbids a node to set them, so the
// server's supervisor does, with the admin credential it already holds.
// It runs once the local API is up, before the kubelet starts: a
// server-side apply creates the Node with its label (the kubelet then
// registers into it), so nothing is scheduled onto the server while it is
// unlabelled, the fleet agent included; and again once the kubelet is up,
// for a Node that was deleted and registered anew. Within bounds the
// retries (0: until it succeeds).
func (s *supervisor) labelControlPlane(ctx context.Context, within time.Duration) {
	manifest := fmt.Sprintf(`{"apiVersion":"v1","kind":"Node","metadata":{"name":%q,"labels":{%q:""}}}`, s.c.NodeName, ControlPlaneLabel)
	deadline := time.Now().Add(within)
	for {
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		cmd := exec.CommandContext(lctx, filepath.Join(s.p.Bin(s.c.Version), "kubectl"), "--kubeconfig", s.p.AdminKubeconfig(),
			"apply", "--server-side", "--field-manager=edgefleet-kubedistro-role", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			s.log.Info("Node labelled as control plane", "node", s.c.NodeName, "label", ControlPlaneLabel)
			return
		}
		if within > 0 && time.Now().After(deadline) {
			s.log.Warn("Labelling the node as control plane failed; retrying once the kubelet is up", "err", err, "output", strings.TrimSpace(string(out)))
			return
		}
		s.log.Debug("Labelling the node as control plane failed; retrying", "err", err, "output", strings.TrimSpace(string(out)))
		if !sleepCtx(ctx, 2*time.Second) {
			return
		}
	}
}
