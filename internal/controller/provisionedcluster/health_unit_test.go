package provisionedcluster_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/edgefleet/edgefleet/internal/controller/provisionedcluster"
)

func TestMaxUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		value   string
		total   int
		want    int
		wantErr bool
	}{
		{"40%", 1, 1, false}, // rounded up: a pool of one can be remediated
		{"40%", 2, 1, false}, // a two-machine site that goes dark is not
		{"40%", 3, 2, false},
		{"40%", 5, 2, false},
		{"100%", 4, 4, false},
		{"0%", 4, 0, false},
		{"1", 10, 1, false},
		{"0", 10, 0, false},
		{"forty", 3, 0, true},
	} {
		got, err := provisionedcluster.MaxUnhealthy(intstr.Parse(tc.value), tc.total)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("MaxUnhealthy(%s, %d) = %d, %v; want %d (error %v)", tc.value, tc.total, got, err, tc.want, tc.wantErr)
		}
	}
}
