// Command coredns is CoreDNS with only the plugins a Kubernetes cluster DNS
// needs. Upstream's main links every plugin in its plugin.cfg (cloud DNS
// providers, etcd, dnstap, ...), which takes far longer to build and makes a
// larger binary; the edgefleet distribution serves cluster.local and forwards
// the rest, so this build is enough for the Corefile it deploys.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins, one import each; directives below must name the same set.
	// (forward and kubernetes link dnstap, metadata and transfer too;
	// without a directive a Corefile cannot use them.)
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives is the order a query passes the plugins, the subsequence of
// upstream's plugin.cfg for the plugins imported above: a plugin earlier in
// the list sees the query first (cache before kubernetes, forward last).
var directives = []string{
	"reload",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
	"loop",
	"forward",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintln(os.Stderr, "coredns:", err)
		os.Exit(1)
	}
	coremain.Run()
}
