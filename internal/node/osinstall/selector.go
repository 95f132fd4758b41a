package osinstall

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
)

// BlockDisk is a disk the selector can pick.
type BlockDisk struct {
	Name string // "/dev/vda"
	Size int64
}

// ListDisks lists whole disks from a /sys/block directory, leaving out
// loop, RAM, optical, floppy and network block devices.
func ListDisks(sysBlockDir string) ([]BlockDisk, error) {
	if sysBlockDir == "" {
		sysBlockDir = "/sys/block"
	}
	entries, err := os.ReadDir(sysBlockDir)
	if err != nil {
		return nil, err
	}
	var out []BlockDisk
	for _, e := range entries {
		n := e.Name()
		skip := false
		for _, p := range []string{"loop", "ram", "zram", "sr", "fd", "nbd", "dm-", "md"} {
			skip = skip || strings.HasPrefix(n, p)
		}
		if skip {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sysBlockDir, n, "size"))
		if err != nil {
			continue
		}
		sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || sectors == 0 {
			continue
		}
		out = append(out, BlockDisk{Name: "/dev/" + n, Size: sectors * 512})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// SelectDevice picks the disk matching every requirement (Elemental's
// install.device-selector): Name In/NotIn ("/dev/sda" or "sda"), Size
// In/NotIn/Gt/Lt (bytes or quantities such as "100Gi"). Disks for which
// inUse returns true (the boot media) are never picked. Of several matches
// the first by name is used, so the choice is stable across boots.
func SelectDevice(reqs []machinesv1.DeviceSelectorRequirement, disks []BlockDisk, inUse func(string) bool) (string, error) {
	var sizes [][]int64
	for i, r := range reqs {
		var s []int64
		if r.Key == "Size" {
			for _, v := range r.Values {
				q, err := resource.ParseQuantity(v)
				if err != nil {
					return "", fmt.Errorf("install.device-selector[%d]: size %q: %v", i, v, err)
				}
				s = append(s, q.Value())
			}
			if (r.Operator == "Gt" || r.Operator == "Lt") && len(s) != 1 {
				return "", fmt.Errorf("install.device-selector[%d]: %s needs exactly one value", i, r.Operator)
			}
		} else if r.Key != "Name" {
			return "", fmt.Errorf("install.device-selector[%d]: key %q is not Name or Size", i, r.Key)
		} else if r.Operator == "Gt" || r.Operator == "Lt" {
			return "", fmt.Errorf("install.device-selector[%d]: Name takes In or NotIn, not %s", i, r.Operator)
		}
		sizes = append(sizes, s)
	}
	var seen []string
	for _, d := range disks {
		seen = append(seen, fmt.Sprintf("%s (%d MiB)", d.Name, d.Size/mib))
		if inUse != nil && inUse(d.Name) {
			continue
		}
		ok := true
		for i, r := range reqs {
			ok = ok && matches(r, sizes[i], d)
		}
		if ok {
			return d.Name, nil
		}
	}
	return "", fmt.Errorf("no disk matches install.device-selector (disks: %s)", strings.Join(seen, ", "))
}

func matches(r machinesv1.DeviceSelectorRequirement, sizes []int64, d BlockDisk) bool {
	in := false
	switch r.Key {
	case "Name":
		for _, v := range r.Values {
			in = in || v == d.Name || "/dev/"+v == d.Name
		}
	case "Size":
		for _, s := range sizes {
			in = in || s == d.Size
		}
		switch r.Operator {
		case "Gt":
			return d.Size > sizes[0]
		case "Lt":
			return d.Size < sizes[0]
		}
	}
	if r.Operator == "NotIn" {
		return !in
	}
	return in
}

// DiskInUse reports whether the disk has mounted partitions (the boot media).
func DiskInUse(device string) bool {
	d, err := OpenDisk(device)
	if err != nil {
		return true
	}
	return CheckNotInUse(d, "") != nil
}
