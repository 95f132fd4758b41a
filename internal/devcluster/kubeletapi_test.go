package devcluster

import (
	"context"
	"strings"
	"testing"
)

func TestKubeletAPIRefusesWhatKwokCannotUse(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no fake nodes", Options{KubeletAPI: &KubeletAPI{LogsFile: "/tmp/pod.log"}}, "needs fake nodes"},
		{"relative logs file", Options{Nodes: 1, KubeletAPI: &KubeletAPI{LogsFile: "pod.log"}}, `logs file "pod.log" must be an absolute path`},
		{"relative exec dir", Options{Nodes: 1, KubeletAPI: &KubeletAPI{ExecDir: "work"}}, `exec directory "work" must be an absolute path`},
		{"address without port", Options{Nodes: 1, KubeletAPI: &KubeletAPI{PortForwards: map[int32]string{80: "127.0.0.1"}}}, `port-forward 80 -> "127.0.0.1"`},
		{"named port", Options{Nodes: 1, KubeletAPI: &KubeletAPI{PortForwards: map[int32]string{80: "127.0.0.1:http"}}}, "host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.DataDir = t.TempDir()
			tc.o.KubeBinDir = t.TempDir()
			_, err := Start(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestKubeletAPIRendersKwokRulesForEveryPod(t *testing.T) {
	got := string((&KubeletAPI{LogsFile: "/l/pod.log", ExecDir: "/work", PortForwards: map[int32]string{9090: "127.0.0.1:19090", 80: "127.0.0.1:1080"}}).kwokConfig())
	for _, want := range []string{
		"kind: ClusterLogs\nmetadata:\n  name: edgefleet-dev-cluster\nspec:\n  logs:\n  - follow: true\n    logsFile: /l/pod.log\n",
		"kind: ClusterAttach\nmetadata:\n  name: edgefleet-dev-cluster\nspec:\n  attaches:\n  - logsFile: /l/pod.log\n",
		"kind: ClusterExec\nmetadata:\n  name: edgefleet-dev-cluster\nspec:\n  execs:\n  - local:\n      workDir: /work\n",
		"  forwards:\n  - ports:\n    - 80\n    target:\n      address: 127.0.0.1\n      port: 1080\n  - ports:\n    - 9090\n    target:\n      address: 127.0.0.1\n      port: 19090\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("kwok configuration lacks\n%s\ngot:\n%s", want, got)
		}
	}
	if (*KubeletAPI)(nil).kwokConfig() != nil {
		t.Error("no KubeletAPI must add no kwok configuration")
	}
}
