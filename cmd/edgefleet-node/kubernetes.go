package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgefleet/edgefleet/internal/node/kubedistro"
	wire "github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// newKubernetesCommand is `edgefleet-node kubernetes`: the built-in
// edgefleet Kubernetes distribution on this machine (docs/kubernetes-distro.md).
func newKubernetesCommand() *cobra.Command {
	var root, config string
	cmd := &cobra.Command{
		Use:   "kubernetes",
		Short: "Run this machine's part of an edgefleet-distribution Kubernetes cluster",
	}
	cmd.PersistentFlags().StringVar(&root, "root", os.Getenv(kubedistro.RootEnv), "folder all paths live under (default $"+kubedistro.RootEnv+" or /)")
	cmd.PersistentFlags().StringVar(&config, "config", wire.ConfigPath, "the NodeConfig (a path on the machine, resolved under --root)")
	logger := func() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }
	var wait time.Duration
	up := &cobra.Command{
		Use:   "up",
		Short: "Install and (re)start the node's Kubernetes; wait until the kubelet (and a server's API) is healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return kubedistro.Up(cmd.Context(), kubedistro.Options{Root: root, ConfigPath: config, Wait: wait, Log: logger()})
		},
	}
	up.Flags().DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for health")
	var leave bool
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the node's Kubernetes components and its pods",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return kubedistro.DownWith(cmd.Context(), root, leave) },
	}
	down.Flags().BoolVar(&leave, "leave-etcd", false, "a server first leaves the cluster's etcd and deletes its etcd data (scale-down)")
	cmd.AddCommand(up, &cobra.Command{
		Use:    "run",
		Short:  "The long-running supervisor `up` starts (detached)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return kubedistro.Run(cmd.Context(), root, config, logger())
		},
	}, down, &cobra.Command{
		Use:   "remove-etcd-members PEER_URL...",
		Short: "Remove dead servers' members (https://ip:2380) from the cluster's etcd through this running server",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, peers []string) error {
			return kubedistro.RemoveEtcdMembers(cmd.Context(), root, peers, cmd.OutOrStdout())
		},
	}, &cobra.Command{
		Use:   "status",
		Short: "Print what runs: the supervisor and each component",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return kubedistro.Status(root, cmd.OutOrStdout()) },
	})
	return cmd
}
