package machinereg

import (
	"strings"
	"testing"
)

func TestParseNodeConfig(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"minimal", "registration:\n  url: https://m:8443/v1/machines/register/abc\n", ""},
		{"fallbacks", "registration:\n  url: https://m/r\n  auth: tpm-or-fallback\n  fallback: [emulated-tpm, mac]\n", ""},
		{"http url", "registration:\n  url: http://m/r\n", "not an https URL"},
		{"no url", "registration: {}\n", "not an https URL"},
		{"bad auth", "registration:\n  url: https://m/r\n  auth: none\n", "registration.auth"},
		{"bad fallback", "registration:\n  url: https://m/r\n  fallback: [tpm]\n", "registration.fallback"},
		{"typo", "registration:\n  url: https://m/r\n  emulate-tmp: true\n", "unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNodeConfig([]byte(tc.in))
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
