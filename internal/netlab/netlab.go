// Package netlab runs several machines' networks on one host: each
// machine gets its own network namespace with one veth into a bridge that
// lives in the lab's own namespace (so nothing touches the host's
// interfaces), its own address and a default route, and forwarders that
// make chosen loopback ports of the host (the manager, a local registry)
// appear on the machine's 127.0.0.1, like qemu's guestfwd. `edgefleet demo`
// and the tests (test/netlab wraps it for testing.TB) use it.
package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Lab is one network: a bridge in the lab namespace and the nodes
// attached to it, in a /24 whose .1 is the bridge.
type Lab struct {
	prefix string
	ns     string
	// Subnet's first three octets, e.g. "10.99.0".
	net   string
	nodes []*Node
	// gw holds the forwarders on the gateway address (the lab namespace).
	gw *Node
}

// Node is one machine's network namespace.
type Node struct {
	Name string
	// NS is the namespace's name under /run/netns.
	NS string
	IP string
	ln []net.Listener
	mu sync.Mutex
	// labNS and hostIf are the lab namespace and the node's veth end in
	// it (the switch port), which Disconnect takes down.
	labNS, hostIf string
}

// Supported reports why netlab cannot run here ("" when it can): it needs
// the ip and nsenter commands and the right to create network namespaces
// (root is not enough in a container without CAP_NET_ADMIN: a namespace
// made and removed proves it).
func Supported() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root (CAP_NET_ADMIN)"
	}
	for _, c := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			return "the " + c + " command is missing (hack/install-deps.sh)"
		}
	}
	probe := "nlprobe" + randHex(3)
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v: %s", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	return ""
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// New creates a lab whose namespaces are named prefix + random hex (so
// leftovers are easy to find); subnet3 is the /24's first three octets
// ("10.99.0"). Close removes it; on an error nothing is left behind.
func New(prefix, subnet3 string) (*Lab, error) {
	l := &Lab{prefix: prefix + randHex(3), net: subnet3}
	l.ns = l.prefix + "-lab"
	if err := ip("netns", "add", l.ns); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", l.ns, "link", "set", "lo", "up"},
		{"-n", l.ns, "link", "add", "br0", "type", "bridge"},
		{"-n", l.ns, "addr", "add", subnet3 + ".1/24", "dev", "br0"},
		{"-n", l.ns, "link", "set", "br0", "up"},
	} {
		if err := ip(args...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// AddNode creates a machine's namespace with eth0 at subnet.<2+index>,
// loopback up and a default route via the lab's bridge.
func (l *Lab) AddNode(name string) (*Node, error) {
	i := len(l.nodes)
	host := fmt.Sprintf("%sv%d", l.prefix, i)
	n := &Node{Name: name, NS: fmt.Sprintf("%s-%d", l.prefix, i), IP: fmt.Sprintf("%s.%d", l.net, i+2), labNS: l.ns, hostIf: host}
	if err := ip("netns", "add", n.NS); err != nil {
		return nil, err
	}
	l.nodes = append(l.nodes, n)
	for _, args := range [][]string{
		{"-n", n.NS, "link", "set", "lo", "up"},
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", n.NS},
		{"link", "set", host, "netns", l.ns},
		{"-n", l.ns, "link", "set", host, "master", "br0", "up"},
		{"-n", n.NS, "addr", "add", n.IP + "/24", "dev", "eth0"},
		{"-n", n.NS, "link", "set", "eth0", "up"},
		{"-n", n.NS, "route", "add", "default", "via", l.Gateway()},
	} {
		if err := ip(args...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Close stops the forwarders and removes every namespace (their veths go
// with them).
func (l *Lab) Close() {
	if l.gw != nil {
		l.gw.mu.Lock()
		for _, ln := range l.gw.ln {
			ln.Close()
		}
		l.gw.mu.Unlock()
	}
	for _, n := range l.nodes {
		n.mu.Lock()
		for _, ln := range n.ln {
			ln.Close()
		}
		n.mu.Unlock()
		_ = exec.Command("ip", "netns", "del", n.NS).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.ns).Run()
}

// Command runs name in the node's network namespace only (nsenter --net:
// unlike `ip netns exec` it keeps the host's /sys, where the cgroup
// hierarchies are mounted).
func (n *Node) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.NS, "--", name}, args...)...)
}

// Disconnect cuts the node's link to the lab, as a cable pulled at the
// switch: packets to and from the node are dropped (open connections
// stall, new ones time out), nothing is reset. Forwards to the node's own
// loopback (Forward) are not on the link and keep working.
func (n *Node) Disconnect() error { return n.setLink("down") }

// Reconnect restores the link Disconnect cut.
func (n *Node) Reconnect() error { return n.setLink("up") }

func (n *Node) setLink(state string) error {
	if out, err := exec.Command("ip", "-n", n.labNS, "link", "set", n.hostIf, state).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s %s: %v: %s", n.hostIf, state, err, out)
	}
	return nil
}

// Forward makes the host's 127.0.0.1:port answer on the node's
// 127.0.0.1:port: a listener made inside the namespace (on a locked OS
// thread switched there and back) whose connections are dialled from the
// host's namespace.
func (n *Node) Forward(port int) error {
	return n.forwardOn(fmt.Sprintf("127.0.0.1:%d", port), port)
}

// Gateway is the bridge's address: every node's default route, so the
// one address of the lab that nodes and the pods behind them all reach.
func (l *Lab) Gateway() string { return l.net + ".1" }

// ForwardGateway makes the host's 127.0.0.1:port answer on
// Gateway():port, for every node and whatever runs behind a node's own
// routing (a kubelet's pods): one address a manager can announce as its
// external URL.
func (l *Lab) ForwardGateway(port int) error {
	if l.gw == nil {
		l.gw = &Node{Name: "gateway", NS: l.ns, IP: l.Gateway()}
	}
	return l.gw.forwardOn(fmt.Sprintf("%s:%d", l.Gateway(), port), port)
}

// forwardOn listens on addr in the node's namespace and dials the host's
// 127.0.0.1:port for each connection.
func (n *Node) forwardOn(addr string, port int) error {
	ln, err := n.listen(addr)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.ln = append(n.ln, ln)
	n.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return nil
}

// DialContext dials addr from inside the node's namespace, so a test's own
// clients (client-go, the Helm SDK) reach what listens only on the lab
// network, such as a node's kube-apiserver. A socket keeps the namespace
// it was made in for life.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var derr error
	if err := n.inNamespace(func() {
		var d net.Dialer
		c, derr = d.DialContext(ctx, network, addr)
	}); err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	return c, derr
}

// listen creates a TCP listener inside the node's namespace.
func (n *Node) listen(addr string) (net.Listener, error) {
	var ln net.Listener
	var lerr error
	if err := n.inNamespace(func() { ln, lerr = net.Listen("tcp", addr) }); err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	return ln, lerr
}

// inNamespace runs fn on an OS thread switched into the node's namespace
// and back. If switching back fails the thread stays locked and is
// discarded with its goroutine, so no other goroutine runs in the wrong
// namespace.
func (n *Node) inNamespace(fn func()) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + n.NS)
		if err != nil {
			done <- err
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			done <- err
			return
		}
		fn()
		if err := setns(self); err != nil {
			done <- err
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	return <-done
}

func setns(f *os.File) error {
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns: %w", err)
	}
	return nil
}
