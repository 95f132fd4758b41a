// Package devcluster runs a local, API-only Kubernetes cluster — real etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, with kwok fake
// nodes so Deployments become Available without a kubelet. kwok also serves
// the nodes' kubelet API, so with KubeletAPI set kubectl logs, exec, attach
// and port-forward work against host files, commands and addresses. Users try
// edgefleet with it, and the test harness starts its downstream clusters with it.
package devcluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"

	"github.com/edgefleet/edgefleet/internal/controlplane"
	"github.com/edgefleet/edgefleet/internal/datadir"
)

// Options describe a dev cluster.
type Options struct {
	DataDir    string
	KubeBinDir string
	// Nodes is the number of kwok fake nodes; 0 runs an API-only cluster with
	// no controller-manager, scheduler or kwok (fastest, for tests that only
	// need an API server).
	Nodes         int
	APIServerPort int
	UnsafeNoFsync bool
	// KubeletAPI says what `kubectl logs`, `exec`, `attach` and
	// `port-forward` do for pods on the fake nodes. Without it they reach
	// kwok and fail with "no logs/exec/forward found".
	KubeletAPI *KubeletAPI
	Log        logr.Logger
}

// Cluster is a running dev cluster.
type Cluster struct {
	controlplane.Executor
	dir *datadir.Dir
}

// Start starts the cluster and returns when its API server is ready and its
// fake nodes (if any) are Ready.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.KubeletAPI != nil && o.Nodes <= 0 {
		return nil, errors.New("the kubelet API needs fake nodes: set Nodes > 0")
	}
	if err := o.KubeletAPI.validate(); err != nil {
		return nil, err
	}
	dir, err := datadir.Open(o.DataDir)
	if err != nil {
		return nil, err
	}
	binDir, err := controlplane.FindBinDir(o.KubeBinDir)
	if err != nil {
		dir.Close()
		return nil, err
	}
	full := o.Nodes > 0
	cp, err := controlplane.New(controlplane.Config{
		DataDir:       dir.Path,
		BinDir:        binDir,
		APIServerPort: o.APIServerPort,
		Components:    controlplane.Components{ControllerManager: full, Scheduler: full, KwokNodes: o.Nodes, KwokConfig: o.KubeletAPI.kwokConfig()},
		UnsafeNoFsync: o.UnsafeNoFsync,
		Log:           o.Log,
	})
	if err != nil {
		dir.Close()
		return nil, err
	}
	if err := cp.Start(ctx); err != nil {
		dir.Close()
		return nil, fmt.Errorf("starting dev cluster: %w", err)
	}
	return &Cluster{Executor: cp, dir: dir}, nil
}

// Stop stops every component and releases the data dir.
func (c *Cluster) Stop() {
	c.Executor.Stop()
	c.dir.Close()
}
