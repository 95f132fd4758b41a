// Package register is the node side of machine registration
// (`edgefleet-node register`): it reads the registration config (from a file
// or seed media), proves the machine's identity, sends its hardware data and
// stores the config and credential it gets back in a state directory, so the
// next run registers as the same machine.
package register

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// SeedConfigFile is the node config's name on seed media (SeedImage) and
// DefaultConfigPaths are searched when --config is not given: the seed media
// as the live system mounts it, then the installed system's copy.
const SeedConfigFile = "edgefleet-node.yaml"

// DefaultConfigPaths are tried in order when no --config is given.
var DefaultConfigPaths = []string{
	"/run/edgefleet/seed/" + SeedConfigFile,
	"/run/initramfs/live/" + SeedConfigFile,
	"/etc/edgefleet/" + SeedConfigFile,
}

// DefaultStateDir keeps the machine's identity and credential.
const DefaultStateDir = "/var/lib/edgefleet-node"

// Config is the node config file. The registration keys match the
// MachineRegistration's config.registration (Elemental's names), plus url and
// ca-cert which the SeedImage fills in.
type Config struct {
	Registration Registration `json:"registration"`
	// StateDir holds state.json, kubeconfig and config.json.
	StateDir string `json:"state-dir,omitempty"`
}

// Registration is where and how to register.
type Registration struct {
	URL string `json:"url"`
	// CACert is the manager's CA (PEM, or a path to a PEM file). It is added
	// to the system's roots.
	CACert          string            `json:"ca-cert,omitempty"`
	Auth            string            `json:"auth,omitempty"`
	Fallback        []string          `json:"fallback,omitempty"`
	EmulateTPM      bool              `json:"emulate-tpm,omitempty"`
	EmulatedTPMSeed int64             `json:"emulated-tpm-seed,omitempty"`
	NoSMBIOS        bool              `json:"no-smbios,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	// TPMSocket is a TPM simulator's command socket (swtpm), for tests and
	// labs; empty uses the machine's TPM.
	TPMSocket string `json:"tpm-socket,omitempty"`
	// DMIDir overrides /sys/class/dmi/id (copied firmware tables, tests).
	DMIDir string `json:"dmi-dir,omitempty"`
}

// LoadConfig reads path, or the first of DefaultConfigPaths that exists.
func LoadConfig(path string) (*Config, string, error) {
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
		cfg, err := ParseConfig(data)
		if err != nil {
			return nil, p, fmt.Errorf("%s: %w", p, err)
		}
		if cfg.StateDir == "" {
			cfg.StateDir = DefaultStateDir
		}
		if cfg.Registration.CACert != "" && !isPEM(cfg.Registration.CACert) && !filepath.IsAbs(cfg.Registration.CACert) {
			cfg.Registration.CACert = filepath.Join(filepath.Dir(p), cfg.Registration.CACert)
		}
		return cfg, p, nil
	}
	return nil, "", fmt.Errorf("no node config found in %v: pass --config, or boot from a seed image built with `edgefleet seed-image build`", DefaultConfigPaths)
}

// ParseConfig parses and checks a node config.
func ParseConfig(data []byte) (*Config, error) {
	cfg := &Config{}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return nil, fmt.Errorf("not a valid node config: %w", err)
	}
	u, err := url.Parse(cfg.Registration.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("registration.url %q is not an https URL: copy the url key of the MachineRegistration's token Secret (status.tokenSecretName)", cfg.Registration.URL)
	}
	switch cfg.Registration.Auth {
	case "", "tpm", "tpm-or-fallback", "mac", "sys-uuid":
	default:
		return nil, fmt.Errorf("registration.auth %q is not one of tpm, tpm-or-fallback, mac, sys-uuid", cfg.Registration.Auth)
	}
	for _, f := range cfg.Registration.Fallback {
		switch f {
		case "emulated-tpm", "mac", "sys-uuid":
		default:
			return nil, fmt.Errorf("registration.fallback %q is not one of emulated-tpm, mac, sys-uuid", f)
		}
	}
	return cfg, nil
}

func isPEM(s string) bool {
	return len(s) > 10 && s[:10] == "-----BEGIN"
}
