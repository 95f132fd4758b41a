package server

import "testing"

// The manager calls its own proxy where it listens, loopback for a
// wildcard listen address, whatever --external-url says.
func TestSelfURL(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:8443", "https://127.0.0.1:8443"},
		{"0.0.0.0:8443", "https://127.0.0.1:8443"},
		{":8443", "https://127.0.0.1:8443"},
		{"[::]:8443", "https://[::1]:8443"},
		{"10.0.0.5:443", "https://10.0.0.5:443"},
		{"[fd00::5]:443", "https://[fd00::5]:443"},
	} {
		if got := selfURL(tc.listen).String(); got != tc.want {
			t.Errorf("selfURL(%q) = %s, want %s", tc.listen, got, tc.want)
		}
	}
}
