// Package hwinfo collects a machine's hardware data for registration: SMBIOS
// fields from /sys/class/dmi/id and CPU, memory, disks and NICs from ghw. The
// result is a flat map whose keys are the template paths users write in
// MachineRegistration labels, e.g. "System Information/Manufacturer" or
// "CPU/TotalCores" (docs/machines.md lists them all).
package hwinfo

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/jaypipes/ghw"

	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Options select what is collected.
type Options struct {
	// DMIDir is where SMBIOS fields are read; "" is /sys/class/dmi/id. Tests
	// and machines whose firmware tables are copied elsewhere set it.
	DMIDir string
	// NoSMBIOS skips SMBIOS (the registration's no-smbios).
	NoSMBIOS bool
}

// dmiFields maps SMBIOS template paths to /sys/class/dmi/id files, named as
// dmidecode (and so Elemental) names them.
var dmiFields = machinereg.SMBIOSFields

// Collect gathers the machine's data. Parts that cannot be read (no SMBIOS in
// a container, no permission for serial numbers) are left out rather than
// failing the registration; the templates that use them are then skipped.
func Collect(o Options) (map[string]string, []string) {
	data := map[string]string{}
	var warnings []string
	if !o.NoSMBIOS {
		dir := o.DMIDir
		if dir == "" {
			dir = "/sys/class/dmi/id"
		}
		warnings = append(warnings, smbios(dir, data)...)
	}
	mods := []any{ghw.WithDisableWarnings(), ghw.WithDisableTools()}
	if err := cpu(data, mods); err != nil {
		warnings = append(warnings, "CPU: "+err.Error())
	}
	if mem, err := ghw.Memory(mods...); err == nil {
		data["Memory/Total Physical Bytes"] = strconv.FormatInt(mem.TotalPhysicalBytes, 10)
		data["Memory/Total Usable Bytes"] = strconv.FormatInt(mem.TotalUsableBytes, 10)
	} else {
		warnings = append(warnings, "memory: "+err.Error())
	}
	if err := storage(data, mods); err != nil {
		warnings = append(warnings, "disks: "+err.Error())
	}
	if err := network(data, mods); err != nil {
		warnings = append(warnings, "NICs: "+err.Error())
	}
	if h, err := os.Hostname(); err == nil {
		data["Runtime/Hostname"] = h
	}
	data["Runtime/Arch"] = runtime.GOARCH
	data["Runtime/OS"] = runtime.GOOS
	return data, warnings
}

func smbios(dir string, data map[string]string) []string {
	var warnings []string
	for key, file := range dmiFields {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			if !os.IsNotExist(err) {
				warnings = append(warnings, fmt.Sprintf("SMBIOS %s: %v", key, err))
			}
			continue
		}
		if v := strings.TrimSpace(string(b)); v != "" {
			data[key] = v
		}
	}
	return warnings
}

func cpu(data map[string]string, mods []any) error {
	info, err := ghw.CPU(mods...)
	if err != nil {
		return err
	}
	data["CPU/TotalCores"] = strconv.FormatUint(uint64(info.TotalCores), 10)
	data["CPU/TotalThreads"] = strconv.FormatUint(uint64(info.TotalHardwareThreads), 10)
	data["CPU/TotalProcessors"] = strconv.Itoa(len(info.Processors))
	for i, p := range info.Processors {
		for _, prefix := range cpuPrefixes(i) {
			data[prefix+"/Model"] = p.Model
			data[prefix+"/Vendor"] = p.Vendor
			data[prefix+"/NumCores"] = strconv.FormatUint(uint64(p.TotalCores), 10)
			data[prefix+"/NumThreads"] = strconv.FormatUint(uint64(p.TotalHardwareThreads), 10)
			data[prefix+"/ID"] = strconv.Itoa(p.ID)
		}
	}
	return nil
}

// cpuPrefixes: processor 0 is also reachable as CPU/Processor, as in Elemental.
func cpuPrefixes(i int) []string {
	p := []string{"CPU/Processors/" + strconv.Itoa(i)}
	if i == 0 {
		p = append(p, "CPU/Processor")
	}
	return p
}

func storage(data map[string]string, mods []any) error {
	info, err := ghw.Block(mods...)
	if err != nil {
		return err
	}
	disks := info.Disks
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	n := 0
	for _, d := range disks {
		if strings.HasPrefix(d.Name, "loop") || strings.HasPrefix(d.Name, "ram") {
			continue
		}
		for _, prefix := range []string{"Storage/Disks/" + strconv.Itoa(n), "Storage/Disks/" + d.Name} {
			data[prefix+"/Name"] = d.Name
			data[prefix+"/Size"] = strconv.FormatUint(d.SizeBytes, 10)
			data[prefix+"/DriveType"] = d.DriveType.String()
			data[prefix+"/StorageController"] = d.StorageController.String()
			data[prefix+"/Removable"] = strconv.FormatBool(d.IsRemovable)
			data[prefix+"/Model"] = d.Model
		}
		n++
	}
	data["Storage/TotalDisks"] = strconv.Itoa(n)
	return nil
}

func network(data map[string]string, mods []any) error {
	info, err := ghw.Network(mods...)
	if err != nil {
		return err
	}
	nics := info.NICs
	sort.Slice(nics, func(i, j int) bool { return nics[i].Name < nics[j].Name })
	for i, nic := range nics {
		for _, prefix := range []string{"Network/NICs/" + strconv.Itoa(i), "Network/NICs/" + nic.Name} {
			data[prefix+"/Name"] = nic.Name
			data[prefix+"/MacAddress"] = nic.MACAddress
			data[prefix+"/IsVirtual"] = strconv.FormatBool(nic.IsVirtual)
			data[prefix+"/Speed"] = nic.Speed
			data[prefix+"/Duplex"] = nic.Duplex
		}
	}
	data["Network/TotalNICs"] = strconv.Itoa(len(nics))
	return nil
}

// PrimaryMAC is the lowest MAC address of a non-virtual NIC, the identity of
// auth "mac" (as in Elemental); "" when there is none.
func PrimaryMAC(data map[string]string) string {
	var macs []string
	for k, v := range data {
		if strings.HasPrefix(k, "Network/NICs/") && strings.HasSuffix(k, "/MacAddress") && v != "" && v != "00:00:00:00:00:00" {
			if data[strings.TrimSuffix(k, "MacAddress")+"IsVirtual"] == "false" {
				macs = append(macs, strings.ToLower(v))
			}
		}
	}
	sort.Strings(macs)
	if len(macs) == 0 {
		return ""
	}
	return macs[0]
}

// SystemUUID is the SMBIOS UUID, the identity of auth "sys-uuid"; "" when it
// is missing or a placeholder.
func SystemUUID(data map[string]string) string {
	u := strings.ToLower(strings.TrimSpace(data["System Information/UUID"]))
	switch {
	case u == "", strings.HasPrefix(u, "not "), u == "none", u == "unspecified",
		u == "00000000-0000-0000-0000-000000000000", u == "ffffffff-ffff-ffff-ffff-ffffffffffff":
		return ""
	}
	return u
}
