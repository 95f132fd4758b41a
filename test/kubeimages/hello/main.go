// Command hello is the test workload: an HTTP server on :8080 that
// answers with its pod's name (the container's hostname), so a test knows
// which pod answered over the pod network, and at /resolve?name=<host>
// with the addresses the pod's resolver finds for host (sorted, one line),
// so a test sees what a pod sees of the cluster DNS.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
)

func main() {
	name, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "hello from %s\n", name) })
	http.HandleFunc("/resolve", func(w http.ResponseWriter, r *http.Request) {
		addrs, err := net.DefaultResolver.LookupHost(r.Context(), r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		sort.Strings(addrs)
		fmt.Fprintln(w, strings.Join(addrs, " "))
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
