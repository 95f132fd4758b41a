package demo

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/edgefleet/edgefleet/internal/netlab"
)

// NamespacePrefix starts the name of every network namespace the demo
// creates (under /run/netns), so leftovers are easy to find.
const NamespacePrefix = "efdemo"

// netnsUnsupported says why the demo cannot use network namespaces here
// ("" when it can).
func netnsUnsupported() string { return netlab.Supported() }

// newLab is the machines' network (internal/netlab): a bridge in the lab's
// own namespace, so the host's interfaces are never touched.
func newLab(net3 string) (*netlab.Lab, error) { return netlab.New(NamespacePrefix, net3) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
