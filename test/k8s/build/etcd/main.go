// Command etcd is etcd v3.6 built from the published server module, for test/k8s.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
