package cli

import (
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/edgefleet/edgefleet/internal/demo"
)

func newDemoCommand() *cobra.Command {
	o := demo.Options{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "The whole story on this host: manager, machines, a formed cluster, GitOps and an OS upgrade",
		Long: `Start a manager on an embedded control plane and --machines machines
(edgefleet-node agents with emulated TPMs, each in its own network namespace),
register them through config-only seed media, form a Kubernetes cluster of
real kubelets from them by label (one server, the others workers), let it join
the fleet, deploy an app from a git repository the demo creates, and roll an
OS upgrade across the machines (simulated OS: no disk is written). Then print
what to open. Without --keep everything is removed at the end; with --keep it
runs until Ctrl-C, which removes everything (processes, network namespaces,
files). Network namespaces need root; without them (or with --no-netns) the
machines run on loopback and a dev cluster with fake nodes (kwok) stands in
for the formed cluster. See docs/demo.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			if f, ok := o.Out.(*os.File); ok {
				if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
					o.TTY = true
					if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
						o.Width = int(ws.Col)
					}
				}
			}
			return demo.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Machines, "machines", 3, "machines to start: one server, the others workers")
	f.StringVar(&o.DataDir, "data-dir", "", "folder for everything the demo writes (new or empty; removed at the end; default: a temporary folder)")
	f.BoolVar(&o.Keep, "keep", false, "keep everything running after the story until Ctrl-C")
	f.BoolVar(&o.NoNetns, "no-netns", false, "run the machines on loopback instead of network namespaces (a dev cluster with fake nodes stands in for the formed cluster)")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up when the story takes longer")
	f.StringVar(&o.KubeBinDir, "kube-bin-dir", "", "folder of the Kubernetes binaries (default: $EDGEFLEET_KUBE_BIN_DIR, the checkout's .cache/kube-bin-dir, or next to edgefleet)")
	return cmd
}
