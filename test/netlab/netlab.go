// Package netlab gives tests internal/netlab's network lab (a network
// namespace per machine on a bridge of the lab's own, loopback forwarders
// from the host): failures stop the test and the lab is removed when the
// test ends, also when it fails.
package netlab

import (
	"testing"

	"github.com/edgefleet/edgefleet/internal/netlab"
)

// Lab is one test's network.
type Lab struct {
	*netlab.Lab
	t testing.TB
}

// Node is one machine's network namespace.
type Node = netlab.Node

// Supported reports why netlab cannot run here ("" when it can).
func Supported() string { return netlab.Supported() }

// New creates the lab; subnet3 is the /24's first three octets
// ("10.99.0"). It is removed by t.Cleanup.
func New(t testing.TB, subnet3 string) *Lab {
	t.Helper()
	l, err := netlab.New("nl", subnet3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return &Lab{Lab: l, t: t}
}

// AddNode creates a machine's namespace with eth0 at subnet.<2+index>,
// loopback up and a default route via the lab's bridge.
func (l *Lab) AddNode(name string) *Node {
	l.t.Helper()
	n, err := l.Lab.AddNode(name)
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}
