package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Without network namespaces several kubelets cannot share the host's
// network, so a dev cluster (real etcd and kube-apiserver, kwok fake nodes
// whose pods kwok marks Ready) stands in for the formed cluster, joined by
// an `edgefleet agent` process with a registration token: the fleet, the
// tunnel and the GitRepo are real, the nodes are not.

// simulatedCluster names the stand-in's data dir and log.
const simulatedCluster = "dev-cluster"

func (d *demo) startSimulatedCluster(ctx context.Context) error {
	dir := filepath.Join(d.dataDir, simulatedCluster)
	log := filepath.Join(d.dataDir, simulatedCluster+".log")
	proc, err := startProcess(exec.Command(d.bins.edgefleet, "dev-cluster", "--data-dir", dir, "--kube-bin-dir", d.bins.kube), log, syscall.SIGTERM)
	if err != nil {
		return err
	}
	d.onCleanup(func() { proc.stop(30 * time.Second) })
	d.extraLogs = append(d.extraLogs, log)
	d.devKubeconfig = filepath.Join(dir, "kubeconfig")
	return poll(ctx, 300*time.Millisecond, "the dev cluster", func() error {
		if proc.exited() {
			return fmt.Errorf("edgefleet dev-cluster exited: %s\n%s", proc.cmd.ProcessState, tail(log, 2000))
		}
		b, err := os.ReadFile(log)
		if err != nil || !bytes.Contains(b, []byte("dev cluster is running")) {
			return fmt.Errorf("not running yet")
		}
		return nil
	})
}

// joinSimulatedCluster runs the `edgefleet agent` line `edgefleet token
// create` prints, on the dev cluster, labelled like the formed cluster.
func (d *demo) joinSimulatedCluster(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, d.bins.edgefleet, "token", "create", "-n", Namespace, "--kubeconfig", d.mgr.kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("edgefleet token create: %v: %s", err, out)
	}
	var args []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "edgefleet agent ") {
			line, _, _ = strings.Cut(line, " --kubeconfig ")
			args = strings.Fields(line)[1:]
		}
	}
	if args == nil {
		return fmt.Errorf("edgefleet token create printed no agent command:\n%s", out)
	}
	args = append(args, "--kubeconfig", d.devKubeconfig, "--label", "site=demo")
	log := filepath.Join(d.dataDir, "agent.log")
	proc, err := startProcess(exec.Command(d.bins.edgefleet, args...), log, syscall.SIGTERM)
	if err != nil {
		return err
	}
	d.onCleanup(func() { proc.stop(20 * time.Second) })
	d.extraLogs = append(d.extraLogs, log)
	var name string
	err = poll(ctx, 500*time.Millisecond, "the dev cluster in the fleet", func() error {
		if proc.exited() {
			return fmt.Errorf("edgefleet agent exited: %s\n%s", proc.cmd.ProcessState, tail(log, 2000))
		}
		var err error
		name, err = d.connectedCluster(ctx, "site", "demo")
		return err
	})
	if err != nil {
		return err
	}
	d.fleetCluster = name
	return d.writeClusterKubeconfig(ctx)
}
