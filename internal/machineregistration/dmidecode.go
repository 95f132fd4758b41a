package machineregistration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// MaxDMIDecodeBytes bounds a dmidecode dump: real ones are 10–100 KiB.
const MaxDMIDecodeBytes = 4 << 20

var (
	dmiHandle = regexp.MustCompile(`^Handle 0x[0-9A-Fa-f]+, DMI type (\d+), \d+ bytes`)
	dmiSize   = regexp.MustCompile(`^(\d+)\s*(bytes|kB|KB|MB|GB|TB)$`)
)

// DMIRecord is one structure of a dmidecode dump: its title ("System
// Information") and its "Key: Value" lines. Multi-line values (lists such
// as Characteristics) are left out.
type DMIRecord struct {
	Type   int
	Title  string
	Values map[string]string
}

// ParseDMIDecode reads the text output of `dmidecode` (all of it, or a
// part such as `dmidecode -t system`).
func ParseDMIDecode(r io.Reader) ([]DMIRecord, error) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxDMIDecodeBytes+1))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	var recs []DMIRecord
	var cur *DMIRecord
	read := 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), " \r")
		if read += len(sc.Bytes()) + 1; read > MaxDMIDecodeBytes {
			return nil, fmt.Errorf("more than %d MiB: not a dmidecode dump", MaxDMIDecodeBytes>>20)
		}
		switch {
		case strings.HasPrefix(text, "Handle "):
			m := dmiHandle.FindStringSubmatch(text)
			if m == nil {
				return nil, fmt.Errorf("line %d: %q is not a dmidecode handle line", line, text)
			}
			typ, _ := strconv.Atoi(m[1])
			recs = append(recs, DMIRecord{Type: typ, Values: map[string]string{}})
			cur = &recs[len(recs)-1]
		case cur == nil || text == "":
		case cur.Title == "":
			cur.Title = strings.TrimSpace(text)
		case strings.HasPrefix(text, "\t\t"):
			// An item of a list value (Characteristics, Flags…).
		case strings.HasPrefix(text, "\t"):
			k, v, ok := strings.Cut(text[1:], ":")
			if ok {
				cur.Values[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errors.New("a line longer than 64 KiB: not a dmidecode dump")
		}
		return nil, err
	}
	if len(recs) == 0 {
		return nil, errors.New("no SMBIOS records: expected the text output of dmidecode (lines such as \"Handle 0x0001, DMI type 1, 27 bytes\")")
	}
	return recs, nil
}

// DMIDecodeData turns a dmidecode dump into the data a node running on
// that machine sends at registration (machinereg.Inventory.Data), as far
// as SMBIOS tells it:
//
//   - the SMBIOS keys of machinereg.SMBIOSFields, from the first record of
//     each section, with the values the kernel's /sys/class/dmi/id shows
//     (where the node reads them): the UUID in lower case, the chassis type
//     as its number, and no value where dmidecode prints a placeholder for
//     an empty field ("Not Specified");
//   - CPU/… from the populated Processor Information records (model, vendor
//     as /proc/cpuinfo names it, core and thread counts);
//   - Memory/Total Physical Bytes, the sum of the Memory Device sizes;
//   - Runtime/OS linux and Runtime/Arch amd64 (edgefleet's OS images are
//     linux/amd64).
//
// Disks, NICs and the host name are not in a dmidecode dump.
func DMIDecodeData(recs []DMIRecord) map[string]string {
	data := map[string]string{"Runtime/OS": "linux", "Runtime/Arch": "amd64"}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.Title] {
			continue // the kernel keeps the first structure of a type
		}
		seen[r.Title] = true
		for k, v := range r.Values {
			path := r.Title + "/" + k
			if _, ok := machinereg.SMBIOSFields[path]; !ok {
				continue
			}
			if v = sysfsValue(path, v); v != "" {
				data[path] = v
			}
		}
	}
	cpus, cores, threads := 0, 0, 0
	var memory int64
	for _, r := range recs {
		switch r.Type {
		case 4:
			if !strings.HasPrefix(r.Values["Status"], "Populated") {
				continue
			}
			c, _ := strconv.Atoi(r.Values["Core Count"])
			th, _ := strconv.Atoi(r.Values["Thread Count"])
			for _, prefix := range cpuPrefixes(cpus) {
				data[prefix+"/Model"] = r.Values["Version"]
				data[prefix+"/Vendor"] = cpuVendor(r.Values["Manufacturer"])
				data[prefix+"/NumCores"] = strconv.Itoa(c)
				data[prefix+"/NumThreads"] = strconv.Itoa(th)
				data[prefix+"/ID"] = strconv.Itoa(cpus)
			}
			cpus, cores, threads = cpus+1, cores+c, threads+th
		case 17:
			memory += dmiBytes(r.Values["Size"])
		}
	}
	if cpus > 0 {
		data["CPU/TotalProcessors"] = strconv.Itoa(cpus)
		data["CPU/TotalCores"] = strconv.Itoa(cores)
		data["CPU/TotalThreads"] = strconv.Itoa(threads)
	}
	if memory > 0 {
		data["Memory/Total Physical Bytes"] = strconv.FormatInt(memory, 10)
	}
	return data
}

