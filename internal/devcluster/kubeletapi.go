package devcluster

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"

	"sigs.k8s.io/yaml"
)

// KubeletAPI configures kwok, which serves the kubelet API of the fake nodes,
// for every pod on them. Everything happens on this host, as the user who
// runs the dev cluster: whoever may exec into a pod of the dev cluster runs
// commands here.
type KubeletAPI struct {
	// LogsFile is what `kubectl logs` returns for every container; `kubectl
	// attach` follows the lines appended to it. Lines use the CRI log format:
	// "2026-01-02T15:04:05.000000000Z stdout F <text>".
	LogsFile string
	// ExecDir, when set, makes `kubectl exec` run the command on this host in
	// this directory.
	ExecDir string
	// PortForwards maps a pod port to a host address ("127.0.0.1:8080") for
	// `kubectl port-forward`.
	PortForwards map[int32]string
}

func (k *KubeletAPI) validate() error {
	if k == nil {
		return nil
	}
	for _, p := range []struct{ what, path string }{{"logs file", k.LogsFile}, {"exec directory", k.ExecDir}} {
		if p.path != "" && !filepath.IsAbs(p.path) {
			return fmt.Errorf("kubelet API %s %q must be an absolute path (kwok runs in another directory)", p.what, p.path)
		}
	}
	for port, addr := range k.PortForwards {
		_, p, err := net.SplitHostPort(addr)
		if _, perr := strconv.Atoi(p); err != nil || perr != nil || port <= 0 {
			return fmt.Errorf("kubelet API port-forward %d -> %q: want a pod port > 0 and a host:port address", port, addr)
		}
	}
	return nil
}

// kwokConfig renders the Cluster* rules of kwok's configuration API
// (kwok.x-k8s.io/v1alpha1) that match every pod.
func (k *KubeletAPI) kwokConfig() []byte {
	if k == nil {
		return nil
	}
	var docs []any
	add := func(kind, field string, rules any) {
		docs = append(docs, map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1",
			"kind":       kind,
			"metadata":   map[string]any{"name": "edgefleet-dev-cluster"},
			"spec":       map[string]any{field: rules},
		})
	}
	if k.LogsFile != "" {
		add("ClusterLogs", "logs", []any{map[string]any{"logsFile": k.LogsFile, "follow": true}})
		add("ClusterAttach", "attaches", []any{map[string]any{"logsFile": k.LogsFile}})
	}
	if k.ExecDir != "" {
		add("ClusterExec", "execs", []any{map[string]any{"local": map[string]any{"workDir": k.ExecDir}}})
	}
	if len(k.PortForwards) > 0 {
		ports := make([]int32, 0, len(k.PortForwards))
		for p := range k.PortForwards {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		var forwards []any
		for _, p := range ports {
			host, portStr, _ := net.SplitHostPort(k.PortForwards[p])
			target, _ := strconv.Atoi(portStr)
			forwards = append(forwards, map[string]any{"ports": []int32{p}, "target": map[string]any{"address": host, "port": target}})
		}
		add("ClusterPortForward", "forwards", forwards)
	}
	var out []byte
	for _, d := range docs {
		data, err := yaml.Marshal(d)
		if err != nil {
			panic(err) // maps of strings and numbers always marshal
		}
		out = append(append(out, "---\n"...), data...)
	}
	return out
}
