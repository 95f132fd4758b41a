package machineregistration

import (
	"fmt"
	"sort"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Preview is what a machine sending data would get from a
// MachineRegistration's templates at its first registration: the
// MachineInventory's name, labels and annotations, and the warnings the
// registration server records as TemplateUnresolved Events.
type Preview struct {
	Name string `json:"name"`
	// NameFallback says why the name is random ("m-<uuid>") instead.
	NameFallback string            `json:"nameFallback,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Warnings     []string          `json:"warnings,omitempty"`
}

// PreviewRegistration renders mr's templates over data with the code the
// registration server runs (`edgefleet machine labels`). Random/… values
// are drawn anew on every call; a name taken by another machine gets a
// suffix at registration, which a preview cannot know.
func PreviewRegistration(mr *machinesv1.MachineRegistration, data map[string]string) Preview {
	var inv *Inventories
	labels, annotations, warnings := inv.renderMetadata(mr, nil, &machinereg.Inventory{Data: data})
	sort.Strings(warnings) // the server's order follows map iteration
	p := Preview{Labels: labels, Annotations: annotations, Warnings: warnings}
	name, err := renderName(mr, data)
	if err != nil {
		p.Name = "m-<random UUID>"
		p.NameFallback = fmt.Sprintf("%v: the machine gets a random name", err)
	} else {
		p.Name = name
	}
	return p
}
