package osimage

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// initrdModules are the drivers the boot init needs to find and mount its
// root image (contract §1), plus the network and TPM drivers the node agent
// uses; the Debian cloud kernel builds many of them as modules. Names built
// into the kernel are skipped; a name that is neither built in nor a module
// fails the build, so a kernel change cannot silently drop a driver.
var initrdModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "sd_mod", "sr_mod", "cdrom",
	"ata_piix", "ata_generic", "isofs", "squashfs", "loop", "overlay", "ext4", "vfat",
	"nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8", "tpm_tis", "efivarfs",
}

// kernelModules knows the modules of one unpacked kernel package.
type kernelModules struct {
	dir     string            // host: <pkg>/lib/modules/<version>
	version string            // e.g. 6.1.0-57-cloud-amd64
	files   map[string]string // module name -> path relative to dir
	builtin map[string]bool
}

func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(path.Base(file), ".ko"), "-", "_")
}

func loadKernelModules(pkgDir string) (*kernelModules, error) {
	vers, err := filepath.Glob(filepath.Join(pkgDir, "lib", "modules", "*"))
	if err != nil || len(vers) != 1 {
		return nil, fmt.Errorf("kernel package %s: want exactly one lib/modules/<version> folder, found %v", pkgDir, vers)
	}
	k := &kernelModules{dir: vers[0], version: filepath.Base(vers[0]), files: map[string]string{}, builtin: map[string]bool{}}
	err = filepath.WalkDir(k.dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(k.dir, p)
			k.files[modName(rel)] = filepath.ToSlash(rel)
		}
		if strings.HasSuffix(p, ".ko.xz") || strings.HasSuffix(p, ".ko.zst") {
			return fmt.Errorf("%s is compressed: the boot init loads plain .ko modules with busybox insmod", p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(k.dir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("kernel package %s: %w", pkgDir, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			k.builtin[modName(l)] = true
		}
	}
	return k, nil
}

// loadOrder returns the module files (relative to k.dir) needed for names,
// dependencies first, each once.
func (k *kernelModules) loadOrder(names []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = strings.ReplaceAll(name, "-", "_")
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		rel, ok := k.files[name]
		if !ok {
			if k.builtin[name] {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("kernel %s has no module %s (needed by %s) and does not build it in", k.version, name, from)
		}
		state[name] = 1
		deps, err := moduleDepends(filepath.Join(k.dir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, "the boot init"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDepends reads the depends= field of a module's .modinfo section.
func moduleDepends(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", file)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
