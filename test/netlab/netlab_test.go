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

	// A cut link drops a's traffic to the lab (the gateway's forward
	// included) but not its own loopback forward; reconnecting restores it.
	if err := l.ForwardGateway(port); err != nil {
		t.Fatal(err)
	}
	// busybox nc (busybox wget crashes on some connection errors), its
	// input held open for the answer: the forwarder closes on either EOF.
	get := func(host string) (string, error) {
		out, err := a.Command("busybox", "sh", "-c", fmt.Sprintf("sleep 1 | busybox nc -w 2 %s %d", host, port)).CombinedOutput()
		if err == nil && !strings.Contains(string(out), "hello") {
			err = fmt.Errorf("no answer")
		}
		return string(out), err
	}
	if out, err := get(l.Gateway()); err != nil {
		t.Fatalf("gateway forward before the cut: %v: %q", err, out)
	}
	if err := a.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if out, err := get(l.Gateway()); err == nil {
		t.Fatalf("a reached the gateway through a cut link: %q", out)
	}
	if out, err := get("127.0.0.1"); err != nil {
		t.Fatalf("loopback forward during the cut: %v: %q", err, out)
	}
	if err := a.Reconnect(); err != nil {
		t.Fatal(err)
	}
	waitUp := func() error {
		var err error
		for range 10 {
			if _, err = get(l.Gateway()); err == nil {
				return nil
			}
		}
		return err
	}
	if err := waitUp(); err != nil {
		t.Fatalf("gateway forward after reconnecting: %v", err)
	}
}
