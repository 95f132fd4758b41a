package server

import (
	"fmt"
	"strings"
	"testing"
)

func TestOwnAddresses(t *testing.T) {
	for _, tc := range []struct {
		listen, apiserver, want string
	}{
		{"127.0.0.1:8443", "https://127.0.0.1:6443", "[127.0.0.1:8443 127.0.0.1:6443]"},
		{"0.0.0.0:8443", "https://10.96.0.1", "[0.0.0.0:8443 10.96.0.1:443]"},
		{"[::]:8443", "https://no-such-host.invalid:443", "[[::]:8443]"},
		{"", "", "[]"},
	} {
		if got := fmt.Sprint(ownAddresses(tc.listen, tc.apiserver)); got != tc.want {
			t.Errorf("ownAddresses(%q, %q) = %s, want %s", tc.listen, tc.apiserver, got, tc.want)
		}
	}
	// A name counts by the addresses it resolves to.
	if got := fmt.Sprint(ownAddresses("", "https://localhost:6443")); !strings.Contains(got, "127.0.0.1:6443") {
		t.Errorf("apiserver at localhost: %s, want 127.0.0.1:6443 among them", got)
	}
}
