package machineregistration

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	data := map[string]string{"System Information/Manufacturer": "Acme Corp.", "CPU/TotalCores": "8", "Empty": " "}
	tests := []struct {
		tmpl, want, wantErr string
	}{
		{"${System Information/Manufacturer}", "Acme Corp.", ""},
		{"m-${CPU/TotalCores}-cores", "m-8-cores", ""},
		{"plain", "plain", ""},
		{"${System Information/Nope}", "", `"${System Information/Nope}"`},
		{"${Empty}", "", "no value"},
		{"${Random/Hex/40}", "", "no value"},
	}
	for _, tc := range tests {
		got, err := render(tc.tmpl, data)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("render(%q) error %v, want %q", tc.tmpl, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("render(%q) = %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
	for _, tmpl := range []string{"${Random/UUID}", "${Random/Hex/8}", "${Random/Int/100}"} {
		a, err := render(tmpl, nil)
		b, _ := render(tmpl, nil)
		if err != nil || a == "" || !hasRandom(tmpl) {
			t.Errorf("render(%q) = %q, %v", tmpl, a, err)
		}
		if tmpl != "${Random/Int/100}" && a == b {
			t.Errorf("%s rendered the same value twice", tmpl)
		}
	}
	if v, _ := render("${Random/Hex/8}", nil); len(v) != 8 {
		t.Errorf("Random/Hex/8 = %q", v)
	}
}

func TestSanitize(t *testing.T) {
	labels := map[string]string{
		"Acme Corp.":            "Acme-Corp",
		"_x_":                   "x",
		"ok.value-1":            "ok.value-1",
		"ünïcode":               "n-code",
		strings.Repeat("a", 70): strings.Repeat("a", 58),
		"///":                   "",
	}
	for in, want := range labels {
		if got := sanitizeLabelValue(in); got != want {
			t.Errorf("sanitizeLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
	names := map[string]string{
		"Acme Corp.-6B29": "acme-corp.6b29",
		"m-UUID":          "m-uuid",
		"..--":            "",
		// Cut with a hash of the whole name, so long names stay distinct.
		strings.Repeat("B", 80): strings.Repeat("b", 49) + "-18766a15",
	}
	for in, want := range names {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}
