package machineregistration

import "testing"

// SMBIOS placeholders must not link a BMC to every machine that carries
// them.
func TestSystemFact(t *testing.T) {
	for in, want := range map[string]string{
		"  VM7 ":                               "VM7",
		"To Be Filled By O.E.M.":               "",
		"Not Specified":                        "",
		"Default string":                       "",
		"00000000-0000-0000-0000-000000000000": "",
		"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF": "",
		"4C4C4544-0042-3510-8052-B4C04F4D4232": "4C4C4544-0042-3510-8052-B4C04F4D4232",
		string(make([]byte, 300)):              "",
		"\xff\xfe":                             "",
	} {
		if got := systemFact(in); got != want {
			t.Errorf("systemFact(%q) = %q, want %q", in, got, want)
		}
	}
}