// cpuPrefixes: processor 0 is also CPU/Processor, as the node sends it.
func cpuPrefixes(i int) []string {
	p := []string{"CPU/Processors/" + strconv.Itoa(i)}
	if i == 0 {
		p = append(p, "CPU/Processor")
	}
	return p
}

// dmiPlaceholders are what dmidecode prints for an empty or unset field;
// the kernel shows nothing there.
var dmiPlaceholders = map[string]bool{
	"Not Specified": true, "Not Present": true, "Not Settable": true, "Not Provided": true,
	"<BAD INDEX>": true, "<OUT OF SPEC>": true,
}

func sysfsValue(path, v string) string {
	if dmiPlaceholders[v] {
		return ""
	}
	switch path {
	case "System Information/UUID":
		return strings.ToLower(v)
	case "Chassis Information/Type":
		if n, ok := chassisTypes[v]; ok {
			return strconv.Itoa(n)
		}
	}
	return v
}

// chassisTypes: SMBIOS 3.x chassis types as dmidecode names them; the
// kernel shows the number.
var chassisTypes = map[string]int{
	"Other": 1, "Unknown": 2, "Desktop": 3, "Low Profile Desktop": 4, "Pizza Box": 5,
	"Mini Tower": 6, "Tower": 7, "Portable": 8, "Laptop": 9, "Notebook": 10,
	"Hand Held": 11, "Docking Station": 12, "All In One": 13, "Sub Notebook": 14,
	"Space-saving": 15, "Lunch Box": 16, "Main Server Chassis": 17, "Expansion Chassis": 18,
	"Sub Chassis": 19, "Bus Expansion Chassis": 20, "Peripheral Chassis": 21, "RAID Chassis": 22,
	"Rack Mount Chassis": 23, "Sealed-case PC": 24, "Multi-system": 25, "CompactPCI": 26,
	"AdvancedTCA": 27, "Blade": 28, "Blade Enclosing": 29, "Tablet": 30, "Convertible": 31,
	"Detachable": 32, "IoT Gateway": 33, "Embedded PC": 34, "Mini PC": 35, "Stick PC": 36,
}

// cpuVendor names a processor manufacturer as /proc/cpuinfo's vendor_id
// does (what the node reads).
func cpuVendor(m string) string {
	switch l := strings.ToLower(m); {
	case strings.Contains(l, "intel"):
		return "GenuineIntel"
	case strings.Contains(l, "amd"), strings.Contains(l, "advanced micro devices"):
		return "AuthenticAMD"
	}
	return m
}

// dmiBytes parses a Memory Device size ("32 GB", "16384 MB", "No Module
// Installed" → 0).
func dmiBytes(s string) int64 {
	m := dmiSize.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"bytes": 0, "kB": 10, "KB": 10, "MB": 20, "GB": 30, "TB": 40}[m[2]]
	if n > 1<<(62-shift) {
		return 0
	}
	return n << shift
}
