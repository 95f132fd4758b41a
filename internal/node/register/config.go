// Package register is the node side of machine registration
// (`edgefleet-node register`): it reads the registration config (from a file
// or seed media), proves the machine's identity, sends its hardware data and
// stores the config and credential it gets back in a state directory, so the
// next run registers as the same machine.
package register

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// DefaultConfigPaths are searched when --config is not given: the seed media
// as the live system mounts it, then the installed system's copy.
var DefaultConfigPaths = []string{
	"/run/edgefleet/seed/" + machinereg.SeedConfigFile,
	"/run/initramfs/live/" + machinereg.SeedConfigFile,
	"/etc/edgefleet/" + machinereg.SeedConfigFile,
	// The installed system: edgefleet-node install writes it to EF_OEM,
	// which the boot init mounts on /oem.
	"/oem/" + machinereg.SeedConfigFile,
}

// DefaultStateDir keeps the machine's identity and credential.
const DefaultStateDir = "/var/lib/edgefleet-node"

// LoadConfig reads path, or the first of DefaultConfigPaths that exists.
func LoadConfig(path string) (*machinereg.NodeConfig, string, error) {
	paths := DefaultConfigPaths
	if path != "" {
		paths = []string{path}
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && path == "" {
			continue
		}
		if err != nil {
			return nil, p, fmt.Errorf("reading the node config: %w", err)
		}
		cfg, err := machinereg.ParseNodeConfig(data)
		if err != nil {
			return nil, p, fmt.Errorf("%s: %w", p, err)
		}
		if cfg.StateDir == "" {
			cfg.StateDir = DefaultStateDir
		}
		if cfg.Registration.CACert != "" && !machinereg.IsPEM(cfg.Registration.CACert) && !filepath.IsAbs(cfg.Registration.CACert) {
			cfg.Registration.CACert = filepath.Join(filepath.Dir(p), cfg.Registration.CACert)
		}
		return cfg, p, nil
	}
	return nil, "", fmt.Errorf("no node config found in %v: pass --config, or boot from a seed image built with `edgefleet seed-image build`", DefaultConfigPaths)
}
