package seedimage

import (
	"strings"
	"testing"
)

func TestIsOCIReference(t *testing.T) {
	for ref, want := range map[string]bool{
		"oci://registry.example/os/iso:1":                         true,
		"registry.example/os/iso:1":                               true,
		"registry.example:5000/os/iso":                            true,
		"127.0.0.1:5000/os/iso@sha256:" + strings.Repeat("a", 64): true,
		"localhost/os/iso:1":                                      true,
		"/srv/images/os.iso":                                      false,
		"https://images.example/os.iso":                           false,
		"os.iso":                                                  false,
		"images/os.iso":                                           false,
		"./images/os.iso":                                         false,
		"registry.example/":                                       false,
		"registry.example/UPPER/case:1":                           false,
	} {
		if got := isOCIReference(ref); got != want {
			t.Errorf("isOCIReference(%q) = %v, want %v", ref, got, want)
		}
	}
}
