package machinereg

// The registration's settings the node reads (Config.Install, Config.Reset,
// ReprovisionError.Reset). They mirror machines.edgefleet.io/v1alpha1
// InstallConfig, ResetConfig and DeviceSelectorRequirement with the same
// JSON names (Elemental's; a test checks the API's JSON decodes strictly
// into them), so the node binary does not link apimachinery.

// InstallConfig is a MachineRegistration's config.elemental.install.
type InstallConfig struct {
	Device           string                      `json:"device,omitempty"`
	DeviceSelector   []DeviceSelectorRequirement `json:"device-selector,omitempty"`
	Reboot           bool                        `json:"reboot,omitempty"`
	PowerOff         bool                        `json:"poweroff,omitempty"`
	SystemURI        string                      `json:"system-uri,omitempty"`
	ISO              string                      `json:"iso,omitempty"`
	ConfigURLs       []string                    `json:"config-urls,omitempty"`
	Debug            bool                        `json:"debug,omitempty"`
	TTY              string                      `json:"tty,omitempty"`
	NoFormat         bool                        `json:"no-format,omitempty"`
	EjectCD          bool                        `json:"eject-cd,omitempty"`
	DisableBootEntry bool                        `json:"disable-boot-entry,omitempty"`
	Firmware         string                      `json:"firmware,omitempty"`
	ConfigDir        string                      `json:"config-dir,omitempty"`
	Snapshotter      *Snapshotter                `json:"snapshotter,omitempty"`
}

// Snapshotter is install.snapshotter (accepted for Elemental
// compatibility).
type Snapshotter struct {
	Type     string `json:"type,omitempty"`
	MaxSnaps int32  `json:"maxSnaps,omitempty"`
}

// DeviceSelectorRequirement picks the install disk: Key Name or Size,
// Operator In, NotIn, Gt or Lt.
type DeviceSelectorRequirement struct {
	Key      string   `json:"key,omitempty"`
	Operator string   `json:"operator,omitempty"`
	Values   []string `json:"values,omitempty"`
}

// ResetConfig is a MachineRegistration's config.elemental.reset.
type ResetConfig struct {
	Enabled          bool     `json:"enabled,omitempty"`
	ResetPersistent  *bool    `json:"reset-persistent,omitempty"`
	ResetOEM         *bool    `json:"reset-oem,omitempty"`
	Reboot           *bool    `json:"reboot,omitempty"`
	PowerOff         bool     `json:"poweroff,omitempty"`
	ConfigURLs       []string `json:"config-urls,omitempty"`
	SystemURI        string   `json:"system-uri,omitempty"`
	Debug            bool     `json:"debug,omitempty"`
	DisableBootEntry bool     `json:"disable-boot-entry,omitempty"`
}

// Defaults fills in reset-persistent, reset-oem and reboot (true), as the
// API's ResetConfig.Defaults does.
func (r ResetConfig) Defaults() ResetConfig {
	for _, p := range []**bool{&r.ResetPersistent, &r.ResetOEM, &r.Reboot} {
		if *p == nil {
			t := true
			*p = &t
		}
	}
	return r
}
