package demo

import (
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
	"syscall"

	"golang.org/x/sys/unix"
)

// lab is the machines' network: a bridge in the lab's own namespace (the
// host's interfaces are never touched) and one namespace per machine with
// a veth into it. Chosen loopback ports of the host (the manager, the
// registry) are forwarded into the namespaces. test/netlab does the same
// for tests (it reports through testing.TB, which the demo cannot use).
type lab struct {
	prefix string
	ns     string
	net3   string
	nodes  []*labNode
	gw     *labNode
}

type labNode struct {
	name string
	ns   string
	ip   string
	mu   sync.Mutex
	ln   []net.Listener
}

// netnsUnsupported says why the demo cannot use network namespaces here
// ("" when it can).
func netnsUnsupported() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root (CAP_NET_ADMIN)"
	}
	for _, c := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			return "the " + c + " command is missing (hack/install-deps.sh)"
		}
	}
	// A namespace made and removed proves the permission (containers
	// often run as root without CAP_NET_ADMIN).
	probe := "efdprobe" + randHex(3)
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

// NamespacePrefix starts the name of every network namespace the demo
// creates (under /run/netns), so leftovers are easy to find.
const NamespacePrefix = "efdemo"

func newLab(net3 string) (*lab, error) {
	l := &lab{prefix: NamespacePrefix + randHex(2), net3: net3}
	l.ns = l.prefix + "-lab"
	if err := ipCmd("netns", "add", l.ns); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", l.ns, "link", "set", "lo", "up"},
		{"-n", l.ns, "link", "add", "br0", "type", "bridge"},
		{"-n", l.ns, "addr", "add", net3 + ".1/24", "dev", "br0"},
		{"-n", l.ns, "link", "set", "br0", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			l.close()
			return nil, err
		}
	}
	return l, nil
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *lab) gateway() string { return l.net3 + ".1" }

func (l *lab) addNode(name string) (*labNode, error) {
	i := len(l.nodes)
	n := &labNode{name: name, ns: fmt.Sprintf("%s-%d", l.prefix, i), ip: fmt.Sprintf("%s.%d", l.net3, i+2)}
	host := fmt.Sprintf("%sv%d", l.prefix, i)
	if err := ipCmd("netns", "add", n.ns); err != nil {
		return nil, err
	}
	l.nodes = append(l.nodes, n)
	for _, args := range [][]string{
		{"-n", n.ns, "link", "set", "lo", "up"},
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", n.ns},
		{"link", "set", host, "netns", l.ns},
		{"-n", l.ns, "link", "set", host, "master", "br0", "up"},
		{"-n", n.ns, "addr", "add", n.ip + "/24", "dev", "eth0"},
		{"-n", n.ns, "link", "set", "eth0", "up"},
		{"-n", n.ns, "route", "add", "default", "via", l.gateway()},
	} {
		if err := ipCmd(args...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// close stops the forwarders and removes every namespace (the veths go
// with them).
func (l *lab) close() {
	all := append([]*labNode{}, l.nodes...)
	if l.gw != nil {
		all = append(all, l.gw)
	}
	for _, n := range all {
		n.mu.Lock()
		for _, ln := range n.ln {
			ln.Close()
		}
		n.mu.Unlock()
	}
	for _, n := range l.nodes {
		_ = exec.Command("ip", "netns", "del", n.ns).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.ns).Run()
}

// command runs name in the node's network namespace only (nsenter --net
// keeps the host's /sys, where the cgroup hierarchies are, unlike `ip
// netns exec`).
func (n *labNode) command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.ns, "--", name}, args...)...)
}

// forward makes the host's 127.0.0.1:port answer on the node's
// 127.0.0.1:port.
func (n *labNode) forward(port int) error {
	return n.forwardOn(fmt.Sprintf("127.0.0.1:%d", port), port)
}

// forwardGateway makes the host's 127.0.0.1:port answer on the gateway
// address, which every machine and the pods behind it reach: the address
// the manager announces.
func (l *lab) forwardGateway(port int) error {
	if l.gw == nil {
		l.gw = &labNode{name: "gateway", ns: l.ns, ip: l.gateway()}
	}
	return l.gw.forwardOn(fmt.Sprintf("%s:%d", l.gateway(), port), port)
}

func (n *labNode) forwardOn(addr string, port int) error {
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

// listen creates a TCP listener inside the node's namespace, on a locked
// OS thread switched there and back (discarded if switching back fails).
func (n *labNode) listen(addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + n.ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			ch <- result{err: err}
			return
		}
		ln, lerr := net.Listen("tcp", addr)
		if err := setns(self); err != nil {
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: err}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln, lerr}
	}()
	r := <-ch
	return r.ln, r.err
}

func setns(f *os.File) error {
	if err := unixSetns(int(f.Fd()), syscall.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns: %w", err)
	}
	return nil
}

func unixSetns(fd, nstype int) error { return unix.Setns(fd, nstype) }
