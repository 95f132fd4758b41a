package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
)

func newMachineLabelsCommand() *cobra.Command {
	var regFile, smbiosFile, output string
	var set []string
	cmd := &cobra.Command{
		Use:   "labels --registration FILE --smbios FILE",
		Short: "Preview the name and labels a machine gets from a MachineRegistration",
		Long: `Render a MachineRegistration's machineName, machineInventoryLabels and
machineInventoryAnnotations for one machine, with the code the registration
server runs, and print the MachineInventory name, labels, annotations and the
warnings registration would record (TemplateUnresolved Events).

The machine is described by the text output of dmidecode (run 'sudo
dmidecode > machine.txt' on it, or read it from a BMC). It becomes the data
the machine's node agent sends: the SMBIOS fields it reads from
/sys/class/dmi/id (UUID in lower case, chassis type as its number, no value
for "Not Specified"), CPU/... from the populated processors,
Memory/Total Physical Bytes from the memory devices, Runtime/OS linux and
Runtime/Arch amd64. Disks, NICs and the host name are not in a dmidecode
dump: give them, or override any value, with --set KEY=VALUE. Random/...
templates draw new values on every run. Nothing is sent anywhere.`,
		Example: `  sudo dmidecode > r640.txt
  edgefleet machine labels --registration registration.yaml --smbios r640.txt
  edgefleet machine labels --registration registration.yaml --smbios - --set 'Storage/Disks/0/Name=nvme0n1' < r640.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if regFile == "" || smbiosFile == "" {
				return errors.New("--registration and --smbios are required")
			}
			if output != "yaml" && output != "json" {
				return fmt.Errorf("--output %q: use yaml or json", output)
			}
			mr, err := readRegistrationFile(regFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			data, err := readDMIDecodeFile(smbiosFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			for _, kv := range set {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || strings.TrimSpace(k) == "" {
					return fmt.Errorf("--set %q: want KEY=VALUE, e.g. 'Storage/Disks/0/Name=sda'", kv)
				}
				data[strings.TrimSpace(k)] = v
			}
			p := machineregistration.PreviewRegistration(mr, data)
			var out []byte
			if output == "json" {
				out, err = json.MarshalIndent(p, "", "  ")
				out = append(out, '\n')
			} else {
				out, err = previewYAML(p)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&regFile, "registration", "", "MachineRegistration YAML or JSON file ('-' for stdin)")
	cmd.Flags().StringVar(&smbiosFile, "smbios", "", "text output of dmidecode ('-' for stdin)")
	cmd.Flags().StringArrayVar(&set, "set", nil, "KEY=VALUE: a machine value not in the dump (Storage/…, Network/…, Runtime/Hostname) or an override; repeatable")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "yaml or json")
	return cmd
}

// maxRegistrationFile bounds the registration file (objects in etcd are at
// most 1.5 MiB).
const maxRegistrationFile = 2 << 20

func readInput(name string, stdin io.Reader, limit int64) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s is larger than %d KiB", name, limit>>10)
	}
	return b, err
}

func readRegistrationFile(name string, stdin io.Reader) (*machinesv1.MachineRegistration, error) {
	b, err := readInput(name, stdin, maxRegistrationFile)
	if err != nil {
		return nil, fmt.Errorf("--registration: %w", err)
	}
	mr := &machinesv1.MachineRegistration{}
	if err := yaml.UnmarshalStrict(b, mr); err != nil {
		return nil, fmt.Errorf("--registration %s: not a MachineRegistration: %w", name, err)
	}
	if mr.Kind != "MachineRegistration" {
		return nil, fmt.Errorf("--registration %s: kind %q, want a MachineRegistration (one object, apiVersion %s)", name, mr.Kind, machinesv1.GroupVersion)
	}
	return mr, nil
}

func readDMIDecodeFile(name string, stdin io.Reader) (map[string]string, error) {
	b, err := readInput(name, stdin, machineregistration.MaxDMIDecodeBytes)
	if err != nil {
		return nil, fmt.Errorf("--smbios: %w", err)
	}
	recs, err := machineregistration.ParseDMIDecode(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("--smbios %s: %w", name, err)
	}
	return machineregistration.DMIDecodeData(recs), nil
}

// previewYAML writes the preview as YAML with the name first (yaml.Marshal
// of the struct would sort the keys).
func previewYAML(p machineregistration.Preview) ([]byte, error) {
	var out []byte
	for _, part := range []struct {
		key   string
		value any
		empty bool
	}{
		{"name", p.Name, false},
		{"nameFallback", p.NameFallback, p.NameFallback == ""},
		{"labels", p.Labels, len(p.Labels) == 0},
		{"annotations", p.Annotations, len(p.Annotations) == 0},
		{"warnings", p.Warnings, len(p.Warnings) == 0},
	} {
		if part.empty {
			continue
		}
		b, err := yaml.Marshal(map[string]any{part.key: part.value})
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}
