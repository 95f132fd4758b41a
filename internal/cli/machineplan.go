package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/server"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

const defaultMachineNamespace = "fleet-default"

func newMachineCommand(_ *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "machine", Short: "Manage registered machines (MachineInventories)"}
	plan := &cobra.Command{Use: "plan", Short: "Set and inspect the plan a machine's node agent applies (docs/spec/plan.md)"}
	plan.AddCommand(newMachinePlanApplyCommand(), newMachinePlanStatusCommand())
	cmd.AddCommand(plan, newMachineLabelsCommand())
	return cmd
}

// machineFlags are the flags every machine command shares.
type machineFlags struct {
	kubeconfig, context, namespace string
}

func (m *machineFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.kubeconfig, "kubeconfig", "", "kubeconfig of the edgefleet API (default $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&m.context, "context", "", "kubeconfig context to use")
	cmd.Flags().StringVarP(&m.namespace, "namespace", "n", defaultMachineNamespace, "namespace of the MachineInventory")
}

func (m *machineFlags) client() (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = m.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: m.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w (pass --kubeconfig <data-dir>/kubeconfig)", err)
	}
	return client.New(cfg, client.Options{Scheme: server.Scheme()})
}

func newMachinePlanApplyCommand() *cobra.Command {
	var m machineFlags
	var file string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "apply INVENTORY -f PLAN",
		Short: "Validate a plan and make it the machine's plan",
		Long: `Read a plan (YAML or JSON, rancher-system-agent's format: files,
instructions, periodicInstructions, probes; docs/spec/plan.md), validate it
as the node agent will, and write it into the machine's plan Secret. Nothing
is written when the plan is invalid. With --wait, wait until the machine
reports the plan applied or failed.`,
		Example: `  edgefleet machine plan apply m-4c4c4544 -n fleet-default -f plan.yaml --wait 5m`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readPlanFile(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, err := m.client()
			if err != nil {
				return err
			}
			sum, err := applyMachinePlan(cmd.Context(), c, client.ObjectKey{Namespace: m.namespace, Name: args[0]}, raw)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "plan %s written to MachineInventory %s/%s\n", sum[:12], m.namespace, args[0])
			if wait <= 0 {
				return nil
			}
			inv, err := waitMachinePlan(cmd.Context(), c, client.ObjectKey{Namespace: m.namespace, Name: args[0]}, sum, wait)
			if err != nil {
				return err
			}
			if inv.Status.Plan.State == machinesv1.PlanFailed {
				printPlanStatus(cmd.OutOrStdout(), inv)
				return fmt.Errorf("plan %s failed on the machine", sum[:12])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "plan %s applied\n", sum[:12])
			return nil
		},
	}
	m.add(cmd)
	cmd.Flags().StringVarP(&file, "filename", "f", "", "plan file (YAML or JSON; - for stdin)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the machine to report the plan applied or failed")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// readPlanFile reads a YAML or JSON plan and returns it as validated JSON.
func readPlanFile(file string, stdin io.Reader) ([]byte, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, nodeplan.MaxPlanBytes+1))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the plan: %w", err)
	}
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not YAML or JSON: %w", file, err)
	}
	if _, err := nodeplan.Parse(raw); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return raw, nil
}

