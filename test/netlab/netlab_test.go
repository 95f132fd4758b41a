package netlab

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// Two nodes reach each other over the lab bridge, not the host; a
// forwarded host port answers on a node's loopback.
func TestLab(t *testing.T) {
	if why := Supported(); why != "" {
		t.Skip(why)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "HTTP/1.0 200 OK\r\nContent-Length: 20\r\n\r\nhello from the host\n")
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	l := New(t, "10.98.0")
	a, b := l.AddNode("a"), l.AddNode("b")
	if out, err := a.Command("busybox", "ping", "-c1", "-W2", b.IP).CombinedOutput(); err != nil {
		t.Fatalf("a cannot reach b at %s: %v: %s", b.IP, err, out)
	}
	if out, err := a.Command("ip", "-4", "addr").CombinedOutput(); err != nil || strings.Contains(string(out), "192.") || !strings.Contains(string(out), a.IP) {
		t.Fatalf("a's addresses are not its own: %v\n%s", err, out)
	}
	if err := a.Forward(port); err != nil {
		t.Fatal(err)
	}
	out, err := a.Command("busybox", "wget", "-qO-", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from the host") {
		t.Fatalf("forwarded port: %v: %q", err, out)
	}
	if out, err := b.Command("busybox", "wget", "-T1", "-qO-", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput(); err == nil && strings.Contains(string(out), "hello") {
		t.Fatalf("b reached a port forwarded only to a: %q", out)
	}
}
