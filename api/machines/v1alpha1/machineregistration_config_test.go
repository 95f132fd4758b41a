package v1alpha1

import (
	"strings"
	"testing"
)

// TestNormalized: an Elemental registration (config.elemental.*) and an
// edgefleet one (config.*) give the same config; both spellings set and
// different is refused naming the section.
func TestNormalized(t *testing.T) {
	install := &InstallConfig{Device: "/dev/vda", SystemURI: "oci:r/os:v1"}
	reg := &RegistrationConfig{Auth: AuthTPM}
	reset := &ResetConfig{Enabled: true}
	tests := []struct {
		name    string
		in      MachineRegistrationConfig
		want    MachineRegistrationConfig
		wantErr string
	}{
		{"edgefleet layout", MachineRegistrationConfig{Install: install, Registration: reg}, MachineRegistrationConfig{Install: install, Registration: reg}, ""},
		{"elemental layout", MachineRegistrationConfig{Elemental: &ElementalConfig{Install: install, Registration: reg, Reset: reset, SystemAgent: &SystemAgentConfig{URL: "https://rancher"}}},
			MachineRegistrationConfig{Install: install, Registration: reg, Reset: reset}, ""},
		{"both, equal", MachineRegistrationConfig{Install: install, Elemental: &ElementalConfig{Install: install.DeepCopy()}}, MachineRegistrationConfig{Install: install}, ""},
		{"mixed sections", MachineRegistrationConfig{Install: install, Elemental: &ElementalConfig{Reset: reset}}, MachineRegistrationConfig{Install: install, Reset: reset}, ""},
		{"both, different", MachineRegistrationConfig{Install: install, Reset: &ResetConfig{}, Elemental: &ElementalConfig{Install: &InstallConfig{Device: "/dev/sda"}, Reset: reset}}, MachineRegistrationConfig{},
			"config.install and config.elemental.install, config.reset and config.elemental.reset are both set and differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.Normalized()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Elemental != nil || got.Install.Device != wantDevice(tt.want) || (got.Reset == nil) != (tt.want.Reset == nil) || (got.Registration == nil) != (tt.want.Registration == nil) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func wantDevice(c MachineRegistrationConfig) string {
	if c.Install == nil {
		return ""
	}
	return c.Install.Device
}
