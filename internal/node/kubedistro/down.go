package kubedistro

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/edgefleet/edgefleet/internal/mountinfo"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// Down is `kubernetes down`: stops the supervisor and its components, then
// the pods' containers (containerd's shims outlive containerd by design),
// unmounts what the kubelet and containerd mounted below the data
// directory and removes the node's cgroups. The data stays (an `up`
// resumes); a reset removes it.
func Down(root string) error { return DownWith(context.Background(), root, false) }

// DownWith is Down; leaveEtcd first removes a server from the cluster's
// etcd and deletes its etcd data (scale-down of a server).
func DownWith(ctx context.Context, root string, leave bool) error {
	p := NewPaths(root)
	var nodeName string
	st, _ := running(p)
	if st != nil {
		nodeName = st.NodeName
	}
	if leave && st != nil && st.Role == kubedistro.RoleServer {
		if err := leaveEtcd(ctx, p, st.NodeIP); err != nil {
			return err
		}
	}
	if err := writeFile(p.stoppedMarker(), nil, 0o644); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := stopSupervisor(p); err != nil {
		return err
	}
	// Nothing may mount again once the unmounting starts: components a
	// dead supervisor left running (the kubelet remounts its root and the
	// pods' volumes), the shims, then the pods themselves.
	killStragglers(p)
	killShims(p.ContainerdSocket())
	if nodeName != "" {
		removeCgroups(CgroupRoot(p, nodeName))
	}
	var errs []string
	if err := unmountBelow(p.Data); err != nil {
		errs = append(errs, err.Error())
	}
	if leave {
		if err := os.RemoveAll(p.Etcd()); err != nil {
			errs = append(errs, err.Error())
		}
		_ = os.Remove(p.etcdInitialCluster())
	}
	if len(errs) > 0 {
		return fmt.Errorf("stopping the node's Kubernetes: %s", strings.Join(errs, "; "))
	}
	return nil
}

// killShims kills the containerd shims (and so their containers) of the
// containerd listening on socket, found by their -address argument.
func killShims(socket string) {
	for range 2 {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		found := false
		for _, f := range procs {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			args := strings.Split(string(data), "\x00")
			if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
				continue
			}
			for i := 0; i+1 < len(args); i++ {
				if args[i] == "-address" && args[i+1] == socket {
					pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
					// The shim's process group holds its containers.
					_ = syscall.Kill(-pid, syscall.SIGKILL)
					_ = syscall.Kill(pid, syscall.SIGKILL)
					found = true
				}
			}
		}
		if !found {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// componentNames are the programs the supervisor runs.
var componentNames = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"}

// killStragglers kills the node's components that outlived their
// supervisor (killed, or crashed while its children kept running): a
// component program whose arguments name a path under the data folder.
func killStragglers(p Paths) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if len(args) < 2 || !slices.Contains(componentNames, filepath.Base(args[0])) {
			continue
		}
		for _, a := range args[1:] {
			if strings.Contains(a, p.Data+"/") {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// unmountBelow lazily unmounts every mount point below dir, deepest first
// (the kubelet's root, pod volumes, container root filesystems, pod network
// namespaces), and checks that none is left: a node reset must not keep
// mounts (nor the disk space behind them).
func unmountBelow(dir string) error {
	var failed []string
	for try := 0; try < 3; try++ {
		if try > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		points, err := mountinfo.Below(dir)
		if err != nil {
			return err
		}
		if len(points) == 0 {
			return nil
		}
		failed = failed[:0]
		for _, m := range points {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
				failed = append(failed, m+": "+err.Error())
			}
		}
	}
	points, err := mountinfo.Below(dir)
	if err != nil {
		return err
	}
	if len(points) == 0 {
		return nil
	}
	if len(failed) > 0 {
		return fmt.Errorf("unmounting: %s", strings.Join(failed, ", "))
	}
	return fmt.Errorf("still mounted after unmounting (a process mounts them again; see `edgefleet-node kubernetes status`): %s", strings.Join(points, ", "))
}

// removeCgroups kills what is left in the node's cgroup subtree (pod
// containers live in their own PID namespaces, out of reach of a signal
// to the shim's process group) and removes it in every hierarchy, deepest
// first (a cgroup is removed with rmdir once empty).
func removeCgroups(root string) {
	hs, _ := filepath.Glob("/sys/fs/cgroup/*")
	hs = append(hs, "/sys/fs/cgroup")
	for range 5 {
		killed := 0
		for _, h := range hs {
			_ = filepath.WalkDir(filepath.Join(h, root), func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || (d.Name() != "cgroup.procs" && d.Name() != "tasks") {
					return nil
				}
				data, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						killed++
					}
				}
				return nil
			})
		}
		if killed == 0 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, h := range hs {
		top := filepath.Join(h, root)
		var dirs []string
		_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// Status is `kubernetes status`: what runs on this node.
func Status(root string, w io.Writer) error {
	p := NewPaths(root)
	st, alive := running(p)
	if st == nil {
		fmt.Fprintln(w, "Kubernetes is not running on this node (no supervisor state).")
		return nil
	}
	state := "running"
	if !alive {
		state = "not running"
	}
	fmt.Fprintf(w, "supervisor pid %d %s: %s node %s (%s), Kubernetes %s, since %s\n", st.PID, state, st.Role, st.NodeName, st.NodeIP, st.Version, st.Started.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tPID\tRUNNING\tRESTARTS\tSTARTED\tLAST EXIT")
	for _, c := range st.Components {
		started := ""
		if !c.Started.IsZero() {
			started = c.Started.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%t\t%d\t%s\t%s\n", c.Name, c.PID, c.Running && alive, c.Restarts, started, c.LastExit)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Role == kubedistro.RoleServer && alive {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		members, err := etcdMembers(ctx, p)
		cancel()
		if err != nil {
			fmt.Fprintf(w, "etcd members: unknown (%v)\n", err)
		} else {
			var names []string
			for _, m := range members {
				names = append(names, m.Name)
			}
			fmt.Fprintf(w, "etcd members: %d (%s)\n", len(members), strings.Join(names, ", "))
		}
	}
	fmt.Fprintf(w, "logs: %s\n", p.Logs())
	if !alive {
		return fmt.Errorf("the supervisor (pid %d) is not running", st.PID)
	}
	return nil
}
