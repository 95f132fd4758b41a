package join

import (
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// A stored credential is reused when it belongs to this manager and is
// valid or renewable: an agent restarted after its site was dark for longer
// than the credential's life must not ask for a registration token.
func TestStoredCredentialUsable(t *testing.T) {
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	s := &store{server: "https://fleet.example:8443", caChecksum: "abc"}
	valid := clusterjoin.RegisterResponse{Token: "t", Expires: now.Add(time.Hour)}
	expired := clusterjoin.RegisterResponse{Token: "t", Expires: now.Add(-time.Hour)}
	expiredWithKey := expired
	expiredWithKey.RenewalKey = "k"
	for _, tc := range []struct {
		name string
		st   stored
		want bool
	}{
		{"valid", stored{Server: s.server, CAChecksum: "abc", Response: valid}, true},
		{"expired, renewal key", stored{Server: s.server, CAChecksum: "abc", Response: expiredWithKey}, true},
		{"expired, no renewal key (from an older manager)", stored{Server: s.server, CAChecksum: "abc", Response: expired}, false},
		{"another manager", stored{Server: "https://other:8443", CAChecksum: "abc", Response: valid}, false},
		{"another CA", stored{Server: s.server, CAChecksum: "def", Response: expiredWithKey}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.usable(tc.st, now); got != tc.want {
				t.Errorf("usable = %t, want %t", got, tc.want)
			}
		})
	}
}
