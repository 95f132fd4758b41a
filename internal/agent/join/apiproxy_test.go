package join

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// TestTunnelHandlerRefusesOtherAddresses: the agent's end of the tunnel
// only reaches its own API server; asking for another host, or CONNECT, is
// refused before anything is dialed.
func TestTunnelHandlerRefusesOtherAddresses(t *testing.T) {
	dialed := make(chan string, 4)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { dialed <- r.URL.Path }))
	defer target.Close()
	h, err := APIServerHandler(&rest.Config{Host: target.URL})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, raw := range []string{
		"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
		"GET /api HTTP/1.1\r\nHost: 10.0.0.1:22\r\n\r\n",
		"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
		fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", clusterjoin.TunnelAPIServerHost, clusterjoin.TunnelAPIServerHost),
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(conn, raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%q: %v", strings.SplitN(raw, "\r\n", 2)[0], err)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%q: status %d, want 403", strings.SplitN(raw, "\r\n", 2)[0], resp.StatusCode)
		}
	}
	select {
	case p := <-dialed:
		t.Fatalf("a refused request reached the API server: %s", p)
	default:
	}
}
