package machineregistration

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Preview is what registration would give a machine with data: its
// inventory name, labels and annotations, and the templates it skipped.
type Preview struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	Warnings    []string
}

// PreviewMetadata renders mr's machineName, machineInventoryLabels and
// machineInventoryAnnotations over data exactly as registration does for a
// new machine (`edgefleet machine labels`).
func PreviewMetadata(mr *machinesv1.MachineRegistration, data map[string]string) Preview {
	labels, annotations, warnings := (&Inventories{}).renderMetadata(mr, nil, &machinereg.Inventory{Data: data})
	return Preview{Name: inventoryName(mr, data), Labels: labels, Annotations: annotations, Warnings: warnings}
}

// maxDmidecodeBytes bounds a dmidecode dump (a real one is a few tens of KiB).
const maxDmidecodeBytes = 4 << 20

// ParseDmidecode reads `dmidecode` text output into the template paths
// registration uses ("System Information/Manufacturer"): each structure's
// title line, then its tab-indented "Key: Value" lines. The first structure
// of a title wins (as the machine's own SMBIOS read keeps one value per
// path); list items (deeper indentation) and keys without a value are left
// out.
func ParseDmidecode(r io.Reader) (map[string]string, error) {
	data := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, maxDmidecodeBytes))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	section := ""
	seen := map[string]bool{}
	afterHandle := false
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "Handle 0x"):
			afterHandle, section = true, ""
		case afterHandle && line != "" && !strings.HasPrefix(line, "\t"):
			afterHandle = false
			section = strings.TrimSpace(line)
			if seen[section] {
				section = "" // a second structure of the same type: keep the first
			} else {
				seen[section] = true
			}
		case section != "" && strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t"):
			key, value, ok := strings.Cut(strings.TrimPrefix(line, "\t"), ":")
			if value = strings.TrimSpace(value); ok && value != "" {
				data[section+"/"+strings.TrimSpace(key)] = value
			}
		case line == "":
			section = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the dmidecode output: %w", err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("no SMBIOS structures found: pass the text output of `dmidecode` (not -t/-s/-u/--dump-bin)")
	}
	return data, nil
}
