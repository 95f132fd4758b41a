package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/provisioning/adopt"
)

func newClusterPreviewCommand() *cobra.Command {
	var m machineFlags
	var file string
	cmd := &cobra.Command{
		Use:   "preview -f CLUSTER.yaml",
		Short: "Show which machines a ProvisionedCluster's pools would adopt now",
		Long: `Read a ProvisionedCluster (docs/spec/provisionedcluster.md) and list, per
pool, the MachineInventories its machineSelector matches now: the ones the
pool holds already (when the cluster exists), the Ready free ones it would
adopt, the ones that match but are not Ready, the ones other clusters or
pools hold, and how many machines are missing. Nothing is written.`,
		Example: `  edgefleet cluster preview -f shop.yaml -n fleet-default --kubeconfig ./edgefleet-data/kubeconfig`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pc, err := readProvisionedCluster(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if pc.Namespace == "" {
				pc.Namespace = m.namespace
			}
			c, err := m.client()
			if err != nil {
				return err
			}
			var invs machinesv1.MachineInventoryList
			if err := c.List(cmd.Context(), &invs, client.InNamespace(pc.Namespace)); err != nil {
				return fmt.Errorf("listing MachineInventories in %s: %w", pc.Namespace, err)
			}
			return writePreview(cmd.OutOrStdout(), pc, invs.Items)
		},
	}
	m.add(cmd)
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the ProvisionedCluster (YAML or JSON; - for stdin)")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// readProvisionedCluster decodes one ProvisionedCluster strictly.
func readProvisionedCluster(file string, stdin io.Reader) (*provisioningv1.ProvisionedCluster, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	pc := &provisioningv1.ProvisionedCluster{}
	if err := yaml.UnmarshalStrict(data, pc); err != nil {
		return nil, fmt.Errorf("%s is not a ProvisionedCluster: %w", file, err)
	}
	if pc.Kind != "ProvisionedCluster" {
		return nil, fmt.Errorf("%s holds kind %q, want ProvisionedCluster (apiVersion %s)", file, pc.Kind, provisioningv1.GroupVersion)
	}
	if pc.Name == "" {
		return nil, fmt.Errorf("%s: metadata.name is empty", file)
	}
	return pc, nil
}

// writePreview prints each pool's match.
func writePreview(w io.Writer, pc *provisioningv1.ProvisionedCluster, invs []machinesv1.MachineInventory) error {
	pools, err := adopt.Pools(pc)
	if err != nil {
		return err
	}
	matches := adopt.Match(pc.Name, pools, invs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tSELECTOR\tWANT\tADOPTED\tAVAILABLE\tNOT-READY\tTAKEN\tMISSING")
	for _, m := range matches {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", m.Pool.Name, m.Pool.Selector, m.Pool.Replicas, len(m.Adopted), len(m.Available), len(m.NotReady), len(m.Taken), m.Missing())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range matches {
		fmt.Fprintf(w, "\n%s:\n", m.Pool.Name)
		list := func(what string, names []string) {
			if len(names) > 0 {
				fmt.Fprintf(w, "  %s: %s\n", what, strings.Join(names, ", "))
			}
		}
		list("adopted", m.Adopted)
		take, rest := m.WouldAdopt()
		list("would adopt", take)
		list("also available", rest)
		list("not Ready", m.NotReady)
		var taken []string
		for _, name := range slices.Sorted(mapKeys(m.Taken)) {
			taken = append(taken, name+" ("+m.Taken[name]+")")
		}
		list("taken", taken)
		if msg := m.Message(); msg != "" {
			fmt.Fprintf(w, "  missing: %s\n", msg)
		}
	}
	return nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func newClusterDescribeCommand() *cobra.Command {
	var m machineFlags
	cmd := &cobra.Command{
		Use:     "describe NAME",
		Short:   "Show a ProvisionedCluster, its pools and machines as a tree (like clusterctl describe)",
		Example: `  edgefleet cluster describe shop -n fleet-default --kubeconfig ./edgefleet-data/kubeconfig`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			pc, cms, err := loadDescribe(cmd.Context(), c, client.ObjectKey{Namespace: m.namespace, Name: args[0]})
			if err != nil {
				return err
			}
			return writeDescribe(cmd.OutOrStdout(), pc, cms, time.Now())
		},
	}
	m.add(cmd)
	return cmd
}

func loadDescribe(ctx context.Context, c client.Client, key client.ObjectKey) (*provisioningv1.ProvisionedCluster, []provisioningv1.ClusterMachine, error) {
	pc := &provisioningv1.ProvisionedCluster{}
	if err := c.Get(ctx, key, pc); err != nil {
		return nil, nil, fmt.Errorf("reading ProvisionedCluster %s: %w", key, err)
	}
	var cms provisioningv1.ClusterMachineList
	if err := c.List(ctx, &cms, client.InNamespace(key.Namespace), client.MatchingLabels{provisioningv1.ClusterLabel: key.Name}); err != nil {
		return nil, nil, err
	}
	return pc, cms.Items, nil
}

// writeDescribe prints clusterctl describe's tree: the cluster, its
// condition summary, each pool and its machines with their conditions.
func writeDescribe(w io.Writer, pc *provisioningv1.ProvisionedCluster, cms []provisioningv1.ClusterMachine, now time.Time) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREADY\tREASON\tSINCE\tMESSAGE")
	row := func(prefix, name string, conds []metav1.Condition, typ string) {
		c := meta.FindStatusCondition(conds, typ)
		if c == nil {
			fmt.Fprintf(tw, "%s%s\t-\t\t\t\n", prefix, name)
			return
		}
		since := now.Sub(c.LastTransitionTime.Time).Truncate(time.Second)
		msg := c.Message
		if c.Status == metav1.ConditionTrue {
			msg = ""
		}
		if len(msg) > 120 {
			msg = msg[:117] + "..."
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", prefix, name, c.Status, c.Reason, since, msg)
	}
	row("", "ProvisionedCluster/"+pc.Name, pc.Status.Conditions, provisioningv1.ReadyCondition)
	fleet := "-"
	if pc.Status.FleetClusterRef != nil {
		fleet = "Cluster/" + pc.Status.FleetClusterRef.Name
	}
	row("├─", "FleetJoined "+fleet, pc.Status.Conditions, provisioningv1.FleetJoinedCondition)
	if meta.FindStatusCondition(pc.Status.Conditions, provisioningv1.RemediationAllowedCondition) != nil {
		row("├─", "RemediationAllowed", pc.Status.Conditions, provisioningv1.RemediationAllowedCondition)
	}
	type poolRow struct {
		name, cond string
		st         provisioningv1.PoolStatus
	}
	pools := []poolRow{{provisioningv1.ControlPlanePool, provisioningv1.ControlPlaneReadyCondition, pc.Status.ControlPlane}}
	for _, ws := range pc.Status.Workers {
		pools = append(pools, poolRow{ws.Name, provisioningv1.WorkersReadyCondition, ws})
	}
	slices.SortFunc(cms, func(a, b provisioningv1.ClusterMachine) int { return strings.Compare(a.Name, b.Name) })
	for i, p := range pools {
		last := i == len(pools)-1
		branch, indent := "├─", "│ "
		if last {
			branch, indent = "└─", "  "
		}
		label := fmt.Sprintf("Pool/%s %d/%d ready, %d updated, %d adopted", p.name, p.st.Ready, p.st.Replicas, p.st.Updated, p.st.Current)
		row(branch, label, pc.Status.Conditions, p.cond)
		var mine []provisioningv1.ClusterMachine
		for _, cm := range cms {
			if cm.Spec.Pool == p.name {
				mine = append(mine, cm)
			}
		}
		for j, cm := range mine {
			b2 := "├─"
			if j == len(mine)-1 {
				b2 = "└─"
			}
			name := fmt.Sprintf("ClusterMachine/%s %s %s", cm.Name, cm.Spec.Role, cmp(cm.Status.Version, "-"))
			if cm.Spec.Init {
				name += " (init)"
			}
			if r := cm.Status.Remediation; r != nil {
				name += " remediation:" + string(r.Phase)
			}
			row(indent+b2, name, cm.Status.Conditions, provisioningv1.ReadyCondition)
		}
		if p.st.Message != "" {
			fmt.Fprintf(tw, "%s  (%s)\t\t\t\t\n", indent, p.st.Message)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
