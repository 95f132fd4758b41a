package harness

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcessesMentioning lists the PIDs of live processes whose command line
// contains s — used to prove that nothing outlives a stopped manager.
func ProcessesMentioning(s string) []int {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil || !strings.Contains(string(data), s) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(m)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join(filepath.Dir(m), "stat")); err == nil {
			// Zombies are already dead; their parent just has not reaped them yet.
			if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}
