package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binary names edgefleet runs as child processes.
const (
	BinAPIServer         = "kube-apiserver"
	BinEtcd              = "etcd"
	BinControllerManager = "kube-controller-manager"
	BinScheduler         = "kube-scheduler"
	BinKwok              = "kwok"
	// KwokStages is the stage configuration kwok needs to move fake nodes and pods.
	KwokStages = "kwok-stages.yaml"
)

// EnvBinDir names the environment variable that points at the binaries.
const EnvBinDir = "EDGEFLEET_KUBE_BIN_DIR"

// FindBinDir picks the directory holding the control-plane binaries: the
// explicit one, then $EDGEFLEET_KUBE_BIN_DIR, then the directory of the running
// executable, then the directory of kube-apiserver on PATH.
func FindBinDir(explicit string) (string, error) {
	candidates := []string{explicit, os.Getenv(EnvBinDir)}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Dir(exe))
	}
	if p, err := exec.LookPath(BinAPIServer); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, dir := range candidates {
		if dir == "" {
			continue
		}
		if isExecutable(filepath.Join(dir, BinAPIServer)) && isExecutable(filepath.Join(dir, BinEtcd)) {
			return dir, nil
		}
		if dir == explicit {
			return "", fmt.Errorf("--kube-bin-dir %s has no %s and %s: run `make kube-binaries` (it prints the folder) or point at a folder that has them", dir, BinAPIServer, BinEtcd)
		}
	}
	return "", fmt.Errorf("%s and %s not found: run `make kube-binaries` and pass --kube-bin-dir (or set %s), or use --kubeconfig to run on an existing cluster", BinAPIServer, BinEtcd, EnvBinDir)
}

func requireBinaries(dir string, names ...string) error {
	for _, n := range names {
		path := filepath.Join(dir, n)
		if n == KwokStages {
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("%s not found in %s: run `make kube-binaries`", n, dir)
			}
			continue
		}
		if !isExecutable(path) {
			return fmt.Errorf("%s not found in %s: run `make kube-binaries`", n, dir)
		}
	}
	return nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
