package kubedistro

import (
	"os"
	"testing"

	"github.com/edgefleet/edgefleet/test/tmpguard"
)

// TestMain fails the run when a test leaves temporary files, mounts or
// processes behind (test/tmpguard).
func TestMain(m *testing.M) { os.Exit(tmpguard.Main(m)) }
