package kubenames

import (
	"strings"
	"testing"
)

func TestValidateLabel(t *testing.T) {
	tests := []struct {
		name, key, value string
		wantErr          string // substring; "" for valid
	}{
		{"plain", "env", "prod", ""},
		{"prefixed", "example.com/env", "prod", ""},
		{"empty value", "env", "", ""},
		{"space in key", "bad key", "v", `label key "bad key" is invalid`},
		{"empty key", "", "v", `label key "" is invalid`},
		{"two slashes", "a/b/c", "v", `label key "a/b/c" is invalid`},
		{"value too long", "env", strings.Repeat("x", 64), `label env="` + strings.Repeat("x", 64) + `" has an invalid value`},
		{"value with a slash", "env", "a/b", `has an invalid value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateLabel(tt.key, tt.value)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ValidateLabel(%q, %q) = %v, want nil", tt.key, tt.value, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ValidateLabel(%q, %q) = %v, want %q", tt.key, tt.value, err, tt.wantErr)
			}
			if keyErr := ValidateLabelKey(tt.key); (keyErr != nil) != strings.Contains(tt.wantErr, "label key") {
				t.Errorf("ValidateLabelKey(%q) = %v", tt.key, keyErr)
			}
		})
	}
}