// applyMachinePlan writes raw into the inventory's plan Secret, which must
// be the one the manager made for it.
func applyMachinePlan(ctx context.Context, c client.Client, key client.ObjectKey, raw []byte) (string, error) {
	var inv machinesv1.MachineInventory
	if err := c.Get(ctx, key, &inv); err != nil {
		return "", fmt.Errorf("reading MachineInventory %s: %w (list them with kubectl get machineinventories -A)", key, err)
	}
	var s corev1.Secret
	name := machineregistration.PlanName(&inv)
	if err := c.Get(ctx, client.ObjectKey{Namespace: inv.Namespace, Name: name}, &s); err != nil {
		return "", fmt.Errorf("reading the plan Secret %s/%s: %w (it is created when the machine registers)", inv.Namespace, name, err)
	}
	if !metav1.IsControlledBy(&s, &inv) {
		return "", fmt.Errorf("Secret %s/%s does not belong to MachineInventory %s; the machine would not read it: see the inventory's Ready condition", inv.Namespace, name, inv.Name)
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[nodeplan.SecretKey] = raw
	if err := c.Update(ctx, &s); err != nil {
		return "", fmt.Errorf("writing the plan Secret: %w", err)
	}
	return nodeplan.Checksum(raw), nil
}

// waitMachinePlan polls until the inventory reports plan sum Applied or
// Failed.
func waitMachinePlan(ctx context.Context, c client.Client, key client.ObjectKey, sum string, timeout time.Duration) (*machinesv1.MachineInventory, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var inv machinesv1.MachineInventory
		if err := c.Get(ctx, key, &inv); err != nil {
			return nil, err
		}
		p := inv.Status.Plan
		if p.Checksum == sum && (p.State == machinesv1.PlanApplied || p.State == machinesv1.PlanFailed) {
			return &inv, nil
		}
		select {
		case <-ctx.Done():
			msg := "the machine has not reported it yet"
			if c := meta.FindStatusCondition(inv.Status.Conditions, machinesv1.PlanAppliedCondition); c != nil {
				msg = c.Message
			}
			return nil, fmt.Errorf("plan %s not applied after %s: %s (is the machine's edgefleet-node agent running?)", sum[:12], timeout, msg)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func newMachinePlanStatusCommand() *cobra.Command {
	var m machineFlags
	cmd := &cobra.Command{
		Use:   "status INVENTORY",
		Short: "Show the state of a machine's plan: instructions, periodic instructions, probes, failure",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := m.client()
			if err != nil {
				return err
			}
			var inv machinesv1.MachineInventory
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: m.namespace, Name: args[0]}, &inv); err != nil {
				return fmt.Errorf("reading MachineInventory %s/%s: %w", m.namespace, args[0], err)
			}
			printPlanStatus(cmd.OutOrStdout(), &inv)
			return nil
		},
	}
	m.add(cmd)
	return cmd
}

// printPlanStatus writes the plan's state as tables for people.
func printPlanStatus(out io.Writer, inv *machinesv1.MachineInventory) {
	p := inv.Status.Plan
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	state := string(p.State)
	if state == "" {
		state = "-"
	}
	fmt.Fprintf(w, "MachineInventory:\t%s/%s\n", inv.Namespace, inv.Name)
	fmt.Fprintf(w, "Plan:\t%s\t%s\n", short(p.Checksum), state)
	fmt.Fprintf(w, "Applied:\t%s\t%s\n", short(p.AppliedChecksum), ago(p.LastAppliedTime))
	for _, t := range []string{machinesv1.PlanAppliedCondition, machinesv1.ReadyCondition} {
		if c := meta.FindStatusCondition(inv.Status.Conditions, t); c != nil {
			fmt.Fprintf(w, "%s:\t%s\t%s: %s\n", t, c.Status, c.Reason, c.Message)
		}
	}
	if f := p.Failure; f != nil && p.State == machinesv1.PlanFailed {
		fmt.Fprintf(w, "Failed:\tinstruction %q, exit code %d, attempt %d, retry %s\n", f.Instruction, f.ExitCode, p.Attempts, ago(p.NextRetryTime))
		fmt.Fprintf(w, "\t%s\n", f.Message)
		for _, line := range strings.Split(strings.TrimRight(f.Output, "\n"), "\n") {
			if line != "" {
				fmt.Fprintf(w, "\t| %s\n", line)
			}
		}
	}
	if len(p.Instructions) > 0 {
		fmt.Fprintln(w, "\nINSTRUCTION\tEXIT\tDURATION\tFINISHED")
		for _, in := range p.Instructions {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", in.Name, in.ExitCode, (time.Duration(in.DurationMilliseconds) * time.Millisecond).String(), ago(in.FinishedTime))
		}
	}
	if len(p.PeriodicInstructions) > 0 {
		fmt.Fprintln(w, "\nPERIODIC\tEXIT\tFAILURES\tLAST RUN\tLAST SUCCESS")
		for _, in := range p.PeriodicInstructions {
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\n", in.Name, in.ExitCode, in.Failures, ago(in.LastRunTime), ago(in.LastSuccessTime))
		}
	}
	if len(p.Probes) > 0 {
		fmt.Fprintln(w, "\nPROBE\tHEALTHY\tSUCCESSES\tFAILURES\tLAST ERROR")
		for _, pr := range p.Probes {
			fmt.Fprintf(w, "%s\t%v\t%d\t%d\t%s\n", pr.Name, pr.Healthy, pr.SuccessCount, pr.FailureCount, pr.LastError)
		}
	}
}

func short(sum string) string {
	if sum == "" {
		return "-"
	}
	return sum[:min(12, len(sum))]
}

func ago(t *metav1.Time) string {
	if t == nil {
		return "-"
	}
	d := time.Since(t.Time).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}
