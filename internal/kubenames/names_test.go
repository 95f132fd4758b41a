package kubenames

import (
	"strings"
	"testing"
)

func TestShorten(t *testing.T) {
	tests := []struct {
		name, in, suffix, cutset string
		max                      int
		want                     string
	}{
		{"fits", "abc", "1234", "-", 63, "abc-1234"},
		{"cut to fit", strings.Repeat("a", 70), "1234", "-", 20, strings.Repeat("a", 15) + "-1234"},
		{"cut end trimmed", strings.Repeat("a", 10) + "-----" + strings.Repeat("b", 10), "1234", "-", 20, strings.Repeat("a", 10) + "-1234"},
		{"several cut characters", "abc.-_.xyz", "12", "-_.", 7, "abc-12"},
		{"nothing left", "-----", "12", "-", 5, "-12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Shorten(tt.in, tt.max, tt.suffix, tt.cutset)
			if got != tt.want {
				t.Errorf("Shorten(%q, %d, %q, %q) = %q, want %q", tt.in, tt.max, tt.suffix, tt.cutset, got, tt.want)
			}
			if len(got) > tt.max {
				t.Errorf("Shorten = %q is longer than %d", got, tt.max)
			}
		})
	}
}

func TestHashHex(t *testing.T) {
	// sha256("") = e3b0c442...
	if got := HashHex("", 8); got != "e3b0c442" {
		t.Errorf("HashHex(\"\", 8) = %q", got)
	}
	if HashHex("a", 10) == HashHex("b", 10) || len(HashHex("a", 24)) != 24 {
		t.Error("HashHex does not tell inputs apart or has the wrong length")
	}
}
