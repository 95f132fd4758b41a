package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/devcluster"
)

func newDevClusterCommand(g *globals) *cobra.Command {
	o := devcluster.Options{}
	cmd := &cobra.Command{
		Use:   "dev-cluster",
		Short: "Run a local API-only Kubernetes cluster with fake nodes",
		Long: `Run a local Kubernetes cluster for trying edgefleet without hardware: real
etcd, kube-apiserver, kube-controller-manager and kube-scheduler, with kwok
fake nodes on which pods become Ready without a kubelet. It writes
<data-dir>/kubeconfig and runs until interrupted, then stops every component.`,
		Example: `  edgefleet dev-cluster --data-dir ./downstream-1
  kubectl --kubeconfig ./downstream-1/kubeconfig get nodes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.DataDir == "" {
				return fmt.Errorf("--data-dir is required")
			}
			o.Log = g.log
			c, err := devcluster.Start(cmd.Context(), o)
			if err != nil {
				return ignoreCanceled(err)
			}
			defer c.Stop()
			fmt.Fprintf(cmd.OutOrStdout(), "dev cluster is running\n  kubeconfig: %s\n  API server: %s\n", c.KubeconfigPath(), c.RESTConfig().Host)
			select {
			case <-cmd.Context().Done():
				return nil
			case err := <-c.Failed():
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", "", "directory for the cluster's state (required)")
	f.StringVar(&o.KubeBinDir, "kube-bin-dir", "", "folder with the Kubernetes binaries (default $EDGEFLEET_KUBE_BIN_DIR, then beside this binary, then PATH)")
	f.IntVar(&o.Nodes, "nodes", 1, "number of kwok fake nodes (0: API server and etcd only)")
	f.IntVar(&o.APIServerPort, "apiserver-port", 0, "API server port on 127.0.0.1 (default: the previous one, or a free one)")
	f.BoolVar(&o.UnsafeNoFsync, "unsafe-no-fsync", false, "run etcd without fsync (tests only)")
	_ = f.MarkHidden("unsafe-no-fsync")
	return cmd
}
