package osinstall

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
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
func SelectDevice(reqs []machinereg.DeviceSelectorRequirement, disks []BlockDisk, inUse func(string) bool) (string, error) {
	var sizes [][]int64
	for i, r := range reqs {
		var s []int64
		if r.Key == "Size" {
			for _, v := range r.Values {
				n, err := ParseSize(v)
				if err != nil {
					return "", fmt.Errorf("install.device-selector[%d]: size %q: %v", i, v, err)
				}
				s = append(s, n)
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

func matches(r machinereg.DeviceSelectorRequirement, sizes []int64, d BlockDisk) bool {
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

// sizeUnits are the Kubernetes quantity suffixes a disk size is written
// with (binary and decimal).
var sizeUnits = map[string]int64{"": 1,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
	"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}

// ParseSize reads a size in bytes written as a Kubernetes quantity:
// "1073741824", "100Gi", "1.5Ti", "500G". (The node does not link
// apimachinery's resource package for this one use.)
func ParseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGTPEikm")
	unit, ok := sizeUnits[s[len(num):]]
	if !ok || num == "" {
		return 0, fmt.Errorf("not a size: write bytes or a number with Ki, Mi, Gi, Ti (or k, M, G, T)")
	}
	whole, frac, _ := strings.Cut(num, ".")
	w, err := strconv.ParseUint(whole, 10, 63)
	if err != nil || (whole == "" && frac == "") {
		return 0, fmt.Errorf("not a size: write bytes or a number with Ki, Mi, Gi, Ti (or k, M, G, T)")
	}
	if w > uint64(math.MaxInt64/unit) {
		return 0, fmt.Errorf("too large")
	}
	n := int64(w) * unit
	if frac != "" {
		f, err := strconv.ParseFloat("0."+frac, 64)
		if err != nil {
			return 0, fmt.Errorf("not a size: %q is not a fraction", frac)
		}
		n += int64(f * float64(unit))
	}
	return n, nil
}
