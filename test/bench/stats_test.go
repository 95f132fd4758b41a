package bench

import (
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/test/harness"
)

// quantile is the q-quantile (0..1) of d by the nearest-rank method; d is
// not modified.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ms formats a duration in milliseconds with enough digits for sub-ms
// figures, or in seconds from 10 s.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v >= 10000 {
		return fmt.Sprintf("%.1f s", v/1000)
	}
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// startQuietManager runs the manager at info level: the harness's debug
// logging would put one line per request into the test's memory.
func startQuietManager(t *testing.T, args ...string) *harness.Manager {
	t.Helper()
	return harness.StartManager(t, harness.ManagerOptions{Args: append([]string{"--log-level", "info"}, args...)})
}

// managerCA is the PEM the manager serves at /cacerts (pinned by the harness).
func managerCA(t *testing.T, m *harness.Manager) []byte {
	t.Helper()
	resp, err := m.HTTP.Get(m.URL + "/cacerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pem, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return pem
}
