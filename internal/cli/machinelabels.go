package cli

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
)

func newMachineLabelsCommand() *cobra.Command {
	var registration, smbios string
	cmd := &cobra.Command{
		Use:   "labels --registration FILE --smbios FILE",
		Short: "Print the name and labels a machine would get from a MachineRegistration",
		Long: `Render a MachineRegistration's machineName, machineInventoryLabels and
machineInventoryAnnotations over a machine's SMBIOS data, given as the text
output of dmidecode (what admins have at hand), exactly as registration does
for a new machine. Templates the dump cannot fill (CPU/…, Runtime/…, which
the node reads itself) are listed as skipped. Nothing is contacted.
Use it to check that a pool's machineSelector (edgefleet cluster preview)
will find the machines.`,
		Example: `  sudo dmidecode > r640.txt
  edgefleet machine labels --registration registration.yaml --smbios r640.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(registration)
			if err != nil {
				return err
			}
			mr := &machinesv1.MachineRegistration{}
			if err := yaml.UnmarshalStrict(data, mr); err != nil || mr.Kind != "MachineRegistration" {
				return fmt.Errorf("%s is not a MachineRegistration (kind %q): %v", registration, mr.Kind, err)
			}
			f, err := os.Open(smbios)
			if err != nil {
				return err
			}
			defer f.Close()
			smbiosData, err := machineregistration.ParseDmidecode(f)
			if err != nil {
				return fmt.Errorf("%s: %w", smbios, err)
			}
			writeLabelPreview(cmd.OutOrStdout(), cmd.ErrOrStderr(), machineregistration.PreviewMetadata(mr, smbiosData))
			return nil
		},
	}
	cmd.Flags().StringVar(&registration, "registration", "", "the MachineRegistration (YAML or JSON)")
	cmd.Flags().StringVar(&smbios, "smbios", "", "the machine's `dmidecode` text output")
	_ = cmd.MarkFlagRequired("registration")
	_ = cmd.MarkFlagRequired("smbios")
	return cmd
}

func writeLabelPreview(out, errOut io.Writer, p machineregistration.Preview) {
	fmt.Fprintf(out, "name: %s\nlabels:\n", p.Name)
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		fmt.Fprintf(out, "  %s: %q\n", k, p.Labels[k])
	}
	if len(p.Annotations) > 0 {
		fmt.Fprintln(out, "annotations:")
		for _, k := range slices.Sorted(maps.Keys(p.Annotations)) {
			fmt.Fprintf(out, "  %s: %q\n", k, p.Annotations[k])
		}
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(errOut, "warning:", w)
	}
}
