// Command etcd is the etcd server, built from the Go module proxy at the version
// kube-apiserver itself is tested against.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
