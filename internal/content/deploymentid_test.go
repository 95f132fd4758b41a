package content

import "testing"

func TestDeploymentID(t *testing.T) {
	hash := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name                  string
		id                    DeploymentID
		contents, opts, short string
	}{
		{"contents and options", NewDeploymentID("s-abc", hash), "s-abc", hash, "s-abc:0123456789ab"},
		{"a contents ID with a colon splits at the last", NewDeploymentID("a:b", hash), "a:b", hash, "a:b:0123456789ab"},
		{"no options hash", "s-abc", "s-abc", "", "s-abc"},
		{"short options hash", "s-abc:12", "s-abc", "12", "s-abc:12"},
		{"empty", "", "", "", ""},
		{"empty contents", ":" + DeploymentID(hash), "", hash, ":0123456789ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.id.ContentsID(); got != tt.contents {
				t.Errorf("ContentsID() = %q, want %q", got, tt.contents)
			}
			if got := tt.id.OptionsHash(); got != tt.opts {
				t.Errorf("OptionsHash() = %q, want %q", got, tt.opts)
			}
			if got := tt.id.Short(); got != tt.short {
				t.Errorf("Short() = %q, want %q", got, tt.short)
			}
		})
	}
}
